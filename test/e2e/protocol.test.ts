import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Envelope, type MessageStore, type ServerFrame, signToken } from '@anode/shared';
import { MAX_DATA_DEPTH, MAX_KEY_LENGTH } from '@anode/shared';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket, type RawSocket } from '../helpers/ws.ts';

/**
 * PROTOCOL.md end to end against real relays: every client and server frame, every error code
 * over WebSocket and HTTP, and every HTTP route. Only the store is ever replaced, by the named
 * fault-injecting wrappers below.
 */

type Frame<Op extends ServerFrame['op']> = Extract<ServerFrame, { op: Op }>;
type ErrorBody = { error: { code: string; message: string } };
type Acks = { messages: { id: string; cursor: string }[] };
type Page = { messages: Envelope[]; next: string | null };

const SECRET = 'protocol-test-secret-at-least-32-characters';

const withRef = (ref: string) => (f: ServerFrame) => 'ref' in f && f.ref === ref;
const isOp =
  <Op extends ServerFrame['op']>(op: Op) =>
  (f: ServerFrame): f is Frame<Op> =>
    f.op === op;

async function request(url: string, init: RequestInit = {}): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: text.length > 0 ? JSON.parse(text) : undefined };
}

const post = (relay: TestRelay, topic: string, body: unknown, headers: Record<string, string> = {}) =>
  request(`${relay.url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

function assertHttpError(res: { status: number; body: unknown }, status: number, code: string): string {
  assert.equal(res.status, status, JSON.stringify(res.body));
  const { error } = res.body as ErrorBody;
  assert.equal(error.code, code);
  assert.equal(typeof error.message, 'string');
  return error.message;
}

/** Sends a frame with a ref and returns the single error frame answering it. */
async function errFor(sock: RawSocket, frame: Record<string, unknown>, ref: string): Promise<Frame<'err'>> {
  sock.send({ ...frame, ref });
  const reply = await sock.next(withRef(ref));
  assert.equal(reply.op, 'err', `expected err for ${JSON.stringify(frame)}, got ${JSON.stringify(reply)}`);
  return reply as Frame<'err'>;
}

/** A ping round trip: every frame sent before it has been handled (frames are handled in order). */
async function roundTrip(sock: RawSocket, ref = `rt-${Math.random()}`): Promise<void> {
  sock.send({ op: 'ping', ref });
  await sock.next(withRef(ref));
}

/** The upgrade must be refused with an HTTP status and the protocol's JSON error body. */
async function refusedUpgrade(url: string, headers: Record<string, string> = {}) {
  const failure = await openSocket(url, { headers }).then(
    (sock) => {
      sock.close();
      throw new Error(`upgrade to ${url} was accepted`);
    },
    (error: { status?: number; body?: string }) => error,
  );
  assert.ok(failure.status, `no HTTP status in ${String(failure)}`);
  return { status: failure.status, error: (JSON.parse(failure.body ?? '') as ErrorBody).error };
}

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function metricValue(relay: TestRelay, name: string): Promise<number> {
  const text = await (await fetch(`${relay.url}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) total += Number(line.split(' ').at(-1));
  }
  return total;
}

describe('protocol frames', () => {
  let relay: TestRelay;
  let sock: RawSocket;
  before(async () => {
    relay = await startRelay();
    sock = await openSocket(`${relay.wsUrl}/v1/ws`);
  });
  after(async () => {
    sock.close();
    await relay.stop();
  });

  it('answers ping with pong echoing ref', async () => {
    sock.send({ op: 'ping', ref: 'ping-1' });
    assert.deepEqual(await sock.next(withRef('ping-1')), { op: 'pong', ref: 'ping-1' });
  });

  it('answers sub with subscribed, pub with ack, and delivers msg with the full envelope', async () => {
    sock.send({ op: 'sub', topic: 'frames.a', ref: 'sub-1' });
    const subscribed = await sock.next<Frame<'subscribed'>>(withRef('sub-1'));
    assert.equal(subscribed.op, 'subscribed');
    assert.equal(subscribed.topic, 'frames.a');
    assert.equal(typeof subscribed.cursor, 'string');

    sock.send({ op: 'pub', topic: 'frames.a', data: { n: 1 }, source: 'sensor-7', ts: 1234, ref: 'pub-1' });
    const ack = await sock.next<Frame<'ack'>>(withRef('pub-1'));
    assert.equal(ack.op, 'ack');
    const msg = await sock.next<Frame<'msg'>>(isOp('msg'));
    assert.deepEqual(msg, {
      op: 'msg',
      id: ack.id,
      topic: 'frames.a',
      cursor: ack.cursor,
      source: 'sensor-7',
      ts: 1234,
      data: { n: 1 },
    });
    assert.ok(ack.cursor > subscribed.cursor, 'a live message sorts after the subscribed cursor');
  });

  it('fills in source and ts when a publish leaves them out', async () => {
    const before = Date.now();
    sock.send({ op: 'pub', topic: 'frames.a', data: null, ref: 'pub-2' });
    await sock.next(withRef('pub-2'));
    const msg = await sock.next<Frame<'msg'>>(isOp('msg'));
    assert.equal(msg.source, 'anonymous');
    assert.ok(msg.ts >= before && msg.ts <= Date.now(), `ts ${msg.ts} assigned on ingest`);
    assert.equal(msg.data, null);
  });

  it('unsub stops delivery; a refused unsub echoes its ref in the err', async () => {
    sock.send({ op: 'unsub', topic: 'frames.a', ref: 'unsub-1' });
    await roundTrip(sock);
    sock.send({ op: 'pub', topic: 'frames.a', data: 'unseen', ref: 'pub-3' });
    await sock.next(withRef('pub-3'));
    await roundTrip(sock);
    assert.equal(sock.frames.filter((f) => f.op === 'msg' && f.data === 'unseen').length, 0);

    const err = await errFor(sock, { op: 'unsub', topic: 'bad..topic' }, 'unsub-2');
    assert.equal(err.code, 'bad_topic');
  });

  it('gives err frames the ref of the frame they answer', async () => {
    const err = await errFor(sock, { op: 'pub', topic: 'frames.a' }, 'pub-no-data');
    assert.deepEqual(Object.keys(err).sort(), ['code', 'message', 'op', 'ref']);
    assert.equal(err.code, 'bad_frame');
  });
});

