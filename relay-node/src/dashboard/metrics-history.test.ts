import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMetricsHistory, sampleBetween } from './metrics-history.ts';

const snap = (published: number, sum: number, count: number) => ({
  published_total: published,
  delivered_total: published * 2,
  errors_total: 0,
  publish_latency: { sum_s: sum, count },
  store_append: { sum_s: 0, count: 0 },
});

describe('metrics history', () => {
  it('turns two counter snapshots into rates and average latencies', () => {
    const sample = sampleBetween(snap(10, 0.1, 10), snap(30, 0.14, 30), 2, 5_000);
    assert.equal(sample.at, 5_000);
    assert.equal(sample.published_per_s, 10);
    assert.equal(sample.delivered_per_s, 20);
    assert.equal(sample.publish_latency_ms, 2);
    assert.equal(sample.store_append_ms, null, 'no writes in the interval: no latency, not 0');
  });

  it('never reports a negative rate (a counter reset)', () => {
    assert.equal(sampleBetween(snap(30, 0, 0), snap(0, 0, 0), 1, 0).published_per_s, 0);
  });

  it('keeps a bounded ring, oldest first, and hands out only newer samples on request', async () => {
    let n = 0;
    const history = createMetricsHistory({ snapshot: async () => snap((n += 1), 0, 0), intervalMs: 5, size: 3 });
    history.start();
    await new Promise((resolve) => setTimeout(resolve, 100));
    history.stop();
    const all = history.samples();
    assert.equal(all.length, 3);
    assert.ok((all[0]?.at ?? 0) <= (all[2]?.at ?? 0));
    assert.deepEqual(history.samples(all[1]?.at), [all[2]]);
    assert.equal(history.latest(), all[2]);
  });
});
