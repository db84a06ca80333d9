import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHybridClock, type Envelope } from '@anode/shared';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createGossip } from './gossip.ts';
import type { Host } from './host.ts';
import { createMeshMetrics } from './mesh-metrics.ts';
import {
  createNoticeGate,
  createResyncNotices,
  MAX_NOTICE_AGE_MS,
  NOTICE_INTERVAL_MS,
  RESYNC_PROTOCOL,
} from './resync-notice.ts';
import { createShards } from './shards.ts';
import { createTestPeer, type TestPeer } from './test-peer.ts';

const NODE = 'noticenode1';
const TOPIC = 'orders.eu';
const shards = createShards(32);
const shardTopic = shards.gossipTopic(TOPIC);
const clock = createHybridClock(NODE);
const log = pino({ level: 'silent' });
const envelope = (id: string, data: unknown = id): Envelope => ({
  id,
  topic: TOPIC,
  cursor: clock.next(),
  source: 's',
  ts: 1,
  data,
});
const mintedAt = (cursor: string) => Number.parseInt(cursor.slice(0, 12), 16);

const until = async (what: string, check: () => boolean) => {
  for (let i = 0; !check(); i++) {
    if (i > 600) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
};

describe('resync notices', { timeout: 60_000 }, () => {
  const peers: TestPeer[] = [];
  const stops: (() => Promise<void>)[] = [];
  after(async () => {
    for (const stop of stops) await stop();
    await Promise.all(peers.map((peer) => peer.stop()));
  });

  /**
   * The mesh's wiring (mesh.ts) on two real libp2p nodes on loopback: the sender's gossip reports a
   * peer it could not deliver to, and its notices tell that peer since when to catch up. The
   * sender's outbound gossip buffer is capped at 256 KiB (as host.ts caps it, smaller). With
   * `failPublish`, its gossipsub publish is replaced by a test double that always fails: a
   * gossipsub publish error cannot be provoked on demand with real nodes.
   */
  const setup = async (failPublish = false) => {
    const sender = await createTestPeer({ maxOutboundBufferSize: 256 * 1024 });
    const receiver = await createTestPeer();
    peers.push(sender, receiver);
    const told: { peer: string; since: number }[] = [];
    const senderNotices = createResyncNotices({ host: sender.host as unknown as Host, log, onNotice: () => {} });
    const receiverNotices = createResyncNotices({
      host: receiver.host as unknown as Host,
      log,
      onNotice: (peer, since) => told.push({ peer, since }),
    });
    await senderNotices.start();
    await receiverNotices.start();
    stops.push(senderNotices.stop, receiverNotices.stop);
    const undelivered: string[] = [];
    const gossip = createGossip({
      shards,
      maxMessageBytes: 64 * 1024,
      nodeId: NODE,
      batchMs: 5,
      floodPublish: true,
      log,
      metrics: createMeshMetrics(new Registry(), () => 0),
      onUndelivered: (peer, since) => {
        undelivered.push(peer);
        senderNotices.owe(peer, since);
      },
      onLost: (lostTo, since) => {
        for (const peer of lostTo) senderNotices.owe(peer, since);
      },
    });
    if (failPublish) {
      sender.pubsub.publish = async () => {
        throw new Error('test double: gossipsub publish failed');
      };
    }
    stops.push(gossip.stop);
    gossip.attach(sender.pubsub, sender.peerId, () => {});
    gossip.carry(new Set([shards.of(TOPIC)]));
    await receiver.dial(sender.multiaddrs()[0] as string);
    await receiver.join(shardTopic, sender.peerId);
    await until('the sender to see the receiver subscribed', () =>
      sender.pubsub.getSubscribers(shardTopic).some((p) => p.toString() === receiver.peerId),
    );
    return { sender, receiver, gossip, told, undelivered };
  };

  it('tells a peer that stopped reading, once its gossip stream was reset, to catch up from before what it missed', async () => {
    const { sender, receiver, gossip, told, undelivered } = await setup();
    gossip.send([envelope('before')]);
    await until('the first message at the receiver', () => receiver.received.length > 0);
    await until('the receiver to have a gossip stream from the sender', () => {
      try {
        receiver.stopReadingFrom(sender.peerId);
        return true;
      } catch {
        return false;
      }
    });

    // 50 KB each: the 256 KiB buffer overflows after a few, while the connection stays up.
    const lost: Envelope[] = [];
    for (let i = 0; undelivered.length === 0; i++) {
      if (i > 200) throw new Error('the sender never found its gossip stream reset');
      const next = envelope(`lost-${i}`, 'x'.repeat(50_000));
      lost.push(next);
      gossip.send([next]);
      await gossip.flush();
    }
    assert.equal(sender.connections(), 1, 'the connection is still up: nothing else would repair it');

    await until('the receiver to be told to catch up', () => told.length > 0);
    assert.equal(told[0]?.peer, sender.peerId);
    // From when its stream began to back up: the batch that overflowed it and everything after are
    // covered (the receiver subtracts its lookback too, for what was in flight before).
    const overflowed = mintedAt(lost.at(-1)?.cursor as string);
    const since = told[0]?.since as number;
    assert.ok(since <= overflowed, `told to catch up from ${since}, before the batch that overflowed (${overflowed})`);
    assert.ok(since >= mintedAt(lost[0]?.cursor as string), 'not from further back than the stream was stuck');
  });

  it("tells the shard's peers to catch up from a batch whose publish failed every retry", async () => {
    const { sender, receiver, gossip, told } = await setup(true);
    const doomed = envelope('doomed');
    gossip.send([doomed]);
    await gossip.flush(); // three retries, then given up
    assert.equal(receiver.received.length, 0, 'gossip never carried it');
    await until('the receiver to be told to catch up', () => told.length > 0);
    assert.equal(told[0]?.peer, sender.peerId);
    assert.ok((told[0]?.since as number) <= mintedAt(doomed.cursor), 'from the lost envelope on');
  });
});

describe('resync notices owed', () => {
  const PEER = '12D3KooWGRUVh9o8Fv1ypqSFNFqUmxWP3ZP5jZbGMXwQt4pdhq2N';
  /** A stand-in host: the test sets whether PEER is connected and what dialing it does. */
  const fakeHost = (dial: () => Promise<never>, protocols: string[] = []) => {
    const state = { connected: false, dials: 0 };
    const host = {
      handle: async () => {},
      unhandle: async () => {},
      getConnections: () => (state.connected ? [{ remotePeer: { toString: () => PEER }, status: 'open' }] : []),
      dialProtocol: async () => {
        state.dials += 1;
        return dial();
      },
      peerStore: { get: async () => ({ protocols }) },
    };
    return { host: host as unknown as Host, state };
  };
  const turn = async () => {
    for (let i = 0; i < 10; i++) await Promise.resolve();
  };

  it('keeps a notice owed again within the last ten minutes, though first owed longer ago', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000_000 });
    const { host, state } = fakeHost(async () => {
      throw new Error('connection reset');
    });
    const notices = createResyncNotices({ host, log, onNotice: () => {} });
    await notices.start();
    notices.owe(PEER, 1_000);
    t.mock.timers.tick(9 * 60_000);
    notices.owe(PEER, 2_000); // its gossip is still being lost
    t.mock.timers.tick(2 * 60_000);
    state.connected = true;
    t.mock.timers.tick(2_000);
    await turn();
    assert.equal(state.dials, 1, 'still owed, and sent once the peer is connected');
    await notices.stop();
  });

  it('keeps a notice refused while the peer lists the protocol (its handler is not registered yet)', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const unsupported = async (): Promise<never> => {
      throw Object.assign(new Error('protocol selection failed'), { name: 'UnsupportedProtocolError' });
    };
    const starting = fakeHost(unsupported, [RESYNC_PROTOCOL]);
    const never = fakeHost(unsupported, ['/ipfs/id/1.0.0']);
    for (const { host, state } of [starting, never]) {
      const notices = createResyncNotices({ host, log, onNotice: () => {} });
      await notices.start();
      state.connected = true;
      notices.owe(PEER, 1_000);
      await turn();
      t.mock.timers.tick(2_000);
      await turn();
      t.mock.timers.tick(2_000);
      await turn();
      await notices.stop();
    }
    assert.equal(starting.state.dials, 3, 'retried');
    assert.equal(never.state.dials, 1, 'a peer that does not speak it is not asked again');
  });
});

