import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Envelope } from '@anode/shared';
import { randomNodeId } from '@anode/shared';
import { asArgs, type Collector, collect, FAST_MESH, meshStatus, publish, waitFor } from '../helpers/mesh.ts';
import { cuttableForward } from '../helpers/forward.ts';
import { type RelayProcess, spawnRelay, startRelay, tempDir, type TestRelay } from '../helpers/relay.ts';
import type { CassandraServer } from './cassandra-server.ts';
import { sharedCassandra } from './shared-cassandra.ts';

/**
 * Persist mode `origin` on a real Cassandra: the relays share one store and only the accepting
 * relay writes. A relay that misses gossip (here: SIGSTOPped until its peer drops it, like a
 * partition) must still deliver, to its live subscribers, what was published meanwhile: it catches
 * up from the peer when it returns (the peer answers from the shared store and its spool). (The first Cassandra chaos run lost 1,216
 * messages at live subscribers this way, none from the store.)
 */
let server: CassandraServer | undefined;
const serverReady = sharedCassandra({ log: (line) => console.error(`[cassandra] ${line}`) }).then((s) => (server = s));

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

interface StoreStatus {
  store: { state?: string; spool_depth?: number; held_messages?: number };
}
const storeStatus = async (url: string) => ((await (await fetch(`${url}/v1/status`)).json()) as StoreStatus).store;

async function historyAfter(url: string, topic: string, after: string): Promise<Envelope[]> {
  const res = await fetch(`${url}/v1/topics/${topic}/messages?after=${encodeURIComponent(after)}&limit=100`);
  if (!res.ok) throw new Error(`history: HTTP ${res.status} ${await res.text()}`);
  return ((await res.json()) as { messages: Envelope[] }).messages;
}

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

  it('a resume on another relay sees a message still in its accepting relay’s spool', async () => {
    const s = await serverReady;
    const flags = { ...flagsFor(s, `o_${randomNodeId(12)}`), 'cassandra-timeout-ms': '1500', 'spool-drain-ms': '300' };
    // a's own way to Cassandra, cut to make the store unreachable from a alone.
    const proxy = await cuttableForward('127.0.0.1', () => s.port);
    let a: TestRelay | undefined;
    let b: TestRelay | undefined;
    let live: Collector | undefined;
    let resumed: Collector | undefined;
    try {
      // a reaches Cassandra only through the proxy; b directly.
      a = await startRelay({
        ...flags,
        'cassandra-contact-points': `127.0.0.1:${proxy.port}`,
        listen: '/ip4/127.0.0.1/tcp/0',
      });
      const aUrl = a.url;
      const bootstrap = (await meshStatus(aUrl)).node.multiaddrs[0] as string;
      b = await startRelay({ ...flags, listen: '/ip4/127.0.0.1/tcp/0', bootstrap });
      const bUrl = b.url;
      await waitFor('b to peer with a', async () => (await meshStatus(aUrl)).peers.length === 1, 60_000);
      const [start] = await publish(bUrl, 'sp.t', [{ data: 'start' }]);
      live = await collect(b.wsUrl, 'sp.t');
      const onB = live;

      // a loses the store: its publish is acked from its spool, and reaches b by gossip.
      proxy.cut();
      const [spooled] = await publish(aUrl, 'sp.t', [{ data: 'spooled on a' }]);
      const depth = (await storeStatus(aUrl)).spool_depth;
      assert.ok((depth ?? 0) > 0, `a's spool holds the message (spool_depth ${depth})`);
      await waitFor('the spooled message on b by gossip', () => onB.ids().has(spooled?.id as string), 30_000);
      // b moves on past it in the shared store.
      const [later] = await publish(bUrl, 'sp.t', [{ data: 'later, on b' }]);

      // A client that was away resumes on b from before both: it gets both, in cursor order.
      resumed = await collect(b.wsUrl, 'sp.t', start?.cursor);
      const client = resumed;
      await waitFor('the resumed subscriber to get the later message', () => client.ids().has(later?.id as string));
      assert.deepEqual(
        client.received.map((m) => m.id),
        [spooled?.id, later?.id],
        'the resume delivered the spooled message before the later one',
      );
      assert.deepEqual(
        (await historyAfter(bUrl, 'sp.t', start?.cursor as string)).map((m) => m.id),
        [spooled?.id, later?.id],
      );
      assert.equal((await storeStatus(bUrl)).held_messages, 1, 'b holds the message a has not stored');

      // a gets the store back and drains; b's history then has the message once, from the store.
      proxy.restore();
      await waitFor('a to drain its spool', async () => (await storeStatus(aUrl)).spool_depth === 0, 60_000);
      assert.deepEqual(
        (await historyAfter(bUrl, 'sp.t', start?.cursor as string)).map((m) => m.id),
        [spooled?.id, later?.id],
      );
      assert.equal((await storeStatus(bUrl)).held_messages, 0, 'found in the store, b holds it no longer');
    } finally {
      live?.client.close();
      resumed?.client.close();
      await b?.stop();
      await a?.stop();
      await proxy.close();
    }
  });
});
