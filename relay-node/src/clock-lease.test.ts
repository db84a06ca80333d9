import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { compareCursors, createHybridClock, cursorTime } from '@anode/shared';
import { AHEAD_MS, LEASE_MS, leaseClock } from './clock-lease.ts';
import { createLogger } from './logger.ts';

const silent = createLogger('silent');

/** A data folder and a wall clock the test moves; `start()` leases a clock as a relay start does. */
async function folder() {
  const dir = await mkdtemp(join(tmpdir(), 'anode-lease-'));
  const time = { wall: 1_800_000_000_000 };
  return {
    dir,
    time,
    start: () =>
      leaseClock(
        dir,
        createHybridClock('n1', () => time.wall),
        silent,
        () => time.wall,
      ),
    read: async () => Number((await readFile(join(dir, 'clock-lease'), 'utf8')).trim()),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

describe('clock lease: cursors stay in order across a restart', () => {
  it('continues after the last run when the wall clock stepped back while the relay was down', async () => {
    const f = await folder();
    const first = f.start();
    const before = Array.from({ length: 5 }, () => first.clock.next());
    first.stop();
    f.time.wall -= 60_000; // an NTP correction while the relay was down
    const second = f.start();
    const after = second.clock.next();
    for (const cursor of before) assert.ok(compareCursors(after, cursor) > 0, `${after} after ${cursor}`);
    second.stop();
    // Without the lease, the same restart mints a cursor below the last run's.
    const bare = createHybridClock('n1', () => f.time.wall).next();
    assert.ok(compareCursors(bare, before[0] as string) < 0);
    await f.remove();
  });

  it('keeps the lease ahead of every cursor, renewing on the spot when the clock gets there', async () => {
    const f = await folder();
    const lease = f.start();
    assert.equal(await f.read(), f.time.wall + LEASE_MS);
    assert.equal((await stat(join(f.dir, 'clock-lease'))).mode & 0o777, 0o600);
    // The wall clock jumps past the lease between two checks: the next cursor renews it first.
    f.time.wall += 3 * LEASE_MS;
    const cursor = lease.clock.next();
    assert.ok(cursorTime(cursor) < (await f.read()), 'the file runs ahead of the cursor just minted');
    assert.equal(lease.until, await f.read());
    lease.stop();
    await f.remove();
  });

  it('refuses the cursor as unavailable when the lease cannot be written (a full disk), then goes on', async () => {
    const f = await folder();
    const lease = f.start();
    // Fault injection: the lease's temporary file is a folder, so writing it fails as a full disk would.
    await mkdir(join(f.dir, 'clock-lease.tmp'));
    f.time.wall += 3 * LEASE_MS;
    assert.throws(
      () => lease.clock.next(),
      (error: Error & { code?: string }) => error.code === 'unavailable' && /clock lease/.test(error.message),
    );
    assert.match(lease.problem() ?? '', /cannot extend the clock lease/, 'health hears of it');
    await rm(join(f.dir, 'clock-lease.tmp'), { recursive: true });
    const cursor = lease.clock.next();
    assert.ok(cursorTime(cursor) < (await f.read()), 'leased again once the disk takes it');
    assert.equal(lease.problem(), undefined);
    lease.stop();
    await f.remove();
  });

  it('leaves the further lease in the file when a renewal and a write on the spot overlap', async () => {
    const f = await folder();
    const lease = f.start();
    const renewing = lease.renew(); // its lease is the clock's time now + LEASE_MS
    f.time.wall += 3 * LEASE_MS; // then the wall clock jumps past it, and a cursor is minted
    const cursor = lease.clock.next();
    await renewing;
    assert.equal(await f.read(), f.time.wall + LEASE_MS, 'the on-the-spot lease, the further one');
    assert.equal(lease.until, await f.read());
    assert.ok(cursorTime(cursor) < (await f.read()));
    lease.stop();
    await f.remove();
  });

  it('writes nothing to the data folder once stopped, though a renewal was running', async () => {
    const f = await folder();
    const lease = f.start();
    f.time.wall += 1_000; // the renewal moves the lease on
    const renewing = lease.renew();
    await lease.stop();
    // Read at once, synchronously: nothing else runs before the folder is looked at.
    const folderAt = () => ({
      files: readdirSync(f.dir).sort(),
      lease: readFileSync(join(f.dir, 'clock-lease'), 'utf8'),
    });
    const atStop = folderAt();
    await renewing;
    assert.deepEqual(folderAt(), atStop, 'the folder as it was when stop() resolved');
    await f.remove();
  });

  it('refuses a cursor asked after stop as unavailable, and writes no lease for it', async () => {
    const f = await folder();
    const lease = f.start();
    await lease.stop();
    const atStop = readFileSync(join(f.dir, 'clock-lease'), 'utf8');
    f.time.wall += 3 * LEASE_MS; // past the lease: a cursor minted now would write one on the spot
    assert.throws(
      () => lease.clock.next(),
      (error: Error & { code?: string }) =>
        error.code === 'unavailable' && /clock lease is stopped/.test(error.message),
    );
    assert.equal(readFileSync(join(f.dir, 'clock-lease'), 'utf8'), atStop, 'the lease file as it was at stop');
    await f.remove();
  });

  it('starts on a full disk, refusing cursors until the lease can be written', async () => {
    const f = await folder();
    const first = f.start();
    const before = first.clock.next();
    first.stop();
    await mkdir(join(f.dir, 'clock-lease.tmp')); // fault injection, as above
    const lease = f.start();
    assert.match(lease.problem() ?? '', /cannot extend the clock lease/);
    assert.throws(
      () => lease.clock.next(),
      (error: Error & { code?: string }) => error.code === 'unavailable',
    );
    await rm(join(f.dir, 'clock-lease.tmp'), { recursive: true });
    const after = lease.clock.next();
    assert.ok(compareCursors(after, before) > 0 && cursorTime(after) < (await f.read()));
    assert.equal(lease.problem(), undefined);
    lease.stop();
    await f.remove();
  });

  it('does not move further ahead of the wall clock at every quick restart', async () => {
    const f = await folder();
    let last = '';
    for (let run = 0; run < 20; run++) {
      const lease = f.start(); // a crash loop: one publish, then killed, within the same second
      last = lease.clock.next();
      lease.stop();
      f.time.wall += 50;
    }
    // The first run leased LEASE_MS ahead; each restart since leases only AHEAD_MS past its clock.
    const ahead = cursorTime(last) - f.time.wall;
    assert.ok(ahead <= LEASE_MS + 20 * AHEAD_MS, `${ahead} ms ahead of the wall clock after 20 restarts`);
    assert.ok(cursorTime(last) < (await f.read()), 'the lease still runs ahead of every cursor');
    await f.remove();
  });

  it('follows a peer whose wall clock is fast without a write on the spot every 100 ms', async () => {
    const f = await folder();
    const lease = f.start();
    const peer = createHybridClock('n2', () => f.time.wall + 10_000); // 10 s fast
    let onTheSpot = 0;
    for (let i = 0; i < 1_000; i++) {
      f.time.wall += 10; // 10 s of gossip and publishes, one each 10 ms
      lease.clock.observe(peer.next());
      const before = lease.until;
      lease.clock.next();
      if (lease.until !== before) onTheSpot += 1;
    }
    assert.ok(onTheSpot <= 3, `${onTheSpot} lease writes on the publish path in 10 s`);
    lease.stop();
    await f.remove();
  });

  it('starts from the wall clock when the lease file is unreadable, and rewrites it', async () => {
    const f = await folder();
    await writeFile(join(f.dir, 'clock-lease'), 'not a time\n');
    const lease = f.start();
    assert.equal(cursorTime(lease.clock.next()), f.time.wall);
    assert.equal(await f.read(), f.time.wall + LEASE_MS);
    lease.stop();
    await f.remove();
  });
});
