import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { Envelope } from '@anode/shared';
import { createClient } from '@anode/client';
import { startRelay } from '../helpers/relay.ts';

const until = async (condition: () => boolean, what: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/**
 * A loopback TCP forwarder whose connections can go silent: `silence()` stops carrying bytes on
 * every connection open now, both ways, without closing either side, as a peer that vanished
 * without a FIN (a sleeping laptop, a NAT that forgot the flow). New connections are carried,
 * unless `holding`: then they are accepted and never answered, as by a frozen node.
 */
async function silenceableForward(targetPort: number) {
  const open = new Set<Socket>();
  const forward = { holding: false };
  const server = createServer((client) => {
    open.add(client);
    client.on('error', () => client.destroy());
    if (forward.holding) return;
    const upstream = connect(targetPort, '127.0.0.1');
    open.add(upstream);
    upstream.on('error', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(forward, {
    port: (server.address() as { port: number }).port,
    silence() {
      for (const socket of open) {
        socket.unpipe();
        socket.pause();
        socket.removeAllListeners('end'); // pipe() would end the other side
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  });
}

describe('client library: keepalive', () => {
  it('notices a connection that went silent, reconnects and resumes without a gap', async () => {
    const relay = await startRelay();
    const forward = await silenceableForward(Number(new URL(relay.url).port));
    const client = createClient({
      url: `ws://127.0.0.1:${forward.port}`,
      pingIntervalMs: 100,
      reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
    });
    try {
      const received: Envelope[] = [];
      const closes: string[] = [];
      client.on('close', ({ reason }) => closes.push(reason));
      // The 100 ms interval bounds the upgrade too: on a loaded machine a first attempt can take
      // longer, and a failed first attempt rejects `client.ready` (the client's rule; a
      // subscription would wait). Subscribed once one opened; the attempts before it are retried.
      client.on('error', () => {});
      await new Promise<void>((resolve) => client.on('open', () => resolve()));
      const sub = client.subscribe('ka.t', (m) => received.push(m));
      await sub.ready;
      await client.publish('ka.t', 'before');
      await until(() => received.length === 1, 'the first message');

      forward.silence();
      const response = await fetch(`${relay.url}/v1/topics/ka.t/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data: 'while silent' }),
      });
      assert.equal(response.status, 202);
      await until(() => received.length === 2, 'the message published while the connection was silent');
      assert.deepEqual(
        received.map((m) => m.data),
        ['before', 'while silent'],
      );
      assert.match(closes.join(), /keepalive/, 'the silent connection was dropped by the keepalive');
    } finally {
      await Promise.race([client.close(), new Promise((r) => setTimeout(r, 1000))]);
      await forward.close();
      await relay.stop();
    }
  });
  it('gives up an attempt whose upgrade is never answered and tries again until one opens', async () => {
    const relay = await startRelay();
    const forward = await silenceableForward(Number(new URL(relay.url).port));
    forward.holding = true;
    const client = createClient({
      url: `ws://127.0.0.1:${forward.port}`,
      pingIntervalMs: 100,
      reconnect: { initialDelayMs: 50, maxDelayMs: 100 },
    });
    try {
      const errors: string[] = [];
      client.on('error', (error) => errors.push(error.message));
      let opened = false;
      client.on('open', () => (opened = true));
      await assert.rejects(client.ready, { code: 'unavailable', message: /no answer to the upgrade/ });
      await until(() => errors.length >= 2, 'a second attempt that fails the same way');
      forward.holding = false;
      await until(() => opened, 'an attempt that opens once the node answers');
      const received: unknown[] = [];
      await client.subscribe('ka.open', (m) => received.push(m.data)).ready;
      await client.publish('ka.open', 'through');
      await until(() => received.length === 1, 'the message');
    } finally {
      await Promise.race([client.close(), new Promise((r) => setTimeout(r, 1000))]);
      await forward.close();
      await relay.stop();
    }
  });
  it('gives up a token function that never answers and tries again', async () => {
    const relay = await startRelay();
    let calls = 0;
    const client = createClient({
      url: relay.wsUrl,
      // The first call hangs, as a fetch to an auth server that never answers.
      token: () => (++calls === 1 ? new Promise<string>(() => {}) : ''),
      pingIntervalMs: 100,
      reconnect: { initialDelayMs: 50, maxDelayMs: 100 },
    });
    try {
      let opened = false;
      client.on('open', () => (opened = true));
      await assert.rejects(client.ready, { code: 'unavailable', message: /token function failed: no answer/ });
      await until(() => opened, 'a later attempt that opens');
      assert.ok(calls >= 2);
    } finally {
      await client.close();
      await relay.stop();
    }
  });

  it('with keepalive off, a ping to a connection gone silent rejects after 30 s of silence instead of waiting for ever', async () => {
    const relay = await startRelay();
    const forward = await silenceableForward(Number(new URL(relay.url).port));
    const client = createClient({ url: `ws://127.0.0.1:${forward.port}`, pingIntervalMs: false });
    try {
      await client.ready;
      assert.ok((await client.ping()) >= 0, 'answered while the connection carries');
      forward.silence();
      const started = Date.now();
      const outcome = await Promise.race([
        client.ping().then(
          () => 'answered',
          (error: { code?: string; message?: string }) => `${error.code}: ${error.message}`,
        ),
        new Promise((r) => setTimeout(() => r('still waiting after 40 s'), 40_000)),
      ]);
      assert.match(String(outcome), /^unavailable: no answer to the ping.*30000 ms/);
      assert.ok(Date.now() - started >= 29_000, 'not before 30 s of silence');
      assert.equal(client.pendingAnswers, 0, 'the ping is forgotten');
    } finally {
      await Promise.race([client.close(), new Promise((r) => setTimeout(r, 3000))]);
      await forward.close();
      await relay.stop();
    }
  });
});
