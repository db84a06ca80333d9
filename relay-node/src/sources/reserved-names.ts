import { createHash } from 'node:crypto';
import { isSourceName } from '@anode/shared';
import type { SharedState } from '../cluster.ts';

/** Bounds on what one member may reserve, and on how many members' lists are kept. */
const MAX_NAMES_PER_NODE = 10_000;
const MAX_NODES = 1_000;

interface Entry {
  /** When the node set its list (its start): a restarted node's new list replaces the old one. */
  at: number;
  names: string[];
}

/**
 * The names of the sources each member pulls from its own config file, shared across the mesh so
 * that no client of any member may publish as one of them. Admin API sources already reach every
 * member (sources-manager.ts); config-file sources are each node's own, so without this a client
 * of another relay could publish under a source's name and have it gossiped as if pulled.
 *
 * The same lists say which members can pull such a source at all: its owner is drawn from them
 * alone (ownership.ts), or a member without it could be drawn and nobody would pull it.
 *
 * Each member writes only its own entry; a newer entry for a node replaces the older one. A
 * member that left keeps its names reserved until every node has restarted: reserving a name too
 * long is the safe side.
 */
export function createReservedNames(self: string, own: readonly string[], now = Date.now()) {
  const entries = new Map<string, Entry>([[self, { at: now, names: [...new Set(own)].sort() }]]);
  const held = new Map<string, ReadonlySet<string>>([[self, new Set(own)]]);
  let union = new Set(own);
  let digest: string | undefined;
  const listeners = new Set<() => void>();

  const rebuild = () => {
    union = new Set([...entries.values()].flatMap((entry) => entry.names));
    digest = undefined;
    for (const listener of listeners) listener();
  };

  const shared: SharedState = {
    digest() {
      digest ??= createHash('sha256')
        .update(JSON.stringify([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))))
        .digest('hex')
        .slice(0, 32);
      return digest;
    },
    snapshot: () => Object.fromEntries(entries),
    async merge(snapshot) {
      if (snapshot === null || typeof snapshot !== 'object' || Array.isArray(snapshot)) return;
      let changed = false;
      for (const [node, raw] of Object.entries(snapshot as Record<string, unknown>)) {
        if (node === self || (!entries.has(node) && entries.size >= MAX_NODES)) continue;
        const entry = raw as Partial<Entry> | null;
        if (!entry || typeof entry.at !== 'number' || !Array.isArray(entry.names)) continue;
        if (entry.at <= (entries.get(node)?.at ?? -1)) continue;
        const names = entry.names.filter(isSourceName).slice(0, MAX_NAMES_PER_NODE).sort();
        entries.set(node, { at: entry.at, names });
        held.set(node, new Set(names));
        changed = true;
      }
      if (changed) rebuild();
    },
  };

  return {
    shared,
    /** Whether some member pulls a source of this name from its config file. */
    has: (name: string) => union.has(name),
    /** Whether `node`'s config file has a source of this name (as far as this node has heard). */
    holds: (node: string, name: string) => held.get(node)?.has(name) === true,
    /** Called after another member's list changed. Returns an unsubscribe function. */
    onChange(listener: () => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
