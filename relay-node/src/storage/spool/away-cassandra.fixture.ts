import { createServer, type Socket } from 'node:net';
import { createCassandraStore } from '../cassandra/cassandra-store.ts';

/**
 * For the spool's tests: a real Cassandra store whose Cassandra is away. No test double: the
 * driver meets a loopback port nothing listens on (connections refused), or one that accepts
 * and never answers (`silentCassandraPort`, a node that drops packets).
 */

/** A loopback port nothing listens on. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A loopback port that accepts connections (`sockets`) and never answers; `close()` ends it. */
export async function silentCassandraPort(): Promise<{ port: number; sockets: Socket[]; close(): void }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    sockets,
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

/** A Cassandra store at `port` (by default one nothing listens on). */
export async function awayCassandra(options: { port?: number; timeoutMs?: number } = {}) {
  return createCassandraStore({
    contactPoints: [`127.0.0.1:${options.port ?? (await closedPort())}`],
    localDataCenter: 'datacenter1',
    keyspace: 'anode_spool_tests',
    replication: 'SimpleStrategy:1',
    writeConsistency: 'LOCAL_QUORUM',
    readConsistency: 'LOCAL_QUORUM',
    concurrency: 4,
    bucketMs: 3_600_000,
    timeoutMs: options.timeoutMs ?? 2_000,
    retention: { maxAgeMs: 0, maxMessages: 0 },
  });
}
