import { SeenIds } from '@anode/shared';
import { type Logger, throttledLog } from '../logger.ts';
import { type AttemptClock, attemptClock, capOf, type Publish, payloadTooLong } from './attempt-clock.ts';
import type { SourceDefinition } from './definition.ts';
import { createPublishGate, type GiveUpStage, type PublishGate, PublishQueueFullError } from './publish-gate.ts';
import { createRate } from './rate.ts';
import type { Scheduler } from './scheduler.ts';
import { MAX_RETRY_AFTER_MS, type SourceDriver, type SourceKind } from './source-kind.ts';
import { redactUrls } from '../redact.ts';

export type SourceState = 'starting' | 'ok' | 'connected' | 'failing' | 'paused' | 'standby';

/** What a runtime needs from its surroundings. */
export interface RuntimeDeps {
  scheduler: Scheduler;
  log: Logger;
  /** Ingest one payload of this source (extract, dedup, middleware, publish). */
  ingest(runtime: SourceRuntime, payload: unknown): Promise<void>;
  onError(runtime: SourceRuntime, error: Error): void;
  /**
   * `count` publishes of this source were given up on (see publish-gate.ts), or payloads its driver
   * took were lost (`io.lost`, stage `queued`), whether or not the runtime still runs; not once the
   * source was deleted and created anew (the gate's epoch moved on).
   */
  onGiveUp?(runtime: SourceRuntime, stage: GiveUpStage, count: number): void;
  /**
   * The source's gate: one per source name, kept by the manager across the runtimes an update or a
   * pause makes, so that the bound on abandoned publishes holds per source (default: a gate of its own).
   */
  gate?: PublishGate;
  /**
   * The source's dedup window, shared by the manager with the runtime this one replaces (same
   * `dedup_window`): publishes of that one still queued in the gate add their ids here, so this one
   * does not ingest those items again (default: a window of its own).
   */
  seen?: SeenIds;
  /**
   * What the source has done so far (its counters, last error and success, newest item, rate), kept
   * by the manager across the runtimes an update or a pause makes, as its metric series are; a
   * source deleted and created anew gets a new one (default: a record of its own).
   */
  record?: SourceRecord;
  now?: () => number;
  random?: () => number;
}

/** A source's health: what it did so far, and how its current definition fares (`failures`, `slow`, `lagMs`). */
export interface SourceHealth {
  lastSuccessAt: number | undefined;
  lastError: { message: string; at: number; sample?: string } | undefined;
  /** How late the last attempt started after it was due. */
  lagMs: number;
  newestTs: number | undefined;
  failures: number;
  /** The last attempt waited on upstream over half its timeout. */
  slow: boolean;
  items: number;
  deadLetters: number;
  errors: number;
}

/** See RuntimeDeps.record. */
export interface SourceRecord {
  health: SourceHealth;
  rate: ReturnType<typeof createRate>;
}

export function createSourceRecord(now: () => number = Date.now): SourceRecord {
  const health: SourceHealth = {
    lastSuccessAt: undefined,
    lastError: undefined,
    lagMs: 0,
    newestTs: undefined,
    failures: 0,
    slow: false,
    items: 0,
    deadLetters: 0,
    errors: 0,
  };
  return { health, rate: createRate(now) };
}

/** An emit of a driver whose source stopped (paused, updated, deleted, taken by another node) or that was replaced. */
export class SourceStoppedError extends Error {
  override name = 'SourceStoppedError';
  constructor(source: string) {
    super(`source ${source} stopped or its driver was replaced: payload not published`);
  }
}

/** A stream connection that stays up this long is healthy: its source's failures start again from zero. */
export const FORGIVE_AFTER_MS = 10_000;

/**
 * One source at run time: its driver, its schedule, and its health. Poll sources run at a
 * fixed rate; after a failure they wait interval × 2^(failures-1) (capped at `backoff_max_ms`)
 * with jitter; stream sources reconnect after backoff_min_ms × 2^(failures-1), likewise. A
 * stream's failures are forgiven only once a connection has held for FORGIVE_AFTER_MS (or
 * `backoff_max_ms`, if shorter): an upstream that accepts and at once closes (an auth refusal)
 * backs off like one that refuses, while one that ends healthy connections on purpose (every 30 s,
 * say) is redialled at `backoff_min_ms` each time. A publish not done within 10 × `timeout_ms` of
 * reaching the store is given up on (attempt-clock.ts, publish-gate.ts), and a stream's then drops
 * its connection as a failed one does; a source sends the store one publish at a time, through
 * the gate the manager keeps for it (`deps.gate`).
 */
