import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { UnavailableError } from '@anode/shared';
import type { SharedState } from '../cluster.ts';
import type { Logger } from '../logger.ts';
import { parseDefinition, SourceDefinitionError } from './definition.ts';
import type { Ownership } from './ownership.ts';
import type { Step } from './plugin-api.ts';
import { createPublishGate, type PublishGate } from './publish-gate.ts';
import type { Scheduler } from './scheduler.ts';
import type { SourceKind } from './source-kind.ts';
import {
  createSourceRecord,
  createSourceRuntime,
  type RuntimeDeps,
  type SourceRecord,
  type SourceRuntime,
} from './source-runtime.ts';
import { type createSourceStore, type SourceChanges, SourceWriteError, versionTime } from './source-store.ts';

export class SourceNotFoundError extends Error {
  override name = 'SourceNotFoundError';
}
export class SourceExistsError extends Error {
  override name = 'SourceExistsError';
}

/** How long a deleted source's tombstone is kept by default: long enough for every member to hear of it. */
export const TOMBSTONE_TTL_MS = 7 * 24 * 60 * 60 * 1000;

export interface ManagerOptions {
  kinds: ReadonlyMap<string, SourceKind>;
  steps: ReadonlyMap<string, Step>;
  scheduler: Scheduler;
  ownership: Ownership;
  store: ReturnType<typeof createSourceStore>;
  changes: SourceChanges;
  /** The version of the next admin change (see SourceChanges). */
  version: () => string;
  log: Logger;
  deps: Omit<RuntimeDeps, 'scheduler' | 'log' | 'gate' | 'record'>;
  /** A source was deleted (here or on another node), not merely stopped or replaced. */
  onDeleted?(name: string): void;
  /** How long a tombstone is kept (default TOMBSTONE_TTL_MS). */
  tombstoneTtlMs?: number;
  /** The config file's source names: their tombstones are kept, or the file's source would come back. */
  configuredNames?: ReadonlySet<string>;
  /** Names in another member's config file (shared): their tombstones are kept too. */
  keepTombstone?: (name: string) => boolean;
  now?: () => number;
}

/**
 * The set of sources at run time: creates, replaces, pauses and deletes them (persisting each
 * admin change before it answers), and runs exactly those this node owns and are not paused.
 */
