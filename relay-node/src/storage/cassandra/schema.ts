import { cursorTime } from '@anode/shared';
import cassandra, { type Client } from 'cassandra-driver';

/**
 * Versioned CQL migrations. Each version's statements run once, in order, and are recorded in
 * `schema_migrations`; the driver waits for schema agreement after each DDL statement.
 *
 * - `messages`: history, partitioned by (topic, time bucket) so no partition grows without
 *   bound, clustered by cursor so a range read is one slice. The only copy of a message's data.
 * - `message_claims` (schema 3; `message_ids` before it, left in place and unused): the claims of
 *   content-addressed ids (idempotency keys): (topic, shard, id) → cursor, written with a
 *   lightweight transaction so one cursor wins; the data stays in `messages`. Random ids are never
 *   claimed (they are minted once with their cursor). The partition is (topic, shard), `shard`
 *   a fixed function of the id (claimShard), so the claims of one batch share a few partitions and
 *   one conditional BATCH (one Paxos round) claims many ids at once.
 * - `topic_buckets`: which buckets of a topic hold messages, to page history across buckets.
 * - `latest`: the newest message per (topic, source), written `USING TIMESTAMP` = the message's
 *   `ts` so Cassandra itself keeps the newest; one JSON cell starting with the id, so equal
 *   timestamps resolve to the greater id on every replica (Cassandra keeps the greater value).
 * - `topic_first`: the first cursor ever stored per topic (no TTL), to tell that a resume cursor
 *   predates what retention kept.
 * - `keyspace_settings` (schema 5): settings the keyspace's rows depend on, fixed by the first
 *   relay that starts on it: `bucket_ms` (see recordBucketMs).
 * - schema 6: `latest` gets a 3-hour gc grace and tombstone compaction (its rows expire).
 */
/**
 * TWCS window of the time-series tables: a day keeps a week's retention in about 7 windows plus
 * the one being written (Cassandra's advice: 20-30 windows at most); shorter retention only
 * means fewer windows.
 */
export const WINDOW_HOURS = 24;

/** TWCS and a 3-hour grace (see migration 2) for a table that is written once and only expires. */
const TIME_SERIES = `compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'HOURS', 'compaction_window_size': '${WINDOW_HOURS}'} AND gc_grace_seconds = 10800`;

/**
 * Claim partitions per topic. Fixed forever for a keyspace: an id must always map to the same
 * partition, or two relays would claim it in two places. One today: measured with
 * `npm run bench -- storage` (batches spread over 10 topics), one partition per topic claimed
 * keyed appends about 1.6× as fast as four (a batch's claims of a topic in one Paxos round
 * instead of ~4), and for a single busy topic four would only split its claims, not save
 * rounds. The column stays so a later schema can spread very busy topics (see docs/storage.md).
 */
export const CLAIM_SHARDS = 1;

/** The claim partition of an id within its topic: FNV-1a of the id (any id shape), mod CLAIM_SHARDS. */
export function claimShard(id: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) hash = Math.imul(hash ^ id.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % CLAIM_SHARDS;
}

