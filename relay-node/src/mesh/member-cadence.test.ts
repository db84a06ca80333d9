import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMemberCadence, SCALE_FROM } from './member-cadence.ts';

describe('member cadence', () => {
  it('keeps the configured interval and timeout up to SCALE_FROM members', () => {
    const cadence = createMemberCadence(1_000, 5_000);
    for (const members of [1, 2, 9, SCALE_FROM]) {
      cadence.update(members, 0);
      assert.equal(cadence.beatEveryMs(), 1_000);
      assert.equal(cadence.timeoutMs(), 5_000);
      assert.equal(cadence.factor(), 1);
    }
  });

  it('grows both with the member count beyond, keeping the beats per timeout', () => {
    const cadence = createMemberCadence(1_000, 5_000);
    cadence.update(25, 0);
    assert.equal(cadence.beatEveryMs(), 2_500);
    assert.equal(cadence.timeoutMs(), 12_500);
    cadence.update(1_000, 1_000);
    assert.equal(cadence.beatEveryMs(), 100_000);
    assert.equal(cadence.timeoutMs(), 500_000);
    assert.equal(cadence.timeoutMs() / cadence.beatEveryMs(), 5);
  });

  it('keeps the longer timeout for one longer timeout after the count drops', () => {
    const cadence = createMemberCadence(1_000, 5_000);
    cadence.update(30, 0); // beats every 3 s, timeout 15 s
    cadence.update(10, 1_000); // half the mesh left: this node beats every second again…
    assert.equal(cadence.beatEveryMs(), 1_000);
    // …but the members still beating every 3 s (their counts not yet updated) are not dropped.
    assert.equal(cadence.timeoutMs(), 15_000);
    cadence.update(10, 14_000);
    assert.equal(cadence.timeoutMs(), 15_000);
    cadence.update(10, 15_001);
    assert.equal(cadence.timeoutMs(), 5_000);
  });

  it('takes a rising count at once', () => {
    const cadence = createMemberCadence(1_000, 5_000);
    cadence.update(5, 0);
    cadence.update(40, 500);
    assert.equal(cadence.timeoutMs(), 20_000);
    assert.equal(cadence.beatEveryMs(), 4_000);
  });
});
