import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { openSocket, type RawSocket } from '../../../test/helpers/ws.ts';
import { type EdgeRuntime, startEdge } from '../../test-support/edge-runtime.ts';

/**
 * PROTOCOL.md: frames are handled in order per connection, so a `pong` means every frame sent
 * before its `ping` was answered. The edge's connection answered pings itself at once while the
 * frames before them were still on their way to (and back from) the topics' objects, so a client
 * fencing on ping saw the pong before the acks.
 */
describe('edge connection: ping is a fence over every upstream (workerd)', () => {
  let edge: EdgeRuntime;
  let run = 0;

  before(async () => {
    edge = await startEdge({ PUBLISH_BURST: '10000' });
  });
  after(() => edge.stop());

  /** The ops of the frames with the given refs, in the order they arrived. */
  const arrival = (socket: RawSocket, refs: Set<string>) =>
    socket.frames.flatMap((f) => ('ref' in f && f.ref !== undefined && refs.has(f.ref) ? [f.ref] : []));

  it('sends the pong after the acks of publishes sent before the ping, to fresh topics', async () => {
    run += 1;
    const socket = await openSocket(`${edge.wsUrl}/v1/ws`);
    const refs = new Set<string>();
    // Each topic is new: its object starts (and opens its store) before it can answer.
    for (let i = 0; i < 20; i++) {
      const ref = `pub-${i}`;
      refs.add(ref);
      socket.send({ op: 'pub', topic: `fence.r${run}.t${i}`, data: i, ref });
    }
    socket.send({ op: 'ping', ref: 'fence' });
    await socket.next((f) => f.op === 'pong' && f.ref === 'fence', 30_000);
    const answered = arrival(socket, refs);
    assert.equal(answered.length, refs.size, `every ack came before the pong (got ${answered.length})`);
    assert.equal(socket.frames.filter((f) => f.op === 'ack').length, refs.size, 'every publish acked, none refused');
    socket.close();
  });

  it('keeps pongs in order and answers a ping with nothing outstanding at once', async () => {
    run += 1;
    const socket = await openSocket(`${edge.wsUrl}/v1/ws`);
    socket.send({ op: 'ping', ref: 'idle' });
    await socket.next((f) => f.op === 'pong' && f.ref === 'idle');
    socket.send({ op: 'pub', topic: `fence.r${run}.a`, data: 1, ref: 'a' });
    socket.send({ op: 'ping', ref: 'p1' });
    socket.send({ op: 'ping', ref: 'p2' });
    socket.send({ op: 'sub', topic: `fence.r${run}.b`, ref: 'b' });
    socket.send({ op: 'ping', ref: 'p3' });
    await socket.next((f) => f.op === 'pong' && f.ref === 'p3', 30_000);
    assert.deepEqual(arrival(socket, new Set(['a', 'p1', 'p2', 'b', 'p3'])), ['a', 'p1', 'p2', 'b', 'p3']);
    assert.ok(!socket.frames.some((f) => f.op === 'pong' && f.ref !== undefined && f.ref.startsWith('anode-')));
    socket.close();
  });
});

/**
 * A relay removes a subscription whose `sub` it refused. The edge kept one refused by the topic's
 * object: it counted against MAX_SUBSCRIPTIONS (a false limit_reached), kept its upstream open,
 * and that upstream's loss closed the client.
 */
describe('edge connection: a refused sub holds nothing (workerd)', () => {
  let edge: EdgeRuntime;
  before(async () => {
    edge = await startEdge({ EDGE_URL: '', RING_SIZE: '1', MAX_SUBSCRIPTIONS: '2' });
  });
  after(() => edge.stop());

  it('does not count subs refused with cursor_expired against MAX_SUBSCRIPTIONS', async () => {
    // Two messages each with a ring of one: the floor rose, so `after=0` is older than the edge keeps.
    for (const topic of ['refused.a', 'refused.b']) {
      const response = await fetch(`${edge.url}/v1/topics/${topic}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify([{ data: 1 }, { data: 2 }]),
      });
      assert.equal(response.status, 202);
    }
    const socket = await openSocket(`${edge.wsUrl}/v1/ws`);
    for (const topic of ['refused.a', 'refused.b']) {
      socket.send({ op: 'sub', topic, after: '0', ref: topic });
      const answer = await socket.next((f) => 'ref' in f && f.ref === topic);
      assert.equal(answer.op === 'err' && answer.code, 'cursor_expired', JSON.stringify(answer));
    }
    socket.send({ op: 'sub', topic: 'refused.c', ref: 'c' });
    const third = await socket.next((f) => 'ref' in f && f.ref === 'c');
    assert.equal(third.op, 'subscribed', JSON.stringify(third));
    socket.send({ op: 'sub', topic: 'refused.d', ref: 'd' });
    const fourth = await socket.next((f) => 'ref' in f && f.ref === 'd');
    assert.equal(fourth.op, 'subscribed', JSON.stringify(fourth));
    socket.send({ op: 'sub', topic: 'refused.e', ref: 'e' });
    const fifth = await socket.next((f) => 'ref' in f && f.ref === 'e');
    assert.equal(fifth.op === 'err' && fifth.code, 'limit_reached', 'the limit still holds');
    socket.close();
  });
});

/**
 * A relay refusing a pattern connection (the client's token, its rights, its connection cap) was
 * reported to the client as `unavailable`, which says "retry"; its own answer now passes through.
 */
describe('edge connection: a relay refusing a pattern connection (workerd)', () => {
  let edge: EdgeRuntime;
  let relay: Server;
  let status = 403;
  before(async () => {
    relay = createServer((request, response) => {
      const codes: Record<number, string> = { 401: 'unauthorized', 403: 'forbidden', 429: 'limit_reached' };
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { code: codes[status], message: `refused by the relay (${status})` } }));
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    edge = await startEdge({ RELAY_URLS: `http://127.0.0.1:${(relay.address() as AddressInfo).port}` });
  });
  after(async () => {
    await edge?.stop();
    await new Promise((resolve) => relay?.close(resolve));
  });

  it('answers the pattern sub with the relay’s code', async () => {
    for (const [answered, code] of [
      [401, 'unauthorized'],
      [403, 'forbidden'],
      [429, 'limit_reached'],
    ] as const) {
      status = answered;
      const socket = await openSocket(`${edge.wsUrl}/v1/ws`);
      socket.send({ op: 'sub', topic: 'prices.>', ref: 'p' });
      const answer = await socket.next((f) => 'ref' in f && f.ref === 'p', 10_000);
      assert.equal(answer.op === 'err' && answer.code, code, JSON.stringify(answer));
      assert.match(answer.op === 'err' ? answer.message : '', /refused by the relay/);
      socket.send({ op: 'sub', topic: 'plain.topic', ref: 't' });
      assert.equal((await socket.next((f) => 'ref' in f && f.ref === 't')).op, 'subscribed', 'the socket stays open');
      socket.close();
    }
  });
});
