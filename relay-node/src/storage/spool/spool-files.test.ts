import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createHybridClock, messageId, type MessageStore } from '@anode/shared';
import { createLogger } from '../../logger.ts';
import { createSqliteStore } from '../embedded/sqlite-store.ts';
import { createSpoolingStore } from './spooling-store.ts';

describe('spool files', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('are owner-only from the first write (folder 0700, database and its log 0600)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-files-'));
    dirs.push(dir);
    const previous = process.umask(0o022); // the usual default, which would leave them readable by all
    try {
      const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
      // The remote store away: the publish lands in the spool file.
      const away: MessageStore = {
        ...sqlite,
        append: async () => {
          throw new Error('remote store unreachable');
        },
      };
      const spoolDir = join(dir, 'spool');
      const spool = createSpoolingStore(away, {
        dataDir: spoolDir,
        drainIntervalMs: 60_000,
        log: createLogger('silent'),
      });
      const clock = createHybridClock('files');
      await spool.append([
        { id: messageId(), topic: 'spool.files', cursor: clock.next(), source: 's', ts: 1, data: 1 },
      ]);
      assert.equal(spool.spoolDepth, 1);
      const mode = async (path: string) => (await stat(path)).mode & 0o777;
      assert.equal(await mode(spoolDir), 0o700);
      for (const file of ['spool.sqlite', 'spool.sqlite-wal']) {
        assert.equal(await mode(join(spoolDir, file)), 0o600, `${file} is owner-only`);
      }
      await spool.close();
    } finally {
      process.umask(previous);
    }
  });
});
