import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ServerFrame, signToken } from '@anode/shared';
import { openSocket } from '../../test/helpers/ws.ts';
import { type EdgeRuntime, QUICK_CLOSE, startEdge } from '../test-support/edge-runtime.ts';

const SECRET = 'edge-test-jwt-secret-0123456789abcdef';
const LINK_SECRET = 'edge-test-link-secret-0123';
const METRICS_TOKEN = 'edge-test-metrics-token-0123';

describe('edge worker: routing, auth, limits and error frames (workerd)', () => {
  let edge: EdgeRuntime;
  let all: string;
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${edge.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${all}`, ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  const errorOf = async (response: Response) => ((await response.json()) as { error: { code: string } }).error.code;
  const err = (ref?: string) => (f: ServerFrame) => f.op === 'err' && (ref === undefined || f.ref === ref);

  before(async () => {
    edge = await startEdge({
      JWT_SECRET: SECRET,
      LINK_SECRET,
      METRICS_TOKEN,
      MAX_MESSAGE_BYTES: '1024',
      MAX_FRAME_BYTES: '5200',
      MAX_BODY_BYTES: '6000',
      PUBLISH_RATE: '1',
      PUBLISH_BURST: '5',
    });
    all = await signToken(SECRET, { pub: ['>'], sub: ['>'], subject: 'tester' });
  });
  after(() => edge.stop());

  it('serves health, metrics and status, answers unknown routes with bad_frame, and grants no CORS by default', async () => {
    assert.deepEqual(await (await fetch(`${edge.url}/healthz`)).json(), { ok: true });
    const reader = { headers: { authorization: `Bearer ${METRICS_TOKEN}` } };
    assert.match(await (await fetch(`${edge.url}/metrics`, reader)).text(), /^anode_edge_up 1$/m);
    // Auth is on: status and metrics answer the metrics token only, as on a relay.
    for (const path of ['/metrics', '/v1/status']) {
      const refused = await fetch(`${edge.url}${path}`);
      assert.equal(refused.status, 401);
      assert.equal(await errorOf(refused), 'unauthorized');
    }
    const status = (await (await fetch(`${edge.url}/v1/status`, reader)).json()) as {
      node: { kind: string; auth: string };
    };
    assert.equal(status.node.kind, 'edge');
    assert.equal(status.node.auth, 'jwt');
    const nowhere = await fetch(`${edge.url}/nowhere`);
    assert.equal(nowhere.status, 404);
    assert.equal(await errorOf(nowhere), 'bad_frame');
    const notUpgraded = await fetch(`${edge.url}/v1/ws`, { headers: { authorization: `Bearer ${all}` } });
    assert.equal(notUpgraded.status, 400);
    assert.equal(await errorOf(notUpgraded), 'bad_frame');
    // CORS is off unless CORS_ORIGINS names origins: no grant, and no preflight answer.
    const preflight = await fetch(`${edge.url}/v1/topics/cors.a/messages`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
    });
    await preflight.body?.cancel();
    assert.equal(preflight.headers.get('access-control-allow-origin'), null);
    const simple = await fetch(`${edge.url}/v1/topics/cors.a/messages`, {
      headers: { origin: 'https://app.example', authorization: `Bearer ${all}` },
    });
    await simple.body?.cancel();
    assert.equal(simple.status, 200);
    assert.equal(simple.headers.get('access-control-allow-origin'), null);
    const bad = await post('/v1/topics/bad..topic/messages', { data: 1 });
    assert.equal(bad.status, 400);
    assert.equal(await errorOf(bad), 'bad_topic');
  });

  it('refuses missing, expired and insufficient tokens on HTTP and on the WebSocket handshake', async () => {
    const noToken = await fetch(`${edge.url}/v1/topics/auth.a/messages`);
    assert.equal(noToken.status, 401);
    assert.equal(await errorOf(noToken), 'unauthorized');
    const readOnly = await signToken(SECRET, { sub: ['auth.>'] });
    const denied = await post('/v1/topics/auth.a/messages', { data: 1 }, { authorization: `Bearer ${readOnly}` });
    assert.equal(denied.status, 403);
    assert.equal(await errorOf(denied), 'forbidden');
    const expired = await signToken(SECRET, { pub: ['>'], sub: ['>'] }, Math.floor(Date.now() / 1000) - 10);
    const late = await post('/v1/topics/auth.a/messages', { data: 1 }, { authorization: `Bearer ${expired}` });
    assert.equal(late.status, 401);

    await assert.rejects(openSocket(`${edge.wsUrl}/v1/topics/auth.a/ws`), { status: 401 });
    const elsewhere = await signToken(SECRET, { sub: ['other.>'] });
    await assert.rejects(openSocket(`${edge.wsUrl}/v1/topics/auth.a/ws?token=${elsewhere}`), { status: 403 });
    await assert.rejects(openSocket(`${edge.wsUrl}/v1/edge/link/auth.a`), { status: 401 });
    await assert.rejects(
      openSocket(`${edge.wsUrl}/v1/edge/link/auth.a`, { headers: { authorization: 'Bearer not-the-secret' } }),
      { status: 401 },
    );
  });

  it('binds the source to the token and bounds ts, on HTTP and on the WebSocket (PROTOCOL.md Auth, Limits)', async () => {
    const bots = await signToken(SECRET, { subject: 'svc', pub: ['>'], sub: ['>'], src: ['bots.*'] });
    const as = (token: string) => ({ authorization: `Bearer ${token}` });
    for (const [token, body, status] of [
      [all, { data: 1 }, 202],
      [all, { data: 2, source: 'tester' }, 202],
      [all, { data: 3, source: 'someone-else' }, 403],
      [bots, { data: 4, source: 'bots.a' }, 202],
      [bots, { data: 5 }, 202],
      [bots, { data: 6, source: 'bots.a.b' }, 403],
      [all, { data: 7, ts: Date.now() + 10 * 60_000 }, 400],
      [all, { data: 8, source: '__proto__' }, 400],
    ] as const) {
      const response = await post('/v1/topics/ident.a/messages', body, as(token));
      assert.equal(response.status, status, JSON.stringify(body));
    }
    const socket = await openSocket(`${edge.wsUrl}/v1/topics/ident.a/ws?token=${all}`);
    await socket.next((f) => f.op === 'subscribed');
    socket.send({ op: 'pub', topic: 'ident.a', data: 9, source: 'someone-else', ref: 'forged' });
    const forged = await socket.next(err('forged'));
    assert.equal(forged.op === 'err' && forged.code, 'forbidden');
    socket.send({ op: 'pub', topic: 'ident.a', data: 10, ts: 8.64e15, ref: 'pinned' });
    const pinned = await socket.next(err('pinned'));
    assert.equal(pinned.op === 'err' && pinned.code, 'bad_frame');
    socket.close();
    const history = (await (await fetch(`${edge.url}/v1/topics/ident.a/messages`, { headers: as(all) })).json()) as {
      messages: { data: number; source: string }[];
    };
    assert.deepEqual(
      history.messages.map((m) => [m.data, m.source]),
      [
        [1, 'tester'],
        [2, 'tester'],
        [4, 'bots.a'],
        [5, 'svc'],
      ],
    );
  });

  it('lets a subscribe-only token read but not publish, with a token in ?token=', async () => {
    const readOnly = await signToken(SECRET, { sub: ['auth.b'] });
    const socket = await openSocket(`${edge.wsUrl}/v1/topics/auth.b/ws?token=${readOnly}`);
    await socket.next((f) => f.op === 'subscribed');
    socket.send({ op: 'pub', topic: 'auth.b', data: 1, ref: 'p' });
    const refused = await socket.next(err('p'));
    assert.equal(refused.op === 'err' && refused.code, 'forbidden');
    assert.equal((await post('/v1/topics/auth.b/messages', { data: 'x' })).status, 202);
    const msg = await socket.next((f) => f.op === 'msg');
    assert.equal(msg.op === 'msg' && msg.source, 'tester');
    socket.close();
  });

  it('answers oversized bodies with 413 and oversized frames with too_large, keeping the socket', async () => {
    const big = await post('/v1/topics/limits.a/messages', { data: 'x'.repeat(7000) });
    assert.equal(big.status, 413);
    assert.equal(await errorOf(big), 'too_large');
    // Under the body limit, over MAX_MESSAGE_BYTES: the message contract refuses it.
    const overMessage = await post('/v1/topics/limits.a/messages', { data: 'x'.repeat(2000) });
    assert.equal(overMessage.status, 413);
    assert.equal(await errorOf(overMessage), 'too_large');
    const socket = await openSocket(`${edge.wsUrl}/v1/topics/limits.a/ws?token=${all}`);
    await socket.next((f) => f.op === 'subscribed');
    socket.send({ op: 'pub', topic: 'limits.a', data: 'y'.repeat(6000), ref: 'big' });
    const tooLarge = await socket.next(err());
    assert.equal(tooLarge.op === 'err' && tooLarge.code, 'too_large');
    // Not parsed, yet answered by its ref when that comes ahead of the data (PROTOCOL.md "Limits").
    socket.send({ op: 'pub', ref: 'big-ref-first', topic: 'limits.a', data: 'y'.repeat(6000) });
    const answered = await socket.next(err('big-ref-first'));
    assert.equal(answered.op === 'err' && answered.code, 'too_large');
    socket.send({ op: 'pub', topic: 'limits.a', data: 'y'.repeat(2000), ref: 'big-message' });
    const overLimit = await socket.next(err('big-message'));
    assert.equal(overLimit.op === 'err' && overLimit.code, 'too_large');
    socket.send({ op: 'pub', topic: 'limits.a', data: 'y'.repeat(1022), ref: 'max' });
    await socket.next((f) => f.op === 'ack' && f.ref === 'max');
    socket.send({ op: 'ping', ref: 'still-here' });
    await socket.next((f) => f.op === 'pong' && f.ref === 'still-here');
    socket.close();
  });

  it('refuses invalid UTF-8 bodies and JSON nested past 1,000 levels before parsing, as a relay does', async () => {
    const nest = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    const invalid = await fetch(`${edge.url}/v1/topics/bytes.a/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${all}` },
      body: Buffer.concat([Buffer.from('{"data":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]),
    });
    assert.equal(invalid.status, 400);
    assert.deepEqual(((await invalid.json()) as { error: unknown }).error, {
      code: 'bad_frame',
      message: 'body is not valid UTF-8',
    });
    // A body may be an array of items, so it may nest one level more than a frame (as on a relay).
    for (const body of [`[{"data":${nest(1_001)}}]`, `{"data":1,"x":${nest(1_002)}}`, '['.repeat(5_000)]) {
      const deep = await post('/v1/topics/bytes.a/messages', body);
      assert.equal(deep.status, 400);
      assert.deepEqual(((await deep.json()) as { error: unknown }).error, {
        code: 'bad_frame',
        message: 'data: nested deeper than 1000 levels',
      });
    }
    const stored = (await (
      await fetch(`${edge.url}/v1/topics/bytes.a/messages`, { headers: { authorization: `Bearer ${all}` } })
    ).json()) as { messages: unknown[] };
    assert.deepEqual(stored.messages, [], 'nothing was stored');

    const socket = await openSocket(`${edge.wsUrl}/v1/topics/bytes.a/ws?token=${all}`);
    await socket.next((f) => f.op === 'subscribed');
    for (const [ref, frame] of [
      ['data', `{"op":"pub","topic":"bytes.a","ref":"data","data":${nest(1_001)}}`],
      ['unknown', `{"op":"pub","topic":"bytes.a","ref":"unknown","data":1,"x":${nest(1_001)}}`],
      ['open', `{"ref":"open","op":"pub","topic":"bytes.a","data":${'['.repeat(5_000)}`],
    ] as const) {
      socket.ws.send(frame);
      const refused = await socket.next(err(ref));
      assert.deepEqual(refused.op === 'err' && [refused.code, refused.message], [
        'bad_frame',
        'data: nested deeper than 1000 levels',
      ]);
    }
    socket.send({ op: 'ping', ref: 'still-here' });
    await socket.next((f) => f.op === 'pong' && f.ref === 'still-here');
    assert.equal(socket.frames.filter((f) => f.op === 'msg' || f.op === 'ack').length, 0, 'nothing was accepted');
    socket.close();
  });

  it('rate-limits publishes per socket and per HTTP client', async () => {
    const socket = await openSocket(`${edge.wsUrl}/v1/topics/limits.rate/ws?token=${all}`);
    await socket.next((f) => f.op === 'subscribed');
    for (let i = 0; i < 7; i++) socket.send({ op: 'pub', topic: 'limits.rate', data: i, ref: `r${i}` });
    const limited = await socket.next(err());
    assert.equal(limited.op === 'err' && limited.code, 'rate_limited');
    assert.ok(socket.frames.filter((f) => f.op === 'ack').length <= 5);
    let status = 0;
    for (let i = 0; i < 8 && status !== 429; i++)
      status = (await post('/v1/topics/limits.rate/messages', { data: i })).status;
    assert.equal(status, 429);
    socket.close();
  });

  it('answers bad frames with coded errors (echoing the ref) and keeps the socket open', async () => {
    const socket = await openSocket(`${edge.wsUrl}/v1/topics/frames.a/ws?token=${all}`);
    await socket.next((f) => f.op === 'subscribed');
    const cases: [unknown, string, string | undefined][] = [
      ['not json', 'bad_frame', undefined],
      [{ op: 'dance', ref: 'd' }, 'bad_frame', 'd'],
      [{ op: 'pub', topic: 'frames.a', ref: 'nodata' }, 'bad_frame', 'nodata'],
      // No relay here: patterns are served through one (docs/edge-sockets.md).
      [{ op: 'sub', topic: 'frames.*', ref: 'pattern' }, 'unavailable', 'pattern'],
      [{ op: 'sub', topic: 'bad..topic', ref: 'grammar' }, 'bad_topic', 'grammar'],
      [{ op: 'sub', topic: 'frames.a', after: 'nope', ref: 'cursor' }, 'bad_frame', 'cursor'],
    ];
    for (const [frame, code, ref] of cases) {
      if (typeof frame === 'string') socket.ws.send(frame);
      else socket.send(frame);
      const answer = await socket.next(err());
      assert.deepEqual([answer.op === 'err' && answer.code, answer.op === 'err' && answer.ref], [code, ref]);
    }
    socket.sendRaw(Buffer.from('{"op":"ping"}'), true);
    const binary = await socket.next(err());
    assert.equal(binary.op === 'err' && binary.code, 'bad_frame');
    socket.ws.send('{"op":"ping"}');
    await socket.next((f) => f.op === 'pong' && f.ref === undefined);
    socket.send({ op: 'pub', topic: 'frames.a', data: 'ok', ref: 'fine' });
    await socket.next((f) => f.op === 'ack' && f.ref === 'fine');
    // Any socket speaks the whole protocol: another topic on this one-topic socket.
    socket.send({ op: 'pub', topic: 'frames.b', data: 1, ref: 'other' });
    await socket.next((f) => f.op === 'ack' && f.ref === 'other');
    socket.close();
  });

  it('gives a republish with the same key (frame or Idempotency-Key) the same id and cursor', async () => {
    const socket = await openSocket(`${edge.wsUrl}/v1/topics/idem.a/ws?token=${all}`);
    await socket.next((f) => f.op === 'subscribed');
    const first = (await (
      await post('/v1/topics/idem.a/messages', { data: 1 }, { 'idempotency-key': 'k1' })
    ).json()) as {
      messages: { id: string; cursor: string }[];
    };
    socket.send({ op: 'pub', topic: 'idem.a', data: 1, key: 'k1', source: 'tester', ref: 'again' });
    const ack = await socket.next((f) => f.op === 'ack' && f.ref === 'again');
    assert.deepEqual(ack.op === 'ack' && { id: ack.id, cursor: ack.cursor }, first.messages[0]);
    await socket.next((f) => f.op === 'msg');
    socket.send({ op: 'ping', ref: 'fence' });
    await socket.next((f) => f.op === 'pong');
    assert.equal(socket.frames.filter((f) => f.op === 'msg').length, 1, 'delivered once');
    socket.close();
  });

  it('closes a socket with 4002 when its token expires', async () => {
    const brief = await signToken(SECRET, { sub: ['>'] }, Math.floor(Date.now() / 1000) + 2);
    // workerd sends the close frame at once but releases the TCP connection only when the object
    // next hibernates; a client that stops waiting soon after the close frame sees it at once.
    const socket = await openSocket(`${edge.wsUrl}/v1/topics/expiry.a/ws?token=${brief}`, QUICK_CLOSE);
    await socket.next((f) => f.op === 'subscribed');
    const closed = await Promise.race([socket.closed, new Promise((r) => setTimeout(r, 10_000, 'still open'))]);
    assert.deepEqual(closed, { code: 4002, reason: 'token expired' });
  });
});
