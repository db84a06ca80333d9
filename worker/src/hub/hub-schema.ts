/**
 * The order /latest walks a table in: by source, then newest first (ts, then id, as
 * newerForLatest), so the first row of each source is its winner. Source and ts live only in the
 * body, so ring_latest and outbox_latest index these expressions: a page reads the index from
 * `after` on and stops when it is full, instead of parsing every body after `after` (a review
 * timed 1 MB messages at ~1.5 s a page). SQLite uses an expression index only where the query
 * spells the same expression, so latestQuery and the indexes share this text. Each insert
 * evaluates them once; an object made before them builds them at its next wake (one pass).
 */
const SOURCE = "json_extract(body, '$.source')";
const LATEST_ORDER = `${SOURCE}, json_extract(body, '$.ts') DESC, id DESC`;

/** Source and id of each row of `table` whose source is after the bound, in LATEST_ORDER. */
export const latestQuery = (table: 'ring' | 'outbox'): string =>
  `SELECT ${SOURCE} AS source, id FROM ${table} WHERE ${SOURCE} > ? ORDER BY ${LATEST_ORDER}`;

/** A TopicHub's tables (hub-store.ts says what each holds). */
export const SCHEMA = `
CREATE TABLE IF NOT EXISTS ring (cursor TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
  arrived_at INTEGER NOT NULL, late INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS ring_late ON ring (late, arrived_at);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
  cursor TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_cursor ON outbox (cursor);
CREATE INDEX IF NOT EXISTS ring_latest ON ring (${LATEST_ORDER});
CREATE INDEX IF NOT EXISTS outbox_latest ON outbox (${LATEST_ORDER});
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keyed (id TEXT PRIMARY KEY, cursor TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS keyed_cursor ON keyed (cursor);
CREATE TABLE IF NOT EXISTS trimmed (id TEXT PRIMARY KEY, cursor TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS trimmed_cursor ON trimmed (cursor);
CREATE TABLE IF NOT EXISTS late_kept (cursor TEXT PRIMARY KEY, id TEXT NOT NULL, arrived_at INTEGER NOT NULL,
  bytes INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS late_kept_arrived ON late_kept (arrived_at, cursor, bytes);
`;

/**
 * Make the tables, after mending what an earlier version made. `exec` runs SQL (several
 * statements when it takes no rows back) and returns the rows. late_kept before its `bytes`
 * column (two commits of 2026-12-01, never released) failed every wake (no such column): it holds
 * at most ten minutes of replays, so it goes and is made again, index and all (an added column
 * alone would leave the count reading every body).
 */
export function openSchema(exec: (query: string) => { name: string }[]): void {
  const lateColumns = exec("SELECT name FROM pragma_table_info('late_kept')");
  if (lateColumns.length > 0 && !lateColumns.some((column) => column.name === 'bytes')) {
    exec('DROP INDEX IF EXISTS late_kept_arrived; DROP TABLE late_kept');
  }
  exec(SCHEMA);
}
