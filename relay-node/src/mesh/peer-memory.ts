import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../logger.ts';
import { PRIVATE_FILE_MODE } from '../private-files.ts';

/**
 * The mesh peers this relay has known, kept in `mesh-peers.json` in the data folder (0600), so
 * that a peer which left is still shown as down, with when it was last seen, after a restart
 * of this relay and on a freshly opened dashboard, until an operator forgets it. A peer that
 * comes back is up again; `forget` drops a down peer (a connected one cannot be forgotten: it
 * would be remembered again at once).
 *
 * Each entry also keeps the last status card the peer sent over the status protocol
 * (status-protocol.ts), so a down relay still shows its version and storage.
 */
export const PEERS_FILE = 'mesh-peers.json';
/** Beyond this many remembered peers, the longest unseen are dropped. */
export const MAX_REMEMBERED_PEERS = 500;
/** Saves of `last_seen` while peers stay up happen at most this often. */
const SAVE_EVERY_MS = 10_000;

export interface RememberedPeer {
  peer_id: string;
  first_seen: number;
  last_seen: number;
  /** While connected: since when. */
  up_since: number | null;
  /** While not connected: since when (the disconnect, or the last sighting before a restart). */
  down_since: number | null;
  /** The last status card it answered with (see status-protocol.ts), if any. */
  card: Record<string, unknown> | null;
  /** When that card arrived. */
  card_at: number | null;
}

export interface PeerMemory {
  load(): Promise<void>;
  up(peer: string): void;
  down(peer: string): void;
  /** A status card arrived from a connected peer. */
  card(peer: string, card: Record<string, unknown>): void;
  /** Drop a peer that is down; `connected` when it is up, `unknown` when it is not remembered. */
  forget(peer: string): 'forgotten' | 'connected' | 'unknown';
  list(): RememberedPeer[];
  get(peer: string): RememberedPeer | undefined;
  /** Write pending changes (on stop). */
  flush(): Promise<void>;
}

const isEntry = (value: unknown): value is RememberedPeer =>
  typeof value === 'object' &&
  value !== null &&
  typeof (value as RememberedPeer).peer_id === 'string' &&
  typeof (value as RememberedPeer).last_seen === 'number';

export function createPeerMemory(options: { dataDir: string; log: Logger; now?: () => number }): PeerMemory {
  const now = options.now ?? Date.now;
  const path = join(options.dataDir, PEERS_FILE);
  const peers = new Map<string, RememberedPeer>();
  let lastSave = 0;
  let dirty = false;

  const write = async () => {
    dirty = false;
    lastSave = now();
    const tmp = `${path}.tmp`;
    await writeFile(tmp, JSON.stringify({ v: 1, peers: [...peers.values()] }), { mode: PRIVATE_FILE_MODE });
    await rename(tmp, path);
  };
  // One save at a time: two at once would share the temporary file.
  let saving: Promise<void> = Promise.resolve();
  const save = () =>
    (saving = saving
      .catch(() => {})
      .then(write)
      .catch((error: unknown) => options.log.warn({ err: error }, `cannot save ${PEERS_FILE}`)));
  const changed = (urgent: boolean) => {
    dirty = true;
    if (urgent || now() - lastSave >= SAVE_EVERY_MS) void save();
  };

  const trim = () => {
    if (peers.size <= MAX_REMEMBERED_PEERS) return;
    const oldest = [...peers.values()].filter((p) => p.up_since === null).sort((a, b) => a.last_seen - b.last_seen);
    for (const peer of oldest.slice(0, peers.size - MAX_REMEMBERED_PEERS)) peers.delete(peer.peer_id);
  };

  return {
    async load() {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw error;
      }
      try {
        const saved = (JSON.parse(text) as { peers?: unknown }).peers;
        for (const entry of Array.isArray(saved) ? saved : []) {
          if (!isEntry(entry)) continue;
          // Nothing is connected yet: every remembered peer starts down, since it was last seen.
          peers.set(entry.peer_id, {
            ...entry,
            up_since: null,
            down_since: entry.down_since ?? entry.last_seen,
            card: entry.card ?? null,
            card_at: entry.card_at ?? null,
          });
        }
        trim();
      } catch (error) {
        options.log.warn({ err: error }, `${PEERS_FILE} is not valid JSON; starting with no remembered peers`);
      }
    },

    up(peer) {
      const at = now();
      const known = peers.get(peer);
      if (known?.up_since != null) return;
      peers.set(peer, {
        peer_id: peer,
        first_seen: known?.first_seen ?? at,
        last_seen: at,
        up_since: at,
        down_since: null,
        card: known?.card ?? null,
        card_at: known?.card_at ?? null,
      });
      trim();
      changed(true);
    },

    down(peer) {
      const known = peers.get(peer);
      if (!known || known.up_since === null) return;
      const at = now();
      peers.set(peer, { ...known, up_since: null, down_since: at, last_seen: at });
      changed(true);
    },

    card(peer, card) {
      const known = peers.get(peer);
      if (!known || known.up_since === null) return;
      const at = now();
      peers.set(peer, { ...known, card, card_at: at, last_seen: at });
      changed(false);
    },

    forget(peer) {
      const known = peers.get(peer);
      if (!known) return 'unknown';
      if (known.up_since !== null) return 'connected';
      peers.delete(peer);
      changed(true);
      return 'forgotten';
    },

    list: () => [...peers.values()].map((p) => (p.up_since === null ? p : { ...p, last_seen: now() })),
    get: (peer) => peers.get(peer),

    async flush() {
      if (dirty) await save();
      await saving;
    },
  };
}
