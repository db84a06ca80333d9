import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope } from '@anode/shared';
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { identify } from '@libp2p/identify';
import type { Libp2p } from '@libp2p/interface';
import { noise } from '@libp2p/noise';
import { tcp } from '@libp2p/tcp';
import { yamux } from '@libp2p/yamux';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { createLogger } from '../logger.ts';
import { memoryStore } from '../hub/test-hub.ts';
import { catchUpFrom, serveCatchUp } from './catch-up.ts';
import type { Host } from './host.ts';
import { createShards } from './shards.ts';
import { createSync } from './sync.ts';

const DATA_LIMIT = 600 * 1024;
const TOPICS = ['a.t', 'b.t', 'c.t', 'd.t'];
const PER_TOPIC = 8;
const BODY = 40 * 1024;

/**
 * A node reachable only through a circuit relay whose relayed connections carry at most
 * DATA_LIMIT bytes (a relay server's `mesh_relay_data_limit_bytes`), holding about twice that
 * in history: each connection ends partway through the catch-up, as over a real relay with a
 * large gap. The client reconnects each time, as the mesh does.
 */
describe('catch-up over a relayed connection smaller than the gap', { timeout: 120_000 }, () => {
  const nodes: Libp2p[] = [];
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(nodes.map((node) => node.stop()));
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });
  const node = async (options: { relay?: boolean; listen: string[] }) => {
    const created = await createLibp2p({
      addresses: { listen: options.listen },
      transports: [tcp(), circuitRelayTransport()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionMonitor: { enabled: false },
      services: {
        identify: identify(),
        ...(options.relay
          ? {
              relay: circuitRelayServer({
                reservations: { applyDefaultLimit: true, defaultDataLimit: BigInt(DATA_LIMIT) },
              }),
            }
          : {}),
      },
    });
    nodes.push(created);
    return created;
  };

  it('resumes where the last connection ended, and finishes', async () => {
    const shards = createShards(4);
    const log = createLogger('silent');
    const relay = await node({ relay: true, listen: ['/ip4/127.0.0.1/tcp/0'] });
    const server = await node({ listen: ['/p2p-circuit'] });
    const held = memoryStore();
    // Minted an hour ago: the gap of a node that was away, older than the lookback.
    const clock = createHybridClock('serverrelayed', () => Date.now() - 3_600_000);
    await held.append(
      TOPICS.flatMap((topic) =>
        Array.from({ length: PER_TOPIC }, (_, i) => ({
          id: `${topic}-${i}`,
          topic,
          cursor: clock.next(),
          source: 's',
          ts: i,
          data: `${i}`.padEnd(BODY, 'x'),
        })),
      ),
    );
    await serveCatchUp(server as unknown as Host, { store: held, shards, maxMessageBytes: 64 * 1024, log });
    await server.dial(relay.getMultiaddrs());
    let address: string | undefined;
    for (let i = 0; !address; i++) {
      assert.ok(i < 200, 'the server got a reservation on the relay');
      address = server
        .getMultiaddrs()
        .find((a) => a.toString().includes('/p2p-circuit'))
        ?.toString();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const client = await node({ listen: [] });
    const got = new Set<string>();
    let ended: () => void = () => {};
    const dir = await mkdtemp(join(tmpdir(), 'anode-relayed-'));
    dirs.push(dir);
    const sync = createSync({
      dataDir: dir,
      lookbackMs: 1_000,
      log,
      run: async (_peer, from, signal, plan) => {
        try {
          return await catchUpFrom(client as unknown as Host, shards, 64 * 1024, {
            peer: server.peerId,
            shards: [0, 1, 2, 3],
            after: from,
            signal,
            plan,
            ingest: async (envelopes) => {
              for (const envelope of envelopes) got.add((envelope as Envelope).id);
              return envelopes.length;
            },
          });
        } finally {
          ended();
        }
      },
    });
    await sync.start();
    let done = false;
    void sync.firstSync.then(() => (done = true));
    let connections = 0;
    // Each connection carries a topic and a half; four finish when each resumes where the last one
    // ended. (Before, every connection started again from the first topic, and none finished.)
    while (!done && connections < 5) {
      const attempt = new Promise<void>((resolve) => (ended = resolve));
      const connection = await client.dial(multiaddr(address));
      assert.ok(connection.limits, 'a relayed (limited) connection');
      connections += 1;
      sync.peerUp(server.peerId.toString());
      await attempt;
      sync.peerDown(server.peerId.toString());
      await connection.close().catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await sync.stop();
    assert.ok(connections > 1, `the relay's limit cut the first connection (${connections} connections)`);
    assert.ok(done, `caught up over ${connections} relayed connections`);
    assert.equal(got.size, TOPICS.length * PER_TOPIC, 'every message arrived');
    await held.close();
  });
});
