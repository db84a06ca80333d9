import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  announcedBeatMs,
  BEAT_DIGEST,
  BELIEVED_FACTOR,
  believedBeatMs,
  MAX_BEAT_MS,
  memberTimeoutMs,
  nextBeatMs,
  SCALE_FROM,
  scalesRaisedInterval,
} from './member-cadence.ts';

const defaults = { intervalMs: 1_000, timeoutMs: 5_000 };

describe('member cadence', () => {
  it('keeps the configured interval up to SCALE_FROM members (and to the next whole interval)', () => {
    for (const members of [1, 2, 9, SCALE_FROM, 14]) assert.equal(nextBeatMs(defaults, members, true), 1_000);
  });

  it('beats less often beyond, in whole intervals (it beats on its ticks), up to MAX_BEAT_MS', () => {
    assert.equal(nextBeatMs(defaults, 15, true), 2_000);
    assert.equal(nextBeatMs(defaults, 25, true), 3_000);
    assert.equal(nextBeatMs(defaults, 1_000, true), 100_000);
    assert.equal(nextBeatMs(defaults, 1_000_000, true), MAX_BEAT_MS);
  });

  it('keeps the configured interval while any member it hears is an older relay', () => {
    assert.equal(nextBeatMs(defaults, 25, false), 1_000);
  });

  it('believes an announced interval up to BELIEVED_FACTOR times its own', () => {
    assert.equal(believedBeatMs(defaults, 3_000, 25), 3_000);
    assert.equal(believedBeatMs(defaults, 600_000, 25), BELIEVED_FACTOR * 3_000);
    assert.equal(believedBeatMs(defaults, 600_000, 5), BELIEVED_FACTOR * 1_000);
    // An older relay (nothing announced) beats every configured interval.
    assert.equal(believedBeatMs(defaults, undefined, 25), 1_000);
  });

  it('gives a member the same number of missed beats at its believed interval', () => {
    assert.equal(memberTimeoutMs(defaults, 3_000), 15_000);
    assert.equal(memberTimeoutMs(defaults, 100_000), 500_000);
    // Never sooner than the configured timeout (a member beating faster than this node).
    assert.equal(memberTimeoutMs(defaults, 200), 5_000);
    // A node configured otherwise counts beats by its own ratio (here 3 beats).
    assert.equal(memberTimeoutMs({ intervalMs: 2_000, timeoutMs: 6_000 }, 4_000), 12_000);
  });

  it('reads the announced interval, refusing what is not a positive integer', () => {
    assert.equal(announcedBeatMs({ [BEAT_DIGEST]: '2500', sources: 'abc' }), 2_500);
    assert.equal(announcedBeatMs({ sources: 'abc' }), undefined);
    for (const bad of ['0', '-5', '1.5', '', '1e9', ' 100', '0100', '12345678901'])
      assert.equal(announcedBeatMs({ [BEAT_DIGEST]: bad }), undefined, bad);
    assert.equal(announcedBeatMs({ [BEAT_DIGEST]: '9999999999' }), MAX_BEAT_MS);
  });

  it('flags a hand-raised interval only once the mesh scales it again', () => {
    const raised = { intervalMs: 5_000, timeoutMs: 25_000 };
    assert.equal(scalesRaisedInterval(raised, nextBeatMs(raised, 9, true)), false);
    assert.equal(scalesRaisedInterval(raised, nextBeatMs(raised, 25, true)), true);
    assert.equal(scalesRaisedInterval(raised, nextBeatMs(raised, 25, false)), false);
    // The defaults scale without a warning: that is the design.
    assert.equal(scalesRaisedInterval(defaults, nextBeatMs(defaults, 25, true)), false);
  });
});
