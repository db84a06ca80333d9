import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createClient } from '@anode/client';
import { startRelay } from '../helpers/relay.ts';
import { topicListingFaults } from '../helpers/store-faults.ts';

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

  it('a replay cut before its answer again and again still ends: its cursor moves after two stalled resumes', async () => {
    const relay = await startRelay();
    // Test double for a replay that is always cut (the relay's or an edge's close 4001 on a long
    // replay under live load): a real WebSocket to the relay that closes itself when the pattern's
    // `subscribed` arrives, after the replayed messages, at most `cuts` times.
    const afters: (string | undefined)[] = [];
    let cuts = 6;
    class CuttingSocket extends WebSocket {
      override send(data: string): void {
        const frame = JSON.parse(data) as { op: string; topic?: string; after?: string };
        if (frame.op === 'sub' && frame.topic === 'st.>') afters.push(frame.after);
        super.send(data);
      }
      override addEventListener(
        type: string,
        listener: EventListenerOrEventListenerObject,
        options?: boolean | AddEventListenerOptions,
      ): void {
        if (type !== 'message' || typeof listener !== 'function')
          return super.addEventListener(type, listener, options);
        super.addEventListener('message', (event) => {
          const frame = JSON.parse(String((event as MessageEvent).data)) as { op: string; topic?: string };
          if (frame.op === 'subscribed' && frame.topic === 'st.>' && cuts > 0) {
            cuts -= 1;
            this.close();
            return;
          }
          listener(event);
        });
      }
    }
    const client = createClient({
      url: relay.wsUrl,
      WebSocket: CuttingSocket,
      reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
    });
    try {
      const from = await publish(relay.url, 'st.x', 'before');
      let last = from;
      for (const n of [1, 2, 3]) last = await publish(relay.url, 'st.x', `replayed ${n}`);
      // Every replayed message is the topic's too: the careful rule holds the pattern's cursor.
      await client.subscribe('st.x').ready;
      const pattern = client.subscribe('st.>', undefined, { after: from });
      await pattern.ready;
      assert.deepEqual(afters.slice(0, 3), [from, from, from], 'two resumes from the same cursor, careful');
      assert.ok(
        afters.slice(3).every((after) => after !== undefined && after > from),
        `then the cursor moved on: ${JSON.stringify(afters)}`,
      );
      assert.equal(afters.at(-1), last, 'and reached the end of the replay');
    } finally {
      await client.close();
      await relay.stop();
    }
  });

  it('a pattern waiting to retry its refused resume is handed what its topic brings meanwhile, its cursor held still', async () => {
    // While `faults.down`, a pattern's resume is refused (unavailable); an exact topic resumes.
    const faults = topicListingFaults();
    const relay = await startRelay({}, { wrapStore: faults.wrap });
    const sockets: WebSocket[] = [];
    class DroppableSocket extends WebSocket {
      constructor(url: string) {
        super(url);
        sockets.push(this);
      }
    }
    // Retries 200-400 ms apart: the topic's live message lands while the pattern waits, not
    // while a retry is on its way.
    const client = createClient({
      url: relay.wsUrl,
      WebSocket: DroppableSocket,
      reconnect: { initialDelayMs: 400, maxDelayMs: 400 },
    });
    client.on('error', () => {});
    try {
      const onPattern: unknown[] = [];
      const onTopic: unknown[] = [];
      const pattern = client.subscribe('rv.>', (m) => void onPattern.push(m.data));
      const topic = client.subscribe('rv.a', (m) => void onTopic.push(m.data));
      await Promise.all([pattern.ready, topic.ready]);
      await publish(relay.url, 'rv.a', 'a1');
      await until(() => onPattern.length === 1 && onTopic.length === 1, 'a1 at both subscriptions');
      const held = pattern.cursor;
      faults.down = true;
      sockets.at(-1)?.close(); // the next connection resumes both; the pattern's is refused
      await until(() => faults.refusals > 0 && client.connected, "the pattern's resume refused");
      await publish(relay.url, 'rv.b', 'b2'); // only the pattern matches: it misses it for now
      await publish(relay.url, 'rv.a', 'a3'); // both match: it comes through the topic's subscription
      await until(() => onTopic.includes('a3'), 'a3 at the topic');
      await until(
        () => onPattern.includes('a3'),
        `a3 at the waiting pattern (has ${JSON.stringify(onPattern)})`,
        2_000,
      );
      assert.ok(faults.refusals > 0 && faults.down, 'handed while its resume was still refused');
      assert.equal(pattern.cursor, held, "the pattern's cursor stays put, before what it missed");
      faults.down = false;
      await until(() => onPattern.includes('b2'), `the pattern's missed message (has ${JSON.stringify(onPattern)})`);
      await client.ping();
      assert.deepEqual(onPattern, ['a1', 'a3', 'b2'], 'every message once');
    } finally {
      await client.close();
      await relay.stop();
    }
  });
});
