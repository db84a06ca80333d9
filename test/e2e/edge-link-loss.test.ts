import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Envelope, type MessageStore, UnavailableError } from '@anode/shared';
import {
  freePort,
  isMsg,
  LINK_SECRET,
  type LinkedEdge,
  publish,
  receivedAll,
  startEdge,
  startLinkedEdge,
} from '../helpers/edge.ts';
import { startRelay, type TestRelay, tempDir } from '../helpers/relay.ts';
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

describe('edge link lost while idle: the next link starts from about then', () => {
  let linked: LinkedEdge;
  before(async () => {
    linked = await startLinkedEdge({ LINK_IDLE_MS: '60000' });
  });
  after(() => linked.stop());

  // The link dropped in its idle window (no clients) and the object went on as if it had been
  // continuous: the next client's link resumed from the old cursor, and the relay replayed what
  // the mesh published meanwhile to that client as live messages.
  it('does not replay what the mesh published while it had no link to a client that subscribes later', async () => {
    const topic = 'lapse.a';
    const first = await openSocket(`${linked.edge.wsUrl}/v1/topics/${topic}/ws`);
    await first.next((f) => f.op === 'subscribed');
    const seen = await publish(linked.relay.url, topic, ['seen']);
    await receivedAll(first, [seen[0]?.id ?? '']);
    first.close();
    await first.closed;
    await new Promise((r) => setTimeout(r, 300)); // the object saw its last client go

    await linked.stopRelay(); // the link drops inside the 60 s idle window
    const relay = await linked.startRelay();
    await publish(relay.url, topic, ['meanwhile']);
    // Past the edge's restart margin (2 s) and a restarted relay's clock lease (its cursors run
    // up to 5 s ahead of its wall clock right after a start: relay-node/src/clock-lease.ts).
    await new Promise((r) => setTimeout(r, 7_500));

    const later = await openSocket(`${linked.edge.wsUrl}/v1/topics/${topic}/ws`);
    await later.next((f) => f.op === 'subscribed', 10_000);
    // Published until one reaches the edge: the link is on its way when the client is subscribed.
    for (const deadline = Date.now() + 15_000; Date.now() < deadline;) {
      const live = await publish(relay.url, topic, ['live']);
      if (await receivedAll(later, [live[0]?.id ?? ''], 1_000).catch(() => undefined)) break;
    }
    const data = later.frames.filter(isMsg).map((m) => m.data);
    assert.ok(data.includes('live'), 'the link carries live messages again');
    assert.ok(!data.includes('meanwhile'), `published before this client subscribed: ${JSON.stringify(data)}`);
    later.close();
  });
});

describe('edge link: a resume the relay refuses as unavailable', () => {
  it('is asked again from the same point, so what the relay accepted meanwhile still reaches the edge', async () => {
    const topic = 'refused.a';
    const dataDir = await tempDir('anode-edge-refused-');
    const edgeUrl = `http://127.0.0.1:${await freePort()}`;
    const flags = { 'edge-link-secret': LINK_SECRET, 'edge-url': edgeUrl };
    // Fault-injection test double: the relay's history reads fail while `down` (as a relay's do
    // while its Cassandra is away); appends still succeed (a spool would take them).
    const reads = { down: false, refused: 0 };
    const withFailingReads = (store: MessageStore): MessageStore => ({
      ...store,
      history: async (...args) => {
        if (reads.down) {
          reads.refused += 1;
          throw new UnavailableError('storage is unavailable for reads (test double)');
        }
        return store.history(...args);
      },
    });
    let relay: TestRelay = await startRelay(flags, { dataDir, wrapStore: withFailingReads });
    const port = new URL(relay.url).port;
    const edge = await startEdge({
      RELAY_URLS: relay.url,
      LINK_SECRET,
      LINK_WAIT_MS: '2000',
      LINK_RETRY_MAX_MS: '400',
      EDGE_URL: edgeUrl,
    });
    const atEdge = await openSocket(`${edge.wsUrl}/v1/topics/${topic}/ws`);
    try {
      await atEdge.next((f) => f.op === 'subscribed');
      const first = await publish(relay.url, topic, ['first']);
      await receivedAll(atEdge, [first[0]?.id ?? '']);

      // The relay restarts with its reads failing: the edge's resume is refused until they work.
      await relay.stop();
      reads.down = true;
      relay = await startRelay({ ...flags, port }, { dataDir, wrapStore: withFailingReads });
      const deadline = Date.now() + 20_000;
      while (reads.refused < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(reads.refused >= 2, `the edge's resume was refused (${reads.refused} reads failed)`);
      const meanwhile = await publish(relay.url, topic, ['meanwhile']);
      // Longer than the edge's restart margin: resuming "from about now" would skip it.
      await new Promise((r) => setTimeout(r, 3_000));
      reads.down = false;
      const got = await receivedAll(atEdge, [meanwhile[0]?.id ?? ''], 20_000);
      assert.deepEqual(
        got.map((m) => m.data),
        ['first', 'meanwhile'],
      );
      assert.ok(!atEdge.frames.some((f) => f.op === 'err'), 'no gap was reported to the edge client');
    } finally {
      atEdge.close();
      await edge.stop();
      await relay.stop();
    }
  });
});
