import { randomNodeId } from '@anode/shared';
import type { CassandraStoreOptions } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import type { CassandraServer } from './cassandra-server.ts';

/**
 * A Cassandra store's options for a test on `server`: a keyspace of its own (RF 1), LOCAL_QUORUM,
 * no retention, then `overrides`.
 */
export const testStoreOptions = (
  server: Pick<CassandraServer, 'host' | 'port'>,
  overrides: Partial<CassandraStoreOptions> = {},
): CassandraStoreOptions => ({
  contactPoints: [`${server.host}:${server.port}`],
  localDataCenter: 'datacenter1',
  keyspace: `t_${randomNodeId(12)}`,
  replication: 'SimpleStrategy:1',
  writeConsistency: 'LOCAL_QUORUM',
  readConsistency: 'LOCAL_QUORUM',
  concurrency: 8,
  bucketMs: 60_000,
  timeoutMs: 20_000,
  retention: { maxAgeMs: 0, maxMessages: 0 },
  ...overrides,
});