describe('error codes', () => {
  describe('bad_frame', () => {
    let relay: TestRelay;
    let sock: RawSocket;
    before(async () => {
      relay = await startRelay();
      sock = await openSocket(`${relay.wsUrl}/v1/ws`);
    });
    after(async () => {
      sock.close();
      await relay.stop();
    });

    it('refuses non-JSON, non-object, unknown-op, missing-data, wrongly typed and bad-after frames', async () => {
      const cases: [string, string][] = [
        ['not json at all', 'not JSON'],
        ['{"op":"ping"', 'truncated JSON'],
        ['[1,2,3]', 'an array'],
        ['42', 'a number'],
        ['null', 'null'],
        ['{"topic":"a"}', 'no op'],
        ['{"op":"shout","topic":"a"}', 'unknown op'],
        ['{"op":"pub","topic":"a"}', 'missing data'],
        ['{"op":"pub","topic":7,"data":1}', 'topic of the wrong type'],
        ['{"op":"pub","topic":"a","data":1,"ts":-5}', 'negative ts'],
        ['{"op":"pub","topic":"a","data":1,"ts":1.5}', 'fractional ts'],
        ['{"op":"pub","topic":"a","data":1,"source":""}', 'empty source'],
        ['{"op":"sub","topic":"a","after":"yesterday"}', 'bad after'],
        ['{"op":"sub","topic":"a","after":12}', 'after of the wrong type'],
        [`{"op":"ping","ref":"${'r'.repeat(129)}"}`, 'ref too long'],
      ];
      for (const [text, what] of cases) {
        sock.sendRaw(text);
        const reply = await sock.next();
        assert.equal(reply.op, 'err', what);
        assert.equal((reply as Frame<'err'>).code, 'bad_frame', what);
      }
      await roundTrip(sock);
    });

    it('echoes the ref of a malformed frame when it can be read', async () => {
      const err = await errFor(sock, { op: 'sub', topic: 'a', after: 'nope' }, 'bad-after');
      assert.equal(err.code, 'bad_frame');
      assert.match(err.message, /after/);
    });

    it('refuses binary frames, even ones holding a valid frame', async () => {
      sock.sendRaw(Buffer.from(JSON.stringify({ op: 'ping', ref: 'bin-1' })), true);
      const err = await sock.next<Frame<'err'>>(withRef('bin-1'));
      assert.equal(err.op, 'err');
      assert.equal(err.code, 'bad_frame');
      assert.match(err.message, /binary/);
      await roundTrip(sock);
    });

    it('refuses a text frame that is not valid UTF-8 and keeps the connection open', async () => {
      const bytes = [Buffer.from('{"op":"ping","ref":"utf8-'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')];
      sock.sendRaw(Buffer.concat(bytes));
      const err = await sock.next<Frame<'err'>>(isOp('err'));
      assert.equal(err.code, 'bad_frame');
      assert.match(err.message, /UTF-8/);
      await roundTrip(sock);
    });

    it('refuses data nested deeper than the relay stores, without failing the publishes batched with it', async () => {
      const deep = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
      const sub = await openSocket(`${relay.wsUrl}/v1/ws`);
      sub.send({ op: 'sub', topic: 'deep', ref: 'sub' });
      await sub.next(withRef('sub'));
      // Sent in one go, so that before the depth check they shared one storage batch.
      sock.sendRaw(`{"op":"pub","topic":"deep","data":${deep(10_000)},"ref":"far-too-deep"}`);
      sock.sendRaw(`{"op":"pub","topic":"deep","data":${deep(MAX_DATA_DEPTH + 1)},"ref":"too-deep"}`);
      sock.sendRaw(`{"op":"pub","topic":"deep","data":${deep(MAX_DATA_DEPTH)},"ref":"deepest"}`);
      sock.send({ op: 'pub', topic: 'deep', data: 'plain', ref: 'plain' });
      for (const ref of ['far-too-deep', 'too-deep']) {
        const reply = await sock.next(withRef(ref));
        assert.equal(reply.op === 'err' && reply.code, 'bad_frame', JSON.stringify(reply));
      }
      const acks = [await sock.next(withRef('deepest')), await sock.next(withRef('plain'))] as Frame<'ack'>[];
      assert.deepEqual(
        acks.map((a) => a.op),
        ['ack', 'ack'],
      );
      const body = `[{"data":"fine"},{"data":${deep(10_000)}}]`;
      assertHttpError(await post(relay, 'deep', body), 400, 'bad_frame');

      await roundTrip(sub);
      const delivered = sub.frames.filter(isOp('msg'));
      assert.deepEqual(
        delivered.map((m) => m.id),
        acks.map((a) => a.id),
      );
      assert.equal(JSON.stringify(delivered[0]?.data), deep(MAX_DATA_DEPTH));
      sub.close();
    });

    it('refuses the same nesting over WebSocket and HTTP: 1,000 levels taken, 1,001 refused, in any member', async () => {
      const nest = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
      for (const depth of [MAX_DATA_DEPTH, MAX_DATA_DEPTH + 1]) {
        for (const members of [`"data":${nest(depth)}`, `"data":1,"extra":${nest(depth)}`]) {
          const what = `${members.slice(0, 20)}… at ${depth}`;
          const expected = depth > MAX_DATA_DEPTH ? 'bad_frame' : 'ok';
          const ref = `nest-${depth}-${members.length}`;
          sock.sendRaw(`{"op":"pub","topic":"nest.ws","ref":"${ref}",${members}}`);
          const reply = await sock.next(withRef(ref));
          assert.equal(reply.op === 'err' ? reply.code : 'ok', expected, `WebSocket: ${what}`);
          for (const body of [`{${members}}`, `[{${members}}]`]) {
            const res = await post(relay, 'nest.http', body);
            const code = res.status === 202 ? 'ok' : (res.body as ErrorBody).error.code;
            assert.equal(code, expected, `HTTP ${body.slice(0, 22)}… at ${depth}`);
          }
        }
      }
    });

    it('refuses bad HTTP bodies and queries with 400', async () => {
      assertHttpError(await post(relay, 'a', '{not json'), 400, 'bad_frame');
      assertHttpError(await post(relay, 'a', {}), 400, 'bad_frame');
      assertHttpError(await post(relay, 'a', []), 400, 'bad_frame');
      assertHttpError(await post(relay, 'a', { data: 1, ts: 'now' }), 400, 'bad_frame');
      assertHttpError(await request(`${relay.url}/v1/topics/a/messages?after=nope`), 400, 'bad_frame');
      assertHttpError(await request(`${relay.url}/v1/topics/a/messages?limit=lots`), 400, 'bad_frame');
      const tooMany = assertHttpError(await request(`${relay.url}/v1/topics/a/messages?limit=1001`), 400, 'bad_frame');
      assert.equal(tooMany, 'limit: at most 1000');
      assertHttpError(await request(`${relay.url}/v1/nowhere`), 404, 'bad_frame');
    });

    it('refuses a WebSocket upgrade with a bad after or to an unknown path', async () => {
      const badAfter = await refusedUpgrade(`${relay.wsUrl}/v1/topics/a/ws?after=nope`);
      assert.equal(badAfter.status, 400);
      assert.equal(badAfter.error.code, 'bad_frame');
      const unknown = await refusedUpgrade(`${relay.wsUrl}/v1/elsewhere`);
      assert.equal(unknown.status, 400);
      assert.equal(unknown.error.code, 'bad_frame');
    });
  });

  describe('too_large', () => {
    let relay: TestRelay;
    before(async () => {
      relay = await startRelay({ 'max-message-bytes': '1000', 'max-frame-bytes': '6000', 'max-body-bytes': '6000' });
    });
    after(() => relay.stop());

    it('answers a WS frame over max-frame-bytes, or a message over max-message-bytes, with err and keeps the connection open', async () => {
      const sock = await openSocket(`${relay.wsUrl}/v1/ws`);
      sock.send({ op: 'pub', topic: 'big', data: 'x'.repeat(7000), ref: 'big-1' });
      const err = await sock.next<Frame<'err'>>(isOp('err'));
      assert.equal(err.code, 'too_large');
      sock.send({ op: 'pub', topic: 'big', data: 'x'.repeat(2000), ref: 'big-2' });
      const overMessage = await sock.next<Frame<'err'>>(withRef('big-2'));
      assert.deepEqual([overMessage.op, overMessage.code], ['err', 'too_large']);
      sock.send({ op: 'pub', topic: 'big', data: 'x'.repeat(998), ref: 'fits' });
      assert.equal((await sock.next(withRef('fits'))).op, 'ack');
      await roundTrip(sock);
      sock.close();
    });

    it('answers an HTTP body over max-body-bytes, or a message over max-message-bytes, with 413', async () => {
      const body = assertHttpError(await post(relay, 'big', { data: 'x'.repeat(7000) }), 413, 'too_large');
      assert.match(body, /^body exceeds max_body_bytes \(\d+ bytes\)$/);
      assertHttpError(await post(relay, 'big', { data: 'x'.repeat(2000) }), 413, 'too_large');
      assertHttpError(await post(relay, 'big', [{ data: 1 }, { data: 'x'.repeat(999) }]), 413, 'too_large');
      assert.equal((await post(relay, 'big', { data: 'x'.repeat(998) })).status, 202);
      const status = (await request(`${relay.url}/v1/status`)).body as { node: { max_message_bytes: number } };
      assert.equal(status.node.max_message_bytes, 1000);
    });
  });

  describe('bad_topic', () => {
    let relay: TestRelay;
    let sock: RawSocket;
    before(async () => {
      relay = await startRelay();
      sock = await openSocket(`${relay.wsUrl}/v1/ws`);
    });
    after(async () => {
      sock.close();
      await relay.stop();
    });

    it('refuses bad topics and patterns over WS', async () => {
      const frames = [
        { op: 'pub', topic: 'a..b', data: 1 },
        { op: 'pub', topic: 'a.*', data: 1 },
        { op: 'pub', topic: 'spaced out', data: 1 },
        { op: 'pub', topic: 'a.b.c.d.e.f.g.h.i', data: 1 },
        { op: 'pub', topic: 'x'.repeat(65), data: 1 },
        { op: 'sub', topic: '' },
        { op: 'sub', topic: 'a.>.b' },
        { op: 'sub', topic: 'a.b*' },
      ];
      for (const [i, frame] of frames.entries()) {
        assert.equal((await errFor(sock, frame, `topic-${i}`)).code, 'bad_topic', JSON.stringify(frame));
      }
    });

    it('refuses bad topics over HTTP and on the one-topic WebSocket', async () => {
      assertHttpError(await post(relay, 'bad$topic', { data: 1 }), 400, 'bad_topic');
      assertHttpError(await request(`${relay.url}/v1/topics/a..b/messages`), 400, 'bad_topic');
      assertHttpError(await request(`${relay.url}/v1/topics/a.*/latest`), 400, 'bad_topic');
      const refused = await refusedUpgrade(`${relay.wsUrl}/v1/topics/bad$topic/ws`);
      assert.equal(refused.status, 400);
      assert.equal(refused.error.code, 'bad_topic');
    });
  });

  describe('unauthorized and forbidden', () => {
    let relay: TestRelay;
    let token: string;
    before(async () => {
      relay = await startRelay({ 'jwt-secret': SECRET, 'max-subscriptions': '3' });
      token = await signToken(SECRET, { pub: ['a.>'], sub: ['a.*'], subject: 'alice' });
    });
    after(() => relay.stop());

    const auth = (t: string) => ({ authorization: `Bearer ${t}` });

    it('refuses a WS upgrade without, with a bad, and with an expired token with 401 and a JSON error', async () => {
      const wrongKey = await signToken('some-other-secret-that-is-long-enough!!', { pub: ['>'], sub: ['>'] });
      const expired = await signToken(SECRET, { pub: ['>'], sub: ['>'] }, '-60s');
      const attempts = [
        await refusedUpgrade(`${relay.wsUrl}/v1/ws`),
        await refusedUpgrade(`${relay.wsUrl}/v1/ws`, auth('not-a-jwt')),
        await refusedUpgrade(`${relay.wsUrl}/v1/ws?token=${wrongKey}`),
        await refusedUpgrade(`${relay.wsUrl}/v1/topics/a.b/ws`, auth(expired)),
      ];
      for (const { status, error } of attempts) {
        assert.equal(status, 401);
        assert.equal(error.code, 'unauthorized');
      }
      assert.match(attempts[3]?.error.message ?? '', /expired/);
    });

    it('refuses HTTP requests without a valid token with 401', async () => {
      const expired = await signToken(SECRET, { pub: ['>'], sub: ['>'] }, '-60s');
      assertHttpError(await post(relay, 'a.b', { data: 1 }), 401, 'unauthorized');
      assertHttpError(await post(relay, 'a.b', { data: 1 }, auth(expired)), 401, 'unauthorized');
      assertHttpError(await request(`${relay.url}/v1/topics/a.b/messages`), 401, 'unauthorized');
      assertHttpError(
        await request(`${relay.url}/v1/topics/a.b/latest`, { headers: auth('x.y.z') }),
        401,
        'unauthorized',
      );
    });

    it('closes a connection whose token expires with 4002', async () => {
      // Whole seconds: `2s` leaves at least one second to connect before it expires.
      const shortLived = await signToken(SECRET, { pub: ['a.>'], sub: ['a.*'] }, '2s');
      const sock = await openSocket(`${relay.wsUrl}/v1/ws`, { headers: auth(shortLived) });
      await roundTrip(sock);
      const closed = await within(sock.closed, 5_000, 'the close on expiry');
      assert.equal(closed.code, 4002);
    });

    it('forbids publishing and subscribing outside the token claims, over WS and HTTP', async () => {
      const sock = await openSocket(`${relay.wsUrl}/v1/ws?token=${token}`);
      assert.equal((await errFor(sock, { op: 'pub', topic: 'b.x', data: 1 }, 'f1')).code, 'forbidden');
      assert.equal((await errFor(sock, { op: 'sub', topic: 'b.x' }, 'f2')).code, 'forbidden');
      assert.equal((await errFor(sock, { op: 'sub', topic: 'a.>' }, 'f3')).code, 'forbidden');
      sock.send({ op: 'pub', topic: 'a.x.y', data: 1, ref: 'ok-pub' });
      assert.equal((await sock.next(withRef('ok-pub'))).op, 'ack');
      sock.close();

      assertHttpError(await post(relay, 'b.x', { data: 1 }, auth(token)), 403, 'forbidden');
      assertHttpError(await request(`${relay.url}/v1/topics/b.x/messages`, { headers: auth(token) }), 403, 'forbidden');
      assertHttpError(await request(`${relay.url}/v1/topics/b.x/latest`, { headers: auth(token) }), 403, 'forbidden');
      const refused = await refusedUpgrade(`${relay.wsUrl}/v1/topics/b.x/ws`, auth(token));
      assert.equal(refused.status, 403);
      assert.equal(refused.error.code, 'forbidden');
    });

    it('refuses more subscriptions than max-subscriptions per connection with limit_reached', async () => {
      const sock = await openSocket(`${relay.wsUrl}/v1/ws`, { headers: auth(token) });
      for (const topic of ['a.one', 'a.two', 'a.three']) {
        sock.send({ op: 'sub', topic, ref: topic });
        assert.equal((await sock.next(withRef(topic))).op, 'subscribed');
      }
      const err = await errFor(sock, { op: 'sub', topic: 'a.four' }, 'fourth');
      assert.equal(err.code, 'limit_reached');
      assert.match(err.message, /limit/);
      sock.send({ op: 'sub', topic: 'a.two', ref: 'again' });
      assert.equal((await sock.next(withRef('again'))).op, 'subscribed', 'resubscribing is not a new subscription');
      sock.send({ op: 'unsub', topic: 'a.one' });
      sock.send({ op: 'sub', topic: 'a.four', ref: 'after-unsub' });
      assert.equal((await sock.next(withRef('after-unsub'))).op, 'subscribed');
      sock.close();
    });
  });

  describe('rate_limited', () => {
    const RATE = 1;
    const BURST = 3;
    let relay: TestRelay;
    before(async () => {
      relay = await startRelay({ 'publish-rate': String(RATE), 'publish-burst': String(BURST) });
    });
    after(() => relay.stop());

    /** The most publishes a bucket can allow since `startedAt`. */
    const allowance = (startedAt: number) => BURST + Math.ceil(((performance.now() - startedAt) / 1000) * RATE);

    it('refuses WS publishes over the rate and burst, per frame, with the ref', async () => {
      const sock = await openSocket(`${relay.wsUrl}/v1/ws`);
      const startedAt = performance.now();
      for (let i = 0; i < 10; i++) sock.send({ op: 'pub', topic: 'rl', data: i, ref: `p${i}` });
      const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => sock.next(withRef(`p${i}`))));
      const acked = replies.filter((r) => r.op === 'ack').length;
      const limited = replies.filter((r) => r.op === 'err' && r.code === 'rate_limited').length;
      assert.equal(acked + limited, 10);
      assert.ok(acked >= BURST && acked <= allowance(startedAt), `${acked} acked`);
      assert.equal(replies[0]?.op, 'ack');
      assert.equal(replies[9]?.op, 'err');
      sock.close();
    });

    it('refuses HTTP publishes over the rate and burst with 429', async () => {
      const startedAt = performance.now();
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const res = await post(relay, 'rl', { data: i });
        statuses.push(res.status);
        if (res.status !== 202) assertHttpError(res, 429, 'rate_limited');
      }
      const accepted = statuses.filter((s) => s === 202).length;
      assert.ok(accepted >= BURST && accepted <= allowance(startedAt), `statuses ${statuses}`);
      assert.equal(statuses.at(-1), 429);
    });
  });

  describe('retention of a busy topic', () => {
    it('trims a topic that outgrew its limit before the sweep interval comes round', async () => {
      // A ten-minute interval: only the schedule's catch-up (retention-schedule.ts) can trim in time.
      const relay = await startRelay({ 'retention-max-messages': '50', 'retention-sweep-ms': '600000' });
      try {
        for (let batch = 0; batch < 4; batch++) {
          const res = await post(
            relay,
            'busy',
            Array.from({ length: 100 }, (_, i) => ({ data: batch * 100 + i })),
          );
          assert.equal(res.status, 202);
        }
        const page = async () => (await request(`${relay.url}/v1/topics/busy/messages?limit=500`)).body as Page;
        await eventually(async () => (await page()).messages.length === 50, 'a sweep before the interval');
        assert.deepEqual(
          (await page()).messages.map((m) => m.data),
          Array.from({ length: 50 }, (_, i) => 350 + i),
          'the newest 50 are kept',
        );
      } finally {
        await relay.stop();
      }
    });
  });

  describe('cursor_expired', () => {
    let relay: TestRelay;
    let cursors: string[];
    before(async () => {
      relay = await startRelay({ 'retention-max-messages': '5', 'retention-sweep-ms': '50' });
      const res = await post(
        relay,
        'ret.a',
        Array.from({ length: 20 }, (_, i) => ({ data: i })),
      );
      assert.equal(res.status, 202);
      cursors = (res.body as Acks).messages.map((m) => m.cursor);
      await eventually(
        async () => ((await request(`${relay.url}/v1/topics/ret.a/messages`)).body as Page).messages.length === 5,
        'the retention sweep',
      );
    });
    after(() => relay.stop());

    it('refuses a WS resume from a cursor older than retention', async () => {
      const sock = await openSocket(`${relay.wsUrl}/v1/ws`);
      const err = await errFor(sock, { op: 'sub', topic: 'ret.a', after: cursors[0] }, 'old');
      assert.equal(err.code, 'cursor_expired');
      assert.equal(
        (await errFor(sock, { op: 'sub', topic: 'ret.*', after: cursors[0] }, 'old-pattern')).code,
        'cursor_expired',
      );
      await roundTrip(sock);
      assert.equal(sock.frames.filter((f) => f.op === 'msg').length, 0, 'no partial history before the error');
      sock.close();
    });

    it('refuses the one-topic WebSocket resume and the HTTP page with 410', async () => {
      const sock = await openSocket(`${relay.wsUrl}/v1/topics/ret.a/ws?after=${cursors[0]}`);
      const err = await sock.next<Frame<'err'>>(isOp('err'));
      assert.equal(err.code, 'cursor_expired');
      sock.close();
      assertHttpError(
        await request(`${relay.url}/v1/topics/ret.a/messages?after=${cursors[0]}`),
        410,
        'cursor_expired',
      );
    });

    it('still resumes from the last trimmed cursor onwards, with no gap', async () => {
      const sock = await openSocket(`${relay.wsUrl}/v1/ws`);
      sock.send({ op: 'sub', topic: 'ret.a', after: cursors[14], ref: 'resume' });
      const subscribed = await sock.next<Frame<'subscribed'>>(withRef('resume'));
      const replayed = sock.frames.filter(isOp('msg')).map((m) => m.cursor);
      assert.deepEqual(replayed, cursors.slice(15));
      assert.equal(subscribed.cursor, cursors[19]);
      sock.close();
    });
  });

  describe('unavailable', () => {
    /** Fault-injection test double: the real store, except that appends reject while `failing`. */
    const faulty = { failing: false };
    const withFailingAppends = (store: MessageStore): MessageStore => ({
      ...store,
      append: (messages) =>
        faulty.failing ? Promise.reject(new Error('injected: disk full')) : store.append(messages),
      health: async () => (faulty.failing ? { ok: false, detail: 'injected fault' } : store.health()),
    });

    let relay: TestRelay;
    before(async () => {
      relay = await startRelay({}, { wrapStore: withFailingAppends });
    });
    after(() => relay.stop());

    it('refuses publishes while storage fails, delivers none of them, and recovers', async () => {
      const sub = await openSocket(`${relay.wsUrl}/v1/ws`);
      sub.send({ op: 'sub', topic: 'fragile', ref: 's' });
      await sub.next(withRef('s'));
      const pub = await openSocket(`${relay.wsUrl}/v1/ws`);

      faulty.failing = true;
      const err = await errFor(pub, { op: 'pub', topic: 'fragile', data: 'lost' }, 'during');
      assert.equal(err.code, 'unavailable');
      assert.doesNotMatch(err.message, /disk full/);
      assertHttpError(await post(relay, 'fragile', { data: 'lost' }), 503, 'unavailable');
      assert.equal((await request(`${relay.url}/healthz`)).status, 503);
      assert.equal(await metricValue(relay, 'anode_store_up'), 0);

      faulty.failing = false;
      assert.equal((await request(`${relay.url}/healthz`)).status, 200);
      pub.send({ op: 'pub', topic: 'fragile', data: 'kept', ref: 'after' });
      assert.equal((await pub.next(withRef('after'))).op, 'ack');
      assert.equal(
        (await sub.next<Frame<'msg'>>(isOp('msg'))).data,
        'kept',
        'the refused publishes were never delivered',
      );
      assert.equal(await metricValue(relay, 'anode_store_up'), 1);
      const page = (await request(`${relay.url}/v1/topics/fragile/messages`)).body as Page;
      assert.deepEqual(
        page.messages.map((m) => m.data),
        ['kept'],
      );
      sub.close();
      pub.close();
    });

    it('anode_store_up follows the store health at each scrape, with no publish between', async () => {
      faulty.failing = true;
      try {
        assert.equal(await metricValue(relay, 'anode_store_up'), 0);
      } finally {
        faulty.failing = false;
      }
      assert.equal(await metricValue(relay, 'anode_store_up'), 1);
    });
  });

  describe('internal', () => {
    const LEAK = 'SECRET-DETAIL /var/lib/anode/messages.sqlite';
    /** Fault-injection test double: history throws a plain Error carrying details that must not leak. */
    const withBrokenHistory = (store: MessageStore): MessageStore => ({
      ...store,
      history: async () => {
        throw new Error(LEAK);
      },
    });

    let relay: TestRelay;
    before(async () => {
      relay = await startRelay({}, { wrapStore: withBrokenHistory });
    });
    after(() => relay.stop());

    it('answers an unexpected failure with internal and no detail, over HTTP and WS', async () => {
      const message = assertHttpError(await request(`${relay.url}/v1/topics/t/messages`), 500, 'internal');
      assert.doesNotMatch(message, /SECRET|sqlite/);

      const sock = await openSocket(`${relay.wsUrl}/v1/ws`);
      const err = await errFor(sock, { op: 'sub', topic: 't', after: '0' }, 'resume');
      assert.equal(err.code, 'internal');
      assert.doesNotMatch(err.message, /SECRET|sqlite/);
      await roundTrip(sock);
      sock.close();
    });
  });
});

