import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createHybridClock } from '@anode/shared';

/**
 * Admin changes to the sources, kept in `data_dir/sources.json` so they survive a restart: per
 * name, the raw definition that replaces the config file's (or adds to it), or null when
 * deleted. The config file stays the base; the admin API layers on top of it. Each change has a
 * version (`<12 hex ms><4 hex counter>-<node id>`, ordered as strings) so that, in a mesh, every
 * node keeps the newest change of each source whichever order they arrive in.
 */
export interface SourceChanges {
  changes: Record<string, Record<string, unknown> | null>;
  versions: Record<string, string>;
}

export function createSourceStore(path: string) {
  let writing = Promise.resolve();
  return {
    async load(): Promise<SourceChanges> {
      try {
        const parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<SourceChanges>;
        return { changes: parsed.changes ?? {}, versions: parsed.versions ?? {} };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { changes: {}, versions: {} };
        throw new Error(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
      }
    },
    /** Write atomically (temp file, then rename); writes are serialised. */
    save(state: SourceChanges): Promise<void> {
      const text = `${JSON.stringify({ version: 1, ...state }, null, 2)}\n`;
      writing = writing.then(async () => {
        // Owner-only: definitions carry credentials (URLs, headers).
        await mkdir(dirname(path), { recursive: true, mode: 0o700 });
        await writeFile(`${path}.tmp`, text, { mode: 0o600 });
        await rename(`${path}.tmp`, path);
      });
      return writing;
    },
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
 * Versions for one node's changes: increasing, and ordered with other nodes' by time first (the
 * node's hybrid clock spelling, so versions and cursors compare the same way).
 */
export function createVersionClock(nodeId: string, now: () => number = Date.now): () => string {
  const clock = createHybridClock(nodeId, now);
  return () => clock.next();
}
