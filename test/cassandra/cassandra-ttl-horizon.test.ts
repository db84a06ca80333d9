import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope, messageId, randomNodeId } from '@anode/shared';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import { type CassandraServer, findJava } from './cassandra-server.ts';
import { sharedCassandra } from './shared-cassandra.ts';
import { testStoreOptions } from './store-options.ts';

/**
 * Retention by TTL at its edge: a message is either still in history or past the horizon that
 * `trimmedThrough` reports (so a resume from before it is refused with cursor_expired), never
 * gone silently. A cursor ahead of the writer's clock (an HLC that followed a peer whose clock is
 * ahead, up to MAX_CLOCK_SKEW_MS) expired by the writer's clock: its message vanished while
 * trimmedThrough still said nothing was trimmed past it.
 */
const skip = !findJava() && !process.env.CI ? 'java is not installed (CI never skips this suite)' : false;

let server: CassandraServer | undefined;
const serverReady = skip
  ? Promise.resolve(undefined)
  : sharedCassandra({ log: (line) => console.error(`[cassandra] ${line}`) }).then((s) => (server = s));
after(async () => {
  await server?.stop();
});

const bounded = <T>(work: Promise<T>, what: string, ms = 60_000) =>
  Promise.race([
    work,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms).unref(),
    ),
  ]);

describe('Cassandra retention horizon', { skip }, () => {
  it('a message whose cursor is ahead of the clock is not gone before trimmedThrough passes it', async () => {
    const s = (await serverReady) as CassandraServer;
    const maxAgeMs = 2_000;
    const store = createCassandraStore(
      testStoreOptions(s, { timeoutMs: 10_000, retention: { maxAgeMs, maxMessages: 0 } }),
    );
    try {
      // This node's clock followed a peer 30 s ahead (within MAX_CLOCK_SKEW_MS).
      const clock = createHybridClock(randomNodeId(), () => Date.now() + 30_000);
      const ahead: Envelope = {
        id: messageId(),
        topic: 'ttl.ahead',
        cursor: clock.next(),
        source: 's',
        ts: Date.now(),
        data: 'ahead',
      };
      await bounded(store.append([ahead], { minted: [true] }), 'append');
      // Well past maxAgeMs by this clock (generous: Cassandra counts TTLs in whole seconds).
      await new Promise((r) => setTimeout(r, maxAgeMs + 2_500));
      const page = await bounded(store.history('ttl.ahead', { limit: 10 }), 'history');
      const mark = await bounded(store.trimmedThrough('ttl.ahead'), 'trimmedThrough');
      const kept = page.some((m) => m.id === ahead.id);
      assert.ok(
        kept || (mark !== undefined && mark >= ahead.cursor),
        `gone from history (${page.length} messages) while trimmedThrough is ${mark}, before its cursor ${ahead.cursor}`,
      );
    } finally {
      await store.close();
    }
  });
});
