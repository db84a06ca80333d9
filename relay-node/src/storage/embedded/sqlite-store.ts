import { statfsSync } from 'node:fs';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { ensurePrivateFile, makeFolderSync, PRIVATE_DIR_MODE } from '../../private-files.ts';
import {
  type AppendResult,
  dataJson,
  type HistoryQuery,
  type MessageStore,
  type RetentionPolicy,
  type StoreHealth,
  utf8Length,
  takePage,
} from '@anode/shared';
import {
  diskFull,
  lockHeld,
  fileDamaged,
  migrate,
  openDatabase,
  type Row,
  SchemaTooNewError,
  toEnvelope,
  WAL_CHECKPOINT_PAGES,
  walPolicy,
  writeFailureMemory,
} from './sqlite-schema.ts';
import { type AsyncWrites, inProcess, startWriterThread, WRITER_STUCK_MS } from './sqlite-writer.ts';
import { CURSOR_TAKEN, createWrites, type Writes, type WriteRow } from './sqlite-writes.ts';

export { sqlitePragmas } from './sqlite-schema.ts';

/**
 * The embedded MessageStore: SQLite (Node's built-in `node:sqlite`) in the relay's data folder,
 * in WAL mode. A batch is one transaction, so an ack costs one commit however many messages it
 * covers. With `fsync` on, a commit survives power loss; off, it still survives a killed process.
 * Writes run on a writer thread (sqlite-writer.ts); reads use this thread's own connection, and
 * WAL lets them see every commit as soon as it returns.
 *
 * A small batch (up to INLINE_ROWS) that finds the thread idle is written here instead. With fsync
 * off the commit does not wait for the disk, so it costs well under a millisecond, less than the
 * two thread hand-offs it saves, and those hand-offs are what a gossiped message waited on before
 * its delivery (on a busy machine, a run-queue wait each: in a 9-relay mesh at 500 msg/s, the
 * median delivery took 116 ms with the thread on every batch and 41 ms without any store write on
 * the receiving relays). Larger batches (a publish burst) still go to the thread, which keeps the
 * event loop free while they commit; the thread being idle keeps the one-batch-at-a-time order, and
 * no two connections ever write at once. The event loop's connection never checkpoints on its own
 * (a checkpoint copies megabytes of log into the database, ~30 ms for 4,000 rows here): after every
 * INLINE_CHECKPOINT_PAGES log pages written here, the thread runs a passive checkpoint, and writes
 * here go on meanwhile (a passive checkpoint blocks no writer; waiting for it was a ~100 ms stall
 * of every publish and delivery each 10,000 rows, the p99 of a relay at 2,000 msg/s). Once it is
 * done, the next small batch goes to the thread, which first copies what was written during it (a
 * few milliseconds' worth) and then writes the batch, so the log is wholly copied and that write
 * starts it over; without that last step, a log written to during every checkpoint grows without
 * end.
 *
 * With fsync on, the commit here waits for the disk's sync, as a minimal server committing on
 * its event loop does: on a disk that syncs in a fraction of a millisecond that is less than the
 * two hand-offs too (one WebSocket publisher with 32 publishes in flight: 0.81-0.83x such a
 * server's acks/s, against 0.62-0.74x with every commit on the thread; 2026-12-03). Once most
 * commits here take longer than INLINE_SYNC_SLOW_MS, the next ones go to the thread for
 * INLINE_SYNC_BACKOFF_MS, so a slow disk holds the event loop for one commit in that while, not
 * at every commit. A disk that stops answering holds it for as long as that commit waits.
 */
export interface SqliteStoreOptions {
  dataDir: string;
  retention: RetentionPolicy;
  fsync?: boolean;
  /** For tests: an in-memory database (written in-process: it cannot be shared with a thread). */
  memory?: boolean;
  /** Messages deleted per retention transaction (default SWEEP_STEP). */
  sweepStep?: number;
  /** For tests: the database's most pages (SQLite's max_page_count): past it, writes fail as on a full disk. */
  maxPages?: number;
  /** Where a writer thread's death and restart are logged, and a migration that may take seconds. */
  log?: { warn(fields: object, message: string): void; info?(fields: object, message: string): void };
  /** For tests: called with each writer thread as it starts (to kill it). */
  onWriterThread?: (worker: Worker) => void;
  /** For tests: how long a new writer thread must live to reset the restart wait (sqlite-writer.ts). */
  writerHealthyAfterMs?: number;
  /** Test hook: called before each writer thread is made; a throw fails that start (sqlite-writer.ts). */
  testBeforeWriterThread?: () => void;
  /** For tests: how long a write may wait for the writer thread before health says not ok (WRITER_STUCK_MS). */
  stuckAfterMs?: number;
  /** For tests: false sends every write to the writer thread (none is written on the event loop). */
  inlineWrites?: boolean;
  /** For tests: INLINE_SYNC_SLOW_MS. */
  inlineSyncSlowMs?: number;
}

