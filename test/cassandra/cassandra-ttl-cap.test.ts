import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createHybridClock, cursorTime, type Envelope, messageId, randomNodeId } from '@anode/shared';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import { createLogger } from '@anode/relay-node/src/logger.ts';
import cassandra from 'cassandra-driver';
import { type CassandraServer, findJava } from './cassandra-server.ts';
import { sharedCassandra } from './shared-cassandra.ts';
import { testStoreOptions } from './store-options.ts';

/**
 * Retention cut by what Cassandra's TTLs can hold (20 years; expiries by 2038-01-19 in the storage
 * format 5.0 writes by default), less a bucket for the bucket's index row. The rows got the cut
 * TTL silently while trimmedThrough and trimmedTopics kept reporting the horizon of the full
 * retention: a 366-day bucket with 10.5 years' retention had messages expire ~0.36 years before a
 * resume from before them got cursor_expired (a silent gap). Now the horizon comes from the TTL a
 * row written now really gets (read back with raw CQL), and the cut is logged once.
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

const bounded = <T>(work: Promise<T>, what: string, ms = 60_000) =>
  Promise.race([
    work,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms).unref(),
    ),
  ]);

/** A store with these settings, its warnings collected; the first message's cursor `oldMs` back. */
async function cutRetention(s: CassandraServer, bucketMs: number, retentionMs: number, oldMs: number) {
  const warnings: Record<string, unknown>[] = [];
  const log = createLogger('warn', { write: (line: string) => void warnings.push(JSON.parse(line)) });
  const options = testStoreOptions(s, {
    bucketMs,
    timeoutMs: 10_000,
    retention: { maxAgeMs: retentionMs, maxMessages: 0 },
    log,
  });
  const store = createCassandraStore(options);
  const topic = 'ttl.cap';
  const message = (cursor: string, data: number): Envelope => ({
    id: messageId(),
    topic,
    cursor,
    source: 's',
    ts: Date.now(),
    data,
  });
  const old = message(createHybridClock(randomNodeId(), () => Date.now() - oldMs).next(), 1);
  const fresh = message(createHybridClock(randomNodeId()).next(), 2);
  try {
    await bounded(store.append([old], { minted: [true] }), 'append the old message');
    await bounded(store.append([fresh], { minted: [true] }), 'append the fresh message');
    raw ??= new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
    const rows = (await raw.execute(`SELECT cursor, TTL(data) AS t FROM ${options.keyspace}.messages`)).rows;
    const readAt = Date.now();
    const freshTtlS = Number(rows.find((r) => r.cursor === fresh.cursor)?.t);
    assert.ok(freshTtlS > 0, `the fresh message's row has a TTL (${freshTtlS})`);
    assert.ok(freshTtlS * 1000 < retentionMs, `this setting cuts the row TTL (${freshTtlS} s)`);
    const mark = await bounded(store.trimmedThrough(topic), 'trimmedThrough');
    assert.ok(store.trimmedTopics, 'the Cassandra store reports the topics retention emptied');
    const marks = await bounded(store.trimmedTopics(), 'trimmedTopics');
    const marksAfterOld = await bounded(store.trimmedTopics(old.cursor), 'trimmedTopics after the old cursor');
    // Asked again: the cut is logged once, not per call.
    await bounded(store.trimmedThrough(topic), 'trimmedThrough again');
    return { store, old, fresh, freshTtlS, readAt, mark, marks, marksAfterOld, warnings, topic };
  } catch (error) {
    await store.close();
    throw error;
  }
}

const days = (ms: number) => `${(ms / DAY_MS).toFixed(2)} days`;

describe('Cassandra retention cut by the TTL a row can get', { skip }, () => {
  it('a 366-day bucket, 10.5 years on a default 5.0: trimmedThrough reports by the TTL rows really get', async () => {
    const s = (await serverReady) as CassandraServer;
    const retentionMs = Math.round(10.5 * YEAR_MS);
    const bucketMs = 366 * DAY_MS;
    const r = await cutRetention(s, bucketMs, retentionMs, Math.round(10.3 * YEAR_MS));
    try {
      // The fresh message is gone freshTtlS after the read: by then trimmedThrough must be past its
      // cursor, so its horizon is no further back than that TTL.
      assert.ok(
        r.mark !== undefined,
        `trimmedThrough reports nothing trimmed, though the first cursor is 10.3 years old and a row written now ` +
          `lives ${days(r.freshTtlS * 1000)}`,
      );
      const back = r.readAt - cursorTime(r.mark);
      assert.ok(
        back <= r.freshTtlS * 1000,
        `trimmedThrough's horizon is ${days(back)} back, past the ${days(r.freshTtlS * 1000)} a row written now lives`,
      );
      assert.ok(r.mark > r.old.cursor, 'the old message is reported trimmed');
      const topicMark = r.marks.get(r.topic);
      assert.ok(topicMark !== undefined && r.readAt - cursorTime(topicMark) <= r.freshTtlS * 1000, 'trimmedTopics');
      assert.ok(r.marksAfterOld.has(r.topic), 'trimmedTopics after the old cursor');

      const cuts = r.warnings.filter((w) => 'effective_retention_ms' in w);
      assert.equal(cuts.length, 1, `one warning of the cut: ${JSON.stringify(r.warnings)}`);
      const [cut] = cuts as [Record<string, unknown>];
      assert.equal(cut.limit, 'expiry_2038');
      assert.equal(cut.retention_max_age_ms, retentionMs);
      assert.equal(cut.cassandra_bucket_ms, bucketMs);
      assert.ok((cut.effective_retention_ms as number) <= r.freshTtlS * 1000 + 1000, JSON.stringify(cut));
      assert.match(cut.msg as string, /2038-01-19/);
      assert.match(cut.msg as string, /cassandra_bucket_ms, 366\.0 days/);
    } finally {
      await r.store.close();
    }
  });

  it('25 years: cut to 20 years less a bucket at connect, then to 2038 once Cassandra refuses it', async () => {
    const s = (await serverReady) as CassandraServer;
    const retentionMs = 25 * YEAR_MS;
    const bucketMs = 3_600_000;
    const r = await cutRetention(s, bucketMs, retentionMs, 15 * YEAR_MS);
    try {
      assert.ok(r.mark !== undefined && r.readAt - cursorTime(r.mark) <= r.freshTtlS * 1000, `mark ${r.mark}`);
      const cuts = r.warnings.filter((w) => 'effective_retention_ms' in w);
      assert.deepEqual(
        cuts.map((w) => w.limit),
        ['ttl_20_years', 'expiry_2038'],
        JSON.stringify(r.warnings),
      );
      const [ttlCut] = cuts as [Record<string, unknown>];
      // 20 years (Cassandra's MAX_TTL) less the bucket, the clock skew allowed and a second.
      assert.equal(ttlCut.effective_retention_ms, (630_720_000 - 3_600 - 60 - 1) * 1000);
      assert.match(ttlCut.msg as string, /20 years/);
    } finally {
      await r.store.close();
    }
  });
});
