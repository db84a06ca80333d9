import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AnodeError } from './errors.ts';
import { createKeyedBuckets, createTokenBucket, takeTokens } from './token-bucket.ts';

describe('token bucket', () => {
  test('allows the burst at once, then the rate, never more than the burst after idling', () => {
    let t = 0;
    const bucket = createTokenBucket(2, 3, () => t);
    assert.deepEqual([bucket.take(), bucket.take(), bucket.take(), bucket.take()], [true, true, true, false]);
    t = 500; // one token back at 2/s
    assert.deepEqual([bucket.take(), bucket.take()], [true, false]);
    t = 60_000;
    assert.equal(bucket.take(3), true);
    assert.equal(bucket.take(), false);
  });

  test('takes a whole batch or nothing', () => {
    const state = takeTokens({ tokens: 2, at: 0 }, 1, 5, 3, 0);
    assert.equal(state.ok, false);
    assert.equal(state.tokens, 2);
  });

  test('keyed buckets refuse a batch larger than the burst as too_large, naming both, and take nothing', () => {
    let t = 0;
    const buckets = createKeyedBuckets(10, 100, { now: () => t });
    assert.throws(
      () => buckets.take('a', 101),
      (e: unknown) =>
        e instanceof AnodeError && e.code === 'too_large' && /101 messages.*publish burst of 100/.test(e.message),
    );
    // Even with the bucket full and after any wait: the refusal is not about the rate.
    t = 3_600_000;
    assert.throws(
      () => buckets.take('a', 101),
      (e: unknown) => e instanceof AnodeError && e.code === 'too_large',
    );
    assert.equal(buckets.take('a', 100), true);
    assert.equal(buckets.take('a', 1), false);
  });

  test('keyed buckets limit each key alone and prune only buckets that refilled', () => {
    let t = 0;
    const buckets = createKeyedBuckets(1, 2, { pruneAbove: 2, now: () => t });
    assert.equal(buckets.take('a', 2), true);
    assert.equal(buckets.take('a', 1), false);
    assert.equal(buckets.take('b', 2), true);
    assert.equal(buckets.take('c', 1), true);
    assert.equal(buckets.size, 3);
    t = 1_500; // a and b half refilled, c too: none is full, none pruned
    assert.equal(buckets.take('d', 1), true);
    assert.equal(buckets.size, 4);
    assert.equal(buckets.take('a', 2), false, 'a is still limited: not forgotten early');
    t = 10_000; // all refilled
    assert.equal(buckets.take('e', 1), true);
    assert.equal(buckets.size, 1, 'idle buckets were pruned');
  });
});
