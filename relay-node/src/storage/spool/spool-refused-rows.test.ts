import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope, type MessageStore } from '@anode/shared';
import { createLogger } from '../../logger.ts';
import { createSqliteStore } from '../embedded/sqlite-store.ts';
import { StoreRejectedError } from '../store-rejected.ts';
import { createSpoolingStore, REFUSED_IN_A_ROW } from './spooling-store.ts';

const log = createLogger('silent');
const clock = createHybridClock('refd');
const message = (id: string): Envelope => ({
  id,
  topic: 'refused',
  cursor: clock.next(),
  source: 's',
  ts: 1,
  data: id,
});

/**
 * A double standing for Cassandra (none runs in unit tests): a SQLite store whose appends are
 * refused for good (StoreRejectedError) while `refuses` says so for a message, and failed as an
 * outage while `down`.
 */
function cassandraDouble(dir: string, refuses: (m: Envelope) => boolean) {
  const sqlite = createSqliteStore({ dataDir: dir, retention: { maxAgeMs: 0, maxMessages: 0 } });
  const state = { down: true };
  const store: MessageStore = {
    ...sqlite,
    append: async (batch, options) => {
      if (state.down) throw new Error('no host available');
      if (batch.some(refuses)) throw new StoreRejectedError('too_large', 'Rejected an oversized mutation');
      return sqlite.append(batch, options);
    },
  };
  return { store, state };
}

const setAside = (spoolDir: string) => {
  const db = new DatabaseSync(join(spoolDir, 'spool.sqlite'));
  try {
    return (db.prepare('SELECT id FROM spool_rejected ORDER BY seq').all() as { id: string }[]).map((r) => r.id);
  } finally {
    db.close();
  }
};

describe('spool drain: refused rows', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  const setUp = async (refuses: (m: Envelope) => boolean) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-refused-'));
    dirs.push(dir);
    const cassandra = cassandraDouble(join(dir, 'store'), refuses);
    const spoolDir = join(dir, 'spool');
    const spool = createSpoolingStore(cassandra.store, { dataDir: spoolDir, drainIntervalMs: 20, log });
    return { spool, spoolDir, state: cassandra.state };
  };

  it('moves a lone refused row aside and drains the rest', async () => {
    const { spool, spoolDir, state } = await setUp((m) => m.id === 'big');
    await spool.append(['a', 'big', 'c'].map(message));
    state.down = false;
    await spool.drained(10_000);
    assert.deepEqual(setAside(spoolDir), ['big']);
    assert.deepEqual(
      (await spool.history('refused', { limit: 10 })).map((m) => m.id),
      ['a', 'c'],
    );
    await spool.close();
  });

  it(`stops as in an outage, keeping the rows, when ${REFUSED_IN_A_ROW} rows in a row are refused`, async () => {
    // Every write refused alike (say, a column not yet known to the coordinator): not the messages' fault.
    const { spool, spoolDir, state } = await setUp(() => true);
    const ids = Array.from({ length: REFUSED_IN_A_ROW + 3 }, (_, i) => `m${i}`);
    await spool.append(ids.map(message));
    state.down = false;
    await new Promise((r) => setTimeout(r, 300)); // several drain attempts
    assert.deepEqual(setAside(spoolDir), []);
    assert.equal(spool.spoolDepth, ids.length);
    const health = await spool.health();
    assert.match(String(health.last_error), /refused \d+ spooled messages in a row/);
    await spool.close();
  });
});
