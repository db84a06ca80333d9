import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { contentId, createHybridClock, type Envelope, randomId, randomNodeId } from '@anode/shared';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import { CLAIM_SHARDS } from '@anode/relay-node/src/storage/cassandra/schema.ts';
import cassandra from 'cassandra-driver';
import { asArgs, FAST_MESH, meshStatus, publish, waitFor } from '../helpers/mesh.ts';
import { history, spawnRelay, startRelay, tempDir, type TestRelay } from '../helpers/relay.ts';
import { type CassandraServer, findJava } from './cassandra-server.ts';
import { sharedCassandra } from './shared-cassandra.ts';

/**
 * "Never stored twice" on a real Cassandra: the same idempotency key raced through two stores and
 * two relays sharing one cluster, a retry after a relay was SIGKILLed and restarted, and gossip
 * and catch-up replaying messages into the store that already holds them. Rows are counted with
 * raw CQL, so a second copy anywhere (history or id table) would show.
 */
const skip = !findJava() && !process.env.CI ? 'java is not installed (CI never skips this suite)' : false;

let server: CassandraServer | undefined;
const serverReady = skip
  ? Promise.resolve(undefined)
  : sharedCassandra({ log: (line) => console.error(`[cassandra] ${line}`) }).then((s) => (server = s));
let raw: cassandra.Client | undefined;

after(async () => {
  await raw?.shutdown();
  await server?.stop();
});

const keyspaceName = () => `d_${randomNodeId(12)}`;
const storeOptions = (s: CassandraServer, keyspace: string) => ({
  contactPoints: [`${s.host}:${s.port}`],
  localDataCenter: 'datacenter1',
  keyspace,
  replication: 'SimpleStrategy:1',
  writeConsistency: 'LOCAL_QUORUM',
  readConsistency: 'LOCAL_QUORUM',
  concurrency: 32,
  bucketMs: 60_000,
  // Generous: two stores race Paxos rounds on a shared, loaded 2-core machine.
  timeoutMs: 15_000,
  retention: { maxAgeMs: 0, maxMessages: 0 },
});

/** Rows per id in the history table and the claims table of a keyspace, by raw CQL. */
async function rowCounts(keyspace: string, topic: string) {
  const client = raw as cassandra.Client;
  const rows = (
    await client.execute(`SELECT id, cursor FROM ${keyspace}.messages WHERE topic = ? ALLOW FILTERING`, [topic])
  ).rows;
  const perId = new Map<string, number>();
  for (const row of rows) perId.set(row.id as string, (perId.get(row.id as string) ?? 0) + 1);
  const claimRows = (await client.execute(`SELECT topic, shard, id FROM ${keyspace}.message_claims`)).rows;
  const claims = claimRows.map((r) => r.id as string);
  const partitions = new Set(claimRows.map((r) => `${r.topic}/${r.shard}`));
  return {
    rows: rows.length,
    perId,
    claims,
    partitions,
    twice: [...perId].filter(([, n]) => n > 1).map(([id]) => id),
  };
}

const cassandraFlags = (s: CassandraServer, keyspace: string) => ({
  store: 'cassandra',
  'cassandra-contact-points': `${s.host}:${s.port}`,
  'cassandra-keyspace': keyspace,
  'cassandra-bucket-ms': '60000',
  'publish-rate': '100000',
  'publish-burst': '100000',
});

