import {
  compareCursors,
  dataBytes,
  type Envelope,
  isLateArrival,
  LATE_AFTER_MS,
  lateReplaySince,
  matches,
} from '@anode/shared';

/**
 * Messages from other nodes (mesh gossip, catch-up) that arrived "late": with a cursor older
 * than one this node had already delivered in that topic, or minted well before they arrived.
 * A subscriber that resumes from a cursor gets the stored messages *after* it; a late message
 * with an older cursor that landed while the subscriber was away would be skipped. So a resume
 * replays the late arrivals it may have missed (those with a cursor up to `after` that arrived
 * since shortly before `after` was minted), before the history. A subscriber may get some of
 * them twice; duplicates carry the same id and the client library drops them.
 */
export interface LateArrivalsOptions {
  /** How long a late arrival is remembered for resumes. */
  windowMs?: number;
  /** At most this many are remembered (oldest forgotten first). */
  maxEntries?: number;
  /**
   * At most this much `data` (serialized bytes) is remembered, oldest forgotten first: a catch-up
   * or an edge backlog is all late, and 10,000 messages of 1 MiB would otherwise stay for the
   * whole window.
   */
  maxBytes?: number;
  /** A message minted more than this long before it arrived is late whatever its topic saw. */
  lateAfterMs?: number;
  now?: () => number;
}

interface Late {
  envelope: Envelope;
  arrivedAt: number;
  bytes: number;
}

/** Remembered late arrivals' data, at most (LateArrivalsOptions.maxBytes). */
export const LATE_MAX_BYTES = 32 * 1024 * 1024;
/** Remembered late arrivals, at most (LateArrivalsOptions.maxEntries). */
export const LATE_MAX_ENTRIES = 10_000;
/** Late arrivals let go early whose topic and cursor are kept (see `forgotten`), at most. */
const MAX_FORGOTTEN = 100_000;

export function createLateArrivals(options: LateArrivalsOptions = {}) {
  const windowMs = options.windowMs ?? 10 * 60_000;
  const maxEntries = options.maxEntries ?? LATE_MAX_ENTRIES;
  const maxBytes = options.maxBytes ?? LATE_MAX_BYTES;
  const lateAfterMs = options.lateAfterMs ?? LATE_AFTER_MS;
  const now = options.now ?? Date.now;
  const entries: Late[] = [];
  let bytes = 0;
  /**
   * What this memory let go before its window ended (past maxEntries or maxBytes): topic, cursor
   * and arrival, without the data, which the store has. A resume that would have replayed one
   * reads the history from below it instead (forgottenFrom), so it gets it again, with some
   * duplicates, rather than a gap. A review: one catch-up brought 12,000 late messages; a resume
   * was sent the 10,000 remembered and answered `subscribed` (2,000 lost); 40 of 1 MiB, 8 lost.
   * At most MAX_FORGOTTEN of them; past that, the oldest cursor and newest arrival of the ones
   * dropped stand for them all (`overflow`), until the window passes that arrival.
   */
  const forgotten: { topic: string; cursor: string; arrivedAt: number }[] = [];
  let overflow: { cursor: string; arrivedAt: number } | undefined;

  const forgetOld = (at: number) => {
    let drop = 0;
    const expired = (entry: Late) => entry.arrivedAt < at - windowMs;
    const past = (entry: Late, i: number) => entries.length - i > maxEntries || bytes > maxBytes || expired(entry);
    while (drop < entries.length && past(entries[drop] as Late, drop)) {
      const entry = entries[drop] as Late;
      if (!expired(entry)) {
        forgotten.push({ topic: entry.envelope.topic, cursor: entry.envelope.cursor, arrivedAt: entry.arrivedAt });
      }
      bytes -= entry.bytes;
      drop++;
    }
    if (drop > 0) entries.splice(0, drop);
    let gone = 0;
    while (gone < forgotten.length && (forgotten[gone] as { arrivedAt: number }).arrivedAt < at - windowMs) gone++;
    while (forgotten.length - gone > MAX_FORGOTTEN) {
      const { cursor, arrivedAt } = forgotten[gone] as { cursor: string; arrivedAt: number };
      overflow = {
        cursor: overflow === undefined || compareCursors(cursor, overflow.cursor) < 0 ? cursor : overflow.cursor,
        arrivedAt: Math.max(arrivedAt, overflow?.arrivedAt ?? 0),
      };
      gone++;
    }
    if (gone > 0) forgotten.splice(0, gone);
    if (overflow !== undefined && overflow.arrivedAt < at - windowMs) overflow = undefined;
  };

  return {
    /** Record `envelope` if it is late, given the newest cursor its topic had delivered before. */
    observe(envelope: Envelope, newestBefore: string | undefined): void {
      const at = now();
      if (!isLateArrival(envelope.cursor, newestBefore, at, lateAfterMs)) return;
      const size = dataBytes(envelope);
      entries.push({ envelope, arrivedAt: at, bytes: size });
      bytes += size;
      forgetOld(at);
    },

    /** Late arrivals matching `pattern` that a subscriber resuming from `after` may have missed. */
    replay(pattern: string, after: string): Envelope[] {
      forgetOld(now());
      const since = lateReplaySince(after);
      return entries
        .filter(
          ({ envelope, arrivedAt }) =>
            arrivedAt >= since && compareCursors(envelope.cursor, after) <= 0 && matches(pattern, envelope.topic),
        )
        .map(({ envelope }) => envelope)
        .sort((a, b) => compareCursors(a.cursor, b.cursor));
    },

    /**
     * The oldest cursor a resume of `pattern` from `after` would have replayed but that this
     * memory let go early (see `forgotten`), else undefined: the hub reads the history from
     * below it.
     */
    forgottenFrom(pattern: string, after: string): string | undefined {
      forgetOld(now());
      const since = lateReplaySince(after);
      let oldest: string | undefined;
      const take = (cursor: string) => {
        if (compareCursors(cursor, after) <= 0 && (oldest === undefined || compareCursors(cursor, oldest) < 0)) {
          oldest = cursor;
        }
      };
      if (overflow !== undefined && overflow.arrivedAt >= since) take(overflow.cursor);
      for (const entry of forgotten) {
        if (entry.arrivedAt >= since && matches(pattern, entry.topic)) take(entry.cursor);
      }
      return oldest;
    },

    get size(): number {
      return entries.length;
    },

    /** The remembered arrivals' data, in bytes (dataBytes). */
    get bytes(): number {
      return bytes;
    },
  };
}
