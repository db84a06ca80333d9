import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope, messageId, randomNodeId } from '@anode/shared';
import { type CassandraStore, createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import cassandra from 'cassandra-driver';
import { startRelay } from '../helpers/relay.ts';
import { type CassandraServer, findJava } from './cassandra-server.ts';
import { sharedCassandra } from './shared-cassandra.ts';
import { testStoreOptions } from './store-options.ts';

/**
 * The keyspace records the cassandra_bucket_ms it was set up with, and a relay configured with
 * another size does not start. History rows are found by (topic, floor(cursor time / bucket)): a
 * relay reading a keyspace with another size skipped what was written with the first one on a
 * resume (a gap) and missed it in lookups by cursor (a copy from a peer stored again as new).
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

const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;

const bounded = <T>(work: Promise<T>, what: string, ms = 60_000) =>
  Promise.race([
    work,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms).unref(),
    ),
  ]);

const clock = createHybridClock(randomNodeId());
const message = (topic: string, data: number): Envelope => ({
  id: messageId(),
  topic,
  cursor: clock.next(),
  source: 's',
  ts: Date.now(),
  data,
});

const open = (s: CassandraServer, keyspace: string, bucketMs: number) =>
  createCassandraStore(testStoreOptions(s, { keyspace, bucketMs, timeoutMs: 10_000 }));

/** What open() did: started (with what a resume and a copy from elsewhere then got), or refused. */
const outcome = async (store: CassandraStore, sent: Envelope[]) => {
  try {
    await bounded(store.open?.() ?? Promise.resolve(), 'open');
  } catch (error) {
    return { started: false, code: (error as { code?: string }).code, message: (error as Error).message };
  }
  const resumed = await bounded(store.history(sent[0]!.topic, { after: sent[0]!.cursor, limit: 10 }), 'resume');
  const [again] = await bounded(store.append([sent[1]!], { minted: [false] }), 'a copy from elsewhere');
  return { started: true, resumed: resumed.map((m) => m.data), copyInserted: again?.inserted };
};

/** Writes three messages with `bucketMs` on `keyspace` and closes. */
const write = async (s: CassandraServer, keyspace: string, bucketMs: number, topic: string) => {
  const store = open(s, keyspace, bucketMs);
  const sent = [message(topic, 1), message(topic, 2), message(topic, 3)];
  try {
    await bounded(store.open?.() ?? Promise.resolve(), 'open');
    await bounded(store.append(sent, { minted: [true, true, true] }), 'append');
  } finally {
    await store.close();
  }
  return sent;
};

describe('Cassandra: the keyspace keeps the bucket size it was set up with', { skip }, () => {
  it('refuses to start with another cassandra_bucket_ms, naming both; starts with the same one', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = `t_${randomNodeId(12)}`;
    const sent = await write(s, keyspace, HOUR_MS, 'bucket.changed');

    const other = open(s, keyspace, MINUTE_MS);
    try {
      const got = await outcome(other, sent);
      // Before the record: it started, and a resume from the first message got nothing of the two after it.
      assert.equal(got.started, false, `started with another bucket size: ${JSON.stringify(got)}`);
      assert.equal(got.code, 'bucket_size_mismatch');
      assert.match(got.message ?? '', new RegExp(`keyspace ${keyspace} .*cassandra_bucket_ms ${HOUR_MS}\\b`));
      assert.match(got.message ?? '', new RegExp(`configured with cassandra_bucket_ms ${MINUTE_MS}\\b`));
      assert.match(got.message ?? '', new RegExp(`Set cassandra_bucket_ms back to ${HOUR_MS}, or use a new keyspace`));
      // Every later call is refused alike, and health says why.
      await assert.rejects(other.history('bucket.changed', { limit: 10 }), { code: 'bucket_size_mismatch' });
      await assert.rejects(other.append([message('bucket.changed', 4)]), { code: 'bucket_size_mismatch' });
      const health = await other.health();
      assert.equal(health.ok, false);
      assert.match(String(health.detail), /cassandra_bucket_ms/);
      assert.equal(other.refusal?.message, got.message);
    } finally {
      await other.close();
    }

    const same = open(s, keyspace, HOUR_MS);
    try {
      assert.deepEqual(await outcome(same, sent), { started: true, resumed: [2, 3], copyInserted: false });
    } finally {
      await same.close();
    }
  });

  it('a keyspace with no size recorded (from before the record) takes the first one a relay starts with', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = `t_${randomNodeId(12)}`;
    const sent = await write(s, keyspace, HOUR_MS, 'bucket.unrecorded');
    raw ??= new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
    await raw.execute(`DELETE FROM ${keyspace}.keyspace_settings WHERE name = 'bucket_ms'`);

    const same = open(s, keyspace, HOUR_MS);
    try {
      assert.deepEqual(await outcome(same, sent), { started: true, resumed: [2, 3], copyInserted: false });
    } finally {
      await same.close();
    }
    const recorded = await raw.execute(`SELECT value FROM ${keyspace}.keyspace_settings WHERE name = 'bucket_ms'`);
    assert.equal(recorded.first()?.value, String(HOUR_MS));
    const other = open(s, keyspace, MINUTE_MS);
    try {
      await assert.rejects(bounded(other.open?.() ?? Promise.resolve(), 'open'), { code: 'bucket_size_mismatch' });
    } finally {
      await other.close();
    }
  });

  it('a keyspace with no size recorded refuses a size its history rows do not fit, and records none', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = `t_${randomNodeId(12)}`;
    const sent = await write(s, keyspace, HOUR_MS, 'bucket.legacy');
    raw ??= new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
    // As relays from before the record left it: history, and no size.
    await raw.execute(`DELETE FROM ${keyspace}.keyspace_settings WHERE name = 'bucket_ms'`);

    const other = open(s, keyspace, MINUTE_MS);
    try {
      const got = await outcome(other, sent);
      // Before: it started, recorded 60000, and a resume from the first message got nothing of the two after it.
      assert.equal(got.started, false, `started with another bucket size: ${JSON.stringify(got)}`);
      assert.equal(got.code, 'bucket_size_mismatch');
      const range = /between (\d+) and (\d+)/.exec(got.message ?? '');
      assert.ok(range, got.message);
      assert.ok(Number(range[1]) <= HOUR_MS && HOUR_MS <= Number(range[2]), got.message);
      assert.match(got.message ?? '', /3600000, the default, fits/);
    } finally {
      await other.close();
    }
    const recorded = await raw.execute(`SELECT value FROM ${keyspace}.keyspace_settings WHERE name = 'bucket_ms'`);
    assert.equal(recorded.first(), null, 'nothing recorded by the refused relay');

    const same = open(s, keyspace, HOUR_MS);
    try {
      assert.deepEqual(await outcome(same, sent), { started: true, resumed: [2, 3], copyInserted: false });
    } finally {
      await same.close();
    }
  });

  it('a relay configured with another size does not start, and says what to do', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = `t_${randomNodeId(12)}`;
    const flags = (bucketMs: number) => ({
      store: 'cassandra',
      'cassandra-contact-points': `${s.host}:${s.port}`,
      'cassandra-keyspace': keyspace,
      'cassandra-timeout-ms': '5000',
      'cassandra-bucket-ms': String(bucketMs),
    });
    const first = await startRelay(flags(MINUTE_MS));
    await first.stop();
    await assert.rejects(
      startRelay(flags(HOUR_MS)),
      new RegExp(
        `written with cassandra_bucket_ms ${MINUTE_MS} .*configured with cassandra_bucket_ms ${HOUR_MS}: .*` +
          `Set cassandra_bucket_ms back to ${MINUTE_MS}, or use a new keyspace \\(cassandra_keyspace\\)`,
      ),
    );
    const again = await startRelay(flags(MINUTE_MS));
    await again.stop();
  });

  it('of two relays starting together on a new keyspace with different sizes, one records its own, the other refuses', async () => {
    const s = (await serverReady) as CassandraServer;
    for (let round = 0; round < 3; round++) {
      const keyspace = `t_${randomNodeId(12)}`;
      const stores = [open(s, keyspace, HOUR_MS), open(s, keyspace, MINUTE_MS)];
      try {
        const opened = await Promise.allSettled(
          stores.map((store) => bounded(store.open?.() ?? Promise.resolve(), 'open', 120_000)),
        );
        const started = opened.flatMap((o, i) => (o.status === 'fulfilled' ? [i] : []));
        assert.equal(started.length, 1, `round ${round}: exactly one starts: ${JSON.stringify(opened)}`);
        const winner = [HOUR_MS, MINUTE_MS][started[0]!]!;
        const loser = [HOUR_MS, MINUTE_MS][1 - started[0]!]!;
        const refused = opened.find((o) => o.status === 'rejected') as PromiseRejectedResult;
        assert.equal((refused.reason as { code?: string }).code, 'bucket_size_mismatch');
        assert.match(
          (refused.reason as Error).message,
          new RegExp(`written with cassandra_bucket_ms ${winner} .*configured with cassandra_bucket_ms ${loser}\\b`),
        );
        // The winner works.
        const sent = [message('bucket.race', 1)];
        const [stored] = await bounded(stores[started[0]!]!.append(sent, { minted: [true] }), 'append');
        assert.equal(stored?.inserted, true);
      } finally {
        await Promise.all(stores.map((store) => store.close()));
      }
    }
  });
});
