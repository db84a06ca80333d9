import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Message } from '@libp2p/gossipsub';
import { pino } from 'pino';
import { createCluster } from '../cluster.ts';
import type { Host } from './host.ts';
import { createMembers, MEMBERS_TOPIC } from './members.ts';
import { createTestPeer } from './test-peer.ts';

const log = pino({ level: 'silent' });

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('members on real gossip peers', () => {
  const stops: (() => unknown)[] = [];
  after(async () => {
    for (const stop of stops.reverse()) await Promise.resolve(stop()).catch(() => {});
  });

  it('beats less often in a larger mesh and keeps members that beat at that pace', async () => {
    // scaleFrom 0.25: two members count as a mesh 8× the threshold, so the beat comes every 8
    // intervals (800 ms) and a member may stay silent 8 timeouts (2.4 s). Were the timeout not
    // scaled with the beat, each member would drop the other between beats (300 ms < 800 ms).
    const a = await createTestPeer();
    const b = await createTestPeer();
    stops.push(
      () => a.host.stop(),
      () => b.host.stop(),
    );
    await a.dial(b.multiaddrs()[0] as string);
    const setup = (peer: typeof a, node: string, other: typeof a) => {
      const cluster = createCluster(node);
      const members = createMembers({
        host: peer.host as unknown as Host,
        cluster,
        intervalMs: 100,
        timeoutMs: 300,
        meshPeers: () => new Set([other.peerId]),
        log,
        scaleFrom: 0.25,
      });
      return { cluster, members };
    };
    const ma = setup(a, 'nodea', b);
    const mb = setup(b, 'nodeb', a);
    let beatsFromA = 0;
    b.pubsub.addEventListener('message', (event: CustomEvent<Message>) => {
      if (
        event.detail.topic === MEMBERS_TOPIC &&
        event.detail.type === 'signed' &&
        event.detail.from.toString() === a.peerId
      )
        beatsFromA += 1;
    });
    await ma.members.start();
    await mb.members.start();
    stops.push(
      () => ma.members.stop(),
      () => mb.members.stop(),
    );
    await until('each to see the other', () => ma.cluster.members().length === 2 && mb.cluster.members().length === 2);

    // Watched for 4 s: unscaled, A would beat ~40 times; scaled, ~5.
    const from = beatsFromA;
    let dropped = 0;
    const started = Date.now();
    while (Date.now() - started < 4_000) {
      if (ma.cluster.members().length !== 2 || mb.cluster.members().length !== 2) dropped += 1;
      await sleep(25);
    }
    const beats = beatsFromA - from;
    assert.ok(beats >= 2 && beats <= 10, `A beat ${beats} times in 4 s (every ~800 ms expected)`);
    assert.equal(dropped, 0, 'neither dropped the other between beats');
  });
});
