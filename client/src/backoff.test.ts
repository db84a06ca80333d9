import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MAX_TIMER_MS } from '../../shared/src/timers.ts';
import { backoffDelay } from './backoff.ts';

const options = { initialDelayMs: 250, maxDelayMs: 10_000 };

test('the first delay lies between half and all of the initial delay', () => {
  assert.equal(
    backoffDelay(0, options, () => 0),
    125,
  );
  assert.equal(
    backoffDelay(0, options, () => 0.999_999),
    250,
  );
});

test('the ceiling doubles each attempt until it reaches the maximum', () => {
  const top = (attempt: number) => backoffDelay(attempt, options, () => 0.999_999_9);
  assert.deepEqual([1, 2, 3, 5, 6, 100].map(top), [500, 1000, 2000, 8000, 10_000, 10_000]);
  assert.equal(
    backoffDelay(10_000, options, () => 0.5),
    5063,
  );
});

test('every delay lies within [initial/2, min(max, initial*2^attempt)]', () => {
  const config = fc
    .tuple(fc.integer({ min: 1, max: 60_000 }), fc.integer({ min: 0, max: 600_000 }))
    .map(([initialDelayMs, extra]) => ({ initialDelayMs, maxDelayMs: initialDelayMs + extra }));
  const unit = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2000 }), config, unit, (attempt, o, r) => {
      const delay = backoffDelay(attempt, o, () => r);
      assert.ok(Number.isInteger(delay));
      assert.ok(delay >= o.initialDelayMs / 2, `${delay} below floor`);
      assert.ok(delay <= Math.min(o.maxDelayMs, o.initialDelayMs * 2 ** attempt), `${delay} above ceiling`);
    }),
    { numRuns: 5000 },
  );
});

test('no delay exceeds maxDelayMs, even when it is under half the initial delay', () => {
  const o = { initialDelayMs: 250, maxDelayMs: 100 };
  for (const r of [0, 0.5, 0.999]) assert.ok(backoffDelay(0, o, () => r) <= 100);
});

test('delays use the whole range, so reconnecting clients spread out', () => {
  const delays = new Set(Array.from({ length: 200 }, () => backoffDelay(4, options)));
  assert.ok(delays.size > 50);
});

test('an initial delay of 0 still backs off, from 1 ms up to the maximum, never NaN', () => {
  const o = { initialDelayMs: 0, maxDelayMs: 10_000 };
  const top = () => 1 - Number.EPSILON;
  assert.equal(backoffDelay(0, o, top), 1);
  assert.equal(backoffDelay(5, o, top), 32);
  for (const attempt of [100, 1024, 2000, 1e9, Number.POSITIVE_INFINITY]) {
    for (const r of [0, 0.5, 0.999]) {
      const delay = backoffDelay(attempt, o, () => r);
      assert.ok(Number.isInteger(delay) && delay >= 0 && delay <= 10_000, `${delay}`);
    }
    assert.equal(backoffDelay(attempt, o, top), 10_000);
  }
  assert.equal(backoffDelay(3, { initialDelayMs: 0, maxDelayMs: 0 }, top), 0, 'a maximum of 0: no wait');
});

test('negative, NaN and huge options still give a delay a timer keeps', () => {
  const top = () => 1 - Number.EPSILON;
  assert.equal(
    backoffDelay(5, { initialDelayMs: -100, maxDelayMs: 10_000 }, () => 0.5),
    16,
  );
  assert.equal(
    backoffDelay(5, { initialDelayMs: 250, maxDelayMs: -5 }, () => 0.5),
    0,
  );
  assert.equal(
    backoffDelay(5, { initialDelayMs: Number.NaN, maxDelayMs: 10_000 }, () => 0.5),
    16,
  );
  assert.equal(backoffDelay(3, { initialDelayMs: 1e308, maxDelayMs: Number.POSITIVE_INFINITY }, top), MAX_TIMER_MS);
  // An unbounded maximum: the ceiling stops at the longest delay a timer keeps.
  assert.equal(backoffDelay(60, { initialDelayMs: 250, maxDelayMs: Number.POSITIVE_INFINITY }, top), MAX_TIMER_MS);
  const any = fc.double();
  fc.assert(
    fc.property(
      fc.integer({ min: -10, max: 5000 }),
      any,
      any,
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (attempt, initialDelayMs, maxDelayMs, r) => {
        const delay = backoffDelay(attempt, { initialDelayMs, maxDelayMs }, () => r);
        assert.ok(Number.isInteger(delay) && delay >= 0 && delay <= MAX_TIMER_MS, `${delay}`);
        assert.ok(delay <= (maxDelayMs > 0 ? maxDelayMs : 0), `${delay} above ${maxDelayMs}`);
      },
    ),
    { numRuns: 5000 },
  );
});
