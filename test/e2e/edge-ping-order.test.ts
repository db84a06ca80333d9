import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { MessageStore, ServerFrame } from '@anode/shared';
import { type EdgeRuntime, freePort, publish, startEdge } from '../helpers/edge.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket, type RawSocket } from '../helpers/ws.ts';

/**
 * PROTOCOL.md: "a `ping` answered means every frame before it was". At the edge the connection
 * answered pings itself at once, while pattern subscriptions were still on their way to a relay
 * (which, resuming from `after`, answers `subscribed` only once it has read its store, and a
 * ping meanwhile) or still failing to reach one. The pong now waits for them, in order, and a
 * client pinging in a loop is refused past a bound instead of growing the wait list.
 */
describe('edge: a ping answered means the pattern frames before it were (relay in process, Worker on workerd)', () => {
  let relay: TestRelay;
  let edge: EdgeRuntime;
  /** While set, the relay's resumes wait here (listing topics is their first store read). */
  let gate: { opened: Promise<void>; open(): void; hits: number } | undefined;
  const gated = (store: MessageStore): MessageStore => ({
    ...store,
    topics: async () => {
      if (gate) {
        gate.hits += 1;
        await gate.opened;
      }
      return store.topics();
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
    relay = await startRelay({}, { wrapStore: gated });
    edge = await startEdge({ RELAY_URLS: relay.url });
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

      for (let i = 1; i <= 1000; i++) socket.send({ op: 'ping', ref: `p${i}` });
      // The 1001st ping finds 1000 waiting: refused, not queued.
      const refused = await socket.next((f) => f.op === 'err' && f.ref === 'p1000');
      assert.equal(refused.op === 'err' && refused.code, 'limit_reached');

      held.open();
      await socket.next((f) => f.op === 'pong' && f.ref === 'p999', 15_000);
      const expected = ['sub', ...Array.from({ length: 1000 }, (_, i) => `p${i}`)];
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
