import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { compareCursors, createHybridClock, cursorTime } from '@anode/shared';
import { LEASE_MS, leaseClock } from './clock-lease.ts';
import { createLogger } from './logger.ts';

const silent = createLogger('silent');

describe('clock lease: cursors stay in order across a restart', () => {
  it('continues after the last run when the wall clock stepped back while the relay was down', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-lease-'));
    let wall = 1_800_000_000_000;
    const first = leaseClock(
      dir,
      createHybridClock('n1', () => wall),
      silent,
      () => wall,
    );
    const before = Array.from({ length: 5 }, () => first.clock.next());
    first.stop();
    wall -= 60_000; // an NTP correction while the relay was down
    const second = leaseClock(
      dir,
      createHybridClock('n1', () => wall),
      silent,
      () => wall,
    );
    const after = second.clock.next();
    for (const cursor of before) assert.ok(compareCursors(after, cursor) > 0, `${after} after ${cursor}`);
    second.stop();
    // Without the lease, the same restart mints a cursor below the last run's.
    const bare = createHybridClock('n1', () => wall).next();
    assert.ok(compareCursors(bare, before[0] as string) < 0);
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the lease ahead of every cursor, renewing on the spot when the clock gets there', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-lease-'));
    let wall = 1_800_000_000_000;
    const lease = leaseClock(
      dir,
      createHybridClock('n1', () => wall),
      silent,
      () => wall,
    );
    const read = async () => Number((await readFile(join(dir, 'clock-lease'), 'utf8')).trim());
    assert.equal(await read(), wall + LEASE_MS);
    assert.equal((await stat(join(dir, 'clock-lease'))).mode & 0o777, 0o600);
    // The wall clock jumps past the lease between two checks: the next cursor renews it first.
    wall += 3 * LEASE_MS;
    const cursor = lease.clock.next();
    assert.ok(cursorTime(cursor) < (await read()), 'the file runs ahead of the cursor just minted');
    assert.equal(lease.until, await read());
    lease.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('leaves the further lease in the file when a renewal and a write on the spot overlap', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-lease-'));
    let wall = 1_800_000_000_000;
    const lease = leaseClock(
      dir,
      createHybridClock('n1', () => wall),
      silent,
      () => wall,
    );
    const read = async () => Number((await readFile(join(dir, 'clock-lease'), 'utf8')).trim());
    const renewing = lease.renew(); // its lease is the clock's time now + LEASE_MS
    wall += 3 * LEASE_MS; // then the wall clock jumps past it, and a cursor is minted
    const cursor = lease.clock.next();
    await renewing;
    assert.equal(await read(), wall + LEASE_MS, 'the on-the-spot lease, the further one');
    assert.equal(lease.until, await read());
    assert.ok(cursorTime(cursor) < (await read()));
    lease.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('starts from the wall clock when the lease file is unreadable, and rewrites it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-lease-'));
    await writeFile(join(dir, 'clock-lease'), 'not a time\n');
    const wall = 1_800_000_000_000;
    const lease = leaseClock(
      dir,
      createHybridClock('n1', () => wall),
      silent,
      () => wall,
    );
    assert.equal(cursorTime(lease.clock.next()), wall);
    assert.equal(Number((await readFile(join(dir, 'clock-lease'), 'utf8')).trim()), wall + LEASE_MS);
    lease.stop();
    await rm(dir, { recursive: true, force: true });
  });
});