describe('HTTP routes', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay();
  });
  after(() => relay.stop());

  it('accepts a single message and an array with 202, ids and ascending cursors', async () => {
    const single = await post(relay, 'http.a', { data: { x: 1 } });
    assert.equal(single.status, 202);
    const one = (single.body as Acks).messages;
    assert.equal(one.length, 1);
    assert.equal(typeof one[0]?.id, 'string');

    const many = await post(relay, 'http.a', [{ data: 1 }, { data: 2, source: 's' }, { data: 3, ts: 7 }]);
    assert.equal(many.status, 202);
    const acks = (many.body as Acks).messages;
    assert.equal(acks.length, 3);
    assert.equal(new Set(acks.map((a) => a.id)).size, 3);
    const cursors = acks.map((a) => a.cursor);
    assert.deepEqual([...cursors].sort(), cursors);
    assert.ok((one[0]?.cursor ?? '') < (cursors[0] ?? ''));

    const page = (await request(`${relay.url}/v1/topics/http.a/messages`)).body as Page;
    assert.deepEqual(
      page.messages.map((m) => [m.id, m.data]),
      [[one[0]?.id, { x: 1 }], ...acks.map((a, i) => [a.id, i + 1])],
    );
    assert.equal(page.messages[2]?.source, 's');
    assert.equal(page.messages[3]?.ts, 7);
  });

  it('dedups by Idempotency-Key: the same id and cursor, stored once', async () => {
    const first = await post(relay, 'http.idem', { data: 'once' }, { 'idempotency-key': 'order-42' });
    const second = await post(relay, 'http.idem', { data: 'twice' }, { 'idempotency-key': 'order-42' });
    const inBody = await post(relay, 'http.idem', { data: 'thrice', key: 'order-42' });
    assert.equal(first.status, 202);
    assert.equal(second.status, 202);
    assert.deepEqual(second.body, first.body);
    assert.deepEqual(inBody.body, first.body, 'the header stands for the body key');
    const page = (await request(`${relay.url}/v1/topics/http.idem/messages`)).body as Page;
    assert.deepEqual(
      page.messages.map((m) => m.data),
      ['once'],
    );
    assertHttpError(
      await post(relay, 'http.idem', [{ data: 1 }, { data: 2 }], { 'idempotency-key': 'k' }),
      400,
      'bad_frame',
    );
  });

  it('holds the Idempotency-Key header to the body key limits (1 to 256 characters)', async () => {
    const long = 'k'.repeat(MAX_KEY_LENGTH + 1);
    assert.match(
      assertHttpError(await post(relay, 'http.idem-long', { data: 1 }, { 'idempotency-key': long }), 400, 'bad_frame'),
      /Idempotency-Key/,
    );
    assertHttpError(await post(relay, 'http.idem-long', { data: 1, key: long }), 400, 'bad_frame');
    const ok = await post(relay, 'http.idem-long', { data: 1 }, { 'idempotency-key': 'k'.repeat(MAX_KEY_LENGTH) });
    assert.equal(ok.status, 202);
  });

  it('refuses a body that is not valid UTF-8 instead of storing replacement characters', async () => {
    const body = Buffer.concat([Buffer.from('{"data":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('b"}')]);
    const res = await request(`${relay.url}/v1/topics/http.utf8/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    assert.match(assertHttpError(res, 400, 'bad_frame'), /UTF-8/);
    const page = (await request(`${relay.url}/v1/topics/http.utf8/messages`)).body as Page;
    assert.deepEqual(page.messages, []);
    assert.equal((await post(relay, 'http.utf8', { data: 'é' })).status, 202, 'valid UTF-8 still goes through');
  });

  it('takes a body with a leading UTF-8 byte order mark, as the edge does', async () => {
    const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"data":"bom"}')]);
    const res = await request(`${relay.url}/v1/topics/http.bom/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const page = (await request(`${relay.url}/v1/topics/http.bom/messages`)).body as Page;
    assert.deepEqual(
      page.messages.map((m) => m.data),
      ['bom'],
    );
  });

  it('pages history with after and limit, and next is null at the end', async () => {
    const res = await post(
      relay,
      'http.page',
      Array.from({ length: 5 }, (_, i) => ({ data: i })),
    );
    const cursors = (res.body as Acks).messages.map((m) => m.cursor);
    const seen: unknown[] = [];
    const nexts: (string | null)[] = [];
    let after = '';
    for (let i = 0; i < 5; i++) {
      const page = (await request(`${relay.url}/v1/topics/http.page/messages?limit=2${after}`)).body as Page;
      seen.push(...page.messages.map((m) => m.data));
      nexts.push(page.next);
      if (page.next === null) break;
      after = `&after=${page.next}`;
    }
    assert.deepEqual(seen, [0, 1, 2, 3, 4]);
    assert.deepEqual(nexts, [cursors[1], cursors[3], null]);
    const tail = (await request(`${relay.url}/v1/topics/http.page/messages?after=${cursors[4]}`)).body as Page;
    assert.deepEqual(tail, { messages: [], next: null });
    const empty = (await request(`${relay.url}/v1/topics/never.used/messages`)).body as Page;
    assert.deepEqual(empty, { messages: [], next: null });
  });

  it('keeps the newest message by ts per source: an older ts never replaces a newer one', async () => {
    const publish = (source: string, ts: number, data: string) => post(relay, 'http.latest', { source, ts, data });
    await publish('s1', 2000, 's1-newest');
    await publish('s1', 1000, 's1-older');
    await publish('s2', 500, 's2-first');
    await publish('s2', 900, 's2-newest');
    await publish('s1', 1999, 's1-almost');
    const { sources } = (await request(`${relay.url}/v1/topics/http.latest/latest`)).body as {
      sources: Record<string, Envelope>;
    };
    assert.deepEqual(Object.keys(sources).sort(), ['s1', 's2']);
    assert.equal(sources.s1?.data, 's1-newest');
    assert.equal(sources.s1?.ts, 2000);
    assert.equal(sources.s2?.data, 's2-newest');
    assert.deepEqual((await request(`${relay.url}/v1/topics/never.used/latest`)).body, { sources: {} });
  });

  it('refuses source names that are object internals (the source grammar), storing nothing', async () => {
    for (const source of ['__proto__', 'constructor', 'toString']) {
      assertHttpError(await post(relay, 'http.names', { source, ts: 1, data: source }), 400, 'bad_frame');
    }
    const { sources } = (await request(`${relay.url}/v1/topics/http.names/latest`)).body as {
      sources: Record<string, Envelope>;
    };
    assert.deepEqual(Object.keys(sources), []);
  });

  it('serves /healthz, /metrics and /v1/status', async () => {
    assert.deepEqual(await request(`${relay.url}/healthz`), { status: 200, body: { ok: true } });

    const res = await fetch(`${relay.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(await res.text(), /^anode_messages_published_total/m);
    const before = await metricValue(relay, 'anode_messages_published_total');
    await post(relay, 'http.metrics', [{ data: 1 }, { data: 2 }, { data: 3 }]);
    await post(relay, 'http.metrics', { data: 4 }, { 'idempotency-key': 'm' });
    await post(relay, 'http.metrics', { data: 4 }, { 'idempotency-key': 'm' });
    assert.equal(await metricValue(relay, 'anode_messages_published_total'), before + 4, 'duplicates excluded');

    const status = await request(`${relay.url}/v1/status`);
    assert.equal(status.status, 200);
    const { node } = status.body as { node: { id: string; version: string; uptime_s: number } };
    assert.match(node.id, /^[a-z0-9]+$/);
    assert.equal(typeof node.version, 'string');
    assert.ok(node.version.length > 0);
    assert.ok(Number.isInteger(node.uptime_s) && node.uptime_s >= 0);
  });

  it('grants no CORS unless cors_origins names origins', async () => {
    const preflight = await fetch(`${relay.url}/v1/topics/http.cors/messages`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
    });
    await preflight.body?.cancel();
    assert.equal(preflight.headers.get('access-control-allow-origin'), null);
    const simple = await fetch(`${relay.url}/v1/topics/http.cors/messages`, {
      headers: { origin: 'https://app.example' },
    });
    await simple.body?.cancel();
    assert.equal(simple.status, 200);
    assert.equal(simple.headers.get('access-control-allow-origin'), null);
  });
});