export const MIGRATIONS: string[][] = [
  [
    `CREATE TABLE IF NOT EXISTS messages (
       topic text, bucket bigint, cursor text, id text, source text, ts bigint, data text,
       PRIMARY KEY ((topic, bucket), cursor)
     ) WITH CLUSTERING ORDER BY (cursor ASC)`,
    `CREATE TABLE IF NOT EXISTS message_ids (
       id text PRIMARY KEY, topic text, cursor text, source text, ts bigint, data text
     )`,
    `CREATE TABLE IF NOT EXISTS topic_buckets (
       topic text, bucket bigint, PRIMARY KEY (topic, bucket)
     ) WITH CLUSTERING ORDER BY (bucket ASC)`,
    `CREATE TABLE IF NOT EXISTS latest (
       topic text, source text, envelope text, PRIMARY KEY (topic, source)
     )`,
    `CREATE TABLE IF NOT EXISTS topic_first (topic text PRIMARY KEY, cursor text)`,
  ],
  [
    // Version 2: message_ids points at the history row instead of holding a second copy.
    `ALTER TABLE message_ids DROP (source, ts, data)`,
    // History and claims are written once, in time order, and expire by TTL: time series. TWCS
    // keeps each time window in its own SSTables and drops a whole SSTable once everything in it
    // has expired (no compaction rewrites it first). Expired cells are purged after
    // gc_grace_seconds; these tables are never deleted from, only expire, so three hours (the
    // hint window) is enough, instead of the 10 days that keep expired data on disk.
    `ALTER TABLE messages WITH compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'HOURS', 'compaction_window_size': '${WINDOW_HOURS}'} AND gc_grace_seconds = 10800`,
    `ALTER TABLE message_ids WITH compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'HOURS', 'compaction_window_size': '${WINDOW_HOURS}'} AND gc_grace_seconds = 10800`,
  ],
  [
    // Version 3: claims partitioned by (topic, shard), so one conditional batch per partition
    // claims many ids in one Paxos round (a claim per id in message_ids was a round each).
    // message_ids stays (unused) so relays of schema 2 keep working during a rolling upgrade.
    `CREATE TABLE IF NOT EXISTS message_claims (
       topic text, shard int, id text, cursor text,
       PRIMARY KEY ((topic, shard), id)
     ) WITH ${TIME_SERIES}`,
  ],
  [
    // Version 4: which relay mints under each node id (node-lease.ts). Rows expire unless renewed.
    `CREATE TABLE IF NOT EXISTS node_leases (node_id text PRIMARY KEY, holder text, renewed_at timestamp)`,
  ],
  [
    // Version 5: the settings every relay on the keyspace must share (recordBucketMs).
    `CREATE TABLE IF NOT EXISTS keyspace_settings (name text PRIMARY KEY, value text)`,
  ],
  [
    // Version 6: latest rows expire (TTL) since 47c93e8, and a topic's rows share one partition.
    // With the default 10 days' grace, a topic whose sources churn piled up expired cells that
    // every page read scans (100,000 fail a read: /latest failed for that topic for ~10 days).
    // Three hours, as the other TTL tables. Not TWCS as they: latest is overwritten in place, so
    // its windows would never expire whole; size-tiered, and unchecked_tombstone_compaction lets a
    // single SSTable be compacted to purge them. Older relays run against it (they check that
    // their versions are applied, not that no newer one is).
    `ALTER TABLE latest WITH gc_grace_seconds = 10800 AND compaction = {'class': 'SizeTieredCompactionStrategy', 'unchecked_tombstone_compaction': 'true'}`,
  ],
];

export function replicationClause(replication: string): string {
  const [strategy, spec = ''] = replication.split(':');
  if (strategy === 'SimpleStrategy') {
    return `{'class': 'SimpleStrategy', 'replication_factor': ${Number(spec)}}`;
  }
  const dcs = spec.split(',').map((pair) => {
    const [dc, rf] = pair.split('=');
    return `'${dc}': ${Number(rf)}`;
  });
  return `{'class': 'NetworkTopologyStrategy', ${dcs.join(', ')}}`;
}

/** How long connecting keeps trying to bring the schema up to date before it fails (appends spool meanwhile). */
export const MIGRATE_PATIENCE_MS = 60_000;

const { responseErrorCodes: codes } = cassandra.types;
/**
 * A schema change not yet on every node: relays starting together migrate the same keyspace,
 * and a statement reaching a node that has not heard of a new keyspace or table yet fails there
 * ("Keyspace … doesn't exist", "unconfigured table", or a replica failing a read of a table it
 * does not know). Also the transient answers of a loaded or failing cluster. Seen in the 3-node
 * test: one of two relays failed its migration this way and spooled from its first publish.
 */
const isSchemaLag = (error: unknown): boolean =>
  (error instanceof cassandra.errors.ResponseError &&
    (error.code === codes.invalid || error.code === codes.configError
      ? /doesn't exist|does not exist|unconfigured table|cannot find/i.test(error.message)
      : [
          codes.readFailure,
          codes.writeFailure,
          codes.readTimeout,
          codes.writeTimeout,
          codes.unavailableException,
          codes.overloaded,
          codes.isBootstrapping,
        ].includes(error.code))) ||
  error instanceof cassandra.errors.OperationTimedOutError ||
  (error as { isSocketError?: boolean }).isSocketError === true ||
  (error instanceof cassandra.errors.NoHostAvailableError &&
    Object.values((error.innerErrors ?? {}) as Record<string, unknown>).every(isSchemaLag));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Until the nodes the driver sees up agree on one schema version (or the deadline passes). */
async function agreement(client: Client, deadline: number): Promise<void> {
  // In the driver (4.x), not in its type definitions.
  const metadata = client.metadata as unknown as { checkSchemaAgreement(): Promise<boolean> };
  while (Date.now() < deadline && !(await metadata.checkSchemaAgreement())) await sleep(200);
}

/** `statement`, tried again (after waiting for schema agreement) while it fails for schema lag. */
async function settled<T>(client: Client, deadline: number, statement: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await statement();
    } catch (error) {
      if (!isSchemaLag(error) || Date.now() >= deadline) throw error;
      await agreement(client, deadline);
      await sleep(Math.min(250 * 2 ** attempt, 2_000));
    }
  }
}

