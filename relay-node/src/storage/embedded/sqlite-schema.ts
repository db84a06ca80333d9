import { DatabaseSync } from 'node:sqlite';
import type { Envelope } from '@anode/shared';

/**
 * The embedded store's file: its schema, migrations and settings, shared by the store's reading
 * connection and its writer thread (and the publish benchmark's floor).
 */
const SCHEMA_VERSION = 2;

const MIGRATIONS: Record<number, string> = {
  1: `
    CREATE TABLE messages (
      id TEXT PRIMARY KEY,
      topic TEXT NOT NULL,
      cursor TEXT NOT NULL,
      source TEXT NOT NULL,
      ts INTEGER NOT NULL,
      data TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX messages_by_topic_cursor ON messages (topic, cursor);
    CREATE TABLE latest (
      topic TEXT NOT NULL,
      source TEXT NOT NULL,
      id TEXT NOT NULL,
      cursor TEXT NOT NULL,
      ts INTEGER NOT NULL,
      data TEXT NOT NULL,
      PRIMARY KEY (topic, source)
    ) WITHOUT ROWID;
    CREATE TABLE topics (
      topic TEXT PRIMARY KEY,
      count INTEGER NOT NULL DEFAULT 0,
      trimmed_through TEXT
    ) WITHOUT ROWID;
  `,
  // A pattern resume asks for the topics trimmed past its cursor (trimmedTopics): without an
  // index that read every topic ever seen (1,000,000 rows: 2.7-4.7 s, on the event loop).
  2: `
    CREATE INDEX topics_by_trimmed ON topics (trimmed_through) WHERE trimmed_through IS NOT NULL;
  `,
};

/**
 * The age sweep deletes a topic's latest rows older than retention_max_age_ms by cursor: without
 * this index each sweep read every latest row of every topic. Created outside the numbered
 * migrations, so the schema version stays 2: a relay from before reads and writes a file that has
 * it (an extra index changes no row), where a version 3 made it refuse the file (schema_too_new)
 * and advise starting empty.
 */
const LATEST_BY_CURSOR = 'latest_by_cursor';

export type Row = { id: string; topic: string; cursor: string; source: string; ts: number; data: string };

export const toEnvelope = (row: Row): Envelope => ({
  id: row.id,
  topic: row.topic,
  cursor: row.cursor,
  source: row.source,
  ts: Number(row.ts),
  data: JSON.parse(row.data),
});

/**
 * The file settings. Checkpoints run every 10,000 WAL pages (~40 MiB) rather than SQLite's 1,000:
 * each one copies pages back and syncs the file, and random message ids spread a batch over many
 * pages, so at 1,000 checkpoints took most of the time of a commit here; fewer write each hot
 * page once. The WAL is cut back to 64 MiB after a checkpoint. On a small disk the writer thread
 * checkpoints sooner (walPolicy).
 */
export const sqlitePragmas = (fsync: boolean): string =>
  `PRAGMA journal_mode = WAL; PRAGMA synchronous = ${fsync ? 'FULL' : 'NORMAL'}; ` +
  `PRAGMA wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}; PRAGMA journal_size_limit = 67108864; PRAGMA busy_timeout = 5000;`;

/** WAL pages between two checkpoints, on a disk of 640 MiB or more (see sqlitePragmas). */
export const WAL_CHECKPOINT_PAGES = 10_000;

/**
 * How the writer thread keeps a full disk from stopping writes for good, for a disk of
 * `diskBytes` (its whole size, used or not) and the database's page size:
 * - `checkpointPages`: the WAL is checkpointed once it holds this many pages: a 16th of the disk,
 *   at most WAL_CHECKPOINT_PAGES (so on a disk of 640 MiB or more, as before). A single-message
 *   commit logs ~30 KB; on a 6 MiB disk, 10,000 pages let the log alone fill it while retention
 *   kept the data at 300 KB.
 * - `reserveBytes`: the size of the reserve file (`messages.sqlite-reserve`), a 16th of the disk,
 *   at most 4 MiB. On a full disk no checkpoint can run while the database file must grow to take
 *   the log's new pages (nor can retention, which needs log room to delete): the thread then
 *   deletes the reserve, checkpoints (which empties the log) and tries the write again. It covers
 *   the growth of one checkpoint interval on a disk under 64 MiB; on larger ones, a database that
 *   grew by more than 4 MiB since its last checkpoint when the disk filled still needs an operator.
 */
export function walPolicy(diskBytes: number, pageSize: number): { checkpointPages: number; reserveBytes: number } {
  const sixteenth = Math.floor(diskBytes / 16);
  return {
    checkpointPages: Math.max(16, Math.min(WAL_CHECKPOINT_PAGES, Math.floor(sixteenth / pageSize))),
    reserveBytes: Math.max(pageSize, Math.min(4 * 1024 * 1024, sixteenth - (sixteenth % pageSize))),
  };
}

