import { randomBytes } from 'node:crypto';
import type { Connection } from '@libp2p/interface';
import { byteStream } from '@libp2p/utils';
import type { Logger } from '../logger.ts';
import type { Host } from './host.ts';

/** libp2p's ping protocol: 32 random bytes, echoed. */
const PING_PROTOCOL = '/ipfs/ping/1.0.0';
const PING_BYTES = 32;
/** Pings that fail in a row before a connection counts as dead. */
export const PING_FAILURES = 3;
/** The floor of a ping's timeout: a busy peer may take a few seconds to answer, and is alive. */
const MIN_TIMEOUT_MS = 5_000;

/**
 * Dead-peer detection that holds on a loaded machine. libp2p's connection monitor aborts a
 * connection on its first failed ping, with one adaptive timeout shared by all connections. On a
 * busy host (25 relays on two cores, a relay catching up) pings wait behind real work, connections
 * were cut by the dozen, every reconnect started a catch-up that added load, and the mesh never
 * settled: 1,643 ping aborts in two minutes among 25 relays, and not one minute with all of them
 * connected. So that monitor is off, and here every connection is pinged every interval (one ping
 * out at a time: the ping protocol allows two streams per peer), its round trip kept as `rtt` (the
 * status page's latency), and a connection is closed only after PING_FAILURES pings in a row went
 * unanswered for max(5 s, interval) each. A peer that is really gone (frozen, cut off by a
 * partition) is still dropped, after about PING_FAILURES × max(5 s, interval); one whose process
 * exits or is killed closes its connections at once anyway.
 */
export function watchLiveness(
  host: Host,
  options: {
    intervalMs: number;
    log: Logger;
    /**
     * A ping `peer` was sent at `sentAt` came back: everything the peer sent on that connection
     * before it echoed has arrived (one connection keeps its frames in order).
     */
    onAnswered?(peer: string, sentAt: number): void;
  },
) {
  const { intervalMs, log } = options;
  const timeoutMs = Math.max(MIN_TIMEOUT_MS, intervalMs);
  const failures = new WeakMap<Connection, number>();
  const out = new WeakSet<Connection>();

  /** Resolves with when the ping was sent. */
  const ping = async (connection: Connection): Promise<number> => {
    const signal = AbortSignal.timeout(timeoutMs);
    const stream = await connection.newStream(PING_PROTOCOL, { signal, runOnLimitedConnection: true });
    try {
      const bytes = byteStream(stream);
      const payload = randomBytes(PING_BYTES);
      const start = Date.now();
      const [, echo] = await Promise.all([bytes.write(payload, { signal }), bytes.read({ bytes: PING_BYTES, signal })]);
      if (!Buffer.from(echo.subarray()).equals(payload)) throw new Error('ping echo differs');
      connection.rtt = Date.now() - start;
      await stream.close({ signal });
      return start;
    } catch (error) {
      stream.abort(error as Error);
      throw error;
    }
  };

  const check = () => {
    for (const connection of host.getConnections()) {
      if (connection.status !== 'open' || out.has(connection)) continue;
      out.add(connection);
      ping(connection).then(
        (sentAt) => {
          out.delete(connection);
          failures.delete(connection);
          options.onAnswered?.(connection.remotePeer.toString(), sentAt);
        },
        (error: unknown) => {
          out.delete(connection);
          if (connection.status !== 'open') return;
          const count = (failures.get(connection) ?? 0) + 1;
          failures.set(connection, count);
          if (count < PING_FAILURES) return;
          log.warn(
            { peer: connection.remotePeer.toString(), failures: count, err: error },
            'peer stopped answering pings; closing its connection',
          );
          connection.abort(error instanceof Error ? error : new Error(String(error)));
        },
      );
    }
  };

  const timer = setInterval(check, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
