import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { signToken } from '@anode/shared';
import { createClient } from '@anode/client';
import { startRelay } from '../helpers/relay.ts';

const SECRET = 'client-stop-secret-0123456789abcdef';

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
});
