import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Envelope } from '@anode/shared';
import { createClient } from '@anode/client';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

/** Publish `count` messages over HTTP in batches; resolves with their cursors in order. */
async function publishMany(url: string, topic: string, count: number, from: number): Promise<string[]> {
  const cursors: string[] = [];
  for (let i = 0; i < count; i += 50) {
    const batch = Array.from({ length: Math.min(50, count - i) }, (_, j) => ({ data: { n: from + i + j } }));
    const res = await fetch(`${url}/v1/topics/${topic}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(batch),
    });
    assert.equal(res.status, 202);
    const body = (await res.json()) as { messages: { cursor: string }[] };
    cursors.push(...body.messages.map((m) => m.cursor));
  }
  return cursors;
}

describe('resume from a cursor', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({ 'publish-rate': '100000', 'publish-burst': '100000' });
  });
  after(() => relay.stop());

  it('delivers every missed message exactly once, in cursor order, while publishing continues', async () => {
    const topic = 'resume.raw';
    const first = await openSocket(`${relay.wsUrl}/v1/ws`);
    first.send({ op: 'sub', topic, ref: 's' });
    await first.next((f) => f.op === 'subscribed');
    await publishMany(relay.url, topic, 10, 0);
    const seen = await Promise.all(Array.from({ length: 10 }, () => first.next((f) => f.op === 'msg')));
    const lastCursor = (seen.at(-1) as Envelope).cursor;
    first.close();
    await first.closed;

    const missed = await publishMany(relay.url, topic, 1_000, 10);
    // Keep publishing while the subscriber reconnects and catches up.
    const during = publishMany(relay.url, topic, 500, 1_010);
    const second = await openSocket(`${relay.wsUrl}/v1/ws`);
    second.send({ op: 'sub', topic, after: lastCursor, ref: 'r' });
    const subscribed = await second.next((f) => f.op === 'subscribed', 20_000);
    const concurrent = await during;
    const expected = [...missed, ...concurrent];
    const deadline = Date.now() + 20_000;
    const messages = () => second.frames.filter((f): f is Envelope & { op: 'msg' } => f.op === 'msg');
    while (messages().length < expected.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100)); // a duplicate would arrive now
    const got = messages().map((m) => m.cursor);
    assert.equal(got.length, expected.length, 'no gap and no duplicate');
    assert.deepEqual(got, expected, 'cursor order, exactly the published messages');
    assert.deepEqual([...got].sort(), got, 'ascending cursors');
    const subscribedAt = second.frames.indexOf(subscribed);
    assert.ok(subscribedAt > 0, '`subscribed` follows the missed messages');
    second.close();
  });

  it('resumes through the client library after a reconnect, dropping duplicates', async () => {
    const topic = 'resume.client';
    const received: Envelope[] = [];
    const client = createClient({ url: relay.wsUrl, reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    const sub = client.subscribe(topic, (m) => received.push(m));
    await sub.ready;
    await publishMany(relay.url, topic, 20, 0);
    while (received.length < 20) await new Promise((r) => setTimeout(r, 10));
    const cursor = sub.cursor;
    client.close();

    const missed = await publishMany(relay.url, topic, 1_000, 20);
    const again: Envelope[] = [];
    const resumed = createClient({ url: relay.wsUrl });
    const during = publishMany(relay.url, topic, 300, 1_020);
    const sub2 = resumed.subscribe(topic, (m) => again.push(m), { after: cursor });
    await sub2.ready;
    const concurrent = await during;
    const expected = [...missed, ...concurrent];
    const deadline = Date.now() + 20_000;
    while (again.length < expected.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(
      again.map((m) => m.cursor),
      expected,
    );
    assert.equal(sub2.cursor, expected.at(-1));
    resumed.close();
  });
});

describe('resume over a topic retention emptied', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({ 'retention-max-age-ms': '1000', 'retention-sweep-ms': '50' });
  });
  after(() => relay.stop());

  it('refuses a cursor from before what it lost with cursor_expired, for the topic and the patterns over it', async () => {
    const [first] = await publishMany(relay.url, 'gone.x', 2, 0);
    const deadline = Date.now() + 10_000;
    const stored = async () =>
      ((await (await fetch(`${relay.url}/v1/topics/gone.x/messages`)).json()) as { messages: unknown[] }).messages;
    while ((await stored()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await stored(), [], 'retention emptied gone.x');
    const socket = await openSocket(`${relay.wsUrl}/v1/ws`);
    for (const topic of ['gone.x', 'gone.>', 'gone.*', '>']) {
      socket.send({ op: 'sub', topic, after: first, ref: topic });
      const answer = await socket.next((f) => f.op !== 'msg' && f.ref === topic);
      assert.ok(answer.op === 'err' && answer.code === 'cursor_expired', `${topic}: ${JSON.stringify(answer)}`);
    }
    socket.close();
    await socket.closed;
  });
});
