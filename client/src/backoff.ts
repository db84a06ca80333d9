import { MAX_TIMER_MS } from '../../shared/src/timers.ts';

export interface BackoffOptions {
  initialDelayMs: number;
  maxDelayMs: number;
}

/** A delay option as a timer takes it: whole ms; negative or NaN is 0, past `MAX_TIMER_MS` is that. */
const timerMs = (ms: number) => (ms > 0 ? Math.floor(Math.min(ms, MAX_TIMER_MS)) : 0);

/**
 * Exponential backoff with jitter between half the initial delay and the attempt's ceiling:
 * spreads reconnecting clients so they do not stampede. Never more than `maxDelayMs`, and always
 * an integer from 0 to `MAX_TIMER_MS`, whatever the options: an `initialDelayMs` of 0 times an
 * exponent grown to Infinity was NaN, and a delay past `MAX_TIMER_MS` fired at once. Only a
 * `maxDelayMs` of 0 means no wait at all.
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random = Math.random): number {
  // At least 1 ms to grow from: an initial delay of 0 (or a negative or NaN one) stayed 0 at
  // every attempt, so reconnects and resends hammered a node that was down or limiting.
  const initial = Math.max(1, timerMs(options.initialDelayMs));
  // 2 ** 64 times any initial delay is far past MAX_TIMER_MS yet finite.
  const ceiling = Math.min(timerMs(options.maxDelayMs), initial * 2 ** (attempt > 0 ? Math.min(attempt, 64) : 0));
  const floor = Math.min(initial / 2, ceiling);
  return Math.round(floor + random() * (ceiling - floor));
}
