import type { MetricsSample, MetricsSnapshot } from './status-schema.ts';

/**
 * A bounded in-memory ring of per-interval samples (rates and average latencies between two
 * counter snapshots), so the dashboard's charts are filled from the server on load instead of
 * starting empty. With the defaults it holds the last 5 minutes at 2-second resolution
 * (150 samples, a few kilobytes); nothing is persisted.
 */
export const HISTORY_INTERVAL_MS = 2_000;
export const HISTORY_SAMPLES = 150;

const perSecond = (now: number, before: number, seconds: number) =>
  Math.round(Math.max(0, (now - before) / seconds) * 100) / 100;

const averageMs = (now: { sum_s: number; count: number }, before: { sum_s: number; count: number }) => {
  const count = now.count - before.count;
  return count > 0 ? Math.round(((now.sum_s - before.sum_s) / count) * 1000 * 100) / 100 : null;
};

export function sampleBetween(before: MetricsSnapshot, now: MetricsSnapshot, seconds: number, at: number) {
  return {
    at,
    published_per_s: perSecond(now.published_total, before.published_total, seconds),
    delivered_per_s: perSecond(now.delivered_total, before.delivered_total, seconds),
    errors_per_s: perSecond(now.errors_total, before.errors_total, seconds),
    publish_latency_ms: averageMs(now.publish_latency, before.publish_latency),
    store_append_ms: averageMs(now.store_append, before.store_append),
  } satisfies MetricsSample;
}

export interface MetricsHistory {
  start(): void;
  stop(): void;
  /** Samples oldest first; with `after`, only those taken after that time. */
  samples(after?: number): MetricsSample[];
  latest(): MetricsSample | undefined;
}

export function createMetricsHistory(options: {
  snapshot: () => Promise<MetricsSnapshot>;
  intervalMs?: number;
  size?: number;
}): MetricsHistory {
  const intervalMs = options.intervalMs ?? HISTORY_INTERVAL_MS;
  const size = options.size ?? HISTORY_SAMPLES;
  const ring: MetricsSample[] = [];
  let previous: { at: number; snapshot: MetricsSnapshot } | undefined;
  let timer: ReturnType<typeof setInterval> | undefined;

  const take = async () => {
    const at = Date.now();
    const snapshot = await options.snapshot();
    if (previous) {
      ring.push(sampleBetween(previous.snapshot, snapshot, Math.max(0.001, (at - previous.at) / 1000), at));
      if (ring.length > size) ring.splice(0, ring.length - size);
    }
    previous = { at, snapshot };
  };

  return {
    start() {
      void take();
      timer = setInterval(() => void take().catch(() => {}), intervalMs);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
    },
    samples: (after) => (after === undefined ? [...ring] : ring.filter((s) => s.at > after)),
    latest: () => ring.at(-1),
  };
}
