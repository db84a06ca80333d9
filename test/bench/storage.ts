// Scenario 5, storage: appends per second and history-read latency at batch sizes 1, 10 and 100,
// of the embedded store beside raw SQLite inserts (same file settings, no aNode layers), and of
// the Cassandra store beside raw cassandra-driver prepared statements writing the same rows to a
// plain table, against one real Apache Cassandra 5.0 started once per scenario run.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import {
  contentId,
  createHybridClock,
  cursorTime,
  type Envelope,
  messageId,
  type MessageStore,
  randomId,
  randomNodeId,
} from '@anode/shared';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import { createSqliteStore } from '@anode/relay-node/src/storage/embedded/sqlite-store.ts';
import cassandra from 'cassandra-driver';
import { type CassandraServer, findJava, startCassandra } from '../cassandra/cassandra-server.ts';
import { fmt, medianOf, numberFlag, numberList, type Scenario } from './scenario.ts';
import { percentile } from './stats.ts';

export interface StorageResult {
  target:
    | 'anode-embedded'
    | 'sqlite-baseline'
    | 'anode-cassandra'
    | 'anode-cassandra-keyed'
    | 'cassandra-baseline'
    | 'cassandra-lwt-baseline';
  batch: number;
  appends_per_s: number;
  read_p50_ms: number;
  read_p99_ms: number;
}

const clock = createHybridClock('bench');
const envelope = (n: number, prefix = 'bench', keyed = false): Envelope => ({
  // Keyed: a content-addressed id, as a publish with an idempotency key (the client's default) gets;
  // otherwise a time-ordered one, as a publish without a key gets (messageId).
  id: keyed ? contentId(`${prefix}.s${n % 10}`, 'bench', randomId()) : messageId(),
  topic: `${prefix}.s${n % 10}`,
  cursor: clock.next(),
  source: 'bench',
  ts: Date.now(),
  data: { n, payload: 'x'.repeat(60) },
});

