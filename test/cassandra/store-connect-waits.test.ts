import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { promiseHooks } from 'node:v8';
import { after, describe, it } from 'node:test';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import { type CassandraServer, findJava } from './cassandra-server.ts';
import { sharedCassandra } from './shared-cassandra.ts';
import { testStoreOptions } from './store-options.ts';

/**
 * Every call of the Cassandra store (append, history, latest, topics, health…) waits on its
 * connect first. Once connected, that wait must leave nothing behind: a wait that also raced a
 * promise pending until close() left one reaction on it per call, for the life of the store
 * (~312 MB per million calls). Counted here as the promises chained onto one promise that is
 * still pending, not as heap size.
 */
const skip = !findJava() && !process.env.CI ? 'java is not installed (CI never skips this suite)' : false;

const CALLS = 5_000;

let server: CassandraServer | undefined;
after(async () => {
  await server?.stop();
});

describe('Cassandra store connect waits', { skip }, () => {
  it('leaves no reaction behind per call once connected', async () => {
    server = await sharedCassandra({ log: (line) => console.error(`[cassandra] ${line}`) });
    const store = createCassandraStore(testStoreOptions(server));
    try {
      await store.open?.();
      await store.latest('warm-up');
      // Promises chained onto each parent while the calls run.
      const children = new Map<Promise<unknown>, number>();
      const stop = promiseHooks.onInit((_promise, parent) => {
        if (parent) children.set(parent, (children.get(parent) ?? 0) + 1);
      });
      try {
        for (let n = 0; n < CALLS; n++) await store.latest('t');
      } finally {
        stop();
      }
      // A settled parent frees its reactions as they run; a pending one holds them all.
      const pending = (p: Promise<unknown>) => inspect(p).includes('<pending>');
      const heldOpen = [...children].filter(([parent, count]) => count >= CALLS / 2 && pending(parent));
      assert.deepEqual(
        heldOpen.map(([, count]) => count),
        [],
        'a promise still pending gathered a reaction per call',
      );
    } finally {
      await store.close();
    }
  });
});
