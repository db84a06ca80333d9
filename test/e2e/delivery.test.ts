import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type Envelope, type MessageStore, type ServerFrame, signToken } from '@anode/shared';
import { startRelay, type TestRelay, tempDir } from '../helpers/relay.ts';
import { openSocket, type RawSocket } from '../helpers/ws.ts';

/**
 * Delivery end to end against real relays: fan-out, patterns, unsubscribe, resume on the
 * one-topic endpoint, idempotent republish, auth, slow consumers and graceful shutdown.
 */

type Frame<Op extends ServerFrame['op']> = Extract<ServerFrame, { op: Op }>;
type Msg = Frame<'msg'>;

const SECRET = 'delivery-test-secret-at-least-32-characters';

const withRef = (ref: string) => (f: ServerFrame) => 'ref' in f && f.ref === ref;
const messagesOf = (sock: RawSocket): Msg[] => sock.frames.filter((f): f is Msg => f.op === 'msg');

let refs = 0;
const nextRef = (prefix: string) => `${prefix}-${++refs}`;

async function subscribe(sock: RawSocket, topic: string): Promise<Frame<'subscribed'>> {
  const ref = nextRef('sub');
  sock.send({ op: 'sub', topic, ref });
  const reply = await sock.next(withRef(ref));
  assert.equal(reply.op, 'subscribed', JSON.stringify(reply));
  return reply as Frame<'subscribed'>;
}

async function publish(sock: RawSocket, topic: string, data: unknown, extra = {}): Promise<Frame<'ack'>> {
  const ref = nextRef('pub');
  sock.send({ op: 'pub', topic, data, ...extra, ref });
  const reply = await sock.next(withRef(ref));
  assert.equal(reply.op, 'ack', JSON.stringify(reply));
  return reply as Frame<'ack'>;
}

/**
 * Once a publisher holds the ack of a message, the relay has already handed its msg frames to
 * every subscriber's socket (fan-out precedes the ack); a ping round trip on a subscriber then
 * proves every such frame has arrived there.
 */
async function settle(...socks: RawSocket[]): Promise<void> {
  await Promise.all(
    socks.map(async (sock) => {
      const ref = nextRef('settle');
      sock.send({ op: 'ping', ref });
      await sock.next(withRef(ref), 10_000);
    }),
  );
}

