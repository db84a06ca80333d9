import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { createSync, cursorAt } from './sync.ts';
import { type Behaviour, endless, sleep, until, untilAborted, wait } from './sync-yield.fixture.ts';

// createSync with a test double of catchUpFrom (it honours plan.skip/from/finished/reached as the
// real one does: a topic asked from `after` costs K requests, one asked from later costs 1).
const log = pino({ level: 'silent' });
const LOOKBACK = 1_000;
const D = 2;

describe('catch-up turns: a turn going on keeps what earlier ones read, and every catch-up ends', () => {
  let dir: string;
  let asked: { peer: string; after: string; skips: (t: string) => boolean; from: (t: string) => string }[];
  let ended: { peer: string; error?: unknown }[];
  let behaviours: Map<string, Behaviour>;
  let clock: number;
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
        asked.push({ peer, after, skips: (t) => plan.skip?.(t) ?? false, from: (t) => plan.from(t) });
        try {
          const fresh = await (behaviours.get(peer) ?? (async () => 0))(after, signal, plan, turn);
          ended.push({ peer });
          return fresh;
        } catch (error) {
          ended.push({ peer, error });
          throw error;
        }
      },
    });
  const runsOf = (peer: string) => asked.filter((a) => a.peer === peer);
  const onDisk = async () =>
    JSON.parse(await readFile(join(dir, 'mesh-sync.json'), 'utf8')) as {
      peers: Record<string, number>;
      progress?: Record<string, { started: number; through?: string }>;
    };
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'anode-sync-yield-resume-'));
    asked = [];
    ended = [];
    behaviours = new Map();
    clock = 1_100_000;
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('a catch-up with a many-page topic after many others ends while two endless members take turns', async () => {
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    const small = Array.from({ length: 10 }, (_, i) => `a${i}`);
    const U = 100; // pages of 'u'
    const K = 8; // pages of each small topic read from `after`
    behaviours.set('e1', async (after, signal, plan) => {
      for (const t of small) {
        if (plan.skip?.(t)) continue;
        const pages = plan.from(t) === after ? K : 1;
        for (let i = 0; i < pages; i++) await wait(D, signal);
        plan.finished(t);
      }
      const start = plan.from('u');
      for (let i = start.startsWith('c') ? Number(start.slice(1)) : 0; i < U; i++) {
        await wait(D, signal);
        plan.reached('u', `c${String(i + 1).padStart(6, '0')}`);
      }
      plan.finished('u');
      return 0;
    });
    behaviours.set('e2', endless);
    behaviours.set('e3', endless);
    const sync = make(40);
    await sync.start();
    sync.peerUp('e1');
    await sleep(5);
    sync.peerUp('e2');
    sync.peerUp('e3');
    const done = () => ended.some((e) => e.peer === 'e1' && e.error === undefined);
    await until(done, 4_000);
    const rereads = runsOf('e1').filter((r) => !r.skips('a0') && r.from('a0') === r.after).length;
    await sync.stop();
    assert.ok(done(), `e1 never caught up: ${runsOf('e1').length} turns, ${rereads} of them asked a0.. from after`);
  });

  it('three honest peers, each with a many-page topic after many others (a joining node): all end', async () => {
    const small = Array.from({ length: 10 }, (_, i) => `a${i}`);
    const honest: Behaviour = async (after, signal, plan) => {
      for (const t of small) {
        if (plan.skip?.(t)) continue;
        const pages = plan.from(t) === after ? 8 : 1;
        for (let i = 0; i < pages; i++) await wait(D, signal);
        plan.finished(t);
      }
      const start = plan.from('u');
      for (let i = start.startsWith('c') ? Number(start.slice(1)) : 0; i < 100; i++) {
        await wait(D, signal);
        plan.reached('u', `c${String(i + 1).padStart(6, '0')}`);
      }
      plan.finished('u');
      return 0;
    };
    for (const p of ['h1', 'h2', 'h3']) behaviours.set(p, honest);
    const sync = make(40);
    await sync.start(); // no mesh-sync.json: a joining node, full catch-ups
    for (const p of ['h1', 'h2', 'h3']) sync.peerUp(p);
    const done = () => ['h1', 'h2', 'h3'].every((p) => ended.some((e) => e.peer === p && e.error === undefined));
    await until(done, 5_000);
    const status = sync.status();
    await sync.stop();
    const finished = ['h1', 'h2', 'h3'].filter((p) => ended.some((e) => e.peer === p && e.error === undefined));
    assert.ok(done(), `caught up: ${finished.join(',') || 'none'} after 5 s, ${status.yields} yields`);
  });

  it('a catch-up of many quiet topics ends while two endless members take turns (listing cost)', async () => {
    // Test double of catchUpFrom with listing cost: one listing request (3 ms) per 25 names listed,
    // one history request (1 ms) per topic not skipped. As the real one (listing.test.ts), it lists
    // from the start every turn unless the plan says where to start (plan.listAfter, the fix).
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    const topics = Array.from({ length: 800 }, (_, i) => `q${String(i).padStart(5, '0')}`);
    behaviours.set('e1', async (_after, signal, plan) => {
      const listAfter = (plan as { listAfter?: string }).listAfter;
      let listed = 0;
      for (const t of topics) {
        if (listAfter !== undefined && t <= listAfter) continue;
        if (listed++ % 25 === 0) await wait(3, signal);
        if (plan.skip?.(t)) continue;
        await wait(1, signal);
        plan.finished(t);
      }
      return 0;
    });
    behaviours.set('e2', endless);
    behaviours.set('e3', endless);
    const sync = make(40);
    await sync.start();
    sync.peerUp('e1');
    await sleep(5);
    sync.peerUp('e2');
    sync.peerUp('e3');
    const done = () => ended.some((e) => e.peer === 'e1' && e.error === undefined);
    await until(done, 8_000);
    await sync.stop();
    assert.ok(done(), `e1 never caught up: ${runsOf('e1').length} turns`);
  });

  it('a resync below the watermark between turns: on disk at once, and a run reads from it', async () => {
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    behaviours.set('e1', async (_after, signal, plan, turn) => {
      if (turn === 0) {
        plan.finished('a');
        plan.finished('b');
        return untilAborted(signal);
      }
      return 0;
    });
    behaviours.set('e2', endless);
    behaviours.set('p3', endless);
    const sync = make(40);
    await sync.start();
    sync.peerUp('e1');
    await sleep(5);
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => sync.status().yields >= 1 && runsOf('e1').length === 1);
    sync.resync(950_000, 'e1');
    await sleep(15);
    const disk = await onDisk();
    await until(() => ended.filter((e) => e.peer === 'e1' && e.error === undefined).length >= 2, 3_000);
    await sync.stop();
    assert.ok((disk.peers.e1 ?? Infinity) <= 950_000, JSON.stringify(disk));
    const reread = runsOf('e1').some((r) => !r.skips('a') && r.from('a') <= cursorAt(949_000));
    assert.ok(
      reread,
      runsOf('e1')
        .map((r) => `${r.skips('a')}/${r.from('a')}`)
        .join(' '),
    );
  });

  it('a notice after the turned catch-up ended: read again, nothing skipped', async () => {
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    behaviours.set('e1', async (_after, signal, plan, turn) => {
      if (turn === 0) {
        plan.finished('a');
        plan.finished('b');
        return untilAborted(signal).catch((error: unknown) => {
          clock = 1_200_000;
          throw error;
        });
      }
      return 0;
    });
    behaviours.set('e2', endless);
    behaviours.set('p3', endless);
    const sync = make(40);
    await sync.start();
    sync.peerUp('e1');
    await sleep(5);
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => ended.some((e) => e.peer === 'e1' && e.error === undefined));
    assert.equal(runsOf('e1')[1]?.skips('a'), true);
    clock = 1_300_000;
    // gossip of 'a' lost at 1_250_000 (after turn 0 read it); the peer's notice arrives now
    sync.resync(1_250_000, 'e1');
    await until(() => runsOf('e1').length >= 3);
    await sync.stop();
    const third = runsOf('e1')[2];
    assert.ok(third && !third.skips('a') && third.from('a') <= cursorAt(1_249_000));
  });

  it('a reconnect between turns: the new connection skips nothing', async () => {
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    behaviours.set('e1', async (_after, signal, plan, turn) => {
      if (turn === 0) {
        plan.finished('a');
        plan.finished('b');
        return untilAborted(signal);
      }
      return 0;
    });
    behaviours.set('e2', endless);
    behaviours.set('p3', endless);
    const sync = make(40);
    await sync.start();
    sync.peerUp('e1');
    await sleep(5);
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => sync.status().yields >= 1);
    clock = 1_200_000;
    sync.peerDown('e1');
    sync.peerUp('e1');
    await until(() => runsOf('e1').length >= 2, 3_000);
    await sync.stop();
    const second = runsOf('e1')[1];
    assert.ok(second);
    assert.deepEqual(
      ['a', 'b'].filter((t) => second.skips(t)),
      [],
    );
    assert.ok(second.from('a') <= cursorAt(1_100_000 - LOOKBACK), `asks 'a' from ${second.from('a')}`);
  });

  it('a restart between turns: the next process skips nothing, and reads from the first turn', async () => {
    await writeFile(join(dir, 'mesh-sync.json'), JSON.stringify({ peers: { e1: 1_000_000 } }));
    behaviours.set('e1', async (_after, signal, plan) => {
      plan.finished('a');
      plan.finished('b');
      return untilAborted(signal);
    });
    behaviours.set('e2', endless);
    behaviours.set('p3', endless);
    let sync = make(40);
    await sync.start();
    sync.peerUp('e1');
    await sleep(5);
    sync.peerUp('e2');
    sync.peerUp('p3');
    await until(() => sync.status().yields >= 1);
    // second turn (same): reads 'c' and then is stopped
    await until(() => runsOf('e1').length >= 2, 3_000);
    await sync.stop();
    const disk = await onDisk();
    assert.equal((disk.peers.e1 ?? Infinity) <= 1_000_000, true, JSON.stringify(disk));
    assert.equal(disk.progress?.e1?.started, 1_100_000);
    asked = [];
    clock = 1_300_000;
    behaviours.set('e1', async () => 0);
    sync = make(40);
    await sync.start();
    sync.peerUp('e1');
    await until(() => runsOf('e1').length >= 1);
    await sleep(20);
    await sync.stop();
    const first = runsOf('e1')[0];
    assert.ok(first);
    assert.deepEqual(
      ['a', 'b'].filter((t) => first.skips(t)),
      [],
    );
    assert.equal(first.from('a'), cursorAt(1_100_000 - LOOKBACK));
  });
});
