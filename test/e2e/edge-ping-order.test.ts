import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { MessageStore, ServerFrame } from '@anode/shared';
import { type EdgeRuntime, freePort, LINK_SECRET, publish, startEdge } from '../helpers/edge.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket, type RawSocket } from '../helpers/ws.ts';

/**
 * PROTOCOL.md: "a `ping` answered means every frame before it was". At the edge the connection
 * answered pings itself at once, while pattern subscriptions were still on their way to a relay
 * (which, resuming from `after`, answers `subscribed` only once it has read its store, and a
 * ping meanwhile) or still failing to reach one. The pong now waits for them, in order, and a
 * client pinging in a loop is refused past a bound instead of growing the wait list.
 *
 * The connection then counted answers per upstream, and a resume dropped by a later `unsub` or
 * `sub` (which the relay and the topic's object never answer, on purpose) left every later pong
 * waiting forever. Now each upstream fences itself: a relay, and a topic's object, answer a ping
 * only once every frame before it was handled, a dropped resume included.
 */
describe('edge: a ping answered means the pattern frames before it were (relay in process, Worker on workerd)', () => {
  let relay: TestRelay;
  let edge: EdgeRuntime;
  /**
   * While set, the relay's pattern resumes wait here (listing topics is their first store read),
   * and so do its history reads of `obj.*` topics (a topic object's resume older than its ring).
   */
  let gate: { opened: Promise<void>; open(): void; hits: number } | undefined;
  const wait = async () => {
    if (!gate) return;
    gate.hits += 1;
    await gate.opened;
  };
  const gated = (store: MessageStore): MessageStore => ({
    ...store,
    topics: async () => {
      await wait();
      return store.topics();
    },
    history: async (topic, query) => {
      if (topic.startsWith('obj.')) await wait();
      return store.history(topic, query);
    },
  });
  const hold = () => {
    let open = () => {};
    const opened = new Promise<void>((resolve) => (open = resolve));
    gate = { opened, open, hits: 0 };
    return gate;
  };
  const until = async (ready: () => boolean, what: string) => {
    const deadline = Date.now() + 15_000;
    while (!ready()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const refsOf = (socket: RawSocket, ops: readonly ServerFrame['op'][]) =>
    socket.frames.filter((f) => ops.includes(f.op)).map((f) => ('ref' in f ? f.ref : undefined));

  before(async () => {
    // Linked: a topic's object reads what is older than its ring from the relay's history.
    const edgeUrl = `http://127.0.0.1:${await freePort()}`;
    relay = await startRelay({ 'edge-link-secret': LINK_SECRET, 'edge-url': edgeUrl }, { wrapStore: gated });
    edge = await startEdge({ RELAY_URLS: relay.url, LINK_SECRET, EDGE_URL: edgeUrl });
  });
  after(async () => {
    await edge?.stop();
    await relay?.stop();
  });

  it('answers a ping after the subscribed of a pattern resume before it, and bounds the pings waiting', async () => {
    const [first] = await publish(relay.url, 'order.a', ['first']);
    const socket = await openSocket(`${edge.wsUrl}/v1/ws`);
    try {
      const held = hold();
      socket.send({ op: 'sub', topic: 'order.>', after: first?.cursor, ref: 'sub' });
      socket.send({ op: 'ping', ref: 'p0' });
      await until(() => held.hits > 0, 'the relay to start the resume');
      // The relay has answered its fence ping by now; its `subscribed` still waits for the store.
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(refsOf(socket, ['pong', 'subscribed']), [], 'no pong before the subscription is answered');

      // The edge lets 999 pings wait (one below a relay's 1,000: see ping-fences.ts).
      for (let i = 1; i <= 999; i++) socket.send({ op: 'ping', ref: `p${i}` });
      // The 1,000th ping finds 999 waiting: refused, not queued.
      const refused = await socket.next((f) => f.op === 'err' && f.ref === 'p999');
      assert.equal(refused.op === 'err' && refused.code, 'limit_reached');

      held.open();
      await socket.next((f) => f.op === 'pong' && f.ref === 'p998', 15_000);
      const expected = ['sub', ...Array.from({ length: 999 }, (_, i) => `p${i}`)];
      assert.deepEqual(refsOf(socket, ['pong', 'subscribed']), expected, 'subscribed first, then every pong in order');
      assert.ok(!socket.frames.some((f) => 'ref' in f && f.ref?.startsWith('anode-')), 'no internal ref leaks');

      // With nothing outstanding, a ping is answered by itself again.
      socket.send({ op: 'ping', ref: 'idle' });
      await socket.next((f) => f.op === 'pong' && f.ref === 'idle');
    } finally {
      gate?.open();
      gate = undefined;
      socket.close();
    }
  });

  // Where each resume waits: a pattern's at the relay, an exact topic's at its object (history
  // older than its ring, from the relay over the link).
  const resumes = [
    { where: 'a pattern resume at the relay', topic: 'drop.>', publishTo: 'drop.a' },
    { where: "a topic's resume at its object", topic: 'obj.drop', publishTo: 'obj.drop' },
  ];

  for (const { where, topic, publishTo } of resumes) {
    it(`answers a ping after ${where}, and only after its subscribed`, async () => {
      await publish(relay.url, publishTo, ['first']);
      const socket = await openSocket(`${edge.wsUrl}/v1/ws`);
      try {
        const held = hold();
        socket.send({ op: 'sub', topic, after: '0', ref: 's1' });
        socket.send({ op: 'ping', ref: 'p' });
        await until(() => held.hits > 0, 'the resume to start');
        await new Promise((r) => setTimeout(r, 300));
        assert.deepEqual(refsOf(socket, ['pong', 'subscribed', 'err']), [], 'nothing before the resume is through');
        held.open();
        await socket.next((f) => f.op === 'pong' && f.ref === 'p', 15_000);
        assert.deepEqual(refsOf(socket, ['pong', 'subscribed', 'err']), ['s1', 'p']);
        assert.ok(
          socket.frames.some((f) => f.op === 'msg' && f.data === 'first'),
          'the resume sent what was missed',
        );
      } finally {
        gate?.open();
        gate = undefined;
        socket.close();
      }
    });

    for (const second of ['unsub', 'sub'] as const) {
      it(`answers a ping after ${where} dropped by ${second === 'sub' ? 'a second sub' : 'an unsub'}`, async () => {
        await publish(relay.url, publishTo, ['x']);
        const socket = await openSocket(`${edge.wsUrl}/v1/ws`);
        try {
          const held = hold();
          socket.send({ op: 'sub', topic, after: '0', ref: 's1' });
          await until(() => held.hits > 0, 'the resume to start');
          if (second === 'unsub') socket.send({ op: 'unsub', topic });
          else socket.send({ op: 'sub', topic, ref: 's2' });
          socket.send({ op: 'ping', ref: 'p' });
          await new Promise((r) => setTimeout(r, 200));
          held.open();
          // The dropped resume is never answered: the pong must not wait for its answer.
          await socket.next((f) => f.op === 'pong' && f.ref === 'p', 15_000);
          const answers = refsOf(socket, ['pong', 'subscribed', 'err']);
          assert.deepEqual(answers, second === 'sub' ? ['s2', 'p'] : ['p']);
          socket.send({ op: 'ping', ref: 'q' });
          await socket.next((f) => f.op === 'pong' && f.ref === 'q', 15_000);
          assert.ok(!socket.frames.some((f) => 'ref' in f && f.ref?.startsWith('anode-')), 'no internal ref leaks');
        } finally {
          gate?.open();
          gate = undefined;
          socket.close();
        }
      });
    }
  }

  it('answers a ping after the refusal of a pattern subscription whose relay cannot be reached', async () => {
    const unreachable = await startEdge({ RELAY_URLS: `http://127.0.0.1:${await freePort()}` });
    const socket = await openSocket(`${unreachable.wsUrl}/v1/ws`);
    try {
      socket.send({ op: 'sub', topic: 'nowhere.>', ref: 'sub' });
      socket.send({ op: 'ping', ref: 'fence' });
      await socket.next((f) => f.op === 'pong' && f.ref === 'fence', 15_000);
      assert.deepEqual(refsOf(socket, ['err', 'pong']), ['sub', 'fence']);
      assert.ok(socket.frames.some((f) => f.op === 'err' && f.code === 'unavailable'));
    } finally {
      socket.close();
      await unreachable.stop();
    }
  });
});
