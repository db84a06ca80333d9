import assert from 'node:assert/strict';
import { it } from 'node:test';
import { backoffMs } from './backoff.ts';

it('doubles from the base up to the cap, jittered between half the ceiling and the ceiling', () => {
  assert.equal(
    backoffMs(0, 50, 1_000, () => 0),
    25,
  );
  assert.equal(
    backoffMs(0, 50, 1_000, () => 1),
    50,
  );
  assert.equal(
    backoffMs(3, 50, 1_000, () => 1),
    400,
  );
  assert.equal(
    backoffMs(10, 50, 1_000, () => 1),
    1_000,
  );
  assert.equal(
    backoffMs(10, 50, 1_000, () => 0),
    500,
  );
  for (let attempt = 0; attempt < 20; attempt++) {
    const wait = backoffMs(attempt, 250, 10_000);
    const ceiling = Math.min(10_000, 250 * 2 ** attempt);
    assert.ok(wait >= ceiling / 2 && wait <= ceiling, `attempt ${attempt}: ${wait}`);
  }
});