/**
 * A SQLite error's primary result code (its extended code's low byte: SQLITE_BUSY_RECOVERY is
 * SQLITE_BUSY), or undefined for an error that is not SQLite's.
 */
export const sqlitePrimaryCode = (error: unknown): number | undefined => {
  const errcode = (error as { errcode?: unknown } | undefined)?.errcode;
  return typeof errcode === 'number' ? errcode & 0xff : undefined;
};

/** SQLite's primary result code for a full disk (or max_page_count reached). */
const SQLITE_FULL = 13;

/** Whether a SQLite error says the disk (or max_page_count) is full. */
export const diskFull = (error: unknown): boolean => sqlitePrimaryCode(error) === SQLITE_FULL;

/** SQLite's primary result code for a lock another connection holds (its write lock, here). */
const SQLITE_BUSY = 5;

/** Whether a SQLite error says another connection holds the lock it needed. */
export const lockHeld = (error: unknown): boolean => sqlitePrimaryCode(error) === SQLITE_BUSY;

/**
 * After a write a store's file could not take (a full disk, an I/O error), health says not ok for
 * this long, so a load balancer sends publishes elsewhere; then ok again, to be tried.
 */
export const WRITE_FAILURE_MS = 10_000;

/**
 * The last write a store's file could not take, for health: its message while it is recent
 * (WRITE_FAILURE_MS) and no write was taken since. The embedded store's and the spool's.
 */
export function writeFailureMemory() {
  let last: { message: string; at: number } | undefined;
  return {
    failed(error: unknown): void {
      last = { message: (error as Error).message, at: Date.now() };
    },
    taken(): void {
      last = undefined;
    },
    recent(): string | undefined {
      return last && Date.now() - last.at < WRITE_FAILURE_MS ? last.message : undefined;
    },
  };
}

/** Whether a SQLite error says the file is damaged (SQLITE_CORRUPT, 11) or is not SQLite's (SQLITE_NOTADB, 26). */
export const fileDamaged = (error: unknown): boolean => {
  const primary = sqlitePrimaryCode(error);
  return primary === 11 || primary === 26;
};

/** Open the file (or `:memory:`) with the store's settings. */
/** `maxPages`: SQLite's max_page_count, for tests (writes past it fail as on a full disk). */
export function openDatabase(path: string, fsync: boolean, maxPages?: number): DatabaseSync {
  const db = new DatabaseSync(path);
  try {
    db.exec(sqlitePragmas(fsync));
    if (maxPages !== undefined) db.exec(`PRAGMA max_page_count = ${Math.floor(maxPages)}`);
    return db;
  } catch (error) {
    db.close(); // a damaged file fails here, and its connection stayed open
    throw error;
  }
}

/**
 * A file a newer relay migrated past SCHEMA_VERSION (a relay downgraded): this one would read its
 * rows by an older meaning and write rows the newer one misreads, so it is refused before any
 * read or write. Code `schema_too_new`; the store puts the file's path before the message.
 */
export class SchemaTooNewError extends Error {
  readonly code = 'schema_too_new';
  readonly fileVersion: number;
  readonly knownVersion = SCHEMA_VERSION;
  constructor(fileVersion: number) {
    super(
      `the file is at schema version ${fileVersion}, and this relay knows up to schema version ` +
        `${SCHEMA_VERSION}: a newer version of anode wrote it, and this one does not open it, so as not ` +
        'to misread or damage its messages. To go on with them, start that version again; to run this ' +
        'version, stop the relay and move the file aside (with any messages.sqlite-wal and ' +
        'messages.sqlite-shm beside it; this version then starts with an empty store), or put back a ' +
        'backup made before the upgrade',
    );
    this.name = 'SchemaTooNewError';
    this.fileVersion = fileVersion;
  }
}

/** `log`: where the store says it is adding the latest index (seconds on a large file). */
export function migrate(db: DatabaseSync, log?: { info?(fields: object, message: string): void }): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null };
  if (row.v !== null && row.v > SCHEMA_VERSION) throw new SchemaTooNewError(row.v);
  for (let version = (row.v ?? 0) + 1; version <= SCHEMA_VERSION; version++) {
    db.exec('BEGIN');
    db.exec(MIGRATIONS[version] ?? '');
    db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(version);
    db.exec('COMMIT');
  }
  const present = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?").get(LATEST_BY_CURSOR);
  if (!present) {
    // Measured here: 2.8 s for 1,000,000 latest rows, 9.3 s for 3,000,000, before the store opens.
    // Said only of a file with rows: on a new store it read as a warning at a user's first start.
    if (db.prepare('SELECT 1 FROM latest LIMIT 1').get()) {
      log?.info?.({ index: LATEST_BY_CURSOR }, 'adding an index on latest: may take seconds on a large file');
    }
    db.exec(`CREATE INDEX IF NOT EXISTS ${LATEST_BY_CURSOR} ON latest (topic, cursor)`);
  }
}
