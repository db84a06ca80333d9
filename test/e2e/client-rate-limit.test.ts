import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AnodeError, createClient } from '@anode/client';
import { history, startRelay } from '../helpers/relay.ts';

describe('client library: publishes over the rate', () => {
  it('resends a publish refused as rate_limited until the bucket refills, storing each once', async () => {
    const relay = await startRelay({ 'publish-rate': '5', 'publish-burst': '2' });
    const client = createClient({ url: relay.wsUrl });
    const refusals: string[] = [];
    client.on('error', (error: AnodeError) => refusals.push(error.code));
    try {
      await client.ready;
      const sent = Array.from({ length: 8 }, (_, i) => i);
      const acks = await Promise.all(sent.map((i) => client.publish('rl.t', i)));
      assert.ok(refusals.includes('rate_limited'), 'the burst went over the rate');
      assert.equal(new Set(acks.map((a) => a.id)).size, sent.length);
      const stored = await history(relay.url, 'rl.t');
      assert.deepEqual(stored.map((m) => m.data).sort(), sent);
    } finally {
      await client.close();
      await relay.stop();
    }
  });

  it('still rejects within publishTimeoutMs, naming the rate limit', async () => {
    const relay = await startRelay({ 'publish-rate': '1', 'publish-burst': '1' });
    const client = createClient({ url: relay.wsUrl, publishTimeoutMs: 400 });
    try {
      await client.ready;
      // Both at once: the first takes the only token whenever its durable ack comes (on a loaded
      // machine it can take longer than the 400 ms itself), and the second is refused at once.
      const first = client.publish('rl.u', 'takes the only token').catch(() => undefined);
      await assert.rejects(client.publish('rl.u', 'over the rate'), (error: AnodeError) => {
        assert.equal(error.code, 'unavailable');
        assert.match(error.message, /rate limit/);
        return true;
      });
      await first;
    } finally {
      await client.close();
      await relay.stop();
    }
  });
});
