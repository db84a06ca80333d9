import {
  type AppendResult,
  compareCursors,
  type Envelope,
  InternalError,
  type MessageStore,
  UnavailableError,
} from '@anode/shared';
import { type Logger, throttledLog } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { isStoreRejection } from '../storage/store-rejected.ts';

/**
 * Group commit in front of the store: publishes that arrive while a batch is being written wait
 * and go together in the next batch, so one durable commit acknowledges many messages. Batches
 * are written one after another in enqueue order, and `onCommitted` runs before the callers'
 * promises resolve, so fan-out follows cursor order and happens before the ack.
 */
export interface WriterOptions {
  store: MessageStore;
  metrics: Metrics;
  log: Logger;
  maxBatch?: number;
  /** Publishes waiting beyond this are refused with `unavailable` (the store cannot keep up). */
  maxQueued?: number;
  /**
   * Runs after each commit with the messages that were new, in order: once per run of writes of
   * the same origin in the batch, before any of those writes' promises settle.
   */
  onCommitted: (inserted: Envelope[], origin: WriteOrigin) => void;
  /** Longest a stream of cursor conflicts goes unlogged (default CONFLICT_LOG_MS). */
  conflictLogMs?: number;
}

/** `local`: accepted by this node; `remote`: arrived from the mesh or an edge link. */
export type WriteOrigin = 'local' | 'remote';

/** A write's result per message: the store's, or, for a message it refused for good, why. */
export type WriteResult = AppendResult & { refused?: Error };

export interface WriteOptions {
  /** Minted by this node's publish just now (see AppendOptions.minted). */
  minted?: boolean;
  /**
   * Messages stand alone (an edge link's frame): one the store refuses for good is left out with
   * `refused` in its result, and the rest are stored, instead of the write being refused whole.
   */
  split?: boolean;
  /**
   * Fanned out already (live gossip delivered before it is stored): the write delivers nothing
   * once committed, so it is left out of oldestPending.
   */
  delivered?: boolean;
}

interface Job {
  envelopes: readonly Envelope[];
  origin: WriteOrigin;
  /** Minted by this node's publish just now (see AppendOptions.minted). */
  minted: boolean;
  /** See WriteOptions.split. */
  split: boolean;
  resolve: (results: WriteResult[]) => void;
  reject: (error: Error) => void;
}

export interface Writer {
  write(envelopes: readonly Envelope[], origin?: WriteOrigin, options?: WriteOptions): Promise<WriteResult[]>;
  /** Resolves once everything queued so far is written (or failed). */
  drain(): Promise<void>;
  /**
   * Resolves once the batches being committed now, if any, have been handed to `onCommitted`. A
   * read of the store may see a commit before its fan-out ran (the store commits on another
   * thread or server): a catch-up that read history waits for this before going live.
   */
  settled(): Promise<void>;
  /** Resolves once every write queued so far has been committed or refused (never rejects). */
  fence(): Promise<void>;
  /**
   * The oldest cursor among the writes queued or being committed that will be handed to
   * `onCommitted` (all but `delivered` ones), or undefined when there are none: every message
   * fanned out from now on that is here already has a cursor at or after it.
   */
  oldestPending(): string | undefined;
  readonly queued: number;
  /** Messages committed as new since the writer started (retention's schedule counts them). */
  readonly stored: number;
}

/** Longest a stream of cursor conflicts goes unlogged. */
const CONFLICT_LOG_MS = 10_000;

