import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Feeds, startFeeds, waitFor } from '../helpers/feeds.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket, type RawSocket } from '../helpers/ws.ts';

const HTTP_SOURCES = 150;
const WS_SOURCES = 50;
const ITEMS = 5;

type Msg = { op: 'msg'; id: string; topic: string; source: string; ts: number; data: { id: string; ts: number } };

describe('sources: 200 pulled sources on loopback', () => {
  let feeds: Feeds;
  let relay: TestRelay;
  let subscriber: RawSocket;
  const names = [
    ...Array.from({ length: HTTP_SOURCES }, (_, i) => `h${i}`),
    ...Array.from({ length: WS_SOURCES }, (_, i) => `w${i}`),
  ];

  before(async () => {
    feeds = await startFeeds({ window: ITEMS });
    const mapping = { items_path: '$.items', id_path: '$.id', ts_path: '$.ts' };
    const sources = names.map((name) =>
      name.startsWith('h')
        ? { name, kind: 'http', url: feeds.httpUrl(name), interval_ms: 100, topic: `feeds.${name}`, ...mapping }
        : {
            name,
            kind: 'websocket',
            url: feeds.wsUrl(name),
            topic: `feeds.${name}`,
            subscribe: { op: 'subscribe', feed: name },
            backoff_min_ms: 50,
            backoff_max_ms: 200,
            ...mapping,
          },
    );
    relay = await startRelay({ sources: JSON.stringify(sources), 'source-concurrency': '32' });
    subscriber = await openSocket(`${relay.wsUrl}/v1/ws`);
    subscriber.send({ op: 'sub', topic: 'feeds.>', ref: 'all' });
    await subscriber.next((f) => f.op === 'subscribed');
  });

  after(async () => {
    subscriber?.close();
    await relay?.stop();
    await feeds?.stop();
  });

  it('delivers exactly the items the sources produced, once each, while feeds change and drop', async () => {
    for (let round = 0; round < ITEMS; round += 1) {
      for (const name of names) feeds.push(name, { id: `${name}-${round}`, ts: Date.now() + round, v: round });
      // Drop a fifth of the WebSocket feeds each round; the snapshot on reconnect fills the gap.
      for (const name of names.filter((n, i) => n.startsWith('w') && i % 5 === round % 5))
        feeds.drop(name, round % 2 === 0);
      await new Promise((r) => setTimeout(r, 60));
    }
    const messages = () => subscriber.frames.filter((f) => f.op === 'msg') as unknown as Msg[];
    await waitFor(() => messages().length >= names.length * ITEMS, 15_000, 'every item');
    // A few more intervals: nothing may arrive twice, and no ws feed is left unconnected.
    await new Promise((r) => setTimeout(r, 400));
    const got = messages();
    const keys = got.map((m) => `${m.source}/${m.data.id}`);
    assert.equal(new Set(keys).size, keys.length, 'an item was delivered twice');
    const expected = names.flatMap((name) => feeds.items(name).map((item) => `${name}/${item.id}`));
    assert.deepEqual([...keys].sort(), expected.sort());
    for (const m of got) {
      assert.equal(m.topic, `feeds.${m.source}`);
      assert.equal(m.ts, m.data.ts, 'ts is the source timestamp');
    }
    assert.deepEqual(feeds.subscribeFrames('w0')[0], { op: 'subscribe', feed: 'w0' });
  });

  it('keeps the newest item per (topic, source) by source timestamp, and shows healthy status', async () => {
    const res = await fetch(`${relay.url}/v1/topics/feeds.h7/latest`);
    const body = (await res.json()) as { sources: Record<string, { data: { id: string } }> };
    assert.equal(body.sources.h7?.data.id, `h7-${ITEMS - 1}`);
    const status = (await (await fetch(`${relay.url}/v1/status`)).json()) as {
      sources: { name: string; state: string; items: number }[];
    };
    assert.equal(status.sources.length, names.length);
    for (const s of status.sources) {
      assert.ok(['ok', 'connected'].includes(s.state), `${s.name} is ${s.state}`);
      assert.equal(s.items, ITEMS, s.name);
    }
    // An item with an older source timestamp is stored and delivered but never becomes latest.
    feeds.push('h7', { id: 'h7-late', ts: 1 });
    await waitFor(() =>
      (subscriber.frames.filter((f) => f.op === 'msg') as unknown as Msg[]).some((m) => m.data.id === 'h7-late'),
    );
    const again = (await (await fetch(`${relay.url}/v1/topics/feeds.h7/latest`)).json()) as typeof body;
    assert.equal(again.sources.h7?.data.id, `h7-${ITEMS - 1}`);
  });
});
