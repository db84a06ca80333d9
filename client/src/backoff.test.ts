import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
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
