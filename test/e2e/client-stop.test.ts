import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WebSocket as WsWebSocket } from 'ws';
import { CURSOR_ZERO, signToken } from '@anode/shared';
import { createClient } from '@anode/client';
import { startRelay } from '../helpers/relay.ts';

const SECRET = 'client-stop-secret-0123456789abcdef';

const until = async (condition: () => boolean, what: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

const closed = (client: ReturnType<typeof createClient>) =>
  new Promise<number>((resolve) => client.on('close', ({ code }) => resolve(code)));

describe('client library: a client that will not reconnect', () => {
  it('fails what waits and later publishes with unauthorized when a fixed token expires', async () => {
    const relay = await startRelay({ 'jwt-secret': SECRET });
    // Whole seconds: `2s` leaves at least one second to connect before it expires.
    const token = await signToken(SECRET, { pub: ['>'], sub: ['>'] }, '2s');
    const client = createClient({ url: relay.wsUrl, token, publishTimeoutMs: 5_000 });
    try {
      const errors: string[] = [];
      client.on('error', (error) => errors.push(error.code));
      const code = closed(client);
      await client.subscribe('st.t').ready;
      assert.equal(await code, 4002);
      await assert.rejects(client.publish('st.t', 'after expiry'), { code: 'unauthorized', message: /token expired/ });
      await assert.rejects(client.subscribe('st.u').ready, { code: 'unauthorized' });
      assert.ok(errors.includes('unauthorized'), `the expiry is an error event: ${errors}`);
    } finally {
      await client.close();
      await relay.stop();
    }
  });

  it('fails what waits and later publishes at once when reconnect is off and the connection drops', async () => {
    const relay = await startRelay();
    const client = createClient({ url: relay.wsUrl, reconnect: false, publishTimeoutMs: 5_000 });
    try {
      await client.ready;
      const code = closed(client);
      await relay.stop();
      assert.equal(await code, 4000);
      await assert.rejects(client.publish('st.t', 'after the drop'), {
        code: 'unavailable',
        message: /reconnect is off/,
      });
    } finally {
      await client.close();
    }
  });

  it('hands nothing on after close(), with ws as its WebSocket too; a later subscribe() rejects and its handler stays silent', async () => {
    const relay = await startRelay();
    const response = await fetch(`${relay.url}/v1/topics/cs.t/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(Array.from({ length: 500 }, (_, n) => ({ data: n }))),
    });
    assert.equal(response.status, 202);
    // `ws` hands on what arrives while it closes; a standard WebSocket drops it itself.
    const client = createClient({ url: relay.wsUrl, WebSocket: WsWebSocket as unknown as typeof WebSocket });
    let closing: Promise<void> | undefined;
    const afterClose: string[] = [];
    try {
      client.on('message', () => void (closing && afterClose.push('message event')));
      client.on('error', (error) => void (closing && afterClose.push(`error ${error.code}`)));
      // A replay of all 500: the rest of it is on its way when the first one closes the client.
      client.subscribe(
        'cs.t',
        () => {
          if (closing) afterClose.push('handler');
          else closing = client.close();
        },
        { after: CURSOR_ZERO },
      );
      await until(() => closing !== undefined, 'the first replayed message');
      const late = client.subscribe('cs.t', () => afterClose.push('late handler'));
      client.on('message', () => afterClose.push('late listener'));
      await closing;
      await new Promise((r) => setTimeout(r, 100));
      await assert.rejects(late.ready, { code: 'unavailable', message: /client is closed/ });
      assert.deepEqual(afterClose, [], `handed after close(): ${afterClose.length}`);
    } finally {
      await client.close();
      await relay.stop();
    }
  });
});
