import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { contentId, createHybridClock, type Envelope, randomId, randomNodeId } from '@anode/shared';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import cassandra from 'cassandra-driver';
import { waitFor } from '../helpers/mesh.ts';
import {
  type CassandraServer,
  findJava,
  freePort,
  nodetool as runNodetool,
  startCassandra,
} from './cassandra-server.ts';

/**
 * What the Cassandra tables cost on disk and that expired history leaves it: SSTable files are
 * measured after a real flush (nodetool over JMX, from the same jars), and after the TTL the
 * history table's files are gone, removed by TimeWindowCompaction's expired-SSTable check (no
 * major compaction is run).
 */
const skip = !findJava() && !process.env.CI ? 'java is not installed (CI never skips this suite)' : false;

let server: CassandraServer | undefined;
let jmxPort = 0;
after(async () => {
  await server?.stop();
});

const nodetool = (s: CassandraServer, args: string[]) => runNodetool(jmxPort, args, { home: s.dataDir });

/** Bytes of every SSTable component of one table (all its generations), and the Data.db count. */
function tableOnDisk(s: CassandraServer, keyspace: string, table: string) {
  const ksDir = join(s.dataDir, 'data', keyspace);
  let bytes = 0;
  let sstables = 0;
  for (const dir of readdirSync(ksDir).filter((d) => d.startsWith(`${table}-`))) {
    for (const file of readdirSync(join(ksDir, dir))) {
      const stat = statSync(join(ksDir, dir, file));
      if (!stat.isFile()) continue;
      bytes += stat.size;
      if (file.endsWith('-Data.db')) sstables += 1;
    }
  }
  return { bytes, sstables };
}

const options = (s: CassandraServer, keyspace: string, maxAgeMs: number) => ({
  contactPoints: [`${s.host}:${s.port}`],
  localDataCenter: 'datacenter1',
  keyspace,
  replication: 'SimpleStrategy:1',
  writeConsistency: 'LOCAL_QUORUM',
  readConsistency: 'LOCAL_QUORUM',
  concurrency: 64,
  bucketMs: 3_600_000,
  timeoutMs: 10_000,
  retention: { maxAgeMs, maxMessages: 0 },
});

describe('Cassandra on disk', { skip }, () => {
  it('uses TWCS for the TTL tables, keeps one copy of the data, and expired history leaves the disk', async () => {
    jmxPort = await freePort();
    server = await startCassandra({
      fast: true,
      jvmArgs: [`-Dcassandra.jmx.local.port=${jmxPort}`],
      log: (line) => console.error(`[cassandra] ${line}`),
    });
    const s = server;
    const raw = new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
    try {
      // --- the schema: time-series tables on TWCS, short gc_grace (they only expire) ---
      const keyspace = `disk_${randomNodeId(8)}`;
      const store = createCassandraStore(options(s, keyspace, 0));
      assert.equal((await store.health()).ok, true);
      const tables = (
        await raw.execute(
          'SELECT table_name, compaction, gc_grace_seconds FROM system_schema.tables WHERE keyspace_name = ?',
          [keyspace],
        )
      ).rows;
      for (const name of ['messages', 'message_claims']) {
        const table = tables.find((t) => t.table_name === name);
        assert.match(String(table?.compaction?.class), /TimeWindowCompactionStrategy/, `${name} compaction`);
        assert.equal(table?.gc_grace_seconds, 10_800, `${name} gc_grace_seconds`);
      }
      const columns = (
        await raw.execute('SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?', [
          keyspace,
          'message_claims',
        ])
      ).rows.map((r) => r.column_name as string);
      assert.deepEqual(columns.sort(), ['cursor', 'id', 'shard', 'topic'], 'message_claims holds no copy of the data');

      // --- sizing: 2,000 unkeyed and 2,000 keyed messages with ~100-byte JSON payloads ---
      const clock = createHybridClock('disk');
      const make = (i: number, keyed: boolean): Envelope => ({
        id: keyed ? contentId('size.t', 'feed', `k${i}`) : randomId(),
        topic: 'size.t',
        cursor: clock.next(),
        source: 'feed',
        ts: Date.now(),
        // Random text: a repeated character would compress to nothing and hide the payload's cost.
        data: { n: i, payload: randomBytes(60).toString('base64') },
      });
      for (const keyed of [false, true]) {
        for (let i = 0; i < 2_000; i += 200) {
          const batch = Array.from({ length: 200 }, (_, j) => make(i + j, keyed));
          await store.append(batch, { minted: batch.map(() => true) });
        }
      }
      await store.close();
      await nodetool(s, ['flush', keyspace]);
      const messages = tableOnDisk(s, keyspace, 'messages');
      const claims = tableOnDisk(s, keyspace, 'message_claims');
      const perMessage = messages.bytes / 4_000;
      const perClaim = claims.bytes / 2_000;
      console.error(
        `[disk] messages: ${messages.bytes} bytes in ${messages.sstables} SSTable(s) = ${perMessage.toFixed(1)} B/message ` +
          `(payload ${JSON.stringify(make(0, false).data).length} B); message_claims: ${claims.bytes} bytes = ` +
          `${perClaim.toFixed(1)} B/keyed message`,
      );
      assert.ok(messages.sstables >= 1 && claims.sstables >= 1, 'flushed to SSTables');
      assert.ok(perClaim < perMessage, 'a claim is smaller than a history row: the data is not in it');

      // --- expiry: history with a 3 s TTL leaves the disk once expired ---
      const shortKs = `ttl_${randomNodeId(8)}`;
      const short = createCassandraStore(options(s, shortKs, 3_000));
      assert.equal((await short.health()).ok, true);
      // Test-sized: purge at once (gc_grace 0) and check for expired SSTables every second
      // instead of every 10 minutes; the strategy is the schema's own.
      await raw.execute(
        `ALTER TABLE ${shortKs}.messages WITH gc_grace_seconds = 0 AND compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'HOURS', 'compaction_window_size': '24', 'expired_sstable_check_frequency_seconds': '1'}`,
      );
      const doomed = Array.from({ length: 1_000 }, (_, i) => ({ ...make(i, false), topic: 'ttl.t' }));
      await short.append(doomed, { minted: doomed.map(() => true) });
      await nodetool(s, ['flush', shortKs, 'messages']);
      const before = tableOnDisk(s, shortKs, 'messages');
      assert.ok(before.sstables >= 1 && before.bytes > 50_000, `written: ${JSON.stringify(before)}`);
      await new Promise((r) => setTimeout(r, 4_500));
      assert.deepEqual(await short.history('ttl.t', { limit: 10 }), [], 'expired: invisible to CQL');
      // A later flush is what makes TWCS look for fully expired SSTables.
      const later = [{ ...make(0, false), topic: 'ttl.later' }];
      await short.append(later, { minted: [true] });
      await nodetool(s, ['flush', shortKs, 'messages']);
      let now = tableOnDisk(s, shortKs, 'messages');
      await waitFor(
        'the expired SSTable to be dropped',
        () => {
          now = tableOnDisk(s, shortKs, 'messages');
          return now.bytes < before.bytes / 10;
        },
        30_000,
        250,
      );
      console.error(
        `[disk] expired history: ${before.bytes} bytes on disk before, ${now.bytes} after (${now.sstables} SSTable(s) left)`,
      );
      await short.close();
    } finally {
      await raw.shutdown();
    }
  });
});
