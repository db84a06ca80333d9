import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { type Feeds, startFeeds, waitFor } from '../helpers/feeds.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket, type RawSocket } from '../helpers/ws.ts';

const PLUGINS = fileURLToPath(new URL('../../relay-node/examples/plugins', import.meta.url));
type Msg = { op: 'msg'; topic: string; source: string; data: Record<string, unknown> };

describe('sources: middleware pipeline', () => {
  let feeds: Feeds;
  let relay: TestRelay;
  let subscriber: RawSocket;
  const msgs = (topic: string) =>
    (subscriber.frames.filter((f) => f.op === 'msg') as unknown as Msg[]).filter((m) => m.topic === topic);

  before(async () => {
    feeds = await startFeeds({ window: 20 });
    const source = {
      name: 'px',
      kind: 'http',
      url: feeds.httpUrl('px'),
      interval_ms: 50,
      topic: 'prices.raw',
      items_path: '$.items',
      id_path: '$.id',
      pipeline: ['reject-poison', 'only-positive', 'upper-symbol'],
    };
    relay = await startRelay({
      sources: JSON.stringify([source]),
      'plugins-dir': PLUGINS,
      'source-pipelines': JSON.stringify([{ topic: 'prices.*', steps: ['add-cents'] }]),
      'dead-letter-topic': 'dead.letters',
    });
    subscriber = await openSocket(`${relay.wsUrl}/v1/ws`);
    subscriber.send({ op: 'sub', topic: '>', ref: 'all' });
    await subscriber.next((f) => f.op === 'subscribed');
  });

  after(async () => {
    subscriber?.close();
    await relay?.stop();
    await feeds?.stop();
  });

  it('filters, maps and enriches; a throwing step sends to dead letter and the source keeps going', async () => {
    feeds.push('px', { id: '1', ts: 1, symbol: 'btc', price: 1.5 });
    feeds.push('px', { id: '2', ts: 2, symbol: 'eth', price: -1 });
    feeds.push('px', { id: '3', ts: 3, symbol: 'btc', price: 2, poison: true });
    await waitFor(() => msgs('dead.letters').length === 1, 5_000, 'dead letter');
    feeds.push('px', { id: '4', ts: 4, symbol: 'eth', price: 3 });
    await waitFor(() => msgs('prices.eth').length === 1, 5_000, 'item after the poison');
    const btc = msgs('prices.btc');
    assert.deepEqual(
      btc.map((m) => m.data),
      [{ id: '1', ts: 1, symbol: 'BTC', price: 1.5, cents: 150 }],
    );
    assert.deepEqual(msgs('prices.eth')[0]?.data, { id: '4', ts: 4, symbol: 'ETH', price: 3, cents: 300 });
    const dead = msgs('dead.letters')[0]?.data;
    assert.equal(dead?.reason, 'Error: poisoned item');
    assert.equal(dead?.step, 'reject-poison');
    assert.equal(dead?.source, 'px');
    assert.deepEqual(dead?.data, { id: '3', ts: 3, symbol: 'btc', price: 2, poison: true });
    // Several more polls: the dead item is not retried, nothing arrives twice.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(msgs('dead.letters').length, 1);
    assert.equal(msgs('prices.btc').length + msgs('prices.eth').length, 2);
    const status = (await (await fetch(`${relay.url}/v1/status`)).json()) as {
      sources: { name: string; state: string; dead_letters: number }[];
    };
    assert.deepEqual(
      status.sources.map((s) => [s.name, s.state, s.dead_letters]),
      [['px', 'ok', 1]],
    );
    const metrics = await (await fetch(`${relay.url}/metrics`)).text();
    assert.match(metrics, /anode_source_dead_letters_total\{source="px"\} 1/);
  });
});
