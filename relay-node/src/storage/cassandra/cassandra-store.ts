import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import {
  type AppendResult,
  backoffMs,
  cursorFloor,
  cursorTime,
  type Envelope,
  MAX_CLOCK_SKEW_MS,
  type MessageStore,
  newerForLatest,
  RecentMap,
  type RetentionPolicy,
  SeenIds,
  type StoreHealth,
  utf8Length,
} from '@anode/shared';
import cassandra from 'cassandra-driver';
import { guardControlConnection, shutDownRemovedHosts } from './driver-guard.ts';
import { createPartitionBatcher, type PartitionRow } from './partition-batcher.ts';
import type { Logger } from '../../logger.ts';
import { createNodeLease, LEASE_S, NodeIdInUseError } from './node-lease.ts';
import { BucketSizeMismatchError, claimShard, migrate, recordBucketMs } from './schema.ts';
import { StoreRejectedError } from '../store-rejected.ts';

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
  /** Of the id claims (LWT): `LOCAL_SERIAL` (default) decides within the local DC, `SERIAL` across all. */
  serialConsistency?: 'SERIAL' | 'LOCAL_SERIAL';
  concurrency: number;
  bucketMs: number;
  timeoutMs: number;
  /**
   * Longest close() takes (default: the smaller of timeoutMs and 5 s). The relay passes part of
   * shutdown_grace_ms: waiting out a connect or a lease release on a Cassandra that does not
   * answer took up to twice timeoutMs, and the relay was killed for it.
   */
  closeTimeoutMs?: number;
  /** Where close() says what it left behind. */
  log?: Logger;
  retention: RetentionPolicy;
  /**
   * Where the last write limit read from Cassandra is kept (the relay passes
   * `data_dir/cassandra-write-limit`): a relay restarted while Cassandra is away knows it from the
   * start, and refuses a message over it (too_large) instead of spooling and acking one that could
   * never be written.
   */
  limitFile?: string;
  /** The relay's max_message_bytes: a warning at connect when Cassandra takes less in one write. */
  maxMessageBytes?: number;
  /**
   * How often the write limit is read again while connected (default LIMIT_REFRESH_MS, 5 min; 0:
   * never). An operator changes it in cassandra.yaml and restarts the nodes one by one, which the
   * driver rides through without the store connecting again: read at connect only, a raised limit
   * kept refusing messages Cassandra would take, until the relay restarted.
   */
  limitRefreshMs?: number;
  /** Hold a lease on this relay's node id in the keyspace (node-lease.ts); the relay passes it. */
  lease?: { nodeId: string; holder: string; tokenFile?: string; leaseS?: number; renewMs?: number; pollMs?: number };
}

