import { compareCursors, type Envelope, isLateArrival, lateReplaySince } from '@anode/shared';
import { latestQuery, openSchema } from './hub-schema.ts';
import { mergeByCursor } from './pages.ts';

/**
 * A TopicHub's own storage, in its SQLite database:
 * - `ring`: the newest RING_SIZE messages this Durable Object fanned out (accepted here or
 *   received from the mesh), keyed by cursor. `floor` is the cursor below which the ring is not
 *   complete: a resume from a cursor at or above it is served from the ring, an older one from a
 *   relay's history. Trimming the ring raises the floor; so does a relay link that restarts
 *   without catching up.
 * - `outbox`: messages accepted here (acked to their publisher) that no relay has stored yet.
 * - `keyed`: id and cursor of the newest KEYED_MEMORY content-addressed messages (a publish
 *   with a key), so a republish is deduplicated after the first copy left the ring and outbox.
 * - `trimmed`: id and cursor of the newest messages the ring let go (TRIMMED_MEMORY).
 * - `late_kept`: late arrivals the ring let go, kept for the resumes that replay them (lateFor),
 *   as a relay keeps its late arrivals: for LATE_WINDOW_MS, at most LATE_MEMORY of them and
 *   LATE_MAX_BYTES of bodies (PROTOCOL.md's bounds).
 * - `meta`: the topic, the clock, the link's resume point, the range of cursors unsafe to resume
 *   from (`expired_from`/`expired_through`: a link gap, a heard log past its bound) and the public
 *   origin.
 * Writes are synchronous; the runtime's output gate holds every frame sent after a write until
 * the write is durable, so an ack never outruns its message. Messages are read lazily (a SQL
 * cursor, row by row): a caller stops at its own bound (pages.ts) without loading the rest.
 */
export interface StoredMessage {
  envelope: Envelope;
  /** The message as a JSON object (a `msg` frame is this with `"op":"msg",` spliced in). */
  body: string;
}

export const msgFrame = (body: string): string => `{"op":"msg",${body.slice(1)}`;

/**
 * Ids (and cursors) of the newest messages the ring let go, at least this many: a relay that
 * sends one of them again (its rewind of 5 s after a restart, a late-arrival replay, an echo of
 * the edge's own publish) is recognised as had, not taken for a late arrival below the floor
 * (which is kept and replayed to the resumes that may have missed it, and sent live again).
 */
const TRIMMED_MEMORY = 10_000;

/** How long a late arrival the ring let go stays replayable: a relay's late-arrival window. */
const LATE_WINDOW_MS = 10 * 60_000;
/** Bodies of late arrivals kept past the ring, at most (as a relay's LATE_MAX_BYTES). */
const LATE_MAX_BYTES = 32 * 1024 * 1024;
/** How often kept late arrivals past LATE_WINDOW_MS are looked for (not on every trim). */
const LATE_SWEEP_MS = 60_000;

type Row = Record<string, SqlStorageValue>;

