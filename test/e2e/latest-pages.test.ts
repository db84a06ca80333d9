import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Envelope, HISTORY_PAGE_BYTES, LATEST_PAGE_SOURCES } from '@anode/shared';
import { startRelay, type TestRelay } from '../helpers/relay.ts';

/**
 * `GET /v1/topics/{topic}/latest` in pages (PROTOCOL.md): a topic with many large sources is
 * answered a bounded page at a time, `next` naming the last source while more follow, and the
 * pages together hold every source once. Unbounded, 300 sources of 700 KiB were one 215 MB answer
 * and ~340 more of 1 MiB a 500 for good. And the age limit expires latest rows as it does history.
 */

type LatestPage = { sources: Record<string, Envelope>; next?: string };

async function get(url: string): Promise<{ status: number; body: unknown; bytes: number }> {
  const res = await fetch(url);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text), bytes: Buffer.byteLength(text) };
}

async function publish(relay: TestRelay, topic: string, items: unknown[]): Promise<void> {
  const res = await fetch(`${relay.url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(items),
  });
  assert.equal(res.status, 202, await res.text());
}

describe('HTTP latest pages', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay();
  });
  after(async () => relay.stop());

  it('answers a topic of many large sources in bounded pages that hold every source once', async () => {
    // 40 sources of 600 KiB: 24 MB in all, six 4 MiB pages at least.
    const blob = 'L'.repeat(600 * 1024);
    const names = Array.from({ length: 40 }, (_, i) => `src-${i}`);
    for (let i = 0; i < names.length; i += 4) {
      await publish(
        relay,
        'latest.big',
        names.slice(i, i + 4).map((source) => ({ source, data: `${source}:${blob}` })),
      );
    }
    const seen: string[] = [];
    let query = '';
    let pages = 0;
    for (; pages < 50; pages++) {
      const res = await get(`${relay.url}/v1/topics/latest.big/latest${query}`);
      assert.equal(res.status, 200);
      const page = res.body as LatestPage;
      const sources = Object.keys(page.sources).sort();
      assert.ok(sources.length > 0, 'no empty page before the end');
      assert.ok(res.bytes <= HISTORY_PAGE_BYTES + 64 * 1024, `page of ${res.bytes} bytes`);
      for (const source of sources) {
        assert.equal(page.sources[source]?.source, source);
        assert.equal(page.sources[source]?.data, `${source}:${blob}`);
      }
      seen.push(...sources);
      if (page.next === undefined) break;
      assert.equal(page.next, sources.at(-1), '`next` is the last source of the page');
      query = `?after_source=${encodeURIComponent(page.next)}`;
    }
    assert.ok(pages >= 5, `${pages + 1} pages`);
    assert.deepEqual(seen, [...names].sort(), 'every source once, in source order');
  });

  it('cuts a page at `limit` sources, and gives no `next` at the end', async () => {
    await publish(
      relay,
      'latest.small',
      ['c', 'a', 'b', 'e', 'd'].map((source) => ({ source, data: source })),
    );
    const first = (await get(`${relay.url}/v1/topics/latest.small/latest?limit=2`)).body as LatestPage;
    assert.deepEqual(Object.keys(first.sources), ['a', 'b']);
    assert.equal(first.next, 'b');
    const last = (await get(`${relay.url}/v1/topics/latest.small/latest?limit=3&after_source=b`)).body as LatestPage;
    assert.deepEqual(Object.keys(last.sources), ['c', 'd', 'e']);
    assert.equal('next' in last, false, 'a full page that ends the topic: one read past it says so');
    const whole = (await get(`${relay.url}/v1/topics/latest.small/latest`)).body as LatestPage;
    assert.deepEqual(whole, { sources: whole.sources }, 'a small topic is one page, answered as before paging');
    assert.deepEqual(Object.keys(whole.sources), ['a', 'b', 'c', 'd', 'e']);
  });

  it('refuses a bad limit or after_source with bad_frame, as history does', async () => {
    for (const query of [
      'limit=0',
      `limit=${LATEST_PAGE_SOURCES + 1}`,
      'limit=',
      'limit=x',
      'limit=1.5',
      'after_source=',
      'after_source=a%20b',
      `after_source=${'a'.repeat(129)}`,
    ]) {
      const res = await get(`${relay.url}/v1/topics/latest.small/latest?${query}`);
      assert.equal(res.status, 400, query);
      assert.equal((res.body as { error: { code: string } }).error.code, 'bad_frame', query);
    }
    const wordings: [string, string][] = [
      ['limit=0', 'limit: at least 1'],
      [`limit=${LATEST_PAGE_SOURCES + 1}`, `limit: at most ${LATEST_PAGE_SOURCES}`],
      ['limit=1.5', 'limit: not an integer'],
    ];
    for (const [query, message] of wordings) {
      const res = await get(`${relay.url}/v1/topics/latest.small/latest?${query}`);
      assert.equal((res.body as { error: { message: string } }).error.message, message, query);
    }
  });
});

describe('HTTP latest under retention_max_age_ms', () => {
  it('stops serving a source whose newest message is older than the age limit', async () => {
    const relay = await startRelay({ 'retention-max-age-ms': '1000', 'retention-sweep-ms': '200' });
    try {
      await publish(relay, 'latest.aged', [{ source: 'gone', data: 1 }]);
      const before = (await get(`${relay.url}/v1/topics/latest.aged/latest`)).body as LatestPage;
      assert.deepEqual(Object.keys(before.sources), ['gone']);
      let latest: LatestPage = before;
      let history: { messages: unknown[] } = { messages: [1] };
      // Bounded: 1 s of age and 200 ms sweeps take about 1.2 s; 10 s at most.
      for (let n = 0; n < 100; n++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        history = (await get(`${relay.url}/v1/topics/latest.aged/messages`)).body as { messages: unknown[] };
        latest = (await get(`${relay.url}/v1/topics/latest.aged/latest`)).body as LatestPage;
        if (history.messages.length === 0 && Object.keys(latest.sources).length === 0) break;
      }
      assert.deepEqual(history.messages, [], 'history expired');
      assert.deepEqual(latest, { sources: {} }, 'latest expired with it');
    } finally {
      await relay.stop();
    }
  });
});
