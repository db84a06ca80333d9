import type { Libp2p } from '@libp2p/interface';
import { noise } from '@libp2p/noise';
import { tcp } from '@libp2p/tcp';
import { yamux } from '@libp2p/yamux';
import { createLibp2p } from 'libp2p';

/**
 * Plain libp2p nodes on loopback for catch-up tests (TCP, noise, yamux; no mesh, no gossip): the
 * real transport a catch-up stream runs on. `stop` stops every node made; call it in `after`.
 */
export function loopbackNodes() {
  const nodes: Libp2p[] = [];
  return {
    async node(): Promise<Libp2p> {
      const created = await createLibp2p({
        addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
        transports: [tcp()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        // As the relay's host: liveness, not libp2p's monitor, drops unresponsive peers.
        connectionMonitor: { enabled: false },
      });
      nodes.push(created);
      return created;
    },
    stop: () => Promise.all(nodes.map((node) => node.stop())),
  };
}