async function metricValue(relay: TestRelay, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${relay.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('delivery', () => {
  let relay: TestRelay;
  const open: RawSocket[] = [];
  const connect = async (path = '/v1/ws') => {
    const sock = await openSocket(`${relay.wsUrl}${path}`);
    open.push(sock);
    return sock;
  };
  before(async () => {
    relay = await startRelay();
  });
  after(async () => {
    for (const sock of open) sock.close();
    await relay.stop();
  });

  it('fans every message out to 50 subscribers, each exactly once and in order', async () => {
    const subscribers = await Promise.all(Array.from({ length: 50 }, () => connect()));
    await Promise.all(subscribers.map((sock) => subscribe(sock, 'fan.out')));
    const publisher = await connect();
    const acks = [];
    for (let i = 0; i < 20; i++) acks.push(await publish(publisher, 'fan.out', { i }));
    await settle(...subscribers);
    for (const sock of subscribers) {
      assert.deepEqual(
        messagesOf(sock).map((m) => [m.id, m.cursor]),
        acks.map((a) => [a.id, a.cursor]),
      );
    }
  });

  it('delivers only the topics a pattern matches, and each message once across overlapping patterns', async () => {
    const patterns = ['pat.*', 'pat.>', 'pat.x', 'pat.*.y'];
    const single = await Promise.all(patterns.map(() => connect()));
    await Promise.all(patterns.map((p, i) => subscribe(single[i] as RawSocket, p)));
    const overlapping = await connect();
    for (const p of [...patterns, '>', 'pat.x']) await subscribe(overlapping, p);

    const publisher = await connect();
    const topics = ['pat', 'pat.x', 'pat.y', 'pat.x.y', 'pat.x.z', 'other.x', 'patx'];
    for (const topic of topics) await publish(publisher, topic, topic);
    await settle(...single, overlapping);

    const received = (sock: RawSocket) => messagesOf(sock).map((m) => m.topic);
    assert.deepEqual(received(single[0] as RawSocket), ['pat.x', 'pat.y']);
    assert.deepEqual(received(single[1] as RawSocket), ['pat.x', 'pat.y', 'pat.x.y', 'pat.x.z']);
    assert.deepEqual(received(single[2] as RawSocket), ['pat.x']);
    assert.deepEqual(received(single[3] as RawSocket), ['pat.x.y']);
    assert.deepEqual(received(overlapping), topics);
  });

  it('stops delivering a topic after unsub, and keeps the others', async () => {
    const sock = await connect();
    await subscribe(sock, 'unsub.a');
    await subscribe(sock, 'unsub.*');
    const publisher = await connect();
    await publish(publisher, 'unsub.a', 'before');
    sock.send({ op: 'unsub', topic: 'unsub.*' });
    await settle(sock);
    await publish(publisher, 'unsub.b', 'pattern gone');
    await publish(publisher, 'unsub.a', 'exact kept');
    sock.send({ op: 'unsub', topic: 'unsub.a' });
    await settle(sock);
    await publish(publisher, 'unsub.a', 'all gone');
    await settle(sock);
    assert.deepEqual(
      messagesOf(sock).map((m) => m.data),
      ['before', 'exact kept'],
    );
  });

  it('subscribes the one-topic endpoint on open and resumes after a cursor, then goes live', async () => {
    const publisher = await connect();
    const acks = [];
    for (let i = 0; i < 4; i++) acks.push(await publish(publisher, 'one.t', i));
    await publish(publisher, 'one.other', 'not this topic');

    const resumed = await connect(`/v1/topics/one.t/ws?after=${acks[0]?.cursor}`);
    const subscribed = await resumed.next<Frame<'subscribed'>>((f) => f.op === 'subscribed');
    assert.equal(subscribed.topic, 'one.t');
    assert.equal(subscribed.cursor, acks[3]?.cursor);
    assert.deepEqual(
      resumed.frames.map((f) => f.op),
      ['msg', 'msg', 'msg', 'subscribed'],
      'missed messages come before subscribed',
    );
    assert.deepEqual(
      messagesOf(resumed).map((m) => m.data),
      [1, 2, 3],
    );

    const fresh = await connect('/v1/topics/one.t/ws');
    await fresh.next((f) => f.op === 'subscribed');
    const live = await publish(publisher, 'one.t', 'live');
    await settle(resumed, fresh);
    assert.deepEqual(messagesOf(resumed).at(-1)?.id, live.id);
    assert.deepEqual(
      messagesOf(fresh).map((m) => m.id),
      [live.id],
    );
  });

  it('gives an idempotent republish the same id and cursor, and delivers it once', async () => {
    const sub = await connect();
    await subscribe(sub, 'idem');
    const publisher = await connect();
    const first = await publish(publisher, 'idem', 'v1', { key: 'order-1' });
    const again = await publish(publisher, 'idem', 'v2', { key: 'order-1' });
    assert.deepEqual([again.id, again.cursor], [first.id, first.cursor]);

    // Two copies in one burst (likely one storage batch) dedup alike.
    publisher.send({ op: 'pub', topic: 'idem', data: 'b1', key: 'order-2', ref: 'burst-1' });
    publisher.send({ op: 'pub', topic: 'idem', data: 'b2', key: 'order-2', ref: 'burst-2' });
    const burst = (await Promise.all([
      publisher.next(withRef('burst-1')),
      publisher.next(withRef('burst-2')),
    ])) as Frame<'ack'>[];
    assert.deepEqual([burst[1]?.id, burst[1]?.cursor], [burst[0]?.id, burst[0]?.cursor]);

    const otherSource = await publish(publisher, 'idem', 'v3', { key: 'order-1', source: 'elsewhere' });
    assert.notEqual(otherSource.id, first.id, 'the key is scoped to its source');
    await settle(sub);
    assert.deepEqual(
      messagesOf(sub).map((m) => m.data),
      ['v1', 'b1', 'v3'],
    );
  });
});

describe('delivery with auth', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({ 'jwt-secret': SECRET });
  });
  after(() => relay.stop());

  it('delivers to holders of matching claims and refuses the rest', async () => {
    const publisherToken = await signToken(SECRET, { pub: ['auth.>'], subject: 'feed-service' });
    const readerToken = await signToken(SECRET, { sub: ['auth.*'] });
    const publisher = await openSocket(`${relay.wsUrl}/v1/ws`, {
      headers: { authorization: `Bearer ${publisherToken}` },
    });
    const reader = await openSocket(`${relay.wsUrl}/v1/ws?token=${readerToken}`);

    await subscribe(reader, 'auth.*');
    const refused = async (sock: RawSocket, frame: Record<string, unknown>) => {
      const ref = nextRef('refused');
      sock.send({ ...frame, ref });
      const reply = await sock.next(withRef(ref));
      assert.equal(reply.op === 'err' && reply.code, 'forbidden', JSON.stringify(reply));
    };
    await refused(reader, { op: 'sub', topic: 'secret.x' });
    await refused(reader, { op: 'sub', topic: 'auth.>' });
    await refused(reader, { op: 'pub', topic: 'auth.x', data: 'reader may not publish' });
    await refused(publisher, { op: 'pub', topic: 'secret.x', data: 'outside the claim' });
    await refused(publisher, { op: 'sub', topic: 'auth.x' });

    const viaWs = await publish(publisher, 'auth.x', 'over ws');
    const res = await fetch(`${relay.url}/v1/topics/auth.y/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${publisherToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ data: 'over http' }),
    });
    assert.equal(res.status, 202);
    await publish(publisher, 'auth.x.deeper', 'not matched by auth.*');
    await settle(reader);

    const received = messagesOf(reader);
    assert.deepEqual(
      received.map((m) => m.data),
      ['over ws', 'over http'],
    );
    assert.equal(received[0]?.id, viaWs.id);
    assert.ok(
      received.every((m) => m.source === 'feed-service'),
      'the source is the token name',
    );
    publisher.close();
    reader.close();
  });
});

describe('slow consumer', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({ 'max-send-buffer-bytes': String(256 * 1024) });
  });
  after(() => relay.stop());

  it('closes a subscriber that stops reading with 4001 while another keeps receiving everything', async () => {
    const slow = await openSocket(`${relay.wsUrl}/v1/ws`);
    const healthy = await openSocket(`${relay.wsUrl}/v1/ws`);
    const publisher = await openSocket(`${relay.wsUrl}/v1/ws`);
    await subscribe(slow, 'flood');
    await subscribe(healthy, 'flood');
    const socketOf = (sock: RawSocket) => (sock.ws as unknown as { _socket: Socket })._socket;
    socketOf(slow).pause();

    const big = 'x'.repeat(64 * 1024);
    const acked: string[] = [];
    const cutOff = () => metricValue(relay, 'anode_server_disconnects_total', '{reason="slow_consumer"}');
    // Flood until the relay cuts the slow subscriber off (kernel buffers absorb the first MBs).
    for (let round = 0; (await cutOff()) === 0; round++) {
      assert.ok(round < 100, 'the slow subscriber was never cut off');
      const acks = await Promise.all(
        Array.from({ length: 16 }, (_, i) => publish(publisher, 'flood', { round, i, big })),
      );
      acked.push(...acks.map((a) => a.id));
    }
    for (let i = 0; i < 5; i++) acked.push((await publish(publisher, 'flood', { after: i, big })).id);

    socketOf(slow).resume();
    const closed = await within(slow.closed, 5_000, 'slow subscriber close');
    assert.equal(closed.code, 4001);
    assert.ok(messagesOf(slow).length < acked.length);

    await settle(healthy);
    assert.deepEqual(
      messagesOf(healthy).map((m) => m.id),
      acked,
    );
    healthy.close();
    publisher.close();
  });
});

// Messages a relay has handed to its store so far (accepted, not necessarily acked).
let handedOver = 0;
/** Fault-injection test double: the real store with every append slowed down, so publishes queue up. */
const withSlowAppends = (store: MessageStore): MessageStore => ({
  ...store,
  append: async (messages) => {
    handedOver += messages.length;
    await new Promise((resolve) => setTimeout(resolve, 25));
    return store.append(messages);
  },
});
/** Until the relay has accepted `count` publishes (a ping would wait for their acks too). */
const accepted = async (count: number) => {
  const deadline = Date.now() + 10_000;
  while (handedOver < count) {
    if (Date.now() > deadline) throw new Error(`only ${handedOver} of ${count} publishes reached the store`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
};

describe('graceful shutdown', () => {
  it('closes clients with 4000 after acking every publish it accepted, and keeps them all', async () => {
    const dataDir = await tempDir();
    try {
      const relay = await startRelay({}, { dataDir, wrapStore: withSlowAppends });
      const sub = await openSocket(`${relay.wsUrl}/v1/ws`);
      await subscribe(sub, 'shut');
      const publisher = await openSocket(`${relay.wsUrl}/v1/ws`);
      const COUNT = 300;
      handedOver = 0;
      for (let i = 0; i < COUNT; i++) publisher.send({ op: 'pub', topic: 'shut', data: i, ref: `s${i}` });
      await accepted(COUNT);
      const pendingAtStop = COUNT - publisher.frames.filter((f) => f.op === 'ack').length;

      const stopped = relay.stop();
      const [pubClosed, subClosed] = await within(Promise.all([publisher.closed, sub.closed]), 10_000, 'close');
      await stopped;
      assert.equal(pubClosed.code, 4000);
      assert.equal(subClosed.code, 4000);
      assert.ok(pendingAtStop > 0, 'some publishes were still waiting for storage at stop');

      const acks = publisher.frames.filter((f): f is Frame<'ack'> => f.op === 'ack');
      assert.deepEqual(
        acks.map((a) => a.ref),
        Array.from({ length: COUNT }, (_, i) => `s${i}`),
        'every accepted publish is acked before the close',
      );
      assert.deepEqual(
        messagesOf(sub).map((m) => m.id),
        acks.map((a) => a.id),
      );

      const restarted = await startRelay({}, { dataDir });
      const page = (await (await fetch(`${restarted.url}/v1/topics/shut/messages?limit=1000`)).json()) as {
        messages: Envelope[];
      };
      await restarted.stop();
      assert.deepEqual(
        page.messages.map((m) => m.id),
        acks.map((a) => a.id),
      );
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('refuses publishes that arrive once stopping began (unavailable), so none is stored after the mesh stops', async () => {
    const dataDir = await tempDir();
    try {
      const relay = await startRelay({}, { dataDir, wrapStore: withSlowAppends });
      const publisher = await openSocket(`${relay.wsUrl}/v1/ws`);
      handedOver = 0;
      for (let i = 0; i < 50; i++) publisher.send({ op: 'pub', topic: 'late', data: i, ref: `a${i}` });
      await accepted(50);
      const stopped = relay.stop();
      publisher.send({ op: 'pub', topic: 'late', data: 'after stop', ref: 'late' });
      const refused = await within(publisher.next<Frame<'err'>>(withRef('late')), 10_000, 'answer to the late publish');
      assert.equal(refused.op, 'err');
      assert.equal(refused.code, 'unavailable');
      assert.match(refused.message, /shutting down/);
      await stopped;
      const acks = publisher.frames.filter((f): f is Frame<'ack'> => f.op === 'ack');
      assert.equal(acks.length, 50, 'what was accepted before is acked');

      const restarted = await startRelay({}, { dataDir });
      const page = (await (await fetch(`${restarted.url}/v1/topics/late/messages?limit=1000`)).json()) as {
        messages: Envelope[];
      };
      await restarted.stop();
      assert.deepEqual(
        page.messages.map((m) => m.data),
        Array.from({ length: 50 }, (_, i) => i),
      );
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('ping is a fence', () => {
  it('answers a ping only after every frame before it was answered, and the next ones in order', async () => {
    const relay = await startRelay({}, { wrapStore: withSlowAppends });
    try {
      const sock = await openSocket(`${relay.wsUrl}/v1/ws`);
      for (let i = 0; i < 20; i++) sock.send({ op: 'pub', topic: `fence.t${i}`, data: i, ref: `a${i}` });
      sock.send({ op: 'ping', ref: 'p1' });
      sock.send({ op: 'pub', topic: 'fence.t0', data: 'late', ref: 'b' });
      sock.send({ op: 'ping', ref: 'p2' });
      await within(sock.next(withRef('p2')), 10_000, 'second pong');
      await within(sock.next(withRef('b')), 10_000, 'the last ack');
      const order = sock.frames.map((f) => ('ref' in f ? f.ref : undefined)).filter((r) => r !== undefined);
      const at = (ref: string) => order.indexOf(ref);
      for (let i = 0; i < 20; i++)
        assert.ok(at(`a${i}`) < at('p1'), `ack a${i} before the first pong: ${order.join(' ')}`);
      assert.ok(at('p1') < at('p2') && at('b') < at('p2'), order.join(' '));
      sock.close();
    } finally {
      await relay.stop();
    }
  });
});