export function createSourceRuntime(definition: SourceDefinition, kind: SourceKind, deps: RuntimeDeps) {
  const now = deps.now ?? Date.now;
  const random = deps.random ?? Math.random;
  const log = deps.log.child({ source: definition.name });
  let driver: SourceDriver | undefined;
  let active = false;
  let generation = 0;
  let attempting = false;
  let state: SourceState = definition.paused ? 'paused' : 'starting';
  let holding: ReturnType<typeof setTimeout> | undefined;
  // Kept across an update or a pause (deps.record), so the status counts as the metric series do
  // (before, each new runtime started them at zero, and a paused source no longer said why it had
  // failed); the new definition is tried afresh: its back-off starts again from the first step.
  const { health, rate } = deps.record ?? createSourceRecord(now);
  health.failures = 0;
  health.slow = false;
  health.lagMs = 0;
  // The source's dedup window, oldest forgotten first (a ring: evicting a Set's first value
  // walks every slot V8 left behind by earlier deletes, ~28 µs an item at 100,000).
  const seen = deps.seen ?? new SeenIds(definition.dedup_window);

  const recordError = (error: Error) => {
    health.errors += 1;
    // `sample` (the first bytes of a bad upstream answer) is shown to the admin only (redact.ts).
    const sample = (error as { sample?: unknown }).sample;
    const message = redactUrls(error.message); // errors from fetch and ws may quote the URL whole
    health.lastError = { message, at: now(), ...(typeof sample === 'string' ? { sample } : {}) };
    deps.onError(runtime, error);
  };

  const backoff = (base: number) => {
    const cap = Math.max(definition.backoff_max_ms, base);
    const delay = Math.min(cap, base * 2 ** Math.min(health.failures - 1, 30));
    return delay / 2 + random() * (delay / 2);
  };

  /** Forgive a stream's failures once this connection has held (see above). */
  const forgiveWhenHeld = (gen: number) => {
    clearTimeout(holding);
    holding = setTimeout(
      () => {
        if (gen === generation) health.failures = 0;
      },
      Math.min(definition.backoff_max_ms, FORGIVE_AFTER_MS),
    );
    holding.unref();
  };

  /** Count a failed attempt, or a dropped stream, of this generation; false if it is an older one's. */
  const failed = (error: Error, gen: number) => {
    if (gen !== generation) return false;
    clearTimeout(holding);
    health.failures += 1;
    state = 'failing';
    recordError(error);
    log.warn({ err: redactUrls(error.message), failures: health.failures }, 'source attempt failed');
    return true;
  };

  /** Schedule the next attempt after a failure: its back-off, or later when `error` says when upstream allows it. */
  const retry = (error?: Error) => {
    const base = driver?.mode === 'poll' ? (driver.intervalMs ?? definition.backoff_min_ms) : definition.backoff_min_ms;
    const retryAt = (error as { retryAt?: unknown } | undefined)?.retryAt;
    const at = now() + backoff(base);
    const allowed = typeof retryAt === 'number' && Number.isFinite(retryAt);
    schedule(allowed ? Math.max(at, Math.min(retryAt, now() + MAX_RETRY_AFTER_MS)) : at);
  };

  const fail = (error: Error, gen: number) => {
    if (failed(error, gen)) retry(error);
  };

  // The clock of the latest attempt, which its payloads' publishes pause (see attemptClock). A
  // source runs one attempt at a time, the next only once the last one's `run` has settled (or
  // its driver was replaced), so what the driver emits is this attempt's (or follows it: a stream's
  // frames).
  let clock: AttemptClock | undefined;
  // Which attempt `attempting` is about: an attempt of an earlier generation (before a stop and a
  // start, or a replaced driver) that ends later does not clear it for the one running now.
  let attempts = 0;
  // The abort of the attempt running now, which a stop calls (see stop).
  let abortAttempt: ((reason: Error) => void) | undefined;
  const attempt = (due: number, scheduled: number) => async () => {
    if (!active || scheduled !== generation) return;
    // The kind could not make a driver in place of a stuck one (reopen): try again now.
    if (!driver && !reopen()) return;
    const gen = generation;
    const pulling = driver as SourceDriver;
    const started = now();
    const token = ++attempts;
    attempting = true;
    health.lagMs = Math.max(0, started - due);
    const controller = new AbortController();
    abortAttempt = (reason) => controller.abort(reason);
    const current = (clock = attemptClock(definition.timeout_ms, now, (error) => controller.abort(error)));
    let run: Promise<void> | undefined;
    try {
      run = pulling.run(controller.signal);
      await Promise.race([run, current.expired]);
      if (gen !== generation) return;
      health.slow = current.spent() > definition.timeout_ms / 2;
      health.lastSuccessAt = now();
      if (pulling.mode === 'stream') {
        state = 'connected';
        forgiveWhenHeld(gen);
      } else {
        health.failures = 0;
        state = 'ok';
        schedule(Math.max(due + (pulling.intervalMs ?? 1000), now()));
      }
    } catch (error) {
      current.fail(error as Error);
      if (!failed(error as Error, gen)) return;
      // A run that ignores its abort would otherwise emit while the next attempt runs, publishing
      // through that attempt's clock and beside its publishes. Waiting keeps this attempt's clock
      // current, which refuses the late emit. A driver still running at the cap is replaced, so
      // it cannot hold the source for good and what it emits later is dropped (its io is stale).
      const settled = run === undefined || (await current.settles(run));
      if (gen !== generation) return;
      if (!settled) {
        log.warn({ cap_ms: current.capMs }, 'source driver still running at the attempt cap: replaced');
        if (!reopen(true)) return;
      }
      retry(error as Error);
    } finally {
      if (token === attempts) {
        attempting = false;
        abortAttempt = undefined;
      }
      current.stop();
    }
  };

  /**
   * A fresh driver in place of the current one; false when the kind throws making it (a plugin),
   * the failure then recorded and an attempt scheduled to try again: before, the throw escaped the
   * attempt (the scheduler swallows it) and nothing was scheduled again, for good.
   */
  const reopen = (counted = false): boolean => {
    try {
      open();
      return true;
    } catch (error) {
      try {
        driver?.close();
      } catch {
        // a plugin's close that throws changes nothing here: the driver is dropped either way
      }
      driver = undefined;
      // The attempt that asked (`counted`) was counted as one failure already: this is the same.
      if (counted) {
        recordError(error as Error);
        retry();
      } else if (failed(error as Error, generation)) retry();
      return false;
    }
  };

  const gate = deps.gate ?? createPublishGate();
  // This runtime's incarnation of the source: once it is deleted and created anew, what this one's
  // publishes and driver report later is no longer the source's to count (restartCounts).
  const epoch = gate.epoch;
  const capMs = capOf(definition.timeout_ms);
  // A kind emitting past the queue's bound has each emit refused at once: one line per window, with
  // how many (each still counted in the status and the metric), not one line per payload.
  const queueFullLog = throttledLog(log, 'warn', 'publish given up on', { countField: 'payloads' });
  /**
   * One payload through the source's gate (one publish of the source at a time, across its
   * drivers and runtimes). One given up on is counted by the gate; the store may still take it,
   * and then its items count as ingested. Only a runtime still running that driver says so in
   * its log: a stopped one's publishes are still the source's, but no longer its business. A
   * connected stream's payload published is its last success (a poll's is the poll): it stayed at
   * the connect, so an alert on anode_source_last_success_timestamp_seconds fired for a healthy
   * stream hours old.
   */
  const publishing =
    (payload: unknown, gen: number): Publish =>
    (signal, onStart) =>
      gate.run(
        async () => {
          await deps.ingest(runtime, payload);
          if (active && gen === generation && state === 'connected') health.lastSuccessAt = now();
        },
        {
          capMs,
          tooLong: () => payloadTooLong(capMs),
          signal,
          onStart,
          epoch,
          onGiveUp(stage, error) {
            deps.onGiveUp?.(runtime, stage, 1);
            // Refused by the store after it was given up on: lost, and no attempt says so any more.
            if (stage === 'rejected')
              log.warn({ err: redactUrls(error.message) }, 'publish given up on, then refused by the store: lost');
            else if (active && gen === generation) {
              const fields = { err: error.message, stage, store_stuck: gate.stuck };
              if (error instanceof PublishQueueFullError) queueFullLog(fields);
              else log.warn(fields, 'publish given up on');
            }
          },
        },
      );

  // Failing and slow sources queue in the scheduler's penalty lane, so they cannot starve the rest.
  const schedule = (due: number) =>
    deps.scheduler.schedule(
      definition.name,
      due,
      attempt(due, generation),
      health.failures > 0 || health.slow ? 'penalty' : 'normal',
    );

  /** A fresh driver; what an earlier one emits or reports from now on is ignored. */
  const open = () => {
    const gen = ++generation;
    const previous = driver;
    const created = kind.create(definition, {
      log,
      emit: (payload) => {
        // Refused, not resolved: a kind that acknowledges upstream once its emit resolves (a queue
        // consumer) would take the payload for durable, and it is not published.
        if (gen !== generation) return Promise.reject(new SourceStoppedError(definition.name));
        const publish = publishing(payload, gen);
        return clock ? clock.publishing(publish) : publish();
      },
      fault: (error) => gen === generation && recordError(error),
      // Counted also after a stop or a replacement: the payloads were the source's, and are gone;
      // not once the source was deleted and created anew (its counters are the new one's).
      lost: (count) => {
        if (count <= 0 || gate.epoch !== epoch) return;
        gate.lost(count);
        deps.onGiveUp?.(runtime, 'queued', count);
      },
      down: (error) => fail(error, gen),
    });
    driver = created;
    previous?.close();
    return created;
  };

  const runtime = {
    definition,
    seen,
    health,
    rate,
    get state() {
      return state;
    },
    get active() {
      return active;
    },
    /**
     * What this runtime reports (its publishes' items and dead letters) is still its source's: false
     * once the source was deleted and created anew, or its gate forgotten (the gate's epoch moved on).
     */
    get counting() {
      return gate.epoch === epoch;
    },
    /** Start pulling; first attempts are spread over the interval (at most 10 s) so a fleet does not align. */
    start() {
      if (active) return;
      active = true;
      state = 'starting';
      const spread = Math.min(open().intervalMs ?? 0, 10_000);
      schedule(now() + random() * spread);
    },
    /**
     * Stop pulling (`paused` or `standby` says why). An attempt waiting on upstream is aborted
     * (before the driver closes: a websocket connect then fails instead of waiting), so it gives
     * its scheduler slot back at once: it held it until timeout_ms, and a paused hung source kept
     * others from polling. What it already emitted is still published.
     */
    stop(reason: 'paused' | 'standby' = 'paused') {
      state = reason;
      if (!active) return;
      active = false;
      generation += 1;
      clearTimeout(holding);
      deps.scheduler.cancel(definition.name);
      abortAttempt?.(new SourceStoppedError(definition.name));
      driver?.close();
      driver = undefined;
      queueFullLog.flush();
    },
    recordItems(count: number, newestTs: number | undefined) {
      health.items += count;
      rate.add(count);
      if (newestTs !== undefined && (health.newestTs === undefined || newestTs > health.newestTs)) {
        health.newestTs = newestTs;
      }
    },
    recordDeadLetter() {
      health.deadLetters += 1;
    },
    status() {
      const t = now();
      const next = deps.scheduler.dueOf(definition.name);
      return {
        name: definition.name,
        kind: definition.kind,
        topic: definition.topic,
        state,
        last_success_at: iso(health.lastSuccessAt),
        last_error: health.lastError
          ? {
              message: health.lastError.message,
              at: iso(health.lastError.at),
              ...(health.lastError.sample === undefined ? {} : { sample: health.lastError.sample }),
            }
          : null,
        lag_ms: Math.round(health.lagMs),
        data_lag_ms: health.newestTs === undefined ? null : Math.max(0, t - health.newestTs),
        messages_per_second: Math.round(rate.perSecond() * 100) / 100,
        consecutive_failures: health.failures,
        next_attempt_at: iso(next),
        attempting,
        items: health.items,
        dead_letters: health.deadLetters,
        errors: health.errors,
        abandoned_publishes: gate.abandoned,
        dropped_publishes: gate.dropped,
        publish_stuck: gate.stuck,
      };
    },
  };
  return runtime;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

export type SourceRuntime = ReturnType<typeof createSourceRuntime>;
export type SourceStatus = ReturnType<SourceRuntime['status']>;
