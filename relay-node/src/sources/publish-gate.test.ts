import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPublishGate, type GiveUpStage, MAX_QUEUED_PUBLISHES, PublishQueueFullError } from './publish-gate.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('publish gate', () => {
  it('refuses at once a publish past MAX_QUEUED_PUBLISHES waiting, counted dropped, and publishes the rest', async () => {
    const gate = createPublishGate();
    const stages: GiveUpStage[] = [];
    let stored = 0;
    const outcomes = await Promise.allSettled(
      Array.from({ length: MAX_QUEUED_PUBLISHES + 500 }, () =>
        gate.run(async () => void (await sleep(0), (stored += 1)), {
          capMs: 60_000,
          tooLong: () => new Error('cap'),
          onGiveUp: (stage) => void stages.push(stage),
        }),
      ),
    );
    // One running and MAX_QUEUED_PUBLISHES waiting; before, all 1,500 queued (and a plugin emitting
    // faster than the store grew the queue and the heap without bound).
    assert.equal(stored, MAX_QUEUED_PUBLISHES + 1);
    const refused = outcomes.filter((o) => o.status === 'rejected');
    assert.equal(refused.length, 499);
    assert.ok(refused.every((o) => (o as PromiseRejectedResult).reason instanceof PublishQueueFullError));
    assert.equal(gate.dropped, 499);
    assert.deepEqual(new Set(stages), new Set(['queued']));
    assert.equal(stages.length, 499);
  });

  it('counts a publish given up on that the store then refuses as lost, once', async () => {
    const gate = createPublishGate();
    const stages: GiveUpStage[] = [];
    let refuse: (error: Error) => void = () => {};
    const outcome = gate.run(() => new Promise<void>((_, reject) => (refuse = reject)), {
      capMs: 20,
      tooLong: () => new Error('cap'),
      onGiveUp: (stage) => void stages.push(stage),
    });
    await assert.rejects(outcome, /cap/);
    assert.equal(gate.abandoned, 1);
    assert.equal(gate.stuck, true);
    refuse(new Error('store refused (test double)'));
    await gate.idle();
    // Before, the refusal was ignored: the payload was lost, and counted nowhere.
    assert.deepEqual(stages, ['running', 'rejected']);
    assert.equal(gate.dropped, 1);
    assert.equal(gate.stuck, false);
  });

  it('counts what a driver reports lost, and restarts its counts without forgetting it is stuck', async () => {
    const gate = createPublishGate();
    gate.lost(3);
    assert.equal(gate.dropped, 3);
    void gate.run(() => new Promise<void>(() => {}), { capMs: 10, tooLong: () => new Error('cap') }).catch(() => {});
    await sleep(30);
    assert.equal(gate.abandoned, 1);
    gate.restartCounts();
    assert.equal(gate.abandoned, 0);
    assert.equal(gate.dropped, 0);
    assert.equal(gate.stuck, true);
  });
});
