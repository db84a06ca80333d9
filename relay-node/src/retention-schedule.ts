/**
 * When the relay's retention sweep runs. Every `intervalMs` (`retention_sweep_ms`), and sooner
 * when retention is behind, so that a busy topic holds about its limit, not its limit plus a
 * whole interval of traffic (at 15,000 msg/s in one topic, a minute's interval let it reach
 * 1,000,000 messages against a 100,000 limit):
 * - once as many messages as one topic may hold were stored since the last sweep (some topic
 *   may now be over its limit by that much);
 * - again at the next check after a sweep that deleted `SWEEP_AGAIN_AFTER` or more (a topic
 *   that busy is still growing).
 * A sweep deletes in steps that let publishes in between (sqlite-writes.ts), so sweeping more
 * often costs the relay the same deletions, spread out.
 */
export interface SweepSchedule {
  /** Whether a sweep is due now; `stored` is how many messages the relay has stored so far. */
  due(now: number, stored: number): boolean;
  /** A sweep starts now, with `stored` messages stored so far. */
  started(now: number, stored: number): void;
  /** The sweep that started last deleted this many messages. */
  finished(deleted: number): void;
  /** How often `due` should be asked. */
  readonly checkMs: number;
}

/** Longest time between two checks. */
export const SWEEP_CHECK_MS = 1_000;
/** A sweep that deleted at least this many runs again at the next check. */
export const SWEEP_AGAIN_AFTER = 1_000;

export function sweepSchedule(policy: { intervalMs: number; maxMessages: number }, now: number): SweepSchedule {
  let lastAt = now;
  let storedAt = 0;
  let lastDeleted = 0;
  return {
    checkMs: Math.min(SWEEP_CHECK_MS, policy.intervalMs),
    due(at, stored) {
      if (at - lastAt >= policy.intervalMs) return true;
      if (lastDeleted >= SWEEP_AGAIN_AFTER) return true;
      return policy.maxMessages > 0 && stored - storedAt >= policy.maxMessages;
    },
    started(at, stored) {
      lastAt = at;
      storedAt = stored;
      lastDeleted = 0;
    },
    finished(deleted) {
      lastDeleted = deleted;
    },
  };
}
