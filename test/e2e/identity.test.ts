import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { contentId, type Envelope, signToken } from '@anode/shared';
import { type Feeds, startFeeds, waitFor } from '../helpers/feeds.ts';
import { history, startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

/**
 * Who a message says it is from (issue 12, items 7 and 10, and PROTOCOL.md "Auth"): the source
 * is bound to the token, pulled sources' names are reserved, `ts` cannot run ahead, and names
 * the rest of the system refuses cannot enter here either. A real relay with auth on and one
 * pulled http source.
 */
const SECRET = 'identity-e2e-jwt-secret-0123456789abcdef';
const LINK_SECRET = 'identity-e2e-link-secret-0123';
const PULLED = 'feed-a';
const ADMIN_TOKEN = 'identity-e2e-admin-token';

describe('identity: the source is bound to the token', () => {
  let feeds: Feeds;
  let relay: TestRelay;
  const tokens: Record<string, string> = {};

  const post = async (token: string, topic: string, body: unknown) => {
    const res = await fetch(`${relay.url}/v1/topics/${topic}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    return {
      status: res.status,
      body: (await res.json()) as { error?: { code: string }; messages?: { id: string }[] },
    };
  };
  const stored = async (topic: string) => {
    const res = await fetch(`${relay.url}/v1/topics/${topic}/messages?limit=1000`, {
      headers: { authorization: `Bearer ${tokens.reader}` },
    });
    return ((await res.json()) as { messages: Envelope[] }).messages;
  };

  before(async () => {
    feeds = await startFeeds({ window: 10 });
    const source = {
      name: PULLED,
      kind: 'http',
      url: feeds.httpUrl(PULLED),
      interval_ms: 100,
      topic: 'pulled.a',
      items_path: '$.items',
      id_path: '$.id',
      ts_path: '$.ts',
    };
    relay = await startRelay({
      'jwt-secret': SECRET,
      'edge-link-secret': LINK_SECRET,
      'edge-url': 'http://127.0.0.1:9',
      'admin-token': ADMIN_TOKEN,
      sources: JSON.stringify([source]),
    });
    tokens.ticker = await signToken(SECRET, { subject: 'ticker-42', pub: ['>'] });
    tokens.bots = await signToken(SECRET, { subject: 'svc', pub: ['>'], src: ['bots.*'] });
    tokens.everything = await signToken(SECRET, { subject: 'root', pub: ['>'], src: ['>'] });
    tokens.emptySubject = await signToken(SECRET, { subject: '', pub: ['>'] });
    tokens.hugeSubject = await signToken(SECRET, { subject: 'x'.repeat(5_000), pub: ['>'] });
    tokens.noSubject = await signToken(SECRET, { pub: ['>'] });
    tokens.reader = await signToken(SECRET, { subject: 'reader', sub: ['>'] });
  });

  after(async () => {
    await relay?.stop();
    await feeds?.stop();
  });

  it('stamps a publish without source with the subject; the subject (or anode.src) may be named, nothing else', async () => {
    assert.equal((await post(tokens.ticker as string, 'id.http', { data: 1 })).status, 202);
    assert.equal((await post(tokens.ticker as string, 'id.http', { data: 2, source: 'ticker-42' })).status, 202);
    const other = await post(tokens.ticker as string, 'id.http', { data: 3, source: 'ticker-43' });
    assert.deepEqual([other.status, other.body.error?.code], [403, 'forbidden']);
    assert.equal((await post(tokens.bots as string, 'id.http', { data: 4, source: 'bots.a' })).status, 202);
    for (const source of ['svc', 'bots', 'bots.a.b']) {
      assert.equal((await post(tokens.bots as string, 'id.http', { data: 5, source })).status, 403, source);
    }
    assert.equal((await post(tokens.noSubject as string, 'id.http', { data: 6 })).status, 202);
    assert.deepEqual(
      (await stored('id.http')).map((m) => [m.data, m.source]),
      [
        [1, 'ticker-42'],
        [2, 'ticker-42'],
        [4, 'bots.a'],
        [6, 'anonymous'],
      ],
    );
  });

  it('binds WebSocket publishes the same way', async () => {
    const socket = await openSocket(`${relay.wsUrl}/v1/ws?token=${tokens.ticker}`);
    socket.send({ op: 'pub', topic: 'id.ws', data: 'mine', ref: 'a' });
    await socket.next((f) => f.op === 'ack' && f.ref === 'a');
    socket.send({ op: 'pub', topic: 'id.ws', data: 'theirs', source: 'someone-else', ref: 'b' });
    const refused = await socket.next((f) => f.op === 'err' && f.ref === 'b');
    assert.equal(refused.op === 'err' && refused.code, 'forbidden');
    socket.close();
    assert.deepEqual(
      (await stored('id.ws')).map((m) => [m.data, m.source]),
      [['mine', 'ticker-42']],
    );
  });

  it('refuses a token subject that is not a source name ("" or 5,000 characters) as the source', async () => {
    for (const token of [tokens.emptySubject, tokens.hugeSubject] as string[]) {
      const res = await post(token, 'id.subject', { data: 1 });
      assert.deepEqual([res.status, res.body.error?.code], [403, 'forbidden']);
    }
    assert.deepEqual(await stored('id.subject'), []);
  });

  it("reserves a pulled source's name: its future item ids cannot be forged, its items arrive as pulled", async () => {
    // The id the relay will give the feed's next item (the item id is the idempotency key).
    const forged = contentId('pulled.a', PULLED, 'item-1');
    for (const token of [tokens.everything, tokens.ticker] as string[]) {
      const res = await post(token, 'pulled.a', { data: 'forged', source: PULLED, key: 'item-1' });
      assert.deepEqual([res.status, res.body.error?.code], [403, 'forbidden']);
    }
    const socket = await openSocket(`${relay.wsUrl}/v1/ws?token=${tokens.everything}`);
    socket.send({ op: 'pub', topic: 'pulled.a', data: 'forged', source: PULLED, key: 'item-1', ref: 'f' });
    const refused = await socket.next((f) => f.op === 'err' && f.ref === 'f');
    assert.equal(refused.op === 'err' && refused.code, 'forbidden');
    socket.close();

    feeds.push(PULLED, { id: 'item-1', ts: Date.now(), v: 'real' });
    await waitFor(async () => (await stored('pulled.a')).length > 0, 10_000, 'the pulled item');
    const [item] = await stored('pulled.a');
    assert.equal(item?.id, forged);
    assert.equal(item?.source, PULLED);
    assert.deepEqual((item?.data as { v: string }).v, 'real');
  });

  it('sends a pulled item that breaks the message contract (ts a day ahead) to the dead-letter topic, not to its topic', async () => {
    feeds.push(PULLED, { id: 'item-future', ts: Date.now() + 24 * 3600_000, v: 'pin' });
    await waitFor(async () => (await stored('sources.dead-letter')).length > 0, 10_000, 'the dead letter');
    const [dead] = await stored('sources.dead-letter');
    const letter = dead?.data as { reason: string; id: string; data: { v: string } };
    assert.match(letter.reason, /^bad_frame: ts: more than 60000 ms in the future/);
    assert.equal(letter.id, 'item-future');
    assert.equal(letter.data.v, 'pin');
    assert.ok((dead?.ts ?? Infinity) <= Date.now(), 'the dead letter itself is stamped now');
    assert.deepEqual(
      (await stored('pulled.a')).map((m) => (m.data as { v: string }).v),
      ['real'],
    );
  });

  it('refuses a ts more than 60 s ahead, so latest cannot be pinned', async () => {
    for (const ts of [Date.now() + 10 * 60_000, 8.64e15]) {
      const res = await post(tokens.ticker as string, 'id.latest', { data: 'pin', ts });
      assert.deepEqual([res.status, res.body.error?.code], [400, 'bad_frame']);
    }
    assert.equal((await post(tokens.ticker as string, 'id.latest', { data: 'now', ts: Date.now() })).status, 202);
    assert.equal((await post(tokens.ticker as string, 'id.latest', { data: 'later', ts: Date.now() + 1 })).status, 202);
    const res = await fetch(`${relay.url}/v1/topics/id.latest/latest`, {
      headers: { authorization: `Bearer ${tokens.reader}` },
    });
    const { sources } = (await res.json()) as { sources: Record<string, Envelope> };
    assert.equal(sources['ticker-42']?.data, 'later');
  });

  it('refuses source definitions named __proto__ or constructor (the source grammar), so none is lost or unreplicated', async () => {
    for (const name of ['__proto__', 'constructor', 'a..b']) {
      const res = await fetch(`${relay.url}/v1/admin/sources`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
        body: JSON.stringify({ name, kind: 'http', url: feeds.httpUrl('x'), interval_ms: 1000, topic: 'defs.x' }),
      });
      assert.equal(res.status, 400, name);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'bad_frame');
    }
    const listed = (await (
      await fetch(`${relay.url}/v1/admin/sources`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).json()) as { sources: { name: string }[] };
    assert.deepEqual(
      listed.sources.map((s) => s.name),
      [PULLED],
    );
  });

  it('answers a malformed %-escape in a WebSocket topic with 400 and a code, not 500', async () => {
    await assert.rejects(
      openSocket(`${relay.wsUrl}/v1/topics/a%E0%A4%A/ws?token=${tokens.reader}`),
      (error: unknown) => {
        const { status, body } = error as { status: number; body: string };
        assert.equal(status, 400);
        // bad_topic, as the HTTP routes and the edge answer it (PROTOCOL.md: a bad topic).
        assert.equal((JSON.parse(body) as { error: { code: string } }).error.code, 'bad_topic');
        return true;
      },
    );
  });

  it('answers an edge dial request naming an invalid origin with 403 forbidden (not the pinned edge_url), not 500', async () => {
    for (const origin of ['http://[bad', 'http://a b', 'ftp://x']) {
      const res = await fetch(`${relay.url}/v1/edge/dial?topic=a.b&edge=${encodeURIComponent(origin)}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${LINK_SECRET}` },
      });
      assert.equal(res.status, 403, origin);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'forbidden');
    }
  });
});

describe('identity with auth off: pulled names are still reserved', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({
      sources: JSON.stringify([{ name: 'feed-b', kind: 'http', url: 'http://127.0.0.1:1/none', topic: 'pulled.b' }]),
    });
  });
  after(() => relay.stop());

  it('refuses a publish naming a pulled source and accepts any other name', async () => {
    const post = (source: string) =>
      fetch(`${relay.url}/v1/topics/pulled.b/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data: 1, source }),
      });
    assert.equal((await post('feed-b')).status, 403);
    assert.equal((await post('someone')).status, 202);
    assert.deepEqual(
      (await history(relay.url, 'pulled.b')).map((m) => m.source),
      ['someone'],
    );
  });
});
