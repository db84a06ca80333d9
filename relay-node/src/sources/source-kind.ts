import type { z } from 'zod';
import type { Logger } from '../logger.ts';
import type { SourceDefinition } from './definition.ts';

/**
 * A kind of source (`http`, `websocket`, …): a plugin the core knows only through this
 * interface. Adding a kind is one module and one entry in the registry; the core (scheduling,
 * back-off, extraction, dedup, middleware, status) is shared by all.
 */
export interface SourceKind {
  readonly kind: string;
  /** The kind's own definition fields (zod), checked with the common ones. */
  readonly shape: z.ZodRawShape;
  /** Rules across the kind's fields, checked after the shape: the field at fault and why, or undefined. */
  check?(definition: SourceDefinition): { field: string; message: string } | undefined;
  create(definition: SourceDefinition, io: DriverIo): SourceDriver;
}

/** The longest wait an upstream's `Retry-After` is honoured for (1 hour); a longer one is cut to this. */
export const MAX_RETRY_AFTER_MS = 60 * 60 * 1000;

/** What a driver may do to the core. */
export interface DriverIo {
  readonly log: Logger;
  /**
   * One payload from upstream (a JSON body, a frame): extracted, deduplicated, piped through
   * middleware and published; resolves when durable. Emits are serialised per source, across
   * drivers and updates: each payload goes to the store only once every one emitted before it
   * has settled, in emit order, so emitting many at once (without awaiting) queues them and loses
   * none, up to 1,000 waiting per source (MAX_QUEUED_PUBLISHES): an emit past that rejects at once
   * (PublishQueueFullError) and its payload is dropped, counted in `dropped_publishes`; a driver
   * that emits faster than the store takes must await its emits (or hold and bound what it reads).
   * Rejects when publishing failed, when the attempt already failed, when the driver's source
   * stopped or the driver was replaced (SourceStoppedError: not published), or when the publish was
   * given up on: `timeout_ms` stops counting while it runs, but it must end within the cap of the
   * whole attempt (10 × `timeout_ms`, not counting time queued behind the source's other
   * publishes), or, outside an attempt (a stream's frames after its connect), within
   * 10 × `timeout_ms` of reaching the store. A payload queued behind a publish given up on (a
   * store that does not answer) is given up on after as long again, without reaching the store.
   * A stream driver takes any rejection as a drop: it closes the connection and calls `down`.
   * A rejection the gate gave the payload up with (`gaveUp`, publish-gate.ts) is counted already;
   * on any other (the store refused it) a driver that will not emit the payload again says `lost`.
   */
  emit(payload: unknown): Promise<void>;
  /** A bad payload that does not end a stream (counted, shown as the last error). */
  fault(error: Error): void;
  /** A connected stream dropped: the core schedules a reconnect with back-off and jitter. */
  down(error: Error): void;
  /**
   * `count` payloads taken from upstream will never be emitted (a dropped connection's queued
   * frames): counted as lost in `dropped_publishes`. May be called after `close`.
   */
  lost(count: number): void;
}

/**
 * One source's driver. `poll` drivers: `run` is one poll and settles when it is done (rejects
 * on failure); the core runs it again after `intervalMs`. `stream` drivers: `run` connects and
 * resolves once connected (rejects if it could not); afterwards the driver calls `io.down`.
 * A `run` that rejects with an error carrying `retryAt` (epoch ms: upstream's `Retry-After`) is
 * tried again no earlier than that (at most MAX_RETRY_AFTER_MS from then), nor earlier than its back-off.
 * `run` must settle by the time `signal` aborts (the core aborts after `timeout_ms` spent outside
 * `emit`, and when the source stops: paused, updated, deleted or handed over, just before `close`). The core starts a poll's next `run` only once this one has settled; if it has not
 * within 10 × `timeout_ms`, the core closes this driver and creates another.
 */
export interface SourceDriver {
  readonly mode: 'poll' | 'stream';
  readonly intervalMs?: number;
  run(signal: AbortSignal): Promise<void>;
  /** Drop any connection; no `io` call may follow but `log` and `lost`. */
  close(): void;
}
