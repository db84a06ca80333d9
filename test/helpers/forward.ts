import { connect, createServer, type Socket } from 'node:net';

/**
 * A TCP forwarder that can be cut: whatever connects to it reaches `target()` on loopback.
 * Cutting destroys every connection through it and refuses new ones until it is restored, so
 * the side that dialled it sees its peer go away, as on a real outage (one relay's way to
 * Cassandra, a relay's link to the edge).
 */
export interface CuttableForward {
  host: string;
  port: number;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function cuttableForward(host: string, target: () => number): Promise<CuttableForward> {
  const open = new Set<Socket>();
  let cut = false;
  const server = createServer((client) => {
    if (cut) return void client.destroy();
    const upstream = connect(target(), '127.0.0.1');
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
  const destroyAll = () => {
    for (const socket of open) socket.destroy();
    open.clear();
  };
  return {
    host,
    port,
    cut() {
      cut = true;
      destroyAll();
    },
    restore() {
      cut = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        destroyAll();
        server.close(() => resolve());
      }),
  };
}
