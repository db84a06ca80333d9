import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { planCatchUp } from './catch-up-progress.ts';
import { createSync, cursorAt } from './sync.ts';

const LOOKBACK = 1_000;
const STARTED = 5_000_000;
const C = cursorAt(1_000); // a cursor in topic b, far older than the run

describe('catch-up progress', { timeout: 30_000 }, () => {
  it('resumes an interrupted catch-up: topics read whole from its start minus the lookback, the one being read from where it was', () => {
    const first = planCatchUp('0', STARTED, LOOKBACK);
    assert.equal(first.plan.from('a'), '0');
    first.plan.finished('a');
    first.plan.finished('b');
    first.plan.reached('c', C);
    const kept = first.current();
    assert.deepEqual(kept, { after: '0', started: STARTED, through: 'b', topic: 'c', cursor: C });

    const next = planCatchUp('0', STARTED + 60_000, LOOKBACK, kept);
    assert.equal(next.plan.from('a'), cursorAt(STARTED - LOOKBACK));
    assert.equal(next.plan.from('b'), cursorAt(STARTED - LOOKBACK));
    assert.equal(next.plan.from('c'), C);
    assert.equal(next.plan.from('d'), '0', 'a topic it never reached: everything');
    // A partly read topic whose cursor is within the lookback starts at the lookback instead.
    const recent = planCatchUp('0', STARTED, LOOKBACK, { ...kept!, cursor: cursorAt(STARTED - 10) });
    assert.equal(recent.plan.from('c'), cursorAt(STARTED - LOOKBACK));
  });

  it('keeps the farther of two interrupted runs, and drops progress a moved-back watermark outdates', () => {
    const kept = { after: '0', started: STARTED, through: 'm' };
    const shorter = planCatchUp('0', STARTED + 1, LOOKBACK, kept);
    shorter.plan.finished('c');
    assert.equal(shorter.current(), kept, 'a run that failed earlier keeps what the first one had');
    const longer = planCatchUp('0', STARTED + 2, LOOKBACK, kept);
    longer.plan.finished('m');
    longer.plan.reached('n', C);
    assert.deepEqual(longer.current(), { after: '0', started: STARTED + 2, through: 'm', topic: 'n', cursor: C });
    // A resync moved the watermark back: the progress was read from later, so every topic again.
    const back = planCatchUp(cursorAt(1), STARTED + 3, LOOKBACK, { ...kept, after: cursorAt(STARTED) });
    assert.equal(back.plan.from('a'), cursorAt(1));
    assert.equal(back.current(), undefined);
  });

  it('is kept in mesh-sync.json across a restart, and forgotten once a catch-up succeeds', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-progress-'));
    const syncs: ReturnType<typeof createSync>[] = [];
    try {
      let clock = STARTED;
      const asked: Record<string, string>[] = [];
      let fail = true;
      const make = () => {
        const sync = createSync({
          dataDir: dir,
          lookbackMs: LOOKBACK,
          log: pino({ level: 'silent' }),
          now: () => clock,
          async run(_peer, _after, _signal, plan) {
            asked.push({ a: plan.from('a'), b: plan.from('b'), c: plan.from('c') });
            if (!fail) return 0;
            fail = false;
            plan.finished('a');
            plan.reached('b', C);
            throw new Error('the relay closed the connection: its data limit was reached');
          },
        });
        syncs.push(sync);
        return sync;
      };
      const first = make();
      await first.start();
      first.peerUp('p1');
      await new Promise((resolve) => setTimeout(resolve, 20));
      first.peerDown('p1');
      await first.stop();

      clock += 60_000;
      const second = make();
      await second.start();
      second.peerUp('p1');
      await second.firstSync;
      assert.deepEqual(asked, [
        { a: '0', b: '0', c: '0' },
        { a: cursorAt(STARTED - LOOKBACK), b: C, c: '0' },
      ]);
      second.peerDown('p1');
      await second.stop();

      const third = make();
      await third.start();
      third.peerUp('p1');
      await third.firstSync;
      const after = cursorAt(STARTED + 60_000 - LOOKBACK);
      assert.deepEqual(asked.at(-1), { a: after, b: after, c: after }, 'the watermark alone, once caught up');
      await third.stop();
    } finally {
      await Promise.all(syncs.map((sync) => sync.stop()));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
