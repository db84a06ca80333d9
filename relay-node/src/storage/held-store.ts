import { compareCursors, type Envelope, type MessageStore } from '@anode/shared';
import { mergeLatest, mergePage } from './merge-page.ts';

/**
 * Persist mode `origin` (one shared store, only the accepting relay writes): the messages this
 * relay received from other relays, held in memory until the shared store shows them, and read
 * as history meanwhile.
 *
 * The accepting relay acks a message once it is durable in the shared store or in its own spool
 * (the store unreachable from it). A spooled message reaches the other relays by gossip at once,
 * but the shared store only when that spool drains, which can be minutes. Without this, a client
 * resuming on another relay in that window read history without the message and moved past it
 * (the Cassandra chaos runs found it). With it, that relay's history merges what it holds: a
 * held message leaves once a history read returns it from the store (it has arrived), or when it
 * is older than `holdMs`, or when the held data exceed `maxBytes` (oldest first). Those bounds
 * are the window that stays open: a spool that takes longer to drain than they allow.
 */
export interface HeldStore extends MessageStore {
  /** Messages accepted elsewhere that this relay delivered without storing them. */
  hold(envelopes: readonly Envelope[]): void;
  /** What is held now (the status page and tests). */
  readonly held: { messages: number; bytes: number };
}

/**
 * The relay's bounds: 15 minutes covers a Cassandra node restart or a short network outage
 * between one relay and the cluster; 64 MiB is about 190,000 messages of ~100 bytes.
 */
export const HOLD_MS = 15 * 60_000;
export const HOLD_BYTES = 64 * 1024 * 1024;

export interface HeldOptions {
  /** Longest a message is held (ms). */
  holdMs: number;
  /** Most data held, in bytes of serialized `data` (oldest dropped first). */
  maxBytes: number;
  now?: () => number;
}

interface Held {
  envelope: Envelope;
  bytes: number;
  at: number;
  /** Seen in the shared store, or dropped: skipped by reads, removed when it reaches the front. */
  gone: boolean;
}

/** Fixed cost counted per held message besides its data (the envelope's other fields, the maps). */
const OVERHEAD_BYTES = 256;

export function createHeldStore(inner: MessageStore, options: HeldOptions): HeldStore {
  const now = options.now ?? Date.now;
  // Arrival order, for the age and size bounds.
  const queue: Held[] = [];
  let head = 0;
  // Per topic, the same entries in cursor order (gossip arrives nearly in that order, so an
  // insert moves back a few places at most). Entries that went are skipped, and swept out once
  // they are half of the list.
  const byTopic = new Map<string, { entries: Held[]; gone: number }>();
  const byId = new Map<string, Held>();
  let bytes = 0;

  const drop = (entry: Held) => {
    if (entry.gone) return;
    entry.gone = true;
    bytes -= entry.bytes;
    byId.delete(entry.envelope.id);
    const topic = byTopic.get(entry.envelope.topic);
    if (!topic) return;
    topic.gone += 1;
    if (topic.gone === topic.entries.length) byTopic.delete(entry.envelope.topic);
    else if (topic.gone * 2 > topic.entries.length) {
      topic.entries = topic.entries.filter((e) => !e.gone);
      topic.gone = 0;
    }
  };

  /** Applies the age and size bounds, oldest first. */
  const trim = () => {
    const cutoff = now() - options.holdMs;
    for (let entry = queue[head]; entry; entry = queue[head]) {
      if (!entry.gone && entry.at > cutoff && bytes <= options.maxBytes) break;
      drop(entry);
      head += 1;
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
  };

  const insert = (entry: Held) => {
    let topic = byTopic.get(entry.envelope.topic);
    if (!topic) byTopic.set(entry.envelope.topic, (topic = { entries: [], gone: 0 }));
    const list = topic.entries;
    let i = list.length;
    while (i > 0 && compareCursors((list[i - 1] as Held).envelope.cursor, entry.envelope.cursor) > 0) i -= 1;
    list.splice(i, 0, entry);
  };

  /** Held messages of `topic` after `after`, in cursor order (at most `limit`). */
  const heldAfter = (topic: string, after: string, limit: number): Envelope[] => {
    trim();
    const list = byTopic.get(topic)?.entries;
    if (!list) return [];
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareCursors((list[mid] as Held).envelope.cursor, after) > 0) hi = mid;
      else lo = mid + 1;
    }
    const found: Envelope[] = [];
    for (let i = lo; i < list.length && found.length < limit; i++) {
      const entry = list[i] as Held;
      if (!entry.gone) found.push(entry.envelope);
    }
    return found;
  };

  return {
    kind: inner.kind,
    pipelinedAppends: inner.pipelinedAppends,

    hold(envelopes) {
      const at = now();
      for (const envelope of envelopes) {
        if (byId.has(envelope.id)) continue;
        const entry: Held = {
          envelope,
          bytes: (JSON.stringify(envelope.data) ?? '').length + OVERHEAD_BYTES,
          at,
          gone: false,
        };
        queue.push(entry);
        byId.set(envelope.id, entry);
        bytes += entry.bytes;
        insert(entry);
      }
      trim();
    },

    get held() {
      trim();
      return { messages: byId.size, bytes };
    },

    async history(topic, query) {
      const stored = await inner.history(topic, query);
      if (byId.size === 0 || query.limit <= 0) return stored;
      // In the store now: no longer held.
      for (const message of stored) {
        const entry = byId.get(message.id);
        if (entry) drop(entry);
      }
      return mergePage(stored, heldAfter(topic, query.after ?? '', query.limit), query.limit);
    },

    async topics() {
      const stored = await inner.topics();
      trim();
      if (byTopic.size === 0) return stored;
      return [...new Set([...stored, ...byTopic.keys()])].sort();
    },

    open: async () => inner.open?.(),
    append: (messages, appendOptions) => inner.append(messages, appendOptions),
    // The newest per source, by the stores' rule (ts, then id), held messages included.
    async latest(topic) {
      const stored = await inner.latest(topic);
      trim();
      const list = byTopic.get(topic)?.entries;
      if (!list) return stored;
      return mergeLatest(
        stored,
        list.filter((entry) => !entry.gone).map((entry) => entry.envelope),
      );
    },
    trimmedThrough: (topic) => inner.trimmedThrough(topic),
    sweep: (at) => inner.sweep(at),
    async health() {
      trim();
      return { ...(await inner.health()), held_messages: byId.size };
    },
    close: () => inner.close(),
  };
}
