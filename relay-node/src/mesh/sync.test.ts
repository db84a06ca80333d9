import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { createSync, cursorAt, MAX_WATERMARKS, WATERMARK_TTL_MS } from './sync.ts';

const log = pino({ level: 'silent' });
const LOOKBACK = 1_000;

describe('catch-up scheduling', () => {
  let dir: string;
  let clock: number;
  let asked: [string, string][];
  let failNext: boolean;
  // When set, the next run waits for it (a catch-up still reading pages).
  let holdNext: Promise<void> | undefined;
  const make = (longRunMs?: number) =>
    createSync({
      dataDir: dir,
      lookbackMs: LOOKBACK,
      log,
      now: () => clock,
      tickMs: 5,
      ...(longRunMs === undefined ? {} : { longRunMs }),
      async run(peer, after) {
        asked.push([peer, after]);
        const hold = holdNext;
        holdNext = undefined;
        await hold;
        if (failNext) {
          failNext = false;
          throw new Error('peer went away');
        }
        return 0;
      },
    });
  const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'anode-sync-'));
    clock = 1_000_000;
    asked = [];
    failNext = false;
    holdNext = undefined;
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('gives the smallest cursor of a millisecond', () => {
    assert.equal(cursorAt(0), '0');
    assert.equal(cursorAt(0x1a1fcac8572), '01a1fcac85720000-0');
    assert.ok(cursorAt(5) < `${(5).toString(16).padStart(12, '0')}0000-a`);
  });

  it('asks every peer it never caught up from for everything', async () => {
    const sync = make();
    await sync.start();
    sync.peerUp('p1');
    sync.peerUp('p2');
    await sync.firstSync;
    await settle();
    assert.deepEqual(asked, [
      ['p1', '0'],
      ['p2', '0'],
    ]);
    sync.peerUp('p1');
    await settle();
    assert.equal(asked.length, 2, 'once per connection');
    await sync.stop();
  });

  it('remembers, across restarts, when it last had each peer, and asks for exactly the gap', async () => {
    const first = make();
    await first.start();
    first.peerUp('p1');
    await first.firstSync;
    clock += 5_000;
    first.heard('p1', clock); // it answered a ping sent now
    first.peerDown('p1');
    await first.stop();

    clock += 60_000; // down for a minute
    asked = [];
    const second = make();
    await second.start();
    second.peerUp('p1');
    second.peerUp('stranger');
    await second.firstSync;
    await settle();
    assert.deepEqual(asked, [
      ['p1', cursorAt(1_005_000 - LOOKBACK)],
      // A peer never caught up from: everything (the other peers need not hold its messages).
      ['stranger', '0'],
    ]);
    await second.stop();
  });

  it('forgets watermarks of peers gone for a week, and keeps at most MAX_WATERMARKS', async () => {
    const sync = make();
    await sync.start();
    for (let i = 0; i < MAX_WATERMARKS + 50; i++) {
      sync.peerUp(`p${i}`);
      await sync.firstSync;
      clock += 1;
    }
    await settle();
    for (let i = 0; i < MAX_WATERMARKS + 50; i++) if (i !== 7) sync.peerDown(`p${i}`);
    await settle();
    assert.equal(sync.status().watermarks, MAX_WATERMARKS, 'the oldest of the gone peers went first');
    clock += WATERMARK_TTL_MS + 1;
    await settle();
    assert.equal(sync.status().watermarks, 1, 'only the connected peer is remembered after a week');
    await sync.stop();
  });

  it('retries a failed catch-up while the peer stays connected', async () => {
    const sync = make();
    await sync.start();
    failNext = true;
    sync.peerUp('p1');
    await sync.firstSync;
    assert.equal(asked.length, 2);
    assert.equal(sync.status().failures, 1);
    await sync.stop();
  });

  it('retries no catch-up whose peer went away during it, so stop() leaves no timer behind', async () => {
    const sync = make();
    await sync.start();
    const timers = () => process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;
    const before = timers();
    let answer!: () => void;
    holdNext = new Promise<void>((r) => (answer = r));
    failNext = true;
    sync.peerUp('p1');
    await settle();
    sync.peerDown('p1');
    answer(); // the catch-up fails after its peer left
    await settle();
    await sync.stop();
    // Before, the failure set a 500 ms retry on the entry peerDown had dropped, out of stop()'s
    // reach: a process embedding the relay stayed up to 30 s after stop().
    assert.equal(timers(), before, 'a retry timer outlives stop()');
    assert.equal(asked.length, 1);
  });

  it('writes nothing to the data folder once stopped, though a catch-up ends after the stop', async () => {
    const sync = make();
    await sync.start();
    let answer!: () => void;
    holdNext = new Promise<void>((r) => (answer = r));
    failNext = true; // ended by the stop's abort, as a catch-up's stream is: failed
    sync.peerUp('p1');
    const path = join(dir, 'mesh-sync.json');
    // Read at once, synchronously: nothing else runs before the folder is looked at.
    const folderAt = () => ({ files: readdirSync(dir).sort(), file: statSync(path).ino });
    const atStop = sync.stop().then(folderAt);
    await settle();
    answer(); // the catch-up ends a moment after the abort (its stream closes), and saves its progress
    const before = await atStop;
    await settle();
    assert.deepEqual(folderAt(), before, 'mesh-sync.json not rewritten after stop() resolved');
  });

  it('catches up again from connected peers after storing gossip failed', async () => {
    const sync = make();
    await sync.start();
    sync.peerUp('p1');
    await sync.firstSync;
    clock += 10_000;
    sync.resync(clock - 2_000);
    await settle();
    assert.deepEqual(asked.at(-1), ['p1', cursorAt(1_000_000 - LOOKBACK)]);
    sync.peerUp('p2');
    await settle();
    clock += 60_000;
    sync.heard('p2', clock); // connected, synced and answering pings: its watermark moves on
    await settle();
    const before = asked.length;
    sync.resync(clock - 1_000, 'p2'); // only the peer whose link was cut
    await settle();
    assert.deepEqual(asked.slice(before), [['p2', cursorAt(clock - 1_000 - LOOKBACK)]]);
    await sync.stop();
  });

  it('moves a watermark on only as far as the last answered ping, so a silent peer is asked for its silence', async () => {
    const sync = make();
    await sync.start();
    sync.peerUp('p1');
    await sync.firstSync;
    clock += 5_000;
    sync.heard('p1', clock - 1_000);
    sync.heard('p1', clock - 3_000); // an older ping answered late moves nothing back
    await settle();
    // A partition (or a frozen peer): no ping answered for 40 s until its connection is dropped.
    clock += 40_000;
    await settle();
    sync.peerDown('p1');
    sync.peerUp('p1');
    await settle();
    assert.deepEqual(asked.at(-1), ['p1', cursorAt(1_004_000 - LOOKBACK)]);
    await sync.stop();
  });

  it('catches up once more when a resync is asked while a catch-up from that peer runs', async () => {
    const sync = make();
    await sync.start();
    let release = () => {};
    holdNext = new Promise<void>((resolve) => (release = resolve));
    sync.peerUp('p1'); // its first catch-up starts at clock 1_000_000 and is still reading
    await settle();
    clock += 10_000;
    // Gossip from p1 went missing now (its link was cut, or storing it failed): the running catch-up
    // may have read those topics already.
    sync.resync(clock - 2_000, 'p1');
    sync.resync(clock);
    release();
    await sync.firstSync;
    await settle();
    assert.deepEqual(asked, [
      ['p1', '0'],
      // From where the first run started: it holds everything before that.
      ['p1', cursorAt(1_000_000 - LOOKBACK)],
    ]);
    clock += 60_000;
    await settle();
    assert.equal(asked.length, 2, 'then synced: no more runs, watermarks move on');
    await sync.stop();
  });

  it('takes a resync asked for a peer whose catch-up is queued into that catch-up', async () => {
    const sync = make();
    await sync.start();
    sync.peerUp('p1');
    await sync.firstSync;
    clock += 5_000;
    sync.heard('p1', clock);
    await settle(); // watermark: 1_005_000
    let release = () => {};
    holdNext = new Promise<void>((resolve) => (release = resolve));
    sync.peerUp('p2'); // its catch-up is still reading
    await settle();
    sync.resync(clock); // storing gossip failed: p1 is queued behind p2
    // p1 then says its gossip since 1_002_000 was lost, while its catch-up waits in the queue.
    sync.resync(1_002_000, 'p1');
    release();
    await settle();
    assert.deepEqual(asked.filter(([peer]) => peer === 'p1').at(-1), ['p1', cursorAt(1_002_000 - LOOKBACK)]);
    await sync.stop();
  });

  it('starts the next catch-up beside one that has run long, one per peer, and still one at a time before', async () => {
    // A member listing a new empty topic on every page never ends its catch-up, and no bound on
    // such pages can tell it from an honest relay's many quiet topics: it held every other peer's
    // catch-up for ever.
    const sync = make(150);
    await sync.start();
    let release = () => {};
    holdNext = new Promise<void>((resolve) => (release = resolve));
    sync.peerUp('endless');
    sync.peerUp('p2');
    await settle();
    assert.deepEqual(asked, [['endless', '0']], 'one at a time while the first has not run long');
    sync.resync(clock, 'endless'); // a resync of the running one waits for it, not beside it
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(asked, [
      ['endless', '0'],
      ['p2', '0'],
    ]);
    await sync.firstSync; // p2's
    release();
    await settle();
    assert.equal(asked.filter(([peer]) => peer === 'endless').length, 2, 'then the resync of the long one runs');
    await sync.stop();
  });

  it("keeps a watermark lowered for a peer that reconnected while its old connection's catch-up ran", async () => {
    const sync = make();
    await sync.start();
    sync.peerUp('a');
    await sync.firstSync; // watermark: 1_000_000
    clock += 100_000;
    let release = () => {};
    holdNext = new Promise<void>((resolve) => (release = resolve));
    sync.resync(clock); // a run from 1_100_000, still reading
    await settle();
    sync.peerDown('a');
    sync.peerUp('a'); // its new connection's catch-up is queued behind the old one's run
    sync.resync(1_020_000, 'a'); // the peer says its gossip since 1_020_000 was lost
    release(); // the old run ends well, and sets the watermark to when it started, 1_100_000
    await settle();
    assert.deepEqual(asked.at(-1), ['a', cursorAt(1_020_000 - LOOKBACK)]);
    await sync.stop();
  });

  it('moves the watermark on for a peer that reconnects during every catch-up', async () => {
    const sync = make();
    await sync.start();
    sync.peerUp('a');
    await sync.firstSync; // watermark: 1_000_000
    const releases: (() => void)[] = [];
    const hold = () => (holdNext = new Promise<void>((resolve) => releases.push(resolve)));
    clock += 100_000;
    hold();
    sync.peerDown('a');
    sync.peerUp('a'); // a run from 1_000_000, still reading
    await settle();
    for (let round = 1; round <= 4; round++) {
      sync.peerDown('a'); // the link drops and comes back while the run reads (it ends well)
      sync.peerUp('a');
      clock += 100_000;
      hold();
      releases.shift()?.();
      await settle();
    }
    // Each run reads from where the one before it started (minus the lookback), not from 1_000_000.
    assert.deepEqual(asked.at(-1), ['a', cursorAt(1_400_000 - LOOKBACK)]);
    releases.shift()?.();
    await settle();
    await sync.stop();
  });

  it("keeps a resync's point for the next connection when the run reading from it fails as the peer drops", async () => {
    const sync = make();
    await sync.start();
    sync.peerUp('a');
    await sync.firstSync; // watermark 1_000_000
    clock += 100_000;
    let release = () => {};
    holdNext = new Promise<void>((resolve) => (release = resolve));
    sync.resync(clock); // run R0 from 1_100_000 on connection 1, still reading
    await settle();
    sync.peerDown('a');
    sync.peerUp('a'); // connection 2 queued behind R0
    sync.resync(1_020_000, 'a'); // the peer says its gossip since 1_020_000 was lost
    let release2 = () => {};
    const hold2 = new Promise<void>((resolve) => (release2 = resolve));
    holdNext = hold2; // connection 2's run (from 1_020_000) will still be reading
    release(); // R0 ends well: watermark 1_100_000
    await settle();
    assert.deepEqual(asked.at(-1), ['a', cursorAt(1_020_000 - LOOKBACK)]);
    failNext = true; // connection 2's run fails: the link drops
    sync.peerDown('a');
    sync.peerUp('a'); // connection 3
    release2();
    await settle();
    assert.deepEqual(
      asked.at(-1),
      ['a', cursorAt(1_020_000 - LOOKBACK)],
      'connection 3 must still read from what the resync asked',
    );
    await sync.stop();
  });

  it("keeps a resync's point across a reconnect before the catch-up it was asked for ran", async () => {
    const sync = make(200);
    await sync.start();
    sync.peerUp('a');
    await sync.firstSync; // a: 1_000_000
    clock += 100_000;
    let releaseA = () => {};
    holdNext = new Promise<void>((resolve) => (releaseA = resolve));
    sync.resync(clock, 'a'); // R0 on a's connection 1
    await new Promise((r) => setTimeout(r, 250)); // R0 has run long
    let releaseB = () => {};
    holdNext = new Promise<void>((resolve) => (releaseB = resolve));
    sync.peerUp('b'); // b's first catch-up starts beside it
    await new Promise((r) => setTimeout(r, 5));
    sync.peerDown('a');
    sync.peerUp('a'); // connection 2 queued
    sync.resync(1_020_000, 'a'); // kept on connection 2's entry
    releaseA(); // R0 ends well: watermark 1_100_000; connection 2 waits (b's run is new)
    await new Promise((r) => setTimeout(r, 5));
    sync.peerDown('a');
    sync.peerUp('a'); // connection 3, before connection 2 ran
    await new Promise((r) => setTimeout(r, 400));
    assert.deepEqual(asked.filter(([p]) => p === 'a').at(-1), ['a', cursorAt(1_020_000 - LOOKBACK)]);
    releaseB();
    await settle();
    await sync.stop();
  });
  it("keeps a resync's point across a restart before the catch-up it was asked for ran", async () => {
    const sync = make(200);
    await sync.start();
    sync.peerUp('a');
    await sync.firstSync;
    clock += 100_000;
    let releaseA = () => {};
    holdNext = new Promise<void>((resolve) => (releaseA = resolve));
    sync.resync(clock, 'a');
    await new Promise((r) => setTimeout(r, 250));
    let releaseB = () => {};
    holdNext = new Promise<void>((resolve) => (releaseB = resolve));
    sync.peerUp('b');
    await new Promise((r) => setTimeout(r, 5));
    sync.peerDown('a');
    sync.peerUp('a');
    sync.resync(1_020_000, 'a');
    releaseA();
    await new Promise((r) => setTimeout(r, 5));
    const stopping = sync.stop();
    releaseB();
    await stopping;
    const again = make();
    await again.start();
    again.peerUp('a');
    await settle();
    assert.deepEqual(asked.at(-1), ['a', cursorAt(1_020_000 - LOOKBACK)]);
    await again.stop();
  });

  it('takes a resync asked for a peer not connected yet into its next catch-up', async () => {
    const sync = make();
    await sync.start();
    sync.peerUp('p1');
    await sync.firstSync;
    clock += 5_000;
    sync.heard('p1', clock);
    sync.peerDown('p1'); // watermark: 1_005_000
    // The peer says, before this node counts it connected again, that its gossip since then was lost.
    sync.resync(1_002_000, 'p1');
    asked = [];
    sync.peerUp('p1');
    await settle();
    assert.deepEqual(asked, [['p1', cursorAt(1_002_000 - LOOKBACK)]]);
    await sync.stop();
  });

  it('keeps mesh-sync.json owner-only (0600), as every file in the data folder', async () => {
    const sync = make();
    await sync.start();
    sync.peerUp('p1');
    await sync.firstSync;
    await sync.stop();
    assert.equal((await stat(join(dir, 'mesh-sync.json'))).mode & 0o777, 0o600);
  });

  it('drops bad records from mesh-sync.json and keeps the good ones', async () => {
    const interrupted = { after: cursorAt(1_000), started: 1_010_000, topic: 'a' };
    await writeFile(
      join(dir, 'mesh-sync.json'),
      JSON.stringify({
        peers: { good: 1_005_000, bad: 1_005_000, late: 'yesterday', lost: null },
        progress: {
          good: { ...interrupted, cursor: cursorAt(1_007_000) },
          bad: { ...interrupted, cursor: 42 },
        },
      }),
    );
    const from: [string, unknown][] = [];
    const sync = createSync({
      dataDir: dir,
      lookbackMs: LOOKBACK,
      log,
      now: () => clock,
      async run(peer, _after, _signal, plan) {
        from.push([peer, plan.from('a')]);
        return 0;
      },
    });
    await sync.start();
    assert.equal(sync.status().watermarks, 2, 'only the numeric watermarks');
    sync.peerUp('good');
    sync.peerUp('bad');
    await settle();
    assert.deepEqual(from, [
      ['good', cursorAt(1_007_000)],
      ['bad', cursorAt(1_005_000 - LOOKBACK)],
    ]);
    await sync.stop();
  });
});