export function createHubStore(
  storage: DurableObjectStorage,
  memory: { ringSize: number; keyedMemory: number; lateMemory: number },
) {
  const { ringSize, keyedMemory, lateMemory } = memory;
  const sql = storage.sql;
  openSchema((query) => sql.exec<{ name: string }>(query).toArray());
  /** For queries of a row or a few (counts, LIMIT 1); messages are read with `messages`. */
  const rows = <T extends Row>(query: string, ...bindings: unknown[]) => sql.exec<T>(query, ...bindings).toArray();
  const parse = (row: { body: string }): StoredMessage => ({
    envelope: JSON.parse(row.body) as Envelope,
    body: row.body,
  });
  /** Stored messages, one row at a time: the query runs when the first is asked for. */
  function* messages(query: string, ...bindings: unknown[]): Generator<StoredMessage> {
    for (const row of sql.exec<{ body: string }>(query, ...bindings)) yield parse(row);
  }
  function* outboxRows(fromSeq: number): Generator<StoredMessage & { seq: number }> {
    const query = 'SELECT seq, body FROM outbox WHERE seq > ? ORDER BY seq';
    for (const row of sql.exec<{ seq: number; body: string }>(query, fromSeq)) yield { seq: row.seq, ...parse(row) };
  }
  /**
   * The newest message of each source in a table (by ts, then id: newerForLatest), for the sources
   * after `after`, in source order (SQLite compares UTF-8 bytes, as the relay's stores do; source
   * names are ASCII). The rows are walked lazily in the order of the table's latest index
   * (hub-schema.ts), source and id only: the first row of each source is its winner, and only
   * winners' bodies are read, as each is taken, so a page that stops early reads no further.
   */
  function* latestIn(table: 'ring' | 'outbox', after = ''): Generator<StoredMessage> {
    let previous: string | undefined;
    for (const { source, id } of sql.exec<{ source: string; id: string }>(latestQuery(table), after)) {
      if (source === previous) continue;
      previous = source;
      const row = rows<{ body: string }>(`SELECT body FROM ${table} WHERE id = ?`, id)[0];
      if (row) yield parse(row);
    }
  }
  const ringFrom = (after: string) => messages('SELECT body FROM ring WHERE cursor > ? ORDER BY cursor', after);
  const outboxFrom = (after: string) => messages('SELECT body FROM outbox WHERE cursor > ? ORDER BY cursor', after);
  /**
   * Late arrivals a subscriber resuming from `after` may have missed (the relay's rule): in the
   * ring, or let go by it and kept (late_kept, within LATE_WINDOW_MS of now, swept only once a
   * minute; a cursor is in one table or the other), newest first. Their cursors are found first
   * (no bodies: the sort holds cursors only), then each body is read as it is taken: a resume
   * takes the newest that fit its share and reads one past them at most, not every late row (a
   * review's repro read 1,000 rows of 100 KB to send 41). `count`: how many there are; `cursors`:
   * theirs, newest first.
   */
  const lateFor = (after: string) => {
    const cursors = rows<{ cursor: string }>(
      `SELECT cursor FROM (SELECT cursor FROM ring WHERE late = 1 AND arrived_at >= ? AND cursor <= ?
         UNION ALL SELECT cursor FROM late_kept WHERE arrived_at >= ? AND cursor <= ?) ORDER BY cursor DESC`,
      lateReplaySince(after),
      after,
      Math.max(lateReplaySince(after), Date.now() - LATE_WINDOW_MS),
      after,
    );
    function* newestFirst(): Generator<StoredMessage> {
      for (const { cursor } of cursors) {
        const row =
          rows<{ body: string }>('SELECT body FROM ring WHERE cursor = ?', cursor)[0] ??
          rows<{ body: string }>('SELECT body FROM late_kept WHERE cursor = ?', cursor)[0];
        if (row) yield parse(row);
      }
    }
    return { count: cursors.length, cursors: cursors.map((row) => row.cursor), newestFirst: newestFirst() };
  };

  const since = (after: string): Generator<StoredMessage> => mergeByCursor(ringFrom(after), outboxFrom(after));

  const meta = {
    get(key: string): string | undefined {
      return rows<{ value: string }>('SELECT value FROM meta WHERE key = ?', key)[0]?.value;
    },
    set(key: string, value: string): void {
      sql.exec(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
        key,
        value,
      );
    },
    delete(key: string): void {
      sql.exec('DELETE FROM meta WHERE key = ?', key);
    },
  };

  // `rowsWritten` counts index rows too; `changes()` counts the table's.
  const changes = () => rows<{ n: number }>('SELECT changes() AS n')[0]?.n ?? 0;
  let ringCount = rows<{ n: number }>('SELECT COUNT(*) AS n FROM ring')[0]?.n ?? 0;
  let trimmedCount = rows<{ n: number }>('SELECT COUNT(*) AS n FROM trimmed')[0]?.n ?? 0;
  // From the index (arrived_at, cursor, bytes): a wake reads no kept body.
  const lateKept = rows<{ n: number; bytes: number }>(
    'SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS bytes FROM late_kept',
  )[0] ?? { n: 0, bytes: 0 };
  let lateCount = lateKept.n;
  let lateBytes = lateKept.bytes;

  const trim = () => {
    if (ringCount <= ringSize) return;
    const boundary = rows<{ cursor: string }>(
      'SELECT cursor FROM ring ORDER BY cursor DESC LIMIT 1 OFFSET ?',
      ringSize,
    )[0];
    if (!boundary) return;
    sql.exec(
      'INSERT OR IGNORE INTO trimmed (id, cursor) SELECT id, cursor FROM ring WHERE cursor <= ?',
      boundary.cursor,
    );
    trimmedCount += changes();
    keepLate(boundary.cursor);
    sql.exec('DELETE FROM ring WHERE cursor <= ?', boundary.cursor);
    ringCount -= changes();
    raiseFloor(boundary.cursor);
    trimmedCount -= keepNewest('trimmed', trimmedCount, Math.max(TRIMMED_MEMORY, ringSize));
  };

  /**
   * Trimming goes by cursor, so a late arrival (kept so that a resume from a cursor handed out
   * before it arrived replays it: lateFor) went among the first, and that resume was answered
   * `subscribed` without it (a review's repro). It moves to late_kept instead, where lateFor still
   * finds it. (Refusing those resumes instead, cursor_expired from its cursor up to now, refused
   * nearly every resume of a topic published on both sides of a link, where late arrivals are the
   * rule.) One statement per trim (RETURNING says what moved). Bytes are the stored message's
   * UTF-8 bytes, envelope and all (a relay counts its data alone): the edge lets go a little
   * sooner.
   */
  const keepLate = (boundary: string) => {
    // `+late`: look the rows up by cursor (the few being trimmed), not every late row in the ring.
    const moved = rows<{ bytes: number }>(
      `INSERT OR IGNORE INTO late_kept (cursor, id, arrived_at, bytes, body)
         SELECT cursor, id, arrived_at, length(CAST(body AS BLOB)), body FROM ring WHERE cursor <= ? AND +late = 1
         RETURNING bytes`,
      boundary,
    );
    if (moved.length === 0) return;
    lateCount += moved.length;
    for (const row of moved) lateBytes += row.bytes;
    forgetLate(Date.now());
  };

  /**
   * As a relay forgets its late arrivals (PROTOCOL.md): past LATE_WINDOW_MS (looked for once a
   * minute), and the oldest past LATE_MEMORY or LATE_MAX_BYTES, down to nine tenths of the bound
   * so the scan is paid once per many arrivals. A resume is not replayed what went: the bounds
   * are the contract's, the same at a relay. (Refusing the resumes that would have replayed them
   * refused, once a busy topic overflowed, every resume from the first overflow on.)
   */
  let sweptAt = 0;
  const forgetLate = (now: number) => {
    if (now - sweptAt >= LATE_SWEEP_MS) {
      sweptAt = now;
      const old = rows<{ n: number; bytes: number | null }>(
        'SELECT COUNT(*) AS n, SUM(bytes) AS bytes FROM late_kept WHERE arrived_at < ?',
        now - LATE_WINDOW_MS,
      )[0];
      if (old && old.n > 0) {
        sql.exec('DELETE FROM late_kept WHERE arrived_at < ?', now - LATE_WINDOW_MS);
        lateCount -= old.n;
        lateBytes -= old.bytes ?? 0;
      }
    }
    if (lateCount <= lateMemory && lateBytes <= LATE_MAX_BYTES) return;
    // Down to the bounds themselves, the newest kept, as a relay keeps them (late-arrivals.ts): a
    // cut to 90% kept 9 of 10, and nothing at all at LATE_MEMORY=1 (the arrival just kept went
    // too). Past the bounds by one insert, this reads and deletes one row.
    const [keepCount, keepBytes] = [lateMemory, LATE_MAX_BYTES];
    let last: { cursor: string; arrived_at: number } | undefined;
    const query = 'SELECT cursor, arrived_at, bytes FROM late_kept ORDER BY arrived_at, cursor';
    for (const row of sql.exec<{ cursor: string; arrived_at: number; bytes: number }>(query)) {
      if (lateCount <= keepCount && lateBytes <= keepBytes) break;
      last = row;
      lateCount -= 1;
      lateBytes -= row.bytes;
    }
    if (!last) return;
    // One range delete up to the last row let go, in the index's order.
    sql.exec(
      'DELETE FROM late_kept WHERE arrived_at < ? OR (arrived_at = ? AND cursor <= ?)',
      last.arrived_at,
      last.arrived_at,
      last.cursor,
    );
  };

  /**
   * Cut a table of ids by cursor back to its newest `keep` rows once it holds a tenth more (so a
   * cut's cost is spread over many writes); returns how many rows went.
   */
  const keepNewest = (table: 'keyed' | 'trimmed', count: number, keep: number): number => {
    if (count <= keep + Math.ceil(keep / 10)) return 0;
    const boundary = rows<{ cursor: string }>(
      `SELECT cursor FROM ${table} ORDER BY cursor DESC LIMIT 1 OFFSET ?`,
      keep,
    )[0];
    if (!boundary) return 0;
    sql.exec(`DELETE FROM ${table} WHERE cursor <= ?`, boundary.cursor);
    return changes();
  };

  const floor = () => meta.get('floor') ?? '0';
  const raiseFloor = (cursor: string) => {
    if (compareCursors(cursor, floor()) > 0) meta.set('floor', cursor);
  };

  // Content-addressed ids (a publish with a key) outlive the ring: a republish long after the
  // first copy left it still gets the stored id and cursor, as on a relay (whose store keeps it).
  let keyedCount = rows<{ n: number }>('SELECT COUNT(*) AS n FROM keyed')[0]?.n ?? 0;
  const rememberKey = (envelope: Envelope) => {
    if (!envelope.id.startsWith('k')) return;
    sql.exec('INSERT OR IGNORE INTO keyed (id, cursor) VALUES (?, ?)', envelope.id, envelope.cursor);
    keyedCount += changes();
    keyedCount -= keepNewest('keyed', keyedCount, keyedMemory);
  };

  const newest = (): string | undefined =>
    rows<{ cursor: string }>('SELECT cursor FROM ring ORDER BY cursor DESC LIMIT 1')[0]?.cursor;

  /**
   * Where the topic stands: the newest message in the ring, or the floor when it is empty, or the
   * cursor through which the link lost its place if that is higher. A fresh subscription starts
   * here: anything arriving later with a cursor at or below it is marked late (below), so a resume
   * from it replays that too. The object's clock ran ahead of relay messages still on their way,
   * and a fresh `sub` answered with it skipped them on resume.
   */
  const position = (): string => {
    let at = newest() ?? floor();
    if (compareCursors(floor(), at) > 0) at = floor();
    const through = meta.get('expired_through');
    return through !== undefined && compareCursors(through, at) > 0 ? through : at;
  };

  /**
   * The newest cursor a resume from the relay's history sent a client (this instance's memory, as
   * the resume is): a message arriving below it is late for that client, as below anything the
   * ring holds. A relay page can hand a client a cursor above everything here; a message that
   * arrived below it afterwards went into the ring in order, and a resume from that cursor, served
   * from the ring, never sent it (a review: a client whose connection dropped during its resume).
   * Kept in `meta` too (saveHanded, once per relay page), so an object evicted and woken still
   * knows it (a review: after a wake, a message published here below it was in order again).
   */
  let handed: string | undefined = meta.get('handed');
  let handedSaved = handed;
  /** Add a message to the ring (false when it is there already, or below the floor). */
  const remember = (envelope: Envelope, body: string, now = Date.now()): boolean => {
    rememberKey(envelope);
    if (compareCursors(envelope.cursor, floor()) <= 0) return false;
    const through = meta.get('expired_through');
    const latest = newest();
    let reference =
      through !== undefined && (latest === undefined || compareCursors(through, latest) > 0) ? through : latest;
    if (handed !== undefined && (reference === undefined || compareCursors(handed, reference) > 0)) reference = handed;
    const late = isLateArrival(envelope.cursor, reference, now);
    sql.exec(
      'INSERT OR IGNORE INTO ring (cursor, id, body, arrived_at, late) VALUES (?, ?, ?, ?, ?)',
      envelope.cursor,
      envelope.id,
      body,
      now,
      late ? 1 : 0,
    );
    const written = changes();
    ringCount += written;
    trim();
    return written > 0;
  };

  /** The cursor a stored message with this id has: in the ring, the outbox, the keyed or the trimmed ids. */
  const cursorOf = (id: string): string | undefined =>
    (id.startsWith('k')
      ? rows<{ cursor: string }>('SELECT cursor FROM keyed WHERE id = ?', id)[0]?.cursor
      : undefined) ??
    rows<{ cursor: string }>('SELECT cursor FROM ring WHERE id = ?', id)[0]?.cursor ??
    rows<{ cursor: string }>('SELECT cursor FROM outbox WHERE id = ?', id)[0]?.cursor ??
    rows<{ cursor: string }>('SELECT cursor FROM trimmed WHERE id = ?', id)[0]?.cursor;

  /**
   * From now on this message is a late arrival, so a resume from a cursor at or above it replays it
   * (lateFor: at or below `after`, arrived since shortly before `after` was minted), within the
   * late-arrival bounds: one a resume heard but did not send below where it left its client (cut
   * for its budget, or dropped by a later `sub`), or one from the mesh below the ring's floor
   * (receive). In the ring it is marked there; let go by the ring, or never in it, it is kept in
   * late_kept.
   */
  const markLate = (envelope: Envelope, body: string, now = Date.now()): void => {
    sql.exec('UPDATE ring SET late = 1, arrived_at = ? WHERE cursor = ? AND id = ?', now, envelope.cursor, envelope.id);
    if (changes() > 0) return;
    sql.exec('UPDATE late_kept SET arrived_at = ? WHERE cursor = ? AND id = ?', now, envelope.cursor, envelope.id);
    if (changes() > 0) return;
    const kept = rows<{ bytes: number }>(
      `INSERT OR IGNORE INTO late_kept (cursor, id, arrived_at, bytes, body)
         VALUES (?, ?, ?, length(CAST(? AS BLOB)), ?) RETURNING bytes`,
      envelope.cursor,
      envelope.id,
      now,
      body,
      body,
    );
    if (kept.length === 0) return;
    lateCount += 1;
    lateBytes += (kept[0] as { bytes: number }).bytes;
    forgetLate(now);
  };

  /**
   * A message from the mesh: false when it is had (our own publish coming back, or a repeat), and
   * is not to be fanned out again. One with a cursor at or below the ring's floor (the ring let go
   * of that time, or the link restarted past it) is a late arrival for every cursor handed out at
   * or above it, and is kept as one (markLate), as a relay keeps its late arrivals: a resume from
   * such a cursor replays it, whether served from the ring or from the relay's history. (It used
   * to widen the expired range instead: a resume from the relay's history that heard one while it
   * paged ended in `cursor_expired` after the pages it had sent, and every resume from a cursor
   * above it was refused, where a relay replays it.)
   */
  const receive = (envelope: Envelope, body: string, now = Date.now()): boolean => {
    if (cursorOf(envelope.id) !== undefined) return false;
    // Kept as a late arrival already (a relay's rewind or late replay sends it again): had, not
    // sent live again, and its 10 minutes not restarted.
    if (rows('SELECT 1 FROM late_kept WHERE cursor = ? AND id = ?', envelope.cursor, envelope.id).length > 0)
      return false;
    if (!remember(envelope, body, now) && compareCursors(envelope.cursor, floor()) <= 0) markLate(envelope, body, now);
    return true;
  };

  // Counted once per wake, then kept here: `wanted()` and the link's timers ask on every publish.
  let outboxCount = rows<{ n: number }>('SELECT COUNT(*) AS n FROM outbox')[0]?.n ?? 0;

  return {
    meta,
    floor,
    raiseFloor,
    newest,
    position,
    remember,

    /** A resume sent a client this cursor (see `handed`). */
    noteHanded(cursor: string): void {
      if (handed === undefined || compareCursors(cursor, handed) > 0) handed = cursor;
    },

    /** Write `handed` down if it moved (see `handed`). */
    saveHanded(): void {
      if (handed === undefined || handed === handedSaved) return;
      meta.set('handed', handed);
      handedSaved = handed;
    },

    /**
     * The cursors handed out before the relay link lost its place (the relay refused its resume as
     * `cursor_expired`): after `from` (the refused point; older ones the relay judges) and below
     * `through`. A resume from one may have missed what the relay could no longer send.
     */
    expired(): { from: string; through: string } | undefined {
      const from = meta.get('expired_from');
      const through = meta.get('expired_through');
      return from === undefined || through === undefined ? undefined : { from, through };
    },

    /** Record a gap (hub-core, when the link loses its place): the range only widens. */
    expire(from: string | undefined, through: string): void {
      const old = meta.get('expired_from');
      const lower = from ?? old ?? '0';
      if (old === undefined || compareCursors(lower, old) < 0) meta.set('expired_from', lower);
      const top = meta.get('expired_through');
      if (top === undefined || compareCursors(through, top) > 0) meta.set('expired_through', through);
    },

    markLate,
    cursorOf,
    receive,

    /**
     * The late arrivals a subscriber resuming from `after` may have missed, as far as this edge
     * holds them (cursor at or before `after`, arrived since shortly before `after` was minted:
     * the relay's rule), newest first, read as they are taken; then `since(after)` holds the
     * rest. A resume at or above the floor is answered with these alone; one from the relay's
     * history ends with them.
     */
    lateFor,

    /** The ring after `after`, in cursor order, read lazily (history at or above the floor). */
    ringFrom,

    /**
     * The ring and the unforwarded publishes after `after` (a resume must see those even if the
     * ring let them go), in cursor order, each once, read lazily.
     */
    since,

    /**
     * The newest message of each source in the ring (the whole topic, standing alone), for the
     * sources after `after`, in source order, read lazily.
     */
    latestInRing: (after?: string) => latestIn('ring', after),

    /** Accept a message published here: into the ring and the outbox, in one transaction. */
    accept(envelope: Envelope, body: string, forward: boolean): void {
      let queued = 0;
      storage.transactionSync(() => {
        remember(envelope, body);
        if (forward) {
          sql.exec(
            'INSERT OR IGNORE INTO outbox (id, cursor, body) VALUES (?, ?, ?)',
            envelope.id,
            envelope.cursor,
            body,
          );
          queued = changes();
        }
        meta.set('clock', envelope.cursor);
      });
      outboxCount += queued; // counted once the transaction committed
    },

    outbox: {
      size: () => outboxCount,
      /** Waiting messages with seq above `fromSeq`, oldest first, read lazily. */
      after: outboxRows,
      /** The newest waiting message of each source after `after`, in source order, read lazily. */
      latest: (after?: string) => latestIn('outbox', after),
      remove(ids: readonly string[]): void {
        for (const id of ids) {
          sql.exec('DELETE FROM outbox WHERE id = ?', id);
          outboxCount -= changes();
        }
      },
    },

    stats() {
      return {
        ring: ringCount,
        floor: floor(),
        outbox: outboxCount,
        keyed: keyedCount,
        late: lateCount,
        bytes: sql.databaseSize,
      };
    },
  };
}

export type HubStore = ReturnType<typeof createHubStore>;
