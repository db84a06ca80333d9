import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createShards } from '@anode/relay-node/src/mesh/shards.ts';
import { createTestPeer, type TestPeer } from '@anode/relay-node/src/mesh/test-peer.ts';
import { startRelay, type TestRelay, history } from '../helpers/relay.ts';
import { type Collector, collect, FAST_MESH, meshStatus, publish, waitFor, waitForFullMesh } from '../helpers/mesh.ts';

const KEY = randomBytes(32).toString('hex');
const TOPIC = 'private.feed';
const gossipTopic = createShards(32).gossipTopic(TOPIC);
/** A gossip batch (format 2) of one envelope, as the rogue's own node `node`. */
const envelope = (id: string, topic = TOPIC, node = 'rogue', minter = node) =>
  new TextEncoder().encode(
    JSON.stringify({
      v: 2,
      node,
      envelopes: [
        {
          id,
          topic,
          cursor: `${Date.now().toString(16).padStart(12, '0')}0000-${minter}`,
          source: 's',
          ts: 1,
          data: 1,
        },
      ],
    }),
  );

describe('relay mesh: a private network', () => {
  let a: TestRelay;
  let b: TestRelay;
  let addressA: string;
  let peerA: string;
  let onA: Collector;
  let onB: Collector;
  const peers: TestPeer[] = [];

  before(async () => {
    const flags = { ...FAST_MESH, 'mesh-key': KEY, 'max-message-bytes': '4096', 'mesh-max-message-bytes': '8192' };
    a = await startRelay({ ...flags, listen: '/ip4/127.0.0.1/tcp/0' });
    const status = await meshStatus(a.url);
    addressA = status.node.multiaddrs[0] as string;
    peerA = status.node.peer_id;
    b = await startRelay({ ...flags, bootstrap: addressA });
    await waitForFullMesh([a.url, b.url], gossipTopic);
    [onA, onB] = await Promise.all([collect(a.wsUrl, 'private.>'), collect(b.wsUrl, 'private.>')]);
  });

  after(async () => {
    onA.client.close();
    onB.client.close();
    await Promise.all(peers.map((p) => p.stop()));
    await Promise.all([a.stop(), b.stop()]);
  });

  const peer = async (options: Parameters<typeof createTestPeer>[0]) => {
    const created = await createTestPeer(options);
    peers.push(created);
    return created;
  };

  it('refuses peers without the network key, or with another one', async () => {
    for (const outsider of [await peer({}), await peer({ networkKey: randomBytes(32).toString('hex') })]) {
      // A wrong key garbles the handshake, which then fails or stalls: either way, no connection.
      await assert.rejects(outsider.dial(addressA, 1_500));
      assert.equal(outsider.connections(), 0);
      assert.ok(!(await meshStatus(a.url)).peers.some((p) => p.peer_id === outsider.peerId));
    }
  });

  it('refuses a peer with the key that is not on the allow-list', async () => {
    const gated = await startRelay({ ...FAST_MESH, 'mesh-key': KEY, 'mesh-allow': peerA, bootstrap: addressA });
    try {
      await waitFor('the allowed peer to connect', async () => (await meshStatus(gated.url)).peers.length === 1);
      const stranger = await peer({ networkKey: KEY });
      // The handshake may complete on the dialer's side before the relay's gater drops it.
      await stranger.dial((await meshStatus(gated.url)).node.multiaddrs[0] as string).catch(() => {});
      await waitFor('the stranger to be cut off', () => stranger.connections() === 0, 5_000);
      assert.deepEqual(
        (await meshStatus(gated.url)).peers.map((p) => p.peer_id),
        [peerA],
      );
    } finally {
      await gated.stop();
    }
  });

  it('scores down a peer that sends invalid gossip and never delivers its messages', async () => {
    const rogue = await peer({ networkKey: KEY });
    await rogue.dial(addressA);
    await rogue.join(gossipTopic, peerA);
    const invalid = [
      new TextEncoder().encode('not json'),
      envelope('wrongshard', 'elsewhere.topic'),
      // Format 1 (one bare envelope per gossip message) is not spoken on the format 2 topics.
      new TextEncoder().encode(
        JSON.stringify({ id: 'formatone', topic: TOPIC, cursor: '0000000000010000-x', source: 's', ts: 1, data: 1 }),
      ),
      new Uint8Array(8192 + 64 * 1024 + 1).fill(0x20), // oversized: beyond the largest message plus a batch's overhead
    ];
    for (const bytes of invalid) assert.equal(await rogue.publishRaw(gossipTopic, bytes), 1);
    await waitFor('the rogue peer to be graylisted', async () => {
      const seen = (await meshStatus(a.url)).peers.find((p) => p.peer_id === rogue.peerId);
      return seen !== undefined && seen.score < -80;
    });
    assert.ok((await meshStatus(a.url)).mesh.rejected_messages >= 4);
    // Even a well-formed message is ignored from a graylisted peer.
    await rogue.publishRaw(gossipTopic, envelope('wellformedbutgraylisted'));

    const unsigned = await peer({ networkKey: KEY, signing: 'none' });
    await unsigned.dial(addressA);
    await unsigned.join(gossipTopic, peerA);
    await unsigned.publishRaw(gossipTopic, envelope('unsigned'));

    // The mesh itself still works, and nothing from the rogue peers got through.
    const [ack] = await publish(b.url, TOPIC, [{ data: 'honest' }]);
    await waitFor('the honest message on A', () => onA.ids().has(ack?.id as string));
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const collector of [onA, onB]) assert.deepEqual([...collector.ids()], [ack?.id]);
    for (const relay of [a, b])
      assert.deepEqual(
        (await history(relay.url, TOPIC)).map((m) => m.id),
        [ack?.id],
      );
    await waitFor('an unsigned message to cost its sender', async () => {
      const seen = (await meshStatus(a.url)).peers.find((p) => p.peer_id === unsigned.peerId);
      return seen !== undefined && seen.score < 0;
    });
  });

  it("refuses a member's batch that passes off another relay's envelopes", async () => {
    // A's history must hold B's message only; the member-with-the-key forgeries never land.
    const [ack] = await publish(b.url, TOPIC, [{ data: 'from b' }]);
    await waitFor('B’s message on A', async () => (await history(a.url, TOPIC)).some((m) => m.id === ack?.id));
    const nodeB = (ack?.cursor as string).split('-')[1] as string;
    const member = await peer({ networkKey: KEY });
    await member.dial(addressA);
    await member.join(gossipTopic, peerA);
    const before = (await meshStatus(a.url)).mesh.rejected_messages;
    await member.publishRaw(gossipTopic, envelope('claimsnodeb', TOPIC, nodeB));
    await member.publishRaw(gossipTopic, envelope('mintedbyb', TOPIC, 'member', nodeB));
    await waitFor(
      'both forgeries rejected',
      async () => (await meshStatus(a.url)).mesh.rejected_messages >= before + 2,
    );
    const ids = (await history(a.url, TOPIC)).map((m) => m.id);
    assert.ok(!ids.includes('claimsnodeb') && !ids.includes('mintedbyb'), `no forgery stored: ${ids.join(',')}`);
  });
});
