import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createHybridClock, randomId } from '@anode/shared';
import { migrate, openDatabase } from './sqlite-schema.ts';
import { startWriterThread } from './sqlite-writer.ts';
import { createWrites, type WriteRow } from './sqlite-writes.ts';
import { logSalt } from './wal.fixture.ts';

/**
 * With fsync off the store writes small batches on the event loop's connection, which never
 * checkpoints; the writer thread does, and the first write after its checkpoint copies what was
 * written during it and starts the log over (sqlite-store.ts). That copy runs on the thread, in
 * one request with the write (`append(rows, true)`), so nothing is written between the two.
 */
describe('embedded store: the writer thread copies the rest of the log before an append', () => {
  it('starts the log over with that append, after rows another connection wrote', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-writer-checkpoint-'));
    const path = join(dir, 'messages.sqlite');
    const db = openDatabase(path, false);
    migrate(db);
    // The event loop's connection as the store sets it up with fsync off: no checkpoints of its own.
    db.exec('PRAGMA wal_autocheckpoint = 0');
    const inline = createWrites(db);
    const writes = startWriterThread(path, false);
    const clock = createHybridClock('checkpoint');
    const rows = (n: number) =>
      Array.from({ length: n }, (): WriteRow => [randomId(), 'c.t', clock.next(), 's', 1_000, '"x"']);
    try {
      for (let i = 0; i < 20; i++) inline.append(rows(10));
      const before = logSalt(path);
      // An append alone cannot start the log over: the rows written here are not copied yet.
      await writes.append(rows(5));
      assert.equal(logSalt(path), before, 'the log was started over with uncopied rows in it');
      await writes.append(rows(5), true);
      assert.notEqual(logSalt(path), before, 'the append after the copy did not start the log over');
      const count = db.prepare('SELECT COUNT(*) AS n FROM messages').get() as { n: number };
      assert.equal(count.n, 210);
    } finally {
      await writes.close();
      db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
