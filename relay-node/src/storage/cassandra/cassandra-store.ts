import { readFileSync } from 'node:fs';
import {
  type AppendResult,
  cursorTime,
  type Envelope,
  type MessageStore,
  type RetentionPolicy,
  type StoreHealth,
} from '@anode/shared';
import cassandra from 'cassandra-driver';
import { migrate } from './schema.ts';

/**
 * The Cassandra MessageStore on the DataStax driver: prepared statements, token-aware and
 * DC-aware routing (the driver's default policy with `localDataCenter`), bounded concurrency per
 * append, retention by TTL. It connects lazily and retries the connection on the next call, so a
 * relay can start while Cassandra is still away (the spool in front of it takes the writes).
 */
export interface CassandraStoreOptions {
  contactPoints: string[];
  localDataCenter: string;
  keyspace: string;
  replication: string;
  username?: string;
  password?: string;
  tls?: boolean;
  tlsCaFile?: string;
  /** CQL consistency level names, e.g. `LOCAL_QUORUM`. */
  writeConsistency: string;
  readConsistency: string;
  concurrency: number;
  bucketMs: number;
  timeoutMs: number;
  retention: RetentionPolicy;
}

const { Long, consistencies } = cassandra.types;
const CONSISTENCY: Record<string, number> = {
  ONE: consistencies.one,
  TWO: consistencies.two,
  THREE: consistencies.three,
  QUORUM: consistencies.quorum,
  ALL: consistencies.all,
  LOCAL_QUORUM: consistencies.localQuorum,
  EACH_QUORUM: consistencies.eachQuorum,
  LOCAL_ONE: consistencies.localOne,
};

type Row = cassandra.types.Row;

const rowToEnvelope = (row: Row): Envelope => ({
  id: row.id as string,
  topic: row.topic as string,
  cursor: row.cursor as string,
  source: row.source as string,
  ts: Number(row.ts),
  data: JSON.parse(row.data as string),
});

/** The `latest` cell: the envelope as JSON with `id` first, so a tie on timestamp keeps the greater id. */
const latestCell = (e: Envelope) =>
  JSON.stringify({ id: e.id, topic: e.topic, cursor: e.cursor, source: e.source, ts: e.ts, data: e.data });

