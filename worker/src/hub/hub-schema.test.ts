import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { latestQuery, openSchema } from './hub-schema.ts';

/**
 * The hub's tables opened on node:sqlite (the same SQLite as a Durable Object's, without workerd),
 * over tables an earlier version made, as a wake of an object finds them. The store's behaviour is
 * tested on workerd (below-floor.test.ts).
 */
const execOn = (db: DatabaseSync) => (query: string) => {
  if (query.includes(';')) {
    db.exec(query);
    return [];
  }
  return db.prepare(query).all() as { name: string }[];
};

describe('hub schema on an object that already holds tables', () => {
  it('makes late_kept again where it was made before its bytes column (every wake failed: no such column)', () => {
    const db = new DatabaseSync(':memory:');
    // late_kept as two commits of 2026-12-01 made it, holding a kept late arrival.
    db.exec(`CREATE TABLE late_kept (cursor TEXT PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL,
      arrived_at INTEGER NOT NULL);
      CREATE INDEX late_kept_arrived ON late_kept (arrived_at, cursor);
      INSERT INTO late_kept VALUES ('0000000000010000-relay1', 'm1', '{"id":"m1"}', 1);`);
    openSchema(execOn(db));
    // The wake's first question of it (hub-store.ts), from the index.
    assert.deepEqual(
      { ...(db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS bytes FROM late_kept').get() as object) },
      { n: 0, bytes: 0 },
    );
    const indexed = db.prepare("SELECT name FROM pragma_index_info('late_kept_arrived')").all() as { name: string }[];
    assert.deepEqual(
      indexed.map((column) => column.name),
      ['arrived_at', 'cursor', 'bytes'],
    );
  });

  it('keeps a late_kept that has its bytes column, and what it holds', () => {
    const db = new DatabaseSync(':memory:');
    openSchema(execOn(db));
    db.exec(`INSERT INTO late_kept VALUES ('0000000000010000-relay1', 'm1', 1, 11, '{"id":"m1"}')`);
    openSchema(execOn(db));
    assert.equal((db.prepare('SELECT COUNT(*) AS n FROM late_kept').get() as { n: number }).n, 1);
  });
});

/**
 * /latest's walk (hub-store.ts latestIn: the first row of each source in latestQuery's order).
 * Before its indexes, each page parsed every body after its bound (a review: 1 MB messages, ~1.5 s
 * a page, 179 s for 200 pages).
 */
describe('latest query', () => {
  for (const table of ['ring', 'outbox'] as const) {
    it(`reads ${table} from its latest index, in index order, without parsing bodies`, () => {
      const db = new DatabaseSync(':memory:');
      // ring and outbox as an object made before the index holds them: its next wake builds it.
      db.exec(`CREATE TABLE ring (cursor TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
        arrived_at INTEGER NOT NULL, late INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
        cursor TEXT NOT NULL, body TEXT NOT NULL);
        INSERT INTO ${table} (cursor, id, body${table === 'ring' ? ', arrived_at' : ''})
          VALUES ('c1', 'm1', '{"id":"m1","source":"s2","ts":1}'${table === 'ring' ? ', 0' : ''});`);
      openSchema(execOn(db));
      assert.deepEqual({ ...(db.prepare(latestQuery(table)).get('s1') as object) }, { source: 's2', id: 'm1' });
      const plan = (db.prepare(`EXPLAIN QUERY PLAN ${latestQuery(table)}`).all('s1') as { detail: string }[])
        .map((step) => step.detail)
        .join('; ');
      // COVERING: source and id come from the index, not the row; no temp b-tree: no sort of the rows.
      assert.match(plan, new RegExp(`^SEARCH ${table} USING COVERING INDEX ${table}_latest \\(<expr>>\\?\\)$`));
    });
  }
});
