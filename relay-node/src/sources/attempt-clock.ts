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

/** Why a publish past its own cap (or left waiting behind one that was) is given up on. */
export const payloadTooLong = (capMs: number) =>
  new AttemptTimeoutError(
    `publishing took too long: a payload not published within ${capMs} ms (${ATTEMPT_CAP_TIMEOUTS} × timeout_ms)`,
  );

/**
 * A publish of one payload through the source's gate (publish-gate.ts): given up on once `signal`
 * aborts (the attempt's cap); calls `onStart` once it leaves the gate's queue for the store.
 */
export type Publish = (signal?: AbortSignal, onStart?: () => void) => Promise<void>;

export interface AttemptClock {
  /** The hard cap on the whole attempt (ms). */
  readonly capMs: number;
  /** Rejects with an AttemptTimeoutError once the attempt has waited `timeout_ms` on upstream, or run `capMs`. */
  readonly expired: Promise<never>;
  /** Time waited on upstream so far (ms). */
  spent(): number;
  /**
   * Runs the publish of an emitted payload: while the attempt runs, under the attempt's cap (its
   * `timeout_ms` paused meanwhile, and its cap too while the publish waits in the gate's queue);
   * once it has ended, under the publish's own cap alone. Refused once the attempt failed.
   */
  publishing(publish: Publish): Promise<void>;
  /** The attempt failed: stop counting and refuse what it emits from now on (its publishes go on). */
  fail(error: Error): void;
  /** Whether `run` settles before the cap (and a grace). */
  settles(run: Promise<void>): Promise<boolean>;
  /** The attempt is over: its timers are cleared. */
  stop(): void;
}

/**
 * `timeout_ms` of one attempt, counted only while it waits on upstream (a poll's request and the
 * read of its answer, a stream's connect), not while what it emitted is published. A slow store
 * used to fail the attempt and start the next poll while this one still published: ingests of
 * one source overlapped, out of order and outside `source_concurrency`. A store that never
 * answers would now hold the attempt for ever, so the whole attempt, publishing included, is
 * also capped at ATTEMPT_CAP_TIMEOUTS × `timeout_ms`; only time its publishes spend queued in the
 * source's gate behind others (a burst of concurrent emits, healthy) does not count. At the cap
 * the attempt fails and its publish still running is given up on; a publish the gate gave up on
 * (behind one given up on) fails the attempt alike. A failure for any other reason only refuses
 * later emits: what it already emitted is published (or given up on at its own cap).
 */
export function attemptClock(ms: number, now: () => number, onExpire: (error: Error) => void): AttemptClock {
  const capMs = capOf(ms);
  const tooLong = () =>
    new AttemptTimeoutError(
      `publishing took too long: attempt not done within ${capMs} ms (${ATTEMPT_CAP_TIMEOUTS} × timeout_ms)`,
    );
  let spent = 0;
  let since = now();
  let publishes = 0;
  let queued = 0;
  let done = false;
  let refusal: Error | undefined;
  const abandon = new AbortController();
  let reject: (error: Error) => void = () => {};
  const expired = new Promise<never>((_, r) => (reject = r));
  let reachCap: () => void = () => {};
  const capped = new Promise<false>((r) => (reachCap = () => r(false)));
  let timer: ReturnType<typeof setTimeout> | undefined;
  let cap: ReturnType<typeof setTimeout> | undefined;
  let grace: ReturnType<typeof setTimeout> | undefined;
  let capUsed = 0;
  let capSince = now();
  const arm = () => {
    since = now();
    // Unref'd, as the cap: an attempt left running by a stop holds no process open.
    timer = setTimeout(() => expire(new AttemptTimeoutError(`no answer within ${ms} ms`)), ms - spent);
    timer.unref();
  };
  const end = (error?: Error) => {
    clearTimeout(timer);
    if (!done && publishes === 0) spent += now() - since;
    done = true;
    refusal ??= error;
  };
  const expire = (error: Error) => {
    end(error);
    onExpire(error);
    reject(error);
  };
  const reached = () => {
    cap = undefined;
    if (!done) {
      const error = tooLong();
      expire(error);
      abandon.abort(error); // the publish it is still running is given up on
    }
    // A driver that honours the abort just sent settles within a moment: it is not stuck.
    grace = setTimeout(reachCap, Math.min(Math.max(SETTLE_GRACE_MS, ms), MAX_TIMER_MS));
    grace.unref();
  };
  const runCap = () => {
    capSince = now();
    cap = setTimeout(reached, Math.max(0, capMs - capUsed));
    cap.unref();
  };
  let capPaused = false;
  const pauseCap = () => {
    if (cap === undefined) return;
    clearTimeout(cap);
    cap = undefined;
    capPaused = true;
    capUsed += now() - capSince;
  };
  const resumeCap = () => {
    if (!capPaused) return;
    capPaused = false;
    runCap();
  };
  runCap();
  arm();
  return {
    capMs,
    expired,
    spent: () => spent + (done || publishes > 0 ? 0 : now() - since),
    async publishing(publish) {
      if (refusal) throw refusal;
      if (done) return publish();
      if (publishes++ === 0) {
        clearTimeout(timer);
        spent += now() - since;
      }
      // Waiting in the gate behind the source's other publishes does not count against the cap.
      let waiting = true;
      if (queued++ === 0) pauseCap();
      const started = () => {
        if (!waiting) return;
        waiting = false;
        if (--queued === 0) resumeCap();
      };
      try {
        await publish(abandon.signal, started);
      } catch (error) {
        // The gate gave it up (past its own cap, or behind one given up on): so is the attempt.
        if (!done && error instanceof AttemptTimeoutError && error !== abandon.signal.reason) expire(tooLong());
        throw error;
      } finally {
        started();
        if (--publishes === 0 && !done) arm();
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
      capPaused = false;
      clearTimeout(cap);
      clearTimeout(grace);
    },
  };
}
