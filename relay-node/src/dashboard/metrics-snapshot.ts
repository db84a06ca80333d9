import type { Metrics } from '../metrics.ts';
import type { MetricsSnapshot } from './status-schema.ts';

type Readable = { get(): Promise<{ values: { value: number; metricName?: string }[] }> };

const total = async (metric: Readable) => (await metric.get()).values.reduce((sum, v) => sum + v.value, 0);

const histogram = async (metric: Readable) => {
  const { values } = await metric.get();
  const pick = (suffix: string) => values.find((v) => v.metricName?.endsWith(suffix))?.value ?? 0;
  return { sum_s: pick('_sum'), count: pick('_count') };
};

/** Cumulative counters; the page turns deltas between two snapshots into rates and latencies. */
export async function metricsSnapshot(metrics: Metrics): Promise<MetricsSnapshot> {
  return {
    published_total: await total(metrics.published),
    delivered_total: await total(metrics.delivered),
    errors_total: await total(metrics.errors),
    publish_latency: await histogram(metrics.publishLatency),
    store_append: await histogram(metrics.storeAppend),
  };
}
