import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type WebSocket, WebSocketServer } from 'ws';
import { loadConfig } from '../config.ts';
import { createLogger } from '../logger.ts';
import { createRelayNode } from '../node.ts';

const SECRET = 'relay-unit-link-secret-0123';

/** A stand-in for a Durable Object: accepts the relay's dial-back and records its frames. */
async function fakeEdge() {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  const links: { ws: WebSocket; request: IncomingMessage; frames: Record<string, unknown>[] }[] = [];
  wss.on('connection', (ws, request) => {
    const link = { ws, request, frames: [] as Record<string, unknown>[] };
    ws.on('message', (data) => link.frames.push(JSON.parse(String(data)) as Record<string, unknown>));
    links.push(link);
  });
  const { port } = wss.address() as { port: number };
  const until = async <T>(what: string, get: () => T | undefined, ms = 5_000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (let v = get(); ; v = get()) {
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { origin: `http://127.0.0.1:${port}`, links, until, close: () => wss.close() };
}

async function startNode(flags: Record<string, string>) {
  const dir = await mkdtemp(join(tmpdir(), 'anode-edge-unit-'));
  const config = loadConfig({
    flags: { port: '0', 'data-dir': dir, 'log-level': 'silent', 'edge-link-secret': SECRET, ...flags },
    env: {},
  });
  const node = await createRelayNode(config, createLogger('silent'));
  const { url } = await node.start();
  const dial = (query: string, secret = SECRET) =>
    fetch(`${url}/v1/edge/dial?${query}`, { method: 'POST', headers: { authorization: `Bearer ${secret}` } });
  return {
    url,
    dial,
    async stop() {
      await node.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const messageOf = async (response: Response) =>
  ((await response.json()) as { error: { message: string } }).error.message;

describe('edge links, relay side', () => {
  let node: Awaited<ReturnType<typeof startNode>>;
  let url: string;
  let dial: (query: string, secret?: string) => Promise<Response>;
  let edge: Awaited<ReturnType<typeof fakeEdge>>;
  before(async () => {
    edge = await fakeEdge();
    node = await startNode({ 'edge-url': edge.origin, 'edge-max-links': '2' });
    ({ url, dial } = node);
  });
  after(async () => {
    await node.stop();
    edge.close();
  });

  it('refuses dial requests without the secret, for bad topics, or for an origin not pinned', async () => {
    assert.equal((await dial('topic=a.b&edge=http://127.0.0.1:1', 'wrong-secret-0123456789')).status, 401);
    assert.equal((await dial('topic=a..b')).status, 400);
    const other = await fakeEdge();
    const refused = await dial(`topic=a.b&edge=${encodeURIComponent(other.origin)}`);
    assert.equal(refused.status, 403);
    assert.match(await messageOf(refused), /not in this relay's edge_url/);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(other.links.length, 0, 'the relay never dialed (nor showed its secret to) an origin it was not given');
    other.close();
  });

  it('logs refused dial requests at most once per 10 s, with how many, and no stack', async () => {
    const lines: Record<string, unknown>[] = [];
    const dir = await mkdtemp(join(tmpdir(), 'anode-edge-unit-'));
    const config = loadConfig({
      flags: { port: '0', 'data-dir': dir, 'edge-link-secret': SECRET, 'edge-url': edge.origin },
      env: {},
    });
    const log = createLogger('warn', { write: (line: string) => void lines.push(JSON.parse(line)) });
    const flooded = await createRelayNode(config, log);
    try {
      const { url: at } = await flooded.start();
      for (let i = 0; i < 200; i++) {
        const res = await fetch(`${at}/v1/edge/dial?topic=a.b`, {
          method: 'POST',
          headers: { authorization: 'Bearer wrong-secret-0123456789' },
        });
        assert.equal(res.status, 401);
      }
      const refused = lines.filter((l) => l.msg === 'edge dial request refused');
      assert.equal(refused.length, 1, JSON.stringify(refused));
      assert.equal(refused[0]?.count, 1);
      assert.equal(refused[0]?.code, 'unauthorized');
      assert.equal(typeof refused[0]?.err, 'string');
      const status = (await (await fetch(`${at}/v1/status`)).json()) as { edge: { refused: number } };
      assert.equal(status.edge.refused, 200);
      await flooded.stop();
      // The rest are logged at stop, not lost nor logged after it.
      const all = lines.filter((l) => l.msg === 'edge dial request refused');
      assert.deepEqual(
        all.map((l) => l.count),
        [1, 199],
      );
    } finally {
      await flooded.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the trim mark in a refused resume (err cursor_expired, trimmed)', async () => {
    const own = await fakeEdge(); // its own: the next test reads the shared one's first link
    const trimming = await startNode({ 'edge-url': own.origin, 'retention-max-messages': '2' });
    try {
      const acks: { cursor: string }[] = [];
      for (let i = 0; i < 6; i++) {
        const res = await fetch(`${trimming.url}/v1/topics/unit.trim/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ data: i }),
        });
        acks.push(...((await res.json()) as { messages: { cursor: string }[] }).messages);
      }
      assert.equal((await trimming.dial('topic=unit.trim')).status, 202);
      const link = await own.until('the dial-back', () => own.links[0]);
      // The sweep runs once a topic's limit was stored since the last one (checked each second).
      let refused: Record<string, unknown> | undefined;
      for (let attempt = 0; attempt < 40 && !refused; attempt++) {
        link.ws.send(JSON.stringify({ op: 'sub', ref: `s${attempt}`, after: acks[0]?.cursor }));
        refused = await own
          .until(`the answer to s${attempt}`, () => {
            const answer = link.frames.find((f) => f.ref === `s${attempt}`);
            return answer && { value: answer.op === 'err' ? answer : undefined };
          })
          .then((a) => a.value);
        if (!refused) await new Promise((r) => setTimeout(r, 250));
      }
      assert.ok(refused, 'the resume was never refused');
      assert.equal(refused.code, 'cursor_expired');
      assert.equal(typeof refused.trimmed, 'string');
      assert.ok(String(refused.trimmed) >= (acks[3]?.cursor ?? ''), `trimmed through ${String(refused.trimmed)}`);
    } finally {
      await trimming.stop();
      own.close();
    }
  });

  it('says its max_message_bytes in hello, and counts what it refuses on the link by code', async () => {
    const own = await fakeEdge();
    const small = await startNode({ 'edge-url': own.origin, 'max-message-bytes': '2048' });
    try {
      assert.equal((await small.dial('topic=unit.limits')).status, 202);
      const link = await own.until('the dial-back', () => own.links[0]);
      const hello = await own.until('hello', () => link.frames.find((f) => f.op === 'hello'));
      assert.equal(hello.max_message_bytes, 2048);
      const envelope = (id: string, data: unknown) => ({
        id,
        topic: 'unit.limits',
        cursor: `${Date.now().toString(16).padStart(12, '0')}0000-edgeunit`,
        source: 'anonymous',
        ts: Date.now(),
        data,
      });
      link.ws.send(JSON.stringify({ op: 'pub', ref: 'p1', messages: [envelope('rbig', 'x'.repeat(3000))] }));
      const ack = await own.until('the ack', () => link.frames.find((f) => f.ref === 'p1'));
      assert.deepEqual(
        (ack.refused as { id: string; code: string }[]).map((r) => [r.id, r.code]),
        [['rbig', 'too_large']],
      );
      link.ws.send('{"op":"pub"');
      await own.until('the err', () => link.frames.find((f) => f.op === 'err'));
      const metrics = await (await fetch(`${small.url}/metrics`)).text();
      assert.match(metrics, /^anode_errors_total\{code="too_large"\} 1$/m);
      assert.match(metrics, /^anode_errors_total\{code="bad_frame"\} 1$/m);
    } finally {
      await small.stop();
      own.close();
    }
  });

  it('carries a message larger than max_send_buffer_bytes to an edge that reads, and keeps the link', async () => {
    // max_message_bytes may exceed the send buffer (16 MiB against 8 MiB by default): the one
    // message overfilled the link's buffer on its own, the link was cut off as too slow (4001),
    // and the edge's resume over it was cut off again, so no edge ever got it. 15 MiB is more
    // than a loopback connection's kernel buffers take at once.
    const own = await fakeEdge();
    const large = await startNode({
      'edge-url': own.origin,
      'max-message-bytes': String(16 * 1024 * 1024),
      'max-send-buffer-bytes': String(1024 * 1024),
    });
    try {
      assert.equal((await large.dial('topic=unit.large')).status, 202);
      const link = await own.until('the dial-back', () => own.links[0]);
      await own.until('hello', () => link.frames.find((f) => f.op === 'hello'));
      let closed: number | undefined;
      link.ws.on('close', (code) => (closed = code));
      link.ws.send(JSON.stringify({ op: 'sub', ref: 's' }));
      await own.until('subscribed', () => link.frames.find((f) => f.op === 'subscribed'));
      const data = 'x'.repeat(15 * 1024 * 1024);
      const published = await fetch(`${large.url}/v1/topics/unit.large/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data }),
      });
      assert.equal(published.status, 202);
      const msg = await own.until(
        'the large message (or the link closed)',
        () => link.frames.find((f) => f.op === 'msg') ?? (closed === undefined ? undefined : { closed }),
        60_000,
      );
      assert.equal(msg.closed, undefined, `the link closed with ${String(msg.closed)}`);
      assert.equal((msg.data as string).length, data.length);
      link.ws.send(JSON.stringify({ op: 'latest', ref: 'l' }));
      await own.until('latest, on the same link', () => link.frames.find((f) => f.ref === 'l'), 30_000);
      assert.equal(closed, undefined);
    } finally {
      await large.stop();
      own.close();
    }
  });

  it('a relay with no edge_url dials no edge at all, whatever the request names', async () => {
    const bare = await startNode({});
    const other = await fakeEdge();
    try {
      const refused = await bare.dial(`topic=a.b&edge=${encodeURIComponent(other.origin)}`);
      assert.equal(refused.status, 403);
      assert.match(await messageOf(refused), /no edge_url/);
      assert.equal((await bare.dial('topic=a.b')).status, 403);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(other.links.length, 0);
    } finally {
      other.close();
      await bare.stop();
    }
  });

  it('dials back with the secret and speaks the link protocol: sub, pub with ack, history, latest', async () => {
    assert.equal((await dial('topic=unit.link')).status, 202, 'no origin named: the one pinned');
    const link = await edge.until('the dial-back', () => edge.links[0]);
    assert.equal(link.request.url, '/v1/edge/link/unit.link');
    assert.equal(link.request.headers.authorization, `Bearer ${SECRET}`);
    const frame = (op: string, ref?: string) =>
      edge.until(op, () => link.frames.find((f) => f.op === op && (ref === undefined || f.ref === ref)));
    await frame('hello');
    // Binary frames are refused (ws checks UTF-8 in text frames only), and the link stays up.
    link.ws.send(Buffer.from([0x7b, 0xff, 0x7d]), { binary: true });
    assert.match(String((await frame('err')).message), /binary frames are not supported/);

    link.ws.send(JSON.stringify({ op: 'sub', ref: 's' }));
    await frame('subscribed', 's');
    const envelope = { id: 'kedge1', topic: 'unit.link', cursor: '0000000000010000-eabc', source: 'e', ts: 1, data: 1 };
    link.ws.send(JSON.stringify({ op: 'pub', ref: 'p1', messages: [envelope] }));
    assert.deepEqual((await frame('ack', 'p1')).ids, ['kedge1']);

    const published = await fetch(`${url}/v1/topics/unit.link/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ data: 'from the relay' }),
    });
    assert.equal(published.status, 202);
    const msg = await frame('msg');
    assert.equal(msg.data, 'from the relay', 'mesh → edge, without echoing the edge its own message');

    link.ws.send(JSON.stringify({ op: 'history', ref: 'h', limit: 10 }));
    const history = (await frame('history', 'h')) as { messages: { id: string }[] };
    assert.deepEqual(history.messages[0]?.id, 'kedge1');
    link.ws.send(JSON.stringify({ op: 'latest', ref: 'l' }));
    assert.ok(((await frame('latest', 'l')).sources as Record<string, unknown>).e);
    // The late arrivals a resume from a cursor replays: the edge's message above, minted long
    // before it arrived, is one (a subscriber of this relay resuming from its cursor gets it
    // again too); none above `from`; a `late` without its cursor is a bad frame.
    link.ws.send(JSON.stringify({ op: 'late', ref: 'lt', after: envelope.cursor }));
    assert.deepEqual(await frame('late', 'lt'), { op: 'late', ref: 'lt', messages: [envelope], next: null });
    link.ws.send(JSON.stringify({ op: 'late', ref: 'lt1', after: envelope.cursor, from: envelope.cursor }));
    assert.deepEqual(await frame('late', 'lt1'), { op: 'late', ref: 'lt1', messages: [], next: null });
    link.ws.send(JSON.stringify({ op: 'late', ref: 'lt2' }));
    assert.equal((await frame('err', 'lt2')).code, 'bad_frame');

    // The message contract at the link: each bad message is refused with its code, the good one
    // in the same frame is stored, and the link stays up.
    const bad = [
      { ...envelope, id: 'b1', topic: 'other.topic' },
      { ...envelope, id: 'has space' },
      { ...envelope, id: 'b3', source: '' },
      { ...envelope, id: 'b4', ts: -1 },
      { ...envelope, id: 'b5', cursor: 'ffffffffffffffff-eabc' },
      { ...envelope, id: 'b6', ts: Date.now() + 10 * 60_000 },
      { ...envelope, id: 'b7', source: '__proto__' },
    ];
    const good = { ...envelope, id: 'kedge2', cursor: '0000000000020000-eabc' };
    link.ws.send(JSON.stringify({ op: 'pub', ref: 'bad', messages: [...bad, good] }));
    const refusedAck = (await frame('ack', 'bad')) as { ids: string[]; refused: { id: string | null; code: string }[] };
    assert.deepEqual(refusedAck.ids, ['kedge2']);
    assert.deepEqual(
      refusedAck.refused.map((r) => [r.id, r.code]),
      [
        ['b1', 'forbidden'],
        ['has space', 'bad_frame'],
        ['b3', 'bad_frame'],
        ['b4', 'bad_frame'],
        ['b5', 'bad_frame'],
        ['b6', 'bad_frame'],
        ['b7', 'bad_frame'],
      ],
    );
    link.ws.send(JSON.stringify({ op: 'pub', ref: 'shape', messages: 'not a list' }));
    assert.equal((await frame('err', 'shape')).code, 'bad_frame');
    const stored = (await (await fetch(`${url}/v1/topics/unit.link/messages`)).json()) as {
      messages: { id: string }[];
    };
    assert.deepEqual(
      stored.messages.map((m) => m.id).filter((id) => id !== 'kedge1' && id.startsWith('k')),
      ['kedge2'],
      'only the valid message was stored',
    );

    const status = (await (await fetch(`${url}/v1/status`)).json()) as {
      edge: { links: { topic: string; state: string; messages_from_edge: number; messages_to_edge: number }[] };
    };
    assert.deepEqual(
      status.edge.links.map(({ topic, state, messages_from_edge, messages_to_edge }) => ({
        topic,
        state,
        messages_from_edge,
        messages_to_edge,
      })),
      [{ topic: 'unit.link', state: 'open', messages_from_edge: 2, messages_to_edge: 1 }],
    );
  });

  it('opens at most edge_max_links links; past it a dial request gets limit_reached', async () => {
    assert.equal((await dial(`topic=unit.second&edge=${encodeURIComponent(edge.origin)}`)).status, 202);
    const third = await dial('topic=unit.third');
    assert.equal(third.status, 429);
    assert.equal(((await third.json()) as { error: { code: string } }).error.code, 'limit_reached');
    assert.equal((await dial('topic=unit.second')).status, 202, 'a topic that has a link may ask again');
  });
});

describe('edge links, reserved source names', () => {
  const ADMIN = 'edge-unit-admin-token-0123456789';
  const source = (name: string) => ({
    name,
    kind: 'http',
    url: 'http://127.0.0.1:9/',
    interval_ms: 60_000,
    topic: 'r.x',
  });

  it('tells the edge which source names are reserved after hello, and again when the sources change', async () => {
    const edge = await fakeEdge();
    const node = await startNode({
      'edge-url': edge.origin,
      'admin-token': ADMIN,
      sources: JSON.stringify([source('weather'), source('tides')]),
    });
    try {
      assert.equal((await node.dial('topic=unit.reserved')).status, 202);
      const link = await edge.until('the dial-back', () => edge.links[0]);
      const reserved = (n: number) =>
        edge.until(`reserved frame ${n}`, () => link.frames.filter((f) => f.op === 'reserved')[n]);
      assert.equal(link.frames[0]?.op, 'hello');
      assert.equal((link.frames[0] as { reserved?: unknown }).reserved, true, 'hello announces the reserved frame');
      assert.deepEqual((await reserved(0)).sources, ['tides', 'weather'], 'sent right after hello, before any msg');
      assert.equal(link.frames[1]?.op, 'reserved');

      const added = await fetch(`${node.url}/v1/admin/sources`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
        body: JSON.stringify(source('radar')),
      });
      assert.equal(added.status, 201);
      assert.deepEqual((await reserved(1)).sources, ['radar', 'tides', 'weather']);
      const removed = await fetch(`${node.url}/v1/admin/sources/radar`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${ADMIN}` },
      });
      assert.equal(removed.status, 200);
      assert.deepEqual((await reserved(2)).sources, ['tides', 'weather'], 'as the hub reserves them');
    } finally {
      await node.stop();
      edge.close();
    }
  });
});

describe('edge links, clocks', () => {
  it('moves the relay’s clock past an edge message’s cursor, so what it accepts next sorts after', async () => {
    const edge = await fakeEdge();
    const node = await startNode({ 'edge-url': edge.origin });
    try {
      assert.equal((await node.dial('topic=unit.clock')).status, 202);
      const link = await edge.until('the dial-back', () => edge.links[0]);
      await edge.until('hello', () => link.frames.find((f) => f.op === 'hello'));
      // An edge whose clock runs 20 s ahead of this relay's (up to 60 s is allowed).
      const ahead = `${(Date.now() + 20_000).toString(16).padStart(12, '0')}0000-eabc`;
      const envelope = { id: 'kahead', topic: 'unit.clock', cursor: ahead, source: 'e', ts: Date.now(), data: 1 };
      link.ws.send(JSON.stringify({ op: 'pub', ref: 'p', messages: [envelope] }));
      await edge.until('ack', () => link.frames.find((f) => f.op === 'ack' && f.ref === 'p'));
      const response = await fetch(`${node.url}/v1/topics/unit.clock/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data: 'local, after' }),
      });
      const { messages } = (await response.json()) as { messages: { cursor: string }[] };
      assert.ok((messages[0]?.cursor ?? '') > ahead, `${messages[0]?.cursor} sorts after ${ahead}`);
    } finally {
      await node.stop();
      edge.close();
    }
  });
});
