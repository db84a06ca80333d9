import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Envelope, MessageStore } from '@anode/shared';
import { createClient } from '@anode/client';
import { startRelay, tempDir } from '../helpers/relay.ts';

const until = async (condition: () => boolean, what: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('client library: publishes across a rolling restart', () => {
  it('resends publishes a stopping relay refused as unavailable once it is back, each stored once', async () => {
    const dataDir = await tempDir();
    // Fault-injection test double: appends wait while `held` is set, so the relay's stop (which
    // drains its writer) stays in the phase where it refuses clients' publishes.
    let held: Promise<void> | undefined;
    let release = () => {};
    let handedOver = 0;
    const withHeldAppends = (store: MessageStore): MessageStore => ({
      ...store,
      append: async (messages) => {
        handedOver += messages.length;
        if (held) await held;
        return store.append(messages);
      },
    });
    let relay = await startRelay({}, { dataDir, wrapStore: withHeldAppends });
    const port = new URL(relay.url).port;
    const client = createClient({ url: relay.wsUrl, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
    try {
      const errors: string[] = [];
      client.on('error', (error) => errors.push(error.code));
      await client.ready;

      held = new Promise((resolve) => (release = resolve));
      const inFlight = client.publish('rr.t', 'in-flight', { key: 'k-in-flight' });
      await until(() => handedOver === 1, 'the first publish to reach the store');
      const stopping = relay.stop(); // refuses clients' publishes from now on, then drains the writer
      const outcomes = [
        client.publish('rr.t', 'keyed', { key: 'k-keyed' }),
        client.publish('rr.t', 'generated key'),
      ].map((p) =>
        p.then(
          (ack) => ack,
          (error: Error & { code?: string }) => error,
        ),
      );
      await until(() => errors.filter((code) => code === 'unavailable').length >= 2, 'both refused as unavailable');
      release();
      await stopping;
      held = undefined;

      relay = await startRelay({ port }, { dataDir });
      const acks = [await inFlight, ...(await Promise.all(outcomes))];
      for (const ack of acks) assert.ok(!(ack instanceof Error), `every publish is acked: ${ack}`);

      const response = await fetch(`${relay.url}/v1/topics/rr.t/messages?after=0&limit=100`);
      const { messages } = (await response.json()) as { messages: Envelope[] };
      assert.deepEqual(messages.map((m) => m.data).sort(), ['generated key', 'in-flight', 'keyed'], 'stored once each');
    } finally {
      release();
      await client.close();
      await relay.stop();
    }
  });
  it('bounds the publishes waiting for an ack: one past the bound rejects with limit_reached', async () => {
    const dataDir = await tempDir();
    let relay = await startRelay({}, { dataDir });
    const port = new URL(relay.url).port;
    const client = createClient({
      url: relay.wsUrl,
      maxPendingPublishes: 3,
      reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
    });
    try {
      await client.ready;
      await relay.stop();
      await until(() => !client.connected, 'the drop');
      const waiting = [1, 2, 3].map((n) => client.publish('rb.t', n));
      const over = client.publish('rb.t', 4).then(
        () => 'acked',
        (error: { code?: string }) => error.code,
      );
      relay = await startRelay({ port }, { dataDir });
      for (const ack of await Promise.all(waiting)) assert.match(ack.cursor, /^[0-9a-f]{16}-/);
      assert.equal(await over, 'limit_reached');
    } finally {
      await client.close();
      await relay.stop();
    }
  });
});
