import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import type { CatchUpPlan } from './catch-up-progress.ts';
import { createSync, cursorAt } from './sync.ts';
import { type Behaviour, endless, sleep, until, untilAborted, wait } from './sync-yield.fixture.ts';

// The turns of a catch-up that yields its slot (sync.ts): a turn resumed on the same connection
// goes on from where the last stopped (plan.skip), so long honest catch-ups end in about the time
// they need, and an endless member's turns stay longRunMs long. `run` is a test double of
// catchUpFrom (catch-up-skip.test.ts shows the real one honours plan.skip): each topic costs one
// request of D ms, and a topic the plan skips costs none, as in catchUpFrom.

const log = pino({ level: 'silent' });
const LOOKBACK = 1_000;
const D = 2; // one request's round trip

describe('catch-up turns after a yield', () => {
  let dir: string;
  let asked: { peer: string; after: string; at: number; skips: (topic: string) => boolean }[];
  let ended: { peer: string; at: number; error?: unknown }[];
  let behaviours: Map<string, Behaviour>;
  let t0: number;
  let clock: number;
  let requests: number;
  const make = (longRunMs: number) =>
    createSync({
      dataDir: dir,
      lookbackMs: LOOKBACK,
      log,
      now: () => clock,
      tickMs: 5,
      longRunMs,
      async run(peer, after, signal, plan) {
        const turn = asked.filter((a) => a.peer === peer).length;
        asked.push({ peer, after, at: performance.now() - t0, skips: (topic) => plan.skip?.(topic) ?? false });
        const counted: CatchUpPlan = { ...plan, finished: (topic) => (requests++, plan.finished(topic)) };
        try {
          const fresh = await (behaviours.get(peer) ?? (async () => 0))(after, signal, counted, turn);
          ended.push({ peer, at: performance.now() - t0 });
          return fresh;
        } catch (error) {
          ended.push({ peer, at: performance.now() - t0, error });
          throw error;
        }
      },
    });
  const runsOf = (peer: string) => asked.filter((a) => a.peer === peer);
  const onDisk = async () =>
    (JSON.parse(await readFile(join(dir, 'mesh-sync.json'), 'utf8')) as { peers: Record<string, number> }).peers;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'anode-yield-turns-'));
    asked = [];
    ended = [];
    behaviours = new Map();
    t0 = performance.now();
    clock = 1_100_000;
    requests = 0;
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('three long finite catch-ups of quiet topics end in about the time they take one after another', async () => {
    // A relay listing many topics quiet since the watermark (the case LONG_RUN_MS's doc names): each
    // topic costs one request whether read for the first time or asked again. Each turn asked again
    // for every topic earlier turns read: 26,144 requests for the 1,800 needed, ~28 s.
    const N = 600;
    const topics = Array.from({ length: N }, (_, i) => `t${String(i).padStart(5, '0')}`);
    const quiet: Behaviour = async (_after, signal, plan) => {
      for (const topic of topics) {
        if (plan.skip?.(topic)) continue;
        plan.from(topic);
        await wait(D, signal);
        plan.finished(topic);
      }
      return 0;
    };
    for (const p of ['p1', 'p2', 'p3']) behaviours.set(p, quiet);
    const sync = make(50);
    await sync.start();
    t0 = performance.now();
    for (const p of ['p1', 'p2', 'p3']) sync.peerUp(p);
    const alone = N * D * 1.3; // one catch-up's requests, with room for timer slack
    const done = () => ['p1', 'p2', 'p3'].every((p) => ended.some((e) => e.peer === p && e.error === undefined));
    await until(done, 3 * alone);
    const total = performance.now() - t0;
    const status = sync.status();
    await sync.stop();
    assert.ok(done(), `not all ended in ${total.toFixed(0)} ms: ${requests} requests, ${status.yields} yields`);
    assert.ok(requests <= 3 * N + 3, `${requests} requests for ${3 * N} topics (${status.yields} yields)`);
  });

  /** Lists every topic it holds (one request each unless skipped), then a new one for ever. */
  const holdingMember = (): Behaviour => {
    const name = (n: number) => `t${String(n).padStart(6, '0')}`;
    return async (_after, signal, plan) => {
      for (let n = 0; ; n++) {
        if (plan.skip?.(name(n))) continue;
        await wait(D, signal);
        plan.finished(name(n));
      }
    };
  };

  it('an endless member holds its slot no longer on later turns: a waiting peer starts within 3 × longRunMs', async () => {
    const LONG = 100;
    for (const p of ['e1', 'e2', 'e3']) behaviours.set(p, holdingMember());
    const sync = make(LONG);
    await sync.start();
    t0 = performance.now();
    for (const p of ['e1', 'e2', 'e3']) sync.peerUp(p); // three endless members take turns
    await sleep(2_000);
    const late = performance.now() - t0;
    sync.peerUp('p4'); // a finite, quick repair
    await until(() => runsOf('p4').length > 0, 5_000);
    const waited = (runsOf('p4')[0]?.at ?? Infinity) - late;
    const turns = (p: string) => runsOf(p).length;
    await sync.stop();
    assert.ok(
      waited < 3 * LONG,
      `p4 waited ${waited.toFixed(0)} ms (longRunMs ${LONG}); turns e1 ${turns('e1')} e2 ${turns('e2')} e3 ${turns('e3')}`,
    );
  });

  it('a member whose listing never sorts past where its last turn stopped still yields', async () => {
    // Each turn names topics that sort before the last turn's (z…, y…, x…): it never reads past its
    // progress, and was never asked to yield.
    const sinking: Behaviour = async (_after, signal, plan, turn) => {
      const prefix = String.fromCharCode(122 - turn);
      for (let n = 0; ; n++) {
        await wait(D, signal);
        plan.finished(`${prefix}${String(n).padStart(6, '0')}`);
      }
    };
    for (const p of ['e1', 'e2', 'e3']) behaviours.set(p, sinking);
    const sync = make(100);
    await sync.start();
    for (const p of ['e1', 'e2', 'e3']) sync.peerUp(p);
    await until(() => runsOf('e3').length > 0 && runsOf('e1').length > 1, 3_000); // e1 yielded once, to e3
    sync.peerUp('p4');
    await until(() => runsOf('p4').length > 0, 1_500);
    const status = sync.status();
    await sync.stop();
    assert.ok(runsOf('p4').length > 0, `p4 never started (yields ${status.yields})`);
  });

  it('a turn that skipped topics sets the watermark to its first turn’s start, never its own', async () => {
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    const skipped: string[][] = [];
    behaviours.set('e2', endless);
    behaviours.set('p3', endless);
    behaviours.set('e1', async (_after, signal, plan, turn) => {
      skipped.push(['a', 'b', 'c'].filter((t) => plan.skip?.(t)));
      if (turn > 0) {
        plan.finished('c');
        return 0;
      }
      plan.finished('a');
      plan.finished('b');
      return untilAborted(signal).catch((error: unknown) => {
        clock = 1_200_000; // the next turn starts later
        throw error;
      });
    });
    const sync = make(40);
    await sync.start();
    sync.peerUp('e1');
    await sleep(5);
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => ended.some((e) => e.peer === 'e1' && e.error === undefined));
    await sleep(30);
    await sync.stop();
    assert.deepEqual(skipped, [[], ['a', 'b']]);
    assert.equal((await onDisk()).e1, 1_100_000);
  });

  it('a turn skips no topic this connection has not read: a progress from before it is asked again', async () => {
    // Progress from an earlier connection: 'a' and 'b' were read whole then, and what reached the
    // peer since (no gossip between connections) is read by asking them again. A turn that yielded
    // before it asked them again left nothing read to skip.
    await writeFile(
      join(dir, 'mesh-sync.json'),
      JSON.stringify({
        peers: { e1: 1_000_000 },
        progress: { e1: { after: cursorAt(999_000), started: 1_050_000, through: 'b' } },
      }),
    );
    const finished: string[] = [];
    behaviours.set('e2', endless);
    behaviours.set('p3', endless);
    behaviours.set('e1', async (_after, signal, plan) => {
      for (const topic of ['a', 'b', 'c', 'd']) {
        if (plan.skip?.(topic)) continue;
        await wait(topic <= 'b' ? 60 : D, signal); // asked again: slower than longRunMs
        plan.finished(topic);
        finished.push(topic);
      }
      return untilAborted(signal);
    });
    const sync = make(40);
    await sync.start();
    sync.peerUp('e1');
    await sleep(5);
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => runsOf('e1').length >= 2, 3_000);
    await sync.stop();
    const [first, second] = runsOf('e1');
    assert.deepEqual(
      ['a', 'b'].filter((t) => first?.skips(t)),
      [],
      'the first turn asks again what the file says was read',
    );
    for (const topic of ['a', 'b', 'c', 'd'].filter((t) => second?.skips(t) ?? false)) {
      assert.ok(finished.includes(topic), `the second turn skips ${topic}, which no turn on this connection read`);
    }
    assert.ok(second, 'e1 yielded once it had read past the progress');
  });

  it('a resync asked while a yielded catch-up waits for its next turn is read, in topics read whole too', async () => {
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    // Where each run after the resync asks 'a' and 'b' from (undefined: skipped).
    const from: (string | undefined)[][] = [];
    let resynced = false;
    behaviours.set('e2', endless);
    behaviours.set('p3', endless);
    behaviours.set('e1', async (_after, signal, plan, turn) => {
      if (resynced) from.push(['a', 'b'].map((t) => (plan.skip?.(t) ? undefined : plan.from(t))));
      if (turn > 0) return 0;
      plan.finished('a');
      plan.finished('b');
      return untilAborted(signal).catch((error: unknown) => {
        clock = 1_200_000;
        throw error;
      });
    });
    const sync = make(40);
    await sync.start();
    sync.peerUp('e1');
    await sleep(5);
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => sync.status().yields >= 1);
    // It waits in the queue: what went missing from 1_250_000 on is after its first turn read 'a'
    // and 'b' whole, and gossip did not bring it.
    resynced = true;
    sync.resync(1_250_000, 'e1');
    await until(() => ended.filter((e) => e.peer === 'e1' && e.error === undefined).length >= 2, 1_000);
    await sync.stop();
    const reread = from.some((run) => run.every((at) => at !== undefined && at <= cursorAt(1_250_000 - LOOKBACK)));
    assert.ok(reread, `no run asked 'a' and 'b' again from 1_249_000 or before: ${JSON.stringify(from)}`);
  });

  it('G1: the peer drops and comes back while its run yields: the resync is read on the new connection', async () => {
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    const sync = make(50);
    behaviours.set('e1', async (_after, signal, plan, turn) => {
      if (turn > 0) return 0;
      plan.finished('a');
      await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
      sync.peerDown('e1');
      sync.peerUp('e1'); // back before the run has wound down
      await sleep(30);
      throw signal.reason;
    });
    behaviours.set('e2', endless);
    behaviours.set('p3', endless);
    await sync.start();
    sync.peerUp('e1');
    await sleep(10);
    sync.resync(950_000, 'e1');
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => runsOf('e1').length === 2);
    await sync.stop();
    assert.equal(runsOf('e1')[1]?.after, cursorAt(950_000 - LOOKBACK));
  });

  it('G2: after the yielded catch-up ends well, the resync runs and the watermark on disk returns to normal', async () => {
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    const sync = make(50);
    behaviours.set('e1', async (after, signal, plan, turn) => (turn === 0 ? endless(after, signal, plan, turn) : 0));
    behaviours.set('e2', endless);
    behaviours.set('p3', async () => 0);
    await sync.start();
    sync.peerUp('e1');
    await sleep(10);
    sync.resync(950_000, 'e1');
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => ended.filter((e) => e.peer === 'e1' && e.error === undefined).length === 2);
    // Its save, however slow the machine.
    let disk = await onDisk();
    for (const end = performance.now() + 2_000; disk.e1 !== 1_100_000 && performance.now() < end;) {
      await sleep(10);
      disk = await onDisk();
    }
    await sync.stop();
    assert.deepEqual(
      runsOf('e1').map((r) => r.after),
      [cursorAt(999_000), cursorAt(999_000), cursorAt(949_000)],
    );
    assert.equal(disk.e1, 1_100_000, 'the resync stays in mesh-sync.json after it ran');
  });

  it('G3: a resync asked during a long catch-up, before its start point, is on disk at once (a kill then)', async () => {
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000, s: 1_000_000 } }));
    const sync = make(50);
    behaviours.set('e1', endless); // a long catch-up (a joining node's), one peer
    await sync.start();
    sync.peerUp('e1');
    await sleep(10);
    sync.resync(950_000, 'e1'); // a notice: e1 could not deliver from 950_000
    await sleep(200); // ticks, no other save
    const disk = await onDisk().catch(() => ({}) as Record<string, number>);
    await sync.stop();
    assert.ok(
      disk.e1 !== undefined && disk.e1 <= 950_000,
      `on disk ${JSON.stringify(disk)}: a kill now loses 949_000..999_000`,
    );
  });
});
