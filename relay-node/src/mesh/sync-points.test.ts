import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { createSync, cursorAt } from './sync.ts';

/**
 * Where catch-ups read from when the watermark alone would say later (sync.ts, pendingFrom and
 * reading): a resync's point must hold until a catch-up that read from it has ended well, across
 * a reconnect, a peer with no watermark yet, and a process killed mid-run. Each case read past the
 * point before (a silent gap of what the peer said was lost).
 */
const log = pino({ level: 'silent' });
const LOOKBACK = 1_000;

it('keeps the point a running catch-up reads from in mesh-sync.json, for a process killed mid-run', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'zz-sync-crash-'));
  let clock = 1_000_000;
  const asked: [string, string][] = [];
  let holdNext: Promise<void> | undefined;
  const make = () =>
    createSync({
      dataDir: dir,
      lookbackMs: LOOKBACK,
      log,
      now: () => clock,
      tickMs: 5,
      async run(peer, after) {
        asked.push([peer, after]);
        const hold = holdNext;
        holdNext = undefined;
        await hold;
        return 0;
      },
    });
  const settle = (ms = 20) => new Promise((r) => setTimeout(r, ms));
  const onDisk = async () => JSON.parse(await readFile(join(dir, 'mesh-sync.json'), 'utf8')).peers;
  const sync = make();
  await sync.start();
  sync.peerUp('a');
  sync.peerUp('b');
  await sync.firstSync;
  await settle(); // a and b: 1_000_000
  clock += 100_000;
  let r0 = () => {};
  holdNext = new Promise<void>((r) => (r0 = r));
  sync.resync(clock, 'a'); // R0 from 1_100_000
  await settle();
  sync.peerDown('a'); // the link drops mid-run
  sync.resync(1_020_000, 'a'); // not connected: kept
  r0(); // R0 ends well: watermark 1_100_000, point 1_020_000
  await settle();
  let r1 = () => {};
  holdNext = new Promise<void>((r) => (r1 = r));
  sync.peerUp('a'); // R1 takes the point and reads from 1_019_000 (a long catch-up)
  await settle();
  clock += 1_000;
  sync.heard('b', clock); // an ordinary tick save (b's watermark moves on)
  await settle();
  assert.equal((await onDisk()).a, 1_020_000, 'the file holds where the running catch-up reads from');
  // kill -9 now: the next process starts from the file.
  const after = make();
  await after.start();
  after.peerUp('a');
  await settle();
  r1();
  await settle();
  await sync.stop();
  await after.stop();
  await rm(dir, { recursive: true, force: true });
  assert.deepEqual(
    asked.at(-1),
    ['a', cursorAt(1_020_000 - LOOKBACK)],
    'gap 1_020_000..1_099_000 after a crash mid-run',
  );
});

describe('a resync for a peer whose first catch-up (from the start) still runs', () => {
  let dir: string;
  let clock: number;
  let asked: [string, string][];
  let holdNext: Promise<void> | undefined;
  const make = () =>
    createSync({
      dataDir: dir,
      lookbackMs: LOOKBACK,
      log,
      now: () => clock,
      tickMs: 5,
      async run(peer, after) {
        asked.push([peer, after]);
        const hold = holdNext;
        holdNext = undefined;
        await hold;
        return 0;
      },
    });
  const settle = () => new Promise((resolve) => setTimeout(resolve, 20));
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'zz-sync-'));
    clock = 1_000_000;
    asked = [];
    holdNext = undefined;
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  // Control: the same with a running first run on the SAME connection: again -> rerun from the point.
  it('runs again from the resync, the peer still connected', async () => {
    const sync = make();
    await sync.start();
    let release = () => {};
    holdNext = new Promise<void>((r) => (release = r));
    sync.peerUp('a'); // first-ever, full catch-up from 0, started at 1_000_000
    await settle();
    clock = 1_200_000;
    sync.resync(900_000, 'a');
    release();
    await settle();
    assert.deepEqual(asked.at(-1), ['a', cursorAt(900_000 - LOOKBACK)]);
    await sync.stop();
  });

  it("reads from the resync on the peer's next connection, made while the first catch-up ran", async () => {
    const sync = make();
    await sync.start();
    let release = () => {};
    holdNext = new Promise<void>((r) => (release = r));
    sync.peerUp('a');
    await settle();
    clock = 1_200_000;
    sync.peerDown('a');
    sync.peerUp('a'); // connection 2 queued behind R1
    sync.resync(900_000, 'a'); // held undefined -> nothing kept
    release(); // R1 ends well: watermark 1_000_000
    await settle();
    assert.deepEqual(asked.at(-1), ['a', cursorAt(900_000 - LOOKBACK)]);
    await sync.stop();
  });

  it('reads from the resync once the peer is back, asked while it was not connected', async () => {
    const sync = make();
    await sync.start();
    let release = () => {};
    holdNext = new Promise<void>((r) => (release = r));
    sync.peerUp('a');
    await settle();
    clock = 1_200_000;
    sync.peerDown('a');
    sync.resync(900_000, 'a'); // not connected, mark undefined -> nothing kept
    release();
    await settle();
    sync.peerUp('a');
    await settle();
    assert.deepEqual(asked.at(-1), ['a', cursorAt(900_000 - LOOKBACK)]);
    await sync.stop();
  });
});
