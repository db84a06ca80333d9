import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type HybridClock, UnavailableError } from '@anode/shared';
import type { Logger } from './logger.ts';
import { PRIVATE_FILE_MODE, syncFolder } from './private-files.ts';

/**
 * Cursors stay in order across restarts. The cursor clock follows the wall clock, and a fresh
 * process starts from it: a relay restarted after its wall clock stepped back (an NTP correction,
 * a VM restored from a snapshot) would mint cursors below the ones it minted before, and a
 * subscriber resuming from one of those would skip every message published since.
 *
 * So the clock leases time. `clock-lease` in the data folder holds a time that no cursor of this
 * node has reached; a starting relay's clock begins there, up to LEASE_MS ahead of its wall
 * clock (harmless: cursors are sort keys, peers' clocks follow, and the wall clock catches up).
 * The lease is moved LEASE_MS past the wall clock whenever the wall clock comes within half of it
 * (checked every CHECK_MS, written off the event loop; a clock ahead of the wall clock, as after a
 * quick restart, is leased AHEAD_MS past itself), and on the spot before a cursor would reach it
 * (the event loop was held for seconds, or the wall clock jumped ahead), so the file always runs
 * ahead of every cursor minted. It is written to a temporary file, synced and renamed, and the
 * folder synced: a crash leaves the old lease or the new one, and a lease in use is on the disk.
 * Renames happen on the event loop only, each right after checking that the file would move
 * forward, so a renewal and a write on the spot never leave the file behind the other.
 */
export const LEASE_MS = 5_000;
/**
 * How far past its starting point a restarted relay's clock is leased while it stays there. It
 * starts at the last run's lease, ahead of the wall clock, and moves only by borrowing (65,536
 * cursors per ms), so 100 ms lasts millions of cursors (and one past it renews on the spot).
 * Leasing LEASE_MS past it moved a relay 5 s further ahead at every quick restart (a review's
 * crash loop: 72 s ahead after 19 restarts, past the 60 s its peers accept from a cursor). A
 * clock that moved on (it follows a peer whose wall clock is fast) is leased LEASE_MS past
 * itself again: 100 ms would mean a write on the spot every 100 ms.
 */
export const AHEAD_MS = 100;
/** How long `problem` reports a lease write that failed (the store's health does the same). */
export const FAILED_WRITE_MS = 10_000;
const CHECK_MS = 500;
const FILE = 'clock-lease';

export interface ClockLease {
  /** The clock to mint cursors with: the one given, kept behind the lease. */
  readonly clock: HybridClock;
  /** The leased time, ms since the epoch. */
  readonly until: number;
  /** Move the lease on now, off the event loop (what the timer does when it is due). */
  renew(): Promise<void>;
  /** Why publishes may be refused: a lease write failed within FAILED_WRITE_MS (a full disk). */
  problem(): string | undefined;
  /**
   * Stops renewing, once a renewal running now has ended: the data folder is not written after
   * (a stopped relay's folder may be removed, or taken by the next run). A cursor asked of the
   * clock after it is refused (UnavailableError).
   */
  stop(): Promise<void>;
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
  const parkedAt = clock.time;

  const temporary = `${path}.tmp`;
  const renewal = `${path}.renewal`;
  const margin = () => (clock.time > parkedAt + AHEAD_MS ? LEASE_MS : AHEAD_MS);
  const nextLease = () => Math.max(now() + LEASE_MS, clock.time + margin());
  // Due when the wall clock comes within half a lease of it, or the clock within half its margin.
  const due = () => now() + LEASE_MS / 2 >= until || clock.time + margin() / 2 >= until;
  let failed: { at: number; message: string } | undefined;
  const failure = (error: unknown) => {
    failed = {
      at: performance.now(),
      message: `cannot extend the clock lease in the data folder (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    };
    return failed.message;
  };
  const text = (ms: number) => `${ms}\n`;
  const writeNow = () => {
    const next = nextLease();
    writeFileSync(temporary, text(next), { mode: PRIVATE_FILE_MODE, flush: true });
    renameSync(temporary, path);
    const folder = openSync(dataDir, 'r');
    try {
      fsyncSync(folder);
    } finally {
      closeSync(folder);
    }
    until = next;
    failed = undefined;
  };
  let stopped = false;
  const renewals = new Set<Promise<void>>();
  const renewOnce = async () => {
    try {
      const next = nextLease();
      await writeFile(renewal, text(next), { mode: PRIVATE_FILE_MODE, flush: true });
      // A lease written on the spot meanwhile reaches as far: this one is not needed. Nor is one
      // once stopped: no cursor is minted any more.
      if (stopped || next <= until) return;
      renameSync(renewal, path);
      await syncFolder(dataDir);
      until = Math.max(until, next);
      if (failed) log.info({ path }, 'clock lease written again');
      failed = undefined;
    } catch (error) {
      // Logged once per failing spell: a full disk fails a renewal every CHECK_MS.
      if (!failed) log.error({ err: error, path }, 'clock lease not renewed');
      failure(error);
    }
  };
  const renew = () => {
    if (stopped) return Promise.resolve();
    const running = renewOnce().finally(() => renewals.delete(running));
    renewals.add(running);
    return running;
  };
  try {
    writeNow();
  } catch (error) {
    // A full disk: start anyway, to serve reads. Every cursor tries the write again, and
    // publishes are refused as unavailable until one succeeds.
    log.error({ err: error, path }, `${failure(error)}: publishes are refused until it can be written`);
  }

  const timer = setInterval(() => {
    if (renewals.size === 0 && due()) void renew();
  }, CHECK_MS);
  timer.unref();

  const leased: HybridClock = {
    nodeId: clock.nodeId,
    next() {
      // Once stopped, the lease is not written again (the folder may be removed, or taken by the
      // next run): a cursor minted now could pass it unrecorded, and a write on the spot would
      // touch a folder this relay has let go of.
      if (stopped)
        throw new UnavailableError('the clock lease is stopped (the relay is stopping): no cursor is minted');
      const cursor = clock.next();
      // Reached without a renewal (the event loop was held for seconds, or the wall clock jumped
      // ahead): renew before this cursor is used. A failed write (a full disk) refuses the publish
      // as `unavailable`, which clients send again, not as an internal error, which they do not.
      if (clock.time >= until) {
        try {
          writeNow();
        } catch (error) {
          throw new UnavailableError(`${failure(error)}; try again`, { cause: error });
        }
      }
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
    renew,
    problem: () => (failed && performance.now() - failed.at < FAILED_WRITE_MS ? failed.message : undefined),
    async stop() {
      stopped = true;
      clearInterval(timer);
      await Promise.all(renewals);
    },
  };
}
