import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dataBytes, type Envelope, HISTORY_PAGE_BYTES, type MessageStore } from '@anode/shared';
import { RESUME_BYTES, RESUME_MESSAGES } from './merged-history.ts';
import { memoryStore, recorder, testHub } from './test-hub.ts';

const claims = { pub: ['>'], sub: ['>'] };

/**
 * A real store, watched: what its history reads returned before the subscriber was sent its
 * first frame (what a resume had loaded before it could send anything).
 */
function watched(store: MessageStore) {
  const seen = { messages: 0, bytes: 0, largestPage: 0, frozen: false };
  const wrapped: MessageStore = {
    ...store,
    async history(topic, query) {
      const page = await store.history(topic, query);
      const bytes = page.reduce((sum, m) => sum + dataBytes(m), 0);
      seen.largestPage = Math.max(seen.largestPage, bytes);
      if (!seen.frozen) {
        seen.messages += page.length;
        seen.bytes += bytes;
      }
      return page;
    },
  };
  const subscriber = recorder('resumer');
  const send = subscriber.send;
  subscriber.send = (frame) => {
    seen.frozen = true;
    return send(frame);
  };
  return { store: wrapped, seen, subscriber };
}

const big = (n: number) => ({ data: { n, pad: 'x'.repeat(300 * 1024) } });

describe('hub: history reads bounded by bytes', () => {
  it('pages HTTP history by HISTORY_PAGE_BYTES, and `next` leads through every message once', async () => {
    const inner = memoryStore();
    const hub = testHub(inner);
    const acks = [];
    for (let n = 0; n < 40; n++) acks.push(...(await hub.publish('big', [big(n)], { via: 'http', claims })));
    await hub.writer.drain();
    const read: Envelope[] = [];
    let pages = 0;
    let after: string | undefined;
    for (;;) {
      const { messages, next } = await hub.history('big', after, 1000);
      pages += 1;
      const bytes = messages.reduce((sum, m) => sum + dataBytes(m), 0);
      assert.ok(bytes <= HISTORY_PAGE_BYTES, `page ${pages}: ${bytes} bytes of data`);
      read.push(...messages);
      if (next === null) break;
      assert.equal(next, messages.at(-1)?.cursor);
      after = next;
    }
    assert.ok(pages >= 3, `${pages} pages`);
    assert.deepEqual(
      read.map((m) => m.id),
      acks.map((a) => a.id),
    );
    // A short last page says null; a page cut by the limit says where to go on.
    assert.equal((await hub.history('big', acks[37]?.cursor, 1000)).next, null);
    assert.equal((await hub.history('big', acks[37]?.cursor, 1)).next, acks[38]?.cursor);
    await inner.close();
  });

  it('resumes one topic in pages of HISTORY_PAGE_BYTES, sending every message once, in order', async () => {
    const inner = memoryStore();
    const { store, seen, subscriber } = watched(inner);
    const hub = testHub(store);
    const [first] = await hub.publish('big', [{ data: 'start' }], { via: 'http', claims });
    const acks = [];
    for (let n = 0; n < 40; n++) acks.push(...(await hub.publish('big', [big(n)], { via: 'http', claims })));
    await hub.writer.drain();
    await hub.subscribe(subscriber, 'big', first?.cursor);
    assert.deepEqual(
      subscriber.ids(),
      acks.map((a) => a.id),
    );
    assert.ok(seen.largestPage <= HISTORY_PAGE_BYTES, `a page of ${seen.largestPage} bytes`);
    assert.ok(seen.bytes <= HISTORY_PAGE_BYTES, `${seen.bytes} bytes read before the first frame`);
    await inner.close();
  });

  it('resumes a pattern over many topics holding a bounded number of messages before it sends', async () => {
    const inner = memoryStore();
    const { store, seen, subscriber } = watched(inner);
    const hub = testHub(store);
    const [first] = await hub.publish('many.start', [{ data: 'start' }], { via: 'http', claims });
    const topics = 400;
    const acks = [];
    for (let round = 0; round < 4; round++) {
      for (let t = 0; t < topics; t++) {
        const items = Array.from({ length: 25 }, (_, n) => ({ data: round * 25 + n }));
        acks.push(...(await hub.publish(`many.t${t}`, items, { via: 'http', claims })));
      }
    }
    await hub.writer.drain();
    await hub.subscribe(subscriber, 'many.>', first?.cursor);
    assert.deepEqual(
      subscriber.ids(),
      acks.map((a) => a.id),
      'all 40,000, in cursor order across topics',
    );
    assert.ok(seen.messages <= RESUME_MESSAGES, `${seen.messages} messages read before the first frame`);
    await inner.close();
  });

  it('resumes a pattern over many topics of large messages within the resume byte budget', async () => {
    const inner = memoryStore();
    const { store, seen, subscriber } = watched(inner);
    const hub = testHub(store);
    const [first] = await hub.publish('wide.start', [{ data: 'start' }], { via: 'http', claims });
    const topics = 100;
    const pad = 'y'.repeat(20 * 1024);
    const acks = [];
    for (let t = 0; t < topics; t++) {
      const items = Array.from({ length: 20 }, (_, n) => ({ data: { n, pad } }));
      acks.push(...(await hub.publish(`wide.t${t}`, items, { via: 'http', claims })));
    }
    await hub.writer.drain();
    await hub.subscribe(subscriber, 'wide.*', first?.cursor);
    assert.equal(subscriber.ids().length, acks.length);
    assert.deepEqual(new Set(subscriber.ids()), new Set(acks.map((a) => a.id)));
    // The budget, plus one message per topic past its share (a page holds one always).
    const bound = RESUME_BYTES + topics * (pad.length + 64);
    assert.ok(seen.bytes <= bound, `${seen.bytes} bytes read before the first frame (bound ${bound})`);
    await inner.close();
  });
});
