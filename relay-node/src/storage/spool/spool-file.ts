import { DatabaseSync } from 'node:sqlite';
import { fileDamaged } from '../embedded/sqlite-schema.ts';

/**
 * The spool file's layout version, in SQLite's `user_version`. 1: the `spool` table with its id,
 * topic, cursor, source, ts and minted columns, and `spool_rejected`. A file from before the
 * version (user_version 0) has that layout, or an older one that openSpoolFile brings up to it,
 * and is marked 1. A change of the tables raises it, with a step from the version before, so a
 * relay can tell a file laid out by a newer one (a relay downgraded) and leave it alone.
 */
export const SPOOL_VERSION = 1;

/**
 * A spool file a newer relay laid out past SPOOL_VERSION (a relay downgraded): this one would read
 * its rows by an older meaning and drain or write rows the newer one misreads, so it is refused
 * before any read of its tables or any write. Code `schema_too_new`, as the embedded store's
 * SchemaTooNewError; openSpoolFile puts the file's path before the message.
 */
export class SpoolTooNewError extends Error {
  readonly code = 'schema_too_new';
  readonly fileVersion: number;
  readonly knownVersion = SPOOL_VERSION;
  constructor(fileVersion: number) {
    super(
      `the spool file is at version ${fileVersion}, and this relay knows up to spool version ` +
        `${SPOOL_VERSION}: a newer version of anode wrote it, and this one does not open it, so as not to ` +
        'misread or damage the messages it holds (acked while Cassandra was away, maybe not in Cassandra ' +
        'yet). To go on with them, start that version again and let its spool drain (store.spool_depth 0 ' +
        'in /v1/status); to run this version then, stop the relay and move the file aside (with any ' +
        'spool.sqlite-wal and spool.sqlite-shm beside it, keeping it: its spool_rejected table may hold ' +
        'messages moved aside); this version then starts with an empty spool',
    );
    this.name = 'SpoolTooNewError';
    this.fileVersion = fileVersion;
  }
}

/**
 * Open the spool's file and bring its tables up to date, or fail naming it: SQLite's own message
 * ("file is not a database") did not say which file, nor that it holds acked messages.
 */
export function openSpoolFile(path: string): DatabaseSync {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path);
    // First, before any write (the journal mode included): a newer relay's file is left as it is.
    const { user_version: version } = db.prepare('PRAGMA user_version').get() as { user_version: number };
    if (version > SPOOL_VERSION) throw new SpoolTooNewError(version);
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;');
    db.exec('CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, envelope TEXT NOT NULL)');
    // Spools written before ids were indexed lack the column (their rows get it below).
    const columns = db.prepare('PRAGMA table_info(spool)').all() as { name: string }[];
    if (!columns.some((c) => c.name === 'id')) db.exec('ALTER TABLE spool ADD COLUMN id TEXT');
    db.exec('CREATE INDEX IF NOT EXISTS spool_id ON spool (id)');
    // Topic and cursor make the spool readable as history (older spools lack them: filled in below).
    for (const column of ['topic', 'cursor'])
      if (!columns.some((c) => c.name === column)) db.exec(`ALTER TABLE spool ADD COLUMN ${column} TEXT`);
    db.exec('CREATE INDEX IF NOT EXISTS spool_topic ON spool (topic, cursor)');
    // Source and ts answer `latest` (rows spooled before these columns have neither: read whole).
    if (!columns.some((c) => c.name === 'source')) db.exec('ALTER TABLE spool ADD COLUMN source TEXT');
    if (!columns.some((c) => c.name === 'ts')) db.exec('ALTER TABLE spool ADD COLUMN ts INTEGER');
    // Whether the caller minted the message (AppendOptions.minted), handed on when it drains: a
    // drain without it made Cassandra read before writing every random id, about twice the work
    // of the appends arriving meanwhile, so under load a spool could drain slower than it filled.
    if (!columns.some((c) => c.name === 'minted')) db.exec('ALTER TABLE spool ADD COLUMN minted INTEGER');
    db.exec('CREATE INDEX IF NOT EXISTS spool_latest ON spool (topic, source, ts, id)');
    // Rows spooled before the topic column (the first spooling relays wrote only the envelope) get
    // their columns from it: left without, they were acked yet missing from history, latest and
    // topics until drained, and a resend of one was spooled again as new. Rows since have a topic,
    // so this finds none (through spool_topic) after the first start.
    db.exec(
      `UPDATE spool SET id = COALESCE(id, json_extract(envelope, '$.id')), topic = json_extract(envelope, '$.topic'),
        cursor = json_extract(envelope, '$.cursor'), source = COALESCE(source, json_extract(envelope, '$.source')),
        ts = COALESCE(ts, json_extract(envelope, '$.ts')) WHERE topic IS NULL`,
    );
    db.exec(
      'CREATE TABLE IF NOT EXISTS spool_rejected (seq INTEGER PRIMARY KEY, id TEXT, topic TEXT, cursor TEXT, ' +
        'envelope TEXT NOT NULL, reason TEXT NOT NULL, rejected_at INTEGER NOT NULL)',
    );
    // Marked once its tables are version 1's: a new file, or one from before the version.
    if (version < SPOOL_VERSION) db.exec(`PRAGMA user_version = ${SPOOL_VERSION}`);
    return db;
  } catch (error) {
    db?.close();
    const { message } = error as Error;
    const advice = fileDamaged(error)
      ? '. The spool file is damaged: stop the relay and move it aside (with any spool.sqlite-wal and ' +
        'spool.sqlite-shm beside it), keeping it: it may hold messages acked while the store was away that ' +
        'the store has not got. With no file the relay starts with an empty spool'
      : '';
    const wrapped = new Error(`${path}: ${message}${advice}`, { cause: error });
    throw error instanceof SpoolTooNewError ? Object.assign(wrapped, { code: error.code }) : wrapped;
  }
}