export function createSourcesManager(options: ManagerOptions) {
  const { kinds, ownership, changes } = options;
  const runtimes = new Map<string, SourceRuntime>();
  const raws = new Map<string, Record<string, unknown>>();
  // One publish gate per source, not per runtime: an update, a pause or a merged change makes a
  // new runtime, and a gate of its own would send a store that hangs one more publish each time
  // (and let the new runtime's publishes overtake the old one's). A deleted source's gate goes
  // once idle, unless the source is back by then (it takes the same gate, still holding the one).
  const gates = new Map<string, PublishGate>();
  const gateOf = (name: string) => {
    let gate = gates.get(name);
    if (!gate) gates.set(name, (gate = createPublishGate()));
    return gate;
  };
  const forgetGate = (name: string) => {
    const gate = gates.get(name);
    void gate?.idle().then(() => {
      if (!runtimes.has(name) && gates.get(name) === gate) {
        gates.delete(name);
        // What the deleted source's runtime reports later (a plugin's late io.lost) is not the
        // counts of a source re-created under the name, which gets a new gate.
        gate.restartCounts();
      }
    });
  };
  // One record per source (counters, last error, last success), kept across its runtimes as its
  // metric series are; a deleted source's goes with it, so one created anew counts from zero.
  const records = new Map<string, SourceRecord>();
  const recordOf = (name: string) => {
    let record = records.get(name);
    if (!record) records.set(name, (record = createSourceRecord(options.deps.now)));
    return record;
  };
  let running = false;

  /** `exact`: the fields an admin request sets, which must be of their type (parseDefinition). */
  const validate = (raw: unknown, exact: Iterable<string> = []) => {
    const def = parseDefinition(raw, kinds, exact);
    const missing = def.pipeline.filter((name) => !options.steps.has(name));
    if (missing.length > 0) throw new SourceDefinitionError(`pipeline: unknown step(s) ${missing.join(', ')}`);
    return def;
  };

  const reconcile = (runtime: SourceRuntime) => {
    const wanted = running && !runtime.definition.paused && ownership.isOwner(runtime.definition.name);
    if (wanted) runtime.start();
    else runtime.stop(runtime.definition.paused ? 'paused' : 'standby');
  };

  const install = (raw: Record<string, unknown>) => {
    const def = validate(raw);
    const previous = runtimes.get(def.name);
    previous?.stop();
    // A deleted source created anew (its gate kept while a publish of the old one is pending):
    // its status counts from zero, as its metric series do.
    if (!previous) gates.get(def.name)?.restartCounts();
    const kind = kinds.get(def.kind) as SourceKind;
    // An update does not re-ingest: the new runtime shares the old one's dedup window, which the
    // old one's publishes still queued in the gate go on filling. A resized window is a copy (what
    // those queued publishes add then is not seen by the new runtime).
    const sameWindow = previous?.definition.dedup_window === def.dedup_window;
    const runtime = createSourceRuntime(def, kind, {
      ...options.deps,
      scheduler: options.scheduler,
      log: options.log,
      gate: gateOf(def.name),
      record: recordOf(def.name),
      ...(sameWindow ? { seen: previous?.seen } : {}),
    });
    if (!sameWindow) for (const id of previous?.seen.ids() ?? []) runtime.seen.add(id);
    runtimes.set(def.name, runtime);
    raws.set(def.name, raw);
    reconcile(runtime);
    return runtime;
  };

  // Each source's last change known to be on disk (its write finished), beside `changes`, the newest
  // accepted (written or still being written). A change whose write fails goes back to it, and only
  // it is shared with the other members: one that took a change before its write failed would hand
  // it back later as the newest, and the change answered 500 would be in effect after all.
  const durable: Pick<SourceChanges, 'changes' | 'versions'> = {
    changes: { ...changes.changes },
    versions: { ...changes.versions },
  };
  let digest: string | undefined; // of `durable`
  /**
   * Changes taken from another member whose write here has not finished (or failed): the newest
   * this node knows of for their source, though the disk holds an older one. A local change made
   * on top of one and then undone goes back to it, not to the disk's (see rollBack).
   */
  const mergedUnwritten = new Map<string, string>();
  /** A write holding this change of `name` finished (writes finish in order, so the last call wins). */
  const written = (name: string, version: string, raw: Record<string, unknown> | null) => {
    durable.changes[name] = raw;
    durable.versions[name] = version;
    if ((mergedUnwritten.get(name) ?? '') <= version) mergedUnwritten.delete(name);
    digest = undefined;
  };
  const ttl = options.tombstoneTtlMs ?? TOMBSTONE_TTL_MS;
  const now = options.now ?? Date.now;
  let nextExpiry = Number.NEGATIVE_INFINITY; // when the oldest tombstone kept expires

  /**
   * Drop the tombstones older than the TTL (from memory, the digest, the snapshot and the file).
   * The merge then ignores a source it does not know whose version is not newer than the newest
   * tombstone dropped: a member that missed that delete would otherwise bring the source back.
   * A legitimate change older than that would have reached this node within the TTL.
   */
  const expire = () => {
    if (now() < nextExpiry) return;
    const horizon = now() - ttl;
    nextExpiry = Number.POSITIVE_INFINITY;
    let dropped = 0;
    for (const [name, change] of Object.entries(changes.changes)) {
      if (change !== null) continue;
      const version = changes.versions[name] ?? '';
      const time = versionTime(version);
      if (time >= horizon) {
        nextExpiry = Math.min(nextExpiry, time + ttl);
        continue;
      }
      // A source in this node's config file, or any member's: its tombstone is what keeps the
      // file from bringing it back, on that member and on one that joins with the same file.
      // Every member keeps it alike, so their digests agree.
      if (options.configuredNames?.has(name) || options.keepTombstone?.(name)) continue;
      delete changes.changes[name];
      delete changes.versions[name];
      delete durable.changes[name];
      delete durable.versions[name];
      mergedUnwritten.delete(name);
      if (version > changes.dropped) changes.dropped = version;
      dropped += 1;
    }
    if (dropped === 0) return;
    digest = undefined;
    options.log.info({ dropped }, 'tombstones of deleted sources dropped');
    options.store.rewrite(changes).catch((error: unknown) => {
      // They are dropped again after a restart.
      options.log.error({ err: (error as Error).message }, 'cannot rewrite sources.json after dropping tombstones');
    });
  };
  const noteTombstone = (version: string) => {
    nextExpiry = Math.min(nextExpiry, versionTime(version) + ttl);
  };

  /**
   * Write an admin change; resolves with whether it is still the newest of its source. A later
   * one may be made while it is written (a concurrent request, a merge): only the newest may
   * touch the runtime, or an update finishing after a delete would install one nothing stops.
   */
  const persist = async (name: string, raw: Record<string, unknown> | null) => {
    const version = options.version();
    const replaced = Object.hasOwn(changes.changes, name)
      ? { raw: changes.changes[name] ?? null, version: changes.versions[name] ?? '' }
      : undefined;
    changes.changes[name] = raw;
    changes.versions[name] = version;
    if (raw === null) noteTombstone(version);
    expire();
    // The admin request is answered only after a write holding this change has finished (the
    // store folds changes made during a write into the next one; it never answers ahead).
    try {
      await options.store.write(changes, [name]);
    } catch (error) {
      rollBack(name, version, replaced);
      const reason = (error as Error).message;
      // The disk (full, read-only, not writable): 503 unavailable, a retry can succeed once fixed,
      // logged here (the HTTP layer logs only internal errors). Anything else is a bug: 500 internal.
      if (error instanceof SourceWriteError) {
        options.log.error({ source: name, err: reason }, 'cannot write an admin change of a source, undone');
        throw new UnavailableError(
          `the change of source ${name} was not saved and is undone: ${reason}; retry once that is fixed`,
          { cause: error },
        );
      }
      throw new Error(`cannot write the change of source ${name}, undone: ${reason}`, { cause: error });
    }
    written(name, version, raw);
    return changes.versions[name] === version;
  };

  /**
   * Undo a change whose write failed (its request is answered 503 unavailable, 500 for a bug): the
   * source is again its last change on disk, and so is its runtime (a delete stopped it before writing). Before, the failed
   * change stayed the newest accepted: a failed delete left a source no request could change or
   * delete, a failed update rode along with the next one. Runs as the write's rejection arrives,
   * before the store starts its next write. A change made meanwhile is left: its own write decides
   * (a batch that failed fails it too, and it comes back here). If the undone change replaced one
   * taken from another member and not written yet (`replaced`), the source goes back to that one:
   * it is still the newest known, and going back to the disk's older definition ran that until
   * the next exchange brought the member's change again.
   */
  const rollBack = (
    name: string,
    version: string,
    replaced?: { raw: Record<string, unknown> | null; version: string },
  ) => {
    if (changes.versions[name] !== version) return;
    if (
      replaced &&
      replaced.version === mergedUnwritten.get(name) &&
      replaced.version > (durable.versions[name] ?? '')
    ) {
      changes.changes[name] = replaced.raw;
      changes.versions[name] = replaced.version;
      if (replaced.raw === null) noteTombstone(replaced.version);
    } else if (Object.hasOwn(durable.changes, name)) {
      changes.changes[name] = durable.changes[name] ?? null;
      changes.versions[name] = durable.versions[name] ?? '';
      // A tombstone back: an expiry scan made while the failed change was the newest skipped it.
      if (changes.changes[name] === null) noteTombstone(changes.versions[name]);
    } else {
      delete changes.changes[name];
      delete changes.versions[name];
    }
    follow(name);
    // A journal line whose sync failed may still be in sources.log: rewritten whole, a restart
    // does not load the undone change (best effort: the disk may still be failing).
    options.store.rewrite(changes).catch((error: unknown) => {
      options.log.error(
        { source: name, err: (error as Error).message },
        'cannot rewrite sources.json after undoing a change',
      );
    });
  };

  /** Make the runtime of `name` what its newest change says (after a rollback). */
  const follow = (name: string) => {
    const change = Object.hasOwn(changes.changes, name) ? changes.changes[name] : undefined;
    const runtime = runtimes.get(name);
    if (change === null) {
      // A delete on disk that a create overtook, and the create failed: remove() left the runtime.
      if (runtime) drop(name);
    } else if (change && !isDeepStrictEqual(change, raws.get(name))) {
      try {
        install(change);
      } catch (error) {
        options.log.error(
          { source: name, err: (error as Error).message },
          'cannot restore a source after a failed write',
        );
      }
    } else if (runtime) reconcile(runtime); // a delete stopped it
  };

  /**
   * The answer to a change that a later one overtook: the later change's definition (the runtime
   * may not run it yet: this write can resolve before the later change is installed).
   */
  const overtaken = (name: string) => {
    const newest = changes.changes[name];
    if (!newest) throw new SourceNotFoundError(`source ${name} was deleted meanwhile`);
    const runtime = runtimes.get(name);
    return {
      ...newest,
      paused: newest.paused === true,
      status: runtime ? view(runtime).status : null,
    };
  };

  /** Does a change (`version`, `raw`) win over this node's change of `name`? Ties: the greater JSON. */
  const newer = (name: string, version: string, raw: Record<string, unknown> | null) => {
    const local = changes.versions[name] ?? '';
    if (version !== local) return version > local;
    return name in changes.changes && JSON.stringify(raw) > JSON.stringify(changes.changes[name]);
  };

  /** A source is deleted: its runtime, definition, record and (once idle) gate go. */
  const drop = (name: string) => {
    runtimes.get(name)?.stop();
    runtimes.delete(name);
    raws.delete(name);
    records.delete(name);
    forgetGate(name);
    options.onDeleted?.(name);
  };

  /** Apply a change made on another node (it is already validated there; it may still fail here). */
  const applyRemote = (name: string, raw: Record<string, unknown> | null) => {
    if (raw === null) return drop(name);
    try {
      install({ ...raw, name });
    } catch (error) {
      options.log.error(
        { source: name, err: (error as Error).message },
        'a source changed on another node is refused here (missing kind or middleware?)',
      );
    }
  };

  const get = (name: string) => {
    const runtime = runtimes.get(name);
    if (!runtime) throw new SourceNotFoundError(`no source named ${name}`);
    return runtime;
  };

  /**
   * The source a new admin change applies to: the newest change accepted (written or still being
   * written; one whose write failed is undone, see rollBack), not the runtime, which changes only
   * once its write finished. Checked against the runtime alone, an update arriving while a delete
   * is written passed, was written after it, and brought the deleted source back.
   */
  const latest = (name: string) => {
    get(name);
    const change = Object.hasOwn(changes.changes, name) ? changes.changes[name] : undefined;
    if (change === null) throw new SourceNotFoundError(`no source named ${name} (being deleted)`);
    return change ?? (raws.get(name) as Record<string, unknown>);
  };

  const view = (runtime: SourceRuntime) => ({
    ...raws.get(runtime.definition.name),
    paused: runtime.definition.paused,
    status: { ...runtime.status(), owner: ownership.ownerOf(runtime.definition.name) ?? null },
  });

  const unsubscribe = ownership.onChange(() => {
    for (const runtime of runtimes.values()) reconcile(runtime);
  });

  /** The admin changes as state shared with the other mesh members (last writer wins per source). */
  const shared: SharedState = {
    digest() {
      expire();
      digest ??= createHash('sha256')
        .update(
          JSON.stringify(
            Object.keys(durable.changes)
              .sort()
              .map((name) => [name, durable.versions[name] ?? '', durable.changes[name]]),
          ),
        )
        .digest('hex')
        .slice(0, 32);
      return digest;
    },
    snapshot() {
      expire();
      return { changes: durable.changes, versions: durable.versions };
    },
    async merge(snapshot) {
      const remote = snapshot as Partial<SourceChanges> | null;
      if (!remote || typeof remote.changes !== 'object' || remote.changes === null) return;
      const versions = typeof remote.versions === 'object' && remote.versions !== null ? remote.versions : {};
      const applied: string[] = [];
      const unwritten: string[] = [];
      for (const [name, raw] of Object.entries(remote.changes)) {
        const version = typeof versions[name] === 'string' ? versions[name] : '';
        const value = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? raw : null;
        // Deleted here and its tombstone since dropped (see expire): a stale member's copy.
        if (!(name in changes.changes) && version <= changes.dropped) continue;
        if (!newer(name, version, value)) {
          // Taken before, but its write here failed: written again (digests differ until it is).
          if (version === changes.versions[name] && durable.versions[name] !== version) unwritten.push(name);
          continue;
        }
        changes.changes[name] = value;
        changes.versions[name] = version;
        mergedUnwritten.set(name, version);
        if (value === null) noteTombstone(version);
        applyRemote(name, value);
        applied.push(name);
      }
      if (applied.length + unwritten.length === 0) return;
      if (applied.length > 0) options.log.info({ applied: applied.length }, 'source changes taken from another node');
      expire();
      const names = [...applied, ...unwritten];
      // expire() may just have dropped a tombstone taken here (older than the TTL on this node's
      // clock): it is gone, not written. Recorded as written, it stayed shared for good (a ghost
      // entry of version ''), and no member's digest agreed with this one's again.
      const taken = names
        .filter((name) => Object.hasOwn(changes.changes, name))
        .map((name) => [name, changes.versions[name] ?? '', changes.changes[name] ?? null] as const);
      await options.store.write(changes, names);
      for (const [name, version, raw] of taken) written(name, version, raw);
    },
  };

  return {
    shared,
    runtimes: () => runtimes.values(),
    size: () => runtimes.size,
    has: (name: string) => runtimes.has(name),
    /** How many sources have a publish gate (the deleted ones' go once their publishes settled). */
    gates: () => gates.size,
    /**
     * Resolves once no publish of any source runs or waits in its gate (a deleted source's
     * included). After `stop` nothing more is emitted, so it settles once the store answered them all.
     */
    idle: () => Promise.all([...gates.values()].map((gate) => gate.idle())).then(() => undefined),
    /** Load definitions without starting them (invalid ones are logged and skipped). */
    load(raws: readonly Record<string, unknown>[]) {
      for (const raw of raws) {
        try {
          install(raw);
        } catch (error) {
          options.log.error({ err: (error as Error).message, source: raw.name }, 'source refused');
        }
      }
    },
    start() {
      running = true;
      expire();
      for (const runtime of runtimes.values()) reconcile(runtime);
    },
    stop() {
      running = false;
      unsubscribe();
      for (const runtime of runtimes.values()) runtime.stop('standby');
    },
    list: () => [...runtimes.values()].map(view),
    get: (name: string) => view(get(name)),
    async create(raw: Record<string, unknown>) {
      const def = validate(raw, Object.keys(raw));
      if (runtimes.has(def.name) && changes.changes[def.name] !== null)
        throw new SourceExistsError(`source ${def.name} exists; update it with PUT`);
      if (!(await persist(def.name, raw))) {
        throw new SourceExistsError(`source ${def.name} was created meanwhile by another request`);
      }
      return view(install(raw));
    },
    /** Replace (`merge` false) or patch (`merge` true) a source's definition; it restarts. */
    async update(name: string, patch: Record<string, unknown>, merge: boolean) {
      // Ignored before: a rename looked done (200) and the source kept its name.
      if (patch.name !== undefined && patch.name !== name) {
        throw new SourceDefinitionError(
          `name: the body says ${JSON.stringify(patch.name)} but the URL ${JSON.stringify(name)}: a source cannot be renamed (create the new name, then delete the old one)`,
        );
      }
      const current = latest(name);
      const raw = merge ? { ...current, ...patch, name } : { ...patch, name };
      validate(raw, Object.keys(patch));
      return (await persist(name, raw)) ? view(install(raw)) : overtaken(name);
    },
    async setPaused(name: string, paused: boolean) {
      const raw = { ...latest(name), paused };
      return (await persist(name, raw)) ? view(install(raw)) : overtaken(name);
    },
    async remove(name: string) {
      latest(name);
      get(name).stop();
      if (!(await persist(name, null))) return; // deleted, then made again by a later change
      drop(name); // and any runtime installed while the delete was written
    },
  };
}

export type SourcesManager = ReturnType<typeof createSourcesManager>;