/** The largest batch written on the event loop (thread idle); see above. */
const INLINE_ROWS = 32;
/**
 * With fsync on, a commit on the event loop that takes longer than this (its sync included) is
 * slow, and more than half of them slow (a moving share over about the last ten,
 * INLINE_SYNC_WEIGHT) means a slow disk: the median, not the mean, as the event loop's thread is
 * sometimes descheduled mid-commit on a busy machine, and one slow commit alone (the first of a new
 * file, a log started over) says nothing of the disk.
 */
const INLINE_SYNC_SLOW_MS = 2;
const INLINE_SYNC_WEIGHT = 0.1;
/** How long commits then go to the thread before one is tried on the event loop again. */
const INLINE_SYNC_BACKOFF_MS = 1_000;
/**
 * Log pages written on the event loop between two checkpoints by the thread. With the pages
 * written here while the thread checkpoints (INLINE_DURING_CHECKPOINT_PAGES), the log stays near
 * 10,000 pages (~40 MB), under its 64 MiB limit (sqlitePragmas), so starting it over never has
 * to truncate it. Rows were counted before (4,000 between checkpoints): one-row commits, a mesh
 * relay's usual write, log ~4.3 pages each, so the log reached 85-97 MB, and at 10,000 rows the
 * write that started it over truncated ~30 MB of file on the event loop (commits of 20-200 ms
 * every few seconds in a 3-relay mesh at 2,000 msg/s).
 */
const INLINE_CHECKPOINT_PAGES = 8_000;
/** Log pages written on the event loop while the thread checkpoints (see createSqliteStore). */
const INLINE_DURING_CHECKPOINT_PAGES = 2_000;
/**
 * The log pages a commit of `rows` writes, estimated (SQLite does not say without a checkpoint):
 * ~3 for the commit (the topic's count, its latest row, interior pages), and for each row ~1.5
 * (its history leaf, and its id index's leaf: ids come in any order) plus its data's pages.
 * Measured with 100-200 byte messages and random ids (2026-12-03): 4.3 pages for one row, 9.5 for
 * 4 and 29 for 16 in one topic; time-ordered ids, as a relay mints them, log fewer.
 */
function logPages(rows: readonly WriteRow[], pageSize: number): number {
  let pages = 3;
  for (const row of rows) pages += 1.5 + row[5].length / pageSize;
  return pages;
}
/**
 * Messages a retention sweep deletes per transaction. Appends wait for the transaction they
 * arrive behind, and deleting costs ~1.6 µs per message here: one transaction for the 900,000
 * messages over the per-topic limit that a minute at 15,000 msg/s leaves held every publish for
 * 1.5 s. Steps of 2,000 hold an append for a few milliseconds at most, and appends that arrive
 * during a step are written before the next step.
 */
const SWEEP_STEP = 2_000;

/**
 * Open and migrate the store's file, or fail naming it: SQLite's own message ("file is not a
 * database") did not say which file, nor what an operator can do about it.
 */
function openStoreFile(path: string, fsync: boolean, maxPages: number | undefined, log: SqliteStoreOptions['log']) {
  let db: ReturnType<typeof openDatabase> | undefined;
  try {
    db = openDatabase(path, fsync, maxPages);
    migrate(db, log);
    return db;
  } catch (error) {
    db?.close();
    const { message } = error as Error;
    const advice = fileDamaged(error)
      ? ". The embedded store's file is damaged: stop the relay, move it aside (with any " +
        'messages.sqlite-wal and messages.sqlite-shm beside it) or restore it from a backup, and ' +
        'start again; with no file the relay starts with an empty store'
      : '';
    const wrapped = new Error(`${path}: ${message}${advice}`, { cause: error });
    throw error instanceof SchemaTooNewError ? Object.assign(wrapped, { code: error.code }) : wrapped;
  }
}

/**
 * The writer thread, or fail naming the file, with the read connection `db` closed: when the
 * first thread could not be made (`new Worker` throws ERR_WORKER_INIT_FAILED at the process's
 * thread limit), the store did not open, and its connection stayed open (the file, its log and
 * shared memory held until a garbage collection) behind a bare "EAGAIN" (Node's error is only the
 * libuv error's name, code ERR_WORKER_INIT_FAILED).
 */
