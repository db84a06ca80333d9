import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Registry } from 'prom-client';
import { createSourceMetrics } from './source-metrics.ts';

it('counts publishes given up on by source and stage, and forgets a deleted source', async () => {
  const registry = new Registry();
  const metrics = createSourceMetrics(registry, () => ({ runtimes: [], inFlight: 0, waiting: 0 }));
  metrics.abandonedPublishes.inc({ source: 'a', stage: 'running' });
  metrics.abandonedPublishes.inc({ source: 'a', stage: 'queued' }, 2);
  metrics.abandonedPublishes.inc({ source: 'b', stage: 'queued' });
  const series = async () =>
    (await registry.metrics()).split('\n').filter((line) => line.startsWith('anode_source_abandoned_publishes_total'));
  assert.deepEqual(await series(), [
    'anode_source_abandoned_publishes_total{source="a",stage="running"} 1',
    'anode_source_abandoned_publishes_total{source="a",stage="queued"} 2',
    'anode_source_abandoned_publishes_total{source="b",stage="queued"} 1',
  ]);
  metrics.forget('a');
  assert.deepEqual(await series(), ['anode_source_abandoned_publishes_total{source="b",stage="queued"} 1']);
});
