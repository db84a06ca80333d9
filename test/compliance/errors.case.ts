import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { MAX_DATA_DEPTH, signToken } from '@anode/shared';
import { LIMITS, METRICS_TOKEN } from './targets.ts';
import {
  assertHttpError,
  bearer,
  type Case,
  errFor,
  eventually,
  type Frame,
  fresh,
  get,
  isOp,
  post,
  publish,
  refusedUpgrade,
  roundTrip,
  tokenFor,
  topicSocket,
  within,
  withRef,
} from './support.ts';

/** Every error code of PROTOCOL.md that a client can provoke, over WebSocket and HTTP. */
export const errorCases: Case[] = [
  {
    name: 'bad_frame: malformed, mistyped and out-of-range frames, and the connection stays open',
    async run(target) {
      const topic = fresh('bf');
      const sock = await topicSocket(target, topic, await tokenFor('bad-framer'));
      const cases: [string, string][] = [
        ['not json at all', 'not JSON'],
        ['{"op":"ping"', 'truncated JSON'],
        ['[1,2,3]', 'an array'],
        ['42', 'a number'],
        ['null', 'null'],
        ['{"topic":"a"}', 'no op'],
        ['{"op":"shout","topic":"a"}', 'unknown op'],
        [`{"op":"pub","topic":"${topic}"}`, 'missing data'],
        ['{"op":"pub","topic":7,"data":1}', 'topic of the wrong type'],
        [`{"op":"pub","topic":"${topic}","data":1,"ts":-5}`, 'negative ts'],
        [`{"op":"pub","topic":"${topic}","data":1,"ts":1.5}`, 'fractional ts'],
        [`{"op":"pub","topic":"${topic}","data":1,"source":""}`, 'empty source'],
        [`{"op":"sub","topic":"${topic}","after":"yesterday"}`, 'bad after'],
        [`{"op":"sub","topic":"${topic}","after":12}`, 'after of the wrong type'],
        [`{"op":"ping","ref":"${'r'.repeat(129)}"}`, 'ref too long'],
      ];
      for (const [text, what] of cases) {
        sock.sendRaw(text);
        const reply = await sock.next(isOp('err'));
        assert.equal((reply as Frame<'err'>).code, 'bad_frame', what);
      }
      const err = await errFor(sock, { op: 'sub', topic, after: 'nope' }, 'bad-after');
      assert.equal(err.code, 'bad_frame');
      assert.match(err.message, /after/);
      await roundTrip(sock);
      sock.close();
    },
  },
  {
    name: 'bad_frame: binary frames are refused with the ref they carry',
    async run(target) {
      const sock = await topicSocket(target, fresh('bf'), await tokenFor('binary'));
      sock.sendRaw(Buffer.from(JSON.stringify({ op: 'ping', ref: 'bin-1' })), true);
      const err = await sock.next<Frame<'err'>>(withRef('bin-1'));
      assert.equal(err.op, 'err');
      assert.equal(err.code, 'bad_frame');
      assert.match(err.message, /binary/);
      await roundTrip(sock);
      sock.close();
    },
  },
  {
    name: 'bad_frame: data nested deeper than the limit, alone and in an HTTP batch',
    async run(target) {
      const topic = fresh('bf');
      const token = await tokenFor('nester');
      const deep = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
      const sock = await topicSocket(target, topic, token);
      await sock.next(isOp('subscribed'));
      // Deep but small: the message limit here (1000 B) is below MAX_DATA_DEPTH's 2000 B of brackets.
      sock.sendRaw(`{"op":"pub","topic":"${topic}","data":${deep(MAX_DATA_DEPTH + 1)},"ref":"too-deep"}`);
      sock.sendRaw(`{"op":"pub","topic":"${topic}","data":${deep(400)},"ref":"deepest"}`);
      // Any field counts, not only data: the frame is scanned before it is parsed.
      sock.sendRaw(`{"op":"pub","topic":"${topic}","data":1,"extra":${deep(MAX_DATA_DEPTH + 1)},"ref":"deep-extra"}`);
      const tooDeep = await sock.next(withRef('too-deep'));
      assert.equal(tooDeep.op === 'err' && tooDeep.code, 'bad_frame', JSON.stringify(tooDeep));
      const deepExtra = await sock.next(withRef('deep-extra'));
      assert.equal(deepExtra.op === 'err' && deepExtra.code, 'bad_frame', JSON.stringify(deepExtra));
      assert.equal((await sock.next(withRef('deepest'))).op, 'ack');
      assertHttpError(
        await post(target, topic, `[{"data":"fine"},{"data":${deep(MAX_DATA_DEPTH + 1)}}]`, token),
        400,
        'bad_frame',
      );
      sock.close();
    },
  },
  {
    name: 'bad_frame: bad HTTP bodies, queries and unknown routes',
    async run(target) {
      const token = await tokenFor('bad-http');
      const topic = fresh('bf');
      assertHttpError(await post(target, topic, '{not json', token), 400, 'bad_frame');
      assertHttpError(await post(target, topic, {}, token), 400, 'bad_frame');
      assertHttpError(await post(target, topic, [], token), 400, 'bad_frame');
      assertHttpError(await post(target, topic, { data: 1, ts: 'now' }, token), 400, 'bad_frame');
      assertHttpError(await post(target, topic, { data: 1, ts: Date.now() + 10 * 60_000 }, token), 400, 'bad_frame');
      for (const source of ['__proto__', 'constructor', 'toString']) {
        assertHttpError(await post(target, topic, { source, ts: 1, data: source }, token), 400, 'bad_frame');
      }
      assertHttpError(await get(target, `/v1/topics/${topic}/messages?after=nope`, token), 400, 'bad_frame');
      assertHttpError(await get(target, `/v1/topics/${topic}/messages?limit=lots`, token), 400, 'bad_frame');
      const tooMany = assertHttpError(
        await get(target, `/v1/topics/${topic}/messages?limit=1001`, token),
        400,
        'bad_frame',
      );
      assert.equal(tooMany, 'limit: at most 1000');
      for (const query of ['limit=0', 'limit=1001', 'limit=x', 'after_source=', 'after_source=a%20b']) {
        assertHttpError(await get(target, `/v1/topics/${topic}/latest?${query}`, token), 400, 'bad_frame');
      }
      assertHttpError(await get(target, '/v1/nowhere'), 404, 'bad_frame');
      // Not valid UTF-8: refused, never stored with replacement characters.
      const invalid = Buffer.concat([Buffer.from('{"data":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('b"}')]);
      assertHttpError(await post(target, topic, invalid, token), 400, 'bad_frame');
      // The Idempotency-Key header is held to a key's limits (1 to 256 characters).
      assertHttpError(
        await post(target, topic, { data: 1 }, token, { 'idempotency-key': 'k'.repeat(257) }),
        400,
        'bad_frame',
      );
      const sources = (await get(target, `/v1/topics/${topic}/latest`, token)).body as { sources: object };
      assert.deepEqual(sources, { sources: {} }, 'nothing refused was stored');
    },
  },
  {
    name: 'bad_frame: a WebSocket upgrade with a bad after',
    async run(target) {
      const token = await tokenFor('bad-upgrade');
      const badAfter = await refusedUpgrade(`${target.wsUrl}/v1/topics/a/ws?after=nope`, bearer(token));
      assert.equal(badAfter.status, 400);
      assert.equal(badAfter.error.code, 'bad_frame');
    },
  },
  {
    name: 'too_large: a frame over the frame limit or a message over the message limit, connection kept',
    async run(target) {
      const topic = fresh('tl');
      const token = await tokenFor('large');
      const sock = await topicSocket(target, topic, token);
      sock.send({ op: 'pub', topic, data: 'x'.repeat(LIMITS.maxFrameBytes + 1000), ref: 'big-1' });
      const overFrame = await sock.next<Frame<'err'>>(isOp('err'));
      assert.equal(overFrame.code, 'too_large');
      assert.match(
        overFrame.message,
        new RegExp(`exceeds max_frame_bytes \\(${LIMITS.maxFrameBytes}\\); .*max_message_bytes`),
      );
      sock.send({ op: 'pub', topic, data: 'x'.repeat(LIMITS.maxMessageBytes * 2), ref: 'big-2' });
      const overMessage = await sock.next<Frame<'err'>>(withRef('big-2'));
      assert.deepEqual([overMessage.op, overMessage.code], ['err', 'too_large']);
      sock.send({ op: 'pub', topic, data: 'x'.repeat(LIMITS.maxMessageBytes - 2), ref: 'fits' });
      assert.equal((await sock.next(withRef('fits'))).op, 'ack');
      await roundTrip(sock);
      sock.close();
    },
  },
  {
    name: 'too_large: HTTP bodies over the body limit and messages over the message limit get 413',
    async run(target) {
      const topic = fresh('tl');
      const token = await tokenFor('large-http');
      const body = assertHttpError(
        await post(target, topic, { data: 'x'.repeat(LIMITS.maxBodyBytes + 1000) }, token),
        413,
        'too_large',
      );
      // The relay's setting is max_body_bytes, the edge's MAX_BODY_BYTES.
      assert.match(
        body,
        new RegExp(`^body exceeds (max_body_bytes|MAX_BODY_BYTES) \\(${LIMITS.maxBodyBytes} bytes\\)$`),
      );
      assertHttpError(
        await post(target, topic, { data: 'x'.repeat(LIMITS.maxMessageBytes * 2) }, token),
        413,
        'too_large',
      );
      const batch = [{ data: 1 }, { data: 'x'.repeat(LIMITS.maxMessageBytes - 1) }];
      assertHttpError(await post(target, topic, batch, token), 413, 'too_large');
      assert.equal((await post(target, topic, { data: 'x'.repeat(LIMITS.maxMessageBytes - 2) }, token)).status, 202);
      const status = (await get(target, '/v1/status', METRICS_TOKEN)).body as { node: { max_message_bytes?: number } };
      assert.equal(status.node.max_message_bytes, LIMITS.maxMessageBytes, '/v1/status tells max_message_bytes');
    },
  },
  {
    name: 'bad_topic: bad topics and patterns in frames, routes and upgrades',
    async run(target) {
      const token = await tokenFor('topical');
      const topic = fresh('bt');
      const sock = await topicSocket(target, topic, token);
      const frames = [
        { op: 'pub', topic: 'a..b', data: 1 },
        { op: 'pub', topic: 'a.*', data: 1 },
        { op: 'pub', topic: 'spaced out', data: 1 },
        { op: 'pub', topic: 'a.b.c.d.e.f.g.h.i', data: 1 },
        { op: 'pub', topic: 'x'.repeat(65), data: 1 },
        { op: 'sub', topic: '' },
        { op: 'sub', topic: 'a.>.b' },
        { op: 'sub', topic: 'a.b*' },
        { op: 'unsub', topic: 'bad..topic' },
      ];
      for (const [i, frame] of frames.entries()) {
        assert.equal((await errFor(sock, frame, `topic-${i}`)).code, 'bad_topic', JSON.stringify(frame));
      }
      const badPattern = await errFor(sock, { op: 'sub', topic: 'a.#' }, 'pattern-rule');
      assert.equal(
        badPattern.message,
        'bad pattern segment "#": use [A-Za-z0-9_-]{1,64}, * for exactly one segment, or > as the last for one or more',
      );
      sock.close();
      assertHttpError(await post(target, 'bad$topic', { data: 1 }, token), 400, 'bad_topic');
      assertHttpError(await get(target, '/v1/topics/a..b/messages', token), 400, 'bad_topic');
      assertHttpError(await get(target, '/v1/topics/a.*/latest', token), 400, 'bad_topic');
      const refused = await refusedUpgrade(`${target.wsUrl}/v1/topics/bad$topic/ws`, bearer(token));
      assert.equal(refused.status, 400);
      assert.equal(refused.error.code, 'bad_topic');
    },
  },
  {
    name: 'unauthorized: upgrades and requests without, with a bad, or with an expired token',
    async run(target) {
      const wrongKey = await signToken('another-secret-that-is-long-enough!!!!', { pub: ['>'], sub: ['>'] });
      const expired = await tokenFor('late', {}, '-60s');
      const url = `${target.wsUrl}/v1/topics/au.a/ws`;
      const attempts = [
        await refusedUpgrade(url),
        await refusedUpgrade(url, bearer('not-a-jwt')),
        await refusedUpgrade(`${url}?token=${wrongKey}`),
        await refusedUpgrade(url, bearer(expired)),
      ];
      for (const { status, error } of attempts) {
        assert.equal(status, 401);
        assert.equal(error.code, 'unauthorized');
      }
      assert.match(attempts[3]?.error.message ?? '', /expired/);
      assertHttpError(await post(target, 'au.a', { data: 1 }), 401, 'unauthorized');
      assertHttpError(await post(target, 'au.a', { data: 1 }, expired), 401, 'unauthorized');
      assertHttpError(await get(target, '/v1/topics/au.a/messages'), 401, 'unauthorized');
      assertHttpError(await get(target, '/v1/topics/au.a/latest', 'x.y.z'), 401, 'unauthorized');
      // ?token= is for WebSocket URLs only: a plain request carrying one is refused, saying so.
      const good = await tokenFor('query');
      const inQuery = await get(target, `/v1/topics/au.a/messages?token=${good}`);
      assertHttpError(inQuery, 401, 'unauthorized');
      assert.match(JSON.stringify(inQuery.body), /WebSocket URLs only/);
      // An Upgrade header does not make a history URL a WebSocket one (the edge took the token).
      const upgraded = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(`${target.url}/v1/topics/au.a/messages?token=${good}`, {
          headers: { upgrade: 'websocket', connection: 'Upgrade' },
        });
        req.on('response', (res) => (res.resume(), resolve(res.statusCode ?? 0)));
        req.on('upgrade', (res, socket) => (socket.destroy(), resolve(res.statusCode ?? 0)));
        req.on('error', reject);
        req.end();
      });
      // Refused: 401 for the token (edge), or 400 for an upgrade of no WebSocket URL (relay).
      assert.ok([400, 401].includes(upgraded), `a history request with an Upgrade header got ${upgraded}`);
    },
  },
  {
    name: 'auth_expired: a connection whose token expires is closed with 4002',
    async run(target) {
      const shortLived = await tokenFor('brief', {}, '2s');
      const sock = await topicSocket(target, fresh('au'), shortLived);
      await roundTrip(sock);
      const closed = await within(sock.closed, 6_000, 'the close on expiry');
      assert.equal(closed.code, 4002);
    },
  },
  {
    name: 'forbidden: publishing, subscribing and sourcing outside the token grants',
    async run(target) {
      const token = await tokenFor('alice', { pub: ['fb.a.>'], sub: ['fb.a.*'], src: ['alice', 'bots.*'] });
      const sock = await topicSocket(target, 'fb.a.x', token);
      await sock.next(isOp('subscribed'));
      assert.equal((await errFor(sock, { op: 'pub', topic: 'fb.b.x', data: 1 }, 'f1')).code, 'forbidden');
      assert.equal((await errFor(sock, { op: 'sub', topic: 'fb.b.x' }, 'f2')).code, 'forbidden');
      const asOther = { op: 'pub', topic: 'fb.a.x', data: 1, source: 'mallory' };
      assert.equal((await errFor(sock, asOther, 'f3')).code, 'forbidden');
      sock.send({ op: 'pub', topic: 'fb.a.x', data: 1, source: 'bots.a', ref: 'ok' });
      assert.equal((await sock.next(withRef('ok'))).op, 'ack');
      sock.close();
      assertHttpError(await post(target, 'fb.b.x', { data: 1 }, token), 403, 'forbidden');
      assertHttpError(await post(target, 'fb.a.x', { data: 1, source: 'bots.a.b' }, token), 403, 'forbidden');
      assertHttpError(await get(target, '/v1/topics/fb.b.x/messages', token), 403, 'forbidden');
      assertHttpError(await get(target, '/v1/topics/fb.b.x/latest', token), 403, 'forbidden');
      const refused = await refusedUpgrade(`${target.wsUrl}/v1/topics/fb.b.x/ws`, bearer(token));
      assert.equal(refused.status, 403);
      assert.equal(refused.error.code, 'forbidden');
    },
  },
  {
    name: 'rate_limited: WebSocket publishes past the burst, per frame, with the ref',
    async run(target) {
      const topic = fresh('rl');
      const sock = await topicSocket(target, topic, await tokenFor('hasty'));
      const count = LIMITS.burst + 20;
      const startedAt = performance.now();
      for (let i = 0; i < count; i++) sock.send({ op: 'pub', topic, data: i, ref: `p${i}` });
      const replies = await Promise.all(Array.from({ length: count }, (_, i) => sock.next(withRef(`p${i}`), 20_000)));
      const allowance = LIMITS.burst + Math.ceil(((performance.now() - startedAt) / 1000) * LIMITS.rate);
      const acked = replies.filter((r) => r.op === 'ack').length;
      const limited = replies.filter((r) => r.op === 'err' && r.code === 'rate_limited').length;
      assert.equal(acked + limited, count);
      assert.ok(acked >= LIMITS.burst && acked <= allowance, `${acked} acked, allowance ${allowance}`);
      assert.equal(replies.at(-1)?.op, 'err');
      sock.close();
    },
  },
  {
    name: 'rate_limited: HTTP publishes past the burst get 429, counted per message',
    async run(target) {
      const topic = fresh('rl');
      const token = await tokenFor('hasty-http');
      const full = Array.from({ length: LIMITS.burst }, (_, i) => ({ data: i }));
      assert.equal((await post(target, topic, full, token)).status, 202);
      assertHttpError(await post(target, topic, { data: 'one more' }, token), 429, 'rate_limited');
      const other = await tokenFor('patient-http');
      assert.equal(
        (await post(target, topic, { data: 'another subject' }, other)).status,
        202,
        'buckets are per subject',
      );
    },
  },
  {
    name: 'cursor_expired: a resume or page from before what the node keeps, over WS and HTTP',
    async run(target) {
      const topic = fresh('ce');
      const token = await tokenFor('expirer');
      const acks = await publish(
        target,
        topic,
        token,
        Array.from({ length: LIMITS.retained + 10 }, (_, i) => i),
      );
      const first = acks[0]?.cursor ?? '';
      await eventually(
        async () => (await get(target, `/v1/topics/${topic}/messages?after=${first}`, token)).status === 410,
        'history to be trimmed',
      );
      assertHttpError(await get(target, `/v1/topics/${topic}/messages?after=${first}`, token), 410, 'cursor_expired');
      const sock = await topicSocket(target, topic, token, first);
      assert.equal((await sock.next<Frame<'err'>>(isOp('err'), 10_000)).code, 'cursor_expired');
      await roundTrip(sock);
      assert.equal(sock.frames.filter((f) => f.op === 'msg').length, 0, 'no partial history before the error');
      sock.send({ op: 'sub', topic, after: first, ref: 'old' });
      assert.equal((await sock.next<Frame<'err'>>(withRef('old'), 10_000)).code, 'cursor_expired');
      sock.close();
    },
  },
  {
    name: 'unknown WebSocket paths are refused before the upgrade with a JSON error',
    async run(target) {
      const token = await tokenFor('lost');
      const unknown = await refusedUpgrade(`${target.wsUrl}/v1/elsewhere`, bearer(token));
      assert.ok(unknown.status === 400 || unknown.status === 404, `status ${unknown.status}`);
      assert.equal(unknown.error.code, 'bad_frame');
    },
  },
];
