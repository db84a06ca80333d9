import { MAX_TIMER_MS } from '../config-fields.ts';

export class AttemptTimeoutError extends Error {
  override name = 'AttemptTimeoutError';
}

/**
 * An attempt ends within this many times its `timeout_ms`, publishing included: a store slower
 * than that is stuck rather than slow (the publishes this allows for take a few timeouts), and
 * an attempt must end for the source to go on (and for the scheduler's bound on jobs in flight).
 * A payload published outside an attempt (a stream's frames after its connect) gets as long.
 */
const ATTEMPT_CAP_TIMEOUTS = 10;
/**
 * How long past the cap a run may take to settle before its driver counts as stuck (and is
 * replaced, losing what it kept, an http source's validators): one that honours the abort may
 * still be finishing a publish.
 */
const SETTLE_GRACE_MS = 1_000;

/** The longest an attempt, or a publish outside one, may take: ATTEMPT_CAP_TIMEOUTS × `timeout_ms`. */
export const capOf = (timeoutMs: number) => Math.min(timeoutMs * ATTEMPT_CAP_TIMEOUTS, MAX_TIMER_MS);

/** A publish of one payload, given up on once `signal` aborts (see publish-gate.ts). */
export type Publish = (signal: AbortSignal) => Promise<void>;

export interface AttemptClock {
  /** The hard cap on the whole attempt (ms). */
  readonly capMs: number;
  /** Rejects with an AttemptTimeoutError once the attempt has waited `timeout_ms` on upstream, or run `capMs`. */
  readonly expired: Promise<never>;
  /** Time waited on upstream so far (ms). */
  spent(): number;
  /**
   * Runs the publish of an emitted payload within the cap: while the attempt runs, the attempt's
   * (its clock paused meanwhile); once it has ended, one of its own (publishAlone). Refused once
   * the attempt failed.
   */
  publishing(publish: Publish): Promise<void>;
  /** The attempt failed: stop counting, give up on its publishes, and refuse what it emits from now on. */
  fail(error: Error): void;
  /** Whether `run` settles before the cap. */
  settles(run: Promise<void>): Promise<boolean>;
  stop(): void;
}

const payloadTooLong = (capMs: number) =>
  new AttemptTimeoutError(
    `publishing took too long: a payload not published within ${capMs} ms (${ATTEMPT_CAP_TIMEOUTS} × timeout_ms)`,
  );

/**
 * A publish outside any attempt (a stream's frame after its connect), given up on after `capMs`.
 * Before, nothing timed it: a store that never answered held the stream's frames, and reading
 * from upstream, for ever, with the source still `connected` and no error.
 */
export async function publishAlone(capMs: number, publish: Publish): Promise<void> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(payloadTooLong(capMs)), capMs);
  timer.unref(); // as the attempt's cap: a publish left running by a stop holds no process open
  try {
    await publish(controller.signal);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `timeout_ms` of one attempt, counted only while it waits on upstream (a poll's request and the
 * read of its answer, a stream's connect), not while what it emitted is published. A slow store
 * used to fail the attempt and start the next poll while this one still published: ingests of
 * one source overlapped, out of order and outside `source_concurrency`. A store that never
 * answers would now hold the attempt for ever, so the whole attempt, publishing included, is
 * also capped at ATTEMPT_CAP_TIMEOUTS × `timeout_ms`. Once the attempt failed, its publishes are
 * given up on and a late emit is refused.
 */
export function attemptClock(ms: number, now: () => number, onExpire: (error: Error) => void): AttemptClock {
  const capMs = capOf(ms);
  let spent = 0;
  let since = now();
  let publishes = 0;
  let done = false;
  let stopped = false;
  let refusal: Error | undefined;
  const abandon = new AbortController();
  let reject: (error: Error) => void = () => {};
  const expired = new Promise<never>((_, r) => (reject = r));
  let reachCap: () => void = () => {};
  const capped = new Promise<false>((r) => (reachCap = () => r(false)));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    since = now();
    // Unref'd, as the cap: an attempt left running by a stop holds no process open.
    timer = setTimeout(() => expire(`no answer within ${ms} ms`), ms - spent);
    timer.unref();
  };
  const end = (error?: Error) => {
    clearTimeout(timer);
    if (!done && publishes === 0) spent += now() - since;
    done = true;
    refusal ??= error;
    if (refusal && !abandon.signal.aborted) abandon.abort(refusal);
  };
  const expire = (message: string) => {
    const error = new AttemptTimeoutError(message);
    end(error);
    onExpire(error);
    reject(error);
  };
  const cap = setTimeout(() => {
    if (!done)
      expire(`publishing took too long: attempt not done within ${capMs} ms (${ATTEMPT_CAP_TIMEOUTS} × timeout_ms)`);
    // Still publishing what it emitted before it ended (a stream's first frames): given up on too.
    else if (!abandon.signal.aborted) abandon.abort(payloadTooLong(capMs));
    // A driver that honours the abort just sent settles within a moment: it is not stuck.
    setTimeout(reachCap, Math.min(Math.max(SETTLE_GRACE_MS, ms), MAX_TIMER_MS)).unref();
  }, capMs);
  cap.unref();
  arm();
  return {
    capMs,
    expired,
    spent: () => spent + (done || publishes > 0 ? 0 : now() - since),
    async publishing(publish) {
      if (refusal) throw refusal;
      if (done) return publishAlone(capMs, publish);
      if (publishes++ === 0) {
        clearTimeout(timer);
        spent += now() - since;
      }
      try {
        await publish(abandon.signal);
      } finally {
        if (--publishes === 0 && !done) arm();
        if (publishes === 0 && stopped) clearTimeout(cap);
      }
    },
    fail: end,
    settles: (run) =>
      Promise.race([
        run.then(
          () => true,
          () => true,
        ),
        capped,
      ]),
    stop() {
      end();
      stopped = true;
      if (publishes === 0) clearTimeout(cap);
    },
  };
}
