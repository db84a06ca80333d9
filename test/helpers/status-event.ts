import type { RelayStatus, StatusEvent } from '@anode/relay-node/src/dashboard/status-schema.ts';

/** A dashboard status event around `status` at `at`, with zero counters: the model's input in tests. */
export const statusEventOf = (status: RelayStatus, at = Date.now()): StatusEvent => ({
  at,
  status,
  metrics: {
    published_total: 0,
    delivered_total: 0,
    errors_total: 0,
    publish_latency: { sum_s: 0, count: 0 },
    store_append: { sum_s: 0, count: 0 },
  },
  samples: [],
});