export interface CassandraStore extends MessageStore {
  /**
   * Why every write of this relay is refused now (another relay holds its node id), or
   * undefined. The spool in front asks before it spools: a write it took would be refused at
   * the drain, or overwrite the other relay's rows.
   */
  readonly refusal: Error | undefined;
  /**
   * The refusal append would make of `envelope` for its size (too_large, `certain`), from the
   * write limit last read (at connect, then every limitRefreshMs); undefined when it fits or the
   * limit is not known. Asks Cassandra nothing: the spool in front asks it for the publishes it
   * takes while Cassandra is away.
   */
  tooLarge(envelope: Envelope): StoreRejectedError | undefined;
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

/**
 * An id without a key (`messageId()`; `randomId()` in older data): minted once, with its cursor,
 * so it never needs a claim.
 */
const isRandomId = (id: string) => /^r[A-Za-z0-9_-]{22}$/.test(id);

/** First gap between reads of a claimed id's row while its claimant writes it (doubling, at most 500 ms). */
const CLAIM_READ_GAP_MS = 25;
/**
 * Claims per conditional batch: about 70 bytes each keeps a batch under Cassandra's 5 KiB
 * batch_size_warn_threshold (and far under the 50 KiB fail threshold).
 */
const CLAIMS_PER_BATCH = 50;

/** The claim that stands for an id: the topic and cursor of the copy that won. */
interface Claimed {
  topic: string;
  cursor: string;
}

/** First gap before a statement is tried again after a transient failure (doubling, jittered down to half, at most 1 s). */
const RETRY_GAP_MS = 50;
const { responseErrorCodes: codes } = cassandra.types;
/**
 * Server answers that mean "not now" rather than "no": a replica timed out or failed the
 * request, too few replicas looked alive, Paxos rounds contended, a node is starting. Around a
 * node's death they come and go for seconds while a quorum is still there: until the failure
 * detector convicts the dead node (~20 s here) coordinators keep waiting on it, and with
 * paxos_variant v2 an LWT then stalls for cas_contention_timeout before it times out (measured:
 * 3 s stalls every ~4 s until conviction). Every statement here is idempotent, so trying again
 * is safe; only when it keeps failing for cassandra_timeout_ms does the append fail (and spool).
 */
const TRANSIENT_CODES = new Set<number>([
  codes.unavailableException,
  codes.overloaded,
  codes.isBootstrapping,
  codes.writeTimeout,
  codes.readTimeout,
  codes.readFailure,
  codes.writeFailure,
]);
/**
 * A lost connection (when a node dies every request in flight on its sockets fails at once, and
 * the driver's own retry can run out of hosts it still believes usable before it notices which
 * are gone) or a transient server answer, on every host the driver tried.
 */
const isTransient = (error: unknown): boolean =>
  (error as { isSocketError?: boolean }).isSocketError === true ||
  (error instanceof cassandra.errors.ResponseError && TRANSIENT_CODES.has(error.code)) ||
  (error instanceof cassandra.errors.NoHostAvailableError &&
    Object.values((error.innerErrors ?? {}) as Record<string, unknown>).every(isTransient));

/**
 * The answers that mean "no, ever" to this message alone, both Invalid: "Request is too big", a
 * request frame past native_transport_max_frame_size (16 MiB by default; checked first, as the
 * request arrives), and "Rejected an oversized mutation", a write past max_mutation_size (by
 * default half of commitlog_segment_size, also 16 MiB; sent so since CASSANDRA-17456, 4.0.4 and
 * 4.1: older versions time out, an outage). Sent again, from the spool or later, it fails the same
 * way, so spooling it would block the spool behind it for good. (Before the frame refusal was
 * known here, a message near 16 MiB on a default Cassandra was taken as an outage: spooled, acked,
 * and the drain stuck behind it.) The store refuses such a message before writing any of it when
 * it knows the limits (see writeLimit); these answers are for when it does not.
 * Every other refusal, Invalid and syntax or configuration errors included, is taken as an outage:
 * an "Undefined column name" while a schema change spreads (a rolling upgrade), an unsupported
 * consistency level, a missing keyspace or table, authentication and permission errors hold for
 * every write alike until the cluster or an operator acts, and the spool keeps the writes meanwhile
 * (moved aside as refusals, they would take every acked message out of history for good).
 */
const OVERSIZED_MUTATION = /oversized mutation|request is too big/i;

/** `error` as a StoreRejectedError when Cassandra refuses this message for good (see OVERSIZED_MUTATION). */
export const asRejection = (error: unknown): StoreRejectedError | undefined => {
  if (!(error instanceof cassandra.errors.ResponseError) || error.code !== codes.invalid) return undefined;
  if (!OVERSIZED_MUTATION.test(error.message)) return undefined;
  return new StoreRejectedError(
    'too_large',
    'message not stored: its write is larger than Cassandra accepts in one request (native_transport_max_frame_size) ' +
      'or one mutation (max_mutation_size, by default half of commitlog_segment_size); keep max_message_bytes ' +
      `below that (${error.message})`,
    { cause: error },
  );
};

/**
 * Bytes a message's largest write carries besides its data, as counted against writeLimit: its
 * `latest` row holds the whole envelope (the topic and source twice, id, cursor, ts, JSON keys),
 * and the request and the mutation have their own framing. Measured on 5.0: ~200 bytes past the
 * data with a short topic and source, which are counted apart; the rest is margin.
 */
const WRITE_OVERHEAD_BYTES = 1_024;

/** Default of CassandraStoreOptions.limitRefreshMs: one small read of a node-local table this often. */
export const LIMIT_REFRESH_MS = 5 * 60_000;

/** The write limit a previous start kept (see CassandraStoreOptions.limitFile), or undefined. */
function readLimitFile(path: string | undefined): number | undefined {
  if (path === undefined) return undefined;
  try {
    const bytes = Number(readFileSync(path, 'utf8').trim());
    return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
  } catch {
    return undefined; // none yet (or unreadable: learned at the next connect)
  }
}

function removeLimitFile(path: string | undefined, log: Logger | undefined): void {
  if (path === undefined) return;
  try {
    rmSync(path, { force: true });
  } catch (error) {
    log?.warn({ err: error, path }, 'could not remove the kept Cassandra write limit');
  }
}

function writeLimitFile(path: string | undefined, bytes: number, log: Logger | undefined): void {
  if (path === undefined || readLimitFile(path) === bytes) return;
  try {
    writeFileSync(path, `${bytes}\n`, { mode: 0o600 });
  } catch (error) {
    log?.warn({ err: error, path }, "could not keep Cassandra's write limit for the next start");
  }
}

/** A size setting as system_views.settings shows it: '1024KiB', '16MiB', '1048576B', or a bare number of `unit`. */
const settingBytes = (value: unknown, unit = 1): number | undefined => {
  const match = /^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$/.exec(String(value ?? ''));
  if (!match) return undefined;
  const scale = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[match[2] ?? ''] ?? unit;
  const bytes = Number(match[1]) * scale;
  return bytes > 0 ? bytes : undefined;
};

const LIMIT_SETTINGS = [
  'native_transport_max_frame_size',
  'native_transport_max_frame_size_in_mb',
  'max_mutation_size',
  'max_mutation_size_in_kb',
  'commitlog_segment_size',
  'commitlog_segment_size_in_mb',
];
const LIMIT_QUERY = `SELECT name, value FROM system_views.settings WHERE name IN (${LIMIT_SETTINGS.map(() => '?').join(', ')})`;

/** Cassandra answered, and shows no write limit: nothing a later try would change. */
class LimitNotShownError extends Error {}
/**
 * The cluster answered that it does not show its write limits (no system_views.settings: before
 * 4.0 or not Cassandra; no permission; none of the settings), as against a read that failed for
 * now (away, timed out): the limit known so far may be another cluster's, and is not kept.
 */
const limitNotShown = (error: unknown) =>
  error instanceof LimitNotShownError ||
  [codes.invalid, codes.unauthorized, codes.syntaxError].includes((error as { code?: number }).code as number);

/**
 * The largest write (bytes) the coordinator takes: the smaller of native_transport_max_frame_size
 * and max_mutation_size (half of commitlog_segment_size when unset), read from
 * system_views.settings (4.0+; 4.1 renamed the keys with units, 4.0's names ending _in_kb and
 * _in_mb are read too). Fails when the table cannot be read (an older Cassandra, no permission,
 * Cassandra away) or names none of them: then the last limit known stands, or, none known, only
 * Cassandra's own refusals tell (see OVERSIZED_MUTATION). The nodes of a cluster are taken to
 * share their settings.
 */
async function readWriteLimit(
  execute: (query: string, params: unknown[]) => Promise<cassandra.types.ResultSet>,
): Promise<number> {
  const result = await execute(LIMIT_QUERY, LIMIT_SETTINGS);
  const settings = new Map(result.rows.map((row) => [row.name as string, row.value]));
  const MiB = 1024 ** 2;
  const frame =
    settingBytes(settings.get('native_transport_max_frame_size')) ??
    settingBytes(settings.get('native_transport_max_frame_size_in_mb'), MiB);
  const segment =
    settingBytes(settings.get('commitlog_segment_size')) ??
    settingBytes(settings.get('commitlog_segment_size_in_mb'), MiB);
  const mutation =
    settingBytes(settings.get('max_mutation_size')) ??
    settingBytes(settings.get('max_mutation_size_in_kb'), 1024) ??
    (segment === undefined ? undefined : segment / 2);
  const known = [frame, mutation].filter((n) => n !== undefined);
  if (known.length === 0) throw new LimitNotShownError('system_views.settings shows none of the write limit settings');
  return Math.min(...known);
}

/**
 * Cassandra's longest TTL, 20 years (Attributes.MAX_TTL): a longer one is refused ("ttl is too
 * large"), so a retention_max_age_ms past it had every write refused, taken as an outage and
 * spooled for good. Rows keep at most this long.
 */
const MAX_TTL_S = 630_720_000;
/** Longest a cursor may be ahead of this clock (MAX_CLOCK_SKEW_MS), in seconds. */
const SKEW_S = Math.ceil(MAX_CLOCK_SKEW_MS / 1000);
/**
 * The latest expiry (s since the epoch, 2038-01-19T03:14:06Z) a node accepts while it writes the
 * storage format before 5.0 (4.x, or 5.0 in storage_compatibility_mode CASSANDRA_4, its default):
 * a TTL reaching past it is refused ("exceeds maximum supported expiration date", CASSANDRA-14092),
 * which in 2026 is any retention past ~11 years. Which format a cluster writes is not readable
 * from a client, so the store learns it from the first such refusal.
 */
const LEGACY_MAX_EXPIRY_S = 2_147_483_646;
const isExpiryRefusal = (error: unknown) =>
  error instanceof cassandra.errors.ResponseError &&
  error.code === codes.invalid &&
  /maximum supported expiration date/i.test(error.message);

/**
 * The driver's retry policy, except that a request that timed out on the client is not tried on
 * the next node: `cassandra_timeout_ms` stays the bound before a write goes to the spool, instead
 * of that times the number of replicas. A lost connection is still tried on the next node.
 */
class NoClientTimeoutRetry extends cassandra.policies.retry.RetryPolicy {
  override onRequestError(
    info: cassandra.policies.retry.OperationInfo,
    consistency: number,
    error: Error,
  ): cassandra.policies.retry.DecisionInfo {
    if (error instanceof cassandra.errors.OperationTimedOutError) return this.rethrowResult();
    return super.onRequestError(info, consistency, error);
  }
}

/**
 * Rows per round trip of a history read bounded by `maxBytes`: the first fetch takes a few, the
 * next as many as the budget left holds at the size seen so far (at most HISTORY_FETCH_ROWS), so
 * a read holds about one fetch past its budget, not `limit` messages of any size.
 */
const FIRST_FETCH_ROWS = 8;
const HISTORY_FETCH_ROWS = 500;

/**
 * The (topic, bucket) index rows and the topics' first cursors this process wrote, so it does
 * not write them again for every message. Bounded (a relay sees new topics and a new bucket per
 * topic every cassandra_bucket_ms without end): the oldest are forgotten past these counts, and a
 * bucket row is written again before a message row would outlive it (see knownBuckets). Writing a
 * row again writes the same values: forgetting costs a write, never a different row.
 */
const KNOWN_BUCKETS = 65_536;
const KNOWN_TOPICS = 65_536;

type Limiter = <T>(work: () => Promise<T>) => Promise<T>;

/** How one append talks to Cassandra (see appendIo). */
interface Io {
  exec(query: string, params: unknown[], execOptions?: cassandra.QueryOptions): Promise<cassandra.types.ResultSet>;
  batch(
    queries: { query: string; params: unknown[] }[],
    execOptions: cassandra.QueryOptions,
  ): Promise<cassandra.types.ResultSet>;
  /** A history row, sent in one single-partition batch with the append's other rows of its bucket. */
  row(row: HistoryRow): Promise<void>;
  /** `data` as JSON, serialized once per append (the size check and the history row both need it). */
  json(data: unknown): string;
}

interface HistoryRow extends PartitionRow {
  params: unknown[];
}

/** At most `limit` statements of one append in flight; a finished one hands its slot on. */
function createLimiter(limit: number): Limiter {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (work) => {
    if (active >= limit) await new Promise<void>((r) => waiting.push(r));
    else active += 1;
    try {
      return await work();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active -= 1;
    }
  };
}

export function createCassandraStore(options: CassandraStoreOptions): CassandraStore {
  const ks = options.keyspace;

  // Nodes the driver discovers (system.peers) are dialled on protocolOptions.port, 9042 unless
  // set: with contact points on another port, every node but the contact points would be
  // unreachable (or, worse, some other Cassandra on 9042). Their common port is the cluster's.
  const ports = new Set(options.contactPoints.map((point) => /:(\d+)$/.exec(point)?.[1] ?? '9042'));
  const port = ports.size === 1 ? Number([...ports][0]) : undefined;
  const client = new cassandra.Client({
    contactPoints: options.contactPoints,
    ...(port === undefined ? {} : { protocolOptions: { port } }),
    localDataCenter: options.localDataCenter,
    ...(options.username ? { credentials: { username: options.username, password: options.password ?? '' } } : {}),
    ...(options.tls
      ? { sslOptions: options.tlsCaFile ? { ca: [readFileSync(options.tlsCaFile)] } : { rejectUnauthorized: true } }
      : {}),
    socketOptions: { readTimeout: options.timeoutMs, connectTimeout: options.timeoutMs },
    // Come back within seconds of Cassandra returning (the default backs off to 10 minutes).
    policies: {
      reconnection: new cassandra.policies.reconnection.ExponentialReconnectionPolicy(250, 5_000, false),
      retry: new NoClientTimeoutRetry(),
    },
    // Every statement here is idempotent (upserts of fixed rows, claims that tell their own
    // earlier try apart, reads), so the driver may retry one on the next node when its
    // coordinator dies mid-request: one node lost costs no failed append, hence no spooling.
    queryOptions: { prepare: true, isIdempotent: true, consistency: CONSISTENCY[options.readConsistency] },
  });
  guardControlConnection(client, (error) => {
    lastError = `control connection: ${error.message}`;
  });
  shutDownRemovedHosts(client);
  const ttl = options.retention.maxAgeMs > 0 ? Math.ceil(options.retention.maxAgeMs / 1000) : 0;
  const bucketS = Math.ceil(options.bucketMs / 1000);
  /** The latest expiry Cassandra accepted (s since the epoch): set once it refused a later one. */
  let expiryLimitS: number | undefined;
  /**
   * The longest TTL a message row written at `now` may have (s): what Cassandra holds (MAX_TTL_S,
   * and expiryLimitS once learned) less a bucket, as its bucket's index row lives a bucket longer.
   * Below 1 (past 2038 less a bucket on a cluster writing the format before 5.0) it leaves no room:
   * ttls() then applies no cap. It only shrinks as time passes. One helper for ttls() and
   * retainedMs(), so the TTL rows get and the horizon trimmedThrough reports cannot drift apart.
   */
  const rowTtlLimit = (now: number) => {
    const limit = expiryLimitS === undefined ? MAX_TTL_S : Math.min(MAX_TTL_S, expiryLimitS - now / 1000);
    return Math.floor(limit) - bucketS;
  };
  /**
   * The TTLs of a message's rows written now (its claim's too) and of its bucket's index row.
   * A row lives until its cursor is past the retention horizon (the horizon trimmedThrough reports:
   * before, its message gone was a silent gap): a cursor ahead of this clock (an HLC that followed
   * a peer's clock, up to MAX_CLOCK_SKEW_MS) keeps it that much longer, and a second more covers
   * Cassandra counting TTLs in whole seconds. The index row's is a bucket length longer (see
   * bucketKnown for a row that would outlive it). Both are capped where Cassandra cannot hold them (see
   * rowTtlLimit, MAX_TTL_S, LEGACY_MAX_EXPIRY_S; retainedMs says how long that keeps a message); a
   * cap that leaves no room (past 2038 on such a cluster) is not applied, and Cassandra's refusal
   * stands.
   */
  const ttls = (cursor: string) => {
    if (ttl === 0) return { row: 0, bucket: 0 };
    const now = Date.now();
    const ahead = Math.min(SKEW_S, Math.max(0, Math.ceil((cursorTime(cursor) - now) / 1000)));
    const row = ttl + ahead + 1;
    const most = rowTtlLimit(now);
    if (row <= most || most < 1) return { row, bucket: row + bucketS };
    return { row: most, bucket: most + bucketS };
  };
  /** The cause of the last cut of retention logged (retainedMs), so each is logged once. */
  let cutLogged: 'ttl' | 'expiry' | undefined;
  const DAY_MS = 86_400_000;
  /**
   * How long a message is kept (ms), by the TTL a row written at `now` gets: retention_max_age_ms,
   * unless ttls() caps the row TTL (rowTtlLimit): then that TTL less SKEW_S and a second (what
   * ttls() adds for a cursor ahead of the clock and for whole seconds). trimmedThrough and
   * trimmedTopics take their horizon from it: from the full retention, a capped row expired before
   * its cursor was reported trimmed (a silent gap: a 366-day bucket and 10.5 years' retention on a
   * default 5.0 lost the last ~0.36 years unreported). As the cap only shrinks with time, a row
   * written earlier expires no earlier than this horizon passes its cursor. Past the point where
   * the cap leaves no room every capped row has expired, and writes are refused: 0, all trimmed.
   * The first cut of each cause (the 20-year TTL, the 2038 expiry) is logged once.
   */
  const retainedMs = (now = Date.now()) => {
    const configured = options.retention.maxAgeMs;
    const kept = Math.min(configured, Math.max(0, (rowTtlLimit(now) - SKEW_S - 1) * 1000));
    if (kept >= configured) return configured;
    const cause = expiryLimitS !== undefined && expiryLimitS - now / 1000 < MAX_TTL_S ? 'expiry' : 'ttl';
    if (cutLogged !== cause) {
      cutLogged = cause;
      const days = (ms: number) => (ms / DAY_MS).toFixed(1);
      options.log?.warn(
        {
          retention_max_age_ms: configured,
          effective_retention_ms: kept,
          cassandra_bucket_ms: options.bucketMs,
          limit: cause === 'expiry' ? 'expiry_2038' : 'ttl_20_years',
        },
        `retention cut to ${days(kept)} days (retention_max_age_ms is ${days(configured)} days): ` +
          (cause === 'expiry'
            ? 'Cassandra refused a TTL expiring after 2038-01-19 (its storage format before 5.0, which 5.0 writes ' +
              'by default), so every message expires by then less a bucket (cassandra_bucket_ms, ' +
              `${days(options.bucketMs)} days) at the latest, and what is kept shrinks as that date nears`
            : "Cassandra's longest TTL is 20 years, and a bucket's index row must outlive its messages by a bucket " +
              `(cassandra_bucket_ms, ${days(options.bucketMs)} days)`) +
          '; a resume from a cursor older than that gets cursor_expired',
      );
    }
    return kept;
  };
  const write = {
    prepare: true,
    consistency: CONSISTENCY[options.writeConsistency],
    serialConsistency: options.serialConsistency === 'SERIAL' ? consistencies.serial : consistencies.localSerial,
  };
  /**
   * The claims' commit phase at ANY: the LWT returns once a quorum accepted the proposal, and the
   * commit reaches the replicas after. Safe because message_claims is only ever read through
   * Paxos (the claims' own IF NOT EXISTS): a later round's prepare finds an accepted, uncommitted
   * proposal and completes it before deciding, so the claim stands the moment the LWT returns.
   * (Measured alone on one node: conditional batches of 10 claims 25–35% faster than at
   * LOCAL_QUORUM; on a cluster it also saves waiting for the commit round trip.)
   */
  const claimWrite = { ...write, consistency: consistencies.any };
  const bucketOf = (cursor: string) => Long.fromNumber(Math.floor(cursorTime(cursor) / options.bucketMs));
  // Bucket key → by when its index row has expired at the latest (ms; Infinity without retention).
  // A message row that would outlive it (written about a bucket length later, a late arrival for
  // an old bucket, a cursor further ahead of the clock) writes it again.
  const knownBuckets = new RecentMap<number>(KNOWN_BUCKETS);
  const knownTopics = new SeenIds(KNOWN_TOPICS);
  const bucketKnown = (key: string, rowExpiresAt: number) => {
    const expiresAt = knownBuckets.get(key);
    return expiresAt !== undefined && expiresAt >= rowExpiresAt;
  };
  let ready: Promise<void> | undefined;
  /** A connect is in flight (`ready` not settled yet). */
  let connecting = false;
  /** `ready` has resolved: calls use the connection without waiting on anything. */
  let live = false;
  /**
   * The calls waiting on a connect in flight, rejected by close() as the connect cannot be cut
   * short. Each leaves once its wait settles: a wait on a promise that stays pending until close()
   * (a race with it, as before) kept one reaction per call, ~300 bytes, for the life of the store.
   */
  const waits = new Set<(error: Error) => void>();
  let lastError: string | undefined;

  let closed = false;
  let inFlight = 0;
  /** Statements tried again after a transient failure, and the last such failure (shown in health). */
  let retried = 0;
  let lastRetried: string | undefined;
  // Every statement goes through here: the driver would silently reconnect (and leak its pools)
  // if a statement ran after shutdown, so none may start once the store is closed.
  const guarded = async (call: () => Promise<cassandra.types.ResultSet>, deadline: number) => {
    if (closed) throw new Error('store is closed');
    inFlight += 1;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await call();
        } catch (error) {
          // Jittered: two relays whose Paxos rounds collided should not collide again.
          const gap = backoffMs(attempt, RETRY_GAP_MS, 1_000);
          if (closed || !isTransient(error) || Date.now() + gap >= deadline) throw error;
          retried += 1;
          lastRetried = (error as Error).message;
          await new Promise((r) => setTimeout(r, gap));
        }
      }
    } finally {
      inFlight -= 1;
    }
  };
  const insertRow = `INSERT INTO ${ks}.messages (topic, bucket, cursor, id, source, ts, data) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?`;
  const selectRow = `SELECT * FROM ${ks}.messages WHERE topic = ? AND bucket = ? AND cursor = ?`;
  const claimRow = `INSERT INTO ${ks}.message_claims (topic, shard, id, cursor) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?`;
  /** A read outside an append: tried again on transient failures for up to cassandra_timeout_ms. */
  const exec = (query: string, params?: unknown[], execOptions?: cassandra.QueryOptions) =>
    guarded(() => client.execute(query, params, execOptions), Date.now() + options.timeoutMs);
  /**
   * Every row of a read, page by page: `execute` returns only the driver's first page (fetchSize,
   * 5,000 rows), and a relay with more topics, sources of a topic or buckets than that read as if
   * the rest did not exist.
   */
  async function* rowsOf(query: string, params?: unknown[], first = exec(query, params)): AsyncGenerator<Row> {
    for (let result = await first; ;) {
      yield* result.rows;
      if (!result.pageState) return;
      result = await exec(query, params, { pageState: result.pageState });
    }
  }
  const execAll = async (query: string, params?: unknown[]): Promise<Row[]> => {
    const rows: Row[] = [];
    for await (const row of rowsOf(query, params)) rows.push(row);
    return rows;
  };
  /**
   * The statements of one append: at most `concurrency` in flight, and all of them tried again on
   * transient failures only until one deadline, so cassandra_timeout_ms bounds the append.
   */
  const appendIo = (deadline: number): Io => {
    const run = createLimiter(options.concurrency);
    const exec: Io['exec'] = (query, params, execOptions) =>
      run(() => guarded(() => client.execute(query, params, execOptions), deadline));
    const batch: Io['batch'] = (queries, execOptions) =>
      run(() => guarded(() => client.batch(queries, execOptions), deadline));
    const rows = createPartitionBatcher<HistoryRow>((group) =>
      group.length === 1
        ? exec(insertRow, (group[0] as HistoryRow).params, write)
        : batch(
            group.map((r) => ({ query: insertRow, params: r.params })),
            { ...write, logged: false },
          ),
    );
    const serialized = new Map<unknown, string>();
    const json = (data: unknown) => {
      let text = serialized.get(data);
      if (text === undefined) {
        text = JSON.stringify(data);
        serialized.set(data, text);
      }
      return text;
    };
    return { exec, batch, row: rows.write, json };
  };
  const lease =
    options.lease &&
    createNodeLease(
      { exec: (query, params) => guarded(() => client.execute(query, params, write), Date.now() + options.timeoutMs) },
      { keyspace: ks, ...options.lease },
    );
  /**
   * Set for good once another relay is found holding this node id at connect: nothing is written
   * then, and the lease is not tried again until the relay restarts (docs/storage.md). A take
   * waits out up to a lease's TTL, and every call would wait on it. Also set once the keyspace is
   * found recorded with another cassandra_bucket_ms: nothing is read or written with this one.
   */
  let refused: NodeIdInUseError | BucketSizeMismatchError | undefined;
  /** Another relay took this node id's lease while this one ran (cut off or paused past it). */
  const leaseTaken = () => {
    const problem = lease?.problem;
    return problem ? new NodeIdInUseError(problem) : undefined;
  };
  let connected: Promise<void> | undefined;
  /**
   * The largest write Cassandra takes (bytes), learned at connect and read again every
   * limitRefreshMs (kept in limitFile for the next start, which uses it until its own connect);
   * undefined when unknown.
   */
  let writeLimit: number | undefined = readLimitFile(options.limitFile);
  /**
   * A rejection when `e`'s largest write (its `latest` row, see WRITE_OVERHEAD_BYTES) cannot fit
   * writeLimit. Refused before any row of the append is written: Cassandra would refuse the larger
   * `latest` row while taking the history row (a message refused with too_large, yet in history),
   * or refuse the first row it met, and a retry of the whole append would meet it again.
   */
  const tooLargeToWrite = (e: Envelope, dataJson: string): StoreRejectedError | undefined => {
    if (writeLimit === undefined) return undefined;
    const size =
      utf8Length(dataJson) + 2 * (utf8Length(e.topic) + utf8Length(e.source)) + e.id.length + e.cursor.length;
    if (size + WRITE_OVERHEAD_BYTES <= writeLimit) return undefined;
    return new StoreRejectedError(
      'too_large',
      `message not stored: its data (${utf8Length(dataJson)} bytes) with its envelope is larger than Cassandra ` +
        `accepts in one write (${writeLimit} bytes: the smaller of native_transport_max_frame_size and ` +
        `max_mutation_size, by default half of commitlog_segment_size); keep max_message_bytes below ` +
        `${writeLimit - WRITE_OVERHEAD_BYTES}`,
      // Decided from its own size against a known limit, Cassandra not asked: about it alone.
      { certain: true },
    );
  };
  /** The last read of the write limit failed: a failure is logged once until a read succeeds. */
  let limitReadFailing = false;
  /** A read succeeded in this process: its limit was logged (with max_message_bytes against it). */
  let limitAnnounced = false;
  let limitReading = false;
  let limitTimer: ReturnType<typeof setInterval> | undefined;
  /** close() has begun (`closed` is set only after the lease's release): no refresh timer is made. */
  let closing = false;
  /**
   * Reads the write limit: at connect, then every limitRefreshMs while the store is open (one
   * try, one small query of a node-local table). The first limit read in this process, or one
   * changed since the last read, is logged and kept in limitFile; a read that failed for now keeps
   * the last limit known, and a cluster that answers it shows none (see limitNotShown) drops it.
   */
  const learnWriteLimit = async () => {
    let limit: number;
    try {
      limit = await readWriteLimit((query, params) => guarded(() => client.execute(query, params), 0));
    } catch (error) {
      if (closed) return;
      if (limitNotShown(error) && writeLimit !== undefined) {
        writeLimit = undefined;
        removeLimitFile(options.limitFile, options.log);
        limitReadFailing = false; // said below, with the limit now unknown
      }
      if (limitReadFailing) return;
      limitReadFailing = true;
      options.log?.warn(
        { err: error, write_limit_bytes: writeLimit },
        "could not read Cassandra's write limits (system_views.settings): " +
          (writeLimit === undefined
            ? 'only its own refusals tell a message too large for it'
            : `the last known (${writeLimit} bytes) stands`) +
          '; tried again later, and logged again only after a read succeeds',
      );
      return;
    }
    if (closed) return;
    limitReadFailing = false;
    const previous = writeLimit;
    writeLimit = limit;
    const first = !limitAnnounced;
    limitAnnounced = true;
    if (first || limit !== previous) {
      const largest = limit - WRITE_OVERHEAD_BYTES;
      const fields = {
        largest_data_bytes: largest,
        max_message_bytes: options.maxMessageBytes,
        ...(first ? {} : { write_limit_bytes: limit, previous_write_limit_bytes: previous }),
      };
      const changed = first ? '' : `Cassandra's write limit changed from ${previous} to ${limit} bytes. `;
      if (options.maxMessageBytes !== undefined && options.maxMessageBytes > largest) {
        options.log?.warn(
          fields,
          `${changed}max_message_bytes is larger than Cassandra takes in one write (native_transport_max_frame_size, ` +
            `max_mutation_size): a message of more than ${largest} bytes of data is refused with too_large; ` +
            `set max_message_bytes to ${largest} or less, or raise those Cassandra settings`,
        );
      } else {
        options.log?.info(
          fields,
          `${changed}Cassandra takes a message of at most this much data in one write (native_transport_max_frame_size, ` +
            'max_mutation_size): a larger one is refused with too_large; keep max_message_bytes below it',
        );
      }
    }
    writeLimitFile(options.limitFile, limit, options.log);
  };
  /** The timer's read: skipped while the last one is still out (a Cassandra slower than the interval). */
  const refreshWriteLimit = () => {
    if (limitReading || closed) return;
    limitReading = true;
    void learnWriteLimit().finally(() => {
      limitReading = false;
    });
  };
  const connect = () => {
    if (closed) return Promise.reject(new Error('store is closed'));
    if (refused) return Promise.reject(refused);
    ready ??= (async () => {
      connecting = true;
      connected = client.connect();
      await connected;
      await migrate(client, ks, options.replication);
      // Before anything is read or written: rows are found by bucket, so every relay on the
      // keyspace must use the size it was set up with.
      const bucketMs = await recordBucketMs(client, ks, options.bucketMs, write, undefined, (message) =>
        options.log?.warn({ keyspace: ks, cassandra_bucket_ms: options.bucketMs }, message),
      );
      if (bucketMs !== options.bucketMs) throw new BucketSizeMismatchError(ks, bucketMs, options.bucketMs);
      retainedMs(); // says so once if Cassandra's 20-year TTL cuts retention
      await learnWriteLimit();
      await lease?.take();
      live = true;
      const refreshMs = options.limitRefreshMs ?? LIMIT_REFRESH_MS;
      if (refreshMs > 0 && !closing) limitTimer ??= setInterval(refreshWriteLimit, refreshMs).unref();
    })()
      .catch((error: unknown) => {
        if (error instanceof NodeIdInUseError || error instanceof BucketSizeMismatchError) refused = error;
        ready = undefined; // try again on the next call
        connected = undefined;
        lastError = (error as Error).message;
        throw error;
      })
      .finally(() => {
        connecting = false;
      });
    if (live) return ready;
    const pending = ready;
    return new Promise<void>((resolve, reject) => {
      waits.add(reject);
      pending.then(resolve, reject).finally(() => waits.delete(reject));
    });
  };

  const claimParams = (e: Envelope) => [e.topic, claimShard(e.id), e.id, e.cursor, ttls(e.cursor).row];

  /** The history row of `e` (its one copy of the data), and the per-topic index rows once per process. */
  const writeRow = async (e: Envelope, io: Io) => {
    const bucket = bucketOf(e.cursor);
    const bucketKey = `${e.topic}\n${bucket}`;
    const data = io.json(e.data);
    const expiry = ttls(e.cursor);
    const writes: Promise<unknown>[] = [
      io.row({
        partition: bucketKey,
        // The data, plus the key, cursor, id and source columns and their cell overhead.
        bytes: Buffer.byteLength(data) + Buffer.byteLength(e.topic) + e.id.length + Buffer.byteLength(e.source) + 80,
        params: [e.topic, bucket, e.cursor, e.id, e.source, Long.fromNumber(e.ts), data, expiry.row],
      }),
    ];
    // Cassandra counts TTLs from the whole second: a row expires by now + its TTL, the index row
    // not before a second less than that.
    const writtenAt = Date.now();
    const rowExpiresAt = ttl === 0 ? 0 : writtenAt + expiry.row * 1000;
    const indexExpiresAt = ttl === 0 ? Infinity : writtenAt - 1000 + expiry.bucket * 1000;
    const indexed = !bucketKnown(bucketKey, rowExpiresAt);
    if (indexed) {
      writes.push(
        io.exec(
          `INSERT INTO ${ks}.topic_buckets (topic, bucket) VALUES (?, ?) USING TTL ?`,
          [e.topic, bucket, expiry.bucket],
          write,
        ),
      );
    }
    if (!knownTopics.has(e.topic)) {
      // The earliest cursor wins without a read or an LWT: its write time is the greatest.
      writes.push(
        io.exec(
          `INSERT INTO ${ks}.topic_first (topic, cursor) VALUES (?, ?) USING TIMESTAMP ?`,
          [e.topic, e.cursor, Long.fromNumber(Number.MAX_SAFE_INTEGER - cursorTime(e.cursor))],
          write,
        ),
      );
    }
    await Promise.all(writes);
    if (indexed && !bucketKnown(bucketKey, indexExpiresAt)) {
      knownBuckets.delete(bucketKey); // added again as the youngest, with this write's expiry
      knownBuckets.set(bucketKey, indexExpiresAt);
    }
    knownTopics.add(e.topic);
  };

  const readRow = async (topic: string, cursor: string, io: Io) => {
    const row = (await io.exec(selectRow, [topic, bucketOf(cursor), cursor])).first();
    return row ? rowToEnvelope(row) : undefined;
  };

  /**
   * Where `e` stands: the stored copy and whether this call stored it. `written` settles when
   * this call's writes are done (the caller awaits it before acknowledging anything).
   */
  type Resolved = AppendResult & { written: Promise<unknown> };
  const resolveRandom = async (e: Envelope, minted: boolean, io: Io): Promise<Resolved> => {
    // Minted once, with its cursor, by one node: every copy of it is the same row, so a plain
    // upsert is idempotent. Only a copy from elsewhere needs a look first, to answer `inserted`.
    const earlier = minted ? undefined : await readRow(e.topic, e.cursor, io);
    if (earlier) return { envelope: earlier, inserted: false, written: Promise.resolve() };
    return { envelope: e, inserted: true, written: writeRow(e, io) };
  };

  /** A content-addressed id after its claim: `claimed` is undefined when this call's claim applied. */
  const resolveClaimed = async (e: Envelope, claimed: Claimed | undefined, io: Io): Promise<Resolved> => {
    if (!claimed) return { envelope: e, inserted: true, written: writeRow(e, io) };
    // Claimed under this very cursor: a copy from elsewhere (gossip, catch-up, a spool drain), or
    // an earlier try of ours whose answer timed out. One read of the row tells which.
    const mine = claimed.topic === e.topic && claimed.cursor === e.cursor;
    // Another cursor won: its writer puts the row right after its claim. Wait for it as long as
    // a write may take (cassandra_timeout_ms) before concluding it died: completing it early
    // would make both relays report the message new (a second live delivery).
    const patience = Date.now() + options.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const stored = await readRow(claimed.topic, claimed.cursor, io);
      if (stored) return { envelope: stored, inserted: false, written: Promise.resolve() };
      if (mine || Date.now() >= patience) break;
      await new Promise((r) => setTimeout(r, Math.min(CLAIM_READ_GAP_MS * 2 ** attempt, 500)));
    }
    // The claim's writer died before its row (so nothing was acknowledged with it), or it was
    // us: complete it under the claimed cursor. The first copy anyone can read: it counts as new.
    const completed = { ...e, topic: claimed.topic, cursor: claimed.cursor };
    return { envelope: completed, inserted: true, written: writeRow(completed, io) };
  };

  /**
   * The claims of the content-addressed ids of one append: id → the claim that stands, undefined
   * where this call's claim applied (settled per claim partition). A content-addressed id (idempotency key) can reach the store
   * under two cursors (two relays, or one after a restart): a lightweight transaction decides
   * which cursor is it. Ids sharing a claim partition (topic, shard) are claimed together in one
   * conditional batch, one Paxos round for all of them (Cassandra allows conditions in a batch
   * only within one partition).
   */
  const claimAll = (keyed: readonly Envelope[], io: Io): Map<string, Promise<Claimed | undefined>> => {
    const partitions = new Map<string, Envelope[]>();
    for (const e of keyed) {
      const key = `${e.topic}\n${claimShard(e.id)}`;
      const group = partitions.get(key);
      if (group) group.push(e);
      else partitions.set(key, [e]);
    }
    const claims = new Map<string, Promise<Claimed | undefined>>();
    // Partitions in parallel, and each one's history rows go out as soon as its own claims are
    // settled; the batches of one partition one after another, since concurrent Paxos rounds on
    // one partition would only contend with each other.
    for (const group of partitions.values()) {
      const settled = new Map<string, Claimed | undefined>();
      const done = (async () => {
        for (let n = 0; n < group.length; n += CLAIMS_PER_BATCH) {
          await claimGroup(group.slice(n, n + CLAIMS_PER_BATCH), settled, io);
        }
      })();
      for (const e of group)
        claims.set(
          e.id,
          done.then(() => settled.get(e.id)),
        );
    }
    return claims;
  };

  /**
   * One partition's claims. A batch whose conditions do not all hold applies none of them and
   * returns the rows that stood in its way; the rest are claimed again without them (each round
   * settles at least one id, so this ends).
   */
  const claimGroup = async (group: readonly Envelope[], claims: Map<string, Claimed | undefined>, io: Io) => {
    let remaining = group;
    while (remaining.length > 0) {
      const batch = remaining;
      // A claim that timed out (Paxos contention, a replica lost) is tried again by io: its
      // outcome is unknown, and asking again either applies or shows who won, possibly us.
      const result =
        batch.length === 1
          ? await io.exec(claimRow, claimParams(batch[0] as Envelope), claimWrite)
          : await io.batch(
              batch.map((e) => ({ query: claimRow, params: claimParams(e) })),
              claimWrite,
            );
      if (result.rows.length === 0 || result.rows[0]?.['[applied]'] === true) {
        for (const e of batch) claims.set(e.id, undefined);
        return;
      }
      const standing = new Set<string>();
      for (const row of result.rows) {
        if (typeof row.id !== 'string') continue;
        claims.set(row.id, { topic: row.topic as string, cursor: row.cursor as string });
        standing.add(row.id);
      }
      if (standing.size === 0) throw new Error('conditional claim not applied, and no claim row returned');
      remaining = batch.filter((e) => !standing.has(e.id));
    }
  };

  /**
   * The newest of each (topic, source) in the batch, written once (USING TIMESTAMP = ts), with the
   * TTL of its history row (ttls(): retention_max_age_ms, capped as history is; none without it),
   * so a source's latest expires with its newest message instead of being served for ever. The
   * count limit (retention_max_messages) has no hold on it: the newest per source stays. A
   * duplicate (`inserted` false: its history row was written earlier) gets only what is left of
   * that row's TTL, counted from its cursor's time: with a full TTL from now, as before, the same
   * write timestamp let Cassandra keep the later expiry, and /latest served the message up to
   * another whole retention after history had dropped it.
   */
  const writeLatest = (stored: readonly { envelope: Envelope; inserted: boolean }[], io: Io) => {
    const newest = new Map<string, { envelope: Envelope; inserted: boolean }>();
    for (const r of stored) {
      const key = `${r.envelope.topic}\n${r.envelope.source}`;
      if (newerForLatest(r.envelope, newest.get(key)?.envelope)) newest.set(key, r);
    }
    const latestTtl = ({ envelope, inserted }: { envelope: Envelope; inserted: boolean }) => {
      const { row } = ttls(envelope.cursor);
      if (inserted || row === 0) return row;
      return Math.max(1, row - Math.floor(Math.max(0, Date.now() - cursorTime(envelope.cursor)) / 1000));
    };
    return [...newest.values()].map((r) =>
      io.exec(
        `INSERT INTO ${ks}.latest (topic, source, envelope) VALUES (?, ?, ?) USING TIMESTAMP ? AND TTL ?`,
        [
          r.envelope.topic,
          r.envelope.source,
          latestCell(r.envelope),
          Long.fromNumber(r.envelope.ts).multiply(1000),
          latestTtl(r),
        ],
        write,
      ),
    );
  };

  /** One append as it runs; `append` tells Cassandra's refusals for good from outages. */
  const appendAll: MessageStore['append'] = async (messages, appendOptions) => {
    await connect();
    // Its writes would overwrite the other relay's rows: none is made until the lease is back.
    const taken = leaseTaken();
    if (taken) throw taken;
    const io = appendIo(Date.now() + options.timeoutMs);
    for (const e of writeLimit === undefined ? [] : messages) {
      const refusal = tooLargeToWrite(e, io.json(e.data));
      if (refusal) throw refusal;
    }
    // A repeated id within one batch resolves to its first occurrence (input order), as in
    // every adapter, instead of racing its own lightweight transaction.
    const firstIndex = new Map<string, number>();
    messages.forEach((m, i) => {
      if (!firstIndex.has(m.id)) firstIndex.set(m.id, i);
    });
    const indices = [...firstIndex.values()];
    const pending: Promise<unknown>[] = [];
    const keyed = indices.map((i) => messages[i] as Envelope).filter((e) => !isRandomId(e.id));
    const claims = claimAll(keyed, io);
    const resolveOne = (e: Envelope, i: number) =>
      isRandomId(e.id)
        ? resolveRandom(e, appendOptions?.minted?.[i] === true, io)
        : (claims.get(e.id) as Promise<Claimed | undefined>).then((claimed) => resolveClaimed(e, claimed, io));
    const resolving = indices.map((i) =>
      resolveOne(messages[i] as Envelope, i).then((r) => {
        // Awaited below, maybe only after other claims: handled now, so an early failure is not "unhandled".
        r.written.catch(() => {});
        pending.push(r.written);
        return r;
      }),
    );
    const resolved = await Promise.all(resolving).catch(async (error: unknown) => {
      // Nothing of this call may still be running once it has failed (the spool retries it).
      await Promise.allSettled(resolving);
      await Promise.allSettled(pending);
      throw error;
    });
    // Rewritten for duplicates too: it repairs a latest row an interrupted earlier attempt missed
    // (with the TTL its history row has left, see writeLatest).
    await Promise.all([...pending, ...writeLatest(resolved, io)]);
    const results = new Map(resolved.map((r, n) => [(messages[indices[n] as number] as Envelope).id, r]));
    return messages.map((m, i) => {
      const { envelope, inserted } = results.get(m.id) as Resolved;
      return firstIndex.get(m.id) === i ? { envelope, inserted } : { envelope, inserted: false };
    });
  };

  return {
    kind: 'cassandra',

    get refusal() {
      return refused ?? leaseTaken();
    },

    tooLarge: (e) => (writeLimit === undefined ? undefined : tooLargeToWrite(e, JSON.stringify(e.data) ?? '')),

    // At start: with Cassandra reachable (connected within cassandra_timeout_ms), the schema, the
    // bucket size and the node id's lease are settled before the relay serves, and a relay whose
    // node id another relay holds, or whose cassandra_bucket_ms is not the keyspace's, does not
    // start. Unreachable, the relay starts anyway (its writes spool) and settles them when
    // Cassandra answers.
    async open() {
      const attempt = connect();
      attempt.catch(() => {});
      const reachable = connected
        ? await Promise.race([
            connected.then(
              () => true,
              () => false,
            ),
            new Promise<boolean>((resolve) => setTimeout(() => resolve(false), options.timeoutMs).unref()),
          ])
        : true; // refused already, or closed: `attempt` says which
      if (!reachable) return;
      try {
        await attempt;
      } catch (error) {
        if (error instanceof NodeIdInUseError || error instanceof BucketSizeMismatchError) throw error;
      }
    },

    async append(messages, appendOptions) {
      try {
        return await appendAll(messages, appendOptions);
      } catch (error) {
        if (ttl === 0 || expiryLimitS !== undefined || !isExpiryRefusal(error)) throw asRejection(error) ?? error;
        // Every TTL'd write would be refused alike (an outage to the spool, for good): from now on
        // rows expire by that date at the latest, and this append is tried again so.
        expiryLimitS = LEGACY_MAX_EXPIRY_S;
        retainedMs(); // logs the cut
      }
      try {
        return await appendAll(messages, appendOptions);
      } catch (error) {
        throw asRejection(error) ?? error;
      }
    },

    async history(topic, { after, limit, maxBytes }) {
      if (limit <= 0) return [];
      await connect();
      const slice = `SELECT * FROM ${ks}.messages WHERE topic = ? AND bucket = ? AND cursor > ? LIMIT ?`;
      const out: Envelope[] = [];
      let bytes = 0;
      const fetchSize = (want: number) => {
        if (maxBytes === undefined) return want;
        if (out.length === 0) return Math.min(want, FIRST_FETCH_ROWS);
        const fit = Math.ceil((maxBytes - bytes) / Math.max(1, bytes / out.length));
        return Math.max(1, Math.min(want, HISTORY_FETCH_ROWS, fit));
      };
      /** Adds one bucket's rows after `after`, fetch by fetch; false once the page is full. */
      const readBucket = async (bucket: cassandra.types.Long) => {
        const want = limit - out.length;
        let pageState: string | undefined;
        do {
          const fetch = { fetchSize: fetchSize(want), ...(pageState === undefined ? {} : { pageState }) };
          const result = await exec(slice, [topic, bucket, after ?? '', want], fetch);
          for (const row of result.rows) {
            if (maxBytes !== undefined) {
              bytes += utf8Length(row.data as string);
              if (out.length > 0 && bytes > maxBytes) return false;
            }
            out.push(rowToEnvelope(row));
            if (out.length >= limit) return false;
          }
          pageState = result.pageState ?? undefined;
        } while (pageState !== undefined);
        return true;
      };
      // A resume usually ends in the bucket of its cursor: read that slice and the list of later
      // buckets at once, so a read that fits one bucket costs one round trip, as a raw read does.
      const first = after === undefined ? undefined : bucketOf(after);
      // The list's first page only: later ones are read as the page needs them.
      const buckets = `SELECT bucket FROM ${ks}.topic_buckets WHERE topic = ? AND bucket > ?`;
      const bucketParams = [topic, first ?? Long.fromNumber(Number.MIN_SAFE_INTEGER)];
      const later = exec(buckets, bucketParams);
      later.catch(() => {}); // awaited below unless the first slice is enough
      if (first !== undefined && !(await readBucket(first))) return out;
      for await (const { bucket } of rowsOf(buckets, bucketParams, later)) {
        if (!(await readBucket(bucket as cassandra.types.Long))) break;
      }
      return out;
    },

    async latest(topic, query) {
      await connect();
      if (!query) {
        const rows = await execAll(`SELECT source, envelope FROM ${ks}.latest WHERE topic = ?`, [topic]);
        return Object.fromEntries(rows.map((r) => [r.source as string, JSON.parse(r.envelope as string)]));
      }
      // `source` is the partition's clustering column (ascending): a page is a slice after
      // `after`, fetched a few rows at a time as history is (see fetchSize there), so a read holds
      // about one fetch past `maxBytes` rather than `limit` envelopes of up to a message each.
      const { limit, maxBytes } = query;
      const slice = `SELECT source, envelope FROM ${ks}.latest WHERE topic = ? AND source > ? LIMIT ?`;
      const out: [string, Envelope][] = [];
      let bytes = 0;
      let pageState: string | undefined;
      do {
        const fit =
          out.length === 0 ? FIRST_FETCH_ROWS : Math.ceil(((maxBytes ?? 0) - bytes) / Math.max(1, bytes / out.length));
        const want = limit - out.length;
        const fetchSize = maxBytes === undefined ? want : Math.max(1, Math.min(want, HISTORY_FETCH_ROWS, fit));
        const fetch = { fetchSize, ...(pageState === undefined ? {} : { pageState }) };
        const result = await exec(slice, [topic, query.after ?? '', limit], fetch);
        for (const row of result.rows) {
          if (maxBytes !== undefined) {
            // The whole cell (data and the envelope around it): measured before it is parsed.
            bytes += utf8Length(row.envelope as string);
            if (out.length > 0 && bytes > maxBytes) return Object.fromEntries(out);
          }
          out.push([row.source as string, JSON.parse(row.envelope as string) as Envelope]);
          if (out.length >= limit) return Object.fromEntries(out);
        }
        pageState = result.pageState ?? undefined;
      } while (pageState !== undefined);
      return Object.fromEntries(out);
    },

    async topics() {
      await connect();
      const rows = await execAll(`SELECT DISTINCT topic FROM ${ks}.topic_buckets`);
      return rows.map((r) => r.topic as string).sort();
    },

    async trimmedThrough(topic) {
      if (ttl === 0) return undefined;
      await connect();
      const first = (await exec(`SELECT cursor FROM ${ks}.topic_first WHERE topic = ?`, [topic])).first();
      const now = Date.now();
      const horizon = now - retainedMs(now);
      if (!first || cursorTime(first.cursor as string) >= horizon) return undefined;
      // Messages minted before the horizon have expired (or are about to): a cursor below it has a gap.
      return cursorFloor(horizon);
    },

    // The topics retention emptied too: their buckets' index rows expire with their messages (so
    // `topics` leaves them out), but `topic_first` has no TTL. Each topic whose first cursor is
    // older than the horizon is trimmed through it, as trimmedThrough says. One read of the table
    // (topics() reads topic_buckets' partitions the same way).
    async trimmedTopics(after) {
      const marks = new Map<string, string>();
      if (ttl === 0) return marks;
      const now = Date.now();
      const horizon = now - retainedMs(now);
      // Every mark is the horizon: none is past a cursor minted since, so no read (a pattern
      // resume from a recent cursor, the usual one, costs nothing here).
      if (after !== undefined && cursorTime(after) >= horizon) return marks;
      await connect();
      const rows = await execAll(`SELECT topic, cursor FROM ${ks}.topic_first`);
      const mark = cursorFloor(horizon);
      for (const row of rows) {
        if (cursorTime(row.cursor as string) < horizon) marks.set(row.topic as string, mark);
      }
      return marks;
    },

    async sweep() {
      return 0; // Cassandra expires messages by TTL
    },

    async health(): Promise<StoreHealth> {
      // Each Cassandra node as the driver sees it (the dashboard's cluster view shows them).
      const nodesSeen = () =>
        client.hosts.values().map((host) => ({ address: host.address, datacenter: host.datacenter, up: host.isUp() }));
      const leaseProblem = refused?.message ?? lease?.problem;
      if (leaseProblem) return { ok: false, detail: leaseProblem, keyspace: ks, nodes: nodesSeen(), retried };
      try {
        await connect();
        // One try: health answers now, as things are (a status page polls it).
        await guarded(() => client.execute('SELECT release_version FROM system.local'), 0);
        lastError = undefined;
        return {
          ok: true,
          keyspace: ks,
          hosts: client.getState().getConnectedHosts().length,
          nodes: nodesSeen(),
          retried,
          ...(lastRetried ? { last_retried: lastRetried } : {}),
        };
      } catch (error) {
        lastError = (error as Error).message;
        return { ok: false, detail: lastError, keyspace: ks, nodes: nodesSeen(), retried };
      }
    },

    async close() {
      closing = true;
      clearInterval(limitTimer);
      const deadline = Date.now() + (options.closeTimeoutMs ?? Math.min(options.timeoutMs, 5_000));
      let timer: ReturnType<typeof setTimeout> | undefined;
      /** How `work` ended: done, failed, or still running at the deadline. */
      const within = async (work: Promise<unknown>): Promise<'done' | 'failed' | 'late'> => {
        const late = new Promise<'late'>((resolve) => {
          timer = setTimeout(() => resolve('late'), Math.max(0, deadline - Date.now()));
        });
        const ended = await Promise.race([
          work.then(
            () => 'done' as const,
            () => 'failed' as const,
          ),
          late,
        ]);
        clearTimeout(timer);
        return ended;
      };
      // Given up while the client still runs (a clean stop lets a successor take it at once).
      // Not released, whether Cassandra did not answer in time or the driver gave up on it at
      // once (its host marked down): either way a successor waits for the TTL.
      const released = lease ? await within(lease.release()) : 'done';
      if (released !== 'done') {
        options.log?.warn(
          { lease_s: options.lease?.leaseS ?? LEASE_S, release: released },
          released === 'late'
            ? 'Cassandra did not answer the release of this node id’s lease in time; it expires on its own after its TTL'
            : 'the release of this node id’s lease failed; it expires on its own after its TTL',
        );
      }
      closed = true;
      for (const abort of waits) abort(new Error('store is closed'));
      waits.clear();
      while (inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      if (connecting) {
        // The driver cannot cut a connect short, and one still in flight would open pools after a
        // shutdown now and keep the process alive: the client is shut down once it settles.
        void ready?.catch(() => {}).then(() => client.shutdown().catch(() => {}));
        options.log?.warn('closed while connecting to Cassandra; the client shuts down when the connect ends');
        return;
      }
      if ((await within(client.shutdown())) === 'late')
        options.log?.warn('Cassandra client not shut down in time; closed anyway');
    },
  };
}
