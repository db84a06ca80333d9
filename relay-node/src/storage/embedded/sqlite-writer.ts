import { Worker } from 'node:worker_threads';
import type { RetentionPolicy } from '@anode/shared';
import type { Appended, SweepStep, Writes, WriteRow } from './sqlite-writes.ts';

/**
 * The store's writes, run on a worker thread with its own connection. A commit blocks on the
 * disk (page writes, checkpoints, the fsync); on the event loop that stalled every socket of the
 * relay for as long, and nothing else could be parsed meanwhile. On its own thread, the next
 * batch gathers while this one commits. Requests run one at a time in order (the hub's writer
 * already sends one batch at a time, so cursor order is kept).
 */
export type WriterRequest =
  | { seq: number; op: 'append'; rows: readonly WriteRow[]; checkpointFirst?: boolean }
  | { seq: number; op: 'sweep'; nowMs: number; retention: RetentionPolicy; budget: number; fromTopic?: string }
  | { seq: number; op: 'checkpoint' }
  | { seq: number; op: 'close' };

export type WriterReply = { seq: number; ok: true; result: unknown } | { seq: number; ok: false; message: string };

export interface AsyncWrites {
  /**
   * `checkpointFirst`: run a passive checkpoint in the same request, before the append (nothing
   * else is written between the two, so the log is wholly copied and the append starts it over).
   */
  append(rows: readonly WriteRow[], checkpointFirst?: boolean): Promise<Appended[]>;
  /** One step of retention: at most `budget` deletions, in one transaction (see Writes.sweep). */
  sweep(nowMs: number, retention: RetentionPolicy, budget: number, fromTopic?: string): Promise<SweepStep>;
  /** Copy the write-ahead log into the database (a passive checkpoint: it blocks no writer). */
  checkpoint(): Promise<void>;
  /** Why writes fail while the thread is gone (or the store closed); undefined while it runs. */
  readonly failure: string | undefined;
  /** Writer threads started again after one died. */
  readonly restarts: number;
  /** How many ids a dead thread was asked to append and never answered for (see takeUnconfirmed). */
  readonly unconfirmed: number;
  /** How many cursors are kept for those ids (at most UNCONFIRMED_CURSORS_MAX each). */
  readonly unconfirmedCursors: number;
  /**
   * Drop `id` from the appends a dead thread never answered for; true if it was one of them and
   * the row stored under it has the cursor that append carried (`storedCursor`): that append was
   * committed, and refused all the same.
   */
  takeUnconfirmed(id: string, storedCursor?: string): boolean;
  /**
   * No write is in flight (an append, a sweep, a close); a checkpoint may be. A passive checkpoint
   * blocks no writer, so another connection may write meanwhile without breaking the order.
   */
  readonly idle: boolean;
  /**
   * How long the oldest request the thread has not answered has waited, in ms; 0 when none.
   * Checkpoints count: requests run in order, so a write sent behind one waits for it too (see
   * WRITER_STUCK_MS).
   */
  readonly oldestWaitMs: number;
  close(): Promise<void>;
}

type Request = WriterRequest extends infer R ? (R extends WriterRequest ? Omit<R, 'seq'> : never) : never;

/**
 * The process's Node flags the thread takes: only CPU profiling (so `--cpu-prof` profiles the
 * writer too). Loader hooks (`--import`) and the like are the main thread's business; a thread
 * that only runs SQLite would load and run them again.
 */
function profilingFlags(): string[] {
  const flags: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    if (!flag.startsWith('--cpu-prof')) continue;
    flags.push(flag);
    const takesValue = flag === '--cpu-prof-dir' || flag === '--cpu-prof-name' || flag === '--cpu-prof-interval';
    if (takesValue && argv[i + 1] !== undefined) flags.push(argv[++i] as string);
  }
  return flags;
}

/** The first wait before a dead writer thread is started again; it doubles while the new one dies too. */
export const RESTART_MIN_MS = 100;
/** The longest wait between two starts of a writer thread that keeps dying. */
export const RESTART_MAX_MS = 10_000;
/**
 * How long a new thread must live to count as healthy (the wait goes back to RESTART_MIN_MS), if
 * it answered nothing before: as long as the longest wait, so a thread that keeps dying sooner
 * than that still waits longer each time.
 */
export const RESTART_HEALTHY_MS = RESTART_MAX_MS;
/** The most ids kept of appends a dead thread never answered for (the oldest are dropped). */
export const UNCONFIRMED_MAX = 100_000;
/**
 * The most cursors kept per id of those appends (the oldest are dropped). An id is in more than
 * one only when it was sent again while unanswered (a client retrying a keyed publish, two
 * clients with one key), once per append in flight at each death; a client that retries while
 * the thread keeps dying added one at every death, for as long as it did, times 100,000 ids.
 */
