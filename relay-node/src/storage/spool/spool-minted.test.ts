import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope, type MessageStore, messageId } from '@anode/shared';
import { createLogger } from '../../logger.ts';
import { createSqliteStore } from '../embedded/sqlite-store.ts';
import { awayCassandra } from './away-cassandra.fixture.ts';
import { createSpoolingStore } from './spooling-store.ts';

const log = createLogger('silent');

describe('spool drain', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('hands each message’s `minted` on to the store when it drains, as the direct append does', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-minted-'));
    dirs.push(dir);
    const spoolDir = join(dir, 'spool');
    const away = await awayCassandra();
    const spool = createSpoolingStore(away, { dataDir: spoolDir, drainIntervalMs: 60_000, log });
    const clock = createHybridClock('minted');
    const message = (i: number): Envelope => ({
      id: messageId(),
      topic: 'spool.minted',
      cursor: clock.next(),
      source: 's',
      ts: i,
      data: i,
    });
    // Two publishes minted here and a message gossiped from elsewhere, in one batch.
    const batch = [message(0), message(1), message(2)];
    const minted = [true, false, true];
    await spool.append(batch, { minted });
    assert.equal(spool.spoolDepth, 3);
    await spool.close();

    const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    const handed: (readonly boolean[] | undefined)[] = [];
    const seen: MessageStore = {
      ...sqlite,
      append: (messages, options) => {
        handed.push(options?.minted);
        return sqlite.append(messages, options);
      },
    };
    const back = createSpoolingStore(seen, { dataDir: spoolDir, drainIntervalMs: 20, log });
    await back.drained(10_000);
    assert.deepEqual(handed, [minted], 'minted here: Cassandra may write it without reading for it first');
    assert.deepEqual(
      (await back.history('spool.minted', { limit: 10 })).map((m) => m.id),
      batch.map((m) => m.id),
    );
    await back.close();
  });
});
