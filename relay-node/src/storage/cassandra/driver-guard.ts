import type cassandra from 'cassandra-driver';

interface ControlConnection {
  _refresh(hostIterator?: unknown): Promise<void>;
  _isShuttingDown: boolean;
  connection: unknown;
}

/**
 * cassandra-driver 4.10 can run two control-connection refreshes at once when nodes die; one
 * resets `connection` under the other, which then throws a TypeError from a timer callback
 * nobody awaits (NODEJS-681, apache/cassandra-nodejs-driver#462, not released). In a relay that
 * unhandled rejection would end the process in the middle of a Cassandra node failure (seen in
 * test/cassandra/cassandra-cluster.test.ts). This runs one refresh at a time, as that fix does,
 * and turns a failed one into another try a second later instead of a crash.
 */
export function guardControlConnection(client: cassandra.Client, onError: (error: Error) => void): void {
  const control = (client as unknown as { controlConnection?: ControlConnection }).controlConnection;
  if (!control || typeof control._refresh !== 'function') return; // a driver without the bug's shape
  const refresh = control._refresh.bind(control);
  let running = false;
  control._refresh = async (hostIterator?: unknown) => {
    // A call with an iterator is the running refresh retrying itself: let it through.
    if (hostIterator === undefined) {
      if (running) return;
      running = true;
    }
    try {
      await refresh(hostIterator);
    } catch (error) {
      onError(error as Error);
      if (!control._isShuttingDown && !control.connection) {
        setTimeout(() => void control._refresh(), 1_000).unref();
      }
    } finally {
      if (hostIterator === undefined) running = false;
    }
  };
}

interface DriverHost {
  shutdown(waitForPending?: boolean): Promise<void>;
}

/**
 * cassandra-driver 4.10 never shuts a Host down once it leaves the client's host map. It leaves
 * in two ways: a node removed from the ring, and — after every outage of all contact points — the
 * control connection re-initialising and replacing each Host with a new object for the same
 * address. The old one keeps its 200 ms health timer and its pool's reconnection attempts for
 * the life of the process, past `client.shutdown()` (which shuts the new ones): a relay leaked
 * them after each full outage, and the Cassandra outage test's process never exited (found with
 * async_hooks: the timers were set in the relay's first connect). This shuts each one down as it
 * leaves the map; requests go to the hosts in the map.
 */
export function shutDownRemovedHosts(client: cassandra.Client): void {
  const hosts = (client as unknown as { controlConnection?: { hosts?: NodeJS.EventEmitter } }).controlConnection?.hosts;
  if (!hosts || typeof hosts.on !== 'function') return; // a driver without the bug's shape
  hosts.on('remove', (host: DriverHost) => {
    void host.shutdown(false).catch(() => {});
  });
}
