import assert from 'node:assert/strict';
import { it } from 'node:test';
import { backoffMs } from './backoff.ts';

it('doubles from the base up to the cap, jittered between half the ceiling and the ceiling', () => {
  // [attempt, random(), expected wait] with base 50 ms and cap 1 s.
  const cases: [number, number, number][] = [
    [0, 0, 25],
    [0, 1, 50],
    [3, 1, 400],
    [10, 1, 1_000],
    [10, 0, 500],
  ];
  for (const [attempt, r, expected] of cases)
    assert.equal(
      backoffMs(attempt, 50, 1_000, () => r),
      expected,
    );
  for (let attempt = 0; attempt < 20; attempt++) {
    const wait = backoffMs(attempt, 250, 10_000);
    const ceiling = Math.min(10_000, 250 * 2 ** attempt);
    assert.ok(wait >= ceiling / 2 && wait <= ceiling, `attempt ${attempt}: ${wait}`);
  }
});
