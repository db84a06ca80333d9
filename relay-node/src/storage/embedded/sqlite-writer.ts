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
  | { seq: number; op: 'append'; rows: readonly WriteRow[] }
  | { seq: number; op: 'sweep'; nowMs: number; retention: RetentionPolicy; budget: number; fromTopic?: string }
  | { seq: number; op: 'checkpoint' }
  | { seq: number; op: 'close' };

export type WriterReply = { seq: number; ok: true; result: unknown } | { seq: number; ok: false; message: string };

export interface AsyncWrites {
  append(rows: readonly WriteRow[]): Promise<Appended[]>;
  /** One step of retention: at most `budget` deletions, in one transaction (see Writes.sweep). */
  sweep(nowMs: number, retention: RetentionPolicy, budget: number, fromTopic?: string): Promise<SweepStep>;
  /** Copy the write-ahead log into the database (a passive checkpoint: it blocks no writer). */
  checkpoint(): Promise<void>;
  /** Why writes fail, once the thread is gone; undefined while it runs. */
  readonly failure: string | undefined;
  /**
   * No write is in flight (an append, a sweep, a close); a checkpoint may be. A passive checkpoint
   * blocks no writer, so another connection may write meanwhile without breaking the order.
   */
  readonly idle: boolean;
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

export function startWriterThread(path: string, fsync: boolean, maxPages?: number): AsyncWrites {
  const worker = new Worker(new URL('./sqlite-writer-thread.ts', import.meta.url), {
    workerData: { path, fsync, maxPages },
    execArgv: profilingFlags(),
  });
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let seq = 0;
  let failure: string | undefined;
  let writing = 0; // requests in `pending` that are not checkpoints

  const fail = (why: string) => {
    failure ??= why;
    for (const { reject } of pending.values()) reject(new Error(failure));
    pending.clear();
  };
  worker.on('message', (reply: WriterReply) => {
    const waiting = pending.get(reply.seq);
    pending.delete(reply.seq);
    if (pending.size === 0) worker.unref(); // an idle writer does not keep the process alive
    if (reply.ok) waiting?.resolve(reply.result);
    else waiting?.reject(new Error(reply.message));
  });
  worker.on('error', (error) => fail(`store writer thread failed: ${error.message}`));
  worker.on('exit', (code) => fail(`store writer thread exited (${code})`));
  // After the listeners: adding a 'message' listener refs the worker's port again.
  worker.unref();

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
      });
      worker.postMessage({ ...request, seq: id });
    });
  };

  return {
    append: (rows) => call({ op: 'append', rows }) as Promise<Appended[]>,
    sweep: (nowMs, retention, budget, fromTopic) =>
      call({ op: 'sweep', nowMs, retention, budget, fromTopic }) as Promise<SweepStep>,
    checkpoint: async () => void (await call({ op: 'checkpoint' })),
    get failure() {
      return failure;
    },
    get idle() {
      return writing === 0;
    },
    async close() {
      if (failure) return;
      await call({ op: 'close' }).catch(() => {}); // a thread already gone has nothing to close
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
    async close() {},
  };
}