describe('Cassandra: every message stored once', { skip }, () => {
  before(async () => {
    const s = (await serverReady) as CassandraServer;
    raw = new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
  });

  it('two stores racing the same keys: one cursor per key, one row, and random ids claim nothing', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = keyspaceName();
    const a = createCassandraStore(storeOptions(s, keyspace));
    const b = createCassandraStore(storeOptions(s, keyspace));
    await Promise.all([a.health(), b.health()]);
    const clockA = createHybridClock('racea');
    const clockB = createHybridClock('raceb');
    const keys = Array.from({ length: 300 }, (_, i) => `key-${i}`);
    const mint = (clock: typeof clockA, key: string): Envelope => ({
      id: contentId('race.t', 'pub', key),
      topic: 'race.t',
      cursor: clock.next(),
      source: 'pub',
      ts: Date.now(),
      data: { key, by: clock.nodeId },
    });
    // The same keys through both stores at once, in batches of 50, each store minting its own cursors.
    const run = async (store: typeof a, clock: typeof clockA) => {
      const out = [];
      for (let i = 0; i < keys.length; i += 50) {
        const batch = keys.slice(i, i + 50).map((k) => mint(clock, k));
        out.push(...(await store.append(batch, { minted: batch.map(() => true) })));
      }
      return out;
    };
    const [ra, rb] = await Promise.all([run(a, clockA), run(b, clockB)]);
    keys.forEach((key, i) => {
      const [x, y] = [ra[i], rb[i]];
      assert.equal(Number(x?.inserted) + Number(y?.inserted), 1, `${key}: exactly one store inserted it`);
      assert.equal(x?.envelope.cursor, y?.envelope.cursor, `${key}: both answer with the winning cursor`);
      assert.deepEqual(x?.envelope, y?.envelope);
    });
    const unkeyed = Array.from({ length: 100 }, (): Envelope => ({
      id: randomId(),
      topic: 'race.t',
      cursor: clockA.next(),
      source: 'pub',
      ts: Date.now(),
      data: 'unkeyed',
    }));
    await a.append(unkeyed, { minted: unkeyed.map(() => true) });
    const counts = await rowCounts(keyspace, 'race.t');
    assert.deepEqual(counts.twice, []);
    assert.equal(counts.rows, 400, 'one history row per message');
    assert.equal(counts.claims.length, 300, 'claims only for keyed ids');
    assert.equal((await a.history('race.t', { limit: 1000 })).length, 400);
    await a.close();
    await b.close();
  });

  it('one batch of claims, some already standing: those answer the stored copy, the rest are claimed', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = keyspaceName();
    const a = createCassandraStore(storeOptions(s, keyspace));
    const b = createCassandraStore(storeOptions(s, keyspace));
    const clockA = createHybridClock('mixeda');
    const clockB = createHybridClock('mixedb');
    const mint = (clock: typeof clockA, i: number): Envelope => ({
      id: contentId('mixed.t', 'pub', `key-${i}`),
      topic: 'mixed.t',
      cursor: clock.next(),
      source: 'pub',
      ts: Date.now(),
      data: { i, by: clock.nodeId },
    });
    // a stores every third key first; then b appends all 90 keys in one batch with its own cursors.
    const early = Array.from({ length: 30 }, (_, n) => mint(clockA, n * 3));
    assert.ok((await a.append(early, { minted: early.map(() => true) })).every((r) => r.inserted));
    const all = Array.from({ length: 90 }, (_, i) => mint(clockB, i));
    const results = await b.append(all, { minted: all.map(() => true) });
    all.forEach((e, i) => {
      const r = results[i];
      if (i % 3 === 0) {
        assert.equal(r?.inserted, false, `key-${i} was stored by a`);
        assert.deepEqual(r?.envelope, early[i / 3], `key-${i}: a's copy, with a's cursor`);
      } else {
        assert.equal(r?.inserted, true, `key-${i} is new`);
        assert.deepEqual(r?.envelope, e);
      }
    });
    const counts = await rowCounts(keyspace, 'mixed.t');
    assert.equal(counts.rows, 90, 'one history row per key');
    assert.deepEqual(counts.twice, []);
    assert.equal(new Set(counts.claims).size, 90);
    assert.equal(counts.claims.length, 90, 'one claim per key');
    assert.ok(counts.partitions.size <= CLAIM_SHARDS, `claims of one topic in at most ${CLAIM_SHARDS} partitions`);
    await a.close();
    await b.close();
  });

  it('replayed gossip and catch-up (copies from elsewhere) are answered as stored, not written again', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = keyspaceName();
    const origin = createCassandraStore(storeOptions(s, keyspace));
    const replica = createCassandraStore(storeOptions(s, keyspace));
    const clock = createHybridClock('replay');
    const messages = Array.from({ length: 120 }, (_, i): Envelope => ({
      id: i % 2 ? randomId() : contentId('replay.t', 'pub', `k${i}`),
      topic: 'replay.t',
      cursor: clock.next(),
      source: 'pub',
      ts: Date.now(),
      data: i,
    }));
    const first = await origin.append(messages, { minted: messages.map(() => true) });
    assert.ok(first.every((r) => r.inserted));
    // The same envelopes, twice, as another relay's gossip and catch-up would hand them over.
    for (let round = 0; round < 2; round++) {
      const again = await replica.append(messages);
      assert.deepEqual(
        again.map((r) => r.inserted),
        messages.map(() => false),
        'replays are not new',
      );
      assert.deepEqual(
        again.map((r) => r.envelope),
        messages,
      );
    }
    const counts = await rowCounts(keyspace, 'replay.t');
    assert.equal(counts.rows, 120);
    assert.deepEqual(counts.twice, []);
    await origin.close();
    await replica.close();
  });

  it('two relays on one cluster, the same key published to both at once: one ack cursor, one row', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = keyspaceName();
    const relays: TestRelay[] = [];
    try {
      relays.push(await startRelay(cassandraFlags(s, keyspace)));
      relays.push(await startRelay(cassandraFlags(s, keyspace)));
      const [a, b] = relays as [TestRelay, TestRelay];
      const keys = Array.from({ length: 40 }, (_, i) => `order-${i}`);
      const acks = await Promise.all(
        keys.map(async (key, i) => {
          const item = [{ key, data: { i } }];
          const [x, y] = await Promise.all([publish(a.url, 'dual.t', item), publish(b.url, 'dual.t', item)]);
          return { key, a: x[0], b: y[0] };
        }),
      );
      for (const { key, a: x, b: y } of acks) {
        assert.ok(x && y);
        assert.equal(x.id, y.id, key);
        assert.equal(x.cursor, y.cursor, `${key}: both relays ack the one stored cursor`);
      }
      const counts = await rowCounts(keyspace, 'dual.t');
      assert.equal(counts.rows, keys.length);
      assert.deepEqual(counts.twice, []);
      assert.equal((await history(b.url, 'dual.t')).length, keys.length);
    } finally {
      for (const relay of relays) await relay.stop();
    }
  });

  it('a retry after the relay was SIGKILLed and restarted gets the first ack back', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = keyspaceName();
    const dataDir = await tempDir();
    const args = [...asArgs({ ...cassandraFlags(s, keyspace), port: '0', 'data-dir': dataDir })];
    let relay = await spawnRelay(args);
    try {
      const items = Array.from({ length: 20 }, (_, i) => ({ key: `retry-${i}`, data: i }));
      const firstAcks = await publish(relay.url, 'retry.t', items);
      relay.child.kill('SIGKILL');
      await relay.exited;
      relay = await spawnRelay(args);
      const againAcks = await publish(relay.url, 'retry.t', items);
      assert.deepEqual(againAcks, firstAcks, 'same ids, same cursors');
      const counts = await rowCounts(keyspace, 'retry.t');
      assert.equal(counts.rows, items.length);
      assert.deepEqual(counts.twice, []);
    } finally {
      relay.child.kill('SIGKILL');
      await relay.exited;
    }
  });

  it('a mesh on one shared keyspace: gossip and a late node’s catch-up write nothing twice', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = keyspaceName();
    const relays: TestRelay[] = [];
    try {
      // persist all: every node writes what it receives into the (shared) store, the worst case.
      const flags = { ...cassandraFlags(s, keyspace), ...FAST_MESH, 'mesh-persist': 'all' };
      const a = await startRelay({ ...flags, listen: '/ip4/127.0.0.1/tcp/0' });
      relays.push(a);
      const bootstrap = (await meshStatus(a.url)).node.multiaddrs[0] as string;
      const b = await startRelay({ ...flags, bootstrap });
      relays.push(b);
      await waitFor('b to peer with a', async () => (await meshStatus(a.url)).peers.length === 1);
      const unkeyed = await publish(
        a.url,
        'mesh.t',
        Array.from({ length: 60 }, (_, i) => ({ data: i })),
      );
      const keyed = await publish(
        b.url,
        'mesh.t',
        Array.from({ length: 60 }, (_, i) => ({ key: `m${i}`, data: i })),
      );
      const late = await startRelay({ ...flags, bootstrap });
      relays.push(late);
      const all = [...unkeyed, ...keyed];
      await waitFor(
        'every message readable on the late node',
        async () => (await history(late.url, 'mesh.t')).length >= all.length,
      );
      const counts = await rowCounts(keyspace, 'mesh.t');
      assert.deepEqual(counts.twice, []);
      assert.equal(counts.rows, all.length);
      assert.deepEqual((await history(late.url, 'mesh.t')).map((m) => m.id).sort(), all.map((m) => m.id).sort());
    } finally {
      for (const relay of relays) await relay.stop();
    }
  });
});
