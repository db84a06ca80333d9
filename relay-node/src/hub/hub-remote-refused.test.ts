import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createHybridClock } from '@anode/shared';
import { createLogger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { createHub } from './hub.ts';
import { memoryStore, recorder, remote } from './test-hub.ts';

test('a flood of refused envelopes from elsewhere logs one line at once, counts every one, and keeps the valid ones', async () => {
  const lines: { msg: string; code?: string; count?: number }[] = [];
  const metrics = createMetrics();
  const hub = createHub({
    store: memoryStore(),
    clock: createHybridClock('nodelocal0'),
    metrics,
    log: createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) }),
    maxMessageBytes: 256,
  });
  const live = recorder();
  await hub.subscribe(live, 'rr.a');
  const now = Date.now();
  // What a member with a larger max_message_bytes (or a hostile one) gossips: within the gossip
  // limit, above this node's message limit.
  const big = Array.from({ length: 500 }, (_, i) => ({
    ...remote(`big-${i}`, 'rr.a', now + i, 'zzzzzzzzzz'),
    data: 'x'.repeat(1_000),
  }));
  const ok = remote('fits', 'rr.a', now + 600, 'zzzzzzzzzz');
  assert.equal(await hub.ingest([...big, ok], { persist: true, deliverFirst: true }), 1);
  assert.deepEqual(live.ids(), ['fits']);
  const refused = lines.filter((line) => line.msg === 'envelope from elsewhere refused');
  assert.equal(refused.length, 1, `one line for the flood, not one per envelope (got ${refused.length})`);
  assert.equal(refused[0]?.code, 'too_large');
  const counted = await metrics.registry.getSingleMetricAsString('anode_errors_total');
  assert.match(counted, /anode_errors_total\{code="too_large"\} 500/);
});
