import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { createHybridClock, messageId, type MessageStore } from '@anode/shared';
import { createLogger } from '../../logger.ts';
import { createSqliteStore } from '../embedded/sqlite-store.ts';
import { createSpoolingStore } from './spooling-store.ts';

/**
 * The spool file's layout version (SQLite's user_version): set when the file is made, a file from
 * before the version (0) is taken as version 1 and marked, and a file of a newer version (a relay
 * downgraded) is refused with `schema_too_new` and left as it was. Without a version, a later
 * change of the spool's tables could not tell an old file from a new one.
 */
const log = createLogger('silent');
const retention = { maxAgeMs: 0, maxMessages: 0 };
const clock = createHybridClock('version');

describe('spool file version', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  /** A folder whose spool holds one message (`id`), spooled while the remote store was away. */
  const spoolOne = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-version-'));
    dirs.push(dir);
    const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention });
    const away: MessageStore = {
      ...sqlite,
      append: async () => {
        throw new Error('remote store unreachable');
      },
    };
    const spool = createSpoolingStore(away, { dataDir: join(dir, 'spool'), drainIntervalMs: 60_000, log });
    const id = messageId();
    await spool.append([{ id, topic: 'spool.version', cursor: clock.next(), source: 's', ts: 1, data: 1 }]);
    assert.equal(spool.spoolDepth, 1);
    await spool.close();
    return { dir, file: join(dir, 'spool', 'spool.sqlite'), id };
  };
  const userVersion = (file: string, set?: number) => {
    const db = new DatabaseSync(file);
    try {
      if (set !== undefined) db.exec(`PRAGMA user_version = ${set}`);
      return (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
    } finally {
      db.close();
    }
  };

  it('marks a new file, and takes a file from before the version as version 1, marking it and draining it', async () => {
    const { dir, file, id } = await spoolOne();
    assert.equal(userVersion(file), 1, 'a new file is marked');
    // As the relays before the version left it: today's tables, user_version never set.
    userVersion(file, 0);
    const store = createSqliteStore({ dataDir: join(dir, 'store'), retention });
    const spool = createSpoolingStore(store, { dataDir: join(dir, 'spool'), drainIntervalMs: 20, log });
    try {
      assert.equal(spool.spoolDepth, 1, 'its message is still there');
      await spool.drained(5_000);
      const page = await store.history('spool.version', { limit: 10 });
      assert.deepEqual(
        page.map((e) => e.id),
        [id],
        'drained into the store',
      );
    } finally {
      await spool.close();
    }
    assert.equal(userVersion(file), 1, 'marked as version 1');
  });

  it('refuses a file of a newer version (a relay downgraded) with schema_too_new, leaving it as it was', async () => {
    const { dir, file } = await spoolOne();
    userVersion(file, 2); // a newer relay changed the tables
    const before = await readFile(file);
    const store = createSqliteStore({ dataDir: join(dir, 'store'), retention });
    try {
      assert.throws(
        () => createSpoolingStore(store, { dataDir: join(dir, 'spool'), drainIntervalMs: 20, log }),
        (error: Error & { code?: string }) => {
          assert.equal(error.code, 'schema_too_new');
          assert.ok(error.message.startsWith(`${file}: `), error.message);
          assert.match(error.message, /at version 2, and this relay knows up to spool version 1\b/);
          assert.match(error.message, /newer version of anode/);
          assert.match(error.message, /start that version again/);
          return true;
        },
      );
    } finally {
      await store.close();
    }
    assert.deepEqual(await readFile(file), before, 'the file is left as it was');
    // Its connection is closed: the file can be opened, and its newer relay finds its message.
    const db = new DatabaseSync(file);
    try {
      assert.equal((db.prepare('SELECT COUNT(*) AS n FROM spool').get() as { n: number }).n, 1);
      assert.equal((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version, 2);
    } finally {
      db.close();
    }
  });
});
