import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { HybridClock } from '@anode/shared';
import type { Logger } from './logger.ts';

/**
 * Cursors stay in order across restarts. The cursor clock follows the wall clock, and a fresh
 * process starts from it: a relay restarted after its wall clock stepped back (an NTP correction,
 * a VM restored from a snapshot) would mint cursors below the ones it minted before, and a
 * subscriber resuming from one of those would skip every message published since.
 *
 * So the clock leases time. `clock-lease` in the data folder holds a time that no cursor of this
 * node has reached; a starting relay's clock begins there, up to LEASE_MS ahead of its wall
 * clock (harmless: cursors are sort keys, peers' clocks follow, and the wall clock catches up).
 * The lease is moved LEASE_MS past the clock whenever the clock comes within half of it (checked
 * every CHECK_MS, written off the event loop), and on the spot before a cursor would reach it
 * (the event loop was held for seconds, or the wall clock jumped ahead), so the file always runs
 * ahead of every cursor minted. It is written to a temporary file, synced and renamed: a crash
 * leaves the old lease or the new one.
 */
export const LEASE_MS = 5_000;
const CHECK_MS = 500;
const FILE = 'clock-lease';

export interface ClockLease {
  /** The clock to mint cursors with: the one given, kept behind the lease. */
  readonly clock: HybridClock;
  /** The leased time, ms since the epoch. */
  readonly until: number;
  stop(): void;
}

export function leaseClock(dataDir: string, clock: HybridClock, log: Logger, now: () => number = Date.now): ClockLease {
  const path = join(dataDir, FILE);
  let until = 0;
  try {
    const text = readFileSync(path, 'utf8').trim();
    const kept = Number(text);
    if (/^\d{1,15}$/.test(text) && Number.isSafeInteger(kept)) until = kept;
    else log.warn({ path }, 'clock lease unreadable: cursors start from the wall clock');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  // The last lease was written LEASE_MS past this node's clock (or its wall clock, if ahead).
  if (until - LEASE_MS > now()) {
    log.warn(
      { behind_ms: until - LEASE_MS - now() },
      "wall clock is behind this node's cursor clock of its last run (it stepped back): cursors continue after it",
    );
  }
  clock.advanceTo(until);

  const temporary = `${path}.tmp`;
  const renewal = `${path}.renewal`;
  const nextLease = () => Math.max(clock.time, now()) + LEASE_MS;
  const writeNow = () => {
    const next = nextLease();
    const fd = openSync(temporary, 'w', 0o600);
    try {
      writeSync(fd, `${next}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, path);
    until = next;
  };
  let renewing = false;
  const renew = async () => {
    renewing = true;
    const next = nextLease();
    try {
      const file = await open(renewal, 'w', 0o600);
      try {
        await file.writeFile(`${next}\n`);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(renewal, path);
      // A lease written on the spot meanwhile was further ahead, and this one replaced it: again.
      if (until > next) writeNow();
      else until = next;
    } catch (error) {
      log.error({ err: error, path }, 'clock lease not renewed');
    } finally {
      renewing = false;
    }
  };
  writeNow();

  const timer = setInterval(() => {
    if (!renewing && clock.time + LEASE_MS / 2 >= until) void renew();
  }, CHECK_MS);
  timer.unref();

  const leased: HybridClock = {
    nodeId: clock.nodeId,
    next() {
      const cursor = clock.next();
      // Reached without a renewal (the event loop was held for seconds, or the wall clock jumped
      // ahead): renew before this cursor is used. A failed write throws, and the publish with it.
      if (clock.time >= until) writeNow();
      return cursor;
    },
    observe: (cursor) => clock.observe(cursor),
    get time() {
      return clock.time;
    },
    advanceTo: (ms) => clock.advanceTo(ms),
  };
  return {
    clock: leased,
    get until() {
      return until;
    },
    stop: () => clearInterval(timer),
  };
}
