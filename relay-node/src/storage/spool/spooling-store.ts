import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  type AppendResult,
  dataBytes,
  type Envelope,
  type MessageStore,
  type StoreHealth,
  UnavailableError,
  takePage,
} from '@anode/shared';
import type { Logger } from '../../logger.ts';
import { ensurePrivateFile, PRIVATE_DIR_MODE } from '../../private-files.ts';
import { mergeLatest, mergePage } from '../merge-page.ts';
import { isStoreRejection } from '../store-rejected.ts';
import { writeFailureMemory } from '../embedded/sqlite-schema.ts';
import { openSpoolFile } from './spool-file.ts';

/**
 * A durable local spool in front of a remote store (Cassandra). While the remote store accepts
 * writes, appends go straight to it. When an append fails, the batch is committed to a SQLite
 * queue in the data folder instead (fsynced, so the ack still means durable), and a drainer
 * replays the queue into the remote store, in order, until it is empty; until then new appends
 * queue behind it. Reads need the remote store: while it is away they fail with `unavailable`.
 *
 * Duplicates while spooling (the degraded part of the MessageStore contract): an id already in
 * the spool, or among the last RECENT_IDS ids the remote store returned (fewer when their data
 * pass RECENT_BYTES), is answered with that copy and `inserted: false`, as the remote store
 * would. An id stored remotely before that window cannot be seen while the remote store is
 * away: it is acknowledged as new, with the new cursor; the drain then keeps the first copy (the
 * remote store dedups by id), so history holds it once, but live subscribers saw it twice under
 * one id (clients drop the second by id).
 *
 * History and topics, when the remote store answers, include what waits in the spool (merged by
 * cursor), so this node's resumes and the peers catching up from it see every message it acked.
 *
 * A write the remote store refuses for good (StoreRejectedError: e.g. a mutation past Cassandra's
 * size limit) is not an outage: a publish is refused with it, not spooled. While the spool takes
 * publishes without asking the store (it holds messages, or the store is away), one the store
 * already knows it cannot take (`tooLarge`: Cassandra's size check against the limits it read at
 * connect) is refused the same way: acked, it would be moved aside at the drain, never in history.
 * A spooled one the store refuses (queued behind an outage before the store could say no, or
 * knew its limits) would fail every drain and hold everything behind it until the spool filled,
 * so the drain sends the rows of a refused batch one by one and moves the one refused alone to
 * the `spool_rejected` table of the spool file (logged with its topic, id and the reason, counted
 * in health and by onRejected), then goes on. It stays there for an operator; it was acked and
 * delivered live, but history will not hold it. A refusal the store made from the row's own size
 * against a limit it knows (`certain`) moves the row aside at once. Rows refused otherwise (the
 * backend's own answer) one after another with none stored between them (REFUSED_IN_A_ROW) are
 * not moved: a refusal that meets every row is the store's, so the drain stops as in an outage
 * and keeps them.
 *
 * Another relay holding this node id (`node_id_in_use`, as `refusal` tells) refuses
 * publishes here too, spool or not: spooled, they would be acked under cursors the other relay
 * mints too. What the spool holds stays in its file, undrained (the store refuses the drain),
 * and drains if this relay gets its lease back (Cassandra: a lease lost while running is taken
 * back by renewing; one found taken at the first connect only by a restart). So does a keyspace
 * written with another `cassandra_bucket_ms` (`bucket_size_mismatch`), until a restart with its size.
 */
/** While the store stays down: at most one line this often (the first failure logs its stack). */
export const OUTAGE_LOG_MS = 30_000;

export interface SpoolOptions {
  dataDir: string;
  drainIntervalMs: number;
  /**
   * Most bytes of envelopes the spool holds (spool_max_bytes). A long outage would otherwise fill
   * the data folder's disk, and the relay's other files (leases, sources) with it: past this,
   * publishes are refused (`unavailable`) and what the spool holds stays until it drains.
   */
  maxBytes?: number;
  log: Logger;
  onDepth?: (depth: number) => void;
  /**
   * Why the remote store refuses every write of this node now (Cassandra: another relay took
   * this node id), or undefined. While it says so, appends are refused with it, not spooled.
   */
  refusal?: () => Error | undefined;
  /** Messages held in `spool_rejected` (refused for good by the store while draining). */
  onRejected?: (held: number) => void;
  /**
   * The store's refusal of this message for its size, when it already knows the store cannot take
   * it (Cassandra: against the limits read at connect), else undefined; synchronous, asks nothing.
   * Asked only for appends the spool would take without the store (it holds messages, or the store
   * is away): they are refused with it instead of acked.
   */
  tooLarge?: (message: Envelope) => Error | undefined;
}

