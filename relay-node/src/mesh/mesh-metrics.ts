import { Counter, Gauge, type Registry } from 'prom-client';

/** The mesh's Prometheus metrics, on the relay's registry. */
export function createMeshMetrics(registry: Registry, peers: () => number) {
  return {
    peers: new Gauge({
      name: 'anode_mesh_peers',
      help: 'Connected mesh peers',
      registers: [registry],
      collect() {
        this.set(peers());
      },
    }),
    gossipIn: new Counter({
      name: 'anode_mesh_gossip_received_total',
      help: 'Valid envelopes received in new gossip batches',
      registers: [registry],
    }),
    gossipOut: new Counter({
      name: 'anode_mesh_gossip_published_total',
      help: 'Envelopes this node accepted and gossiped',
      registers: [registry],
    }),
    gossipCopies: new Counter({
      name: 'anode_mesh_gossip_copies_received_total',
      help: 'Envelope copies received from peers in gossip batches: new, duplicate (dropped as already seen) or rejected',
      registers: [registry],
    }),
    gossipBatches: new Counter({
      name: 'anode_mesh_gossip_batches_total',
      help: 'Gossip batches published (out) and received valid and new (in)',
      labelNames: ['direction'] as const,
      registers: [registry],
    }),
    gossipHops: new Counter({
      name: 'anode_mesh_gossip_hops_total',
      help: 'Envelopes received new by gossip, by whether their first copy came straight from the publisher (1) or was forwarded (2+)',
      labelNames: ['hops'] as const,
      registers: [registry],
    }),
    dropped: new Counter({
      name: 'anode_mesh_gossip_dropped_total',
      help: 'Envelopes gossip did not deliver: no stream to a subscribed peer (per peer), a failed publish, larger than the limit; each is repaired at once (link reset then catch-up, or a retry)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    queued: new Gauge({
      name: 'anode_mesh_gossip_queued',
      help: 'Accepted envelopes waiting for the next gossip batch',
      registers: [registry],
    }),
    rejected: new Counter({
      name: 'anode_mesh_gossip_rejected_total',
      help: 'Gossip batches rejected by validation (their sender is scored down)',
      registers: [registry],
    }),
    catchUpSkipped: new Counter({
      name: 'anode_mesh_catch_up_skipped_total',
      help: 'Stored messages a peer left out of catch-up: larger than it carries, or than this node takes (mesh_max_message_bytes)',
      registers: [registry],
    }),
    catchUpWrongTopic: new Counter({
      name: 'anode_mesh_catch_up_wrong_topic_total',
      help: 'Entries a peer sent in a catch-up page of one topic that were not of that topic (dropped: the peer misbehaves)',
      registers: [registry],
    }),
    caughtUp: new Counter({
      name: 'anode_mesh_catch_up_messages_total',
      help: 'Messages that were new here, fetched from peers by catch-up',
      registers: [registry],
    }),
  };
}

export type MeshMetrics = ReturnType<typeof createMeshMetrics>;
