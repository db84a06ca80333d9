import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createHybridClock, type Envelope, messageId, randomNodeId } from '@anode/shared';
import cassandra from 'cassandra-driver';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import { createLogger } from '@anode/relay-node/src/logger.ts';
import { createSpoolingStore, REFUSED_IN_A_ROW } from '@anode/relay-node/src/storage/spool/spooling-store.ts';
import { startRelay, tempDir } from '../helpers/relay.ts';
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

/** A loopback port nothing listens on (taken and given back). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A logger whose JSON lines the test reads. */
function capturedLog() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
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

  it('refuses such a publish instead of spooling it, also while Cassandra is away (no ack)', async () => {
    const s = (await serverReady) as CassandraServer;
    const dir = await tempDir();
    const primary = createCassandraStore(testStoreOptions(s, { timeoutMs: 1_500 }));
    const store = createSpoolingStore(primary, {
      dataDir: dir,
      drainIntervalMs: 100,
      log: createLogger('silent'),
      tooLarge: (e) => primary.tooLarge(e), // as create-store.ts wires it
    });
    try {
      await store.append([sized('spooled', 10)]); // connected, schema made, the limit read
      await assert.rejects(bounded(store.append([sized('spooled', MiB)]), 'publish'), tooLarge);
      assert.equal(store.spoolDepth, 0, 'not spooled');
      // Cassandra away (its JVM paused): the spool takes publishes without asking it, but not one
      // the store already knows it cannot take (acked, it would never be in history).
      const big = sized('spooled', MiB);
      const behind = sized('spooled', 20);
      process.kill(s.pid, 'SIGSTOP');
      try {
        await store.append([sized('spooled', 30)]); // times out: spooled
        assert.equal(store.spoolDepth, 1);
        await assert.rejects(bounded(store.append([big]), 'publish while away'), tooLarge);
        await store.append([behind]);
        assert.equal(store.spoolDepth, 2, 'the too-large one not spooled');
      } finally {
        process.kill(s.pid, 'SIGCONT');
      }
      await store.drained(30_000);
      const ids = (await store.history('spooled', { limit: 10 })).map((e) => e.id);
      assert.ok(ids.includes(behind.id), 'the message behind it drained');
      assert.ok(!ids.includes(big.id));
      assert.equal((await store.health()).spool_rejected, undefined, 'nothing acked was moved aside');
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a relay refuses a too-large publish with too_large while Cassandra is away, not acked', async () => {
    const s = (await serverReady) as CassandraServer;
    const relay = await startRelay({
      store: 'cassandra',
      'cassandra-contact-points': `${s.host}:${s.port}`,
      'cassandra-keyspace': `t_${randomNodeId(12)}`,
      'cassandra-replication': 'SimpleStrategy:1',
      'cassandra-timeout-ms': '1500',
      'spool-drain-ms': '200',
      // The relay itself takes it: only the store's limit (1 MiB less 1 KiB of data) refuses it.
      'max-message-bytes': String(2 * MiB),
    });
    const post = (data: string) =>
      fetch(`${relay.url}/v1/topics/relay.big/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify([{ data }]),
      });
    try {
      assert.equal((await post('connected')).status, 202);
      process.kill(s.pid, 'SIGSTOP');
      let answer: { status: number; body: { error?: { code?: string } } };
      try {
        assert.equal((await post('spooled')).status, 202); // times out: spooled
        const response = await post('x'.repeat(MiB - 200));
        answer = { status: response.status, body: (await response.json()) as typeof answer.body };
      } finally {
        process.kill(s.pid, 'SIGCONT');
      }
      assert.notEqual(answer.status, 202, 'not acked');
      assert.equal(answer.body.error?.code, 'too_large', JSON.stringify(answer.body).slice(0, 300));
    } finally {
      await relay.stop();
    }
  });

  it('moves spooled messages over the known limit aside at once, however many in a row, and drains the rest', async () => {
    const s = (await serverReady) as CassandraServer;
    const dir = await tempDir();
    // Spooled while the limit was not known yet (the relay started with Cassandra unreachable: no
    // host at this address), then the relay restarts with Cassandra back.
    const unreachable = createCassandraStore(
      testStoreOptions({ host: '127.0.0.1', port: await closedPort() }, { timeoutMs: 1_500 }),
    );
    const before = createSpoolingStore(unreachable, {
      dataDir: dir,
      drainIntervalMs: 600_000,
      log: createLogger('silent'),
      tooLarge: (e) => unreachable.tooLarge(e),
    });
    const first = sized('aside', 30);
    const bigs = Array.from({ length: REFUSED_IN_A_ROW + 1 }, () => sized('aside', MiB));
    const behind = sized('aside', 20);
    try {
      for (const m of [first, ...bigs, behind]) await bounded(before.append([m]), 'spool');
      assert.equal(before.spoolDepth, bigs.length + 2);
    } finally {
      await before.close();
    }
    const { log, lines } = capturedLog();
    const primary = createCassandraStore(testStoreOptions(s, { timeoutMs: 3_000 }));
    const store = createSpoolingStore(primary, {
      dataDir: dir,
      drainIntervalMs: 100,
      log,
      tooLarge: (e) => primary.tooLarge(e),
    });
    try {
      const drained = await store.drained(30_000).then(
        () => 'drained',
        (e: Error) => e.message,
      );
      const health = await store.health();
      assert.equal(drained, 'drained', JSON.stringify(health.last_error));
      assert.deepEqual(
        (await store.history('aside', { limit: 10 })).map((e) => e.id),
        [first.id, behind.id],
      );
      assert.equal(health.spool_rejected, bigs.length);
      const logged = lines.filter((line) => line.level === 'error' && line.topic === 'aside').map((l) => l.id);
      assert.deepEqual(
        logged,
        bigs.map((m) => m.id),
        'each moved aside is logged',
      );
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