export interface SpoolingStore extends MessageStore {
  readonly spoolDepth: number;
  /** Resolves when the spool is empty (or rejects after `timeoutMs`). */
  drained(timeoutMs?: number): Promise<void>;
}

/**
 * One drain append: at most DRAIN_ROWS rows and DRAIN_BYTES of envelopes (one row past it at most,
 * and always one). By count alone, 500 spooled messages of up to 16 MiB each were read into memory
 * at once and sent as one append, which Cassandra need not finish within cassandra_timeout_ms: the
 * same batch then failed and was tried again for as long as the relay ran.
 */
export const DRAIN_ROWS = 500;
export const DRAIN_BYTES = 4 * 1024 * 1024;

/**
 * Spooled rows refused for good one after another, with none stored between them, that stop the
 * drain as an outage instead of being moved aside: refusals that meet row after row are more
 * likely the store's (a schema change not yet everywhere, a misconfiguration) than every message's
 * own, and moved aside they would leave history for good. Not counted: refusals the store made
 * from a row's own size against a limit it knows (StoreRejectedError.certain), moved aside at once.
 */
export const REFUSED_IN_A_ROW = 5;

/**
 * Refusals of every write that stand until an operator acts, not outages: another relay holds
 * this node id (the store's NodeIdInUseError), or this relay's cassandra_bucket_ms is not the one
 * its keyspace was written with (BucketSizeMismatchError). Spooled, a publish would be acked and
 * then never drained.
 */
const STANDING_REFUSALS = new Set(['node_id_in_use', 'bucket_size_mismatch']);
const standingRefusal = (error: unknown) =>
  STANDING_REFUSALS.has((error as { code?: unknown } | undefined)?.code as string);

/**
 * Longest health() waits for the remote store's own check before it answers with the last one it
 * got. That check connects first, and a Cassandra that drops packets answers neither for
 * cassandra_timeout_ms (or longer): /healthz and /v1/status waited as long on every call.
 */
export const HEALTH_WAIT_MS = 1_000;

/** Ids (with their stored copies) remembered from the remote store, to answer duplicates while it is away. */
export const RECENT_IDS = 4_096;
/**
 * Most data (serialized `data` bytes) the remembered copies hold: by count alone, 4,096 messages
 * of up to 16 MiB (max_message_bytes) were gigabytes kept alive for the relay's whole life.
 */
export const RECENT_BYTES = 32 * 1024 * 1024;

/** A spool row as the drain reads it (`minted` is null in rows spooled before the column). */
interface SpooledRow {
  seq: number;
  envelope: string;
  minted: number | null;
}

