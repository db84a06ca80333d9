import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { dataBytes, type Envelope, HISTORY_PAGE_BYTES } from '@anode/shared';
import { openSocket } from '../../../test/helpers/ws.ts';
import { type EdgeRuntime, QUICK_CLOSE, startEdge } from '../../test-support/edge-runtime.ts';
import { type LinkFrame, startStandInRelay } from '../link/stand-in-relay.fixture.ts';

type Page = { messages: Envelope[]; next: string | null };

async function post(edge: EdgeRuntime, topic: string, body: unknown): Promise<{ id: string; cursor: string }[]> {
  const response = await fetch(`${edge.url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 202, await response.clone().text());
  return ((await response.json()) as { messages: { id: string; cursor: string }[] }).messages;
}

const getPage = async (edge: EdgeRuntime, topic: string, query: string): Promise<Page> => {
  const response = await fetch(`${edge.url}/v1/topics/${topic}/messages?${query}`);
  assert.equal(response.status, 200);
  return (await response.json()) as Page;
};

/**
 * PROTOCOL.md: a history page holds at most `limit` messages and 4 MiB of `data` (one message
 * always). The edge returned up to `limit` messages whatever their size, and read the whole ring
 * (or outbox) for a page, a resume or `latest`: with 1 MiB messages, more than an object's memory.
 */
describe('edge history on workerd: pages bounded by bytes (no relay)', () => {
  let edge: EdgeRuntime;
  before(async () => {
    edge = await startEdge({ MAX_SEND_BUFFER_BYTES: String(3 * 1024 * 1024) });
  });
  after(() => edge.stop());

  it('cuts a page at 4 MiB of data with `next` set; following `next` gets the rest, each once', async () => {
    const topic = 'bytes.page';
    const big = 'x'.repeat(1_000_000);
    const acks: { id: string; cursor: string }[] = [];
    for (let i = 0; i < 6; i++) acks.push(...(await post(edge, topic, { data: `${i}:${big}` })));

    const seen: string[] = [];
    let query = 'limit=100';
    for (let pages = 0; pages < 10; pages++) {
      const page = await getPage(edge, topic, query);
      const bytes = page.messages.reduce((n, m) => n + dataBytes(m), 0);
      assert.ok(page.messages.length > 0, 'a page holds one message at least');
      assert.ok(bytes <= HISTORY_PAGE_BYTES, `page ${pages}: ${page.messages.length} messages, ${bytes} bytes`);
      seen.push(...page.messages.map((m) => m.id));
      if (page.next === null) break;
      assert.equal(page.next, page.messages.at(-1)?.cursor);
      query = `after=${page.next}&limit=100`;
    }
    assert.deepEqual(
      seen,
      acks.map((a) => a.id),
    );
  });

  it('sets `next` only when more follow', async () => {
    const acks = await post(edge, 'bytes.small', [{ data: 1 }, { data: 2 }, { data: 3 }]);
    const full = await getPage(edge, 'bytes.small', 'limit=2');
    assert.equal(full.next, acks[1]?.cursor);
    const rest = await getPage(edge, 'bytes.small', `after=${full.next}&limit=2`);
    assert.deepEqual(
      rest.messages.map((m) => m.data),
      [3],
    );
    assert.equal(rest.next, null);
  });

  it('cuts a resume at its send budget while reading, and resuming again continues', async () => {
    const topic = 'bytes.resume';
    const big = 'y'.repeat(1_000_000);
    const acks: { id: string; cursor: string }[] = [];
    for (let i = 0; i < 5; i++) acks.push(...(await post(edge, topic, { data: `${i}:${big}` })));
    const got: string[] = [];
    let from = '0';
    for (let tries = 0; tries < 5 && got.length < acks.length; tries++) {
      const socket = await openSocket(`${edge.wsUrl}/v1/topics/${topic}/ws?after=${from}`, QUICK_CLOSE);
      const live = await socket
        .next((f) => f.op === 'subscribed', 30_000)
        .then(
          () => true,
          () => false,
        );
      if (live) socket.close();
      else assert.equal((await socket.closed).code, 4001);
      const msgs = socket.frames.flatMap((f) => (f.op === 'msg' ? [f] : []));
      assert.ok(msgs.length > 0 || live, 'a resume sends one message at least');
      got.push(...msgs.map((m) => m.id));
      from = msgs.at(-1)?.cursor ?? from;
    }
    assert.deepEqual(
      got,
      acks.map((a) => a.id),
    );
  });

  it('answers latest with the newest message of each source (by ts, then id)', async () => {
    const topic = 'bytes.latest';
    await post(edge, topic, [
      { data: 'a-old', source: 'a', ts: 1 },
      { data: 'a-new', source: 'a', ts: 5 },
      { data: 'b-new', source: 'b', ts: 9 },
      { data: 'a-mid', source: 'a', ts: 3 },
      { data: 'b-old', source: 'b', ts: 2 },
    ]);
    const response = await fetch(`${edge.url}/v1/topics/${topic}/latest`);
    assert.equal(response.status, 200);
    const { sources } = (await response.json()) as { sources: Record<string, Envelope> };
    assert.deepEqual(Object.fromEntries(Object.entries(sources).map(([source, m]) => [source, m.data])), {
      a: 'a-new',
      b: 'b-new',
    });
  });
});

/**
 * A relay still catching the link up (no `subscribed`) and not storing the edge's publishes yet (no
 * ack): HTTP history comes from its pages. A review: a publish the edge acked with a cursor below
 * the relay page's newest (a message minted elsewhere after it) was in no page, the relay's last
 * page being topped up only with what the edge held after its newest.
 */
describe('edge history on workerd linked: the relay’s pages and the edge’s own publishes', () => {
  const LINK_SECRET = 'unit-test-link-secret-0123';
  const elsewhere: Envelope[] = [];
  /** The relay's newest message per source, by topic, in source order. */
  const relayLatest = new Map<string, Envelope[]>();
  /** Topics whose next page the relay answers with one message and `next` (it found more just after reading). */
  const shortOnce = new Set<string>();
  let relay: Awaited<ReturnType<typeof startStandInRelay>>;
  let edge: EdgeRuntime;
  before(async () => {
    relay = await startStandInRelay({
      secret: LINK_SECRET,
      node: 'scripted',
      onFrame(frame, link) {
        if (frame.op === 'latest') {
          // One page as a relay answers it: the sources after `after_source`, at most `limit`,
          // `next` only while more follow.
          const { after_source: after = '', limit = 1000 } = frame as LinkFrame & {
            after_source?: string;
            limit?: number;
          };
          const all = (relayLatest.get(link.topic) ?? []).filter((m) => m.source > after);
          const page = all.slice(0, limit);
          const next = all.length > page.length ? page.at(-1)?.source : undefined;
          link.send({
            op: 'latest',
            ref: frame.ref,
            sources: Object.fromEntries(page.map((m) => [m.source, m])),
            next,
          });
          return;
        }
        if (frame.op !== 'history') return;
        const { after = '0', limit = 100 } = frame as LinkFrame & { limit?: number };
        const newer = elsewhere.filter((m) => m.topic === link.topic && m.cursor > after);
        const short = shortOnce.delete(link.topic);
        const messages = newer.slice(0, short ? 1 : limit);
        link.send({
          op: 'history',
          ref: frame.ref,
          messages,
          next: newer.length > messages.length ? messages.at(-1)?.cursor : null,
        });
      },
    });
    edge = await startEdge({ RELAY_URLS: relay.url, LINK_SECRET, LINK_WAIT_MS: '1000', LINK_RETRY_MAX_MS: '200' });
  });
  after(async () => {
    await edge?.stop();
    await relay?.stop();
  });

  it('merges a publish the relay has not stored into the page its cursor falls in, full pages too', async () => {
    const topic = 'merge.held';
    const socket = await openSocket(`${edge.wsUrl}/v1/ws`);
    socket.send({ op: 'sub', topic, ref: 's' });
    await socket.next((f) => f.op === 'subscribed');
    await post(edge, topic, { data: 'held' }); // acked, not stored at the relay
    for (const data of ['m1', 'm2', 'm3']) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      const ms = Date.now();
      const cursor = `${ms.toString(16).padStart(12, '0')}0000-relay2`;
      elsewhere.push({ id: `m${data}${'0'.repeat(21)}`, topic, cursor, source: 'feed', ts: ms, data });
    }
    const seen: unknown[] = [];
    let query = 'limit=2';
    for (let pages = 0; pages < 5; pages++) {
      const page = await getPage(edge, topic, query);
      seen.push(...page.messages.map((m) => m.data));
      if (page.next === null) break;
      query = `after=${page.next}&limit=2`;
    }
    assert.deepEqual(seen, ['held', 'm1', 'm2', 'm3']);
    socket.close();
  });

  it('asks on past a short relay page with `next`, so one page holds what it can: the edge’s own publishes too', async () => {
    // A CI run: 4 messages posted to a linked edge, then one GET: the relay had stored the first
    // when it read its page, found the others just after (`next` set), and the edge, merging its
    // own up to `next` only, answered 1 message of the 4 it had acked.
    const topic = 'merge.short';
    const socket = await openSocket(`${edge.wsUrl}/v1/ws`);
    socket.send({ op: 'sub', topic, ref: 's' });
    await socket.next((f) => f.op === 'subscribed');
    const ms = Date.now() - 1_000;
    for (const [i, data] of ['r1', 'r2', 'r3'].entries()) {
      const cursor = `${(ms + i).toString(16).padStart(12, '0')}0000-relay2`;
      elsewhere.push({ id: `${data}${'0'.repeat(20)}`, topic, cursor, source: 'feed', ts: ms, data });
    }
    await post(edge, topic, [{ data: 'held1' }, { data: 'held2' }]); // acked here, above the relay's
    shortOnce.add(topic);
    const page = await getPage(edge, topic, 'limit=100');
    assert.deepEqual(
      page.messages.map((m) => m.data),
      ['r1', 'r2', 'r3', 'held1', 'held2'],
    );
    assert.equal(page.next, null);
    assert.equal(shortOnce.has(topic), false, 'the relay was asked');
    socket.close();
  });
  it('pages latest over the link, merging each unforwarded publish into the page its source falls in', async () => {
    const topic = 'merge.latest';
    const socket = await openSocket(`${edge.wsUrl}/v1/ws`);
    socket.send({ op: 'sub', topic, ref: 's' });
    await socket.next((f) => f.op === 'subscribed');
    const cursor = `${(Date.now() - 1_000).toString(16).padStart(12, '0')}0000-relay2`;
    relayLatest.set(
      topic,
      ['a', 'c', 'e'].map((source, i) => ({
        id: `${source}${i}${'0'.repeat(20)}`,
        topic,
        cursor,
        source,
        ts: 1,
        data: `relay-${source}`,
      })),
    );
    // Acked here, not stored at the relay (it never acks): in the outbox. `c` is newer than the relay's.
    await post(
      edge,
      topic,
      ['b', 'c', 'd'].map((source) => ({ source, ts: 2, data: `edge-${source}` })),
    );
    const pages: Record<string, unknown>[] = [];
    const nexts: (string | undefined)[] = [];
    let query = 'limit=2';
    for (let i = 0; i < 6; i++) {
      const response = await fetch(`${edge.url}/v1/topics/${topic}/latest?${query}`);
      assert.equal(response.status, 200);
      const page = (await response.json()) as { sources: Record<string, Envelope>; next?: string };
      pages.push(Object.fromEntries(Object.entries(page.sources).map(([source, m]) => [source, m.data])));
      nexts.push(page.next);
      if (page.next === undefined) break;
      query = `limit=2&after_source=${page.next}`;
    }
    assert.deepEqual(pages, [{ a: 'relay-a', b: 'edge-b' }, { c: 'edge-c', d: 'edge-d' }, { e: 'relay-e' }]);
    assert.deepEqual(nexts, ['b', 'd', undefined]);
    socket.close();
  });
});
