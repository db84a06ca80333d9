import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { ensurePrivateFile, PRIVATE_DIR_MODE } from '../../private-files.ts';
import type { AppendResult, Envelope, MessageStore, RetentionPolicy, StoreHealth } from '@anode/shared';

/**
 * The embedded MessageStore: SQLite (Node's built-in `node:sqlite`) in the relay's data folder,
 * in WAL mode. A batch is one transaction, so an ack costs one commit however many messages it
 * covers. With `fsync` on, a commit survives power loss; off, it still survives a killed process.
 */

/**
 * The file settings (the publish benchmark's floor opens its database with the same ones).
 * Checkpoints run every 10,000 WAL pages (~40 MiB) rather than SQLite's 1,000: each one copies
 * pages back and syncs the file, and random message ids spread a batch over many pages, so at
 * 1,000 checkpoints took most of the time of a commit here; fewer write each hot page once.
 * The WAL is cut back to 64 MiB after a checkpoint.
 */
export const sqlitePragmas = (fsync: boolean): string =>
  `PRAGMA journal_mode = WAL; PRAGMA synchronous = ${fsync ? 'FULL' : 'NORMAL'}; ` +
  'PRAGMA wal_autocheckpoint = 10000; PRAGMA journal_size_limit = 67108864;';
export interface SqliteStoreOptions {
  dataDir: string;
  retention: RetentionPolicy;
  fsync?: boolean;
  /** For tests: an in-memory database. */
  memory?: boolean;
}

const SCHEMA_VERSION = 1;

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
};

type Row = { id: string; topic: string; cursor: string; source: string; ts: number; data: string };

const toEnvelope = (row: Row): Envelope => ({
  id: row.id,
  topic: row.topic,
  cursor: row.cursor,
  source: row.source,
  ts: Number(row.ts),
  data: JSON.parse(row.data),
});

function migrate(db: DatabaseSync): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null };
  for (let version = (row.v ?? 0) + 1; version <= SCHEMA_VERSION; version++) {
    db.exec('BEGIN');
    db.exec(MIGRATIONS[version] ?? '');
    db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(version);
    db.exec('COMMIT');
  }
}

/** Cursor prefix for a wall-clock time: every cursor minted before `ms` sorts below it. */
const cursorFloor = (ms: number) => `${Math.max(0, Math.floor(ms)).toString(16).padStart(12, '0')}0000`;

