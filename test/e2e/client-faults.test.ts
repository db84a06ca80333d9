import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { WebSocketServer } from 'ws';
import { signToken } from '@anode/shared';
import { createClient } from '@anode/client';
import { spawnRelay, startRelay, tempDir } from '../helpers/relay.ts';

/**
 * The client library where a caller, a node or the network misbehaves: data JSON cannot carry,
 * publishes past the node's frame limit, a node that freezes while the client closes, a fixed
 * token that expires while disconnected, a node that accepts and closes at once. Each of these
 * once hung, crashed the process or reconnected without end.
 */

const until = async (condition: () => boolean, what: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** Settles to the error code, or 'acked', or 'pending' if nothing came within `ms`. */
const outcome = (p: Promise<unknown>, ms = 15_000) =>
  Promise.race([
    p.then(
      () => 'acked',
      (error: { code?: string }) => error.code ?? 'no code',
    ),
    new Promise<string>((resolve) => setTimeout(() => resolve('pending'), ms).unref()),
  ]);

describe('client library: faults', () => {
  it('refuses data JSON cannot carry at once, and the next reconnect resends the rest', async () => {
    const dataDir = await tempDir();
    let relay = await startRelay({}, { dataDir });
    const port = new URL(relay.url).port;
    const client = createClient({ url: relay.wsUrl, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
    try {
      await client.ready;
      const cycle: Record<string, unknown> = {};
      cycle.self = cycle;
      await assert.rejects(client.publish('cf.t', { n: 1n }), { code: 'bad_frame', message: /BigInt/ });
      await assert.rejects(client.publish('cf.t', cycle), { code: 'bad_frame' });
      await relay.stop();
      // Published while the node is away: sent by the reconnect's `open`, where the bad ones threw.
      const pending = client.publish('cf.t', 'while away');
      relay = await startRelay({ port }, { dataDir });
      assert.equal(await outcome(pending), 'acked');
    } finally {
      await client.close();
      await relay.stop();
    }
  });

  it('settles a publish over the frame limit with too_large, and one far over it too, without a reconnect storm', async () => {
    const relay = await startRelay(); // max_message_bytes 1 MiB: frames over 1 MiB + 64 KiB are refused
    const client = createClient({ url: relay.wsUrl, publishTimeoutMs: 20_000 });
    try {
      let reconnects = 0;
      client.on('reconnecting', () => (reconnects += 1));
      await client.ready;
      // Over the frame limit: answered too_large without being parsed, and with its ref.
      assert.equal(await outcome(client.publish('cf.big', 'x'.repeat(1_500_000)), 10_000), 'too_large');
      // Over twice the limit: the relay closes with 1009 without reading it.
      const farPublish = client.publish('cf.big', 'x'.repeat(3_000_000));
      const far = outcome(farPublish, 10_000);
      const after = outcome(client.publish('cf.big', 'after'), 10_000);
      assert.equal(await far, 'too_large');
      // The close's reason names the limit, and the refusal carries it.
      await assert.rejects(
        farPublish,
        /\(1009\) on a frame of 3000\d+ characters: frame over \d+ bytes, far past max_frame_bytes/,
      );
      assert.equal(await after, 'acked');
      assert.ok(reconnects <= 1, `one reconnect after the 1009, not a storm: ${reconnects}`);
    } finally {
      await client.close();
      await relay.stop();
    }
  });

  it('hands a replay to a new overlapping subscription although another one had those messages', async () => {
    const relay = await startRelay();
    const client = createClient({ url: relay.wsUrl });
    try {
      const live: unknown[] = [];
      await client.subscribe('cf.o.btc', (m) => live.push(m.data)).ready;
      await client.publish('cf.o.btc', 'b1');
      await client.publish('cf.o.eth', 'e1');
      await until(() => live.length === 1, 'the live message');
      const replayed: unknown[] = [];
      await client.subscribe('cf.o.>', (m) => replayed.push(m.data), { after: '0' }).ready;
      await until(() => replayed.length === 2, `both replayed: ${JSON.stringify(replayed)}`);
      assert.deepEqual(replayed.sort(), ['b1', 'e1']);
      assert.deepEqual(live, ['b1'], 'the first subscription got its message once');
    } finally {
      await client.close();
      await relay.stop();
    }
  });

  it('closes within seconds when the node froze, with the runtime’s standard WebSocket', async () => {
    const relay = await spawnRelay(['--port', '0', '--data-dir', await tempDir()]);
    const client = createClient({ url: relay.wsUrl }); // Node's built-in WebSocket
    try {
      await client.subscribe('cf.f').ready;
      relay.child.kill('SIGSTOP');
      const started = Date.now();
      assert.equal(await outcome(client.close(), 10_000), 'acked', 'close() resolved');
      assert.ok(Date.now() - started < 5_000, `closed in ${Date.now() - started} ms`);
      await assert.rejects(client.ping(), { message: /client is closed/ }, 'later calls give the stop reason');
    } finally {
      relay.child.kill('SIGCONT');
      relay.child.kill('SIGKILL');
      await relay.exited;
    }
  });

  it('ends with unauthorized when its fixed token expired while it was away', async () => {
    const secret = 'client-faults-secret-0123456789abcdef';
    const relay = await startRelay({ 'jwt-secret': secret });
    const token = await signToken(secret, { pub: ['>'], sub: ['>'] }, '2s');
    const client = createClient({ url: relay.wsUrl, token, reconnect: { initialDelayMs: 100, maxDelayMs: 500 } });
    try {
      const errors: string[] = [];
      client.on('error', (error) => errors.push(error.code));
      await client.ready;
      await relay.stop(); // away: the token expires before the node is back (or ever)
      await until(() => errors.includes('unauthorized'), `an unauthorized error: ${errors.join(' ')}`, 20_000);
      await assert.rejects(client.publish('cf.t', 'x'), { code: 'unauthorized' });
    } finally {
      await client.close();
      await relay.stop().catch(() => {});
    }
  });

  it('backs off from a node that accepts and closes at once, and unsubscribing before ready settles it', async () => {
    // A test double: no aNode node closes every connection as it opens, but a proxy in front of
    // one, or an upstream refusing as a close, does.
    const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await once(server, 'listening');
    let connects = 0;
    server.on('connection', (socket) => {
      connects += 1;
      socket.close(1008, 'go away');
    });
    const port = (server.address() as { port: number }).port;
    const client = createClient({
      url: `ws://127.0.0.1:${port}`,
      reconnect: { initialDelayMs: 100, maxDelayMs: 5_000 },
    });
    try {
      const sub = client.subscribe('cf.gone');
      sub.unsubscribe();
      assert.equal(await outcome(sub.ready, 2_000), 'unavailable');
      await new Promise((r) => setTimeout(r, 3_000));
      // Backing off: each wait from 50 ms (half the first) up to 100, 200, 400, 800, 1600 ms: 6 or 7
      // connects in 3 s, 9 in 1 of 200 runs, 11 in 3 of 10^5, 12 or more in none of 10^6 (simulated with
      // backoffDelay); a backoff that starts over on each open redials every 50–100 ms, 35 or more.
      assert.ok(connects >= 2 && connects <= 14, `connects in 3 s: ${connects}`);
    } finally {
      await client.close();
      server.close();
    }
  });
});
