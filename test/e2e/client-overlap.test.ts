import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createClient } from '@anode/client';
import { startRelay } from '../helpers/relay.ts';

const until = async (condition: () => boolean, what: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

const publish = async (url: string, topic: string, data: unknown): Promise<string> => {
  const response = await fetch(`${url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ data }),
  });
  assert.equal(response.status, 202);
  const { messages } = (await response.json()) as { messages: { cursor: string }[] };
  return (messages[0] as { cursor: string }).cursor;
};

describe('client library: overlapping subscriptions', () => {
  it("a topic's live message does not move its pattern's cursor past the pattern's replay", async () => {
    const relay = await startRelay();
    // Test double for a slow network (its timing cannot be produced on loopback): a real
    // WebSocket to the relay that loses the pattern's first `sub`, so the pattern stays
    // unanswered (replaying, as far as the client knows) while the topic's live message arrives.
    const sockets: WebSocket[] = [];
    let lost = false;
    class SlowNetworkSocket extends WebSocket {
      constructor(url: string) {
        super(url);
        sockets.push(this);
      }
      override send(data: string): void {
        const frame = JSON.parse(data) as { op: string; topic?: string };
        if (!lost && frame.op === 'sub' && frame.topic === 'ov.>') {
          lost = true;
          return;
        }
        super.send(data);
      }
    }
    const client = createClient({
      url: relay.wsUrl,
      WebSocket: SlowNetworkSocket,
      reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
    });
    try {
      const after = await publish(relay.url, 'ov.y', 'seen before');
      await publish(relay.url, 'ov.y', 'to replay');
      const onTopic: unknown[] = [];
      const onPattern: unknown[] = [];
      await client.subscribe('ov.x', (m) => onTopic.push(m.data)).ready;
      const pattern = client.subscribe('ov.>', (m) => onPattern.push(m.data), { after });
      await publish(relay.url, 'ov.x', 'live');
      await until(() => onTopic.length === 1, 'the live message on the topic');
      sockets.at(-1)?.close(); // the drop, before the pattern's replay reached the client
      await pattern.ready; // the resume on the next connection
      await client.ping();
      assert.ok(onPattern.includes('to replay'), `the pattern got ${JSON.stringify(onPattern)}`);
    } finally {
      await client.close();
      await relay.stop();
    }
  });
});