/** Run `work` over `items` with at most `limit` in flight; results keep the input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export function createCassandraStore(options: CassandraStoreOptions): MessageStore {
  const ks = options.keyspace;

  const client = new cassandra.Client({
    contactPoints: options.contactPoints,
    localDataCenter: options.localDataCenter,
    ...(options.username ? { credentials: { username: options.username, password: options.password ?? '' } } : {}),
    ...(options.tls
      ? { sslOptions: options.tlsCaFile ? { ca: [readFileSync(options.tlsCaFile)] } : { rejectUnauthorized: true } }
      : {}),
    socketOptions: { readTimeout: options.timeoutMs, connectTimeout: options.timeoutMs },
    // Come back within seconds of Cassandra returning (the default backs off to 10 minutes).
    policies: { reconnection: new cassandra.policies.reconnection.ExponentialReconnectionPolicy(250, 5_000, false) },
    queryOptions: { prepare: true, consistency: CONSISTENCY[options.readConsistency] },
  });
  const ttl = options.retention.maxAgeMs > 0 ? Math.ceil(options.retention.maxAgeMs / 1000) : 0;
  const bucketTtl = ttl > 0 ? ttl + Math.ceil(options.bucketMs / 1000) : 0;
  const write = {
    prepare: true,
    consistency: CONSISTENCY[options.writeConsistency],
    serialConsistency: consistencies.localSerial,
  };
  const bucketOf = (cursor: string) => Long.fromNumber(Math.floor(cursorTime(cursor) / options.bucketMs));
  const knownBuckets = new Set<string>();
  const knownTopics = new Set<string>();
  let ready: Promise<void> | undefined;
  let lastError: string | undefined;

  let closed = false;
  let inFlight = 0;
  // Every statement goes through here: the driver would silently reconnect (and leak its pools)
  // if a statement ran after shutdown, so none may start once the store is closed.
  const exec = async (query: string, params?: unknown[], execOptions?: cassandra.QueryOptions) => {
    if (closed) throw new Error('store is closed');
    inFlight += 1;
    try {
      return await client.execute(query, params, execOptions);
    } finally {
      inFlight -= 1;
    }
  };
  const connect = () => {
    if (closed) return Promise.reject(new Error('store is closed'));
    ready ??= (async () => {
      await client.connect();
      await migrate(client, ks, options.replication);
    })().catch((error: unknown) => {
      ready = undefined; // try again on the next call
      lastError = (error as Error).message;
      throw error;
    });
    return ready;
  };

  const storeRow = async (e: Envelope) => {
    const bucket = bucketOf(e.cursor);
    const bucketKey = `${e.topic}\n${bucket}`;
    const data = JSON.stringify(e.data);
    const writes: Promise<unknown>[] = [
      exec(
        `INSERT INTO ${ks}.messages (topic, bucket, cursor, id, source, ts, data) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
        [e.topic, bucket, e.cursor, e.id, e.source, Long.fromNumber(e.ts), data, ttl],
        write,
      ),
      exec(
        `INSERT INTO ${ks}.latest (topic, source, envelope) VALUES (?, ?, ?) USING TIMESTAMP ?`,
        [e.topic, e.source, latestCell(e), Long.fromNumber(e.ts).multiply(1000)],
        write,
      ),
    ];
    if (!knownBuckets.has(bucketKey)) {
      writes.push(
        exec(
          `INSERT INTO ${ks}.topic_buckets (topic, bucket) VALUES (?, ?) USING TTL ?`,
          [e.topic, bucket, bucketTtl],
          write,
        ),
      );
    }
    if (!knownTopics.has(e.topic)) {
      // The first cursor wins: an older cursor's write-time is irrelevant, so use LWT-free min via timestamp.
      writes.push(
        exec(
          `INSERT INTO ${ks}.topic_first (topic, cursor) VALUES (?, ?) USING TIMESTAMP ?`,
          [e.topic, e.cursor, Long.fromNumber(Number.MAX_SAFE_INTEGER - cursorTime(e.cursor))],
          write,
        ),
      );
    }
    await Promise.all(writes);
    knownBuckets.add(bucketKey);
    knownTopics.add(e.topic);
  };

  const appendOne = async (e: Envelope): Promise<AppendResult> => {
    const result = await exec(
      `INSERT INTO ${ks}.message_ids (id, topic, cursor, source, ts, data) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?`,
      [e.id, e.topic, e.cursor, e.source, Long.fromNumber(e.ts), JSON.stringify(e.data), ttl],
      write,
    );
    const row = result.first();
    const inserted = row?.['[applied]'] === true;
    const stored = inserted || !row ? e : rowToEnvelope(row);
    // Always (re)write the stored copy: if a previous attempt died after the id was claimed,
    // this completes it, and rewriting the same primary key is harmless.
    await storeRow(stored);
    return { envelope: stored, inserted };
  };

  return {
    kind: 'cassandra',

    async append(messages) {
      await connect();
      // A repeated id within one batch resolves to its first occurrence (input order), as in
      // every adapter, instead of racing its own lightweight transaction.
      const firstIndex = new Map<string, number>();
      messages.forEach((m, i) => {
        if (!firstIndex.has(m.id)) firstIndex.set(m.id, i);
      });
      const unique = [...firstIndex.values()].map((i) => messages[i] as Envelope);
      const results = new Map(
        (await mapLimit(unique, options.concurrency, appendOne)).map((r, i) => [unique[i]?.id, r]),
      );
      return messages.map((m, i) => {
        const result = results.get(m.id) as AppendResult;
        return firstIndex.get(m.id) === i ? result : { envelope: result.envelope, inserted: false };
      });
    },

    async history(topic, { after, limit }) {
      if (limit <= 0) return [];
      await connect();
      const from = after ? bucketOf(after) : Long.fromNumber(Number.MIN_SAFE_INTEGER);
      const buckets = await exec(`SELECT bucket FROM ${ks}.topic_buckets WHERE topic = ? AND bucket >= ?`, [
        topic,
        from,
      ]);
      const out: Envelope[] = [];
      for (const { bucket } of buckets.rows) {
        const rows = await exec(`SELECT * FROM ${ks}.messages WHERE topic = ? AND bucket = ? AND cursor > ? LIMIT ?`, [
          topic,
          bucket,
          after ?? '',
          limit - out.length,
        ]);
        out.push(...rows.rows.map(rowToEnvelope));
        if (out.length >= limit) break;
      }
      return out;
    },

    async latest(topic) {
      await connect();
      const rows = await exec(`SELECT source, envelope FROM ${ks}.latest WHERE topic = ?`, [topic]);
      return Object.fromEntries(rows.rows.map((r) => [r.source as string, JSON.parse(r.envelope as string)]));
    },

    async topics() {
      await connect();
      const rows = await exec(`SELECT DISTINCT topic FROM ${ks}.topic_buckets`);
      return rows.rows.map((r) => r.topic as string).sort();
    },

    async trimmedThrough(topic) {
      if (ttl === 0) return undefined;
      await connect();
      const first = (await exec(`SELECT cursor FROM ${ks}.topic_first WHERE topic = ?`, [topic])).first();
      const horizon = Date.now() - options.retention.maxAgeMs;
      if (!first || cursorTime(first.cursor as string) >= horizon) return undefined;
      // Messages minted before the horizon have expired (or are about to): a cursor below it has a gap.
      return `${Math.floor(horizon).toString(16).padStart(12, '0')}0000`;
    },

    async sweep() {
      return 0; // Cassandra expires messages by TTL
    },

    async health(): Promise<StoreHealth> {
      try {
        await connect();
        await exec('SELECT release_version FROM system.local');
        lastError = undefined;
        return { ok: true, keyspace: ks, hosts: client.getState().getConnectedHosts().length };
      } catch (error) {
        lastError = (error as Error).message;
        return { ok: false, detail: lastError, keyspace: ks };
      }
    },

    async close() {
      closed = true;
      // A connect still in flight would open pools after shutdown and keep the process alive.
      await ready?.catch(() => {});
      const deadline = Date.now() + options.timeoutMs;
      while (inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await client.shutdown();
    },
  };
}
