import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createHybridClock, type Envelope, randomId } from '@anode/shared';
import { createSqliteStore, type SqliteStoreOptions } from './sqlite-store.ts';

/**
 * With fsync on, a small write that finds the writer thread idle commits (and syncs) on the event
 * loop's own connection, as with fsync off; after one that took longer than `inlineSyncSlowMs`
 * (a slow disk), writes go to the thread for a while. Which path a write took shows in the
 * thread's replies: one per request it answers.
 */
describe('embedded store: fsync on, small writes on the event loop', () => {
  const clock = createHybridClock('inline');
  const message = (): Envelope => ({ id: randomId(), topic: 't', cursor: clock.next(), source: 's', ts: 1, data: 1 });

  const open = async (extra: Partial<SqliteStoreOptions> = {}) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-sqlite-inline-'));
    let replies = 0;
    const options: SqliteStoreOptions = {
      dataDir: dir,
      retention: { maxAgeMs: 0, maxMessages: 0 },
      fsync: true,
      onWriterThread: (worker) => worker.on('message', () => (replies += 1)),
      ...extra,
    };
    const store = createSqliteStore(options);
    return { store, dir, options, replies: () => replies };
  };

  it('commits a small write here while the thread is idle, and keeps it across a reopen', async () => {
    // Routing only: however slowly this machine's disk syncs, no write counts as slow here.
    const { store, dir, options, replies } = await open({ inlineSyncSlowMs: 60_000 });
    try {
      const sent: Envelope[] = [];
      for (let i = 0; i < 20; i++) {
        const m = message();
        sent.push(m);
        const [result] = await store.append([m]);
        assert.equal(result?.inserted, true);
      }
      assert.equal(replies(), 0, 'no write went to the thread');
      // A batch larger than the event loop takes still goes to the thread.
      const big = Array.from({ length: 100 }, message);
      await store.append(big);
      assert.equal(replies(), 1);
      await store.close();
      const again = createSqliteStore(options);
      try {
        const stored = await again.history('t', { limit: 1_000 });
        assert.deepEqual(
          stored.map((m) => m.id),
          [...sent, ...big].map((m) => m.id),
        );
      } finally {
        await again.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('after a commit here slower than the limit, sends the next writes to the thread', async () => {
    const { store, dir, replies } = await open({ inlineSyncSlowMs: -1 });
    try {
      for (let i = 0; i < 40; i++) await store.append([message()]);
      // Each written here counted slow: past the 7th, most were, and the next went to the thread,
      // but for one tried here again each second (a slow disk can make these writes take seconds).
      assert.ok(replies() >= 20, `${replies()} of 40 writes went to the thread`);
      assert.equal((await store.history('t', { limit: 100 })).length, 40);
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
