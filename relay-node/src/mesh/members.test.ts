import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Message } from '@libp2p/gossipsub';
import { pino } from 'pino';
import { createCluster } from '../cluster.ts';
import type { Host } from './host.ts';
import { BEAT_DIGEST } from './member-cadence.ts';
import { createMembers, MEMBERS_TOPIC, parseHeartbeat } from './members.ts';
import { createTestPeer } from './test-peer.ts';

const log = pino({ level: 'silent' });
type Peer = Awaited<ReturnType<typeof createTestPeer>>;

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('heartbeats', () => {
  it('take a node id in the node id grammar only (a bad beat is rejected, its sender scored down)', () => {
    const beat = (node: unknown) => new TextEncoder().encode(JSON.stringify({ v: 1, node, digests: {} }));
    assert.equal(parseHeartbeat(beat('relay7'))?.node, 'relay7');
    for (const node of ['', 'Relay 7', 'é', 'x'.repeat(33), '../x', 7]) {
      assert.equal(parseHeartbeat(beat(node)), undefined, JSON.stringify(node));
    }
  });
});

/** A scale point at which two members beat every SLOW_BEAT_MS (20 ticks of 100 ms). */
const SLOW_SCALE = 0.1;
const SLOW_BEAT_MS = 2_000;

describe('members on real gossip peers', () => {
  const stops: (() => unknown)[] = [];
  after(async () => {
    for (const stop of stops.reverse()) await Promise.resolve(stop()).catch(() => {});
  });

  // scaleFrom 0.25: two members count as a mesh 8× the threshold (three: 12×), so a member beats
  // every 8 intervals (800 ms) and announces it; the other keeps it for 5 of those (4 s), where
  // the configured timeout alone (300 ms) would drop it between beats.
  const start = async (
    peer: Peer,
    node: string,
    others: () => Peer[],
    share: (cluster: ReturnType<typeof createCluster>) => void = () => {},
    scaleFrom = 0.25,
  ) => {
    const cluster = createCluster(node);
    share(cluster);
    const members = createMembers({
      host: peer.host as unknown as Host,
      cluster,
      intervalMs: 100,
      timeoutMs: 300,
      meshPeers: () => new Set(others().map((other) => other.peerId)),
      log,
      scaleFrom,
    });
    await members.start();
    stops.push(() => members.stop());
    return { cluster, members };
  };
  const peers = async (count: number) => {
    const list: Peer[] = [];
    for (let i = 0; i < count; i++) {
      const peer = await createTestPeer();
      stops.push(() => peer.host.stop());
      for (const earlier of list) await peer.dial(earlier.multiaddrs()[0] as string);
      list.push(peer);
    }
    return list;
  };
  const beatsFrom = (receiver: Peer, sender: Peer) => {
    const beats: Record<string, string>[] = [];
    receiver.pubsub.addEventListener('message', (event: CustomEvent<Message>) => {
      const message = event.detail;
      if (message.topic !== MEMBERS_TOPIC || message.type !== 'signed' || message.from.toString() !== sender.peerId)
        return;
      beats.push((JSON.parse(new TextDecoder().decode(message.data)) as { digests: Record<string, string> }).digests);
    });
    return beats;
  };

  it('beats less often in a larger mesh, says so, and is kept by the others at that pace', async () => {
    const [a, b] = (await peers(2)) as [Peer, Peer];
    const fromA = beatsFrom(b, a);
    const ma = await start(a, 'nodea', () => [b]);
    const mb = await start(b, 'nodeb', () => [a]);
    await until('each to see the other', () => ma.cluster.members().length === 2 && mb.cluster.members().length === 2);
    await sleep(500);

    // Watched for 4 s: at the configured interval A would beat ~40 times; at its scaled one, ~5.
    const from = fromA.length;
    let dropped = 0;
    const started = Date.now();
    while (Date.now() - started < 4_000) {
      if (ma.cluster.members().length !== 2 || mb.cluster.members().length !== 2) dropped += 1;
      await sleep(25);
    }
    const beats = fromA.slice(from);
    assert.ok(beats.length >= 2 && beats.length <= 10, `A beat ${beats.length} times in 4 s (every ~800 ms expected)`);
    assert.equal(beats.at(-1)?.[BEAT_DIGEST], '800', 'each beat announces the interval until the next');
    assert.equal(dropped, 0, 'neither dropped the other between beats');
  });

  it('announces a changed shared state at the next tick, not with the next (slower) beat', async () => {
    const [a, b] = (await peers(2)) as [Peer, Peer];
    const fromA = beatsFrom(b, a);
    let version = 'v1';
    // Two members count as 20× the scale point here: A beats every 2 s, so its next regular beat
    // is far enough that only a stall of over a second could pass for the announcement.
    const ma = await start(
      a,
      'nodea',
      () => [b],
      (cluster) => cluster.share('things', { digest: () => version, snapshot: () => ({}), merge: async () => {} }),
      SLOW_SCALE,
    );
    const mb = await start(b, 'nodeb', () => [a], undefined, SLOW_SCALE);
    await until('each to see the other', () => ma.cluster.members().length === 2 && mb.cluster.members().length === 2);
    const beats = fromA.length;
    await until('a beat of A with v1 at its two-member pace', () => {
      const last = fromA.at(-1);
      return fromA.length > beats && last?.things === 'v1' && last[BEAT_DIGEST] === String(SLOW_BEAT_MS);
    });
    await sleep(50); // just past a beat: the next is due ~1.9 s later
    const changed = Date.now();
    version = 'v2';
    await until('a beat of A with v2', () => fromA.at(-1)?.things === 'v2');
    const took = Date.now() - changed;
    // A tick is 100 ms; A's next regular beat would come 2 s after its last.
    assert.ok(took < 1_500, `the change went out after ${took} ms`);
  });

  it('hears a member again at the next tick after a connection to it closed, not at its next beat', async () => {
    const [a, b] = (await peers(2)) as [Peer, Peer];
    const fromA = beatsFrom(b, a);
    const ma = await start(a, 'nodea', () => [b], undefined, SLOW_SCALE);
    const mb = await start(b, 'nodeb', () => [a], undefined, SLOW_SCALE);
    await until('each to see the other', () => ma.cluster.members().length === 2 && mb.cluster.members().length === 2);
    const beats = fromA.length;
    await until(
      'a beat of A at the two-member pace',
      () => fromA.length > beats && fromA.at(-1)?.[BEAT_DIGEST] === String(SLOW_BEAT_MS),
    );
    await sleep(50); // just past a beat of A: its next regular one is ~1.9 s away
    // Both ends see the connection close (here only said: the peers still reach each other).
    const dropped = Date.now();
    ma.members.peerDown(b.peerId);
    mb.members.peerDown(a.peerId);
    assert.equal(mb.cluster.members().length, 1);
    await until(
      'each to count the other again',
      () => ma.cluster.members().length === 2 && mb.cluster.members().length === 2,
    );
    const took = Date.now() - dropped;
    assert.ok(took < 1_500, `members again after ${took} ms`);
  });

  it('beats at the configured interval while an older relay (no announced interval) is a member', async () => {
    const [a, b, old] = (await peers(3)) as [Peer, Peer, Peer];
    const fromA = beatsFrom(b, a);
    const ma = await start(a, 'nodea', () => [b, old]);
    await start(b, 'nodeb', () => [a, old]);
    await until('A and B to see each other', () => ma.cluster.members().length === 2);
    // An older relay: plain v1 heartbeats every 100 ms, nothing announced.
    let oldBeating = true;
    const oldBeats = (async () => {
      while (oldBeating) {
        const beat = { v: 1, node: 'nodeold', digests: {} };
        await old.pubsub.publish(MEMBERS_TOPIC, new TextEncoder().encode(JSON.stringify(beat))).catch(() => {});
        await sleep(100);
      }
    })();
    stops.push(async () => {
      oldBeating = false;
      await oldBeats;
    });
    await until('A to count the older relay', () => ma.cluster.members().length === 3);
    await sleep(1_000);
    const from = fromA.length;
    await sleep(2_000);
    const beats = fromA.slice(from);
    // Scaled, A would beat every 1.2 s (about twice in 2 s); at the configured interval, ~20 times.
    assert.ok(beats.length >= 8, `A beat ${beats.length} times in 2 s (every ~100 ms expected)`);
    assert.equal(beats.at(-1)?.[BEAT_DIGEST], '100');
  });
});
