import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { watchGossipLinks } from './gossip-links.ts';
import type { Host } from './host.ts';

const log = pino({ level: 'silent' });

function fakeHost() {
  const closed: string[] = [];
  const identified: string[] = [];
  const connection = (peer: string, limited = false) => ({
    remotePeer: { toString: () => peer },
    status: 'open',
    limits: limited ? {} : undefined,
    close: async () => void closed.push(peer),
  });
  const pubsub = { peers: new Map(), streamsOutbound: new Map(), streamsInbound: new Map() };
  const host = {
    services: {
      pubsub,
      identify: {
        identify: async (c: { remotePeer: { toString(): string } }) => void identified.push(String(c.remotePeer)),
      },
    },
    getConnections: () => [connection('good'), connection('broken')],
  };
  for (const peer of ['good', 'broken']) {
    pubsub.peers.set(peer, {});
    pubsub.streamsOutbound.set(peer, {});
    pubsub.streamsInbound.set(peer, {});
  }
  return { host: host as unknown as Host, pubsub, closed, identified };
}

describe('gossip link watchdog', () => {
  it('leaves healthy peers alone; re-identifies a peer missing a stream, then reconnects it', (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const { host, pubsub, closed, identified } = fakeHost();
    pubsub.streamsInbound.delete('broken'); // it sends to a stream we do not read, say
    const broken: string[] = [];
    const watchdog = watchGossipLinks(
      host,
      () => ['good', 'broken'],
      log,
      (peer) => broken.push(peer),
    );
    t.mock.timers.tick(2_000);
    t.mock.timers.tick(2_000);
    assert.deepEqual(identified, ['broken', 'broken']);
    assert.deepEqual(closed, []);
    t.mock.timers.tick(2_000);
    assert.deepEqual(closed, ['broken'], 'all its connections closed, so both sides start afresh');
    assert.deepEqual(broken, ['broken'], 'reported once, to catch up what it may have lost');
    watchdog.stop();
  });

  it('forgives a peer whose streams come back', (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const { host, pubsub, closed } = fakeHost();
    pubsub.streamsOutbound.delete('broken');
    const watchdog = watchGossipLinks(host, () => ['broken'], log);
    t.mock.timers.tick(4_000);
    pubsub.streamsOutbound.set('broken', {});
    t.mock.timers.tick(6_000);
    assert.deepEqual(closed, []);
    watchdog.stop();
  });

  it('does nothing when gossipsub has no such internals', () => {
    const host = { services: { pubsub: {} } } as unknown as Host;
    assert.doesNotThrow(() => watchGossipLinks(host, () => ['x'], log).stop());
  });
});
