import {
  compareCursors,
  cursorFloor,
  cursorTime,
  dataBytes,
  type Envelope,
  HISTORY_PAGE_BYTES,
  type HistoryQuery,
  type MessageStore,
  takePage,
} from '@anode/shared';
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
 *
 * Almost every message is in the store by the time it arrives here (its accepting relay stored
 * it before gossiping it): the hold asks the store every `checkMs` for what arrived before the
 * last round, and lets go of what it finds, so the bounds are spent on spooled messages alone
 * (without it, at 1,000 msg/s from other relays the 64 MiB filled in about 3 minutes with
 * messages the store already had, and a spooled one was pushed out with them).
 */
export interface HeldStore extends MessageStore {
  /** Messages accepted elsewhere that this relay delivered without storing them. */
  hold(envelopes: readonly Envelope[]): void;
  /** What is held now (the status page and tests). */
  readonly held: { messages: number; bytes: number };
  /** One round of asking the store for what arrived at least `checkMs` ago (the timer's work). */
  check(): Promise<void>;
}

/**
 * The relay's bounds: 15 minutes covers a Cassandra node restart or a short network outage
 * between one relay and the cluster; 64 MiB is about 190,000 messages of ~100 bytes.
 */
export const HOLD_MS = 15 * 60_000;
export const HOLD_BYTES = 64 * 1024 * 1024;
/** How often the store is asked for held messages (those that arrived one round before at least). */
export const CHECK_MS = 2_000;
/**
 * A round reads at most CHECK_READS pages of CHECK_PAGE messages (25,000 messages per 2 s), each
 * page at most HISTORY_PAGE_BYTES of data (plus one message).
 */
const CHECK_PAGE = 500;
const CHECK_READS = 50;

export interface HeldOptions {
  /** Longest a message is held (ms). */
  holdMs: number;
  /** Most data held, in bytes of serialized `data` (oldest dropped first). */
  maxBytes: number;
  /** Ask the store this often for what is held (0: only when `check()` is called). */
  checkMs?: number;
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
  const checkMs = options.checkMs ?? CHECK_MS;
  // Arrival order, for the age and size bounds. Entries that went elsewhere than the front are
  // counted, and swept out once they are half of it (their data go with them).
  let queue: Held[] = [];
  let head = 0;
  let goneQueued = 0;
  // Per topic, the same entries in cursor order (gossip arrives nearly in that order: most
  // inserts append). Entries that went are skipped, and swept out once they are half of the list.
  // `resumeAfter`: where a round ran out of reads in the topic, for the next to go on from.
  const byTopic = new Map<string, { entries: Held[]; gone: number; resumeAfter?: string | undefined }>();
  const byId = new Map<string, Held>();
  let bytes = 0;