export function createWriter(options: WriterOptions): Writer {
  const maxBatch = options.maxBatch ?? 500;
  const maxQueued = options.maxQueued ?? 50_000;
  const queue: Job[] = [];
  let queued = 0;
  let stored = 0;
  // Messages refused for a cursor another message holds (AppendResult.conflict): logged at most
  // every conflictLogMs, with how many since the last line; those of a window that had its line
  // already are logged when it ends, so a stream that stops inside one is counted too.
  const conflictLog = throttledLog(
    options.log,
    'error',
    'messages not stored: another message holds their cursor. Two relays are minting under one node id ' +
      '(a data folder copied to another machine?): give the copy its own node-id, peer-key and clock-lease',
    { everyMs: options.conflictLogMs ?? CONFLICT_LOG_MS, countField: 'messages' },
  );
  const conflicted = (refused: readonly AppendResult[], origin: WriteOrigin) => {
    const envelope = refused[0]?.envelope;
    options.metrics.errors.inc({ code: 'internal' }, refused.length);
    conflictLog({ origin, topic: envelope?.topic, cursor: envelope?.cursor }, refused.length);
  };
  // The writes not yet handed to onCommitted (nor refused), as a sliding-window minimum of their
  // oldest cursors: writes finish in the order they were queued (see `last`), so an entry whose
  // cursor is not below a later write's can be dropped, and the front, once finished, is gone.
  // O(1) per write and per question, however many writes wait.
  const pending: { cursor: string; done: boolean }[] = [];
  let pendingHead = 0;
  const track = (envelopes: readonly Envelope[]) => {
    let oldest = (envelopes[0] as Envelope).cursor;
    for (const envelope of envelopes) if (compareCursors(envelope.cursor, oldest) < 0) oldest = envelope.cursor;
    while (pending.length > pendingHead && compareCursors((pending.at(-1) as { cursor: string }).cursor, oldest) >= 0) {
      pending.pop();
    }
    const entry = { cursor: oldest, done: false };
    pending.push(entry);
    return entry;
  };
  /** Drops the finished writes at the front (called as each finishes, so the list stays short). */
  const release = () => {
    while (pendingHead < pending.length && (pending[pendingHead] as { done: boolean }).done) pendingHead += 1;
    if (pendingHead === pending.length) {
      pending.length = 0;
      pendingHead = 0;
    } else if (pendingHead > 1024 && pendingHead * 2 > pending.length) {
      pending.splice(0, pendingHead);
      pendingHead = 0;
    }
  };
  let flushing: Promise<void> | undefined;
  let committing: Promise<void> | undefined;
  // Jobs finish in the order they were queued, so the last one's end is everyone's.
  let last: Promise<unknown> | undefined;
  const settle = () => undefined;

  const takeBatch = (): Job[] => {
    const jobs: Job[] = [];
    let size = 0;
    while (queue.length > 0 && (jobs.length === 0 || size + (queue[0]?.envelopes.length ?? 0) <= maxBatch)) {
      const job = queue.shift() as Job;
      size += job.envelopes.length;
      jobs.push(job);
    }
    return jobs;
  };

  type Appended = { ok: true; results: AppendResult[] } | { ok: false; error: unknown };

  /** Hands a batch to the store now; never rejects. `again`: jobs already counted out of `queued`. */
  const append = (jobs: Job[], again = false): Promise<Appended> => {
    // One pass over the batch (most jobs are one publish of one message).
    const envelopes: Envelope[] = [];
    const minted: boolean[] = [];
    for (const job of jobs) {
      for (const envelope of job.envelopes) {
        envelopes.push(envelope);
        minted.push(job.minted);
      }
    }
    if (!again) queued -= envelopes.length;
    const stop = options.metrics.storeAppend.startTimer();
    return options.store.append(envelopes, { minted }).then(
      (results): Appended => {
        stop();
        options.metrics.storeBatch.observe(envelopes.length);
        options.metrics.storeUp.set(1);
        return { ok: true, results };
      },
      (error: unknown): Appended => {
        options.metrics.storeErrors.inc();
        options.metrics.storeUp.set(0);
        options.log.error({ err: error, messages: envelopes.length }, 'store append failed; publishes refused');
        return { ok: false, error };
      },
    );
  };

  /** A write refused as one: a client's (one publish, or one HTTP body), or a single message. */
  const refusedWhole = (job: Job) => (job.origin === 'local' && !job.split) || job.envelopes.length === 1;

  /**
   * After the store refused a batch for good (StoreRejectedError: Cassandra refusing a mutation
   * over its size limit), the batch is halved and each half tried again, in order, until the
   * refused write stands alone (about 2 × log2(n) appends for one bad write in n, not n): one bad
   * message never refuses the others. A client's write that fails alone is refused with the
   * store's code (a whole HTTP body, as it was one publish). A write from elsewhere (a gossip
   * batch, a catch-up page) is halved further, down to single messages: the refused message is
   * logged and left out, and the rest are stored (refusing the page would fail the same catch-up
   * on every retry); should the store fail otherwise meanwhile (an outage), the write is refused
   * with that error as a whole. The refused batch may have written some rows already: one found
   * stored under the id and cursor this write carries is this write's own, so it is new (fanned
   * out), once per id (a copy from elsewhere that was stored before the batch is then delivered
   * again: same id, which subscribers drop).
   */
  const rewrite = async (job: Job, ours: Set<string>): Promise<void> => {
    const mid = Math.ceil(job.envelopes.length / 2);
    const results: WriteResult[] = [];
    for (const envelopes of [job.envelopes.slice(0, mid), job.envelopes.slice(mid)]) {
      const failed = await new Promise<{ error: Error } | undefined>((done) => {
        const part: Job = {
          ...job,
          envelopes,
          resolve: (own) => done(void results.push(...own)),
          reject: (error) => {
            const [envelope] = envelopes;
            if (envelopes.length > 1 || !envelope || !isStoreRejection(error)) return done({ error });
            options.log.error(
              { err: error, topic: envelope.topic, id: envelope.id, origin: job.origin },
              'message from elsewhere refused by the store for good; left out',
            );
            results.push({ envelope, inserted: false, refused: error });
            done(undefined);
          },
        };
        void finish([part], append([part], true), ours);
      });
      if (failed) return job.reject(failed.error);
    }
    job.resolve(results);
  };

  /** A batch's outcome to its callers: fan-out (onCommitted), then each job's promise. */
  const finish = async (jobs: Job[], appended: Promise<Appended>, rewritten?: Set<string>): Promise<void> => {
    const outcome = await appended;
    if (!outcome.ok) {
      if (isStoreRejection(outcome.error)) {
        const [job] = jobs;
        if (!job) return;
        if (jobs.length === 1 && refusedWhole(job)) {
          // A split write of one message (an edge frame of one) is answered, naming the refusal.
          const [envelope] = job.envelopes;
          if (job.split && envelope && job.envelopes.length === 1) {
            return job.resolve([{ envelope, inserted: false, refused: outcome.error as Error }]);
          }
          return job.reject(outcome.error as Error);
        }
        const ours = rewritten ?? new Set<string>();
        if (jobs.length === 1) return rewrite(job, ours);
        const mid = Math.ceil(jobs.length / 2);
        for (const half of [jobs.slice(0, mid), jobs.slice(mid)]) await finish(half, append(half, true), ours);
        return;
      }
      const refused = new UnavailableError('storage is unavailable; message not accepted', { cause: outcome.error });
      for (const job of jobs) job.reject(refused);
      return;
    }
    // Fan-out first, once per run of jobs from the same origin (a batch of single publishes is
    // one run): subscribers are looked up once per batch and topic, not once per publish.
    let { results } = outcome;
    if (rewritten) {
      const sent = jobs.flatMap((job) => job.envelopes);
      results = results.map((result, i) => {
        const own = sent[i];
        const mine =
          !result.inserted &&
          !result.conflict &&
          own !== undefined &&
          result.envelope.id === own.id &&
          result.envelope.cursor === own.cursor &&
          !rewritten.has(own.id);
        if (own) rewritten.add(own.id);
        return mine ? { ...result, inserted: true } : result;
      });
    }
    let inserted: Envelope[] = [];
    let origin: WriteOrigin | undefined;
    const fanOut = () => {
      if (origin === undefined) return;
      stored += inserted.length;
      try {
        options.onCommitted(inserted, origin);
      } catch (error) {
        options.log.error({ err: error }, 'fan-out failed after commit');
      }
      inserted = [];
    };
    let offset = 0;
    for (const job of jobs) {
      if (job.origin !== origin) {
        fanOut();
        origin = job.origin;
      }
      for (let i = offset; i < offset + job.envelopes.length; i++) {
        const result = results[i] as AppendResult;
        if (result.inserted) inserted.push(result.envelope);
      }
      offset += job.envelopes.length;
    }
    fanOut();
    offset = 0;
    for (const job of jobs) {
      const end = offset + job.envelopes.length;
      const own = results.slice(offset, end);
      let conflicts = false;
      for (let i = offset; i < end; i++) if ((results[i] as AppendResult).conflict) conflicts = true;
      offset = end;
      if (conflicts) {
        const refused = own.filter((r) => r.conflict);
        conflicted(refused, job.origin);
        // Never acknowledge what was not stored. (From elsewhere, the message is simply not new.)
        if (job.origin === 'local') {
          job.reject(
            new InternalError(
              `message not stored: cursor ${refused[0]?.envelope.cursor} already holds another message ` +
                "(another relay mints under this relay's node id)",
            ),
          );
          continue;
        }
      }
      job.resolve(own);
    }
  };

  // With a full batch already waiting and a store that keeps overlapping appends in order, the
  // next batch goes to the store while this one's results are fanned out and acknowledged (two
  // in flight at most): the store's thread no longer idles through the acks of 500 messages.
  // Otherwise the next batch gathers while this one commits, as a group commit should.
  const pipelined = options.store.pipelinedAppends === true;
  const flush = async () => {
    // Yield once so that publishes arriving in the same tick join this batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (queue.length > 0) {
      const jobs = takeBatch();
      const appended = append(jobs);
      const before = committing;
      // Outcomes are handed over in batch order, whatever order the store answers in.
      committing = before ? before.then(() => finish(jobs, appended)) : finish(jobs, appended);
      if (pipelined && queued >= maxBatch) await before;
      else await committing;
      // The last batch may still be in flight: finish it before the queue is found empty (a write
      // that came meanwhile is then taken by this loop, not left behind by a flush on its way out).
      if (queue.length === 0) await committing;
    }
    committing = undefined;
    flushing = undefined;
  };

  return {
    write(envelopes, origin = 'local', writeOptions = {}) {
      if (envelopes.length === 0) return Promise.resolve([]);
      if (queued + envelopes.length > maxQueued) {
        return Promise.reject(new UnavailableError('node is overloaded: too many publishes waiting for storage'));
      }
      queued += envelopes.length;
      // Finished when its promise settles: onCommitted has run for it by then.
      const tracked = writeOptions.delivered === true ? undefined : track(envelopes);
      const finish = () => {
        if (!tracked) return;
        tracked.done = true;
        release();
      };
      const done = new Promise<WriteResult[]>((resolve, reject) =>
        queue.push({
          envelopes,
          origin,
          minted: writeOptions.minted === true,
          split: writeOptions.split === true,
          resolve: (results) => (finish(), resolve(results)),
          reject: (error) => (finish(), reject(error)),
        }),
      );
      last = done;
      flushing ??= flush();
      return done;
    },
    async drain() {
      while (flushing) await flushing;
    },
    async settled() {
      await committing;
    },
    fence: () => (last ? last.then(settle, settle) : Promise.resolve()),
    oldestPending() {
      release();
      return pending[pendingHead]?.cursor;
    },
    get queued() {
      return queued;
    },
    get stored() {
      return stored;
    },
  };
}