export const UNCONFIRMED_CURSORS_MAX = 8;
/**
 * How long the oldest unanswered request may wait before the store's health says not ok. A
 * thread that stops answering (a stalled disk or NFS mount, another process holding the
 * database's write lock) is not dead: without this, health said ok while every publish waited
 * for an ack that never came. Checkpoints count too, as writes queued behind one wait for it: a
 * passive checkpoint copies at most one interval's log (WAL_CHECKPOINT_PAGES, ~40 MiB), seconds
 * on a slow disk, so 30 s is generous for it, and for a write that waits out the 5 s busy_timeout
 * on another connection's lock; a request still unanswered after 30 s means the disk or a lock
 * holds the thread.
 */
export const WRITER_STUCK_MS = 30_000;

export interface WriterThreadOptions {
  maxPages?: number;
  /** Where a thread's death and restart are logged. */
  log?: { warn(fields: object, message: string): void };
  /** For tests: called with each thread as it starts. */
  onThread?: (worker: Worker) => void;
  /** For tests: RESTART_HEALTHY_MS. */
  healthyAfterMs?: number;
  /**
   * Test hook: called before each thread is made; what it throws is taken as `new Worker`
   * throwing (ERR_WORKER_INIT_FAILED when the process may not make another thread).
   */
  testBeforeThreadStart?: () => void;
}

/**
 * Writes on a worker thread, started again when it dies (an uncaught error, an out-of-memory in
 * the thread, a `terminate()`). Before, one death failed every later write until the relay
 * restarted, while it kept serving and refusing every publish.
 *
 * A death rejects every request the thread had not answered: those writes are refused, never
 * acknowledged (SQLite may have committed one just before: a resend, same id, is stored once).
 * What it answered was committed, and a commit survives the thread as it survives the process
 * (the database file and its log are the same). Meanwhile `failure` says why and when the next
 * thread starts (health is not ok, and writes are refused at once rather than queued behind a
 * thread that may die again). It waits RESTART_MIN_MS, doubling up to RESTART_MAX_MS while
 * each new thread dies before it proved healthy; a thread that answered a request, or lived
 * RESTART_HEALTHY_MS, resets the wait. Before, only an answer did: with fsync off the store
 * writes small batches itself and the thread seldom answers, and an idle relay sends it nothing,
 * so a thread that died once a day waited longer each day, up to RESTART_MAX_MS. The
 * connection of a dead thread is closed as its thread ends, so its locks go with it.
 */
