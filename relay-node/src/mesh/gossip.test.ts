import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHybridClock, cursorTime, type Envelope } from '@anode/shared';
import { peerIdFromString } from '@libp2p/peer-id';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createGossip } from './gossip.ts';
import { createMeshMetrics } from './mesh-metrics.ts';
import { createShards } from './shards.ts';
import { createTestPeer, type TestPeer } from './test-peer.ts';

const NODE = 'gossipnode1';
const TOPIC = 'orders.eu';
const shards = createShards(32);
const shardTopic = shards.gossipTopic(TOPIC);
const clock = createHybridClock(NODE);
const envelope = (id: string): Envelope => ({ id, topic: TOPIC, cursor: clock.next(), source: 's', ts: 1, data: id });

/** This node's gossip as a relay runs it (flood publish, 5 ms batches), logging nothing. */
const testGossip = () =>
  createGossip({
    shards,
    maxMessageBytes: 64 * 1024,
    nodeId: NODE,
    batchMs: 5,
    floodPublish: true,
    log: pino({ level: 'silent' }),
    metrics: createMeshMetrics(new Registry(), () => 0),
  });

const until = async (what: string, check: () => boolean) => {
  for (let i = 0; !check(); i++) {
    if (i > 400) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
};

describe('gossip publish retries', { timeout: 60_000 }, () => {
  const peers: TestPeer[] = [];
  after(() => Promise.all(peers.map((peer) => peer.stop())));

  /**
   * A relay's gossip on a real gossipsub node, connected on loopback to a peer that records what it
   * receives. Its publish is wrapped by a test double that fails the first `failures` calls: a
   * transient gossipsub publish error cannot be provoked on demand with real nodes.
   */
  const setup = async (failures: number) => {
    const sender = await createTestPeer();
    const receiver = await createTestPeer();
    peers.push(sender, receiver);
    const gossip = testGossip();
    const pubsub = sender.pubsub;
    let calls = 0;
    const publish = pubsub.publish.bind(pubsub);
    pubsub.publish = async (...args: Parameters<typeof publish>) => {
      calls += 1;
      if (calls <= failures) throw new Error('test double: gossipsub publish failed');
      return publish(...args);
    };
    gossip.attach(pubsub, sender.peerId, () => {});
    gossip.carry(new Set([shards.of(TOPIC)]));
    await receiver.dial(sender.multiaddrs()[0] as string);
    await receiver.join(shardTopic, sender.peerId);
    await until('the sender to see the receiver subscribed', () =>
      pubsub.getSubscribers(shardTopic).some((p) => p.toString() === receiver.peerId),
    );
    const received = () =>
      receiver.received.flatMap(
        (m) => (JSON.parse(new TextDecoder().decode(m.data)) as { envelopes: Envelope[] }).envelopes,
      );
    return { gossip, received, calls: () => calls };
  };

  it("keeps this node's messages in order when a publish fails and is retried", async () => {
    const { gossip, received, calls } = await setup(1);
    gossip.send([envelope('first')]);
    await until('the first publish to fail', () => calls() === 1);
    gossip.send([envelope('second')]);
    await until('both messages at the receiver', () => received().length >= 2);
    assert.deepEqual(
      received().map((e) => e.id),
      ['first', 'second'],
      'the retried batch was not overtaken by a later one',
    );
    await gossip.stop();
  });

  it('retries nothing after stop', async () => {
    const { gossip, calls } = await setup(Number.POSITIVE_INFINITY);
    gossip.send([envelope('doomed')]);
    await until('the first publish to fail', () => calls() === 1);
    await gossip.stop();
    // Longer than every retry's backoff together (0.2 + 0.4 + 0.8 s).
    await sleep(2_000);
    assert.equal(calls(), 1, 'no retry went out after stop');
  });
});

describe("gossip of this node's own batches", () => {
  const peers: TestPeer[] = [];
  after(() => Promise.all(peers.map((peer) => peer.stop())));

  it('drops a copy of a batch it published that comes back as seen, without checking its signature', async () => {
    const gossip = testGossip();
    const node = await createTestPeer({ messageIds: { msgIdFn: gossip.msgIdFn, fastMsgIdFn: gossip.fastMsgIdFn } });
    const peer = await createTestPeer();
    peers.push(node, peer);
    gossip.attach(node.pubsub, node.peerId, () => {});
    gossip.carry(new Set([shards.of(TOPIC)]));
    gossip.send([envelope('own')]);
    await gossip.flush();
    // gossipsub's internals: its message cache (what it forwards) and its check of a received copy.
    type Raw = { signature?: Uint8Array };
    const internals = node.pubsub as unknown as {
      mcache: { msgs: Map<string, { message: Raw }> };
      validateReceivedMessage(from: unknown, message: Raw): Promise<{ code: string }>;
    };
    const published = [...internals.mcache.msgs.values()].map((entry) => entry.message);
    assert.equal(published.length, 1);
    const from = peerIdFromString(peer.peerId);
    // A copy with a bad signature (were it verified, it would be rejected as invalid) and then the
    // genuine one: both are known by the sender's key and sequence number, and dropped as seen.
    const copy = published[0] as Raw;
    const forged = { ...copy, signature: new Uint8Array(64) };
    assert.equal((await internals.validateReceivedMessage(from, forged)).code, 'duplicate');
    assert.equal((await internals.validateReceivedMessage(from, copy)).code, 'duplicate');
    await gossip.stop();
  });
});

describe('gossip backlog bookkeeping', () => {
  const SELF = '12D3KooWGRUVh9o8Fv1ypqSFNFqUmxWP3ZP5jZbGMXwQt4pdhq2N';
  const PEER = 'peer-a';

  /** A gossip on a stand-in gossipsub whose stream to PEER the test sets (libp2p's internals). */
  const setup = () => {
    const undelivered: [string, number][] = [];
    const stream: { status: string; remoteWriteStatus: string; writeBuffer: { byteLength: number } } = {
      status: 'open',
      remoteWriteStatus: 'writable',
      writeBuffer: { byteLength: 0 },
    };
    const streamsOutbound = new Map([[PEER, { rawStream: stream }]]);
    const pubsub = {
      streamsOutbound,
      topicValidators: new Map(),
      addEventListener() {},
      getSubscribers: () => [PEER],
      getMeshPeers: () => [PEER],
      getScore: () => 0,
      getTopics: () => [shardTopic],
      subscribe() {},
      unsubscribe() {},
      async publish() {
        return { recipients: canSend() ? [PEER] : [] };
      },
    };
    const canSend = () => streamsOutbound.has(PEER) && stream.status === 'open';
    const gossip = createGossip({
      shards,
      maxMessageBytes: 64 * 1024,
      nodeId: NODE,
      batchMs: 1,
      floodPublish: true,
      log: pino({ level: 'silent' }),
      metrics: createMeshMetrics(new Registry(), () => 0),
      onUndelivered: (peer, since) => undelivered.push([peer, since]),
    });
    gossip.attach(pubsub as unknown as Parameters<typeof gossip.attach>[0], SELF, () => {});
    const publish = async (id: string) => {
      await sleep(3); // a later millisecond than the previous batch
      const sent = envelope(id);
      gossip.send([sent]);
      await gossip.flush();
      return cursorTime(sent.cursor);
    };
    return { gossip, stream, streamsOutbound, undelivered, publish };
  };

  it('reports a peer whose stream was reset with gossip in its buffer from the first batch it held', async () => {
    const { gossip, stream, undelivered, publish } = setup();
    const first = await publish('a'); // the stream had nothing unsent
    stream.writeBuffer.byteLength = 5_000; // the peer stopped reading
    await publish('b');
    // The buffer overflowed: libp2p aborts the stream and empties its buffer.
    stream.status = 'aborted';
    stream.writeBuffer.byteLength = 0;
    await publish('c');
    assert.deepEqual(undelivered, [[PEER, first]]);
    await gossip.stop();
  });

  it('counts a missing stream as not sent', async () => {
    const { gossip, streamsOutbound, undelivered, publish } = setup();
    const first = await publish('a');
    streamsOutbound.delete(PEER);
    await publish('b');
    assert.deepEqual(undelivered, [[PEER, first]]);
    await gossip.stop();
  });

  it('owes a peer that disconnects with gossip still buffered, and forgets it', async () => {
    const { gossip, stream, publish } = setup();
    const first = await publish('a');
    stream.writeBuffer.byteLength = 5_000;
    await publish('b');
    assert.equal(gossip.peerDown(PEER), first);
    stream.writeBuffer.byteLength = 0; // it reconnected on a fresh stream
    assert.equal(gossip.peerDown(PEER), undefined, 'forgotten');
    await publish('c');
    assert.equal(gossip.peerDown(PEER), undefined, 'nothing was left unsent');
    await gossip.stop();
  });
});
