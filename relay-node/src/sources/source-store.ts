import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { createHybridClock } from '@anode/shared';
import { PRIVATE_FILE_MODE, syncFolder } from '../private-files.ts';

/**
 * Admin changes to the sources, kept in `data_dir/sources.json` so they survive a restart: per
 * name, the raw definition that replaces the config file's (or adds to it), or null when
 * deleted (a tombstone, dropped after a while: see sources-manager.ts). The config file stays
 * the base; the admin API layers on top of it. Each change has a version (`<12 hex ms><4 hex
 * counter>-<node id>`, ordered as strings) so that, in a mesh, every node keeps the newest change
 * of each source whichever order they arrive in.
 */
export interface SourceChanges {
  changes: Record<string, Record<string, unknown> | null>;
  versions: Record<string, string>;
  /** The newest version of a tombstone this node has dropped ('' when none). */
  dropped: string;
}

/** The journal is folded into the snapshot once it outgrows both this and the snapshot. */
const MIN_COMPACT_BYTES = 64 * 1024;

/**
 * Write `text` to `file` (appended, or replacing what it held) and wait until it is on disk: an
 * admin change is answered only once it would survive a power cut, not only a killed process.
 * Owner-only: definitions carry credentials (URLs, headers).
 */
async function writeSynced(file: string, text: string, flag: 'a' | 'w'): Promise<void> {
  const handle = await open(file, flag, PRIVATE_FILE_MODE);
  try {
    await handle.writeFile(text);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/**
 * A write of `sources.json` or `sources.log` (or their folder) failed: the OS error (`code`, e.g.
 * ENOSPC) and the file it was writing. Anything else a write throws is a bug, not the disk.
 */
export class SourceWriteError extends Error {
  readonly file: string;
  readonly code: string;
  constructor(file: string, error: NodeJS.ErrnoException) {
    // Node's message repeats the call and the path ("ENOSPC: no space left on device, write"): cut.
    const reason = error.syscall ? error.message.split(`, ${error.syscall}`)[0] : error.message;
    super(`cannot write ${file}: ${reason}`, { cause: error });
    this.name = 'SourceWriteError';
    this.file = file;
    this.code = error.code ?? 'EIO';
  }
}

/** Run a file operation on `file`; an OS error (one with a code) becomes a SourceWriteError. */
async function onFile<T>(file: string, operation: Promise<T>): Promise<T> {
  try {
    return await operation;
  } catch (error) {
    if (typeof (error as NodeJS.ErrnoException).code !== 'string') throw error;
    throw new SourceWriteError(file, error as NodeJS.ErrnoException);
  }
}

interface Batch {
  state: SourceChanges;
  names: Set<string>;
  whole: boolean;
  done: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * `sources.json` holds a snapshot of the changes; `sources.log` beside it, one JSON line per
 * change made since. A change appends one line instead of rewriting every source, and the
 * journal is folded back into the snapshot (temp file, then rename) once it is larger than the
 * snapshot, so writing n changes costs O(n) bytes, not O(n²). Writes run one at a time; the
 * changes that arrive while one is in flight go together into the next.
 */
export function createSourceStore(path: string) {
  const journal = `${path.replace(/\.json$/, '')}.log`;
  let snapshotBytes = 0;
  let journalBytes = 0;
  // After a failed or torn append the journal's tail may be half a line: rewrite it whole next.
  let rewriteNext = false;
  let queued: Batch | undefined;
  let writing = Promise.resolve();

  const write = async (batch: Batch) => {
    // Serialised before the first await: the batch holds every change made before it started.
    const { state } = batch;
    const lines = [...batch.names]
      .filter((name) => name in state.changes)
      .map((name) => `${JSON.stringify({ name, version: state.versions[name] ?? '', change: state.changes[name] })}\n`)
      .join('');
    const lineBytes = Buffer.byteLength(lines);
    const whole = batch.whole || rewriteNext || journalBytes + lineBytes > Math.max(MIN_COMPACT_BYTES, snapshotBytes);
    const text = whole ? `${JSON.stringify({ version: 1, ...state })}\n` : '';
    const folder = dirname(path);
    await onFile(folder, mkdir(folder, { recursive: true, mode: 0o700 }));
    if (!whole) {
      rewriteNext = true;
      await onFile(journal, writeSynced(journal, lines, 'a'));
      // The first line since the journal was emptied may have created the file.
      if (journalBytes === 0) await onFile(folder, syncFolder(folder));
      rewriteNext = false;
      journalBytes += lineBytes;
      return;
    }
    rewriteNext = true;
    await onFile(`${path}.tmp`, writeSynced(`${path}.tmp`, text, 'w'));
    await onFile(path, rename(`${path}.tmp`, path));
    await onFile(folder, syncFolder(folder));
    snapshotBytes = Buffer.byteLength(text);
    // A crash before this truncation replays old lines onto the new snapshot: harmless, as a
    // line applies only when its version is at least the one already there.
    await onFile(journal, writeSynced(journal, '', 'w'));
    journalBytes = 0;
    rewriteNext = false;
  };

  const schedule = (state: SourceChanges, names: Iterable<string>, whole: boolean): Promise<void> => {
    let batch = queued;
    if (!batch) {
      const next = { state, names: new Set(), whole: false } as Batch;
      next.done = new Promise<void>((resolve, reject) => Object.assign(next, { resolve, reject }));
      queued = batch = next;
      writing = writing.then(async () => {
        if (queued === next) queued = undefined;
        await write(next).then(next.resolve, next.reject);
      });
    }
    for (const name of names) batch.names.add(name);
    batch.whole ||= whole;
    batch.state = state;
    return batch.done;
  };

  const read = async (file: string) => {
    try {
      return await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw new Error(`cannot read ${file}: ${(error as Error).message}`, { cause: error });
    }
  };

  return {
    async load(): Promise<SourceChanges> {
      const text = await read(path);
      snapshotBytes = Buffer.byteLength(text);
      let parsed: Partial<SourceChanges>;
      try {
        parsed = text === '' ? {} : (JSON.parse(text) as Partial<SourceChanges>);
      } catch (error) {
        throw new Error(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
      }
      const state: SourceChanges = {
        changes: parsed.changes ?? {},
        versions: parsed.versions ?? {},
        dropped: typeof parsed.dropped === 'string' ? parsed.dropped : '',
      };
      const log = await read(journal);
      journalBytes = Buffer.byteLength(log);
      const lines = log.split('\n');
      // A last line without its newline is a write that never finished, so never acknowledged.
      if (lines.pop() !== '') rewriteNext = true;
      for (const [i, line] of lines.entries()) {
        let entry: { name?: unknown; version?: unknown; change?: unknown };
        try {
          entry = JSON.parse(line) as typeof entry;
        } catch (error) {
          throw new Error(`cannot read ${journal} line ${i + 1}: ${(error as Error).message}`, { cause: error });
        }
        const { name, version, change } = entry;
        if (typeof name !== 'string' || typeof version !== 'string') continue;
        if (version < (state.versions[name] ?? '')) continue;
        state.changes[name] =
          change !== null && typeof change === 'object' ? (change as Record<string, unknown>) : null;
        state.versions[name] = version;
      }
      return state;
    },
    /**
     * Make the current changes of `names` durable. Resolves once a write holding them (as they
     * are when it starts) has finished; a change is never acknowledged before it is on disk.
     */
    write: (state: SourceChanges, names: Iterable<string>) => schedule(state, names, false),
    /** Rewrite the snapshot whole (after changes a journal line cannot say, e.g. dropped tombstones). */
    rewrite: (state: SourceChanges) => schedule(state, [], true),
    /**
     * Resolves once every write scheduled so far has finished, failed ones too (their callers
     * hear of the failure): a rewrite nobody awaits (after an undo) must not outlive the stop.
     */
    settled: (): Promise<void> => writing,
  };
}

/** The effective raw definitions: the config file's, with the admin changes applied. */
export function mergeSources(configured: readonly unknown[], state: SourceChanges): Record<string, unknown>[] {
  const byName = new Map<string, Record<string, unknown>>();
  for (const raw of configured) {
    const def = raw as Record<string, unknown>;
    byName.set(String(def.name), def);
  }
  for (const [name, change] of Object.entries(state.changes)) {
    if (change === null) byName.delete(name);
    else byName.set(name, change);
  }
  return [...byName.values()];
}

/**
 * The config file's sources that an admin change replaces, and the fields where the file's
 * definition differs from it. An admin change holds a whole definition (a patch, a pause or a
 * resume included) and wins over the file's, so the file's later edits of that source are not
 * applied; said once at startup, since they were ignored silently. `paused` is left out: pausing
 * is what the admin API is for.
 */
export function shadowedByAdmin(
  configured: readonly unknown[],
  state: SourceChanges,
  /**
   * Each side as it takes effect (defaults filled in: parseDefinition), so that a change spelling
   * out a default the file leaves out is no difference; where it throws on either, both are compared
   * raw.
   */
  normalize: (raw: unknown) => unknown = (raw) => raw,
): { name: string; fields: string[]; version: string }[] {
  const effective = (...raw: unknown[]): Record<string, unknown>[] => {
    try {
      return raw.map((one) => normalize(one) as Record<string, unknown>);
    } catch {
      return raw as Record<string, unknown>[]; // both raw, not one with defaults and one without
    }
  };
  const shadowed = [];
  for (const raw of configured) {
    const name = String((raw as Record<string, unknown>).name);
    const change = Object.hasOwn(state.changes, name) ? state.changes[name] : undefined;
    if (!change) continue;
    const [file = {}, admin = {}] = effective(raw, change);
    const keys = new Set([...Object.keys(file), ...Object.keys(admin)]);
    const fields = [...keys].filter((key) => key !== 'paused' && !isDeepStrictEqual(file[key], admin[key])).sort();
    if (fields.length > 0) shadowed.push({ name, fields, version: state.versions[name] ?? '' });
  }
  return shadowed;
}

/**
 * Versions for one node's changes: increasing, and ordered with other nodes' by time first (the
 * node's hybrid clock spelling, so versions and cursors compare the same way).
 */
export function createVersionClock(nodeId: string, now: () => number = Date.now): () => string {
  const clock = createHybridClock(nodeId, now);
  return () => clock.next();
}

/** The time (ms) a version was minted at; 0 for a version this code cannot read. */
export const versionTime = (version: string): number => Number.parseInt(version.slice(0, 12), 16) || 0;
