import { cursorTime, type HybridClock, isCursor } from '@anode/shared';

/**
 * A TopicHub's clock on wake: after the last cursor this object minted (`own`, kept in its
 * storage with each publish), whatever its wall clock says now, and past the cursors it has seen
 * from relays (`seen`: the newest in its ring, the newest a resume handed out). `own` goes through
 * `advanceTo`, not `observe`: observe ignores cursors more than a minute ahead of the wall clock (a
 * peer's broken clock), so an object whose machine's clock was over a minute behind its last one's
 * minted cursors below its own earlier ones, and a subscriber resuming from one of those skipped
 * what came between.
 */
export function seedClock(clock: HybridClock, own: string | undefined, ...seen: (string | undefined)[]): void {
  if (own !== undefined && isCursor(own)) clock.advanceTo(cursorTime(own) + 1);
  for (const cursor of seen) if (cursor !== undefined) clock.observe(cursor);
}
