import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Envelope } from '@anode/shared';
import { createClient } from '@anode/client';
import WebSocket from 'ws';
import { type RelayProcess, spawnRelay, tempDir } from '../helpers/relay.ts';
import { asArgs, collect, FAST_MESH, type MeshStatus, meshStatus, publish, waitFor } from '../helpers/mesh.ts';
import { ANODE_CLI, createNatLab, type NatLab, natLabUnavailable } from '../helpers/netns.ts';

const TOPIC = 'nat.chat';

/** A's and B's view of each other: how they are connected. */
const linkTypes = (status: MeshStatus, peer: string) =>
  status.peers.find((p) => p.peer_id === peer)?.connections.map((c) => c.type) ?? [];

describe('relay mesh: nodes that cannot reach each other directly', () => {
  // WebRTC nodes run as their own processes: a native RTCPeerConnection that libp2p leaves open
  // after a failed attempt would otherwise keep the test process from exiting.
  it('exchange messages through a relay on loopback, then upgrade to WebRTC', async () => {
    const processes: RelayProcess[] = [];
    const dirs: string[] = [];
    const clients: { client: { close(): void } }[] = [];
    const spawn = async (args: string[]) => {
      const dir = await tempDir();
      dirs.push(dir);
      // ICE is pinned to loopback: it never sees the machine's real interfaces.
      const relay = await spawnRelay([
        ...['--port', '0', '--data-dir', dir, ...asArgs(FAST_MESH), '--mesh-webrtc-bind', '127.0.0.1'],
        ...args,
      ]);
      processes.push(relay);
      return relay;
    };
    try {
      const relay = await spawn(['--listen', '/ip4/127.0.0.1/tcp/0', '--mesh-public', 'true']);
      const bootstrap = (await meshStatus(relay.url)).node.multiaddrs[0] as string;
      // No direct listen address: A and B advertise only /p2p-circuit addresses through the relay
      // (and WebRTC over it).
      const natted = ['--listen', '/p2p-circuit', '--listen', '/webrtc', '--bootstrap', bootstrap];
      const [a, b] = await Promise.all([spawn(natted), spawn(natted)]);
      await waitFor('A and B to hold relay reservations', async () =>
        (await Promise.all([meshStatus(a.url), meshStatus(b.url)])).every(
          (s) => s.node.multiaddrs.length > 0 && s.node.multiaddrs.every((m) => m.includes('/p2p-circuit')),
        ),
      );
      const [statusA, statusB] = await Promise.all([meshStatus(a.url), meshStatus(b.url)]);
      const onB = await collect(b.wsUrl, 'nat.>');
      clients.push(onB);
      const [first] = await publish(a.url, TOPIC, [{ data: 'through the relay' }]);
      await waitFor('B to get the first message', () => onB.ids().has(first?.id as string));

      await waitFor(
        'A and B to connect over WebRTC only',
        async () => {
          const types = linkTypes(await meshStatus(a.url), statusB.node.peer_id);
          return types.length > 0 && types.every((t) => t === 'webrtc');
        },
        30_000,
      );
      // With the relay gone, gossip still flows over the WebRTC connection.
      relay.child.kill('SIGKILL');
      await relay.exited;
      const [second] = await publish(a.url, TOPIC, [{ data: 'over WebRTC' }]);
      await waitFor('B to get a message with the relay gone', () => onB.ids().has(second?.id as string));
      // Every link B holds to A is WebRTC (two may exist for a moment: both sides dialed at once
      // and libp2p has not pruned one yet; seen once in a run).
      const types = linkTypes(await meshStatus(b.url), statusA.node.peer_id);
      assert.ok(types.length > 0 && types.every((t) => t === 'webrtc'), `B's links to A: ${types.join(', ')}`);
    } finally {
      for (const c of clients) c.client.close();
      for (const p of processes) p.child.kill('SIGKILL');
      await Promise.all(processes.map((p) => p.exited));
      await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
    }
  });

  const unavailable = natLabUnavailable();
  describe('across two NATs (network namespaces, nftables masquerade)', { skip: unavailable }, () => {
    let lab: NatLab;
    const children: ChildProcess[] = [];
    let dir = '';
    after(async () => {
      for (const child of children) child.kill('SIGKILL');
      lab?.destroy();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    /** A relay inside `ns`, its HTTP API reachable at a Unix socket. */
    const spawnIn = async (ns: string, name: string, args: string[]) => {
      const log: string[] = [];
      const child = lab.run(ns, [process.execPath, ANODE_CLI, 'relay', '--port', '8080', ...args], log);
      children.push(child);
      await waitFor(`${name} to start`, () => /relay ready at/.test(log.join('')), 20_000).catch((error: Error) => {
        throw new Error(`${error.message}\n${log.join('').slice(-2000)}`);
      });
      const socket = join(dir, `${name}.sock`);
      children.push(await lab.forward(ns, socket, 8080));
      return { socket, log };
    };
    const call = (socket: string, method: string, path: string, body?: unknown) =>
      new Promise<unknown>((resolve, reject) => {
        const req = request({ socketPath: socket, method, path, headers: { 'content-type': 'application/json' } });
        req.on('response', (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk));
          res.on('end', () => resolve(JSON.parse(text)));
        });
        req.on('error', reject);
        req.end(body === undefined ? undefined : JSON.stringify(body));
      });
    const status = (socket: string) => call(socket, 'GET', '/v1/status') as Promise<MeshStatus>;

    it('exchange messages through the relay and upgrade to WebRTC with STUN', async () => {
      lab = createNatLab();
      dir = await tempDir('anode-nat-');
      const fast = asArgs(FAST_MESH);
      const relay = await spawnIn(lab.pub, 'relay', [
        ...['--data-dir', join(dir, 'relay'), ...fast, '--listen', '/ip4/203.0.113.1/tcp/4001'],
        ...['--mesh-public', 'true', '--mesh-stun-port', '3478'],
      ]);
      const natted = (name: string, lan: string) => [
        ...['--data-dir', join(dir, name), ...fast, '--listen', `/ip4/${lan}/tcp/4001`],
        ...['--listen', '/p2p-circuit', '--listen', '/webrtc', '--bootstrap', '/ip4/203.0.113.1/tcp/4001'],
        ...['--mesh-stun', 'stun:203.0.113.1:3478'],
      ];
      const [a, b] = await Promise.all([
        spawnIn(lab.a, 'a', natted('a', '192.168.10.2')),
        spawnIn(lab.b, 'b', natted('b', '192.168.20.2')),
      ]);
      const [peerA, peerB] = [(await status(a.socket)).node.peer_id, (await status(b.socket)).node.peer_id];

      const received: Envelope[] = [];
      const client = createClient({
        url: `ws+unix://${b.socket}:/v1/ws`,
        WebSocket: WebSocket as unknown as new (url: string) => globalThis.WebSocket,
      });
      try {
        const sub = client.subscribe('nat.>', (m) => received.push(m));
        await sub.ready;
        const acks = (await call(a.socket, 'POST', `/v1/topics/${TOPIC}/messages`, [{ data: 'hello' }])) as {
          messages: { id: string }[];
        };
        await waitFor('B (behind its NAT) to get A’s message', () =>
          received.some((m) => m.id === acks.messages[0]?.id),
        );
        await waitFor(
          'A and B to hole-punch a WebRTC connection',
          async () => linkTypes(await status(a.socket), peerB).includes('webrtc'),
          40_000,
          250,
        );
        assert.ok(!linkTypes(await status(b.socket), peerA).includes('direct'), 'no direct TCP through the NATs');
        // With the relay gone, A and B still talk over WebRTC.
        children[0]?.kill('SIGKILL');
        const later = (await call(a.socket, 'POST', `/v1/topics/${TOPIC}/messages`, [{ data: 'direct' }])) as {
          messages: { id: string }[];
        };
        await waitFor('B to get a message with the relay gone', () =>
          received.some((m) => m.id === later.messages[0]?.id),
        );
        void relay;
      } finally {
        client.close();
      }
    });
  });
});
