import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { createSync, cursorAt } from './sync.ts';
import { type Behaviour, endless, sleep, until, wait } from './sync-yield.fixture.ts';

const log = pino({ level: 'silent' });
const LOOKBACK = 1_000;

describe('catch-up yields: no resync lost, no starvation', () => {
  let dir: string;
  let asked: { peer: string; after: string; at: number }[];
  let ended: { peer: string; at: number; error?: unknown }[];
  let behaviours: Map<string, Behaviour>;
  let t0: number;
  const make = (longRunMs: number) =>
    createSync({
      dataDir: dir,
      lookbackMs: LOOKBACK,
      log,
      now: () => 1_100_000,
      tickMs: 5,
      longRunMs,
      async run(peer, after, signal, plan) {
        const turn = asked.filter((a) => a.peer === peer).length;
        asked.push({ peer, after, at: performance.now() - t0 });
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
    dir = await mkdtemp(join(tmpdir(), 'anode-yield-review-'));
    asked = [];
    ended = [];
    behaviours = new Map();
    t0 = performance.now();
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  // e1's first run: endless, but when its slot is aborted a page's store write is still in flight
  // (catchUpFrom awaits ingest, then throwIfAborted): it ends 30 ms later.
  const slowToYield =
    (onAbort: () => void): Behaviour =>
    async (_after, signal, plan, turn) => {
      if (turn > 0) return 0;
      plan.finished('a');
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      onAbort();
      await sleep(30);
      throw signal.reason;
    };

  it('A: a resync asked during a run survives the peer disconnecting while that run yields', async () => {
    const LONG = 50;
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    const sync = make(LONG);
    behaviours.set(
      'e1',
      slowToYield(() => sync.peerDown('e1')),
    ); // the peer drops while its run yields
    behaviours.set('e2', endless);
    behaviours.set('p3', endless);
    await sync.start();
    sync.peerUp('e1');
    await sleep(10);
    sync.resync(950_000, 'e1'); // before e1's run's start point (999_000 with the lookback)
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => ended.some((e) => e.peer === 'e1'));
    await sleep(20);
    assert.equal(sync.status().yields, 1, 'e1 yielded');
    sync.peerUp('e1'); // it comes back
    await until(() => runsOf('e1').length === 2, 10 * LONG);
    assert.equal(runsOf('e1')[1]?.after, cursorAt(950_000 - LOOKBACK), 'the resync was lost: gap 949_000..999_000');
    await sync.stop();
  });

  it('B: a resync asked during a run survives stop() while that run yields (mesh-sync.json)', async () => {
    const LONG = 50;
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    const sync = make(LONG);
    let stopping: Promise<void> | undefined;
    behaviours.set(
      'e1',
      slowToYield(() => (stopping = sync.stop())),
    );
    behaviours.set('e2', endless);
    behaviours.set('p3', endless);
    await sync.start();
    sync.peerUp('e1');
    await sleep(10);
    sync.resync(950_000, 'e1');
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => stopping !== undefined);
    await stopping;
    const onDisk = JSON.parse(await readFile(join(dir, 'mesh-sync.json'), 'utf8'));
    assert.ok(onDisk.peers.e1 <= 950_000, `watermark on disk ${onDisk.peers.e1}: the resync from 950_000 was lost`);
  });

  it('C: three long but finite catch-ups (each needs ~1.8 s) all end', { timeout: 20_000 }, async () => {
    const LONG = 200;
    const D = 10; // one request's round trip
    const topics = Array.from({ length: 60 }, (_, i) => `t${String(i).padStart(2, '0')}`);
    // As catchUpFrom: every topic costs at least one request; one not read before three pages.
    const finite: Behaviour = async (after, signal, plan) => {
      for (const topic of topics) {
        if (plan.skip?.(topic)) continue; // read whole by an earlier turn: catchUpFrom asks nothing
        const pages = plan.from(topic) === after ? 3 : 1;
        for (let i = 0; i < pages; i++) await wait(D, signal);
        plan.finished(topic);
      }
      return 0;
    };
    for (const p of ['p1', 'p2', 'p3']) behaviours.set(p, finite);
    const sync = make(LONG);
    await sync.start();
    t0 = performance.now();
    for (const p of ['p1', 'p2', 'p3']) sync.peerUp(p);
    const done = () => ['p1', 'p2', 'p3'].every((p) => ended.some((e) => e.peer === p && e.error === undefined));
    await until(done, 12_000);
    const status = sync.status();
    await sync.stop();
    assert.ok(
      done(),
      `not all caught up after 12 s: runs ${status.runs}, yields ${(status as { yields?: number }).yields}, ` +
        `ended ok: ${ended.filter((e) => !e.error).map((e) => e.peer)}`,
    );
  });

  it('E: while a yielded run waits in the queue, mesh-sync.json holds the resync asked during it (a kill then)', async () => {
    const LONG = 50;
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    const sync = make(LONG);
    for (const p of ['e1', 'e2', 'p3']) behaviours.set(p, endless);
    await sync.start();
    sync.peerUp('e1');
    await sleep(10);
    sync.resync(950_000, 'e1');
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => sync.status().yields === 1);
    await sleep(20); // its save; e1 now waits in the queue (e2 and p3 hold the slots) for up to 2 × LONG
    const onDisk = JSON.parse(await readFile(join(dir, 'mesh-sync.json'), 'utf8'));
    await sync.stop();
    // A process killed now restarts from the file: from 999_000, not 949_000.
    assert.ok(
      onDisk.peers.e1 <= 950_000,
      `watermark on disk ${onDisk.peers.e1} while e1 waits: a kill loses the resync`,
    );
  });
});
