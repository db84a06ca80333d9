import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { createSync, cursorAt } from './sync.ts';
import { type Behaviour, endless, sleep, until, untilAborted } from './sync-yield.fixture.ts';

/**
 * Two members whose catch-ups never end (a topic listing naming a new empty topic on every page)
 * held both catch-up slots for ever, so every other peer's repair waited. Once both have run
 * longRunMs and a peer waits, the one that has held its slot longest yields it (sync.ts, yieldSlot).
 * `run` is a test double of the network catch-up (catch-up.ts's catchUpFrom): like it, an endless
 * one ends only when its signal aborts, rejecting with the signal's reason.
 */
const log = pino({ level: 'silent' });
const LOOKBACK = 1_000;
const LONG = 100;

describe('catch-up slots held by runs that never end', () => {
  let dir: string;
  let clock: number;
  let asked: { peer: string; after: string; at: number; from: Record<string, string> }[];
  let ended: { peer: string; at: number; error?: unknown }[];
  let behaviours: Map<string, Behaviour>;
  let t0: number;
  const make = () =>
    createSync({
      dataDir: dir,
      lookbackMs: LOOKBACK,
      log,
      now: () => clock,
      tickMs: 5,
      longRunMs: LONG,
      async run(peer, after, signal, plan) {
        const from = { a: plan.from('a'), b: plan.from('b'), c: plan.from('c') };
        const turn = asked.filter((a) => a.peer === peer).length;
        asked.push({ peer, after, at: performance.now() - t0, from });
        try {
          const fresh = await (behaviours.get(peer) ?? (async () => 0))(after, signal, plan, turn);
          ended.push({ peer, at: performance.now() - t0 });
          return fresh;
        } catch (error) {
          ended.push({ peer, at: performance.now() - t0, error });
          throw error;
        }
      },
    });
  const runsOf = (peer: string) => asked.filter((a) => a.peer === peer);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'anode-sync-yield-'));
    clock = 1_100_000;
    asked = [];
    ended = [];
    behaviours = new Map([
      ['e1', endless],
      ['e2', endless],
    ]);
    t0 = performance.now();
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('starts a third peer within about twice longRunMs of two endless catch-ups, and runs the yielded one again', async () => {
    const sync = make();
    await sync.start();
    t0 = performance.now();
    sync.peerUp('e1');
    sync.peerUp('e2'); // beside e1 once e1 has run LONG
    sync.peerUp('p3'); // before, it waited for ever
    await until(() => runsOf('p3').length > 0 && runsOf('e1').length > 1, 5 * LONG);
    const third = runsOf('p3')[0];
    assert.ok(third, 'the third peer never started: two endless catch-ups hold both slots');
    // e2 starts at LONG, p3 when e2 has run LONG too: 2 × LONG, with room for timers on a busy machine.
    assert.ok(third.at < 3 * LONG, `the third peer started only after ${third.at.toFixed(0)} ms`);
    assert.equal(runsOf('e1').length, 2, 'e1 gave its slot up (it had held it longest) and runs again');
    assert.equal(runsOf('e2').length, 1, 'e2 keeps its slot');
    assert.equal(sync.status().yields, 1);
    assert.equal(sync.status().failures, 0, 'a yield is no failure');
    await sync.stop();
  });

  it('resumes a yielded catch-up from its progress, keeps its watermark and a resync asked while it ran', async () => {
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000, e2: 1_000_000 } }));
    const reading = cursorAt(1_050_000); // where the first run got in topic b
    let release = () => {};
    behaviours.set('e1', async (_after, signal, plan, turn) => {
      if (turn === 1) return new Promise<number>((resolve) => (release = () => resolve(0)));
      if (turn > 1) return 0;
      plan.finished('a');
      plan.reached('b', reading);
      return untilAborted(signal);
    });
    const sync = make();
    await sync.start();
    t0 = performance.now();
    sync.peerUp('e1');
    await sleep(10);
    sync.resync(1_080_000, 'e1'); // e1's gossip since then was lost, while its catch-up reads
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => runsOf('e1').length > 1, 5 * LONG);
    await sleep(20); // its save
    const after = cursorAt(1_000_000 - LOOKBACK);
    const onDisk = JSON.parse(await readFile(join(dir, 'mesh-sync.json'), 'utf8'));
    assert.equal(onDisk.peers.e1, 1_000_000, 'the watermark did not move past what e1 has not read');
    assert.deepEqual(onDisk.progress.e1, { after, started: 1_100_000, through: 'a', topic: 'b', cursor: reading });
    const [first, second] = runsOf('e1');
    assert.deepEqual({ after: first?.after, from: first?.from }, { after, from: { a: after, b: after, c: after } });
    assert.ok(second, 'the yielded catch-up never ran again');
    assert.deepEqual(
      { after: second.after, from: second.from },
      {
        after,
        // Read whole: only what came since the yielded run started; b from where it stopped; c all.
        from: { a: cursorAt(1_100_000 - LOOKBACK), b: reading, c: after },
      },
      'the resumed run goes on from its progress, not from the watermark',
    );
    release(); // the resumed run ends the catch-up: the resync asked during the first runs now
    await sleep(20);
    assert.equal(runsOf('e1').at(-1)?.after, cursorAt(1_080_000 - LOOKBACK));
    await sync.stop();
  });

  it('does not back off a yielded catch-up: it runs again as soon as a slot frees, and a later failure waits the first delay', async () => {
    let fail = () => {};
    behaviours.set('e1', async (_after, signal, _plan, turn) => {
      if (turn === 0) return endless(_after, signal, _plan, turn);
      if (turn === 1) {
        await new Promise<void>((resolve) => (fail = resolve));
        throw new Error('peer went away');
      }
      return 0;
    });
    const sync = make();
    await sync.start();
    t0 = performance.now();
    sync.peerUp('e1');
    sync.peerUp('e2');
    sync.peerUp('p3'); // ends at once, freeing the slot
    await until(() => runsOf('e1').length > 1, 5 * LONG);
    const yieldedAt = ended.find((e) => e.peer === 'e1')?.at;
    const [, second] = runsOf('e1');
    assert.ok(yieldedAt !== undefined && second, 'e1 did not yield and run again');
    // A failure's first retry waits 500 ms.
    assert.ok(second.at - yieldedAt < 300, `e1 ran again ${(second.at - yieldedAt).toFixed(0)} ms after yielding`);
    assert.equal(sync.status().failures, 0);
    fail(); // a real failure now: attempts must be 0, so its retry waits 500 ms, not 1 s
    const failedAt = performance.now() - t0;
    await until(() => runsOf('e1').length > 2);
    const third = runsOf('e1')[2];
    assert.ok(third, 'the failed catch-up was not retried');
    const delay = third.at - failedAt;
    assert.ok(delay >= 450 && delay < 950, `retried after ${delay.toFixed(0)} ms: 500 ms unless a yield counted`);
    assert.equal(sync.status().failures, 1);
    await sync.stop();
  });

  it("keeps a resync asked during a yielded run for the peer's next connection", async () => {
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    const sync = make();
    await sync.start();
    t0 = performance.now();
    sync.peerUp('e1');
    await sleep(10);
    sync.resync(950_000, 'e1'); // before where e1's run reads from (999_000)
    sync.peerUp('e2');
    sync.peerUp('p3');
    behaviours.set('p3', endless); // e1 stays queued
    await until(() => sync.status().yields === 1);
    assert.equal(sync.status().yields, 1, 'e1 never yielded its slot');
    assert.equal(runsOf('e1').length, 1, 'e1 waits in the queue');
    sync.peerDown('e1'); // while its catch-up waits in the queue
    behaviours.set('e1', async () => 0);
    sync.peerUp('e1');
    await until(() => runsOf('e1').length === 2); // e2 yields to it
    assert.equal(runsOf('e1').at(-1)?.after, cursorAt(950_000 - LOOKBACK), 'gap 949_000..999_000');
    await sync.stop();
  });
});
