import { connect, createServer, type Socket } from 'node:net';

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
  const open = new Set<Socket>();
  let cut = false;
  const server = createServer((client) => {
    if (cut) return void client.destroy();
    const upstream = connect(edgePort(), '127.0.0.1');
    open.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as { port: number };
  return {
    origin: `http://${host}:${port}`,
    cut() {
      cut = true;
      for (const socket of open) socket.destroy();
      open.clear();
    },
    restore() {
      cut = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
