import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHybridClock, type Envelope, type MessageStore, randomId, type StoreHealth } from '@anode/shared';
import { createSqliteStore } from './sqlite-store.ts';

/**
 * A writer thread that stops answering is not dead: another process holding the database's
 * write lock (an operator's `sqlite3` shell in a transaction) or a stalled disk holds it, and every
 * publish waits. Health says so once the oldest write has waited past `stuckAfterMs`, and is ok
 * again once the writes are answered. The lock is another connection's BEGIN IMMEDIATE, which in
 * WAL mode is what blocks the thread's own BEGIN IMMEDIATE (readers go on).
 */
describe('embedded store: health while the writer thread waits', () => {
  const STUCK_AFTER_MS = 300;
  const clock = createHybridClock('stuck');
  const message = (): Envelope => ({ id: randomId(), topic: 't', cursor: clock.next(), source: 's', ts: 1, data: 1 });

  /** Small appends are written on the event loop's connection while the thread is idle (sqlite-store.ts). */
  const open = async (fsync = true) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-sqlite-stuck-'));
    const store = createSqliteStore({
      dataDir: dir,
      retention: { maxAgeMs: 0, maxMessages: 0 },
      fsync,
      stuckAfterMs: STUCK_AFTER_MS,
    });
    const other = new DatabaseSync(join(dir, 'messages.sqlite'));
    const done = async () => {
      if (other.isTransaction) other.exec('ROLLBACK');
      other.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    };
    return { store, other, done };
  };

  /** Poll health until `until` holds; fail after `withinMs`. */
  const healthUntil = async (store: MessageStore, until: (h: StoreHealth) => boolean, withinMs: number) => {
    const deadline = performance.now() + withinMs;
    for (;;) {
      const health = await store.health();
      if (until(health)) return health;
      if (performance.now() > deadline)
        assert.fail(`health did not change within ${withinMs} ms: ${JSON.stringify(health)}`);
      await sleep(25);
    }
  };
  const stuckDetail =
    /^a write has waited \d+\.\d s for the store's writer thread \(the disk may be stalled, or another process holds the database's lock\): publishes are not acknowledged meanwhile$/;

  it("says not ok while a write waits on another connection's lock, and ok once it is committed", async () => {
    const { store, other, done } = await open();
    try {
      await store.append([message()]); // the thread is up and answering
      assert.equal((await store.health()).ok, true);
      other.exec('BEGIN IMMEDIATE');
      const held = performance.now();
      const sent = message();
      const appending = store.append([sent]);
      appending.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
      const stuck = await healthUntil(store, (h) => !h.ok, 4_000);
      assert.match(String(stuck.detail), stuckDetail);
      assert.ok((stuck.writer_wait_ms as number) > STUCK_AFTER_MS);
      assert.ok(performance.now() - held >= STUCK_AFTER_MS, 'not ok before the threshold');
      // Well within the thread's busy_timeout (5 s): the write goes on once the lock is let go.
      assert.ok(performance.now() - held < 3_000, 'the lock was held too long for this case');
      other.exec('ROLLBACK');
      const [result] = await appending;
      assert.equal(result?.inserted, true);
      assert.deepEqual(await store.health(), { ok: true, path: stuck.path });
      const stored = await store.history('t', { limit: 10 });
      assert.ok(stored.some((m) => m.id === sent.id));
    } finally {
      await done();
    }
  });

  it('past the busy_timeout the write is refused with an error, health says why, and a retry is stored', async () => {
    const { store, other, done } = await open();
    try {
      await store.append([message()]);
      other.exec('BEGIN IMMEDIATE');
      const sent = message();
      const appending = store.append([sent]);
      appending.catch(() => {});
      const stuck = await healthUntil(store, (h) => !h.ok, 4_000);
      assert.match(String(stuck.detail), stuckDetail);
      // SQLite gives up after the thread's busy_timeout (5 s): refused, never acked.
      await assert.rejects(appending, /database is locked/);
      const failed = await store.health();
      assert.equal(failed.ok, false);
      assert.match(String(failed.detail), /^the last write failed: database is locked/);
      other.exec('ROLLBACK');
      const [retried] = await store.append([sent]);
      assert.equal(retried?.inserted, true);
      assert.equal((await store.health()).ok, true);
      const stored = await store.history('t', { limit: 10 });
      assert.equal(stored.filter((m) => m.id === sent.id).length, 1);
    } finally {
      await done();
    }
  });

  for (const fsync of [false, true])
    it(`fsync ${fsync}: a small write that finds the lock held goes to the thread, and the event loop is not held`, async () => {
      // Small batches are written on the event loop's own connection (sqlite-store.ts). It waited
      // SQLite's 5 s busy timeout there, holding the event loop (every socket of the relay), and
      // then refused the write: a held lock now sends it to the thread, which waits off the loop.
      const { store, other, done } = await open(fsync);
      try {
        await store.append([message()]);
        other.exec('BEGIN IMMEDIATE');
        const sent = message();
        const asked = performance.now();
        const appending = store.append([sent]);
        appending.catch(() => {});
        const returnedAfter = performance.now() - asked;
        // A timer due in 50 ms fires on time: nothing holds the event loop meanwhile.
        const timerLate = await new Promise<number>((resolve) => {
          const due = performance.now() + 50;
          setTimeout(() => resolve(performance.now() - due), 50);
        });
        assert.ok(returnedAfter < 1_000, `append() held the event loop for ${Math.round(returnedAfter)} ms`);
        assert.ok(timerLate < 1_000, `a timer fired ${Math.round(timerLate)} ms late`);
        const stuck = await healthUntil(store, (h) => !h.ok, 4_000);
        assert.match(String(stuck.detail), stuckDetail);
        other.exec('ROLLBACK');
        const [result] = await appending;
        assert.equal(result?.inserted, true);
        assert.equal((await store.health()).ok, true);
        // And small writes go back to the event loop's connection once the thread is idle.
        const [next] = await store.append([message()]);
        assert.equal(next?.inserted, true);
        assert.equal((await store.history('t', { limit: 10 })).length, 3);
      } finally {
        await done();
      }
    });
});