function startWriter(db: ReturnType<typeof openDatabase>, path: string, fsync: boolean, options: SqliteStoreOptions) {
  try {
    return startWriterThread(path, fsync, {
      maxPages: options.maxPages,
      log: options.log,
      onThread: options.onWriterThread,
      healthyAfterMs: options.writerHealthyAfterMs,
      testBeforeThreadStart: options.testBeforeWriterThread,
    });
  } catch (error) {
    db.close();
    const { message, code } = error as Error & { code?: unknown };
    const wrapped = new Error(`${path}: the store's writer thread could not be started: ${message}`, { cause: error });
    throw code === undefined ? wrapped : Object.assign(wrapped, { code });
  }
}

/**
 * The connection small batches are written on (see the top of this file): its own,
 * so that it may never wait for the write lock (busy_timeout 0) while reads on the store's
 * connection still do. Another process holding the lock (an operator's `sqlite3` shell inside a
 * transaction) held the event loop for the whole 5 s busy timeout on every such write, and the
 * relay answered nothing meanwhile; such a write now goes to the thread (inlineOrThread), which
 * waits there. It never checkpoints on its own either. `db` is closed if it cannot be opened.
 */
function openInlineConnection(
  db: ReturnType<typeof openDatabase>,
  path: string,
  fsync: boolean,
  maxPages: number | undefined,
) {
  let inline: ReturnType<typeof openDatabase> | undefined;
  try {
    inline = openDatabase(path, fsync, maxPages);
    inline.exec('PRAGMA busy_timeout = 0; PRAGMA wal_autocheckpoint = 0');
    return inline;
  } catch (error) {
    inline?.close();
    db.close();
    throw new Error(`${path}: ${(error as Error).message}`, { cause: error });
  }
}

