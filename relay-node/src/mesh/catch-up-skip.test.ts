import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import type { Envelope, MessageStore } from '@anode/shared';
import { createHybridClock } from '@anode/shared';
import { createLogger } from '../logger.ts';
import { memoryStore } from '../hub/test-hub.ts';
import { catchUpFrom, serveCatchUp, topicsPage } from './catch-up.ts';
import { planCatchUp } from './catch-up-progress.ts';
import type { Host } from './host.ts';
import { loopbackNodes } from './loopback-nodes.fixture.ts';
import { createShards } from './shards.ts';

// A turn of a catch-up that yielded its slot on this connection (sync.ts) goes on from where the
// last turn stopped: the real catchUpFrom, against a real serveCatchUp, asks no topic that turn
// read whole, reads every other one, and does not take the listing of those topics for pages that
// bring nothing (a resumed turn asked again, one request each, for every topic read whole).

const { node, stop } = loopbackNodes();
after(stop);

it('a turn asks no topic its last turn read whole, and reads every other', { timeout: 30_000 }, async () => {
  const shards = createShards(1);
  // Long names (about 400 bytes): a listing page holds ~160, so the 3,000 read whole fill ~19 pages,
  // past the bound of 16 listing pages in a row that bring no topic to read.
  const name = (i: number) => `${`${'q'.repeat(64)}.`.repeat(6)}${String(i).padStart(5, '0')}`;
  const READ = 3_000;
  const topics = Array.from({ length: READ + 5 }, (_, i) => name(i));
  let pages = 0;
  for (let at: string | undefined; pages === 0 || at !== undefined; pages++) {
    at = topicsPage(topics.slice(0, READ), at).next ?? undefined;
  }
  assert.ok(pages > 17, `the topics read whole fill ${pages} listing pages`);
  const clock = createHybridClock('s');
  const store = memoryStore();
  await store.append(
    topics.map((topic, i): Envelope => ({ id: `m${i}`, topic, cursor: clock.next(), source: 's', ts: 0, data: i })),
  );
  const asked = new Set<string>();
  const counted: MessageStore = {
    ...store,
    history: (topic, query) => (asked.add(topic), store.history(topic, query)),
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

  // What the turn before left: every topic up to name(READ - 1) read whole; then a yield.
  const last = { after: '0', started: 1_000_000, through: name(READ - 1) };
  const { plan, current } = planCatchUp('0', 2_000_000, 1_000, last, true);
  const finished: string[] = [];
  const got: string[] = [];
  const fresh = await catchUpFrom(client as unknown as Host, shards, 64 * 1024, {
    peer: server.peerId,
    shards: [0],
    after: '0',
    ingest: async (envelopes) => (got.push(...envelopes.map((m) => (m as Envelope).id)), envelopes.length),
    plan: { ...plan, finished: (topic) => (finished.push(topic), plan.finished(topic)) },
    timeoutMs: 5_000,
  });
  const rest = topics.slice(READ);
  assert.deepEqual([...asked], rest, 'only the topics not read whole are asked for');
  assert.deepEqual(finished, rest, 'progress: the others finished, in order');
  assert.deepEqual(got, ['m3000', 'm3001', 'm3002', 'm3003', 'm3004']);
  assert.equal(fresh, 5);
  const kept = current();
  assert.deepEqual([kept?.started, kept?.through], [1_000_000, rest.at(-1)], 'the first turn’s start is kept');
  await store.close();
});