describe('resync notices taken', () => {
  const NOW = 1_800_000_000_000;
  const gateAt = (now: () => number) => {
    const acted: [string, number][] = [];
    const gate = createNoticeGate((peer, since) => acted.push([peer, since]), now);
    return { gate, acted };
  };

  it('drops a malformed since, and raises one from too far back', () => {
    const { gate, acted } = gateAt(() => NOW);
    for (const bad of [-1, 1.5, '5', null, undefined, Number.NaN, NOW + 61_000, 2 ** 53])
      gate.take(`p${String(bad)}`, bad);
    assert.deepEqual(acted, []);
    gate.take('greedy', 0);
    gate.take('fair', NOW - 3_000);
    assert.deepEqual(acted, [
      ['greedy', NOW - MAX_NOTICE_AGE_MS],
      ['fair', NOW - 3_000],
    ]);
    gate.stop();
  });

  it('acts on one notice per peer per interval, but at once on one asking from further back', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let now = NOW;
    const { gate, acted } = gateAt(() => now);
    gate.take('p', NOW - 2_000);
    gate.take('p', NOW - 2_000); // a repeat
    gate.take('p', NOW - 1_000); // a later loss
    gate.take('other', NOW - 1_000);
    gate.take('p', NOW - 5_000); // from further back
    assert.deepEqual(acted, [
      ['p', NOW - 2_000],
      ['other', NOW - 1_000],
      ['p', NOW - 5_000],
    ]);
    now += NOTICE_INTERVAL_MS;
    t.mock.timers.tick(NOTICE_INTERVAL_MS);
    assert.deepEqual(acted.slice(3), [['p', NOW - 2_000]], 'the others merged into one, when the interval ended');
    now += 1_000;
    gate.take('p', NOW - 500);
    assert.equal(acted.length, 4, 'the interval counts from the last one acted on');
    gate.stop();
  });
});
