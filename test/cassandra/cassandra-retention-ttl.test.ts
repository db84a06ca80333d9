import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { contentId, createHybridClock, type Envelope, messageId, randomNodeId } from '@anode/shared';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import cassandra from 'cassandra-driver';
import { type CassandraServer, findJava } from './cassandra-server.ts';
import { sharedCassandra } from './shared-cassandra.ts';
import { testStoreOptions } from './store-options.ts';

/**
 * Retention at the edge of what Cassandra can expire: a retention_max_age_ms whose TTL Cassandra
 * refuses (past 20 years, its longest TTL; or reaching past 2038-01-19, the latest expiry of the
 * storage format 5.0 writes by default) had every write refused, taken as an outage and spooled
 * for good. Rows are now written with the longest TTL Cassandra holds, checked with raw CQL.
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

const YEAR_MS = 365 * 24 * 3600 * 1000;
/** Cassandra's longest TTL (20 years) and the latest expiry of its storage format before 5.0. */
const MAX_TTL_S = 630_720_000;
const LEGACY_MAX_EXPIRY_S = 2_147_483_646;

const bounded = <T>(work: Promise<T>, what: string, ms = 60_000) =>
  Promise.race([
    work,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms).unref(),
    ),
  ]);

describe('Cassandra retention past what a TTL can hold', { skip }, () => {
  for (const years of [15, 25]) {
    it(`stores keyed and unkeyed messages with retention_max_age_ms of ${years} years`, async () => {
      const s = (await serverReady) as CassandraServer;
      const options = testStoreOptions(s, {
        timeoutMs: 10_000,
        retention: { maxAgeMs: years * YEAR_MS, maxMessages: 0 },
      });
      const store = createCassandraStore(options);
      try {
        const clock = createHybridClock(randomNodeId());
        const message = (id: string, data: number): Envelope => ({
          id,
          topic: 'ttl.edge',
          cursor: clock.next(),
          source: 's',
          ts: Date.now(),
          data,
        });
        const first = [message(messageId(), 1), message(contentId('ttl.edge', 's', 'key-1'), 2)];
        const results = await bounded(store.append(first, { minted: [true, true] }), 'first append');
        assert.deepEqual(
          results.map((r) => r.inserted),
          [true, true],
        );
        const second = [message(messageId(), 3), message(contentId('ttl.edge', 's', 'key-2'), 4)];
        await bounded(store.append(second, { minted: [true, true] }), 'second append');
        const page = await bounded(store.history('ttl.edge', { limit: 10 }), 'history');
        assert.deepEqual(
          page.map((m) => m.data),
          [1, 2, 3, 4],
        );

        raw ??= new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
        const now = Date.now() / 1000;
        const ttls = [
          ...(await raw.execute(`SELECT TTL(data) AS t FROM ${options.keyspace}.messages`)).rows,
          ...(await raw.execute(`SELECT TTL(cursor) AS t FROM ${options.keyspace}.message_claims`)).rows,
        ].map((r) => Number(r.t));
        assert.equal(ttls.length, 6, 'four message rows and two claims');
        for (const t of ttls) {
          assert.ok(t > 0 && t <= MAX_TTL_S && now + t <= LEGACY_MAX_EXPIRY_S, `a row's TTL ${t} expires in time`);
        }
      } finally {
        await store.close();
      }
    });
  }
});
