import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope, messageId } from '@anode/shared';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import type { Logger } from '@anode/relay-node/src/logger.ts';
import { type CassandraServer, findJava, startCassandra } from './cassandra-server.ts';
import { testStoreOptions } from './store-options.ts';

/**
 * Cassandra's write limit (native_transport_max_frame_size, max_mutation_size) changes only with
 * the node's configuration and a restart (5.0 has no nodetool command or JMX setter for either,
 * and system_views.settings is read-only), which the driver rides through without the store
 * connecting again. Read at connect only, a limit raised so was never seen until the relay
 * restarted: messages Cassandra would take were refused with too_large. The store reads it again
 * every limitRefreshMs (here 300 ms). As in cassandra-large-messages.test.ts the limits are a
 * sixteenth of their defaults (1 MiB), then raised to 4 MiB, then lowered back.
 */
const skip = !findJava() && !process.env.CI ? 'java is not installed (CI never skips this suite)' : false;
const MiB = 1024 * 1024;
const limitArgs = (mib: number) => [
  '-Dcassandra.config.allow_system_properties=true',
  `-Dcassandra.settings.commitlog_segment_size=${2 * mib}MiB`,
  `-Dcassandra.settings.native_transport_max_frame_size=${mib}MiB`,
];

describe('Cassandra write limit read again while connected', { skip }, () => {
  let server: CassandraServer | undefined;
  let paused = false;
  const dirs: string[] = [];
  after(async () => {
    if (server && paused) process.kill(server.pid, 'SIGCONT');
    await server?.stop();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  /** The same node (data, ports) started again with other limits, the relay's driver still on it. */
  const restartWith = async (mib: number) => {
    const s = server as CassandraServer;
    await s.stop();
    server = await startCassandra({
      fast: true,
      dataDir: s.dataDir,
      cqlPort: s.port,
      storagePort: s.storagePort,
      jvmArgs: limitArgs(mib),
      log: (line) => console.error(`[cassandra] ${line}`),
    });
  };

  it('sees a limit raised or lowered by a node restart, keeps the last one while reads fail, and logs each once', async () => {
    // Started without dataDir: a temp folder removed when this process exits, kept across restarts.
    server = await startCassandra({ fast: true, jvmArgs: limitArgs(1), log: (l) => console.error(`[cassandra] ${l}`) });
    const dir = await mkdtemp(join(tmpdir(), 'anode-limit-refresh-'));
    dirs.push(dir);
    const limitFile = join(dir, 'cassandra-write-limit');
    const logged: { level: string; fields: Record<string, unknown>; message: string }[] = [];
    const log = {
      warn: (fields: Record<string, unknown>, message: string) => void logged.push({ level: 'warn', fields, message }),
      info: (fields: Record<string, unknown>, message: string) => void logged.push({ level: 'info', fields, message }),
      error: () => {},
      debug: () => {},
      child: () => log,
    } as unknown as Logger;
    const store = createCassandraStore(
      testStoreOptions(server, { timeoutMs: 2_000, limitRefreshMs: 300, limitFile, maxMessageBytes: 3 * MiB, log }),
    );
    const clock = createHybridClock('refresh');
    const big = (): Envelope => ({
      id: messageId(),
      topic: 'limit.refresh',
      cursor: clock.next(),
      source: 's',
      ts: Date.now(),
      data: 'x'.repeat(2 * MiB),
    });
    /** Until `done()` holds (bounded: a node restart and the driver's reconnect take seconds). */
    const until = async (done: () => boolean, what: string, ms = 60_000) => {
      const deadline = Date.now() + ms;
      while (!done()) {
        if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    const kept = async () => Number(await readFile(limitFile, 'utf8'));
    const changes = () => logged.filter((l) => /write limit changed/.test(l.message));
    const failures = () => logged.filter((l) => /could not read Cassandra's write limits/.test(l.message));
    try {
      assert.equal((await store.health()).ok, true);
      assert.equal(store.tooLarge(big())?.code, 'too_large', 'over 1 MiB');
      assert.equal(await kept(), MiB);

      // Cassandra paused: reads time out, one warning for the streak, the last limit stands.
      process.kill(server.pid, 'SIGSTOP');
      paused = true;
      await until(() => failures().length > 0, 'a failed read logged', 10_000);
      await new Promise((resolve) => setTimeout(resolve, 2_500)); // more ticks, more failed reads
      process.kill(server.pid, 'SIGCONT');
      paused = false;
      assert.equal(failures().length, 1, 'logged once per streak');
      assert.equal(failures()[0]?.fields.write_limit_bytes, MiB);
      assert.equal(store.tooLarge(big())?.code, 'too_large', 'the last known limit kept');

      await restartWith(4);
      await until(() => store.tooLarge(big()) === undefined, 'the raised limit seen');
      const [raised] = await store.append([big()]);
      assert.equal(raised?.inserted, true, 'Cassandra takes what the raised limit lets through');
      assert.equal(await kept(), 4 * MiB, 'kept for the next start');
      assert.deepEqual(
        changes().map((l) => [l.level, l.fields.previous_write_limit_bytes, l.fields.write_limit_bytes]),
        [['info', MiB, 4 * MiB]],
      );

      await restartWith(1);
      await until(() => store.tooLarge(big()) !== undefined, 'the lowered limit seen');
      await assert.rejects(store.append([big()]), (error: Error & { code?: string; certain?: boolean }) => {
        assert.equal(error.code, 'too_large');
        assert.equal(error.certain, true, 'refused from the limit read, before anything was written');
        return true;
      });
      assert.equal(await kept(), MiB);
      const lowered = changes()[1];
      assert.equal(lowered?.level, 'warn', 'max_message_bytes (3 MiB) is now past what Cassandra takes');
      assert.match(lowered?.message ?? '', /changed from 4194304 to 1048576 bytes.*set max_message_bytes/);
      // Each restart may begin a streak of its own (reads fail while the node is down): one line each at most.
      assert.ok(failures().length <= 3, `${failures().length} failures logged for 3 streaks`);
    } finally {
      await store.close();
    }
  });
});
