import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope, type MessageStore, messageId } from '@anode/shared';
import { createLogger } from '../../logger.ts';
import { awayCassandra } from './away-cassandra.fixture.ts';
import { createSqliteStore } from '../embedded/sqlite-store.ts';
import { createSpoolingStore } from './spooling-store.ts';

const log = createLogger('silent');

/** A Cassandra that is not there (connections refused). */
const unreachableCassandra = () => awayCassandra();

describe('spool size limit (spool_max_bytes) while Cassandra is away', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  const clock = createHybridClock('limit');
  const message = (i: number): Envelope => ({
    id: messageId(),
    topic: 'spool.limit',
    cursor: clock.next(),
    source: 'src',
    ts: Date.now(),
    data: { i, pad: 'x'.repeat(200) },
  });

  it('refuses publishes past the limit with `unavailable`, keeps every accepted one, and drains them all', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-limit-'));
    dirs.push(dir);
    const spoolDir = join(dir, 'spool');
    // About ten messages of ~300 bytes.
    const maxBytes = 3_000;
    const spool = createSpoolingStore(await unreachableCassandra(), {
      dataDir: spoolDir,
      drainIntervalMs: 60_000,
      log,
      maxBytes,
    });
    const accepted: Envelope[] = [];
    let refused: unknown;
    for (let i = 0; i < 50 && refused === undefined; i++) {
      const m = message(i);
      try {
        const [result] = await spool.append([m]);
        assert.equal(result?.inserted, true);
        accepted.push(m);
      } catch (error) {
        refused = error;
      }
    }
    assert.ok(accepted.length > 0, 'the spool took messages while it had room');
    assert.ok(refused !== undefined, 'a publish past the limit is refused, not spooled without end');
    assert.equal((refused as { code?: string }).code, 'unavailable');
    assert.match((refused as Error).message, /spool is full/);
    assert.equal(spool.spoolDepth, accepted.length, 'the refused one was not spooled; none accepted was dropped');
    const health = await spool.health();
    assert.equal(health.state, 'spooling');
    assert.ok((health.spool_bytes as number) <= maxBytes, `spool_bytes ${health.spool_bytes} within the limit`);
    // A batch that does not fit is refused whole.
    await assert.rejects(spool.append([message(100), message(101)]), { code: 'unavailable' });
    assert.equal(spool.spoolDepth, accepted.length);
    await spool.close();

    // The relay restarts with the store back: the limit counts what the file holds, and every
    // accepted message drains, once, in order.
    const store = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    const reopened = createSpoolingStore(store, { dataDir: spoolDir, drainIntervalMs: 20, log, maxBytes });
    assert.equal(reopened.spoolDepth, accepted.length);
    assert.ok(((await reopened.health()).spool_bytes as number) > 0, 'the bytes held are counted at start');
    await reopened.drained(10_000);
    const history = await reopened.history('spool.limit', { limit: 100 });
    assert.deepEqual(
      history.map((m) => m.id),
      accepted.map((m) => m.id),
    );
    assert.equal((await reopened.health()).spool_bytes, 0);
    // Room again: publishes are accepted.
    assert.equal((await reopened.append([message(200)]))[0]?.inserted, true);
    await reopened.close();
  });

  it('reports the node unhealthy while the full spool refuses publishes, and healthy once it drains', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-limit-'));
    dirs.push(dir);
    // A double standing for Cassandra (none runs in unit tests): a SQLite store that fails every
    // append as an outage while `down`.
    const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    let down = true;
    const cassandra: MessageStore = {
      ...sqlite,
      append: async (batch, options) => {
        if (down) throw new Error('no host available');
        return sqlite.append(batch, options);
      },
    };
    const spool = createSpoolingStore(cassandra, {
      dataDir: join(dir, 'spool'),
      drainIntervalMs: 20,
      log,
      maxBytes: 1_000,
    });
    await spool.append([message(0)]);
    const spooling = await spool.health();
    assert.equal(spooling.ok, true, 'writes still durable in the spool: healthy, degraded');
    await assert.rejects(spool.append([message(1), message(2), message(3), message(4)]), { code: 'unavailable' });
    const full = await spool.health();
    assert.equal(full.ok, false, 'every publish is refused: not healthy');
    assert.match(String(full.detail), /spool is full/);
    down = false;
    await spool.drained(10_000);
    const back = await spool.health();
    assert.equal(back.ok, true);
    assert.doesNotMatch(String(back.detail), /spool is full/);
    await spool.close();
  });
});
