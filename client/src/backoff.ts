export interface BackoffOptions {
  initialDelayMs: number;
  maxDelayMs: number;
}

/**
 * Exponential backoff with jitter between half the initial delay and the attempt's ceiling:
 * spreads reconnecting clients so they do not stampede. Never more than `maxDelayMs`.
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random = Math.random): number {
  const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** attempt);
  const floor = Math.min(options.initialDelayMs / 2, ceiling);
  return Math.round(floor + random() * (ceiling - floor));
}
