import assert from 'node:assert/strict';
import type { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { newStore } from './resume-object.fixture.ts';

/**
 * The hub store's latest walk (latestIn, over ring and outbox) on node:sqlite: the winners of each
 * source are the ones the window query it replaced picked (newest ts, then greatest id), ties in ts
 * included. That the walk reads the latest indexes is hub-schema.test.ts's.
 */
const seed = (db: DatabaseSync) => {
  const ring = db.prepare('INSERT INTO ring (cursor, id, body, arrived_at) VALUES (?, ?, ?, 0)');
  const outbox = db.prepare('INSERT INTO outbox (id, cursor, body) VALUES (?, ?, ?)');
  let n = 0;
  const put = (id: string, source: string, ts: number) => {
    const cursor = `c${String(++n).padStart(3, '0')}`;
    const body = JSON.stringify({ id, topic: 't', source, ts, cursor, data: id });
    ring.run(cursor, id, body);
    outbox.run(id, cursor, body);
  };
  // a: three at one ts (the greatest id wins, inserted neither first nor last) over an older one;
  // b: the newest ts wins over a greater id; c: one row; 0: before the bound of most walks.
  put('m2', 'a', 5);
  put('m9', 'a', 5);
  put('m5', 'a', 5);
  put('m1', 'a', 4);
  put('z9', 'b', 1);
  put('a1', 'b', 2);
  put('q', 'c', 0);
  put('x', '0', 9);
};

/** The query latestIn ran before the latest indexes (2811b71), for its answers. */
const windowed = (db: DatabaseSync, table: string, after: string) =>
  (
    db
      .prepare(
        `SELECT id FROM (SELECT id, json_extract(body, '$.source') AS source, ROW_NUMBER() OVER (
           PARTITION BY json_extract(body, '$.source') ORDER BY json_extract(body, '$.ts') DESC, id DESC) AS n
         FROM ${table} WHERE json_extract(body, '$.source') > ?) WHERE n = 1 ORDER BY source`,
      )
      .all(after) as { id: string }[]
  ).map((row) => row.id);

describe('hub store latest', () => {
  it('picks the newest of each source by ts, then id, as before the indexes, in ring and outbox', () => {
    const { db, store } = newStore(1000, seed);
    const ids = (walk: Iterable<{ envelope: { id: string } }>) => [...walk].map((m) => m.envelope.id);
    for (const after of ['', '0', 'a', 'b', 'c']) {
      assert.deepEqual(ids(store.latestInRing(after)), windowed(db, 'ring', after), `ring after '${after}'`);
      assert.deepEqual(ids(store.outbox.latest(after)), windowed(db, 'outbox', after), `outbox after '${after}'`);
    }
    assert.deepEqual(ids(store.latestInRing()), ['x', 'm9', 'a1', 'q']);
    assert.deepEqual(ids(store.latestInRing('0')), ['m9', 'a1', 'q']);
    assert.deepEqual(ids(store.outbox.latest('a')), ['a1', 'q']);
  });

  it('reads the body of a winner only when it is taken', () => {
    const { store, reads } = newStore(1000, seed);
    const before = reads.bodies;
    const walk = store.latestInRing('0');
    assert.equal(walk.next().value?.envelope.id, 'm9');
    assert.equal(reads.bodies - before, 1);
  });
});
