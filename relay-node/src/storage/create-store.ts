import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { MessageStore } from '@anode/shared';
import type { RelayConfig } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { createCassandraStore } from './cassandra/cassandra-store.ts';
import { createSqliteStore } from './embedded/sqlite-store.ts';
import { createSpoolingStore } from './spool/spooling-store.ts';

/** The configured MessageStore adapter (a remote store gets a durable local spool in front). */
export function createStore(config: RelayConfig, log: Logger, metrics: Metrics, nodeId: string): MessageStore {
  const retention = { maxAgeMs: config.retention_max_age_ms, maxMessages: config.retention_max_messages };
  switch (config.store) {
    case 'embedded':
      return createSqliteStore({
        dataDir: config.data_dir,
        retention,
        fsync: config.store_fsync,
        log: log.child({ component: 'store' }),
      });
    case 'cassandra': {
      const cassandra = createCassandraStore({
        contactPoints: config.cassandra_contact_points,
        localDataCenter: config.cassandra_local_dc,
        keyspace: config.cassandra_keyspace,
        replication: config.cassandra_replication,
        username: config.cassandra_username,
        password: config.cassandra_password,
        tls: config.cassandra_tls,
        tlsCaFile: config.cassandra_tls_ca,
        writeConsistency: config.cassandra_write_consistency,
        readConsistency: config.cassandra_read_consistency,
        serialConsistency: config.cassandra_serial_consistency,
        concurrency: config.cassandra_concurrency,
        bucketMs: config.cassandra_bucket_ms,
        timeoutMs: config.cassandra_timeout_ms,
        // Half the grace: the node's other parts stop within it too, before the store.
        closeTimeoutMs: Math.floor(config.shutdown_grace_ms / 2),
        log: log.child({ component: 'cassandra' }),
        limitFile: join(config.data_dir, 'cassandra-write-limit'),
        maxMessageBytes: config.max_message_bytes,
        retention,
        // The same relay restarted (this host, this folder, the token it wrote last in
        // `node-lease`) takes its lease back at once.
        lease: {
          nodeId,
          holder: `${hostname()} ${resolve(config.data_dir)}`,
          tokenFile: join(config.data_dir, 'node-lease'),
        },
      });
      return createSpoolingStore(cassandra, {
        dataDir: join(config.data_dir, 'spool'),
        drainIntervalMs: config.spool_drain_ms,
        maxBytes: config.spool_max_bytes,
        log: log.child({ component: 'spool' }),
        onDepth: (depth) => metrics.storeSpoolDepth.set(depth),
        onRejected: (held) => metrics.storeSpoolRejected.set(held),
        refusal: () => cassandra.refusal,
        // While Cassandra is away a message over the limits it read is refused, not acked.
        tooLarge: (envelope) => cassandra.tooLarge(envelope),
      });
    }
  }
}
