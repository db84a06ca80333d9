import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { randomNodeId } from '@anode/shared';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import type { Logger } from '@anode/relay-node/src/logger.ts';
import { startRelay, tempDir } from '../helpers/relay.ts';
import { type CassandraServer, findJava, startCassandra } from './cassandra-server.ts';
import { testStoreOptions } from './store-options.ts';

/**
 * Cassandra's write limit (native_transport_max_frame_size, max_mutation_size) is read at connect.
 * A relay restarted while Cassandra is away did not know it: a message over it was spooled and
 * acked (202), then moved aside by the drain (acked, never in history). The limit a connect read is
 * kept in the data folder (`cassandra-write-limit`) for the next start. As in
 * cassandra-large-messages.test.ts, Cassandra's limits are a sixteenth of their defaults (1 MiB).
 */
const skip = !findJava() && !process.env.CI ? 'java is not installed (CI never skips this suite)' : false;
const MiB = 1024 * 1024;

describe('Cassandra write limit across a restart while Cassandra is away', { skip }, () => {
  let server: CassandraServer | undefined;
  let stopped = false;
  before(async () => {
    server = await startCassandra({
      fast: true,
      jvmArgs: [
        '-Dcassandra.config.allow_system_properties=true',
        '-Dcassandra.settings.commitlog_segment_size=2MiB',
        '-Dcassandra.settings.native_transport_max_frame_size=1MiB',
      ],
      log: (line) => console.error(`[cassandra] ${line}`),
    });
  });
  after(async () => {
    if (server && stopped) process.kill(server.pid, 'SIGCONT');
    await server?.stop();
  });

  it('warns at connect when max_message_bytes is larger than Cassandra takes in one write', async () => {
    const s = server as CassandraServer;
    const warnings: { fields: Record<string, unknown>; message: string }[] = [];
    const log = {
      warn: (fields: Record<string, unknown>, message: string) => void warnings.push({ fields, message }),
      info: () => {},
      error: () => {},
      debug: () => {},
      child: () => log,
    } as unknown as Logger;
    const store = createCassandraStore(testStoreOptions(s, { timeoutMs: 5_000, maxMessageBytes: 2 * MiB, log }));
    try {
      assert.equal((await store.health()).ok, true);
      const warning = warnings.find((w) => /max_message_bytes is larger than Cassandra takes/.test(w.message));
      assert.ok(warning, `warned: ${JSON.stringify(warnings.map((w) => w.message))}`);
      assert.equal(warning.fields.max_message_bytes, 2 * MiB);
      assert.ok((warning.fields.largest_data_bytes as number) < MiB);
    } finally {
      await store.close();
    }
  });

  it('refuses a message over the limit with too_large after a restart while Cassandra is away, acking none it cannot write', async () => {
    const s = server as CassandraServer;
    const dataDir = await tempDir();
    const flags = {
      store: 'cassandra',
      'cassandra-contact-points': `${s.host}:${s.port}`,
      'cassandra-keyspace': `t_${randomNodeId(12)}`,
      'cassandra-replication': 'SimpleStrategy:1',
      'cassandra-timeout-ms': '1500',
      'spool-drain-ms': '200',
      'max-message-bytes': String(2 * MiB),
    };
    const post = async (url: string, data: string) => {
      const response = await fetch(`${url}/v1/topics/big.restart/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify([{ data }]),
      });
      return { status: response.status, body: await response.text() };
    };
    const big = 'x'.repeat(MiB - 200);
    const first = await startRelay(flags, { dataDir, keepData: true });
    assert.equal((await post(first.url, 'small')).status, 202);
    assert.equal((await post(first.url, big)).status, 413);
    await first.stop();
    const kept = join(dataDir, 'cassandra-write-limit');
    assert.ok(Number(readFileSync(kept, 'utf8')) > 0, 'the limit is kept for the next start');
    assert.equal(statSync(kept).mode & 0o777, 0o600);

    process.kill(s.pid, 'SIGSTOP'); // Cassandra away; the relay restarts meanwhile (a deploy, a crash)
    stopped = true;
    const second = await startRelay(flags, { dataDir, keepData: true });
    let whileAway: { status: number; body: string };
    try {
      assert.equal((await post(second.url, 'while away')).status, 202, 'spooled');
      whileAway = await post(second.url, big);
      assert.equal((await post(second.url, 'after it')).status, 202);
    } finally {
      process.kill(s.pid, 'SIGCONT');
      stopped = false;
    }
    try {
      // Before: 202, then moved aside by the drain (acked, never in history).
      assert.equal(whileAway.status, 413, whileAway.body);
      assert.match(whileAway.body, /too_large/);
      const deadline = Date.now() + 30_000;
      let datas: unknown[] = [];
      while (Date.now() < deadline) {
        const page = (await (await fetch(`${second.url}/v1/topics/big.restart/messages?limit=10`)).json()) as {
          messages: { data: unknown }[];
        };
        datas = page.messages.map((m) => m.data);
        if (datas.includes('after it') && (await (await fetch(`${second.url}/healthz`)).json()).ok) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      assert.deepEqual(datas, ['small', 'while away', 'after it']);
    } finally {
      await second.stop();
    }
    const db = new DatabaseSync(join(dataDir, 'spool', 'spool.sqlite'));
    try {
      assert.deepEqual(db.prepare('SELECT id FROM spool_rejected').all(), [], 'nothing acked was moved aside');
    } finally {
      db.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
