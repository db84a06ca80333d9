import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { createHybridClock, type Envelope, randomNodeId } from '@anode/shared';
import {
  createCassandraStore,
  type CassandraStoreOptions,
} from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import { createLogger } from '@anode/relay-node/src/logger.ts';
import { createSpoolingStore } from '@anode/relay-node/src/storage/spool/spooling-store.ts';
import { tempDir } from '../helpers/relay.ts';
import { type CassandraServer, findJava, startCassandra } from './cassandra-server.ts';
import { testStoreOptions } from './store-options.ts';

/**
 * Closing the Cassandra store (behind its spool, as the relay runs it) while Cassandra is silent
 * (its JVM paused with SIGSTOP): close() keeps within closeTimeoutMs, the relay's part of
 * shutdown_grace_ms, instead of waiting out cassandra_timeout_ms for a lease release or a connect.
 */
const skip = !findJava() && !process.env.CI ? 'java is not installed (CI never skips this suite)' : false;

/** The store's timeout, long as in production (60 s there), and the close bound under test. */
const TIMEOUT_MS = 20_000;
const CLOSE_TIMEOUT_MS = 1_000;
/** Far above CLOSE_TIMEOUT_MS and far below TIMEOUT_MS: a close that waits on Cassandra passes it. */
const CLOSED_WITHIN_MS = TIMEOUT_MS / 2;

let server: CassandraServer | undefined;
const serverReady = skip
  ? Promise.resolve(undefined)
  : startCassandra({ fast: true, log: (line) => console.error(`[cassandra] ${line}`) }).then((s) => (server = s));

after(async () => {
  if (server) process.kill(server.pid, 'SIGCONT');
  await server?.stop();
});

function capturedLog() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}

const storeOptions = (s: CassandraServer, log: ReturnType<typeof createLogger>): CassandraStoreOptions =>
  testStoreOptions(s, {
    timeoutMs: TIMEOUT_MS,
    closeTimeoutMs: CLOSE_TIMEOUT_MS,
    log,
    lease: { nodeId: randomNodeId(12), holder: 'relay-a /data', leaseS: 30, renewMs: 10_000 },
  });

const clock = createHybridClock('cls');
const message = (id: string): Envelope => ({
  id,
  topic: 'close.t',
  cursor: clock.next(),
  source: 'test',
  ts: Date.now(),
  data: id,
});

/** How long `close` takes, with Cassandra paused meanwhile (resumed after, whatever happens). */
async function closeWhilePaused(s: CassandraServer, close: () => Promise<void>): Promise<number> {
  const started = Date.now();
  try {
    await close();
    return Date.now() - started;
  } finally {
    process.kill(s.pid, 'SIGCONT');
  }
}

describe('closing the Cassandra store while Cassandra is silent', { skip }, () => {
  before(async () => {
    await serverReady;
  });

  it('skips the lease release it cannot finish in time, with a warning that the lease expires on its own', async () => {
    const s = (await serverReady) as CassandraServer;
    const dir = await tempDir();
    const { log, lines } = capturedLog();
    const store = createSpoolingStore(createCassandraStore(storeOptions(s, log)), {
      dataDir: dir,
      drainIntervalMs: 100,
      log,
    });
    try {
      await store.append([message('first')]); // connected, lease held
      process.kill(s.pid, 'SIGSTOP');
      const took = await closeWhilePaused(s, () => store.close());
      assert.ok(took < CLOSED_WITHIN_MS, `close took ${took} ms`);
      assert.ok(
        lines.some((line) => line.level === 'warn' && /expires on its own/.test(String(line.msg))),
        'a warning says the lease was left to expire',
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('does not wait for a connect in flight, and the publish waiting on it settles', async () => {
    const s = (await serverReady) as CassandraServer;
    const dir = await tempDir();
    const { log } = capturedLog();
    const store = createSpoolingStore(createCassandraStore(storeOptions(s, log)), {
      dataDir: dir,
      drainIntervalMs: 100,
      log,
    });
    try {
      process.kill(s.pid, 'SIGSTOP');
      const publish = store.append([message('while-connecting')]).then(
        () => 'settled',
        () => 'settled',
      );
      await new Promise((r) => setTimeout(r, 300)); // the connect is under way
      const took = await closeWhilePaused(s, () => store.close());
      assert.ok(took < CLOSED_WITHIN_MS, `close took ${took} ms`);
      assert.equal(await publish, 'settled');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
