import { getConnInfo } from '@hono/node-server/conninfo';
import { assertPattern, randomId } from '@anode/shared';
import type { Context, Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Subscriber } from '../hub/hub.ts';
import { adminGuard, type GuardOptions } from './admin-guard.ts';
import type { Watchers } from './watchers.ts';
import type { MetricsSample, MetricsSnapshot } from './status-schema.ts';
import { createStatusFeed, encodeStatusEvent, type SharedStatus } from './status-feed.ts';
import { mountStaticAssets } from './static-assets.ts';
import { createStreamSlots } from './stream-slots.ts';

/** A place to subscribe the topic tail (the relay's hub, or a test double). */
export interface TailSource {
  subscribe(subscriber: Subscriber, pattern: string): Promise<unknown>;
  removeSubscriber(subscriber: Subscriber): void;
}

export interface DashboardRoutesOptions extends GuardOptions {
  /** The merged `/v1/status` object, as JSON text. */
  status: () => Promise<string>;
  metrics: () => Promise<MetricsSnapshot>;
  /** The history ring's samples, all or those after a time (metrics-history.ts). */
  samples?: (after?: number) => MetricsSample[];
  tail: TailSource;
  /** Told while a status stream is open (a page is watching). */
  watchers?: Watchers;
  intervalMs?: number;
  /** Open status streams and tails allowed, per client address and in total (DASHBOARD_LIMITS). */
  limits?: Partial<DashboardLimits>;
  distDir?: string;
}

export interface DashboardLimits {
  streamsPerClient: number;
  streams: number;
  tailsPerClient: number;
  tails: number;
}

/** A few tabs per operator, a few operators: past these a stream is refused with `limit_reached` (429). */
export const DASHBOARD_LIMITS: DashboardLimits = { streamsPerClient: 8, streams: 32, tailsPerClient: 8, tails: 32 };

const TAIL_MAX_PER_SECOND = 50;
/** A quiet tail still sends a comment this often, so the page can tell it from a dead one. */
export const TAIL_PING_MS = 2_000;
/** Bytes a tail may have written but its reader not yet taken; past it messages are dropped. */
export const TAIL_MAX_PENDING_BYTES = 1024 * 1024;

/** The peer's address (behind a proxy, the proxy's); `unknown` for an in-process request. */
function clientAddress(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * The dashboard's routes: the page, `GET /v1/status/stream` (a `status` event every interval),
 * `GET /v1/status/tail?topic=` (the live `msg` frames of one topic or pattern), both
 * server-sent events, and `GET /v1/status/history` (the chart history ring as JSON), all three
 * guarded by the admin token. The status is read once per interval for every open stream
 * (status-feed.ts); streams and tails are capped per client address and in total. `close` ends
 * every open stream (on stop).
 */
export function createDashboardRoutes(options: DashboardRoutesOptions) {
  const intervalMs = options.intervalMs ?? 1000;
  const limits = { ...DASHBOARD_LIMITS, ...options.limits };
  const open = new Set<() => void>();
  const feed = createStatusFeed({ status: options.status, metrics: options.metrics, intervalMs });
  const streams = createStreamSlots('status streams', { perClient: limits.streamsPerClient, total: limits.streams });
  const tails = createStreamSlots('topic tails', { perClient: limits.tailsPerClient, total: limits.tails });

  const mount = (app: Hono) => {
    const guard = adminGuard(options);
    app.use('/v1/status/stream', guard);
    app.use('/v1/status/tail', guard);
    app.use('/v1/status/history', guard);

    app.get('/v1/status/history', (c) => c.json({ samples: options.samples?.() ?? [] }));

    app.get('/v1/status/stream', (c) => {
      const release = streams.take(clientAddress(c));
      return streamSSE(c, async (stream) => {
        let done: () => void = () => {};
        const finished = new Promise<void>((resolve) => (done = resolve));
        open.add(done);
        stream.onAbort(done);
        // While this stream is open, a page is watching (work done only for the page runs).
        const watching = options.watchers?.open();
        // The first event carries the whole history ring, later ones what was added since. A
        // reader still taking the previous event skips one; the next brings the samples it missed.
        let sentUpTo: number | undefined;
        let writing = false;
        const send = async (shared: SharedStatus) => {
          if (writing) return;
          if (stream.aborted || stream.closed) return done();
          writing = true;
          try {
            const samples = options.samples?.(sentUpTo) ?? [];
            await stream.writeSSE({ event: 'status', data: encodeStatusEvent(shared, samples) });
            if (samples.length > 0) sentUpTo = samples.at(-1)?.at;
          } catch {
            done();
          } finally {
            writing = false;
          }
        };
        let leave = () => {};
        try {
          await send(await feed.read());
          leave = feed.join((shared) => void send(shared));
          await finished;
        } finally {
          leave();
          watching?.();
          open.delete(done);
          release();
        }
      });
    });

    app.get('/v1/status/tail', (c) => {
      const topic = c.req.query('topic') ?? '';
      // The WebSocket's own check: a pattern it would refuse (`a.>.b`) is refused here too.
      assertPattern(topic);
      const release = tails.take(clientAddress(c));
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
              if (++sentInWindow > TAIL_MAX_PER_SECOND) {
                dropped += 1;
                return true;
              }
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
        // Each ping also reports what was dropped since the last message.
        const ping = setInterval(() => {
          if (stream.aborted || stream.closed) return done();
          if (dropped > 0) {
            write('dropped', JSON.stringify({ dropped }));
            dropped = 0;
          }
          void stream.write(': ping\n\n').catch(() => done());
        }, TAIL_PING_MS);
        try {
          await options.tail.subscribe(subscriber, topic);
          await finished;
        } finally {
          clearInterval(ping);
          options.tail.removeSubscriber(subscriber);
          open.delete(done);
          release();
        }
      });
    });

    mountStaticAssets(app, options.distDir);
  };

  return {
    mount,
    close() {
      feed.stop();
      for (const stop of open) stop();
      open.clear();
    },
  };
}
