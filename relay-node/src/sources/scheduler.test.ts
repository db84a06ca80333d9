import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createScheduler } from './scheduler.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('scheduler', () => {
  it('runs jobs at their due time, earliest first, never more than the concurrency', async () => {
    const scheduler = createScheduler({ concurrency: 2 });
    const order: string[] = [];
    let running = 0;
    let peak = 0;
    const job = (name: string) => async () => {
      running += 1;
      peak = Math.max(peak, running);
      order.push(name);
      await sleep(10);
      running -= 1;
    };
    const t = Date.now();
    scheduler.schedule('c', t + 30, job('c'));
    scheduler.schedule('a', t, job('a'));
    scheduler.schedule('b', t + 1, job('b'));
    scheduler.schedule('d', t + 2, job('d'));
    await sleep(80);
    assert.deepEqual(order, ['a', 'b', 'd', 'c']);
    assert.equal(peak, 2);
    scheduler.stop();
  });

  it('replaces and cancels pending runs by key', async () => {
    const scheduler = createScheduler({ concurrency: 4 });
    const ran: string[] = [];
    scheduler.schedule('x', Date.now() + 5, async () => void ran.push('x1'));
    scheduler.schedule('x', Date.now() + 10, async () => void ran.push('x2'));
    scheduler.schedule('y', Date.now() + 5, async () => void ran.push('y'));
    assert.ok(scheduler.dueOf('y') !== undefined);
    scheduler.cancel('y');
    assert.equal(scheduler.dueOf('y'), undefined);
    await sleep(40);
    assert.deepEqual(ran, ['x2']);
    scheduler.stop();
  });

  it('keeps serving others while hanging jobs hold some slots', async () => {
    const scheduler = createScheduler({ concurrency: 3 });
    let released = () => {};
    const hang = new Promise<void>((r) => (released = r));
    scheduler.schedule('hang-1', Date.now(), () => hang);
    scheduler.schedule('hang-2', Date.now(), () => hang);
    let quick = 0;
    const tick = () => {
      quick += 1;
      if (quick < 20) scheduler.schedule('quick', Date.now() + 1, async () => tick());
    };
    scheduler.schedule('quick', Date.now(), async () => tick());
    await sleep(100);
    assert.equal(quick, 20);
    assert.equal(scheduler.inFlight, 2);
    released();
    await sleep(5);
    assert.equal(scheduler.inFlight, 0);
    scheduler.stop();
  });

  it('keeps working when a job rejects', async () => {
    const scheduler = createScheduler({ concurrency: 1 });
    let ok = false;
    scheduler.schedule('bad', Date.now(), async () => {
      throw new Error('boom');
    });
    scheduler.schedule('good', Date.now() + 1, async () => void (ok = true));
    await sleep(20);
    assert.ok(ok);
    scheduler.stop();
  });
});

describe('scheduler lanes', () => {
  it('gives the penalty lane at most a quarter of the slots', async () => {
    const scheduler = createScheduler({ concurrency: 8 });
    let released = () => {};
    const hang = new Promise<void>((r) => (released = r));
    let started = 0;
    for (let i = 0; i < 20; i += 1) {
      scheduler.schedule(`bad-${i}`, Date.now(), () => ((started += 1), hang), 'penalty');
    }
    let quick = 0;
    for (let i = 0; i < 50; i += 1) scheduler.schedule(`ok-${i}`, Date.now() + 1, async () => void (quick += 1));
    await sleep(30);
    assert.equal(quick, 50);
    assert.equal(started, 2);
    assert.equal(scheduler.inFlight, 2);
    released();
    await sleep(10);
    assert.equal(started, 20);
    scheduler.stop();
  });

  it('moves a normal job that runs too long to the penalty lane, freeing its slot', async () => {
    const scheduler = createScheduler({ concurrency: 4, demoteAfterMs: 20 });
    let released = () => {};
    const hang = new Promise<void>((r) => (released = r));
    for (let i = 0; i < 4; i += 1) scheduler.schedule(`new-${i}`, Date.now(), () => hang);
    let quick = 0;
    scheduler.schedule('ok', Date.now() + 1, async () => void (quick += 1));
    await sleep(10);
    assert.equal(quick, 0, 'all four slots are busy');
    await sleep(40);
    assert.equal(quick, 1, 'demoted jobs gave their slots back');
    released();
    scheduler.stop();
  });
});
