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
      help: 'Valid gossip messages received',
      registers: [registry],
    }),
    gossipOut: new Counter({
      name: 'anode_mesh_gossip_published_total',
      help: 'Messages this node accepted and gossiped',
      registers: [registry],
    }),
    gossipCopies: new Counter({
      name: 'anode_mesh_gossip_copies_received_total',
      help: 'Shard gossip copies received from peers: new, duplicate (dropped as already seen) or rejected',
      registers: [registry],
    }),
    rejected: new Counter({
      name: 'anode_mesh_gossip_rejected_total',
      help: 'Gossip messages rejected by validation (their sender is scored down)',
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