export async function runStorage(batch: number, messages: number): Promise<StorageResult[]> {
  const dir = await mkdtemp(join(tmpdir(), 'anode-bench-store-'));
  try {
    const store = createSqliteStore({ dataDir: join(dir, 'anode'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    let started = performance.now();
    for (let i = 0; i < messages; i += batch) {
      await store.append(Array.from({ length: batch }, (_, j) => envelope(i + j)));
    }
    const anodeRate = messages / ((performance.now() - started) / 1000);
    const history = await store.history('bench.s1', { limit: 100_000 });
    const reads: number[] = [];
    for (let i = 0; i < 200; i++) {
      const after = history[Math.floor(Math.random() * history.length)]?.cursor;
      const t = performance.now();
      await store.history('bench.s1', { after, limit: 100 });
      reads.push(performance.now() - t);
    }
    await store.close();
    reads.sort((a, b) => a - b);

    const db = new DatabaseSync(join(dir, 'raw.sqlite'));
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;');
    db.exec('CREATE TABLE m (id TEXT PRIMARY KEY, topic TEXT, cursor TEXT, data TEXT) WITHOUT ROWID');
    db.exec('CREATE INDEX m_tc ON m (topic, cursor)');
    const insert = db.prepare('INSERT INTO m VALUES (?, ?, ?, ?)');
    const read = db.prepare('SELECT * FROM m WHERE topic = ? AND cursor > ? ORDER BY cursor LIMIT 100');
    started = performance.now();
    for (let i = 0; i < messages; i += batch) {
      db.exec('BEGIN');
      for (let j = 0; j < batch; j++) {
        const e = envelope(i + j);
        insert.run(e.id, e.topic, e.cursor, JSON.stringify(e.data));
      }
      db.exec('COMMIT');
    }
    const rawRate = messages / ((performance.now() - started) / 1000);
    const rawReads: number[] = [];
    for (let i = 0; i < 200; i++) {
      const after = history[Math.floor(Math.random() * history.length)]?.cursor ?? '';
      const t = performance.now();
      read.all('bench.s1', after);
      rawReads.push(performance.now() - t);
    }
    db.close();
    rawReads.sort((a, b) => a - b);
    return [
      {
        target: 'anode-embedded',
        batch,
        appends_per_s: Math.round(anodeRate),
        read_p50_ms: percentile(reads, 50),
        read_p99_ms: percentile(reads, 99),
      },
      {
        target: 'sqlite-baseline',
        batch,
        appends_per_s: Math.round(rawRate),
        read_p50_ms: percentile(rawReads, 50),
        read_p99_ms: percentile(rawReads, 99),
      },
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Reads per measurement: `history(topic, {after: random cursor, limit: 100})`. */
const READS = 200;
/** Statements in flight per batch, for the store (the relay's default) and the baseline alike. */
const CASSANDRA_CONCURRENCY = 64;
const BUCKET_MS = 3_600_000; // the relay's default cassandra_bucket_ms
/** Untimed appends through both Cassandra paths before the first measurement. */
const WARMUP_MESSAGES = 3_000;
const LOCAL_SERIAL = cassandra.types.consistencies.localSerial; // as the store's id claims

/** Run `work` over `items` with at most `limit` in flight (as the Cassandra store does per batch). */
async function eachLimit<T>(items: readonly T[], limit: number, work: (item: T) => Promise<unknown>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * One Cassandra keyspace per target for a whole scenario run (schema changes take seconds);
 * each measurement writes its own topics, so reads see only its rows.
 */
export interface CassandraBench {
  server: CassandraServer;
  store: MessageStore;
  client: cassandra.Client;
  keyspace: string;
  close(): Promise<void>;
}

export async function openCassandraBench(server: CassandraServer): Promise<CassandraBench> {
  const keyspace = `bench_${randomNodeId(10)}`;
  const store = createCassandraStore({
    contactPoints: [`${server.host}:${server.port}`],
    localDataCenter: 'datacenter1',
    keyspace: `${keyspace}_anode`,
    replication: 'SimpleStrategy:1',
    writeConsistency: 'LOCAL_QUORUM', // the relay's defaults
    readConsistency: 'LOCAL_QUORUM',
    concurrency: CASSANDRA_CONCURRENCY,
    bucketMs: BUCKET_MS,
    timeoutMs: 10_000,
    retention: { maxAgeMs: 0, maxMessages: 0 }, // no TTL, like the embedded run's retention
  });
  const client = new cassandra.Client({
    contactPoints: [`${server.host}:${server.port}`],
    localDataCenter: 'datacenter1',
    socketOptions: { readTimeout: 10_000 },
    queryOptions: { prepare: true, consistency: cassandra.types.consistencies.localQuorum },
  });
  await client.connect();
  const raw = `${keyspace}_raw`;
  await client.execute(
    `CREATE KEYSPACE ${raw} WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
  );
  // The same row shape and key as the store's history table; nothing else (no id index, no latest).
  await client.execute(
    `CREATE TABLE ${raw}.messages (topic text, bucket bigint, cursor text, id text, source text, ts bigint, data text,
       PRIMARY KEY ((topic, bucket), cursor)) WITH CLUSTERING ORDER BY (cursor ASC)`,
  );
  await client.execute(`CREATE TABLE ${raw}.message_ids (id text PRIMARY KEY, topic text, cursor text)`);
  // Connect, migrate and prepare outside the timed part, and give the fresh JVM's JIT some
  // work on both paths first (a cold Cassandra is several times slower for its first seconds).
  const insert = `INSERT INTO ${raw}.messages (topic, bucket, cursor, id, source, ts, data) VALUES (?, ?, ?, ?, ?, ?, ?)`;
  const claim = `INSERT INTO ${raw}.message_ids (id, topic, cursor) VALUES (?, ?, ?) IF NOT EXISTS`;
  for (let i = 0; i < WARMUP_MESSAGES; i += 50) {
    // Every path the measurements take: unkeyed and keyed appends, plain and conditional INSERTs.
    const keyed = (i / 50) % 2 === 1;
    const rows = Array.from({ length: 50 }, (_, j) => envelope(i + j, 'warm', keyed));
    await store.append(rows, { minted: rows.map(() => true) });
    await eachLimit(rows, CASSANDRA_CONCURRENCY, async (e) => {
      if (keyed) await client.execute(claim, [e.id, e.topic, e.cursor], { serialConsistency: LOCAL_SERIAL });
      await client.execute(insert, cassandraRow(e));
    });
  }
  await store.history('warm.s0', { limit: 100 });
  return {
    server,
    store,
    client,
    keyspace: raw,
    async close() {
      await store.close();
      await client.shutdown();
    },
  };
}

const cassandraRow = (e: Envelope) => [
  e.topic,
  cassandra.types.Long.fromNumber(Math.floor(cursorTime(e.cursor) / BUCKET_MS)),
  e.cursor,
  e.id,
  e.source,
  cassandra.types.Long.fromNumber(e.ts),
  JSON.stringify(e.data),
];

/** Appends `messages` in batches through `append`, then times `READS` history reads of one topic. */
async function measureCassandra(
  target: StorageResult['target'],
  batch: number,
  messages: number,
  append: (rows: Envelope[]) => Promise<unknown>,
  read: (topic: string, after: Envelope) => Promise<unknown>,
  keyed = false,
): Promise<StorageResult> {
  const prefix = `b${randomNodeId(8)}`;
  const written: Envelope[] = [];
  const started = performance.now();
  for (let i = 0; i < messages; i += batch) {
    const rows = Array.from({ length: batch }, (_, j) => envelope(i + j, prefix, keyed));
    await append(rows);
    written.push(...rows);
  }
  const rate = messages / ((performance.now() - started) / 1000);
  const topic = `${prefix}.s1`;
  const candidates = written.filter((e) => e.topic === topic);
  const reads: number[] = [];
  for (let i = 0; i < READS; i++) {
    const after = candidates[Math.floor(Math.random() * candidates.length)] as Envelope;
    const t = performance.now();
    await read(topic, after);
    reads.push(performance.now() - t);
  }
  reads.sort((x, y) => x - y);
  return {
    target,
    batch,
    appends_per_s: Math.round(rate),
    read_p50_ms: percentile(reads, 50),
    read_p99_ms: percentile(reads, 99),
  };
}

/**
 * The Cassandra store beside two raw-driver baselines in one keyspace of plain tables: plain
 * prepared INSERTs of the history rows, and the same preceded by an `IF NOT EXISTS` id claim (the
 * floor of any idempotent append on Cassandra: a Paxos round per message). Reads: the store's
 * `history(topic, {after, limit: 100})` against one prepared SELECT of the same slice.
 */
export async function runCassandraStorage(
  bench: CassandraBench,
  batch: number,
  messages: number,
  run = 0,
): Promise<StorageResult[]> {
  const { store, client, keyspace } = bench;
  const insert = `INSERT INTO ${keyspace}.messages (topic, bucket, cursor, id, source, ts, data) VALUES (?, ?, ?, ?, ?, ?, ?)`;
  const claim = `INSERT INTO ${keyspace}.message_ids (id, topic, cursor) VALUES (?, ?, ?) IF NOT EXISTS`;
  const select = `SELECT * FROM ${keyspace}.messages WHERE topic = ? AND bucket = ? AND cursor > ? LIMIT 100`;
  const rawRead = async (topic: string, after: Envelope) => {
    const result = await client.execute(select, [topic, cassandraRow(after)[1], after.cursor]);
    // The same work the store does with the rows it reads.
    return result.rows.map((r) => ({ ...r, data: JSON.parse(r.data as string) }));
  };
  // As a relay's publish calls it: minted here, so random ids need no lookup.
  const appendMinted = (rows: Envelope[]) => store.append(rows, { minted: rows.map(() => true) });
  const storeRead = (topic: string, after: Envelope) => store.history(topic, { after: after.cursor, limit: 100 });
  const targets: (() => Promise<StorageResult>)[] = [
    () => measureCassandra('anode-cassandra', batch, messages, appendMinted, storeRead),
    () =>
      measureCassandra(
        'cassandra-baseline',
        batch,
        messages,
        (rows) => eachLimit(rows, CASSANDRA_CONCURRENCY, (e) => client.execute(insert, cassandraRow(e))),
        rawRead,
      ),
    () =>
      measureCassandra(
        'cassandra-lwt-baseline',
        batch,
        messages,
        (rows) =>
          eachLimit(rows, CASSANDRA_CONCURRENCY, async (e) => {
            await client.execute(claim, [e.id, e.topic, e.cursor], { serialConsistency: LOCAL_SERIAL });
            await client.execute(insert, cassandraRow(e));
          }),
        rawRead,
      ),
    () => measureCassandra('anode-cassandra-keyed', batch, messages, appendMinted, storeRead, true),
  ];
  // Each run starts with another target: a shared machine's load drifts over a run, and the
  // target measured first or right after the LWT baseline (Paxos state, flushes) would carry it.
  const results: StorageResult[] = new Array(targets.length);
  for (let k = 0; k < targets.length; k++) {
    const i = (k + run) % targets.length;
    results[i] = await (targets[i] as () => Promise<StorageResult>)();
  }
  return results;
}

/** Start Cassandra for a scenario run, or say why not (the table and the notes carry the reason). */
async function startBenchCassandra(log: (line: string) => void): Promise<CassandraServer | string> {
  if (!findJava()) return 'java not found (Cassandra 5.0 needs Java 17 or 11, and Maven for its jars)';
  try {
    const server = await startCassandra({ fast: true, heap: '1g', log: (line) => log(`storage: cassandra: ${line}`) });
    log(
      `storage: Cassandra ${server.releaseVersion} up in ${(server.startupMs / 1000).toFixed(1)} s on port ${server.port}`,
    );
    return server;
  } catch (error) {
    return `Cassandra did not start: ${(error as Error).message.split('\n')[0]}`;
  }
}

export const storageScenario: Scenario = {
  name: 'storage',
  summary:
    'appends/s and history-read latency at batch sizes 1, 10, 100: embedded (vs raw SQLite) and Cassandra (vs raw driver)',
  flags: {
    batches: { type: 'string' }, // list, e.g. 1,10,100
    messages: { type: 'string' }, // per batch size and target (default: embedded 1,000 × batch; Cassandra less)
    cassandra: { type: 'string' }, // true | false (default: true, false with --quick)
  },
  async run({ quick, runs, flags, log }) {
    const batches = numberList(flags.batches, [1, 10, 100]);
    const cassandraFlag = typeof flags.cassandra === 'string' ? flags.cassandra : quick ? 'false' : 'true';
    if (!['true', 'false'].includes(cassandraFlag))
      throw new Error(`--cassandra must be true or false: ${cassandraFlag}`);
    const rows = [
      '| batch | target | appends/s | history read p50 ms | p99 ms | ratio appends vs baseline | ratio read p50 vs baseline |',
      '|---|---|---|---|---|---|---|',
    ];
    const notes: string[] = [];
    const data: StorageResult[] = [];
    const row = (result: StorageResult, base: StorageResult) =>
      `| ${result.batch} | ${result.target} | ${result.appends_per_s} | ${fmt(result.read_p50_ms, 3)} | ${fmt(result.read_p99_ms, 3)} | ${fmt(result.appends_per_s / base.appends_per_s, 2)}× | ${fmt(result.read_p50_ms / base.read_p50_ms, 2)}× |`;

    for (const batch of batches) {
      const messages = numberFlag(flags.messages, quick ? Math.min(2_000, batch * 200) : batch * 1_000);
      const samples: StorageResult[][] = [];
      for (let r = 0; r < runs; r++) {
        log(`storage: embedded, batch ${batch}, ${messages} messages (run ${r + 1}/${runs})`);
        samples.push(await runStorage(batch, messages));
      }
      const anode = medianOf(samples.map((s) => s[0] as StorageResult));
      const raw = medianOf(samples.map((s) => s[1] as StorageResult));
      data.push(anode, raw);
      rows.push(row(raw, raw), row(anode, raw));
    }

    if (cassandraFlag === 'false') {
      const why = quick ? '--quick' : '--cassandra false';
      notes.push(
        `Cassandra not measured (${why}${quick ? ": its startup alone takes 4–15 s, more than --quick's share" : ''}); run \`npm run bench -- storage\` (or add --cassandra true) for it.`,
      );
      rows.push(`| – | anode-cassandra | not measured (${why}) | – | – | – | – |`);
      return { rows, notes, data };
    }
    const started = performance.now();
    const server = await startBenchCassandra(log);
    if (typeof server === 'string') {
      notes.push(`Cassandra NOT measured: ${server}.`);
      rows.push(`| – | anode-cassandra | NOT MEASURED: ${server.replaceAll('|', '/')} | – | – | – | – |`);
      return { rows, notes, data };
    }
    let bench: CassandraBench | undefined;
    try {
      bench = await openCassandraBench(server);
      for (const batch of batches) {
        // The LWT baseline pays a Paxos round per message (a few hundred to a few thousand/s on
        // one local node), so fewer messages than the embedded run; yet enough that the fastest
        // target (plain INSERTs, ~20,000/s at batch 100 on an idle machine) runs for a second,
        // not a few milliseconds of fixed costs.
        const messages = numberFlag(
          flags.messages,
          quick ? Math.min(500, batch * 20) : Math.min(20_000, Math.max(1_000, batch * 200)),
        );
        const samples: StorageResult[][] = [];
        for (let r = 0; r < runs; r++) {
          log(`storage: cassandra, batch ${batch}, ${messages} messages (run ${r + 1}/${runs})`);
          samples.push(await runCassandraStorage(bench, batch, messages, r));
        }
        const [anode, raw, lwt, keyed] = [0, 1, 2, 3].map((i) =>
          medianOf(samples.map((s) => s[i] as StorageResult)),
        ) as [StorageResult, StorageResult, StorageResult, StorageResult];
        data.push(anode, raw, lwt, keyed);
        rows.push(row(raw, raw), row(lwt, raw), row(anode, raw), row(keyed, raw));
      }
    } finally {
      await bench?.close().catch(() => {});
      await server.stop();
    }
    notes.push(
      `Cassandra ${server.releaseVersion}: one local node (Java 17, 1 GiB heap, system tables unsynced, commit log periodic, paxos_variant v2) on the same 2 cores, started once for this run (${(server.startupMs / 1000).toFixed(1)} s; Cassandra part ${Math.round((performance.now() - started) / 1000)} s). Both Cassandra targets write at LOCAL_QUORUM with ${CASSANDRA_CONCURRENCY} statements in flight per batch; anode-cassandra appends random ids as a publish mints them (plain upserts of the history row, plus one latest-per-source row per topic and source in the batch); anode-cassandra-keyed appends content-addressed ids (idempotency keys), claimed with lightweight transactions (IF NOT EXISTS, LOCAL_SERIAL) before their history rows; cassandra-baseline only INSERTs the history row, cassandra-lwt-baseline claims the id (IF NOT EXISTS) and then INSERTs the history row, the floor of any keyed idempotent append on Cassandra. Reads: the store's history(after, limit 100) against one prepared SELECT of the same slice. Ratios are to cassandra-baseline; targets (issue 20): unkeyed ≥ 0.8× at batch 100, keyed ≥ 0.5×, reads ≤ 1.5×. ${WARMUP_MESSAGES} untimed appends through each path (keyed and unkeyed) warm the fresh JVM first, and each run measures the four targets in a rotated order (load drifts on a shared machine). anode-cassandra-keyed claims the keyed ids of one topic in one conditional batch (one Paxos round per topic per append, committed at ANY). Both anode targets write the history rows of one partition (topic, bucket) as one unlogged batch.`,
    );
    return { rows, notes, data };
  },
};
