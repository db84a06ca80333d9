import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Envelope } from '@anode/shared';
import { isMsg, type LinkedEdge, publish, receivedAll, startLinkedEdge } from '../helpers/edge.ts';
import { openSocket } from '../helpers/ws.ts';

describe('edge link loss: the relay goes away and comes back', () => {
  let linked: LinkedEdge;
  before(async () => {
    linked = await startLinkedEdge();
  });
  after(() => linked.stop());

  it('acks edge publishes from Durable Object storage while no relay is up, and forwards them on its return', async () => {
    const topic = 'loss.a';
    const atEdge = await openSocket(`${linked.edge.wsUrl}/v1/topics/${topic}/ws`);
    await atEdge.next((f) => f.op === 'subscribed');
    const before = await publish(linked.relay.url, topic, ['before']);
    await receivedAll(atEdge, [before[0]?.id ?? '']);

    await linked.stopRelay();
    const whileDown: { id: string; cursor: string }[] = [];
    for (let i = 0; i < 5; i++) whileDown.push(...(await publish(linked.edge.url, topic, [`down${i}`])));
    await receivedAll(
      atEdge,
      whileDown.map((m) => m.id),
    ); // local fan-out goes on
    const held = (await (await fetch(`${linked.edge.url}/v1/status?topic=${topic}`)).json()) as {
      topic: { outbox: number };
    };
    assert.equal(held.topic.outbox, 5, 'acked and kept for the relay');

    const relay = await linked.startRelay();
    // Resume from before the outage, so the test does not race the link coming back.
    const onRelay = await openSocket(`${relay.wsUrl}/v1/topics/${topic}/ws?after=${before[0]?.cursor}`);
    const got = await receivedAll(
      onRelay,
      whileDown.map((m) => m.id),
    );
    assert.deepEqual(
      got.map((m) => m.data),
      ['down0', 'down1', 'down2', 'down3', 'down4'],
    );
    const stored = (await (await fetch(`${relay.url}/v1/topics/${topic}/messages`)).json()) as {
      messages: Envelope[];
    };
    assert.deepEqual(
      stored.messages.map((m) => m.data),
      ['before', 'down0', 'down1', 'down2', 'down3', 'down4'],
    );

    // And the link carries mesh → edge again, to the subscriber that stayed connected throughout.
    const back = await publish(relay.url, topic, ['back']);
    await receivedAll(atEdge, [back[0]?.id ?? '']);
    const ids = atEdge.frames.filter(isMsg).map((m) => m.id);
    assert.equal(new Set(ids).size, ids.length, 'the edge subscriber got each message once');
    const drained = (await (await fetch(`${linked.edge.url}/v1/status?topic=${topic}`)).json()) as {
      topic: { outbox: number };
    };
    assert.equal(drained.topic.outbox, 0, 'the relay acked everything');
    atEdge.close();
    onRelay.close();
  });
});

describe('edge link idle close: no clients, no link', () => {
  let linked: LinkedEdge;
  before(async () => {
    linked = await startLinkedEdge({ LINK_IDLE_MS: '200', RING_SIZE: '100' });
  });
  after(() => linked.stop());

  const linkOf = async (topic: string) => {
    const status = (await (await fetch(`${linked.relay.url}/v1/status`)).json()) as {
      edge: { links: { topic: string; state: string }[] };
    };
    return status.edge.links.find((l) => l.topic === topic && l.state === 'open');
  };

  it('closes the link after the last client leaves, dials again for the next, and a resume misses nothing', async () => {
    const topic = 'idle.a';
    const first = await openSocket(`${linked.edge.wsUrl}/v1/topics/${topic}/ws`);
    await first.next((f) => f.op === 'subscribed');
    const seen = await publish(linked.relay.url, topic, ['seen']);
    await receivedAll(first, [seen[0]?.id ?? '']);
    assert.ok(await linkOf(topic), 'linked while a client is connected');
    first.close();

    const deadline = Date.now() + 10_000;
    while ((await linkOf(topic)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await linkOf(topic), undefined, 'the Durable Object closed its idle link');

    // Published while no link exists: the edge never saw these.
    const away = await publish(linked.relay.url, topic, ['away1', 'away2']);
    const back = await openSocket(`${linked.edge.wsUrl}/v1/topics/${topic}/ws?after=${seen[0]?.cursor}`);
    await back.next((f) => f.op === 'subscribed', 10_000);
    await receivedAll(
      back,
      away.map((m) => m.id),
    );
    assert.ok(await linkOf(topic), 'linked again');
    const live = await publish(linked.relay.url, topic, ['live']);
    await receivedAll(back, [live[0]?.id ?? '']);
    back.close();
  });
});
