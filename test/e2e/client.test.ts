import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CURSOR_ZERO, type Envelope, type MessageStore, UnavailableError } from '@anode/shared';
import { createClient } from '@anode/client';
import { startRelay, type TestRelay, tempDir } from '../helpers/relay.ts';

const until = async (condition: () => boolean, what: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('client library', () => {
  it('reconnects after the relay restarts, resubscribes from its cursor and resends unacked publishes', async () => {
    const dataDir = await tempDir();
    let relay = await startRelay({}, { dataDir });
    const port = new URL(relay.url).port;
    const received: Envelope[] = [];
    const events: string[] = [];
    const client = createClient({ url: relay.wsUrl, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
    client.on('close', ({ code }) => events.push(`close:${code}`));
    client.on('reconnecting', () => events.push('reconnecting'));
    const sub = client.subscribe('cl.t', (m) => received.push(m));
    await sub.ready;
    await client.publish('cl.t', { n: 1 });
    await until(() => received.length === 1, 'first message');

    await relay.stop();
    await until(() => events.includes('reconnecting'), 'a reconnect attempt');
    assert.ok(events.includes('close:4000'), `closed with the shutdown code: ${events}`);
    const pending = client.publish('cl.t', { n: 2 }); // queued while the node is down

    relay = await startRelay({ port }, { dataDir });
    const other = createClient({ url: relay.wsUrl });
    await other.publish('cl.t', { n: 3 });
    const ack = await pending;
    assert.match(ack.cursor, /^[0-9a-f]{16}-/);
    await until(() => received.length === 3, 'messages after the reconnect');
    assert.deepEqual(received.map((m) => (m.data as { n: number }).n).sort(), [1, 2, 3]);
    other.close();
    client.close();
    await relay.stop();
  });

  it('keeps a subscription whose resume the node refuses as unavailable, and resumes once it can', async () => {
    const dataDir = await tempDir();
    let relay = await startRelay({}, { dataDir });
    const port = new URL(relay.url).port;
    const received: Envelope[] = [];
    const errors: string[] = [];
    const client = createClient({ url: relay.wsUrl, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
    client.on('error', (error) => errors.push(error.code));
    const sub = client.subscribe('ua.t', (m) => received.push(m));
    await sub.ready;
    await client.publish('ua.t', { n: 1 });
    await until(() => received.length === 1, 'first message');
    await relay.stop();

    // Fault-injection test double: the restarted relay's storage refuses reads (as a relay whose
    // Cassandra is down does) until `reads` is set.
    let reads = false;
    const refusals = { count: 0 };
    const withStorageDown = (store: MessageStore): MessageStore => ({
      ...store,
      history: async (...args) => {
        if (!reads) {
          refusals.count += 1;
          throw new UnavailableError('storage is unavailable for reads (test double)');
        }
        return store.history(...args);
      },
    });
    relay = await startRelay({ port }, { dataDir, wrapStore: withStorageDown });
    const other = createClient({ url: relay.wsUrl });
    await other.publish('ua.t', { n: 2 }); // missed by the client while it reconnects
    await until(() => refusals.count >= 2, 'the resume refused twice');
    assert.ok(errors.includes('unavailable'), `the refusals surface as error events: ${errors}`);
    await other.publish('ua.t', { n: 3 });
    reads = true;
    await until(() => received.length === 3, 'the missed and the live message after storage returns');
    assert.deepEqual(
      received.map((m) => (m.data as { n: number }).n),
      [1, 2, 3],
    );
    other.close();
    client.close();
    await relay.stop();
  });

  it('drops duplicate ids and keeps resends idempotent', async () => {
    const relay = await startRelay();
    const client = createClient({ url: relay.wsUrl });
    const received: Envelope[] = [];
    const first = client.subscribe('dd.t', (m) => received.push(m));
    await first.ready;
    const a = await client.publish('dd.t', 'a', { key: 'k1' });
    const again = await client.publish('dd.t', 'a', { key: 'k1' });
    assert.deepEqual(again, a, 'the same key is the same message');
    await client.publish('dd.t', 'b');
    await until(() => received.length === 2, 'two messages');
    // Resubscribing from the start makes the node resend both: the client drops them.
    const replay = client.subscribe('dd.t', (m) => received.push(m), { after: CURSOR_ZERO });
    await replay.ready;
    await client.publish('dd.t', 'c');
    await until(() => received.length === 3, 'the new message');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(
      received.map((m) => m.data),
      ['a', 'b', 'c'],
    );
    client.close();
    await relay.stop();
  });

  it('rejects a refused subscription and a refused publish with the protocol error code', async () => {
    const relay = await startRelay();
    const client = createClient({ url: relay.wsUrl });
    const bad = client.subscribe('bad..topic');
    await assert.rejects(bad.ready, { code: 'bad_topic' });
    await assert.rejects(client.publish('a.>', 1), { code: 'bad_topic' });
    assert.ok((await client.ping()) >= 0);
    client.close();
    await relay.stop();
  });

  it('finds /v1/ws from an http base URL; close() settles everything and nothing reconnects', async () => {
    const relay = await startRelay();
    const client = createClient({ url: relay.url, reconnect: { initialDelayMs: 10, maxDelayMs: 20 } });
    const events: string[] = [];
    client.on('reconnecting', () => events.push('reconnecting'));
    await client.ready;
    const pending = client.subscribe('cl.closed').ready;
    await client.close();
    assert.equal(client.connected, false);
    await pending.catch(() => {}); // settled either way: acknowledged, or rejected by close()
    await assert.rejects(client.subscribe('cl.after').ready, { code: 'unavailable', message: /closed/ });
    await assert.rejects(client.publish('cl.after', 1), { code: 'unavailable' });
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(events, [], 'a closed client does not reconnect');
    await relay.stop();
  });

  it('rejects ready with an error event when nothing listens, instead of retrying silently', async () => {
    const relay = await startRelay();
    const url = relay.url;
    await relay.stop(); // the port is free now: connections are refused
    const client = createClient({ url, reconnect: { initialDelayMs: 10, maxDelayMs: 20 } });
    let once: ReturnType<typeof createClient> | undefined;
    try {
      const errors: string[] = [];
      client.on('error', (error) => errors.push(error.message));
      const sub = client.subscribe('cl.nowhere');
      let subOutcome = 'pending';
      sub.ready.then(
        () => (subOutcome = 'resolved'),
        (error: Error) => (subOutcome = error.message),
      );
      await assert.rejects(client.ready, {
        code: 'unavailable',
        message: /cannot open a WebSocket to ws:\/\/127\.0\.0\.1:\d+\/v1\/ws/,
      });
      await until(() => errors.length >= 2, 'an error event for each failed attempt');
      // The hint names a request that answers a refused token in words, not the base URL (the dashboard).
      assert.match(
        errors[0] ?? '',
        /curl -H 'Authorization: Bearer <token>' http:\/\/127\.0\.0\.1:\d+\/v1\/topics\/<topic>\/messages \(401 or 403/,
      );
      // The subscription waits for a connection, as a publish does; close() ends the wait.
      assert.equal(subOutcome, 'pending', 'a failed attempt does not end the subscription');
      await client.close();
      await assert.rejects(sub.ready, { code: 'unavailable', message: /client is closed/ });

      // Reconnect off: the first failed attempt ends the client, and the subscription with it.
      once = createClient({ url, reconnect: false });
      once.on('error', () => {});
      const dropped = once.subscribe('cl.nowhere');
      await assert.rejects(once.ready, { code: 'unavailable', message: /cannot open a WebSocket/ });
      await assert.rejects(dropped.ready, { code: 'unavailable', message: /cannot open a WebSocket/ });
      await assert.rejects(once.publish('cl.nowhere', 1), { code: 'unavailable', message: /reconnect is off/ });
    } finally {
      // Also when an assertion failed: a client left reconnecting keeps the test process alive.
      await client.close();
      await once?.close();
    }
  });

  it('keeps a subscription made before its relay is up, and subscribes it once the relay starts', async () => {
    // A port free now: a relay started and stopped (the reconnect test above reuses one too).
    const first = await startRelay();
    const port = new URL(first.url).port;
    await first.stop();
    const client = createClient({
      url: `http://127.0.0.1:${port}`,
      reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
    });
    const errors: string[] = [];
    client.on('error', (error) => errors.push(error.code));
    let relay: TestRelay | undefined;
    let other: ReturnType<typeof createClient> | undefined;
    try {
      const received: unknown[] = [];
      const sub = client.subscribe('cl.late', (m) => received.push(m.data));
      let subOutcome = 'pending';
      sub.ready.then(
        () => (subOutcome = 'resolved'),
        (error: Error) => (subOutcome = `rejected: ${error.message}`),
      );
      const queued = client.publish('cl.late', 'queued');
      await assert.rejects(client.ready, { code: 'unavailable' });
      await until(() => errors.length >= 2, 'an error event for each failed attempt');
      assert.equal(subOutcome, 'pending', 'a failed attempt does not end the subscription');

      relay = await startRelay({ port });
      await sub.ready;
      assert.match((await queued).cursor, /^[0-9a-f]{16}-/);
      // Published once the subscription is live, by another client: only a subscription the
      // node holds gets it.
      other = createClient({ url: relay.wsUrl });
      await other.publish('cl.late', 'after start');
      await until(() => received.includes('after start'), 'the message published after the relay came up');
      assert.ok(sub.cursor !== undefined, 'the subscription has a resume point');
      assert.ok(
        errors.every((code) => code === 'unavailable'),
        `each failed attempt is an unavailable error: ${errors}`,
      );
    } finally {
      await other?.close();
      await client.close();
      await relay?.stop();
    }
  });
});
