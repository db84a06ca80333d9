import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createPublishGate,
  type GiveUpStage,
  gaveUp,
  MAX_QUEUED_PUBLISHES,
  PublishQueueFullError,
} from './publish-gate.ts';

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

  it('tags the errors it gave a publish up with (its cap, behind a stuck one, a full queue), not the publish’s own failure', async () => {
    const errorOf = (outcome: Promise<void>) =>
      outcome.then(
        () => undefined,
        (error: unknown) => error,
      );
    const cap = { capMs: 20, tooLong: () => new Error('cap') };
    const gate = createPublishGate();
    const refused = await errorOf(gate.run(() => Promise.reject(new Error('store refused (test double)')), cap));
    assert.equal(gaveUp(refused), false, 'a store refusal is the caller’s to count');
    const running = errorOf(gate.run(() => new Promise<void>(() => {}), cap));
    const waiting = Array.from({ length: MAX_QUEUED_PUBLISHES }, () => errorOf(gate.run(async () => {}, cap)));
    const full = await errorOf(gate.run(async () => {}, cap));
    assert.ok(full instanceof PublishQueueFullError);
    const errors = [full, await running, ...(await Promise.all(waiting))];
    assert.equal(errors.filter(gaveUp).length, MAX_QUEUED_PUBLISHES + 2);
  });

  it('counts nothing of an earlier epoch once its counts restart: a late refusal, a queued drop, a late give-up', async () => {
    const gate = createPublishGate();
    const stages: GiveUpStage[] = [];
    const onGiveUp = (stage: GiveUpStage) => void stages.push(stage);
    let refuse: (error: Error) => void = () => {};
    const running = gate.run(() => new Promise<void>((_, reject) => (refuse = reject)), {
      capMs: 20,
      tooLong: () => new Error('cap'),
      onGiveUp,
    });
    await assert.rejects(running, /cap/);
    const old = gate.epoch;
    const queued = gate.run(async () => {}, { capMs: 20, tooLong: () => new Error('cap'), onGiveUp });
    gate.restartCounts();
    assert.notEqual(gate.epoch, old);
    await assert.rejects(queued, /cap/); // dropped behind the stuck one
    refuse(new Error('store refused (test double)')); // the abandoned one, refused at last
    await gate.idle();
    // A publish of the old incarnation sent after the restart (an old runtime's), given up on.
    const late = gate.run(() => new Promise<void>(() => {}), {
      capMs: 20,
      tooLong: () => new Error('cap'),
      onGiveUp,
      epoch: old,
    });
    await assert.rejects(late, /cap/);
    // Before, the new incarnation counted the old one's queued drop and refusal (dropped 2).
    assert.deepEqual(stages, ['running']);
    assert.equal(gate.abandoned, 0);
    assert.equal(gate.dropped, 0);
    assert.equal(gate.stuck, true);
  });
});
