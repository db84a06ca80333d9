import { z } from 'zod';

/**
 * The stable shape of `GET /v1/status` (and of each `status` event on `/v1/status/stream`):
 * what the dashboard and other tools may rely on. Keys are only ever added; a part that is not
 * configured leaves its key out (the dashboard shows "not configured"). `passthrough` keeps
 * keys newer than this schema.
 */
const isoTime = z.string();
const nullableNumber = z.number().nullable();

export const peerStatusSchema = z
  .object({
    /** Peer id (`peer_id` is accepted as an alias). */
    id: z.string().optional(),
    peer_id: z.string().optional(),
    addrs: z.array(z.string()).optional(),
    connection: z.enum(['direct', 'relayed', 'webrtc']).optional(),
    latency_ms: nullableNumber.optional(),
    up_since: isoTime.nullable().optional(),
    /** 'up' when absent; 'down' for a known peer that is not connected. */
    state: z.string().optional(),
  })
  .passthrough();

export const sourceStatusSchema = z
  .object({
    name: z.string(),
    kind: z.string().optional(),
    /**
     * starting, ok (a poll succeeded), connected (a streaming source's upstream is open), failing,
     * paused, standby (another relay owns it): source-runtime.ts's SourceState.
     */
    state: z.string(),
    /** `last_success_at`, `messages_per_second`, `next_attempt_at` are accepted as aliases. */
    last_success: isoTime.nullable().optional(),
    last_success_at: isoTime.nullable().optional(),
    last_error: z
      .union([z.string(), z.object({ message: z.string() }).passthrough()])
      .nullable()
      .optional(),
    lag_ms: nullableNumber.optional(),
    rate: nullableNumber.optional(),
    messages_per_second: nullableNumber.optional(),
    consecutive_failures: z.number().optional(),
    next_attempt: isoTime.nullable().optional(),
    next_attempt_at: isoTime.nullable().optional(),
    /** In a mesh: the node id that pulls this source (`standby` elsewhere). */
    owner: z.string().nullable().optional(),
  })
  .passthrough();

export const topicStatusSchema = z.object({
  topic: z.string(),
  published: z.number(),
  delivered: z.number(),
  /** Subscriptions to this exact topic. */
  subscribers: z.number(),
  /** Subscriptions that receive this topic: its own plus every subscribed pattern that matches it. */
  matching_subscribers: z.number().optional(),
  last_cursor: z.string().nullable(),
  last_published_at: z.number().nullable(),
});

/**
 * One configured bootstrap address (`mesh.bootstrap`): `since` is when it connected or, when not
 * connected, since when not (the relay's start or the loss); `error` the last failure, as logged.
 */
export const bootstrapStatusSchema = z
  .object({
    address: z.string(),
    connected: z.boolean(),
    since: isoTime,
    error: z.string().nullable(),
  })
  .passthrough();

export const statusSchema = z
  .object({
    node: z
      .object({
        id: z.string(),
        version: z.string(),
        protocol: z.union([z.string(), z.number()]),
        uptime_s: z.number(),
        started_at: isoTime,
        url: z.string(),
        auth: z.enum(['jwt', 'none']),
        max_message_bytes: z.number(),
        peer_id: z.string().optional(),
        multiaddrs: z.array(z.string()).optional(),
      })
      .passthrough(),
    store: z
      .object({
        kind: z.string(),
        ok: z.boolean(),
        queued: z.number(),
        /** Cassandra: connected | spooling | unreachable. */
        state: z.string().optional(),
        spool_depth: z.number().optional(),
      })
      .passthrough(),
    connections: z.number(),
    subscriptions: z.number(),
    subscribers: z.record(z.string(), z.number()),
    topics: z.array(topicStatusSchema),
    /** Connected peers. */
    peers: z.array(peerStatusSchema).optional(),
    /** Mesh peers remembered but not connected (`state: 'down'`, `down_since`, `last_seen`). */
    peers_down: z.array(peerStatusSchema).optional(),
    /** The mesh: its settings, gossip topics (topic → peer ids), sync, and its bootstrap addresses. */
    mesh: z
      .object({ bootstrap: z.array(bootstrapStatusSchema).optional() })
      .catchall(z.unknown())
      .optional(),
    /** Edge links and the Durable Objects / topics each serves. */
    edge: z.unknown().optional(),
    sources: z.array(sourceStatusSchema).optional(),
  })
  .passthrough();

export type RelayStatus = z.infer<typeof statusSchema>;
export type PeerStatus = z.infer<typeof peerStatusSchema>;
export type BootstrapStatus = z.infer<typeof bootstrapStatusSchema>;
export type SourceStatus = z.infer<typeof sourceStatusSchema>;
export type TopicStatus = z.infer<typeof topicStatusSchema>;

/** Counters the stream adds beside the status, for the throughput and latency charts. */
export interface MetricsSnapshot {
  published_total: number;
  delivered_total: number;
  errors_total: number;
  publish_latency: { sum_s: number; count: number };
  store_append: { sum_s: number; count: number };
}

/** One sample of the server-side history (metrics-history.ts): rates and average latencies. */
export interface MetricsSample {
  at: number;
  published_per_s: number;
  delivered_per_s: number;
  errors_per_s: number;
  publish_latency_ms: number | null;
  store_append_ms: number | null;
}

/**
 * One `status` event on `/v1/status/stream`. The first event of a stream carries every sample
 * of the history ring; later ones only the samples taken since the previous event.
 */
export interface StatusEvent {
  at: number;
  status: RelayStatus;
  metrics: MetricsSnapshot;
  samples: MetricsSample[];
}
