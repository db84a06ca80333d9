import { compareCursors, cursorTime, MAX_CLOCK_SKEW_MS } from './ids.ts';

/**
 * The late-arrival rule (PROTOCOL.md "WebSocket"), one spelling for relay and edge. A message
 * from elsewhere is late when its cursor sorts before one its topic already delivered, or when it
 * was minted more than LATE_AFTER_MS before it arrived. A subscriber resuming from `after` gets
 * the stored messages after it, so a late message with an older cursor that landed while it was
 * away would be skipped: a resume replays the late arrivals with a cursor up to `after` that
 * arrived since `lateReplaySince(after)`.
 */
export const LATE_AFTER_MS = 1_000;

export function isLateArrival(
  cursor: string,
  newestDelivered: string | undefined,
  arrivedAt: number,
  lateAfterMs = LATE_AFTER_MS,
): boolean {
  const outOfOrder = newestDelivered !== undefined && compareCursors(cursor, newestDelivered) < 0;
  return outOfOrder || cursorTime(cursor) < arrivedAt - lateAfterMs;
}

/** Late arrivals that arrived at or after this time may have been missed by a resume from `after`. */
export function lateReplaySince(after: string): number {
  return cursorTime(after) - MAX_CLOCK_SKEW_MS;
}
