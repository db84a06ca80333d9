import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import type { Envelope, MessageStore } from '@anode/shared';
import { createHybridClock } from '@anode/shared';
import { createLogger } from '../logger.ts';
import { memoryStore } from '../hub/test-hub.ts';
import { catchUpFrom, serveCatchUp } from './catch-up.ts';
import { planCatchUp } from './catch-up-progress.ts';
import type { Host } from './host.ts';
import { loopbackNodes } from './loopback-nodes.fixture.ts';
import { createShards } from './shards.ts';

// A turn resumed on the same connection (goOn) starts its progress with no `through`. When it
// yields inside the topic the last turn was reading (a topic of many pages), what it keeps names
// that topic and cursor only: the next turn skips nothing and asks every topic before it again,
// from `after` (not even from the first turn's start minus the lookback).

it('a goOn turn that yields mid-topic keeps the topics read whole before it', () => {
  const A = { after: '0', started: 1_000_000, through: 'b', topic: 'c', cursor: '00000000001000' };
  const B = planCatchUp('0', 2_000_000, 1_000, A, true);
  assert.equal(B.plan.skip?.('a'), true);
  B.plan.reached('c', '00000000002000'); // read further into 'c', then yields
  const kept = B.current();
  const C = planCatchUp('0', 3_000_000, 1_000, kept, true);
  assert.deepEqual(
    { skipA: C.plan.skip?.('a'), fromA: C.plan.from('a') },
    { skipA: true, fromA: C.plan.from('a') },
    `kept ${JSON.stringify(kept)}: the third turn asks 'a' again from ${C.plan.from('a')}`,
  );
});

const { node, stop } = loopbackNodes();
after(stop);

it(
  'real catchUpFrom: the third turn asks again every topic read whole before a many-page topic',
  { timeout: 30_000 },
  async () => {
    const shards = createShards(1);
    const clock = createHybridClock('s');
    const store = memoryStore();
    const small = Array.from({ length: 10 }, (_, i) => `a${i}`);
    const envelopes: Envelope[] = small.map((topic, i) => ({
      id: `s${i}`,
      topic,
      cursor: clock.next(),
      source: 's',
      ts: 0,
      data: i,
    }));
    for (let i = 0; i < 2_000; i++)
      envelopes.push({ id: `m${i}`, topic: 'm', cursor: clock.next(), source: 's', ts: 0, data: i });
    await store.append(envelopes);
    let asked: string[] = [];
    const counted: MessageStore = {
      ...store,
      history: (topic, query) => (asked.push(topic), store.history(topic, query)),
    };
    const server = await node();
    await serveCatchUp(server as unknown as Host, {
      store: counted,
      shards,
      maxMessageBytes: 64 * 1024,
      log: createLogger('silent'),
    });
    const client = await node();
    await client.dial(server.getMultiaddrs());

    // One turn: runs until its first page of 'm' is in (a yield then), or to the end.
    const turn = async (planned: ReturnType<typeof planCatchUp>, yieldInM: boolean) => {
      asked = [];
      const ac = new AbortController();
      const result = await catchUpFrom(client as unknown as Host, shards, 64 * 1024, {
        peer: server.peerId,
        shards: [0],
        after: '0',
        ingest: async (list) => list.length,
        signal: ac.signal,
        plan: {
          ...planned.plan,
          reached: (topic, cursor) => {
            planned.plan.reached(topic, cursor);
            if (yieldInM && topic === 'm') ac.abort(new Error('yield'));
          },
        },
        timeoutMs: 5_000,
      }).then(
        () => 'done',
        (error: Error) => error.message,
      );
      return { result, asked: [...new Set(asked)], kept: planned.current() };
    };
    const A = await turn(planCatchUp('0', 1_000_000, 1_000), true);
    assert.equal(A.result, 'yield');
    const B = await turn(planCatchUp('0', 2_000_000, 1_000, A.kept, true), true);
    assert.equal(B.result, 'yield');
    assert.deepEqual(B.asked, ['m'], 'the second turn skips a0..a9');
    const C = await turn(planCatchUp('0', 3_000_000, 1_000, B.kept, true), false);
    assert.equal(C.result, 'done');
    await store.close();
    assert.deepEqual(C.asked, ['m'], `the third turn asks ${C.asked.join(',')} (B kept ${JSON.stringify(B.kept)})`);
  },
);
