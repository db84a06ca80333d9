import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope, type MessageStore, messageId } from '@anode/shared';
import { createLogger } from '../../logger.ts';
import { createSqliteStore } from '../embedded/sqlite-store.ts';
import { awayCassandra } from './away-cassandra.fixture.ts';
import { createSpoolingStore, DRAIN_BYTES } from './spooling-store.ts';

const log = createLogger('silent');

describe('spool drain', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('drains large messages in appends bounded by bytes, in order, each once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-drain-'));
    dirs.push(dir);
    const spoolDir = join(dir, 'spool');
    // Spooled while Cassandra is away (a real Cassandra store on a port nothing listens on).
    const away = await awayCassandra();
    const spool = createSpoolingStore(away, { dataDir: spoolDir, drainIntervalMs: 60_000, log });
    const clock = createHybridClock('drain');
    const big = 'x'.repeat(512 * 1024);
    const messages = Array.from({ length: 24 }, (_, i): Envelope => ({
      id: messageId(),
      topic: 'spool.drain',
      cursor: clock.next(),
      source: 's',
      ts: i,
      data: big,
    }));
    for (let i = 0; i < messages.length; i += 6) await spool.append(messages.slice(i, i + 6));
    assert.equal(spool.spoolDepth, messages.length);
    await spool.close();

    // Back (the relay restarted onto a store that answers): the appends the drain makes are seen.
    const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    const batches: number[][] = [];
    const seen: MessageStore = {
      ...sqlite,
      append: (batch, options) => {
        batches.push(batch.map((m) => Buffer.byteLength(JSON.stringify(m))));
        return sqlite.append(batch, options);
      },
    };
    const back = createSpoolingStore(seen, { dataDir: spoolDir, drainIntervalMs: 20, log });
    await back.drained(30_000);
    assert.ok(batches.length > 1, `~12 MiB spooled goes in several appends, not one: ${batches.length}`);
    for (const sizes of batches) {
      const total = sizes.reduce((a, b) => a + b, 0);
      const withoutLast = total - (sizes.at(-1) ?? 0);
      assert.ok(sizes.length === 1 || withoutLast <= DRAIN_BYTES, `a drain append of ${total} bytes`);
    }
    const history = await back.history('spool.drain', { limit: 100 });
    assert.deepEqual(
      history.map((m) => m.id),
      messages.map((m) => m.id),
    );
    assert.equal((await back.health()).spool_bytes, 0);
    await back.close();
  });
});