export function startWriterThread(path: string, fsync: boolean, options: WriterThreadOptions = {}): AsyncWrites {
  const pending = new Map<
    number,
    // `sentAt`: performance.now() when it was sent (see oldestWaitMs).
    { resolve: (value: unknown) => void; reject: (error: Error) => void; rows?: readonly WriteRow[]; sentAt: number }
  >();
  // Id to the cursors it had in appends a dead thread never answered for (see remember): one id in
  // two of them (a resend pipelined behind the first) was committed under the first one's cursor.
  // `dropped`: cursors were dropped past UNCONFIRMED_CURSORS_MAX.
  const unconfirmed = new Map<string, { cursors: Set<string>; dropped: boolean }>();
  let cursorsKept = 0;
  let seq = 0;
  let failure: string | undefined;
  let writing = 0; // requests in `pending` that are not checkpoints
  let closed = false;
  let deaths = 0; // in a row, with no healthy thread between them
  const healthyAfterMs = options.healthyAfterMs ?? RESTART_HEALTHY_MS;
  let restarts = 0;
  let restartTimer: NodeJS.Timeout | undefined;

  const start = (): Worker => {
    options.testBeforeThreadStart?.();
    const thread = new Worker(new URL('./sqlite-writer-thread.ts', import.meta.url), {
      workerData: { path, fsync, maxPages: options.maxPages },
      execArgv: profilingFlags(),
    });
    const born = performance.now();
    let why: string | undefined;
    thread.on('message', (reply: WriterReply) => {
      deaths = 0;
      const waiting = pending.get(reply.seq);
      pending.delete(reply.seq);
      if (pending.size === 0) thread.unref(); // an idle writer does not keep the process alive
      if (reply.ok) waiting?.resolve(reply.result);
      else waiting?.reject(new Error(reply.message));
    });
    thread.on('error', (error) => (why ??= `store writer thread failed: ${error.message}`));
    thread.on('exit', (code) => died(why ?? `store writer thread exited (${code})`, performance.now() - born));
    // After the listeners: adding a 'message' listener refs the worker's port again.
    thread.unref();
    options.onThread?.(thread);
    return thread;
  };

  /** `lived`: how long the thread ran (none when no thread could be made). */
  const died = (why: string, lived = 0) => {
    if (closed) {
      failure ??= why;
      return rejectPending(why);
    }
    if (lived >= healthyAfterMs) deaths = 0;
    deaths += 1;
    const wait = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (deaths - 1));
    failure = `${why}; started again in ${wait} ms`;
    remember();
    rejectPending(`${why} before confirming this write (not stored, or stored without an acknowledgement)`);
    const message = `${why}; writes are refused until it is started again`;
    // Without a logger (a store made outside a relay), on stderr as a process warning.
    if (options.log) options.log.warn({ path, restarts, wait_ms: wait }, message);
    else process.emitWarning(`${path}: ${message} in ${wait} ms`, { code: 'ANODE_STORE_WRITER_DIED' });
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      if (closed) return;
      // No thread may be made (`new Worker` throws at once: ERR_WORKER_INIT_FAILED, EAGAIN at the
      // process's thread limit): writes stay refused and it is tried again after the next wait.
      // Before, that throw was uncaught here and the relay exited.
      let thread: Worker;
      try {
        thread = start();
      } catch (error) {
        return died(`store writer thread could not be started: ${(error as Error).message}`);
      }
      worker = thread;
      restarts += 1;
      failure = undefined;
    }, wait).unref();
  };

  /**
   * An append the dead thread never answered for may have been committed all the same (it died
   * after COMMIT returned, before its answer went out): refused, yet stored, and so never fanned
   * out nor gossiped; sent again (a keyed publish, a catch-up), it is found stored, not new, and
   * was never delivered live. Its ids are kept, so that the store reports such a row as new once
   * (takeUnconfirmed; a delivery twice, same id, is within at-least-once; never once is not).
   */
  /*
   * Past UNCONFIRMED_CURSORS_MAX cursors for one id the oldest are dropped, and with them most
   * likely the one it was stored under (the first of its appends that ran). So such an id, found
   * stored under any cursor, is reported new: at worst a copy an answered append stored is
   * delivered a second time (same id, within at-least-once), never a stored one not at all.
   */
  const remember = () => {
    for (const { rows } of pending.values()) {
      for (const [id, , cursor] of rows ?? []) {
        const entry = unconfirmed.get(id) ?? { cursors: new Set<string>(), dropped: false };
        if (!entry.cursors.has(cursor)) {
          entry.cursors.add(cursor);
          cursorsKept += 1;
        }
        for (const oldest of entry.cursors) {
          if (entry.cursors.size <= UNCONFIRMED_CURSORS_MAX) break;
          entry.cursors.delete(oldest);
          entry.dropped = true;
          cursorsKept -= 1;
        }
        unconfirmed.delete(id); // to the end: the newest is dropped last
        unconfirmed.set(id, entry);
      }
    }
    for (const [id, { cursors }] of unconfirmed) {
      if (unconfirmed.size <= UNCONFIRMED_MAX) break;
      unconfirmed.delete(id);
      cursorsKept -= cursors.size;
    }
  };

  const rejectPending = (message: string) => {
    const waiting = [...pending.values()];
    pending.clear();
    for (const { reject } of waiting) reject(new Error(message));
  };

  let worker = start();

  const call = (request: Request): Promise<unknown> => {
    if (failure) return Promise.reject(new Error(failure));
    const id = ++seq;
    if (pending.size === 0) worker.ref();
    const write = request.op !== 'checkpoint';
    if (write) writing += 1;
    const done = () => void (write && (writing -= 1));
    return new Promise((resolve, reject) => {
      pending.set(id, {
        resolve: (value) => (done(), resolve(value)),
        reject: (error) => (done(), reject(error)),
        rows: request.op === 'append' ? request.rows : undefined,
        sentAt: performance.now(),
      });
      worker.postMessage({ ...request, seq: id });
    });
  };

  return {
    append: (rows, checkpointFirst) =>
      call(checkpointFirst ? { op: 'append', rows, checkpointFirst } : { op: 'append', rows }) as Promise<Appended[]>,
    sweep: (nowMs, retention, budget, fromTopic) =>
      call({ op: 'sweep', nowMs, retention, budget, fromTopic }) as Promise<SweepStep>,
    checkpoint: async () => void (await call({ op: 'checkpoint' })),
    get failure() {
      return failure;
    },
    get idle() {
      return writing === 0;
    },
    get oldestWaitMs() {
      // The thread answers in order and the map keeps insertion order: the first entry is the oldest.
      for (const { sentAt } of pending.values()) return performance.now() - sentAt;
      return 0;
    },
    get restarts() {
      return restarts;
    },
    get unconfirmed() {
      return unconfirmed.size;
    },
    get unconfirmedCursors() {
      return cursorsKept;
    },
    takeUnconfirmed(id, storedCursor) {
      const entry = unconfirmed.get(id);
      if (entry === undefined) return false;
      unconfirmed.delete(id);
      cursorsKept -= entry.cursors.size;
      return storedCursor !== undefined && (entry.dropped || entry.cursors.has(storedCursor));
    },
    async close() {
      if (closed) return;
      const down = failure !== undefined;
      closed = true;
      clearTimeout(restartTimer);
      // A thread already gone has nothing to close.
      if (!down) await call({ op: 'close' }).catch(() => {});
      failure = 'store is closed';
      await worker.terminate();
    },
  };
}

/** The same interface over in-process writes (an in-memory database cannot be shared). */
export function inProcess(writes: Writes): AsyncWrites {
  return {
    append: async (rows) => writes.append(rows),
    sweep: async (nowMs, retention, budget, fromTopic) => writes.sweep(nowMs, retention, budget, fromTopic),
    async checkpoint() {}, // an in-memory database has no log to copy
    failure: undefined,
    idle: true,
    oldestWaitMs: 0, // writes run as they are called
    restarts: 0,
    unconfirmed: 0,
    unconfirmedCursors: 0,
    takeUnconfirmed: () => false,
    async close() {},
  };
}
