import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHybridClock } from '@anode/shared';
import { createMetrics } from '../metrics.ts';
import { createLogger } from '../logger.ts';
import { createSqliteStore } from '../storage/embedded/sqlite-store.ts';
import { createHub } from './hub.ts';
import { recorder, remote } from './test-hub.ts';

const T0 = Date.now() - 60_000;

/** A hub on a store keeping two messages per topic, with three of `t` stored and one trimmed. */
async function trimmedHub() {
  const store = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 2 } });
  const metrics = createMetrics();
  const hub = createHub({
    store,
    clock: createHybridClock('nodelocal0'),
    metrics,
    log: createLogger('silent'),
    maxMessageBytes: 1024,
  });
  const held = [
    remote('m1', 't', T0 + 1, 'peer'),
    remote('m2', 't', T0 + 2, 'peer'),
    remote('m3', 't', T0 + 3, 'peer'),
  ];
  assert.equal(await hub.ingest(held, { persist: true }), 3);
  assert.equal(await store.sweep(), 1);
  assert.equal(await store.trimmedThrough('t'), held[0]?.cursor);
  const subscriber = recorder();
  await hub.subscribe(subscriber, 't');
  const expired = async () =>
    Number(/ (\d+)$/m.exec(await metrics.registry.getSingleMetricAsString('anode_mesh_catch_up_expired_total'))?.[1]);
  return { store, hub, held, subscriber, expired };
}

describe('hub: catch-up under retention', () => {
  it('a catch-up page leaves out what retention deleted here, and takes what is past the mark', async () => {
    const { store, hub, held, subscriber, expired } = await trimmedHub();
    // A peer that keeps more offers m1 (trimmed here), m0 (never here, older still), m2 (held),
    // and m4 (new here, past the mark).
    const page = [remote('m0', 't', T0, 'other'), held[0], held[1], remote('m4', 't', T0 + 4, 'other')];
    assert.equal(await hub.ingest(page, { persist: true }), 1, 'only m4 is new');
    await hub.writer.drain();
    assert.deepEqual(subscriber.ids(), ['m4']);
    assert.deepEqual(
      (await store.history('t', { limit: 10 })).map((m) => m.id),
      ['m2', 'm3', 'm4'],
    );
    assert.equal(await expired(), 2);
    // Another topic has no mark: everything is taken.
    assert.equal(await hub.ingest([remote('x0', 'u', T0, 'other')], { persist: true }), 1);
    await store.close();
  });

  it('without persisting (a shared store), a catch-up delivers nothing at or before the mark either', async () => {
    const { store, hub, held, subscriber } = await trimmedHub();
    const page = [remote('m0', 't', T0, 'other'), held[0], remote('m4', 't', T0 + 4, 'other')];
    assert.equal(await hub.ingest(page, { persist: false }), 1);
    assert.deepEqual(subscriber.ids(), ['m4']);
    await store.close();
  });

  it('live gossip is not checked against the mark: a message new here is delivered', async () => {
    const { store, hub, subscriber, expired } = await trimmedHub();
    assert.equal(await hub.ingest([remote('late', 't', T0, 'other')], { persist: true, deliverFirst: true }), 1);
    assert.deepEqual(subscriber.ids(), ['late']);
    assert.equal(await expired(), 0);
    await store.close();
  });
});
