import { TooLargeError } from './errors.ts';

/**
 * The publish rate limit, one implementation for relay and edge: a token bucket of `rate` tokens
 * per second holding at most `burst`, counted per message. The state is plain data, so the edge
 * can keep it in a hibernatable socket's attachment.
 */
export interface BucketState {
  tokens: number;
  /** When `tokens` was last computed (ms, any monotonic-enough clock). */
  at: number;
}

/** Refill `bucket` up to `now` and take `count` tokens if there are enough; returns the new state. */
export function takeTokens(
  bucket: BucketState,
  rate: number,
  burst: number,
  count = 1,
  now = Date.now(),
): BucketState & { ok: boolean } {
  const tokens = Math.min(burst, bucket.tokens + (Math.max(0, now - bucket.at) / 1000) * rate);
  return tokens >= count ? { ok: true, tokens: tokens - count, at: now } : { ok: false, tokens, at: now };
}

export interface TokenBucket {
  take(count?: number): boolean;
}

export function createTokenBucket(
  rate: number,
  burst: number,
  now: () => number = performance.now.bind(performance),
): TokenBucket {
  let state: BucketState = { tokens: burst, at: now() };
  return {
    take(count = 1) {
      const next = takeTokens(state, rate, burst, count, now());
      state = next;
      return next.ok;
    },
  };
}

export interface KeyedBuckets {
  /**
   * Take `count` tokens from the bucket of `key` (a client address and subject). More than
   * `burst` at once throws TooLargeError (`too_large`): no wait would ever make them fit, so a
   * `rate_limited` answer would have the client retry for ever.
   */
  take(key: string, count: number): boolean;
  readonly size: number;
}

/**
 * One bucket per key (HTTP publishers), pruned when idle: a bucket that has refilled to `burst`
 * is indistinguishable from a new one, so it is dropped, at most once a second and only once
 * there are more than `pruneAbove` keys. Memory stays bounded by the clients active within the
 * last `burst / rate` seconds, and no limit is ever forgotten early.
 */
export function createKeyedBuckets(
  rate: number,
  burst: number,
  options: { pruneAbove?: number; now?: () => number } = {},
): KeyedBuckets {
  const now = options.now ?? Date.now;
  const pruneAbove = options.pruneAbove ?? 1024;
  const buckets = new Map<string, BucketState>();
  const refillMs = (burst / rate) * 1000;
  let prunedAt = 0;

  const prune = (t: number) => {
    if (buckets.size <= pruneAbove || t - prunedAt < 1000) return;
    prunedAt = t;
    for (const [key, state] of buckets) if (t - state.at >= refillMs) buckets.delete(key);
  };

  return {
    take(key, count) {
      if (count > burst) {
        throw new TooLargeError(
          `${count} messages in one request can never fit the publish burst of ${burst} (relay publish_burst, edge PUBLISH_BURST): send at most ${burst} per request`,
        );
      }
      const t = now();
      prune(t);
      const next = takeTokens(buckets.get(key) ?? { tokens: burst, at: t }, rate, burst, count, t);
      buckets.set(key, { tokens: next.tokens, at: next.at });
      return next.ok;
    },
    get size() {
      return buckets.size;
    },
  };
}
