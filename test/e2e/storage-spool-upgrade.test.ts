import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { createHybridClock, type Envelope, type MessageStore } from '@anode/shared';
import { createLogger } from '@anode/relay-node/src/logger.ts';
import { createSqliteStore } from '@anode/relay-node/src/storage/embedded/sqlite-store.ts';
import { createSpoolingStore } from '@anode/relay-node/src/storage/spool/spooling-store.ts';
import { tempDir } from '../helpers/relay.ts';

const log = createLogger('silent');

/**
 * Test double for Cassandra, which cannot run here: a real SQLite store whose appends fail while
 * `down` (writes refused, reads answered: the spool neither drains nor hides what it holds).
 */
function failingAppends(inner: MessageStore) {
  const state = { down: false };
  const store: MessageStore = {
    ...inner,
    append: async (messages, options) => {
      if (state.down) throw new Error('remote store unreachable (test double)');
      return inner.append(messages, options);
    },
  };
  return { store, state };
}

describe('spool written by the first spooling relay (envelope only), opened by this one', () => {
  it('reads its acked rows as history, latest and topics, and answers a resend of one with it', async () => {
    const dir = await tempDir('anode-spool-upgrade-');
    const clock = createHybridClock('spoolup');
    const make = (topic: string, source: string, data: string): Envelope => ({
      id: `k${clock.next().replace(/[^0-9a-z]/g, '')}`,
      topic,
      cursor: clock.next(),
      source,
      ts: Date.now(),
      data,
    });
    const openPrimary = () =>
      createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    let primary = openPrimary();
    const { store: remote, state } = failingAppends(primary);
    const stored = make('up.t', 'a', 'stored before the outage');
    await primary.append([stored]);
    // Acked while the store was away, by a relay whose spool table had only `seq` and `envelope`.
    const spooled = [make('up.t', 'a', 'spooled 1'), make('up.t', 'b', 'spooled 2'), make('up.only', 'a', 'only here')];
    await mkdir(join(dir, 'spool'), { recursive: true });
    const legacy = new DatabaseSync(join(dir, 'spool', 'spool.sqlite'));
    legacy.exec('CREATE TABLE spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, envelope TEXT NOT NULL)');
    for (const m of spooled) legacy.prepare('INSERT INTO spool (envelope) VALUES (?)').run(JSON.stringify(m));
    legacy.close();

    state.down = true; // the drain (it starts at once) fails: the rows stay spooled
    let spooling = createSpoolingStore(remote, { dataDir: join(dir, 'spool'), drainIntervalMs: 600_000, log });
    try {
      assert.equal(spooling.spoolDepth, 3);
      const data = (messages: readonly Envelope[]) => messages.map((m) => m.data);
      assert.deepEqual(
        data(await spooling.history('up.t', { limit: 10 })),
        ['stored before the outage', 'spooled 1', 'spooled 2'],
        'a resume reads the acked messages still in the spool',
      );
      assert.deepEqual(data(await spooling.history('up.only', { limit: 10 })), ['only here']);
      assert.deepEqual((await spooling.topics()).sort(), ['up.only', 'up.t']);
      const latest = await spooling.latest('up.t');
      assert.deepEqual([latest.a?.data, latest.b?.data], ['spooled 1', 'spooled 2']);

      // A publisher's resend (same id) is the message already acked: answered with it, not spooled again.
      const resend = { ...(spooled[0] as Envelope), cursor: clock.next() };
      const [again] = await spooling.append([resend]);
      assert.equal(again?.inserted, false);
      assert.equal(again?.envelope.cursor, spooled[0]?.cursor);
      assert.equal(spooling.spoolDepth, 3);
      assert.equal(await spooling.history('up.t', { limit: 10 }).then((page) => page.length), 3);
      await spooling.close(); // closes the store behind it too

      // Reopened (as after a restart) with the store back, the spool drains: history holds each once.
      primary = openPrimary();
      spooling = createSpoolingStore(primary, { dataDir: join(dir, 'spool'), drainIntervalMs: 20, log });
      await spooling.drained(10_000);
      assert.deepEqual(data(await primary.history('up.t', { limit: 10 })), [
        'stored before the outage',
        'spooled 1',
        'spooled 2',
      ]);
      assert.deepEqual(data(await primary.history('up.only', { limit: 10 })), ['only here']);
    } finally {
      await spooling.close();
    }
  });
});
