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
import { createSpoolingStore, REFUSED_IN_A_ROW, type SpoolOptions } from './spooling-store.ts';

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
 * outage while `down`. `certain`: refused as the store's own size check does (against a limit it
 * knows, without asking Cassandra), not as Cassandra's answer.
 */
function cassandraDouble(dir: string, refuses: (m: Envelope) => boolean, certain = false) {
  const sqlite = createSqliteStore({ dataDir: dir, retention: { maxAgeMs: 0, maxMessages: 0 } });
  const state = { down: true };
  const store: MessageStore = {
    ...sqlite,
    append: async (batch, options) => {
      if (state.down) throw new Error('no host available');
      if (batch.some(refuses)) {
        throw certain
          ? new StoreRejectedError('too_large', 'larger than Cassandra accepts in one write', { certain })
          : new StoreRejectedError('too_large', 'Rejected an oversized mutation');
      }
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
  const setUp = async (
    refuses: (m: Envelope) => boolean,
    { certain = false, ...options }: { certain?: boolean } & Partial<SpoolOptions> = {},
  ) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-refused-'));
    dirs.push(dir);
    const cassandra = cassandraDouble(join(dir, 'store'), refuses, certain);
    const spoolDir = join(dir, 'spool');
    const spool = createSpoolingStore(cassandra.store, { dataDir: spoolDir, drainIntervalMs: 20, log, ...options });
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

  it('moves rows the store refused from their own size at once, however many come in a row', async () => {
    // Refused by the store's own size check (a limit it knows), not by Cassandra: certain to be
    // about each message alone, so REFUSED_IN_A_ROW does not apply.
    const bigs = Array.from({ length: REFUSED_IN_A_ROW + 2 }, (_, i) => `big${i}`);
    const { spool, spoolDir, state } = await setUp((m) => m.id.startsWith('big'), { certain: true });
    await spool.append(['a', ...bigs, 'c'].map(message));
    state.down = false;
    await spool.drained(10_000);
    assert.deepEqual(setAside(spoolDir), bigs);
    assert.deepEqual(
      (await spool.history('refused', { limit: 10 })).map((m) => m.id),
      ['a', 'c'],
    );
    assert.equal((await spool.health()).spool_rejected, bigs.length);
    await spool.close();
  });

  it('moves certain refusals aside among others and still stops on a run of the others', async () => {
    // Three of Cassandra's own refusals, a certain one, three more: six of Cassandra's in a row
    // with none stored between them (the certain one neither counts nor breaks the run).
    const ids = ['n0', 'n1', 'n2', 'big', 'n3', 'n4', 'n5'];
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-refused-'));
    dirs.push(dir);
    const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    let down = true;
    const store: MessageStore = {
      ...sqlite,
      append: async (batch, options) => {
        if (down) throw new Error('no host available');
        if (batch.some((m) => m.id === 'big'))
          throw new StoreRejectedError('too_large', 'over the known limit', { certain: true });
        if (batch.some((m) => m.id.startsWith('n')))
          throw new StoreRejectedError('too_large', 'Rejected an oversized mutation');
        return sqlite.append(batch, options);
      },
    };
    const spoolDir = join(dir, 'spool');
    const spool = createSpoolingStore(store, { dataDir: spoolDir, drainIntervalMs: 20, log });
    await spool.append(ids.map(message));
    down = false;
    await new Promise((r) => setTimeout(r, 300)); // several drain attempts
    assert.deepEqual(setAside(spoolDir), ['big']);
    assert.equal(spool.spoolDepth, ids.length - 1);
    assert.match(String((await spool.health()).last_error), /refused \d+ spooled messages in a row/);
    await spool.close();
  });

  it('refuses a publish the store already knows is too large while spooling, instead of acking it', async () => {
    const tooLarge = (m: Envelope) =>
      m.id.startsWith('big')
        ? new StoreRejectedError('too_large', 'over the known limit', { certain: true })
        : undefined;
    const { spool, spoolDir, state } = await setUp(() => false, { tooLarge });
    // The store is away and the spool empty: the append fails as an outage, then would spool.
    await assert.rejects(spool.append([message('big0')]), { code: 'too_large' });
    assert.equal(spool.spoolDepth, 0, 'not spooled');
    await spool.append([message('a')]);
    assert.equal(spool.spoolDepth, 1);
    // The spool holds messages: appends go to it without asking the store.
    await assert.rejects(spool.append([message('big1')]), { code: 'too_large' });
    // A batch holding one is refused whole (the writer halves it down to that publish).
    await assert.rejects(spool.append([message('b'), message('big2')]), { code: 'too_large' });
    assert.equal(spool.spoolDepth, 1, 'none of them spooled');
    await spool.append([message('c')]);
    state.down = false;
    await spool.drained(10_000);
    assert.deepEqual(setAside(spoolDir), []);
    assert.deepEqual(
      (await spool.history('refused', { limit: 10 })).map((m) => m.id),
      ['a', 'c'],
    );
    await spool.close();
  });
});
