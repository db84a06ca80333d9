import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freePort, LINK_SECRET, startEdge, type EdgeRuntime } from '../helpers/edge.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';

/**
 * The message contract between an edge and its relay (PROTOCOL.md "Limits": every layer behind
 * the entry carries any message the entry accepted). A review found the edge acking what its
 * relay then refused on the link (its MAX_MESSAGE_BYTES above the relay's max_message_bytes:
 * dropped from the outbox, lost), and answering a keyed republish before checking it.
 */
const post = (url: string, topic: string, body: unknown) =>
  fetch(`${url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

const errorCode = async (response: Response) => ((await response.json()) as { error: { code: string } }).error.code;

describe('edge and relay limits', () => {
  let relay: TestRelay;
  let edge: EdgeRuntime;
  before(async () => {
    const edgeUrl = `http://127.0.0.1:${await freePort()}`;
    relay = await startRelay({ 'edge-link-secret': LINK_SECRET, 'edge-url': edgeUrl, 'max-message-bytes': '2048' });
    // The edge's own limit stays at its default (1 MiB), far above the relay's.
    edge = await startEdge({
      RELAY_URLS: relay.url,
      LINK_SECRET,
      EDGE_URL: edgeUrl,
      LINK_WAIT_MS: '2000',
      LINK_RETRY_MAX_MS: '400',
    });
  });
  after(async () => {
    await edge?.stop();
    await relay?.stop();
  });

  it('refuses at the edge, as too_large, data the relay would refuse; what it acks reaches the relay', async () => {
    const topic = 'limits.big';
    const big = await post(edge.url, topic, [{ data: 'x'.repeat(3000) }, { data: 'small' }]);
    assert.equal(big.status, 413);
    assert.equal(await errorCode(big), 'too_large');
    const small = await post(edge.url, topic, { data: 'y'.repeat(1500) });
    assert.equal(small.status, 202);
    const [ack] = ((await small.json()) as { messages: { id: string }[] }).messages;
    const deadline = Date.now() + 15_000;
    let stored: string[] = [];
    while (Date.now() < deadline) {
      const page = (await (await fetch(`${relay.url}/v1/topics/${topic}/messages`)).json()) as {
        messages: { id: string }[];
      };
      stored = page.messages.map((m) => m.id);
      if (stored.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.deepEqual(stored, [ack?.id]);
    // Nothing was refused on the link.
    const metrics = await (await fetch(`${relay.url}/metrics`)).text();
    assert.doesNotMatch(metrics, /^anode_errors_total\{code="too_large"\} [1-9]/m);
  });

  it('checks a keyed republish before it answers with the first copy, as the relay does', async () => {
    for (const [name, url] of [
      ['relay', relay.url],
      ['edge', edge.url],
    ] as const) {
      const topic = `limits.key.${name}`;
      assert.equal((await post(url, topic, { data: 1, key: 'k1' })).status, 202, name);
      const large = await post(url, topic, { data: 'y'.repeat(5000), key: 'k1' });
      assert.equal(large.status, 413, name);
      assert.equal(await errorCode(large), 'too_large', name);
      const ahead = await post(url, topic, { data: 1, key: 'k1', ts: Date.now() + 3_600_000 });
      assert.equal(ahead.status, 400, name);
      assert.equal(await errorCode(ahead), 'bad_frame', name);
      // The same item again is answered with the first copy.
      assert.equal((await post(url, topic, { data: 1, key: 'k1' })).status, 202, name);
    }
  });
});