export function createSqliteStore(options: SqliteStoreOptions): MessageStore {
  let path = ':memory:';
  if (!options.memory) {
    mkdirSync(options.dataDir, { recursive: true, mode: PRIVATE_DIR_MODE });
    path = join(options.dataDir, 'messages.sqlite');
    ensurePrivateFile(path);
  }
  const db = new DatabaseSync(path);
  db.exec(sqlitePragmas(options.fsync !== false));
  db.exec('PRAGMA busy_timeout = 5000');
  migrate(db);

  const q = (sql: string): StatementSync => db.prepare(sql);
  const insert = q('INSERT OR IGNORE INTO messages (id, topic, cursor, source, ts, data) VALUES (?, ?, ?, ?, ?, ?)');
  const byId = q('SELECT * FROM messages WHERE id = ?');
  const upsertLatest = q(`
    INSERT INTO latest (topic, source, id, cursor, ts, data) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (topic, source) DO UPDATE SET
      id = excluded.id, cursor = excluded.cursor, ts = excluded.ts, data = excluded.data
    WHERE excluded.ts > latest.ts OR (excluded.ts = latest.ts AND excluded.id > latest.id)`);
  const countTopic = q(
    'INSERT INTO topics (topic, count) VALUES (?, ?) ON CONFLICT (topic) DO UPDATE SET count = count + excluded.count',
  );
  const history = q('SELECT * FROM messages WHERE topic = ? AND cursor > ? ORDER BY cursor LIMIT ?');
  const latest = q('SELECT * FROM latest WHERE topic = ?');
  const topics = q('SELECT topic FROM topics WHERE count > 0 ORDER BY topic');
  const allTopics = q('SELECT topic, count, trimmed_through FROM topics');
  const trimmed = q('SELECT trimmed_through FROM topics WHERE topic = ?');
  const lastBefore = q('SELECT MAX(cursor) AS c, COUNT(*) AS n FROM messages WHERE topic = ? AND cursor < ?');
  const nth = q('SELECT cursor FROM messages WHERE topic = ? ORDER BY cursor LIMIT 1 OFFSET ?');
  const deleteThrough = q('DELETE FROM messages WHERE topic = ? AND cursor <= ?');
  const markTrimmed = q(`UPDATE topics SET count = count - ?, trimmed_through = MAX(COALESCE(trimmed_through, ''), ?)
    WHERE topic = ?`);

  const transaction = <T>(work: () => T): T => {
    db.exec('BEGIN IMMEDIATE');
    try {
      const result = work();
      db.exec('COMMIT');
      return result;
    } catch (error) {
      db.exec('ROLLBACK');
      throw error;
    }
  };

  const trimThrough = (topic: string, cursor: string, count: number) => {
    deleteThrough.run(topic, cursor);
    markTrimmed.run(count, cursor, topic);
  };

  return {
    kind: 'embedded',

    async append(messages) {
      return transaction(() => {
        // `latest` and the topic counts are written once per batch: the newest inserted message
        // per (topic, source), by the same rule as the upsert's, and one count per topic.
        const newest = new Map<string, { m: Envelope; data: string }>();
        const counts = new Map<string, number>();
        const results = messages.map((m): AppendResult => {
          const data = JSON.stringify(m.data);
          if (insert.run(m.id, m.topic, m.cursor, m.source, m.ts, data).changes === 0) {
            return { envelope: toEnvelope(byId.get(m.id) as Row), inserted: false };
          }
          const key = `${m.topic}\n${m.source}`; // neither name may hold a newline
          const held = newest.get(key)?.m;
          if (!held || m.ts > held.ts || (m.ts === held.ts && m.id > held.id)) newest.set(key, { m, data });
          counts.set(m.topic, (counts.get(m.topic) ?? 0) + 1);
          return { envelope: m, inserted: true };
        });
        for (const { m, data } of newest.values()) upsertLatest.run(m.topic, m.source, m.id, m.cursor, m.ts, data);
        for (const [topic, count] of counts) countTopic.run(topic, count);
        return results;
      });
    },

    async history(topic, { after, limit }) {
      if (limit <= 0) return [];
      return (history.all(topic, after ?? '', limit) as Row[]).map(toEnvelope);
    },

    async latest(topic) {
      // fromEntries defines own properties, so a source named `__proto__` is kept, not swallowed.
      return Object.fromEntries((latest.all(topic) as Row[]).map((row) => [row.source, toEnvelope(row)]));
    },

    async topics() {
      return (topics.all() as { topic: string }[]).map((r) => r.topic);
    },

    async trimmedThrough(topic) {
      const row = trimmed.get(topic) as { trimmed_through: string | null } | undefined;
      return row?.trimmed_through ?? undefined;
    },

    async sweep(nowMs = Date.now()) {
      const { maxAgeMs, maxMessages } = options.retention;
      let deleted = 0;
      const rows = allTopics.all() as { topic: string; count: number }[];
      transaction(() => {
        for (const { topic, count } of rows) {
          let remaining = count;
          if (maxAgeMs > 0) {
            const old = lastBefore.get(topic, cursorFloor(nowMs - maxAgeMs)) as { c: string | null; n: number };
            if (old.c !== null && old.n > 0) {
              trimThrough(topic, old.c, old.n);
              remaining -= old.n;
              deleted += old.n;
            }
          }
          if (maxMessages > 0 && remaining > maxMessages) {
            const excess = remaining - maxMessages;
            const row = nth.get(topic, excess - 1) as { cursor: string } | undefined;
            if (row) {
              trimThrough(topic, row.cursor, excess);
              deleted += excess;
            }
          }
        }
      });
      return deleted;
    },

    async health(): Promise<StoreHealth> {
      try {
        db.prepare('SELECT 1').get();
        return { ok: true, path };
      } catch (error) {
        return { ok: false, detail: (error as Error).message, path };
      }
    },

    async close() {
      if (db.isOpen) db.close();
    },
  };
}
