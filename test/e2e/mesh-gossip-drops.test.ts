import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createShards } from '@anode/relay-node/src/mesh/shards.ts';
import { createTestPeer, type TestPeer } from '@anode/relay-node/src/mesh/test-peer.ts';
import { counter } from '../bench/mesh-edge-common.ts';
import { FAST_MESH, meshStatus, publish, waitFor } from '../helpers/mesh.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';

const TOPIC = 'drops.feed';
const gossipTopic = createShards(32).gossipTopic(TOPIC);
const DROPPED = 'anode_mesh_gossip_dropped_total';

/** The envelope ids in the gossip batches a test peer received. */
const idsIn = (peer: TestPeer) =>
  peer.received.flatMap((m) =>
    (JSON.parse(new TextDecoder().decode(m.data)) as { envelopes: { id: string }[] }).envelopes.map((e) => e.id),
  );

// Issue 14: a libp2p peer whose message-size limit is below the relay's reset the gossip stream
// after one large message, and the relay kept it in its mesh and never sent it anything again.
describe('relay mesh: gossip that cannot be delivered is counted and repaired', () => {
  let relay: TestRelay;
  let address: string;
  let relayPeer: string;
  let small: TestPeer;

  before(async () => {
    relay = await startRelay({ ...FAST_MESH, listen: '/ip4/127.0.0.1/tcp/0' });
    const status = await meshStatus(relay.url);
    address = status.node.multiaddrs[0] as string;
    relayPeer = status.node.peer_id;
    small = await createTestPeer({ maxInboundDataLength: 16 * 1024 });
  });

  after(async () => {
    await small?.stop();
    await relay?.stop();
  });

  it('cuts the link to a peer that reset its gossip stream on a large message, and gossips to it again once it is back', async () => {
    await small.dial(address);
    await small.join(gossipTopic, relayPeer);
    await waitFor('the relay to have the peer in the shard mesh', async () =>
      ((await meshStatus(relay.url)).mesh.topics[gossipTopic] ?? []).includes(small.peerId),
    );
    const [first] = await publish(relay.url, TOPIC, [{ data: 'small one' }]);
    await waitFor('the first small message at the peer', () => idsIn(small).includes(first?.id as string));

    // 64 KiB: above the peer's 16 KiB limit, well within the relay's. The peer resets the stream.
    const droppedBefore = await counter(relay.url, DROPPED);
    await publish(relay.url, TOPIC, [{ data: 'x'.repeat(64 * 1024) }]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const lost = await publish(relay.url, TOPIC, [{ data: 'sent while the stream is gone' }]);

    // The relay notices (counts the undelivered batch) and cuts the link instead of keeping a
    // mesh peer it cannot send to.
    await waitFor(
      'the relay to count the undelivered gossip',
      async () => (await counter(relay.url, DROPPED)) > droppedBefore,
      10_000,
    );
    await waitFor('the relay to cut the link', () => small.connections() === 0, 15_000);
    assert.ok(!idsIn(small).includes(lost[0]?.id as string), 'that message did not reach the peer by gossip');

    // Once the peer is back, gossip reaches it again.
    await small.dial(address);
    await small.join(gossipTopic, relayPeer);
    await waitFor('the relay to have the peer in the shard mesh again', async () =>
      ((await meshStatus(relay.url)).mesh.topics[gossipTopic] ?? []).includes(small.peerId),
    );
    const [later] = await publish(relay.url, TOPIC, [{ data: 'after the repair' }]);
    await waitFor('a later message at the peer', () => idsIn(small).includes(later?.id as string), 10_000);
  });
});
