import { z } from 'zod';
import { bool, intIn, list, positiveInt, timerMs } from '../../config-fields.ts';

/**
 * Longest history bucket: 366 days. A bucket's index row lives retention_max_age_ms plus a bucket,
 * and Cassandra refuses a TTL past 20 years, or reaching past 2038-01-19 in the storage format
 * before 5.0 (which 5.0 writes by default): a bucket of 21 years had every write refused (an
 * outage to the spool, for good), one past ~11 years (in 2026) too on 5.0's default format, and a
 * shorter one near the limit cut its messages' TTLs to what the bucket left (seconds, silently).
 * A year is far past any partition size Cassandra advises for a busy topic.
 */
export const MAX_BUCKET_MS = 366 * 24 * 3600 * 1000;
const BUCKET_LIMIT = `at most ${MAX_BUCKET_MS} (366 days): its index rows live retention plus a bucket, and Cassandra's TTLs end within 20 years (by 2038-01-19 in its storage format before 5.0)`;

/** Config keys of the Cassandra store (`--store cassandra`). */
export const cassandraConfigShape = {
  cassandra_contact_points: list(z.string().min(1))
    .default(['127.0.0.1:9042'])
    .describe('Cassandra contact points, host:port, comma-separated'),
  cassandra_local_dc: z
    .string()
    .min(1)
    .default('datacenter1')
    .describe('local data centre (token-aware, DC-aware routing)'),
  cassandra_keyspace: z
    .string()
    .regex(/^[a-z][a-z0-9_]{0,47}$/, 'must be a lowercase CQL identifier')
    .default('anode')
    .describe('keyspace (created with the replication below if missing)'),
  cassandra_replication: z
    .string()
    .regex(
      /^(SimpleStrategy:\d+|NetworkTopologyStrategy:[A-Za-z0-9_-]+=\d+(,[A-Za-z0-9_-]+=\d+)*)$/,
      'use SimpleStrategy:<rf> or NetworkTopologyStrategy:<dc>=<rf>[,<dc>=<rf>…]',
    )
    .default('SimpleStrategy:1')
    .describe('keyspace replication: SimpleStrategy:1 locally, NetworkTopologyStrategy:dc1=3 in production'),
  cassandra_username: z.string().optional().describe('Cassandra user (PasswordAuthenticator)'),
  cassandra_password: z.string().optional().describe('Cassandra password'),
  cassandra_tls: bool.default(false).describe('connect with TLS'),
  cassandra_tls_ca: z.string().optional().describe('PEM file of the CA that signed the Cassandra certificates'),
  cassandra_write_consistency: z
    .enum(['ONE', 'TWO', 'THREE', 'QUORUM', 'ALL', 'LOCAL_QUORUM', 'EACH_QUORUM', 'LOCAL_ONE'])
    .default('LOCAL_QUORUM')
    .describe('consistency level of writes'),
  cassandra_read_consistency: z
    .enum(['ONE', 'TWO', 'THREE', 'QUORUM', 'ALL', 'LOCAL_QUORUM', 'EACH_QUORUM', 'LOCAL_ONE'])
    .default('LOCAL_QUORUM')
    .describe('consistency level of reads'),
  cassandra_serial_consistency: z
    .enum(['LOCAL_SERIAL', 'SERIAL'])
    .default('LOCAL_SERIAL')
    .describe('consistency of idempotency-key claims (LWT); SERIAL when two DCs accept the same keys'),
  cassandra_concurrency: positiveInt.default(64).describe('statements in flight per batch append'),
  cassandra_bucket_ms: intIn(1, MAX_BUCKET_MS, BUCKET_LIMIT)
    .default(3_600_000)
    .describe(
      'time bucket of the messages partition key (at most 366 days); fixed per keyspace: a relay set otherwise does not start',
    ),
  cassandra_timeout_ms: timerMs.default(5_000).describe('per-request timeout before a write goes to the spool'),
  spool_drain_ms: timerMs.default(1_000).describe('how often the local spool retries Cassandra while it is away'),
  spool_max_bytes: positiveInt
    .default(1_073_741_824)
    .describe('most bytes the local spool holds while Cassandra is away; past it, publishes are refused (unavailable)'),
};
