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

export function createLateArrivals(options: LateArrivalsOptions = {}) {
  const windowMs = options.windowMs ?? 10 * 60_000;
  const maxEntries = options.maxEntries ?? 10_000;
  const maxBytes = options.maxBytes ?? LATE_MAX_BYTES;
  const lateAfterMs = options.lateAfterMs ?? LATE_AFTER_MS;
  const now = options.now ?? Date.now;
  const entries: Late[] = [];
  let bytes = 0;

  const forgetOld = (at: number) => {
    let drop = 0;
    const past = (entry: Late, i: number) =>
      entries.length - i > maxEntries || bytes > maxBytes || entry.arrivedAt < at - windowMs;
    while (drop < entries.length && past(entries[drop] as Late, drop)) {
      bytes -= (entries[drop] as Late).bytes;
      drop++;
    }
    if (drop > 0) entries.splice(0, drop);
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

    get size(): number {
      return entries.length;
    },

    /** The remembered arrivals' data, in bytes (dataBytes). */
    get bytes(): number {
      return bytes;
    },
  };
}
