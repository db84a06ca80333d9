import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { createHybridClock, type Envelope, messageId } from '@anode/shared';
import cassandra from 'cassandra-driver';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import { createLogger } from '@anode/relay-node/src/logger.ts';
import { createSpoolingStore } from '@anode/relay-node/src/storage/spool/spooling-store.ts';
import { tempDir } from '../helpers/relay.ts';
import { type CassandraServer, findJava, startCassandra } from './cassandra-server.ts';
import { testStoreOptions } from './store-options.ts';

/**
 * Messages at the size Cassandra can take in one write. Cassandra refuses a request frame past
 * native_transport_max_frame_size ("Request is too big", checked first) and a mutation past
 * max_mutation_size ("Rejected an oversized mutation"); by default both are 16 MiB (the mutation
 * limit is half of the 32 MiB commitlog_segment_size), and max_message_bytes may be 16 MiB. This
 * suite keeps that ratio at a sixteenth of the size: commitlog_segment_size 2 MiB (so
 * max_mutation_size 1 MiB) and native_transport_max_frame_size 1 MiB, set as system properties.
 * A message is written twice (its history row, and the `latest` row, which holds the whole
 * envelope and so is the larger write).
 */
const skip = !findJava() && !process.env.CI ? 'java is not installed (CI never skips this suite)' : false;

const MiB = 1024 * 1024;

let server: CassandraServer | undefined;
const serverReady = skip
  ? Promise.resolve(undefined)
  : startCassandra({
      fast: true,
      jvmArgs: [
        '-Dcassandra.config.allow_system_properties=true',
        '-Dcassandra.settings.commitlog_segment_size=2MiB',
        '-Dcassandra.settings.native_transport_max_frame_size=1MiB',
      ],
      log: (line) => console.error(`[cassandra] ${line}`),
    }).then((s) => (server = s));
let raw: cassandra.Client | undefined;
after(async () => {
  if (server) process.kill(server.pid, 'SIGCONT');
  await raw?.shutdown();
  await server?.stop();
});

const clock = createHybridClock('big');
/** A message whose data serializes to exactly `bytes` bytes (a JSON string). */
const sized = (topic: string, bytes: number): Envelope => ({
  id: messageId(),
  topic,
  cursor: clock.next(),
  source: 's',
  ts: Date.now(),
  data: 'x'.repeat(bytes - 2),
});

const bounded = <T>(work: Promise<T>, what: string, ms = 30_000) =>
  Promise.race([
    work,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms).unref(),
    ),
  ]);

/** Rows of `topic` in history and in `latest`, read with raw CQL. */
async function rowsOf(s: CassandraServer, keyspace: string, topic: string) {
  raw ??= new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
  const count = async (query: string) =>
    Number((await raw!.execute(query, [topic], { prepare: true })).first()?.get('c'));
  return {
    history: await count(`SELECT count(*) AS c FROM ${keyspace}.messages WHERE topic = ? ALLOW FILTERING`),
    latest: await count(`SELECT count(*) AS c FROM ${keyspace}.latest WHERE topic = ?`),
  };
}

const tooLarge = (error: Error & { code?: string }) =>
  error.code === 'too_large' && /native_transport_max_frame_size|max_mutation_size/.test(error.message);

describe('Cassandra: messages at the size of one write', { skip }, () => {
  before(async () => {
    await serverReady;
  });

  it('refuses a message too large for one request with too_large, and writes none of its rows', async () => {
    const s = (await serverReady) as CassandraServer;
    const options = testStoreOptions(s, { timeoutMs: 3_000 });
    const store = createCassandraStore(options);
    try {
      await store.append([sized('warm', 10)], { minted: [true] });
      // 1 MiB of data; and 160 bytes less, where the history row's request fits and the larger
      // `latest` row's does not (measured: requests carry ~150-200 bytes besides the data).
      for (const [topic, bytes] of [
        ['big.exact', MiB],
        ['big.edge', MiB - 160],
      ] as const) {
        await assert.rejects(bounded(store.append([sized(topic, bytes)], { minted: [true] }), topic), tooLarge);
        // A write still in flight when the append failed lands within milliseconds.
        await new Promise((r) => setTimeout(r, 500));
        assert.deepEqual(await rowsOf(s, options.keyspace, topic), { history: 0, latest: 0 }, `${topic}: no row`);
      }
      // Just under the limit still goes through, both rows.
      const fits = sized('big.fits', MiB - 2048);
      const [result] = await bounded(store.append([fits], { minted: [true] }), 'fits');
      assert.equal(result?.inserted, true);
      assert.deepEqual(await rowsOf(s, options.keyspace, 'big.fits'), { history: 1, latest: 1 });
    } finally {
      await store.close();
    }
  });

  it('refuses such a publish instead of spooling it, and a spooled one does not hold up the drain', async () => {
    const s = (await serverReady) as CassandraServer;
    const dir = await tempDir();
    const store = createSpoolingStore(createCassandraStore(testStoreOptions(s, { timeoutMs: 1_500 })), {
      dataDir: dir,
      drainIntervalMs: 100,
      log: createLogger('silent'),
    });
    try {
      await store.append([sized('spooled', 10)]); // connected, schema made
      await assert.rejects(bounded(store.append([sized('spooled', MiB)]), 'publish'), tooLarge);
      assert.equal(store.spoolDepth, 0, 'not spooled');
      // Queued behind an outage (its JVM paused), it reaches the spool: the store is not asked.
      const behind = sized('spooled', 20);
      process.kill(s.pid, 'SIGSTOP');
      try {
        await store.append([sized('spooled', 30)]);
        await store.append([sized('spooled', MiB)]);
        await store.append([behind]);
        assert.equal(store.spoolDepth, 3);
      } finally {
        process.kill(s.pid, 'SIGCONT');
      }
      await store.drained(30_000);
      const ids = (await store.history('spooled', { limit: 10 })).map((e) => e.id);
      assert.ok(ids.includes(behind.id), 'the message behind it drained');
      assert.equal((await store.health()).spool_rejected, 1, 'the refused one moved aside');
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
