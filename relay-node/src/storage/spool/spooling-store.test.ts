import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope, type MessageStore, UnavailableError } from '@anode/shared';
import { createLogger } from '../../logger.ts';
import { createSqliteStore } from '../embedded/sqlite-store.ts';
import { messageStoreCompliance } from '../message-store.compliance.ts';
import { StoreRejectedError } from '../store-rejected.ts';
import { BucketSizeMismatchError } from '../cassandra/schema.ts';
import { createSpoolingStore, RECENT_IDS } from './spooling-store.ts';

const log = createLogger('silent');

// While the remote store answers, the spooling store is that store: the whole suite holds.
messageStoreCompliance(
  'spooling store in front of SQLite',
  async () => {
    let dir = await mkdtemp(join(tmpdir(), 'anode-spool-'));
    return {
      async open(retention, options) {
        if (!options?.reopen) {
          await rm(dir, { recursive: true, force: true });
          dir = await mkdtemp(join(tmpdir(), 'anode-spool-'));
        }
        const primary = createSqliteStore({ dataDir: join(dir, 'store'), retention });
        return createSpoolingStore(primary, { dataDir: join(dir, 'spool'), drainIntervalMs: 20, log });
      },
      async cleanup() {
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
  { countRetention: true, ageRetention: true },
);

/**
 * Test double for the one thing this unit test cannot produce: a remote store that goes away and
 * comes back. It forwards to a real SQLite store, or fails every call while `down` (the Cassandra
 * suite does the same with a real Cassandra that is stopped).
 */
function outageSwitch(inner: MessageStore) {
  const state = { down: false };
  const guard =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      if (state.down) throw new Error('remote store unreachable (outage switch)');
      return fn(...args);
    };
  const store: MessageStore = {
    kind: inner.kind,
    append: guard(inner.append),
    history: guard(inner.history),
    latest: guard(inner.latest),
    topics: guard(inner.topics),
    trimmedThrough: guard(inner.trimmedThrough),
    sweep: guard(inner.sweep),
    health: async () => (state.down ? { ok: false, detail: 'unreachable' } : inner.health()),
    close: () => inner.close(),
  };
  return { store, state };
}

describe('spooling store while the remote store is away (the degraded contract)', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  const clock = createHybridClock('spool');
  const keyed = (key: string, data: unknown = key): Envelope => ({
    id: `k${key}`,
    topic: 'spool.t',
    cursor: clock.next(),
    source: 'src',
    ts: Date.now(),
    data,
  });

  it('answers a republished id with its first copy, spooled or recent, and drains each id once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-'));
    dirs.push(dir);
    const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    // Stored before this spooling store existed: beyond anything it can remember.
    const ancient = keyed('ancient');
    await sqlite.append([ancient]);
    const { store: remote, state } = outageSwitch(sqlite);
    const spool = createSpoolingStore(remote, { dataDir: join(dir, 'spool'), drainIntervalMs: 20, log });

    const before = keyed('before');
    assert.equal((await spool.append([before]))[0]?.inserted, true);

    state.down = true;
    // Republished during the outage: the same id with a new cursor, as a relay mints it.
    const [again] = await spool.append([{ ...before, cursor: clock.next(), data: 'retry' }]);
    assert.deepEqual(again, { envelope: before, inserted: false }, 'recent id: the stored copy, not new');

    const during = keyed('during');
    const [first] = await spool.append([during]);
    assert.equal(first?.inserted, true);
    const [second, third] = await spool.append([
      { ...during, cursor: clock.next() },
      { ...during, cursor: clock.next() },
    ]);
    assert.deepEqual(second, { envelope: during, inserted: false }, 'spooled id: the spooled copy, one cursor');
    assert.deepEqual(third, { envelope: during, inserted: false });
    assert.equal(spool.spoolDepth, 1, 'the spool holds one copy of it');

    // Pinned limit: an id stored before the remembered window is invisible while the store is away.
    const ancientAgain = { ...ancient, cursor: clock.next() };
    const [blind] = await spool.append([ancientAgain]);
    assert.deepEqual(blind, { envelope: ancientAgain, inserted: true }, 'acknowledged as new, with the new cursor');

    await assert.rejects(spool.history('spool.t', { limit: 10 }), UnavailableError);
    const health = await spool.health();
    assert.equal(health.ok, true);
    assert.equal(health.state, 'spooling');
    assert.equal(health.spool_depth, 2);

    state.down = false;
    await spool.drained(5_000);
    const history = await spool.history('spool.t', { limit: 10 });
    assert.deepEqual(
      history.map((m) => [m.id, m.cursor]),
      [ancient, before, during].map((m) => [m.id, m.cursor]),
      'each id stored once, under its first cursor',
    );
    await spool.close();
  });

  it('refuses, without spooling, a write the remote store refuses because another relay holds this node id', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-'));
    dirs.push(dir);
    const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    // The Cassandra store's answer once its node-id lease is found held (node-lease.ts).
    const inUse = Object.assign(new Error('node id spool is in use by another relay (test double)'), {
      code: 'node_id_in_use',
    });
    const refusing: MessageStore = {
      ...sqlite,
      append: async () => {
        throw inUse;
      },
    };
    const spool = createSpoolingStore(refusing, { dataDir: join(dir, 'spool'), drainIntervalMs: 20, log });
    await assert.rejects(spool.append([keyed('twin')]), /in use by another relay/);
    assert.equal(spool.spoolDepth, 0, 'spooled, it would overwrite the other relay’s messages when it drains');
    await spool.close();
  });

  it("refuses, without spooling, a write the remote store refuses for a bucket size not its keyspace's", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-'));
    dirs.push(dir);
    const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    // The Cassandra store's answer once it finds its keyspace recorded with another size (schema.ts).
    const mismatch = new BucketSizeMismatchError('anode', 3_600_000, 60_000);
    const refusing: MessageStore = {
      ...sqlite,
      append: async () => {
        throw mismatch;
      },
    };
    const spool = createSpoolingStore(refusing, { dataDir: join(dir, 'spool'), drainIntervalMs: 20, log });
    await assert.rejects(spool.append([keyed('sized')]), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'bucket_size_mismatch');
      return true;
    });
    assert.equal(spool.spoolDepth, 0, 'spooled, it would be acked and never drained');
    await spool.close();
  });

  it('refuses a message the store refuses for good, and shows no last_error for it or after it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-'));
    dirs.push(dir);
    const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    const refusing: MessageStore = {
      ...sqlite,
      append: async (messages, options) => {
        if (messages.some((m) => m.data === 'too large')) {
          throw new StoreRejectedError('too_large', 'Rejected an oversized mutation (test double)');
        }
        return sqlite.append(messages, options);
      },
    };
    const spool = createSpoolingStore(refusing, { dataDir: join(dir, 'spool'), drainIntervalMs: 20, log });
    await assert.rejects(spool.append([keyed('big', 'too large')]), /oversized mutation/);
    assert.equal(spool.spoolDepth, 0);
    // Before, the message of that one refusal stayed in the status while the store answered.
    assert.equal((await spool.health()).last_error, undefined);
    await spool.append([keyed('fine')]);
    assert.equal((await spool.health()).last_error, undefined);
    await spool.close();
  });

  it('shows no last_error once the store takes writes again after another relay held this node id', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-'));
    dirs.push(dir);
    const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    let held = true;
    const leased: MessageStore = {
      ...sqlite,
      append: async (messages, options) => {
        if (held) throw Object.assign(new Error('node id spool is in use (test double)'), { code: 'node_id_in_use' });
        return sqlite.append(messages, options);
      },
    };
    const spool = createSpoolingStore(leased, { dataDir: join(dir, 'spool'), drainIntervalMs: 20, log });
    await assert.rejects(spool.append([keyed('twin2')]), /in use/);
    assert.match(String((await spool.health()).last_error), /in use/);
    held = false;
    await spool.append([keyed('after')]);
    assert.equal((await spool.health()).last_error, undefined);
    await spool.close();
  });

  it('keeps last_error while writes wait in the spool, though an append begun before the outage ends well', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-'));
    dirs.push(dir);
    const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let down = false;
    const flaky: MessageStore = {
      ...sqlite,
      append: async (messages, options) => {
        if (messages.some((m) => m.data === 'slow'))
          await gate; // on its way when the store went away
        else if (down) throw new Error('store unreachable (test double)');
        return sqlite.append(messages, options);
      },
    };
    // A drain interval long enough that the drain does not run within the test's steps.
    const spool = createSpoolingStore(flaky, { dataDir: join(dir, 'spool'), drainIntervalMs: 60_000, log });
    const slow = spool.append([keyed('slow', 'slow')]);
    down = true;
    await spool.append([keyed('spooled')]);
    assert.equal(spool.spoolDepth, 1);
    release();
    await slow;
    const health = await spool.health();
    assert.equal(health.spool_depth, 1);
    assert.match(String(health.last_error), /unreachable/, 'the outage still shows while the spool holds its write');
    await spool.close();
  });

  it('logs an outage that lasts once with its stack, not a stack per drain attempt', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-'));
    dirs.push(dir);
    const lines: { msg: string; err?: { stack?: string }; failed_attempts?: number }[] = [];
    const capture = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) });
    const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    const { store: remote, state } = outageSwitch(sqlite);
    const spool = createSpoolingStore(remote, { dataDir: join(dir, 'spool'), drainIntervalMs: 5, log: capture });
    state.down = true;
    await spool.append([keyed('outage')]);
    // Dozens of failed drains 5 ms apart, all within one OUTAGE_LOG_MS.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const down = lines.filter((l) => l.msg.startsWith('store still unavailable'));
    assert.equal(down.length, 1, `one line for the whole outage so far: ${JSON.stringify(lines.map((l) => l.msg))}`);
    assert.match(down[0]?.err?.stack ?? '', /outage switch/, 'the first failure keeps its stack');
    state.down = false;
    await spool.drained(5_000);
    const back = lines.find((l) => l.msg === 'store is back; spool empty');
    assert.ok((back?.failed_attempts ?? 0) > 3, `the attempts are counted: ${back?.failed_attempts}`);
    await spool.close();
  });

  it('remembers spooled ids across a restart, and only a bounded window of recent ones', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-'));
    dirs.push(dir);
    const open = () => {
      const sqlite = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
      const { store, state } = outageSwitch(sqlite);
      return { spool: createSpoolingStore(store, { dataDir: join(dir, 'spool'), drainIntervalMs: 20, log }), state };
    };
    let { spool, state } = open();
    const oldest = keyed('oldest');
    await spool.append([oldest]);
    // Push `oldest` out of the remembered window.
    const filler = Array.from({ length: RECENT_IDS }, (_, i) => keyed(`fill${i}`));
    await spool.append(filler);
    state.down = true;
    const spooledOne = keyed('spooled');
    await spool.append([spooledOne]);
    const [beyond] = await spool.append([{ ...oldest, cursor: clock.next() }]);
    assert.equal(beyond?.inserted, true, `${RECENT_IDS + 1} ids back is beyond the window`);
    await spool.close();

    ({ spool, state } = open());
    state.down = true;
    const [afterRestart] = await spool.append([{ ...spooledOne, cursor: clock.next() }]);
    assert.deepEqual(afterRestart, { envelope: spooledOne, inserted: false }, 'the spool file still knows it');
    state.down = false;
    await spool.drained(5_000);
    const stored = await spool.history('spool.t', { limit: RECENT_IDS + 10 });
    assert.equal(stored.length, RECENT_IDS + 2);
    assert.equal(stored.find((m) => m.id === oldest.id)?.cursor, oldest.cursor, 'the first copy was kept');
    await spool.close();
  });
});