export function createSpoolingStore(primary: MessageStore, options: SpoolOptions): SpoolingStore {
  // Owner-only, as the embedded store's file: it holds every message acked while Cassandra is
  // away (securePrivateDir tightens it only at the next start). Its -wal and -shm take its mode.
  mkdirSync(options.dataDir, { recursive: true, mode: PRIVATE_DIR_MODE });
  ensurePrivateFile(join(options.dataDir, 'spool.sqlite'));
  const db = openSpoolFile(join(options.dataDir, 'spool.sqlite'));
  const keepRejected = db.prepare(
    'INSERT OR REPLACE INTO spool_rejected (seq, id, topic, cursor, envelope, reason, rejected_at) ' +
      'SELECT seq, id, topic, cursor, envelope, ?, ? FROM spool WHERE seq = ?',
  );
  const removeOne = db.prepare('DELETE FROM spool WHERE seq = ?');
  let rejectedHeld = Number((db.prepare('SELECT COUNT(*) AS n FROM spool_rejected').get() as { n: number }).n);
  const push = db.prepare(
    'INSERT INTO spool (id, envelope, topic, cursor, source, ts, minted) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  // The newest spooled row per source of a topic, by the stores' rule (ts, then id): index seeks
  // from one source to the next (a window over every row of the topic took ~0.5 s at 300,000).
  const nextSource = db.prepare('SELECT source FROM spool WHERE topic = ? AND source > ? ORDER BY source LIMIT 1');
  const newestOf = db.prepare(
    'SELECT envelope FROM spool WHERE topic = ? AND source = ? ORDER BY ts DESC, id DESC LIMIT 1',
  );
  // The sources after `after`, at most `limit` (the most a page of that many can take of them).
  const spooledLatest = (topic: string, after = '', limit = Infinity) => {
    const rows: { envelope: string }[] = [];
    for (let source = after; rows.length < limit;) {
      const next = nextSource.get(topic, source) as { source: string } | undefined;
      if (!next) return rows;
      source = next.source;
      rows.push(newestOf.get(topic, source) as { envelope: string });
    }
    return rows;
  };
  const spooledLatestOld = db.prepare('SELECT envelope FROM spool WHERE topic = ? AND source IS NULL');
  const spooledAfter = db.prepare('SELECT envelope FROM spool WHERE topic = ? AND cursor > ? ORDER BY cursor LIMIT ?');
  /** Spooled messages of a topic after a cursor, parsed one by one as a page takes them. */
  function* spooledRows(topic: string, after: string, limit: number): Generator<Envelope> {
    for (const row of spooledAfter.iterate(topic, after, limit) as Iterable<{ envelope: string }>)
      yield JSON.parse(row.envelope) as Envelope;
  }
  const spooledTopics = db.prepare('SELECT DISTINCT topic FROM spool WHERE topic IS NOT NULL');
  const spooled = db.prepare('SELECT envelope FROM spool WHERE id = ? ORDER BY seq LIMIT 1');
  const recent = new Map<string, { envelope: Envelope; bytes: number }>();
  let recentBytes = 0;
  const forget = (id: string) => {
    recentBytes -= recent.get(id)?.bytes ?? 0;
    recent.delete(id);
  };
  const remember = (results: readonly AppendResult[], minted: readonly boolean[] | undefined) => {
    results.forEach(({ envelope }, i) => {
      if (minted?.[i] && /^r/.test(envelope.id)) return; // a fresh random id is never sent again
      forget(envelope.id);
      const bytes = dataBytes(envelope);
      recent.set(envelope.id, { envelope, bytes });
      recentBytes += bytes;
    });
    for (const id of recent.keys()) {
      if (recent.size <= RECENT_IDS && recentBytes <= RECENT_BYTES) break;
      forget(id);
    }
  };
  const peek = db.prepare('SELECT seq, envelope, minted FROM spool WHERE seq > ? ORDER BY seq LIMIT ?');
  const remove = db.prepare('DELETE FROM spool WHERE seq <= ?');
  const count = db.prepare(
    'SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(CAST(envelope AS BLOB))), 0) AS bytes FROM spool',
  );
  const held = count.get() as { n: number; bytes: number };
  let depth = Number(held.n);
  /** Bytes of the envelopes in the spool (UTF-8), against maxBytes. */
  let spooledBytes = Number(held.bytes);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let draining: Promise<void> | undefined;
  let closed = false;
  let lastError: string | undefined;
  const refusal = () => options.refusal?.();
  /**
   * The store's refusal of a message of `messages` it already knows it cannot take (see
   * SpoolOptions.tooLarge): the whole append is refused, as the store refuses it (the hub's writer
   * halves a batch down to the one publish).
   */
  const tooLarge = (messages: readonly Envelope[]): Error | undefined => {
    if (!options.tooLarge) return undefined;
    for (const m of messages) {
      const refused = options.tooLarge(m);
      if (refused) return refused;
    }
    return undefined;
  };
  let refusedLogged = false;
  let checking: Promise<StoreHealth> | undefined;
  let lastHealth: StoreHealth | undefined;

  let fullLogged = false;
  /** The last batch the spool was asked to take did not fit (publishes are refused): health says so. */
  let refusingFull = false;
  /** The last write the spool's file could not take (publishes were refused), as the embedded store keeps its own. */
  const spoolFailure = writeFailureMemory();
  const spoolFull = (adding: number) => {
    refusingFull = true;
    const error = new UnavailableError(
      `storage is unavailable and the local spool is full (${spooledBytes} bytes held, ${adding} more would pass ` +
        `spool_max_bytes ${options.maxBytes}); message not accepted, the spool drains when the store is back`,
    );
    // Once per outage: every refused publish would otherwise log it.
    if (!fullLogged) options.log.error({ depth, bytes: spooledBytes, max_bytes: options.maxBytes }, 'spool is full');
    fullLogged = true;
    return error;
  };

  const setDepth = (n: number) => {
    depth = n;
    options.onDepth?.(n);
  };

  const spool = (messages: readonly Envelope[], minted: readonly boolean[] | undefined): AppendResult[] => {
    const results: AppendResult[] = [];
    const batch = new Map<string, Envelope>();
    let added = 0;
    db.exec('BEGIN IMMEDIATE');
    try {
      for (const [i, m] of messages.entries()) {
        const row = spooled.get(m.id) as { envelope: string } | undefined;
        const earlier =
          batch.get(m.id) ?? recent.get(m.id)?.envelope ?? (row && (JSON.parse(row.envelope) as Envelope));
        if (earlier) {
          results.push({ envelope: earlier, inserted: false });
          continue;
        }
        const json = JSON.stringify(m);
        added += Buffer.byteLength(json);
        // The whole batch or none of it (rolled back below): what the spool holds stays.
        if (options.maxBytes !== undefined && spooledBytes + added > options.maxBytes) throw spoolFull(added);
        push.run(m.id, json, m.topic, m.cursor, m.source, m.ts, minted?.[i] ? 1 : 0);
        batch.set(m.id, m);
        results.push({ envelope: m, inserted: true });
      }
      db.exec('COMMIT');
    } catch (error) {
      if (db.isTransaction) db.exec('ROLLBACK'); // a failed COMMIT (a full disk) rolled back already
      // The file refused it (not spool_max_bytes, which says so itself): health says so too.
      if (!(error instanceof UnavailableError)) spoolFailure.failed(error);
      throw error;
    }
    spooledBytes += added;
    refusingFull = false;
    spoolFailure.taken();
    setDepth(depth + batch.size);
    schedule();
    return results;
  };

  /** A spooled row the store refuses for good: kept aside in spool_rejected, out of the drain's way. */
  const moveAside = (row: SpooledRow, error: Error) => {
    const envelope = JSON.parse(row.envelope) as Envelope;
    db.exec('BEGIN IMMEDIATE');
    try {
      keepRejected.run(error.message, Date.now(), row.seq);
      removeOne.run(row.seq);
      db.exec('COMMIT');
    } catch (failure) {
      if (db.isTransaction) db.exec('ROLLBACK'); // a failed COMMIT (a full disk) rolled back already
      throw failure;
    }
    spooledBytes = Math.max(0, spooledBytes - Buffer.byteLength(row.envelope));
    setDepth(Math.max(0, depth - 1));
    rejectedHeld += 1;
    options.onRejected?.(rejectedHeld);
    options.log.error(
      { topic: envelope.topic, id: envelope.id, cursor: envelope.cursor, reason: error.message, left: depth },
      'the store refuses a spooled message for good; moved to spool_rejected, the drain goes on',
    );
  };

  const drainOnce = async () => {
    // Rows through this seq go one at a time: their batch was refused for good, and only the
    // refused rows themselves may be moved aside.
    let singlyThrough = 0;
    // Rows refused one by one since the last row stored: they stay in the spool (the drain reads
    // past them) until a stored row, or the spool's end, shows the refusals were theirs alone.
    let refused: { row: SpooledRow; error: Error }[] = [];
    const setRefusedAside = () => {
      for (const { row, error } of refused) moveAside(row, error);
      refused = [];
    };
    while (!closed) {
      const rows: SpooledRow[] = [];
      let bytes = 0;
      for (const row of peek.iterate(refused.at(-1)?.row.seq ?? 0, DRAIN_ROWS) as Iterable<SpooledRow>) {
        const size = Buffer.byteLength(row.envelope);
        if (rows.length > 0 && (bytes + size > DRAIN_BYTES || row.seq <= singlyThrough)) break;
        rows.push(row);
        bytes += size;
      }
      const last = rows.at(-1);
      if (!last) {
        setRefusedAside();
        return;
      }
      const minted = rows.map((r) => r.minted === 1);
      const results = await primary
        .append(
          rows.map((r) => JSON.parse(r.envelope) as Envelope),
          { minted },
        )
        .catch((error: unknown) => {
          if (!isStoreRejection(error)) throw error;
          if (rows.length > 1) singlyThrough = last.seq;
          // The store's own size check: about this row alone for certain, whatever came before.
          // Neither counted in the run below nor ending it (the store was not asked).
          else if (error.certain) moveAside(last, error);
          else if (refused.push({ row: last, error }) >= REFUSED_IN_A_ROW) {
            throw new Error(
              `the store refused ${refused.length} spooled messages in a row and stored none between them: ` +
                `taken as an outage, the spool keeps them (${error.message})`,
              { cause: error },
            );
          }
          return undefined;
        });
      if (!results) continue;
      setRefusedAside();
      remember(results, minted);
      remove.run(last.seq);
      spooledBytes = Math.max(0, spooledBytes - bytes);
      fullLogged = false;
      refusingFull = false;
      setDepth(Math.max(0, depth - rows.length));
      // Already stored before the outage, out of sight of the spool (see above): kept once.
      const known = results.filter((r) => !r.inserted).length;
      options.log.info({ moved: rows.length, left: depth, already_stored: known }, 'spool drained into the store');
    }
  };

  // A store that stays down fails a drain every drainIntervalMs: its stack once, then one short
  // line per OUTAGE_LOG_MS with how many attempts failed since (not a stack trace every second).
  let outage = { failures: 0, loggedAt: 0, logged: 0 };
  function logStillDown(error: unknown) {
    outage.failures += 1;
    const now = Date.now();
    if (outage.failures === 1) {
      options.log.warn({ err: error, depth }, 'store still unavailable; spool kept (retrying quietly)');
    } else if (now - outage.loggedAt >= OUTAGE_LOG_MS) {
      const since = outage.failures - outage.logged;
      options.log.warn({ error: (error as Error).message, depth, failed_attempts: since }, 'store still unavailable');
    } else return;
    outage.loggedAt = now;
    outage.logged = outage.failures;
  }

  function schedule(delay = options.drainIntervalMs) {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      // One drain at a time: a spool() during a drain scheduled another, and two drainers
      // appended the same rows (idempotent, but each logged and paid for it; seen in chaos).
      if (draining) return schedule();
      draining = drainOnce()
        .then(() => {
          refusedLogged = false;
          if (lastError) options.log.info({ failed_attempts: outage.failures }, 'store is back; spool empty');
          lastError = undefined;
          outage = { failures: 0, loggedAt: 0, logged: 0 };
        })
        .catch((error: unknown) => {
          lastError = (error as Error).message;
          if (standingRefusal(error)) {
            // Not an outage: said once, as every drain is refused until this relay has its lease
            // back (or is started with its keyspace's bucket size).
            if (!refusedLogged) options.log.error({ err: error, depth }, 'the store refuses every write; spool kept');
            refusedLogged = true;
          } else logStillDown(error);
          schedule();
        })
        .finally(() => {
          draining = undefined;
        });
    }, delay);
    timer.unref();
  }

  if (depth > 0) schedule(0);
  options.onDepth?.(depth);
  options.onRejected?.(rejectedHeld);

  const trimmedTopics = primary.trimmedTopics?.bind(primary);
  const read = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (error) {
      throw new UnavailableError('storage is unavailable for reads; live delivery continues', { cause: error });
    }
  };

  return {
    kind: primary.kind,
    open: async () => primary.open?.(),
    get spoolDepth() {
      return depth;
    },

    async append(messages, appendOptions) {
      if (depth > 0) {
        const refused = refusal() ?? tooLarge(messages);
        if (refused) throw refused;
        return spool(messages, appendOptions?.minted); // keep order: nothing overtakes the spool
      }
      try {
        const results = await primary.append(messages, appendOptions);
        remember(results, appendOptions?.minted);
        // The store took a write: what last failed (another relay's lease on this node id) is over,
        // unless a write that failed after this one began has spooled meanwhile: the drain clears
        // it then (and logs the store back), not an append that was already on its way.
        if (depth === 0) lastError = undefined;
        spoolFailure.taken(); // publishes are taken again
        return results;
      } catch (error) {
        // Refused for good (see above): spooled, it would only block the spool behind it. The
        // publisher is told; it says nothing of the store, so it is no last_error (it stayed in
        // the status for as long as the store kept answering).
        if (isStoreRejection(error)) throw error;
        lastError = (error as Error).message;
        // Not an outage (STANDING_REFUSALS): another relay mints under this node id, or the
        // keyspace was written with another bucket size. Spooled, the publish would be acked and
        // never drained, so it is refused.
        if (standingRefusal(error)) throw error;
        // Not asked before (it serializes every message's data): the store's own append checks it
        // once connected, and reached none of that when it failed as an outage.
        const oversized = tooLarge(messages);
        if (oversized) throw oversized;
        options.log.warn({ err: error, messages: messages.length }, 'store unavailable; spooling writes locally');
        return spool(messages, appendOptions?.minted);
      }
    },

    // History includes what waits in the spool: a resume, or a peer catching up from this node,
    // must not move past a message this node acked and delivered live but has not drained yet
    // (the Cassandra chaos run lost such messages at subscribers that resumed meanwhile). The
    // spool is read first: a message drained meanwhile is in the store when the store is read.
    async history(topic, query) {
      const waiting =
        depth > 0 && query.limit > 0
          ? takePage(spooledRows(topic, query.after ?? '', query.limit + 1), query, dataBytes)
          : { page: [], cut: false };
      return mergePage(await read(() => primary.history(topic, query)), waiting, query);
    },
    // Latest too: a message this node acked must not look older than the one before it.
    async latest(topic, query) {
      const rows =
        depth > 0
          ? [
              ...spooledLatest(topic, query?.after, query?.limit),
              ...(spooledLatestOld.all(topic) as { envelope: string }[]),
            ]
          : [];
      return mergeLatest(
        await read(() => primary.latest(topic, query)),
        rows.map((row) => JSON.parse(row.envelope) as Envelope),
        query,
      );
    },
    async topics() {
      const waiting = depth > 0 ? (spooledTopics.all() as { topic: string }[]).map((row) => row.topic) : [];
      const stored = await read(() => primary.topics());
      return waiting.length === 0 ? stored : [...new Set([...stored, ...waiting])];
    },
    trimmedThrough: (topic) => read(() => primary.trimmedThrough(topic)),
    // Only the remote store trims (the spool holds what it has not got yet, never trimmed).
    ...(trimmedTopics ? { trimmedTopics: (after?: string) => read(() => trimmedTopics(after)) } : {}),
    sweep: (now, counts) => primary.sweep(now, counts),

    async health(): Promise<StoreHealth> {
      // One check at a time; callers meanwhile get the last answer (or "no answer yet").
      checking ??= primary
        .health()
        .catch((error: unknown): StoreHealth => ({ ok: false, detail: (error as Error).message }))
        .then((answer) => (lastHealth = answer))
        .finally(() => {
          checking = undefined;
        });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const waited = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), HEALTH_WAIT_MS);
      });
      const fresh = await Promise.race([checking, waited]);
      clearTimeout(timer);
      // Not answering is not "connected", whatever the last answer said.
      const inner = fresh ?? {
        ...lastHealth,
        ok: false,
        detail: `the store's health check has not answered within ${HEALTH_WAIT_MS} ms`,
      };
      const refused = refusal();
      // The last publish the spool was asked to take did not fit, and nothing was spooled or
      // drained since: publishes are refused until the store is back.
      const full = refusingFull
        ? `the local spool is full (${spooledBytes} bytes held, spool_max_bytes ${options.maxBytes}) and ` +
          'refuses publishes until it drains'
        : undefined;
      // The spool's file refused a write lately (a full disk): publishes are refused meanwhile.
      // Reported as ok, it kept a load balancer sending them here.
      const lastFailure = spoolFailure.recent();
      const failed =
        lastFailure === undefined ? undefined : `the local spool could not take the last write: ${lastFailure}`;
      const down = refused?.message ?? full ?? failed;
      return {
        ...inner,
        // Writes are still durable (spooled), so the node stays healthy; the state says degraded.
        // Not when they are refused (another relay holds this node id, the spool is full, or its
        // file could not take the last write).
        ok: down === undefined,
        ...(down ? { detail: down } : {}),
        state: depth > 0 ? 'spooling' : inner.ok ? 'connected' : 'unreachable',
        spool_depth: depth,
        spool_bytes: spooledBytes,
        ...(rejectedHeld > 0 ? { spool_rejected: rejectedHeld } : {}),
        ...(lastError ? { last_error: lastError } : {}),
      };
    },

    async drained(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (depth > 0) {
        if (Date.now() > deadline) throw new Error(`spool still holds ${depth} messages after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },

    async close() {
      closed = true;
      clearTimeout(timer);
      // The store first: its close is bounded, and fails a drain still waiting on it (a drain of
      // a silent Cassandra waited out cassandra_timeout_ms here). Rows it had not removed drain
      // again at the next start (the store dedups by id).
      await primary.close();
      await draining;
      db.close();
    },
  };
}