  const drop = (entry: Held) => {
    if (entry.gone) return;
    entry.gone = true;
    goneQueued += 1;
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
      goneQueued -= 1; // it leaves the queue
      head += 1;
    }
    if (goneQueued > 1024 && goneQueued * 2 > queue.length - head) {
      queue = queue.slice(head).filter((e) => !e.gone);
      head = 0;
      goneQueued = 0;
    } else if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
  };

  /** The index of the first entry of `list` whose cursor sorts after `cursor`. */
  const upperBound = (list: readonly Held[], cursor: string) => {
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareCursors((list[mid] as Held).envelope.cursor, cursor) > 0) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };

  const insert = (entry: Held) => {
    let topic = byTopic.get(entry.envelope.topic);
    if (!topic) byTopic.set(entry.envelope.topic, (topic = { entries: [], gone: 0 }));
    const list = topic.entries;
    const last = list.at(-1);
    // Gossip arrives nearly in cursor order; catch-up brings older ones, placed by a search.
    if (!last || compareCursors(last.envelope.cursor, entry.envelope.cursor) <= 0) list.push(entry);
    else list.splice(upperBound(list, entry.envelope.cursor), 0, entry);
  };

  /** Held messages of `topic` after `query.after`, in cursor order, cut as a store's page is. */
  const heldAfter = (topic: string, query: HistoryQuery) => {
    trim();
    const list = byTopic.get(topic)?.entries;
    if (!list) return { page: [], cut: false };
    const after = function* (from: number) {
      for (let i = from; i < list.length; i++) {
        const entry = list[i] as Held;
        if (!entry.gone) yield entry;
      }
    };
    // Measured once, when held: a page of held messages costs no stringify.
    const measure = (entry: Held) => entry.bytes - OVERHEAD_BYTES;
    const { page, cut } = takePage(after(upperBound(list, query.after ?? '')), query, measure);
    return { page: page.map((entry) => entry.envelope), cut };
  };

  /** Lets go of the held messages `page` (read from the store) holds. */
  const found = (page: readonly Envelope[]) => {
    for (const message of page) {
      const entry = byId.get(message.id);
      if (entry) drop(entry);
    }
  };
  /** The first held message of `list` past `after` that a round asks the store for. */
  const firstOld = (list: readonly Held[], after: string | undefined, old: (entry: Held) => boolean) => {
    for (let i = after === undefined ? 0 : upperBound(list, after); i < list.length; i++) {
      if (old(list[i] as Held)) return list[i] as Held;
    }
    return undefined;
  };
  // The topic the next round starts with: after one that ran out of reads, so that a busy topic
  // cannot take every round.
  let nextTopic: string | undefined;
  let checking: Promise<void> | undefined;
  const round = async () => {
    trim();
    const cutoff = now() - checkMs;
    const old = (entry: Held) => !entry.gone && entry.at <= cutoff;
    const topics = [...byTopic.keys()];
    const start = nextTopic === undefined ? 0 : Math.max(0, topics.indexOf(nextTopic));
    nextTopic = undefined;
    let reads = 0;
    for (let k = 0; k < topics.length; k++) {
      const topic = topics[(start + k) % topics.length] as string;
      const state = byTopic.get(topic);
      if (!state) continue;
      // On from where an earlier round ran out of reads in this topic; past its end, from the first
      // again (a message still held there may have reached the store since).
      let after = state.resumeAfter;
      let next = firstOld(state.entries, after, old);
      if (!next && after !== undefined) {
        after = undefined;
        next = firstOld(state.entries, after, old);
      }
      state.resumeAfter = undefined;
      const readsBefore = reads;
      for (; next; next = firstOld(byTopic.get(topic)?.entries ?? [], after, old)) {
        if (reads >= CHECK_READS) {
          // Without this, a topic with more stored messages behind an unstored one than a round
          // reads was scanned from its start every round and never past, nor any topic after it.
          state.resumeAfter = after;
          nextTopic = reads > readsBefore ? topics[(start + k + 1) % topics.length] : topic;
          return;
        }
        // From just before the next held message: the store's page holds it, if the store has it
        // (stored messages that are no longer held are skipped, not read).
        const before = cursorFloor(cursorTime(next.envelope.cursor) - 1);
        if (after === undefined || compareCursors(before, after) > 0) after = before;
        reads += 1;
        const page = await inner.history(topic, { after, limit: CHECK_PAGE, maxBytes: HISTORY_PAGE_BYTES });
        found(page);
        if (page.length === 0) break;
        after = (page.at(-1) as Envelope).cursor;
      }
    }
  };
  const check = () =>
    (checking ??= round()
      .catch(() => {
        // The store is away from here: everything stays held, and the next round asks again.
      })
      .finally(() => {
        checking = undefined;
      }));
  const timer = checkMs > 0 ? setInterval(() => void check(), checkMs) : undefined;
  timer?.unref();

  const innerTrimmedTopics = inner.trimmedTopics?.bind(inner);
  return {
    kind: inner.kind,
    pipelinedAppends: inner.pipelinedAppends,
    check,

    hold(envelopes) {
      const at = now();
      for (const envelope of envelopes) {
        if (byId.has(envelope.id)) continue;
        const entry: Held = {
          envelope,
          bytes: dataBytes(envelope) + OVERHEAD_BYTES,
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
      found(stored); // in the store now: no longer held
      return mergePage(stored, heldAfter(topic, query), query);
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
    async latest(topic, query) {
      const stored = await inner.latest(topic, query);
      trim();
      const list = byTopic.get(topic)?.entries;
      if (!list) return stored;
      return mergeLatest(
        stored,
        list.filter((entry) => !entry.gone).map((entry) => entry.envelope),
        query,
      );
    },
    trimmedThrough: (topic) => inner.trimmedThrough(topic),
    // What is held is never trimmed: the marks are the store's.
    ...(innerTrimmedTopics ? { trimmedTopics: innerTrimmedTopics } : {}),
    sweep: (at, counts) => inner.sweep(at, counts),
    async health() {
      trim();
      return { ...(await inner.health()), held_messages: byId.size };
    },
    async close() {
      clearInterval(timer);
      await checking;
      await inner.close();
    },
  };
}
