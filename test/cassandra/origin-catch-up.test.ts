import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { randomNodeId } from '@anode/shared';
import { asArgs, type Collector, collect, FAST_MESH, meshStatus, publish, waitFor } from '../helpers/mesh.ts';
import { type RelayProcess, spawnRelay, startRelay, tempDir, type TestRelay } from '../helpers/relay.ts';
import { type CassandraServer, startCassandra } from './cassandra-server.ts';

/**
 * Persist mode `origin` on a real Cassandra: the relays share one store and only the accepting
 * relay writes. A relay that misses gossip (here: SIGSTOPped until its peer drops it, like a
 * partition) must still deliver, to its live subscribers, what was published meanwhile: it catches
 * up from the peer when it returns (the peer answers from the shared store and its spool). (The first Cassandra chaos run lost 1,216
 * messages at live subscribers this way, none from the store.)
 */
let server: CassandraServer | undefined;
const serverReady = startCassandra({ fast: true, log: (line) => console.error(`[cassandra] ${line}`) }).then(
  (s) => (server = s),
);

after(async () => {
  await server?.stop();
});

const flagsFor = (s: CassandraServer, keyspace: string) => ({
  store: 'cassandra',
  'cassandra-contact-points': `${s.host}:${s.port}`,
  'cassandra-keyspace': keyspace,
  'cassandra-bucket-ms': '60000',
  ...FAST_MESH,
  'mesh-persist': 'origin',
});

describe('persist origin on a shared Cassandra', () => {
  it('a relay cut off from gossip delivers what it missed to its live subscribers by catch-up', async () => {
    const s = await serverReady;
    const flags = flagsFor(s, `o_${randomNodeId(12)}`);
    let a: TestRelay | undefined;
    let b: RelayProcess | undefined;
    let onB: Collector | undefined;
    try {
      a = await startRelay({ ...flags, listen: '/ip4/127.0.0.1/tcp/0' });
      const aUrl = a.url;
      const bootstrap = (await meshStatus(aUrl)).node.multiaddrs[0] as string;
      b = await spawnRelay([...asArgs(flags), '--port', '0', '--data-dir', await tempDir(), '--bootstrap', bootstrap]);
      const bUrl = b.url;
      await waitFor('b to peer with a', async () => (await meshStatus(aUrl)).peers.length === 1, 60_000);
      onB = await collect(b.wsUrl, 'oc.>');
      const live = onB;
      const [first] = await publish(aUrl, 'oc.t', [{ data: 'before' }]);
      await waitFor('the first message on b by gossip', () => live.ids().has(first?.id as string), 30_000);

      // Cut b off: stopped, it answers no pings, and a drops it. Only then publish, so no copy
      // can sit in b's socket buffers: what b delivers later came from the store.
      b.child.kill('SIGSTOP');
      await waitFor('a to drop the stopped b', async () => (await meshStatus(aUrl)).peers.length === 0, 60_000);
      const missed = await publish(
        aUrl,
        'oc.t',
        Array.from({ length: 20 }, (_, i) => ({ data: i })),
      );
      const other = await publish(aUrl, 'oc.u', [{ data: 'another topic' }]);
      b.child.kill('SIGCONT');

      const wanted = [...missed, ...other].map((m) => m.id);
      await waitFor(
        'every message published while b was cut off, on b’s live subscriber',
        () => wanted.every((id) => live.ids().has(id)),
        60_000,
      );
      // Fanned out once: exactly the missed ones were new to b (the first message, delivered by
      // gossip, and the catch-ups after each reconnect repeat nothing).
      const [last] = await publish(aUrl, 'oc.t', [{ data: 'after' }]);
      await waitFor('the message after the heal', () => live.ids().has(last?.id as string), 30_000);
      assert.equal(
        (await meshStatus(bUrl)).mesh.sync?.received,
        wanted.length,
        'b caught up exactly the messages it missed',
      );
    } finally {
      onB?.client.close();
      if (b) {
        b.child.kill('SIGCONT');
        b.child.kill('SIGKILL');
        await b.exited;
      }
      await a?.stop();
    }
  });
});
