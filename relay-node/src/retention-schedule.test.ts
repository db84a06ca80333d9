import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SWEEP_AGAIN_AFTER, SWEEP_CHECK_MS, sweepSchedule } from './retention-schedule.ts';

describe('retention sweep schedule', () => {
  it('runs every interval when nothing is behind', () => {
    const schedule = sweepSchedule({ intervalMs: 60_000, maxMessages: 100_000 }, 0);
    assert.equal(schedule.checkMs, SWEEP_CHECK_MS);
    assert.equal(schedule.due(59_999, 10), false);
    assert.equal(schedule.due(60_000, 10), true);
    schedule.started(60_000, 10);
    schedule.finished(SWEEP_AGAIN_AFTER - 1);
    assert.equal(schedule.due(61_000, 20), false, 'a small sweep waits for the interval');
    assert.equal(schedule.due(120_000, 20), true);
  });

  it('runs early once a topic limit of messages was stored since the last sweep', () => {
    const schedule = sweepSchedule({ intervalMs: 60_000, maxMessages: 1_000 }, 0);
    assert.equal(schedule.due(1_000, 999), false);
    assert.equal(schedule.due(1_000, 1_000), true);
    schedule.started(1_000, 1_000);
    schedule.finished(0);
    assert.equal(schedule.due(2_000, 1_999), false, 'counted from the last sweep');
    assert.equal(schedule.due(2_000, 2_000), true);
  });

  it('runs again after a sweep that deleted a lot, until one deletes little', () => {
    const schedule = sweepSchedule({ intervalMs: 60_000, maxMessages: 0 }, 0);
    schedule.started(60_000, 5_000_000);
    assert.equal(schedule.due(61_000, 5_000_000), false, 'not while the sweep is running');
    schedule.finished(SWEEP_AGAIN_AFTER);
    assert.equal(schedule.due(61_000, 5_000_000), true);
    schedule.started(61_000, 5_000_000);
    schedule.finished(10);
    assert.equal(schedule.due(62_000, 9_000_000), false, 'no count limit: only the interval');
  });

  it('checks at least as often as the interval', () => {
    assert.equal(sweepSchedule({ intervalMs: 50, maxMessages: 5 }, 0).checkMs, 50);
  });
});