export function createSqliteStore(options: SqliteStoreOptions): MessageStore {
  let path = ':memory:';
  if (!options.memory) {
    makeFolderSync(options.dataDir, PRIVATE_DIR_MODE);
    path = join(options.dataDir, 'messages.sqlite');
    ensurePrivateFile(path);
  }
  const fsync = options.fsync !== false;
  const db = openStoreFile(path, fsync, options.maxPages, options.log);
  const inlineDb =
    options.memory || options.inlineWrites === false
      ? undefined
      : openInlineConnection(db, path, fsync, options.maxPages);
  let writes: AsyncWrites;
  try {
    writes = options.memory ? inProcess(createWrites(db)) : startWriter(db, path, fsync, options);
  } catch (error) {
    inlineDb?.close();
    throw error;
  }
  const inline = inlineDb ? createWrites(inlineDb) : undefined;
  // On a small disk the writer thread checkpoints sooner (walPolicy); the rows written here
  // between its checkpoints shrink alike, or this connection's log filled a disk that another
  // file then filled up, with nothing left to checkpoint with (a review: stuck for good in 6
  // of 10 runs on a 6 MiB tmpfs). The same as before on a disk of 640 MiB or more.
  const disk = inline ? statfsSync(options.dataDir) : undefined;
  const { page_size: pageSize } = db.prepare('PRAGMA page_size').get() as { page_size: number };
  const share = disk ? walPolicy(disk.blocks * disk.bsize, pageSize).checkpointPages / WAL_CHECKPOINT_PAGES : 1;
  const checkpointPages = Math.max(40, Math.floor(INLINE_CHECKPOINT_PAGES * share));
  const duringCheckpoint = Math.max(20, Math.floor(INLINE_DURING_CHECKPOINT_PAGES * share));
  let inlinePages = 0;
  // A failed append (reads never needed the disk's room): health says not ok for a while.
  const writeFailure = writeFailureMemory();
  // While the thread's checkpoint runs, at most INLINE_DURING_CHECKPOINT_PAGES pages are written here;
  // beyond them, writes queue behind the checkpoint on the thread, as they all did before. That
  // bounds the log, and the copy left for this connection, when the event loop never yields
  // (a run of appends that only await each other would otherwise never see the thread's answer).
  let checkpointing = false;
  let copyRest = false;
  // With fsync on: the share of commits here that were slow, and no commit here before
  // `inlineAfter` (the disk syncs slowly; see INLINE_SYNC_SLOW_MS).
  let slowShare = 0;
  let inlineAfter = 0;
  const appendInline = (direct: Writes, rows: readonly WriteRow[]) => {
    if (copyRest) {
      // The thread's checkpoint is done and the thread is idle (or this write would be there):
      // what was written during it is copied, and this write starts the log over. On the thread,
      // in one request with this write, so nothing is written between the two: run here, that
      // copy (up to INLINE_DURING_CHECKPOINT_PAGES pages) held the event loop, 4.6% of its busy
      // time under one publisher (a profile of 2026-12-02). Writes behind this one go to the
      // thread too until it is idle again, so the order holds.
      copyRest = false;
      return writes.append(rows, true);
    }
    const started = fsync ? performance.now() : 0;
    const stored = direct.append(rows);
    if (fsync) {
      const done = performance.now();
      const slow = done - started > (options.inlineSyncSlowMs ?? INLINE_SYNC_SLOW_MS) ? 1 : 0;
      slowShare += (slow - slowShare) * INLINE_SYNC_WEIGHT;
      if (slowShare > 0.5) inlineAfter = done + INLINE_SYNC_BACKOFF_MS;
    }
    inlinePages += logPages(rows, pageSize);
    if (!checkpointing && inlinePages >= checkpointPages) {
      checkpointing = true;
      inlinePages = 0;
      const done = (copy: boolean) => {
        checkpointing = false;
        copyRest = copy;
        inlinePages = 0;
      };
      // A failed thread shows in health() (and sends writes to it, which fail); the next retries.
      writes.checkpoint().then(
        () => done(true),
        () => done(false),
      );
    }
    return stored;
  };
  /**
   * A write here that finds the disk full (rolled back) goes to the thread, which makes room (it
   * cuts the log, and spends the reserve file if it must) and writes it. Refused here, it stayed
   * refused: the thread's once-a-second cut of an empty log succeeds without freeing anything,
   * so the reserve was never spent, and a relay publishing one message at a time refused every
   * publish while another file held the disk (a review: 15 s and 297 refusals, then for good).
   * The same for a write that finds the lock held by another process (openInlineConnection): the
   * thread waits for it, off the event loop. Still in order: the thread was idle, and nothing
   * else is written before it has this batch.
   */
  const inlineOrThread = (direct: Writes, rows: readonly WriteRow[]) => {
    try {
      return appendInline(direct, rows);
    } catch (error) {
      if (!diskFull(error) && !lockHeld(error)) throw error;
      return writes.append(rows);
    }
  };
  const writeInline = (rows: readonly WriteRow[]) =>
    inline !== undefined &&
    rows.length <= INLINE_ROWS &&
    writes.idle &&
    (!fsync || performance.now() >= inlineAfter) &&
    !writes.failure &&
    !(checkpointing && inlinePages + logPages(rows, pageSize) > duringCheckpoint);

  const q = (sql: string) => db.prepare(sql);
  const history = q('SELECT * FROM messages WHERE topic = ? AND cursor > ? ORDER BY cursor LIMIT ?');
  const latest = q('SELECT * FROM latest WHERE topic = ?');
  // The primary key (topic, source) gives the order: a page reads its rows and one more at most.
  const latestAfter = q('SELECT * FROM latest WHERE topic = ? AND source > ? ORDER BY source LIMIT ?');
  const topics = q('SELECT topic FROM topics WHERE count > 0 ORDER BY topic');
  const trimmed = q('SELECT trimmed_through FROM topics WHERE topic = ?');
  // Emptied topics too (count 0): their row, and its mark, stay.
  const trimmedTopics = q('SELECT topic, trimmed_through FROM topics WHERE trimmed_through > ?');
  const markOf = (topic: string) =>
    (trimmed.get(topic) as { trimmed_through: string | null } | undefined)?.trimmed_through ?? undefined;
  // Row by row, not `.all()`: a page cut by `maxBytes` reads one row past it at most.
  const readPage = (topic: string, query: HistoryQuery) =>
    takePage(history.iterate(topic, query.after ?? '', query.limit) as Iterable<Row>, query, (row) =>
      utf8Length(row.data),
    ).page;
  const begin = q('BEGIN');
  const commit = q('COMMIT');
  const rollback = q('ROLLBACK');
  /**
   * The page and the topic's mark in one read transaction: WAL gives both statements the same
   * snapshot, so a sweep the writer thread commits between them (it runs beside this thread) is
   * in both or in neither. Nothing else runs on this connection meanwhile: the reads are synchronous.
   */
  const pageAndMark = (topic: string, query: HistoryQuery) => {
    begin.run();
    try {
      const rows = query.limit > 0 ? readPage(topic, query) : [];
      const mark = markOf(topic);
      commit.run();
      return { rows, mark };
    } catch (error) {
      if (db.isTransaction) rollback.run();
      throw error;
    }
  };

  return {
    kind: 'embedded',
    // The thread runs requests in arrival order, and a write goes inline only while it is idle.
    pipelinedAppends: true,

    async append(messages) {
      const rows = messages.map((m): WriteRow => [m.id, m.topic, m.cursor, m.source, m.ts, dataJson(m)]);
      let stored: Awaited<ReturnType<typeof writes.append>>;
      try {
        if (inline && writeInline(rows)) {
          const written = inlineOrThread(inline, rows);
          stored = written instanceof Promise ? await written : written;
        } else stored = await writes.append(rows);
        writeFailure.taken();
      } catch (error) {
        writeFailure.failed(error);
        throw error;
      }
      // Rows a dead writer thread may have committed without saying so (sqlite-writer.ts): one
      // found stored as that write left it is reported new, once, so the hub fans it out (and
      // gossips a local publish); refused, it was neither. Before, a keyed publish sent again
      // after such a refusal was acked with the stored copy and never delivered live here, nor
      // gossiped (other relays had it at their next catch-up).
      const recheck = writes.unconfirmed > 0;
      return messages.map((m, i): AppendResult => {
        const existing = stored[i];
        if (existing === CURSOR_TAKEN) return { envelope: m, inserted: false, conflict: true };
        if (!existing) {
          if (recheck) writes.takeUnconfirmed(m.id);
          return { envelope: m, inserted: true };
        }
        const unconfirmed = recheck && writes.takeUnconfirmed(existing.id, existing.cursor);
        return { envelope: toEnvelope(existing), inserted: unconfirmed };
      });
    },

    async history(topic, query) {
      const report = query.onTrimmedThrough;
      if (!report) return query.limit > 0 ? readPage(topic, query).map(toEnvelope) : [];
      const { rows, mark } = pageAndMark(topic, query);
      report(mark);
      return rows.map(toEnvelope);
    },

    async latest(topic, query) {
      // fromEntries defines own properties, so a source named `__proto__` is kept, not swallowed.
      if (!query) return Object.fromEntries((latest.all(topic) as Row[]).map((row) => [row.source, toEnvelope(row)]));
      const rows = latestAfter.iterate(topic, query.after ?? '', query.limit) as Iterable<Row>;
      const { page } = takePage(rows, query, (row) => utf8Length(row.data));
      return Object.fromEntries(page.map((row) => [row.source, toEnvelope(row)]));
    },

    async topics() {
      return (topics.all() as { topic: string }[]).map((r) => r.topic);
    },

    async trimmedThrough(topic) {
      return markOf(topic);
    },

    async trimmedTopics(after = '') {
      const rows = trimmedTopics.all(after) as { topic: string; trimmed_through: string }[];
      return new Map(rows.map((row) => [row.topic, row.trimmed_through]));
    },

    async sweep(nowMs = Date.now(), counts) {
      const step = Math.max(1, options.sweepStep ?? SWEEP_STEP);
      let deleted = 0;
      let from: string | null = '';
      // Each step deletes at least one row (a message or a latest row) or moves past a topic, so this ends.
      while (from !== null) {
        const result = await writes.sweep(nowMs, options.retention, step, from);
        deleted += result.deleted;
        if (counts) counts.latestDeleted += result.latestDeleted;
        from = result.next;
      }
      return deleted;
    },

    async health(): Promise<StoreHealth> {
      // How many times a dead writer thread was started again (sqlite-writer.ts), once it was.
      const restarts = writes.restarts > 0 ? { writer_restarts: writes.restarts } : {};
      if (writes.failure) return { ok: false, detail: writes.failure, path, ...restarts };
      // A thread that stops answering is not dead (a stalled disk, another process's lock on the
      // file): it is not ok while its oldest request waits too long, and ok again once answered.
      const waited = writes.oldestWaitMs;
      if (waited > (options.stuckAfterMs ?? WRITER_STUCK_MS)) {
        const detail =
          `a write has waited ${(waited / 1000).toFixed(1)} s for the store's writer thread (the disk may be ` +
          "stalled, or another process holds the database's lock): publishes are not acknowledged meanwhile";
        return { ok: false, detail, path, writer_wait_ms: Math.round(waited), ...restarts };
      }
      const failed = writeFailure.recent();
      if (failed !== undefined) return { ok: false, detail: `the last write failed: ${failed}`, path, ...restarts };
      try {
        db.prepare('SELECT 1').get();
        return { ok: true, path, ...restarts };
      } catch (error) {
        return { ok: false, detail: (error as Error).message, path, ...restarts };
      }
    },

    async close() {
      await writes.close();
      if (inlineDb?.isOpen) inlineDb.close();
      if (db.isOpen) db.close();
    },
  };
}
