import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Envelope } from '@anode/shared';
import { createClient } from '@anode/client';
import { startRelay, tempDir } from '../helpers/relay.ts';

const until = async (condition: () => boolean, what: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

const publish = async (url: string, topic: string, data: unknown) => {
  const response = await fetch(`${url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ data }),
  });
  assert.equal(response.status, 202);
};

describe('client library: resume edge cases', () => {
  it('resumes a subscription that had no message yet from where it went live, missing nothing', async () => {
    const dataDir = await tempDir();
    let relay = await startRelay({}, { dataDir });
    const port = new URL(relay.url).port;
    // The token function runs before each connect: holding it keeps the client away until the
    // restarted relay has stored a message the client has not seen.
    let held: Promise<void> | undefined;
    let release = () => {};
    const client = createClient({
      url: relay.wsUrl,
      token: async () => {
        await held;
        return '';
      },
      reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
    });
    try {
      const received: Envelope[] = [];
      const sub = client.subscribe('gap.t', (m) => received.push(m));
      await sub.ready;
      assert.ok(sub.cursor, 'the resume point is where the subscription went live');

      held = new Promise((resolve) => (release = resolve));
      await relay.stop();
      relay = await startRelay({ port }, { dataDir });
      await publish(relay.url, 'gap.t', 'while away');
      release();
      await new Promise<void>((resolve) => client.on('subscribed', () => resolve()));
      await publish(relay.url, 'gap.t', 'live');
      await until(() => received.length >= 2, 'the missed and the live message');
      assert.deepEqual(
        received.map((m) => m.data),
        ['while away', 'live'],
      );
    } finally {
      release();
      await client.close();
      await relay.stop();
    }
  });
  it('keeps a subscription when the handle it replaced unsubscribes', async () => {
    const relay = await startRelay();
    const client = createClient({ url: relay.wsUrl });
    try {
      const received: unknown[] = [];
      const first = client.subscribe('rp.t');
      await first.ready;
      const second = client.subscribe('rp.t', (m) => received.push(m.data));
      await second.ready;
      first.unsubscribe(); // the old handle: the topic is second's now
      await client.ping();
      await client.publish('rp.t', 'still here');
      await until(() => received.length === 1, 'the message on the replacing subscription');
      assert.deepEqual(received, ['still here']);
    } finally {
      await client.close();
      await relay.stop();
    }
  });
  it('goes on live, saying so, when its resume is older than what the node keeps', async () => {
    const dataDir = await tempDir();
    const retention = { 'retention-max-messages': '5', 'retention-sweep-ms': '50' };
    let relay = await startRelay(retention, { dataDir });
    const port = new URL(relay.url).port;
    let held: Promise<void> | undefined;
    let release = () => {};
    const client = createClient({
      url: relay.wsUrl,
      token: async () => {
        await held;
        return '';
      },
      reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
    });
    try {
      const received: unknown[] = [];
      const errors: string[] = [];
      client.on('error', (error) => errors.push(error.code));
      let liveAgain = false;
      client.on('subscribed', () => (liveAgain = errors.includes('cursor_expired')));
      const sub = client.subscribe('ce.t', (m) => received.push(m.data));
      await sub.ready;
      await client.publish('ce.t', 'first');
      await until(() => received.length === 1, 'the first message');

      held = new Promise((resolve) => (release = resolve));
      await relay.stop();
      relay = await startRelay({ ...retention, port }, { dataDir });
      for (let n = 0; n < 20; n++) await publish(relay.url, 'ce.t', n); // pushes 'first' out
      const kept = async () => {
        const page = await fetch(`${relay.url}/v1/topics/ce.t/messages?limit=100`);
        return ((await page.json()) as { messages: unknown[] }).messages.length;
      };
      while ((await kept()) > 5) await new Promise((r) => setTimeout(r, 20));
      release();
      await until(() => errors.includes('cursor_expired'), 'the refused resume, as an error event');
      await until(() => liveAgain, 'the subscription live again after the refusal');
      await client.publish('ce.t', 'live again');
      await until(() => received.includes('live again'), 'a live message after the refused resume');
    } finally {
      release();
      await client.close();
      await relay.stop();
    }
  });
});
