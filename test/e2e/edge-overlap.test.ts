// A client connection at the edge joins a topic's Durable Object (exact topics) and a relay
// (patterns). The edge passes a message on once per connection across them, as a relay does for
// live messages; a resume's replay is not live: it hands a subscription what another one carried
// already (client/README.md). A review found the edge dropped it, so a pattern subscribed (or
// resumed after a refusal) from an older cursor never got a message its topic's object had
// delivered to the exact subscription, and its resume point moved past it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createClient } from '@anode/client';
import { freePort, LINK_SECRET, publish, startEdge } from '../helpers/edge.ts';
import { startRelay, tempDir } from '../helpers/relay.ts';
import { topicListingFaults } from '../helpers/store-faults.ts';

async function until(ok: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** An edge on workerd linked to the relay at `relayUrl`, reachable by it at `edgeUrl`. */
const edgeLinkedTo = (relayUrl: string, edgeUrl: string) =>
  startEdge({ RELAY_URLS: relayUrl, LINK_SECRET, LINK_WAIT_MS: '2000', LINK_RETRY_MAX_MS: '400', EDGE_URL: edgeUrl });

describe('edge: overlapping subscriptions on one connection', () => {
  it('replays to a new pattern subscription what the exact one already carried', async () => {
    const dataDir = await tempDir();
    const edgeUrl = `http://127.0.0.1:${await freePort()}`;
    const relay = await startRelay({ 'edge-link-secret': LINK_SECRET, 'edge-url': edgeUrl }, { dataDir });
    const edge = await edgeLinkedTo(relay.url, edgeUrl);
    const client = createClient({ url: edge.url });
    client.on('error', () => {});
    try {
      const topic: unknown[] = [];
      const exact = client.subscribe('ov.a', (m) => void topic.push(m.data));
      await exact.ready;
      const from = exact.cursor;
      await client.publish('ov.a', 'm1');
      await until(() => topic.length === 1, 'm1 at the exact subscription');
      // The edge's link forwards m1 to the relay.
      await until(() => false, 'nothing', 1_000).catch(() => {});
      const pattern: unknown[] = [];
      const wide = client.subscribe('ov.>', (m) => void pattern.push(m.data), { after: from });
      await wide.ready;
      await until(() => pattern.length === 1, `m1 replayed to the pattern (has ${JSON.stringify(pattern)})`, 5_000);
      assert.deepEqual(pattern, ['m1']);
    } finally {
      await client.close();
      await edge.stop();
      await relay.stop();
    }
  });

  it('hands a pattern whose resume was refused for now every message once it is served', async () => {
    const dataDir = await tempDir();
    const edgeUrl = `http://127.0.0.1:${await freePort()}`;
    const flags = { 'edge-link-secret': LINK_SECRET, 'edge-url': edgeUrl };
    // While `faults.down`, a pattern's resume is refused (unavailable); an exact topic resumes.
    const faults = topicListingFaults();
    let relay = await startRelay(flags, { dataDir, wrapStore: faults.wrap });
    const port = new URL(relay.url).port;
    const edge = await edgeLinkedTo(relay.url, edgeUrl);
    const client = createClient({ url: edge.url, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
    client.on('error', () => {});
    try {
      const pattern: unknown[] = [];
      const topic: unknown[] = [];
      const wide = client.subscribe('rv.>', (m) => void pattern.push(m.data));
      const exact = client.subscribe('rv.a', (m) => void topic.push(m.data));
      await Promise.all([wide.ready, exact.ready]);
      await client.publish('rv.a', 'a1');
      await until(() => pattern.length === 1 && topic.length === 1, 'a1 at both subscriptions');
      await relay.stop();
      faults.down = true;
      relay = await startRelay({ ...flags, port }, { dataDir, wrapStore: faults.wrap });
      await until(() => faults.refusals > 0 && client.connected, "the pattern's resume refused");
      await publish(edge.url, 'rv.b', ['b2']); // only the pattern matches
      await publish(edge.url, 'rv.a', ['a3']); // both: it comes live through the topic's object
      await until(() => topic.length === 2, 'a3 at the exact subscription');
      faults.down = false;
      await until(() => pattern.length >= 3, `the pattern's missed messages (has ${JSON.stringify(pattern)})`);
      // Every one, once. (In cursor order at a relay; at the edge a message the exact subscription
      // brings live through the topic's object may come before the pattern's replay of older ones.)
      assert.deepEqual([...pattern].sort(), ['a1', 'a3', 'b2']);
    } finally {
      await client.close();
      await edge.stop();
      await relay.stop();
    }
  });
});
