import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { contentId, createHybridClock, type Envelope, messageId, randomNodeId } from '@anode/shared';
import { loadConfig } from '@anode/relay-node/src/config.ts';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import cassandra from 'cassandra-driver';
import { type CassandraServer, findJava } from './cassandra-server.ts';
import { sharedCassandra } from './shared-cassandra.ts';
import { testStoreOptions } from './store-options.ts';

/**
 * cassandra_bucket_ms, the time span of a history partition, at the largest the config takes.
 * A bucket's index row lives a bucket longer than its messages, and a TTL Cassandra cannot hold
 * (past 20 years; or past 2038-01-19 in the storage format before 5.0, which 5.0 writes by
 * default) is refused: a bucket of 21 years had every write refused (taken as an outage, so
 * spooled for good), and one a little shorter than what a TTL can hold had its messages' TTLs cut
 * to what was left (seconds, silently, long before retention_max_age_ms). Each size below that
 * the config accepts must store with the TTL retention asks for.
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

const DAY_MS = 24 * 3600 * 1000;
const YEAR_MS = 365 * DAY_MS;
const RETENTION_MS = 30 * DAY_MS;

const bounded = <T>(work: Promise<T>, what: string, ms = 30_000) =>
  Promise.race([
    work,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms).unref(),
    ),
  ]);

/** The config's verdict on a bucket size: its value, or undefined when refused (at start). */
const configured = (bucketMs: number): number | undefined => {
  try {
    return loadConfig({ flags: { store: 'cassandra', 'cassandra-bucket-ms': String(bucketMs) } }).cassandra_bucket_ms;
  } catch (error) {
    assert.match((error as Error).message, /cassandra_bucket_ms/);
    return undefined;
  }
};

describe('Cassandra: the largest history bucket the config takes', { skip }, () => {
  it('refuses a bucket Cassandra cannot expire, and stores with full retention at any size it takes', async () => {
    const sizes = [21 * YEAR_MS, 19.9 * YEAR_MS, 12 * YEAR_MS, 366 * DAY_MS, 31 * DAY_MS];
    const taken = sizes.flatMap((size) => configured(size) ?? []);
    assert.ok(taken.includes(31 * DAY_MS), `a month is taken (taken: ${taken.join(', ')})`);
    const s = (await serverReady) as CassandraServer;
    for (const bucketMs of taken) {
      const options = testStoreOptions(s, {
        keyspace: `t_${randomNodeId(12)}`,
        bucketMs,
        timeoutMs: 5_000,
        retention: { maxAgeMs: RETENTION_MS, maxMessages: 0 },
      });
      const store = createCassandraStore(options);
      try {
        const clock = createHybridClock(randomNodeId());
        const message = (id: string, data: number): Envelope => ({
          id,
          topic: 'bucket.size',
          cursor: clock.next(),
          source: 's',
          ts: Date.now(),
          data,
        });
        const days = (bucketMs / DAY_MS).toFixed(0);
        const batch = [message(messageId(), 1), message(contentId('bucket.size', 's', 'k'), 2)];
        await bounded(store.append(batch, { minted: [true, true] }), `append, bucket of ${days} days`);
        const page = await bounded(store.history('bucket.size', { limit: 10 }), 'history');
        assert.deepEqual(
          page.map((m) => m.data),
          [1, 2],
        );
        raw ??= new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
        const ttls = (await raw.execute(`SELECT TTL(data) AS t FROM ${options.keyspace}.messages`)).rows;
        for (const row of ttls) {
          assert.ok(Number(row.t) >= RETENTION_MS / 1000, `bucket of ${days} days: a row's TTL ${row.t} s`);
        }
      } finally {
        await store.close();
      }
    }
  });
});
