import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * How often the event-loop lag histogram (anode_nodejs_eventloop_lag_*) samples, in ms. Node's
 * monitor is a timer of its own on the event loop: at prom-client's default (Node's, 10 ms) it
 * woke an idle relay 100 times a second, 4–5 ms of CPU a second per process on the 2-core bench
 * machine (about an eighth of an idle mesh relay's). Sampled every 100 ms the gauges keep their
 * names and meaning; a stall shorter than the interval is caught with a proportional chance
 * rather than nearly always (anode_nodejs_eventloop_lag_seconds, measured at each scrape, is
 * unchanged).
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

/** Prometheus metrics for one relay node (its own registry, so several nodes can share a process). */
export function createMetrics() {
  const registry = new Registry();
  // prom-client's own names start with `process_` and `nodejs_`: anode_process_cpu_…, anode_nodejs_….
  collectDefaultMetrics({ register: registry, prefix: 'anode_', eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
  return {
    registry,
    connections: new Gauge({ name: 'anode_connections', help: 'Open WebSocket connections', registers: [registry] }),
    subscriptions: new Gauge({ name: 'anode_subscriptions', help: 'Active subscriptions', registers: [registry] }),
    published: new Counter({
      name: 'anode_messages_published_total',
      help: 'Messages accepted and stored (duplicates excluded)',
      labelNames: ['via'] as const,
      registers: [registry],
    }),
    duplicates: new Counter({
      name: 'anode_messages_duplicate_total',
      help: 'Publishes dropped as duplicates of a stored id',
      registers: [registry],
    }),
    delivered: new Counter({
      name: 'anode_messages_delivered_total',
      help: 'Message frames sent to subscribers (live and catch-up)',
      registers: [registry],
    }),
    errors: new Counter({
      name: 'anode_errors_total',
      help: 'Error frames and responses sent, by code',
      labelNames: ['code'] as const,
      registers: [registry],
    }),
    disconnects: new Counter({
      name: 'anode_server_disconnects_total',
      help: 'Connections closed by the server, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    publishLatency: new Histogram({
      name: 'anode_publish_latency_seconds',
      help: 'Time from receiving a publish to its ack (durable)',
      buckets: latencyBuckets,
      registers: [registry],
    }),
    storeAppend: new Histogram({
      name: 'anode_store_append_seconds',
      help: 'Time for one batched append, from its hand-off to the store to its commit (under a backlog two are in flight: the second waits for the first)',
      buckets: latencyBuckets,
      registers: [registry],
    }),
    storeBatch: new Histogram({
      name: 'anode_store_append_batch_size',
      help: 'Messages per batched append',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
      registers: [registry],
    }),
    storeErrors: new Counter({
      name: 'anode_store_errors_total',
      help: 'Failed store operations',
      registers: [registry],
    }),
    storeSpoolDepth: new Gauge({
      name: 'anode_store_spool_depth',
      help: 'Messages acknowledged into the local spool, waiting for the store (Cassandra) to return',
      registers: [registry],
    }),
    // What the drain moved aside, waiting for an operator.
    storeSpoolRejected: new Gauge({
      name: 'anode_store_spool_rejected',
      help: 'Spooled messages the store (Cassandra) refused for good, kept aside in the spool file',
      registers: [registry],
    }),
    storeUp: new Gauge({ name: 'anode_store_up', help: '1 when the store is healthy', registers: [registry] }),
    retentionDeleted: new Counter({
      name: 'anode_retention_deleted_total',
      help: 'Messages deleted by retention',
      registers: [registry],
    }),
    retentionLatestDeleted: new Counter({
      name: 'anode_retention_latest_deleted_total',
      help: 'Latest rows (newest message per source) deleted by the age limit (embedded store)',
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
