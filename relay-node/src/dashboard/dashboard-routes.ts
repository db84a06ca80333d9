import { assertTopic, isPattern, randomId } from '@anode/shared';
import type { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Subscriber } from '../hub/hub.ts';
import { adminGuard, type GuardOptions } from './admin-guard.ts';
import type { Watchers } from './watchers.ts';
import type { MetricsSample, MetricsSnapshot, StatusEvent } from './status-schema.ts';
import { mountStaticAssets } from './static-assets.ts';

/** A place to subscribe the topic tail (the relay's hub, or a test double). */
export interface TailSource {
  subscribe(subscriber: Subscriber, pattern: string): Promise<unknown>;
  removeSubscriber(subscriber: Subscriber): void;
}

export interface DashboardRoutesOptions extends GuardOptions {
  /** The merged `/v1/status` object. */
  status: () => Promise<Record<string, unknown>>;
  metrics: () => Promise<MetricsSnapshot>;
  /** The history ring's samples, all or those after a time (metrics-history.ts). */
  samples?: (after?: number) => MetricsSample[];
  tail: TailSource;
  /** Told while a status stream is open (a page is watching). */
  watchers?: Watchers;
  intervalMs?: number;
  distDir?: string;
}

const TAIL_MAX_PER_SECOND = 50;
/** Bytes a tail may have written but its reader not yet taken; past it messages are dropped. */
export const TAIL_MAX_PENDING_BYTES = 1024 * 1024;

/**
 * The dashboard's routes: the page, `GET /v1/status/stream` (a `status` event every interval),
 * `GET /v1/status/tail?topic=` (the live `msg` frames of one topic or pattern), both
 * server-sent events, and `GET /v1/status/history` (the chart history ring as JSON), all three
 * guarded by the admin token. `close` ends every open stream (on stop).
 */
export function createDashboardRoutes(options: DashboardRoutesOptions) {
  const intervalMs = options.intervalMs ?? 1000;
  const open = new Set<() => void>();

  const mount = (app: Hono) => {
    const guard = adminGuard(options);
    app.use('/v1/status/stream', guard);
    app.use('/v1/status/tail', guard);
    app.use('/v1/status/history', guard);

    app.get('/v1/status/history', (c) => c.json({ samples: options.samples?.() ?? [] }));

    app.get('/v1/status/stream', (c) =>
      streamSSE(c, async (stream) => {
        let running = true;
        const stop = () => {
          running = false;
        };
        open.add(stop);
        stream.onAbort(stop);
        // While this stream is open, a page is watching (work done only for the page runs).
        const release = options.watchers?.open();
        try {
          // The first event carries the whole history ring, later ones what was added since.
          let sentUpTo: number | undefined;
          while (running && !stream.aborted) {
            const samples = options.samples?.(sentUpTo) ?? [];
            if (samples.length > 0) sentUpTo = samples.at(-1)?.at;
            const event: StatusEvent = {
              at: Date.now(),
              status: (await options.status()) as StatusEvent['status'],
              metrics: await options.metrics(),
              samples,
            };
            await stream.writeSSE({ event: 'status', data: JSON.stringify(event) });
            await stream.sleep(intervalMs);
          }
        } finally {
          release?.();
          open.delete(stop);
        }
      }),
    );

    app.get('/v1/status/tail', (c) => {
      const topic = c.req.query('topic') ?? '';
      if (!isPattern(topic)) assertTopic(topic);
      return streamSSE(c, async (stream) => {
        let done: () => void = () => {};
        const finished = new Promise<void>((resolve) => (done = resolve));
        // Drop messages past a per-second budget: a tail is for looking, not for bulk export.
        let windowStart = Date.now();
        let sentInWindow = 0;
        // A reader slower than the tail does not make the relay buffer for it: past the bound,
        // messages are dropped and counted, and a `dropped` event says how many once it catches up.
        let pendingBytes = 0;
        let dropped = 0;
        const write = (event: string, data: string) => {
          pendingBytes += data.length;
          void stream
            .writeSSE({ event, data })
            .catch(() => {})
            .finally(() => (pendingBytes -= data.length));
        };
        const subscriber: Subscriber = {
          id: `dashboard-tail-${randomId()}`,
          send(frame) {
            if (stream.aborted || stream.closed) return false;
            const op = /^\{"op":"([a-z]+)"/.exec(frame)?.[1] ?? 'msg'; // hub frames start with their op
            if (op === 'msg') {
              const now = Date.now();
              if (now - windowStart >= 1000) [windowStart, sentInWindow] = [now, 0];
              if (++sentInWindow > TAIL_MAX_PER_SECOND) return true;
            }
            if (pendingBytes > 0 && pendingBytes + frame.length > TAIL_MAX_PENDING_BYTES) {
              dropped += 1;
              return true;
            }
            if (dropped > 0) {
              write('dropped', JSON.stringify({ dropped }));
              dropped = 0;
            }
            write(op, frame);
            return true;
          },
          overflow: () => done(),
        };
        open.add(done);
        stream.onAbort(done);
        try {
          await options.tail.subscribe(subscriber, topic);
          await finished;
        } finally {
          options.tail.removeSubscriber(subscriber);
          open.delete(done);
        }
      });
    });

    mountStaticAssets(app, options.distDir);
  };

  return {
    mount,
    close() {
      for (const stop of open) stop();
      open.clear();
    },
  };
}