/** The versions recorded in `schema_migrations`; none when the keyspace or table does not exist (here). */
async function appliedVersions(client: Client, keyspace: string, deadline: number): Promise<Set<number>> {
  try {
    const rows = await settled(client, Math.min(deadline, Date.now() + 5_000), () =>
      client.execute(`SELECT version FROM ${keyspace}.schema_migrations`),
    );
    return new Set(rows.rows.map((r) => Number(r.version)));
  } catch {
    return new Set(); // not there yet (or not here yet): the IF NOT EXISTS statements below decide
  }
}

/**
 * Brings the keyspace to the newest schema. A keyspace already there runs no DDL at all (a relay
 * starting while a node is down must not need a schema change); otherwise each statement waits
 * for schema agreement before the next, and one that meets schema lag (another relay migrating
 * at the same time) is tried again, for up to MIGRATE_PATIENCE_MS.
 */
export async function migrate(
  client: Client,
  keyspace: string,
  replication: string,
  patienceMs = MIGRATE_PATIENCE_MS,
): Promise<number> {
  const deadline = Date.now() + patienceMs;
  const ddl = async (statement: string) => {
    await settled(client, deadline, () => client.execute(statement));
    await agreement(client, deadline);
  };
  let applied = await appliedVersions(client, keyspace, deadline);
  if (MIGRATIONS.every((_, index) => applied.has(index + 1))) return 0;
  await ddl(`CREATE KEYSPACE IF NOT EXISTS ${keyspace} WITH replication = ${replicationClause(replication)}`);
  await ddl(`CREATE TABLE IF NOT EXISTS ${keyspace}.schema_migrations (version int PRIMARY KEY, applied_at timestamp)`);
  applied = await appliedVersions(client, keyspace, deadline);
  let ran = 0;
  for (const [index, statements] of MIGRATIONS.entries()) {
    const version = index + 1;
    if (applied.has(version)) continue;
    for (const statement of statements) {
      const qualified = statement.replace(/^(\s*(?:CREATE TABLE IF NOT EXISTS|ALTER TABLE) )(\w+)/, `$1${keyspace}.$2`);
      // Two relays starting together may both run a version: a column the other one already
      // dropped is the only error that means "done", not "failed".
      await ddl(qualified).catch((error: Error) => {
        if (!/DROP/.test(statement) || !/not found|doesn't exist|does not exist/i.test(error.message)) throw error;
      });
    }
    await settled(client, deadline, () =>
      client.execute(
        `INSERT INTO ${keyspace}.schema_migrations (version, applied_at) VALUES (?, toTimestamp(now()))`,
        [version],
        { prepare: true },
      ),
    );
    ran += 1;
  }
  return ran;
}

/**
 * A relay configured with another cassandra_bucket_ms than the keyspace was set up with. It does
 * not start: history rows are found by (topic, floor(cursor time / bucket)), so with another size
 * its resumes would skip what was written under the recorded one (a gap) and its lookups by cursor
 * would miss it (a copy from a peer stored again as new).
 */
export class BucketSizeMismatchError extends Error {
  readonly code = 'bucket_size_mismatch';
  /** The size the keyspace recorded (NaN when it recorded none: see UnrecordedBucketSizeMismatchError). */
  readonly recordedMs: number;
  readonly configuredMs: number;
  constructor(keyspace: string, recordedMs: number, configuredMs: number, message?: string) {
    super(
      message ??
        `keyspace ${keyspace} holds history written with cassandra_bucket_ms ${recordedMs} (recorded in its ` +
          `keyspace_settings table), but this relay is configured with cassandra_bucket_ms ${configuredMs}: ` +
          'its resumes and history reads would skip what was written with the other size, and lookups by cursor ' +
          `miss it. Set cassandra_bucket_ms back to ${recordedMs}, or use a new keyspace (cassandra_keyspace) ` +
          `for ${configuredMs}`,
    );
    this.recordedMs = recordedMs;
    this.configuredMs = configuredMs;
  }
}

/**
 * A keyspace with history and no bucket size recorded (written by relays from before schema 5)
 * whose rows were written with another size than this relay's: found from the rows themselves,
 * each in bucket floor(cursor time / size), which narrows the size to a range.
 */
export class UnrecordedBucketSizeMismatchError extends BucketSizeMismatchError {
  constructor(keyspace: string, configuredMs: number, fromMs: number, toMs: number) {
    const fits = fromMs <= 3_600_000 && 3_600_000 <= toMs ? ' (3600000, the default, fits)' : '';
    super(
      keyspace,
      Number.NaN,
      configuredMs,
      `keyspace ${keyspace} holds history written with another cassandra_bucket_ms than this relay's ` +
        `${configuredMs} (it has no size recorded: written by relays from before schema 5; its rows say ` +
        `between ${fromMs} and ${toMs}${fits}): its resumes and history reads would skip that history. ` +
        'Start with cassandra_bucket_ms set to the size the keyspace was written with (it is then recorded), ' +
        `or use a new keyspace (cassandra_keyspace) for ${configuredMs}`,
    );
  }
}

/** History rows read to tell the size an unrecorded keyspace was written with (see rowsBucketSize). */
const SIZE_SAMPLE_ROWS = 20;
/** Longest that read may take: past it (or failing), the size is recorded unchecked, as before the check. */
const SIZE_SAMPLE_TIMEOUT_MS = 10_000;

/**
 * The bucket sizes (ms, inclusive range) that the keyspace's history rows fit, from a sample of
 * them (each is in bucket floor(cursor time / size)); undefined when it holds none. A row in
 * bucket b at time t fits sizes in (t / (b + 1), t / b].
 */
async function rowsBucketSize(client: Client, keyspace: string): Promise<{ fromMs: number; toMs: number } | undefined> {
  const rows = await client.execute(`SELECT bucket, cursor FROM ${keyspace}.messages LIMIT ${SIZE_SAMPLE_ROWS}`, [], {
    readTimeout: SIZE_SAMPLE_TIMEOUT_MS,
  });
  let fromMs = 1;
  let toMs = Number.MAX_SAFE_INTEGER;
  let seen = false;
  for (const row of rows.rows) {
    const bucket = Number(row.bucket);
    const at = cursorTime(String(row.cursor));
    if (!Number.isSafeInteger(bucket) || bucket < 0 || !(at > 0)) continue;
    seen = true;
    fromMs = Math.max(fromMs, Math.floor(at / (bucket + 1)) + 1);
    if (bucket > 0) toMs = Math.min(toMs, Math.floor(at / bucket));
  }
  return seen ? { fromMs, toMs } : undefined;
}

/**
 * Records `bucketMs` as the keyspace's bucket size if none is recorded yet (a new keyspace, or one
 * from before schema 5: taken only if its history rows fit it, see rowsBucketSize), and returns the size
 * that stands. One lightweight transaction: of relays starting together with different sizes,
 * exactly one records its own, and every other one gets that one back. A try whose answer was
 * lost is tried again: it then finds its own value (or the winner's).
 */
export async function recordBucketMs(
  client: Client,
  keyspace: string,
  bucketMs: number,
  write: { consistency?: number; serialConsistency?: number },
  patienceMs = MIGRATE_PATIENCE_MS,
  warn?: (message: string) => void,
): Promise<number> {
  const deadline = Date.now() + patienceMs;
  const recordedNow = await settled(client, deadline, () =>
    client.execute(`SELECT value FROM ${keyspace}.keyspace_settings WHERE name = 'bucket_ms'`, [], {
      prepare: true,
      consistency: write.consistency,
    }),
  );
  if (!recordedNow.first()) {
    const sizes = await rowsBucketSize(client, keyspace).catch((error: Error) => {
      warn?.(
        `keyspace ${keyspace}: could not read its history rows to check cassandra_bucket_ms (${error.message}): recording ${bucketMs} unchecked`,
      );
      return undefined;
    });
    if (sizes && sizes.fromMs > sizes.toMs) {
      // No one size fits every row: the keyspace was written with several (changed before the
      // size was recorded), and some history is out of reach whatever is set. Refusing every size
      // would leave it unusable until those rows expire.
      warn?.(
        `keyspace ${keyspace}: its history rows were written with more than one cassandra_bucket_ms (before the ` +
          `size was recorded): recording ${bucketMs}; history written with another size is not read`,
      );
    } else if (sizes && (bucketMs < sizes.fromMs || bucketMs > sizes.toMs)) {
      throw new UnrecordedBucketSizeMismatchError(keyspace, bucketMs, sizes.fromMs, sizes.toMs);
    }
  }
  const result = await settled(client, deadline, () =>
    client.execute(
      `INSERT INTO ${keyspace}.keyspace_settings (name, value) VALUES ('bucket_ms', ?) IF NOT EXISTS`,
      [String(bucketMs)],
      { prepare: true, ...write },
    ),
  );
  const row = result.first();
  if (!row || row['[applied]'] === true) return bucketMs;
  const recorded = Number(row.value);
  if (!Number.isSafeInteger(recorded) || recorded <= 0) {
    throw new Error(
      `keyspace ${keyspace}: keyspace_settings holds bucket_ms '${String(row.value)}', not a bucket size`,
    );
  }
  return recorded;
}
