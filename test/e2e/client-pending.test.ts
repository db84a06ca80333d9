import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createClient } from '@anode/client';
import { startRelay } from '../helpers/relay.ts';

describe('client library: answers it waits for', () => {
  it('holds no wait for a resume unsubscribed or replaced before it went live, however many', async () => {
    const relay = await startRelay();
    const client = createClient({ url: relay.wsUrl });
    try {
      await client.ready;
      const { cursor } = await client.publish('pend.a', 'resume from here');
      // A relay drops a resume unsubscribed or replaced while it catches up, without an answer.
      for (let i = 0; i < 200; i++) client.subscribe('pend.a', undefined, { after: cursor }).unsubscribe();
      let last = client.subscribe('pend.b', undefined, { after: cursor });
      for (let i = 0; i < 200; i++) last = client.subscribe('pend.b', undefined, { after: cursor });
      await last.ready;
      await client.ping(); // answered once every frame before it was: each dropped resume too
      assert.equal(client.pendingAnswers, 0);
    } finally {
      await client.close();
      await relay.stop();
    }
  });
});
