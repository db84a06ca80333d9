import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope, messageId, randomNodeId } from '@anode/shared';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import cassandra from 'cassandra-driver';
import { type CassandraServer, findJava } from './cassandra-server.ts';
import { sharedCassandra } from './shared-cassandra.ts';
import { testStoreOptions } from './store-options.ts';

/**
 * Cassandra's `latest` rows under retention_max_age_ms: they get the TTL their history rows get
 * (before, none: a source's last message was served by /latest for ever after history expired),
 * and without an age limit none. Read in pages of the partition's source order.
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

describe('Cassandra latest rows', { skip }, () => {
  const clock = createHybridClock(randomNodeId());
  const message = (topic: string, source: string, data: unknown): Envelope => ({
    id: messageId(),
    topic,
    cursor: clock.next(),
    source,
    ts: Date.now(),
    data,
  });
  const ttlOf = async (keyspace: string, topic: string) => {
    const s = server as CassandraServer;
    raw ??= new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
    const rows = (await raw.execute(`SELECT TTL(envelope) AS t FROM ${keyspace}.latest WHERE topic = ?`, [topic])).rows;
    return rows.map((row) => row.t as number | null);
  };

  it('expire with their message under retention_max_age_ms, and have no TTL without it', async () => {
    const s = (await serverReady) as CassandraServer;
    const aged = testStoreOptions(s, { retention: { maxAgeMs: 2_000, maxMessages: 0 } });
    const store = createCassandraStore(aged);
    try {
      await store.append([message('l.aged', 'gone', 1)]);
      assert.deepEqual(Object.keys(await store.latest('l.aged')), ['gone']);
      const [ttl] = await ttlOf(aged.keyspace, 'l.aged');
      // 2 s of age, plus a second for whole seconds (the history row's TTL, ttls()).
      assert.ok(ttl !== null && ttl !== undefined && ttl > 0 && ttl <= 3, `TTL ${ttl}`);
      // Bounded: expired after at most 3 s; 10 s at most.
      let latest = await store.latest('l.aged');
      for (let n = 0; n < 100 && Object.keys(latest).length > 0; n++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        latest = await store.latest('l.aged');
      }
      assert.deepEqual(latest, {}, 'expired with its message');
      assert.deepEqual(await store.history('l.aged', { limit: 10 }), []);
    } finally {
      await store.close();
    }
    const kept = testStoreOptions(s);
    const keeping = createCassandraStore(kept);
    try {
      await keeping.append([message('l.kept', 'stays', 1)]);
      assert.deepEqual(await ttlOf(kept.keyspace, 'l.kept'), [null], 'no age limit: no TTL');
    } finally {
      await keeping.close();
    }
  });

  it('reads a page a few rows at a time, by source, cut at maxBytes', async () => {
    const s = (await serverReady) as CassandraServer;
    const store = createCassandraStore(testStoreOptions(s));
    try {
      const blob = 'x'.repeat(100_000);
      const names = Array.from({ length: 40 }, (_, i) => `s-${String(39 - i).padStart(2, '0')}`);
      await store.append(names.map((source) => message('l.pages', source, blob)));
      const seen: string[] = [];
      let after: string | undefined;
      for (let n = 0; n < 50; n++) {
        const page = Object.keys(await store.latest('l.pages', { after, limit: 1000, maxBytes: 450_000 })).sort();
        if (page.length === 0) break;
        assert.ok(page.length <= 4, `${page.length} sources of 100 KB in 450,000 bytes`);
        seen.push(...page);
        after = page.at(-1);
      }
      assert.deepEqual(seen, [...names].sort(), 'every source once, in source order');
    } finally {
      await store.close();
    }
  });
  it('a duplicate written later gives the latest row only what its history row has left, not a new TTL', async () => {
    const s = (await serverReady) as CassandraServer;
    const aged = testStoreOptions(s, { retention: { maxAgeMs: 600_000, maxMessages: 0 } });
    const store = createCassandraStore(aged);
    try {
      const e = message('l.dup', 'src', 1);
      assert.equal((await store.append([e]))[0]?.inserted, true);
      // Whole seconds apart, so a TTL counted again from now shows (Cassandra counts in seconds).
      await new Promise((resolve) => setTimeout(resolve, 2_200));
      assert.equal((await store.append([e]))[0]?.inserted, false, 'the same message again: a duplicate');
      const [latestTtl] = await ttlOf(aged.keyspace, 'l.dup');
      const history = await (raw as cassandra.Client).execute(
        `SELECT TTL(data) AS t FROM ${aged.keyspace}.messages WHERE topic = ? ALLOW FILTERING`,
        ['l.dup'],
      );
      const historyTtl = history.rows[0]?.t as number;
      assert.ok(historyTtl > 590 && historyTtl <= 599, `history TTL ${historyTtl}`);
      // Before: the duplicate wrote the full TTL (601) again, and Cassandra kept that later expiry.
      assert.ok(
        latestTtl !== null && latestTtl !== undefined && latestTtl <= historyTtl + 1,
        `latest TTL ${latestTtl} outlives history's ${historyTtl}`,
      );
    } finally {
      await store.close();
    }
  });

  it('has a 3-hour gc grace and size-tiered compaction that drops lone tombstones on the latest table', async () => {
    const s = (await serverReady) as CassandraServer;
    const options = testStoreOptions(s);
    const store = createCassandraStore(options);
    try {
      await store.append([message('l.opts', 'src', 1)]);
      raw ??= new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
      const table = (
        await raw.execute(
          'SELECT gc_grace_seconds, compaction FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?',
          [options.keyspace, 'latest'],
        )
      ).rows[0];
      assert.equal(table?.gc_grace_seconds, 10_800);
      assert.match(String(table?.compaction.class), /SizeTieredCompactionStrategy$/);
      assert.equal(table?.compaction.unchecked_tombstone_compaction, 'true');
    } finally {
      await store.close();
    }
  });
});
