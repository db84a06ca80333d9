import { cuttableForward } from '../helpers/forward.ts';

/**
 * The relay reaches the edge Worker through this TCP forwarder (the Worker listens on loopback
 * inside the driver's namespace). Cutting the link destroys every connection through it and
 * refuses new ones until it is restored: the relay sees its edge link drop, as on a real outage.
 */
export interface EdgeLinkCutter {
  origin: string;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function forwardEdge(host: string, edgePort: () => number): Promise<EdgeLinkCutter> {
  const forward = await cuttableForward(host, edgePort);
  return { ...forward, origin: `http://${host}:${forward.port}` };
}
