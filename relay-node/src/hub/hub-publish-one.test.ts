import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHybridClock, OPEN_CLAIMS, type UnavailableError } from '@anode/shared';
import { createLogger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { createHub } from './hub.ts';
import { memoryStore, recorder } from './test-hub.ts';

const value = async (metrics: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string> = {}) => {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const entry = (metric?.values as { value: number; labels: Record<string, string> }[] | undefined)?.find((v) =>
    Object.entries(labels).every(([k, l]) => v.labels[k] === l),
  );
  return entry?.value ?? 0;
};

describe('hub publishOne (a client pub frame)', () => {
  it('acks once stored, fans out first, counts like publish, and answers a repeated key with the first copy', async () => {
    const store = memoryStore();
    const metrics = createMetrics();
    const hub = createHub({
      store,
      clock: createHybridClock('nodelocal0'),
      metrics,
      log: createLogger('silent'),
      maxMessageBytes: 1024,
    });
    const subscriber = recorder();
    await hub.subscribe(subscriber, 't.one');
    const context = { via: 'ws', claims: OPEN_CLAIMS } as const;
    const ack = await hub.publishOne('t.one', { data: { n: 1 } }, context);
    assert.deepEqual(subscriber.ids(), [ack.id], 'delivered before the ack');
    const [stored] = await store.history('t.one', { limit: 10 });
    assert.deepEqual({ id: stored?.id, cursor: stored?.cursor }, ack);
    const first = await hub.publishOne('t.one', { data: 2, key: 'k' }, context);
    const again = await hub.publishOne('t.one', { data: 3, key: 'k' }, context);
    assert.deepEqual(again, first, 'a repeated key is answered with the stored copy');
    assert.equal(await value(metrics, 'anode_messages_published_total', { via: 'ws' }), 2);
    assert.equal(await value(metrics, 'anode_messages_duplicate_total'), 1);
    assert.equal(
      (await metrics.registry.getSingleMetricAsString('anode_publish_latency_seconds')).includes('_count 3'),
      true,
    );
    await store.close();
  });

  it('refuses at once, with no promise to wait on, what publish would refuse', async () => {
    const store = memoryStore();
    const hub = createHub({
      store,
      clock: createHybridClock('nodelocal0'),
      metrics: createMetrics(),
      log: createLogger('silent'),
      maxMessageBytes: 16,
    });
    const context = { via: 'ws', claims: OPEN_CLAIMS } as const;
    assert.throws(() => hub.publishOne('t.one', { data: 'x'.repeat(64) }, context), { code: 'too_large' });
    hub.refusePublishes();
    assert.throws(
      () => hub.publishOne('t.one', { data: 1 }, context),
      (error: UnavailableError) => error.code === 'unavailable',
    );
    assert.deepEqual(await store.history('t.one', { limit: 10 }), []);
    await store.close();
  });

  it('refuses a source item with no JSON form alone; a client publish committed beside it is acked', async () => {
    const store = memoryStore();
    const metrics = createMetrics();
    const hub = createHub({
      store,
      clock: createHybridClock('nodelocal0'),
      metrics,
      log: createLogger('silent'),
      maxMessageBytes: 1024,
    });
    // A review: counted as 0 bytes, the function reached the store, which failed the whole batch
    // ('unavailable', the client's publish too) and set anode_store_up to 0.
    const client = hub.publishOne('chat.room', { data: { text: 'hello' } }, { via: 'ws', claims: OPEN_CLAIMS });
    const source = hub.publishNew('feed.x', [{ data: () => 1, key: 'k' }], { via: 'source', source: 'feed' });
    const [fromClient, fromSource] = await Promise.allSettled([client, source]);
    assert.equal(fromClient.status, 'fulfilled');
    assert.equal(fromSource.status === 'rejected' && (fromSource.reason as { code?: string }).code, 'bad_frame');
    assert.equal(await value(metrics, 'anode_store_up'), 1);
    await store.close();
  });
});
