import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { createHybridClock, type Envelope, randomId } from '@anode/shared';
import { createSqliteStore } from './sqlite-store.ts';
import { logSalt } from './wal.fixture.ts';

/**
 * With fsync off, small batches are written on the event loop's connection, which never
 * checkpoints; every few thousand rows the writer thread checkpoints, and the first write after
 * that copies what was written during the checkpoint and starts the log over, on the thread, in
 * one request (sqlite-store.ts, `append(rows, true)`). Without that copy the log is never empty at
 * a checkpoint's end, and it is started over only when the thread's own writes checkpoint it.
 * Either way the log must be started over, again and again: never started over, it grows for as
 * long as the relay publishes.
 */
describe('embedded store, fsync off: the log is started over while small batches are written', () => {
  it('starts the log over again and again under a steady run of one-message publishes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-store-log-'));
    const path = join(dir, 'messages.sqlite');
    const store = createSqliteStore({ dataDir: dir, retention: { maxAgeMs: 0, maxMessages: 0 }, fsync: false });
    const clock = createHybridClock('log');
    const message = (): Envelope => ({
      id: randomId(),
      topic: 'log.t',
      cursor: clock.next(),
      source: 's',
      ts: 1_000,
      data: 'x'.repeat(200),
    });
    try {
      const salts = new Set<string>();
      let largest = 0;
      // 30,000 rows: many of the thread's checkpoints (one per ~1,800 one-row commits written here).
      for (let i = 0; i < 30_000; i++) {
        await store.append([message()]);
        if (i % 10 === 0) {
          // Let the thread's answers in, as a relay serving sockets does between publishes.
          await turn();
          salts.add(logSalt(path));
          largest = Math.max(largest, statSync(`${path}-wal`).size);
        }
      }
      assert.ok(salts.size >= 3, `the log was started over ${salts.size - 1} times in 30,000 rows`);
      assert.equal((await store.history('log.t', { limit: 1 })).length, 1);
      // Started over every ~1,800 one-row commits (INLINE_CHECKPOINT_PAGES), the log stays near
      // 10,000 pages (~40 MB), under its 64 MiB limit, so starting it over never truncates it.
      // Counted in rows (4,000 between checkpoints), it reached 85-97 MB on 2026-12-03; never
      // started over, 30,000 rows would make it ~600 MB.
      assert.ok(largest < 64 * 1024 * 1024, `the log reached ${largest} bytes, over its 64 MiB limit`);
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
