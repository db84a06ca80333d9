import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMetrics } from './metrics.ts';

test('process metrics are named anode_process_… and anode_nodejs_…, said once', async () => {
  const text = await createMetrics().registry.metrics();
  assert.match(text, /^anode_process_cpu_user_seconds_total /m);
  assert.match(text, /^anode_nodejs_eventloop_lag_seconds /m);
  assert.doesNotMatch(text, /anode_process_process_|anode_process_nodejs_/);
});
