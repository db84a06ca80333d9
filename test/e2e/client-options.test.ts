import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { createClient } from '@anode/client';
import { WebSocket as WsWebSocket } from 'ws';
import { freePort } from '../helpers/mesh.ts';
import { startRelay } from '../helpers/relay.ts';

describe('client library: open listeners and timer options', () => {
  it('sends a subscribe and a publish made in an `open` listener once, not again with what waited', async () => {
    const relay = await startRelay();
    const sent: string[] = [];
    // A real WebSocket that records what the client sends.
    class RecordingSocket extends WebSocket {
      override send(data: string): void {
        const frame = JSON.parse(data) as { op: string; topic?: string };
        if (frame.op === 'sub' || frame.op === 'pub') sent.push(`${frame.op} ${frame.topic}`);
        super.send(data);
      }
    }
    const client = createClient({ url: relay.wsUrl, WebSocket: RecordingSocket });
    try {
      let published: Promise<unknown> | undefined;
      let subscribed: Promise<void> | undefined;
      client.on('open', () => {
        subscribed ??= client.subscribe('open.t').ready;
        published ??= client.publish('open.t', 'from the listener');
      });
      await client.ready;
      await subscribed;
      await published;
      await client.ping();
      assert.deepEqual(sent, ['sub open.t', 'pub open.t']);
    } finally {
      await client.close();
      await relay.stop();
    }
  });

  it('takes publishTimeoutMs and pingIntervalMs of Infinity as none, instead of firing after 1 ms', async () => {
    const relay = await startRelay();
    const client = createClient({
      url: relay.wsUrl,
      publishTimeoutMs: Number.POSITIVE_INFINITY,
      pingIntervalMs: Number.POSITIVE_INFINITY,
    });
    try {
      await client.ready;
      // Held past a millisecond: a timer of Infinity fires after 1 ms.
      await new Promise((resolve) => setTimeout(resolve, 20));
      const ack = await client.publish('inf.t', 'kept');
      assert.ok(ack.cursor);
      assert.ok(client.connected, 'the keepalive did not drop the connection');
    } finally {
      await client.close();
      await relay.stop();
    }
  });

  it('takes publishTimeoutMs and maxPendingPublishes given as NaN or below 0 as their defaults', async (t) => {
    // No node: every publish waits. NaN compared false everywhere (no timeout, no limit), and a
    // negative timeout fired after 1 ms.
    const closed = await freePort();
    const waiting = (options: { publishTimeoutMs?: number; maxPendingPublishes?: number }) => {
      const client = createClient({
        url: `ws://127.0.0.1:${closed}`,
        // Not ended by the refused connect (as with `reconnect: false`), and no retry within the test.
        reconnect: { initialDelayMs: 100_000, maxDelayMs: 100_000 },
        ...options,
      });
      client.on('error', () => {});
      return client;
    };
    for (const maxPendingPublishes of [Number.NaN, -1]) {
      const client = waiting({ maxPendingPublishes, publishTimeoutMs: Number.POSITIVE_INFINITY });
      try {
        const pending = Array.from({ length: 10_000 }, (_, i) => client.publish('opt.t', i));
        for (const p of pending) p.catch(() => {});
        // Bounded: without a limit this publish waits for ever (no node, no timeout).
        const oneMore = Promise.race([
          client.publish('opt.t', 'one more'),
          new Promise((_, reject) => setTimeout(reject, 2_000, new Error('still waiting after 2 s'))),
        ]);
        await assert.rejects(oneMore, { code: 'limit_reached' }, `maxPendingPublishes ${maxPendingPublishes}`);
      } finally {
        await client.close();
      }
    }
    for (const publishTimeoutMs of [Number.NaN, -1]) {
      t.mock.timers.enable({ apis: ['setTimeout'] });
      const client = waiting({ publishTimeoutMs });
      try {
        let outcome = 'waiting';
        void client.publish('opt.t', 'x').then(
          () => (outcome = 'acked'),
          (error: { code?: string }) => (outcome = `rejected ${error.code}`),
        );
        t.mock.timers.tick(1_000);
        await new Promise((resolve) => setImmediate(resolve));
        assert.equal(outcome, 'waiting', `publishTimeoutMs ${publishTimeoutMs}: not at once`);
        t.mock.timers.tick(29_000);
        await new Promise((resolve) => setImmediate(resolve));
        assert.equal(outcome, 'rejected unavailable', `publishTimeoutMs ${publishTimeoutMs}: after the default 30 s`);
      } finally {
        t.mock.timers.reset();
        await client.close();
      }
    }
  });

  it('drops a connection that went silent at once when its WebSocket can (ws: terminate), not after a closing handshake', async () => {
    // A node that answers the upgrade and then says nothing (frozen): a plain TCP server.
    const accepted: Socket[] = [];
    const server = createServer((socket) => {
      accepted.push(socket);
      socket.once('data', (request) => {
        const key = /sec-websocket-key: *(\S+)/i.exec(String(request))?.[1] ?? '';
        const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
        );
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    const client = createClient({
      url: `ws://127.0.0.1:${port}`,
      WebSocket: WsWebSocket as unknown as typeof WebSocket,
      pingIntervalMs: 200,
      reconnect: false,
    });
    try {
      const dropped = new Promise<void>((resolve) => client.on('close', () => resolve()));
      await client.ready;
      const peer = accepted[0] as Socket;
      const gone = once(peer, 'close');
      await dropped;
      // ws waits 30 s for a closing handshake the frozen node never answers; terminate does not.
      const closedInTime = await Promise.race([gone.then(() => true), new Promise((r) => setTimeout(r, 3_000, false))]);
      assert.equal(closedInTime, true, 'the TCP connection was closed at once');
    } finally {
      await client.close();
      for (const socket of accepted) socket.destroy();
      server.close();
    }
  });
});
