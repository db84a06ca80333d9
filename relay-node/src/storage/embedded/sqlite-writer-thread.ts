import { randomFillSync } from 'node:crypto';
import { closeSync, openSync, statfsSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { diskFull, openDatabase, walPolicy } from './sqlite-schema.ts';
import type { WriterRequest, WriterReply } from './sqlite-writer.ts';
import { createWrites } from './sqlite-writes.ts';

/**
 * The embedded store's writer thread: owns the one writing connection and runs each request as
 * one transaction, in arrival order, replying once it is committed (and synced, with fsync on).
 *
 * A full disk: a write that fails with SQLITE_FULL is tried once more after the thread has made
 * room for the log: a TRUNCATE checkpoint copies the log into the database file and cuts the log
 * to nothing. It needs no room as long as the pages it copies are already in the database file;
 * when that file must grow to take them, it fails on a full disk ("database or disk is full", on
 * a full tmpfs every time: a 4 KiB file behind a 6 MiB log of 29 pages), and so does retention,
 * which needs log room to delete. Then the thread deletes the reserve file (walPolicy) and
 * checkpoints again, which then runs (measured on a full 6 MiB tmpfs).
 */
const { path, fsync, maxPages } = workerData as { path: string; fsync: boolean; maxPages?: number };
const db = openDatabase(path, fsync, maxPages);
const writes = createWrites(db);
const port = parentPort;
if (!port) throw new Error('sqlite-writer-thread runs as a worker thread');

const folder = dirname(path);
const { page_size: pageSize } = db.prepare('PRAGMA page_size').get() as { page_size: number };
const disk = statfsSync(folder);
const policy = walPolicy(disk.blocks * disk.bsize, pageSize);
db.exec(`PRAGMA wal_autocheckpoint = ${policy.checkpointPages}`);

const reservePath = `${path}-reserve`;
let reserved = false;
/** Make the reserve file (policy.reserveBytes), if the disk has `times` as much room. */
function reserve(times: number): void {
  try {
    if (statSync(reservePath).size >= policy.reserveBytes) return void (reserved = true);
  } catch {
    // none yet
  }
  const room = statfsSync(folder);
  if (room.bavail * room.bsize < times * policy.reserveBytes) return;
  let fd: number | undefined;
  try {
    fd = openSync(reservePath, 'w', 0o600);
    // Random bytes: a compressing file system would store zeros in next to nothing.
    writeSync(fd, randomFillSync(Buffer.allocUnsafe(policy.reserveBytes)));
    reserved = true;
  } catch {
    try {
      unlinkSync(reservePath);
    } catch {
      // never made
    }
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
reserve(2);

/** Copy the log into the database file and cut it to nothing (throws SQLITE_FULL when it cannot). */
function truncateLog(): boolean {
  // TRUNCATE waits (busy_timeout) for the store's reads, and its inline writes.
  const { busy } = db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get() as { busy: number };
  return busy === 0;
}
const truncated = () => {
  try {
    return truncateLog();
  } catch {
    return false;
  }
};

/** Delete the reserve file: whether there was one. */
function release(): boolean {
  const had = reserved;
  reserved = false;
  try {
    unlinkSync(reservePath);
    return true;
  } catch {
    return had;
  }
}

/**
 * Run a write; on a full disk cut the log and run it again, and if that fails too (the database
 * file could not grow by the log's new pages, or the log has no room left), release the reserve,
 * cut the log and run it a third time. A failed transaction was rolled back, so it is written once.
 */
function withRoom(attempt: () => unknown): unknown {
  try {
    return attempt();
  } catch (error) {
    if (!diskFull(error)) throw error;
    if (truncated()) {
      try {
        return attempt();
      } catch (again) {
        if (!diskFull(again)) throw again;
      }
    }
    if (!release() || !truncated()) throw error;
    return attempt();
  }
}

/**
 * Each second: with less than twice the reserve free on the disk, cut the log (releasing the
 * reserve if it cannot). The store writes small batches on its own connection, which never
 * checkpoints (sqlite-store.ts), and a write failing there does not reach this thread; this is
 * what frees the log then. The reserve is made again as soon as the disk has
 * room for it: it comes before the log, or the next time the database file must grow to take
 * the log's pages on a full disk, nothing could make room.
 */
const keeper = setInterval(() => {
  try {
    const free = statfsSync(folder);
    const room = free.bavail * free.bsize;
    if (!reserved && room >= policy.reserveBytes) reserve(1);
    if (room >= 2 * policy.reserveBytes) return;
    try {
      truncateLog();
    } catch (error) {
      if (diskFull(error) && release()) truncated();
    }
  } catch {
    // the next second, or the next write, tries again
  }
}, 1_000).unref();

const run = (request: Exclude<WriterRequest, { op: 'close' }>): unknown => {
  if (request.op === 'checkpoint') return void db.exec('PRAGMA wal_checkpoint(PASSIVE)');
  if (request.op === 'append') {
    if (request.checkpointFirst) db.exec('PRAGMA wal_checkpoint(PASSIVE)');
    return writes.append(request.rows);
  }
  return writes.sweep(request.nowMs, request.retention, request.budget, request.fromTopic);
};

port.on('message', (request: WriterRequest) => {
  let reply: WriterReply;
  try {
    if (request.op === 'close') {
      clearInterval(keeper);
      db.close();
      reply = { seq: request.seq, ok: true, result: null };
    } else {
      reply = { seq: request.seq, ok: true, result: withRoom(() => run(request)) };
    }
  } catch (error) {
    reply = { seq: request.seq, ok: false, message: (error as Error).message };
  }
  port.postMessage(reply);
  if (request.op === 'close') port.close();
});
