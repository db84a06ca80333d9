import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Envelope } from '@anode/shared';
import { createClient } from '@anode/client';
import { isMsg, type LinkedEdge, publish, receivedAll, startLinkedEdge } from '../helpers/edge.ts';
import { openSocket } from '../helpers/ws.ts';

describe('edge and relay as one: a relay process linked to the Worker on workerd', () => {
  let linked: LinkedEdge;
  let relayUrl: string;
  let edgeUrl: string;
  before(async () => {
    linked = await startLinkedEdge({ RING_SIZE: '5' });
    relayUrl = linked.relay.url;
    edgeUrl = linked.edge.url;
  });
  after(() => linked.stop());

  it('delivers a publish at the edge to a subscriber on the relay, and the relay stores it', async () => {
    const onRelay = await openSocket(`${linked.relay.wsUrl}/v1/topics/e2e.up/ws`);
    await onRelay.next((f) => f.op === 'subscribed');
    const atEdge = await openSocket(`${linked.edge.wsUrl}/v1/topics/e2e.up/ws`);
    await atEdge.next((f) => f.op === 'subscribed');
    atEdge.send({ op: 'pub', topic: 'e2e.up', data: { n: 1 }, ref: 'p' });
    const ack = await atEdge.next((f) => f.op === 'ack');
    const [msg] = await receivedAll(onRelay, [ack.op === 'ack' ? ack.id : '']);
    assert.deepEqual(msg?.data, { n: 1 });
    assert.equal(msg?.cursor, ack.op === 'ack' ? ack.cursor : '', 'the same cursor everywhere');
    const stored = (await (await fetch(`${relayUrl}/v1/topics/e2e.up/messages`)).json()) as { messages: Envelope[] };
    assert.deepEqual(
      stored.messages.map((m) => m.data),
      [{ n: 1 }],
    );
    onRelay.close();
    atEdge.close();
  });

  it('delivers a publish on the relay to a subscriber at the edge', async () => {
    const atEdge = await openSocket(`${linked.edge.wsUrl}/v1/topics/e2e.down/ws`);
    await atEdge.next((f) => f.op === 'subscribed');
    // Published before the Durable Object's link is even up: the link's subscription starts
    // from when the subscriber arrived, so the relay's catch-up brings it.
    const ids = (await publish(relayUrl, 'e2e.down', ['first'])).map((a) => a.id);
    const more = await publish(relayUrl, 'e2e.down', ['more']);
    const got = await receivedAll(atEdge, [...ids, ...more.map((a) => a.id)]);
    assert.equal(new Set(got.map((m) => m.id)).size, got.length, 'each message once');
    atEdge.close();
  });

  it('gives two edge subscribers on different topics only their own messages', async () => {
    const a = await openSocket(`${linked.edge.wsUrl}/v1/topics/e2e.iso.a/ws`);
    const b = await openSocket(`${linked.edge.wsUrl}/v1/topics/e2e.iso.b/ws`);
    await a.next((f) => f.op === 'subscribed');
    await b.next((f) => f.op === 'subscribed');
    const toA = [...(await publish(edgeUrl, 'e2e.iso.a', ['a1'])), ...(await publish(relayUrl, 'e2e.iso.a', ['a2']))];
    const toB = [...(await publish(relayUrl, 'e2e.iso.b', ['b1'])), ...(await publish(edgeUrl, 'e2e.iso.b', ['b2']))];
    await receivedAll(
      a,
      toA.map((m) => m.id),
    );
    await receivedAll(
      b,
      toB.map((m) => m.id),
    );
    a.send({ op: 'ping', ref: 'fence' });
    b.send({ op: 'ping', ref: 'fence' });
    await a.next((f) => f.op === 'pong');
    await b.next((f) => f.op === 'pong');
    assert.ok(a.frames.filter(isMsg).every((m) => m.topic === 'e2e.iso.a'));
    assert.ok(b.frames.filter(isMsg).every((m) => m.topic === 'e2e.iso.b'));
    a.close();
    b.close();
  });

  it('resumes at the edge from a cursor older than its ring and misses nothing, while publishing goes on', async () => {
    const topic = 'e2e.resume';
    const first = await openSocket(`${linked.edge.wsUrl}/v1/topics/${topic}/ws`);
    await first.next((f) => f.op === 'subscribed');
    const early = [...(await publish(edgeUrl, topic, ['e0'])), ...(await publish(relayUrl, topic, ['r0']))];
    const seen = await receivedAll(
      first,
      early.map((m) => m.id),
    );
    const cursor = seen
      .map((m) => m.cursor)
      .sort()
      .at(-1) as string;
    first.close();
    await first.closed;

    const missed: { id: string }[] = [];
    for (let i = 0; i < 10; i++) {
      missed.push(...(await publish(i % 2 ? relayUrl : edgeUrl, topic, [`m${i}a`, `m${i}b`])));
    }
    const status = (await (await fetch(`${edgeUrl}/v1/status?topic=${topic}`)).json()) as { topic: { floor: string } };
    assert.ok(status.topic.floor > cursor, 'the cursor is older than what the ring keeps');

    const during = Promise.all(
      Array.from({ length: 5 }, (_, i) => publish(i % 2 ? edgeUrl : relayUrl, topic, [`d${i}`])),
    );
    const resumed = await openSocket(`${linked.edge.wsUrl}/v1/topics/${topic}/ws?after=${cursor}`);
    await resumed.next((f) => f.op === 'subscribed', 15_000);
    const concurrent = (await during).flat();
    const expected = [...missed, ...concurrent].map((m) => m.id);
    const got = await receivedAll(resumed, expected);
    const earlyIds = new Set(early.map((m) => m.id));
    assert.deepEqual(
      [...new Set(got.map((m) => m.id))].filter((id) => !earlyIds.has(id)).sort(),
      [...expected].sort(),
      'every missed and concurrent message, nothing else',
    );
    resumed.close();
  });

  it('works with the client library: subscribe, publish (acked once durable), resume from sub.cursor', async () => {
    const topic = 'e2e.client';
    const received: Envelope[] = [];
    const client = createClient({ url: `${linked.edge.wsUrl}/v1/topics/${topic}/ws` });
    const sub = client.subscribe(topic, (m) => received.push(m));
    await sub.ready;
    const ack = await client.publish(topic, { hello: 'edge' });
    while (!received.some((m) => m.id === ack.id)) await new Promise((r) => setTimeout(r, 10));
    const cursor = sub.cursor;
    client.close();
    const later = await publish(relayUrl, topic, ['while away']);
    const again: Envelope[] = [];
    const resumed = createClient({ url: `${linked.edge.wsUrl}/v1/topics/${topic}/ws` });
    const sub2 = resumed.subscribe(topic, (m) => again.push(m), { after: cursor });
    await sub2.ready;
    const deadline = Date.now() + 10_000;
    while (!again.some((m) => m.id === later[0]?.id) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    assert.ok(
      again.some((m) => m.id === later[0]?.id),
      'got what was published while away',
    );
    resumed.close();
  });

  it("lists the edge links in the relay's /v1/status, with messages each way", async () => {
    const status = (await (await fetch(`${relayUrl}/v1/status`)).json()) as {
      edge: { links: { topic: string; state: string; messages_from_edge: number; messages_to_edge: number }[] };
    };
    const up = status.edge.links.find((l) => l.topic === 'e2e.iso.a');
    assert.ok(up, JSON.stringify(status.edge));
    assert.equal(up.state, 'open');
    assert.ok(up.messages_from_edge >= 1 && up.messages_to_edge >= 1, JSON.stringify(up));
  });

  it('lets the Durable Object hibernate with its client and relay sockets open; both still work after', async () => {
    const topic = 'e2e.sleep';
    const edgeStatus = async () =>
      ((await (await fetch(`${edgeUrl}/v1/status?topic=${topic}`)).json()) as { topic: { instance: { id: string } } })
        .topic;
    const relayLink = async () =>
      (
        (await (await fetch(`${relayUrl}/v1/status`)).json()) as {
          edge: { dial_requests: number; links: { topic: string; connected_since: string }[] };
        }
      ).edge;
    const atEdge = await openSocket(`${linked.edge.wsUrl}/v1/topics/${topic}/ws`);
    await atEdge.next((f) => f.op === 'subscribed');
    await receivedAll(
      atEdge,
      (await publish(relayUrl, topic, ['awake'])).map((m) => m.id),
    );
    const before = await edgeStatus();
    const linkBefore = await relayLink();

    // workerd evicts an idle object whose sockets are all hibernatable after about 10 s; there is
    // no event to await from outside (asking its status wakes it), so this test waits that long
    // and 5 s more (relay pings do not wake it): 1.5 s more was too little on a loaded machine.
    await new Promise((resolve) => setTimeout(resolve, 15_000));

    const late = await publish(relayUrl, topic, ['after sleeping']);
    await receivedAll(
      atEdge,
      late.map((m) => m.id),
    );
    assert.notEqual((await edgeStatus()).instance.id, before.instance.id, 'the object was evicted and woke again');
    const linkAfter = await relayLink();
    assert.equal(linkAfter.dial_requests, linkBefore.dial_requests, 'no new dial: the same link survived');
    const since = (edge: typeof linkAfter) => edge.links.find((l) => l.topic === topic)?.connected_since;
    assert.equal(since(linkAfter), since(linkBefore), 'the link stayed up through the hibernation');
    atEdge.close();
  });
});
