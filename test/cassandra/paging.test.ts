import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope, type MessageStore, messageId, randomNodeId } from '@anode/shared';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import type { CassandraServer } from './cassandra-server.ts';
import { sharedCassandra } from './shared-cassandra.ts';

/**
 * Reads past the driver's first page (fetchSize, 5,000 rows): topics, the sources of a topic's
 * `latest`, and the buckets a history read walks all come back whole on a real Cassandra.
 */
let server: CassandraServer | undefined;
const serverReady = sharedCassandra({ log: (line) => console.error(`[cassandra] ${line}`) }).then((s) => (server = s));
const stores: MessageStore[] = [];
after(async () => {
  for (const store of stores) await store.close();
  await server?.stop();
});

/** More than one driver page. */
const MANY = 5_050;

async function openStore(bucketMs: number): Promise<MessageStore> {
  const s = await serverReady;
  const store = createCassandraStore({
    contactPoints: [`${s.host}:${s.port}`],
    localDataCenter: 'datacenter1',
    keyspace: `p_${randomNodeId(12)}`,
    replication: 'SimpleStrategy:1',
    writeConsistency: 'LOCAL_QUORUM',
    readConsistency: 'LOCAL_QUORUM',
    concurrency: 64,
    bucketMs,
    timeoutMs: 15_000,
    retention: { maxAgeMs: 0, maxMessages: 0 },
  });
  stores.push(store);
  return store;
}

async function appendAll(store: MessageStore, messages: Envelope[]) {
  for (let i = 0; i < messages.length; i += 500) {
    const batch = messages.slice(i, i + 500);
    await store.append(batch, { minted: batch.map(() => true) });
  }
}

describe('Cassandra reads longer than one driver page', () => {
  it(`topics() lists all ${MANY} topics and latest() all ${MANY} sources of a topic`, async () => {
    const store = await openStore(3_600_000);
    const clock = createHybridClock('paging');
    const message = (topic: string, source: string): Envelope => ({
      id: messageId(),
      topic,
      cursor: clock.next(),
      source,
      ts: Date.now(),
      data: source,
    });
    const topics = Array.from({ length: MANY }, (_, i) => `paging.t${i}`);
    await appendAll(
      store,
      topics.map((topic) => message(topic, 's')),
    );
    await appendAll(
      store,
      Array.from({ length: MANY }, (_, i) => message('paging.wide', `s${i}`)),
    );
    const listed = await store.topics();
    assert.equal(listed.length, MANY + 1, 'every topic, not the first page of them');
    assert.deepEqual(listed, [...topics, 'paging.wide'].sort());
    const latest = await store.latest('paging.wide');
    assert.equal(Object.keys(latest).length, MANY, 'every source, not the first page of them');
  });

  it(`history walks all ${MANY} buckets of a topic, not the first page of the bucket list`, async () => {
    // One message per millisecond and a bucket per millisecond: a bucket per message.
    const store = await openStore(1);
    let ms = Date.now() - 60_000;
    const clock = createHybridClock('paging', () => ms++);
    const messages = Array.from({ length: MANY }, (_, i): Envelope => ({
      id: messageId(),
      topic: 'paging.buckets',
      cursor: clock.next(),
      source: 's',
      ts: i,
      data: i,
    }));
    await appendAll(store, messages);
    const page = await store.history('paging.buckets', { limit: MANY + 10 });
    assert.equal(page.length, MANY, 'a page shorter than its limit says there are no more: it must hold them all');
    assert.deepEqual(
      page.map((m) => m.id),
      messages.map((m) => m.id),
    );
  });
});
