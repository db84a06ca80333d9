import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createShards } from '@anode/relay-node/src/mesh/shards.ts';
import { startRelay, type TestRelay, history } from '../helpers/relay.ts';
import {
  byOrigin,
  type Collector,
  collect,
  FAST_MESH,
  meshStatus,
  publish,
  waitFor,
  waitForFullMesh,
} from '../helpers/mesh.ts';

const TOPIC = 'meshfive.orders';
const PER_NODE = 40;

describe('relay mesh: five relays on loopback', () => {
  const relays: TestRelay[] = [];
  const subscribers: Collector[] = [];

  before(async () => {
    const first = await startRelay({ ...FAST_MESH, listen: '/ip4/127.0.0.1/tcp/0' });
    relays.push(first);
    const bootstrap = (await meshStatus(first.url)).node.multiaddrs[0] as string;
    // The other four know only the first; discovery finds the rest.
    relays.push(...(await Promise.all([1, 2, 3, 4].map(() => startRelay({ ...FAST_MESH, bootstrap })))));
    await waitForFullMesh(
      relays.map((r) => r.url),
      createShards(32).gossipTopic(TOPIC),
    );
    subscribers.push(...(await Promise.all(relays.map((r) => collect(r.wsUrl, 'meshfive.>')))));
  });

  after(async () => {
    for (const s of subscribers) s.client.close();
    await Promise.all(relays.map((r) => r.stop()));
  });

  it('shows every peer with its connection type and latency, and the gossip mesh per topic', async () => {
    const status = await meshStatus(relays[2]?.url as string);
    assert.match(status.node.peer_id, /^12D3Koo/);
    assert.ok(status.node.multiaddrs.every((a) => a.startsWith('/ip4/127.0.0.1/tcp/')));
    assert.equal(status.peers.length, 4);
    for (const peer of status.peers) {
      assert.equal(peer.connection, 'direct');
      assert.ok(peer.latency_ms === null || peer.latency_ms >= 0);
    }
    const gossipTopic = createShards(32).gossipTopic(TOPIC);
    assert.ok((status.mesh.topics[gossipTopic] ?? []).length >= 1, 'the shard has a gossip mesh');
    await waitFor('latency measured', async () =>
      (await meshStatus(relays[2]?.url as string)).peers.every((p) => typeof p.latency_ms === 'number'),
    );
  });

  it('delivers messages published on every node to all five subscribers exactly once, in cursor order per origin', async () => {
    const acks = await Promise.all(
      relays.map(async (relay, node) => {
        const out = [];
        for (let batch = 0; batch < PER_NODE; batch += 10) {
          const items = Array.from({ length: 10 }, (_, i) => ({ data: { node, n: batch + i } }));
          out.push(...(await publish(relay.url, TOPIC, items)));
        }
        return out;
      }),
    );
    const expected = new Set(acks.flat().map((a) => a.id));
    assert.equal(expected.size, relays.length * PER_NODE);
    await waitFor(
      'every subscriber to get every message',
      () => subscribers.every((s) => s.received.length >= expected.size),
      20_000,
    );
    await new Promise((resolve) => setTimeout(resolve, 200)); // a duplicate would arrive by now
    for (const [index, subscriber] of subscribers.entries()) {
      assert.equal(subscriber.received.length, expected.size, `subscriber ${index}: exactly once`);
      assert.deepEqual(subscriber.ids(), expected, `subscriber ${index}: the published messages`);
      for (const [origin, cursors] of byOrigin(subscriber.received)) {
        assert.deepEqual(cursors, [...cursors].sort(), `subscriber ${index}: origin ${origin} in cursor order`);
      }
    }
    // Persist mode `all`: every node is a full replica.
    for (const relay of relays) {
      assert.deepEqual(new Set((await history(relay.url, TOPIC)).map((m) => m.id)), expected);
    }
  });
});
