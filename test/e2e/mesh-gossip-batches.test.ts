import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createShards } from '@anode/relay-node/src/mesh/shards.ts';
import { counter } from '../bench/mesh-edge-common.ts';
import { type Collector, collect, FAST_MESH, meshStatus, publish, waitFor, waitForFullMesh } from '../helpers/mesh.ts';
import { history, startRelay, type TestRelay } from '../helpers/relay.ts';

const TOPIC = 'batches.feed';
const CAUGHT_UP = 'anode_mesh_catch_up_messages_total';

// Gossip format 2 carries a relay's accepted envelopes in batches per shard per tick: a burst
// travels in a few gossip messages, an envelope up to mesh_max_message_bytes travels alone.
describe('relay mesh: gossip batches', () => {
  let a: TestRelay;
  let b: TestRelay;
  let onB: Collector;

  before(async () => {
    a = await startRelay({ ...FAST_MESH, listen: '/ip4/127.0.0.1/tcp/0' });
    const bootstrap = (await meshStatus(a.url)).node.multiaddrs[0] as string;
    b = await startRelay({ ...FAST_MESH, bootstrap });
    await waitForFullMesh([a.url, b.url], createShards(32).gossipTopic(TOPIC));
    onB = await collect(b.wsUrl, TOPIC);
  });

  after(async () => {
    onB?.client.close();
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('carries a burst and an envelope near the size limit by gossip alone, once each, in cursor order', async () => {
    const caughtUp = await counter(b.url, CAUGHT_UP);
    const batchesBefore = await counter(a.url, 'anode_mesh_gossip_batches_total{direction="out"}');
    // 0.9 MiB of data: within the default 1 MiB max_message_bytes, far above a batch's 64 KiB target.
    const big = publish(a.url, TOPIC, [{ data: 'y'.repeat(0.9 * 1024 * 1024) }]);
    const small = Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        publish(
          a.url,
          TOPIC,
          Array.from({ length: 25 }, (_, j) => ({ data: { i, j } })),
        ),
      ),
    );
    const acks = [...(await big), ...(await small).flat()];
    const ids = new Set(acks.map((ack) => ack.id));
    await waitFor('every message on B', () => onB.ids().size >= ids.size, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 300)); // a duplicate would arrive by now
    assert.equal(onB.received.length, ids.size, 'each message once');
    assert.deepEqual(onB.ids(), ids);
    const cursors = onB.received.map((m) => m.cursor);
    assert.deepEqual(cursors, [...cursors].sort(), 'in cursor order');
    assert.equal(await counter(b.url, CAUGHT_UP), caughtUp, 'nothing needed catch-up');
    assert.equal(await counter(a.url, 'anode_mesh_gossip_dropped_total'), 0);
    const batches = (await counter(a.url, 'anode_mesh_gossip_batches_total{direction="out"}')) - batchesBefore;
    assert.ok(batches >= 2 && batches < ids.size, `${ids.size} envelopes went out in ${batches} batches`);
    assert.equal((await history(b.url, TOPIC)).length, ids.size, 'B stored them all');
  });
});
