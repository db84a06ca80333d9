import assert from 'node:assert/strict';
import { cp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createHybridClock, type Envelope, type MessageStore, randomNodeId } from '@anode/shared';
import { createClient } from '@anode/client';
import { createCassandraStore } from '@anode/relay-node/src/storage/cassandra/cassandra-store.ts';
import { createNodeLease, type LeaseIo, type NodeLease } from '@anode/relay-node/src/storage/cassandra/node-lease.ts';
import { createLogger } from '@anode/relay-node/src/logger.ts';
import { messageStoreCompliance } from '@anode/relay-node/src/storage/message-store.compliance.ts';
import { createSpoolingStore } from '@anode/relay-node/src/storage/spool/spooling-store.ts';
import { recorder, testHub } from '@anode/relay-node/src/hub/test-hub.ts';
import cassandra from 'cassandra-driver';
import { waitFor } from '../helpers/feeds.ts';
import { startRelay, tempDir, type TestRelay } from '../helpers/relay.ts';
import { type CassandraServer, findJava, startCassandra } from './cassandra-server.ts';
import { sharedCassandra } from './shared-cassandra.ts';

/**
 * The Cassandra adapter against a real Apache Cassandra 5.0 started from its Maven Central jars:
 * the MessageStore compliance suite, TTL retention, a Cassandra outage under a live publisher,
 * and two relays sharing one cluster.
 */
const skip = !findJava() && !process.env.CI ? 'java is not installed (CI never skips this suite)' : false;

const log = (line: string) => console.error(`[cassandra] ${line}`);
let server: CassandraServer | undefined;
/** The outage test's own node: it stops and restarts it, which no other file's node may see. */
let outageNode: CassandraServer | undefined;
const started = Date.now();
const serverReady = skip
  ? Promise.resolve(undefined)
  : sharedCassandra({ log }).then((s) => {
      server = s;
      console.error(`[cassandra] ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return s;
    });

const storeOptions = (s: CassandraServer, keyspace: string, maxAgeMs = 0) => ({
  contactPoints: [`${s.host}:${s.port}`],
  localDataCenter: 'datacenter1',
  keyspace,
  replication: 'SimpleStrategy:1',
  writeConsistency: 'LOCAL_QUORUM',
  readConsistency: 'LOCAL_QUORUM',
  concurrency: 32,
  bucketMs: 60_000,
  timeoutMs: 5_000,
  retention: { maxAgeMs, maxMessages: 0 },
});

const keyspaceName = () => `t_${randomNodeId(12)}`;

after(async () => {
  await outageNode?.stop();
  await server?.stop();
});

describe('Cassandra store', { skip }, () => {
  before(async () => {
    await serverReady;
  });

  messageStoreCompliance(
    'cassandra',
    async () => {
      const s = (await serverReady) as CassandraServer;
      let keyspace = keyspaceName();
      return {
        async open(retention, options) {
          if (!options?.reopen) keyspace = keyspaceName();
          return createCassandraStore({ ...storeOptions(s, keyspace), retention });
        },
        async cleanup() {},
      };
    },
    { countRetention: false, ageRetention: false },
  );

  // The spooling store the relay puts in front of Cassandra is that store while Cassandra answers.
  messageStoreCompliance(
    'spooling store in front of cassandra',
    async () => {
      const s = (await serverReady) as CassandraServer;
      let keyspace = keyspaceName();
      const spoolDir = await tempDir();
      return {
        async open(retention, options) {
          if (!options?.reopen) keyspace = keyspaceName();
          return createSpoolingStore(createCassandraStore({ ...storeOptions(s, keyspace), retention }), {
            dataDir: spoolDir,
            drainIntervalMs: 100,
            log: createLogger('silent'),
          });
        },
        async cleanup() {
          await rm(spoolDir, { recursive: true, force: true });
        },
      };
    },
    { countRetention: false, ageRetention: false },
  );

  it('keeps the newest ts per source in Cassandra itself (USING TIMESTAMP), whatever the arrival order', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = keyspaceName();
    const store = createCassandraStore(storeOptions(s, keyspace));
    const clock = createHybridClock('lat');
    const make = (ts: number, n: number): Envelope => ({
      id: `m${n}`,
      topic: 'ooo.t',
      cursor: clock.next(),
      source: 'feed',
      ts,
      data: n,
    });
    // Arrival order scrambled against ts; concurrent appends race on the server.
    const messages = [make(5_000, 1), make(9_000, 2), make(1_000, 3), make(7_000, 4), make(8_999, 5)];
    await Promise.all(messages.map((m) => store.append([m])));
    assert.equal((await store.latest('ooo.t')).feed?.data, 2);
    const raw = new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
    const row = (
      await raw.execute(`SELECT writetime(envelope) AS wt FROM ${keyspace}.latest WHERE topic = ? AND source = ?`, [
        'ooo.t',
        'feed',
      ])
    ).first();
    assert.equal(Number(row?.wt), 9_000 * 1000, 'the cell carries the message ts as its write time');
    await raw.shutdown();
    await store.close();
  });

  it('node-id lease: a clone with the same host name and path is refused once the original renewed; a restart after a kill takes it back at once', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = keyspaceName();
    const schema = createCassandraStore(storeOptions(s, keyspace));
    await schema.topics(); // creates the keyspace and its tables
    await schema.close();
    const client = new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
    const dir = await tempDir();
    const killed = new Set<string>();
    /** Each lease's statements; a killed relay's no longer reach Cassandra (its row stays). */
    const io = (who: string): LeaseIo => ({
      exec: (query, params) =>
        killed.has(who)
          ? Promise.reject(new Error(`${who} was killed`))
          : client.execute(query, params, {
              prepare: true,
              consistency: cassandra.types.consistencies.localQuorum,
              serialConsistency: cassandra.types.consistencies.localSerial,
            }),
    });
    const nodeId = randomNodeId(12);
    const made: NodeLease[] = [];
    // Every one names the same host and folder: only the token in node-lease tells them apart.
    const lease = (who: string, tokenFile: string) => {
      const created = createNodeLease(io(who), {
        keyspace,
        nodeId,
        holder: 'relay-1 /var/lib/anode',
        tokenFile,
        leaseS: 20,
        renewMs: 300,
        pollMs: 100,
      });
      made.push(created);
      return created;
    };
    try {
      const original = lease('original', join(dir, 'original'));
      await original.take();
      // The clone is made now; the original renews (a new token) before the clone boots.
      await cp(join(dir, 'original'), join(dir, 'clone'));
      await new Promise((r) => setTimeout(r, 1_000));
      await assert.rejects(lease('clone', join(dir, 'clone')).take(), /node id \w+ is in use by another relay/);
      assert.equal(original.problem, undefined, 'the original holds on');
      // SIGKILL: no release, and the row stays under the token the original wrote last.
      killed.add('original');
      // A killed process writes no more token files either: its renewals stop with it (release's
      // DELETE is refused as killed, so the row stays). Left running, they raced the folder's removal.
      await original.release();
      await new Promise((r) => setTimeout(r, 500));
      const restarted = lease('restarted', join(dir, 'original'));
      const started = Date.now();
      await restarted.take();
      assert.ok(Date.now() - started < 3_000, `took the lease back after ${Date.now() - started} ms`);
      assert.equal((await stat(join(dir, 'original'))).mode & 0o777, 0o600);
      // A clean stop gives it up: the clone takes it at once.
      await restarted.release();
      const clone = lease('clone 2', join(dir, 'clone'));
      await clone.take();
      await clone.release();
    } finally {
      // Stopped before the folder goes (a failed assertion left some renewing into it).
      for (const one of made) await one.release();
      await client.shutdown();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('node-id lease: a store whose lease another relay took refuses appends until it has it back', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = keyspaceName();
    const dir = await tempDir();
    const nodeId = randomNodeId(12);
    const store = createCassandraStore({
      ...storeOptions(s, keyspace),
      lease: { nodeId, holder: 'relay-1 /data', tokenFile: join(dir, 'node-lease'), leaseS: 20, renewMs: 200 },
    });
    const client = new cassandra.Client({ contactPoints: [`${s.host}:${s.port}`], localDataCenter: 'datacenter1' });
    const clock = createHybridClock(nodeId);
    const message = (data: string): Envelope => ({
      id: `k-${data}`,
      topic: 'lease.lost',
      cursor: clock.next(),
      source: 's',
      ts: Date.now(),
      data,
    });
    try {
      await store.open?.();
      assert.equal((await store.append([message('before')]))[0]?.inserted, true);
      // Another relay with this node id takes the lease (this one was paused past its TTL: the row
      // expired, and the other one claimed it). It holds it until it stops, below: its TTL is
      // longer than this test, so nothing here races it.
      await client.execute(`DELETE FROM ${keyspace}.node_leases WHERE node_id = ?`, [nodeId]);
      await client.execute(
        `INSERT INTO ${keyspace}.node_leases (node_id, holder, renewed_at) VALUES (?, ?, ?) USING TTL 60`,
        [nodeId, 'relay-2 /data #other', new Date()],
        { prepare: true },
      );
      // The next renewal (every 200 ms) finds it.
      await waitFor(async () => (await store.health()).ok === false, 10_000, 'the store to report the lease lost');
      await assert.rejects(store.append([message('during')]), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'node_id_in_use');
        assert.match(error.message, /relay-2 \/data #other/);
        return true;
      });
      // The other relay stops and gives the lease up: this store takes it again and writes again.
      await client.execute(`DELETE FROM ${keyspace}.node_leases WHERE node_id = ?`, [nodeId]);
      const afterwards = message('after');
      const appended = await waitFor(
        () =>
          store.append([afterwards]).catch((error: Error & { code?: string }) => {
            if (error.code === 'node_id_in_use') return undefined; // not taken back yet
            throw error;
          }),
        10_000,
        'the store to take its lease back and append',
      );
      assert.equal(appended[0]?.inserted, true);
      const history = await store.history('lease.lost', { limit: 10 });
      assert.deepEqual(
        history.map((m) => m.data),
        ['before', 'after'],
      );
    } finally {
      await client.shutdown();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('expires messages by TTL and refuses resume cursors older than retention', async () => {
    const s = (await serverReady) as CassandraServer;
    const store: MessageStore = createCassandraStore(storeOptions(s, keyspaceName(), 1_500));
    // Connect and migrate first: that takes longer than this retention, and the clock starts after.
    assert.equal((await store.health()).ok, true);
    const clock = createHybridClock('ttl');
    const first: Envelope = { id: 'old', topic: 'ttl.t', cursor: clock.next(), source: 's', ts: 1, data: 1 };
    await store.append([first]);
    assert.equal((await store.history('ttl.t', { limit: 10 })).length, 1);
    assert.equal(await store.trimmedThrough('ttl.t'), undefined);
    await new Promise((r) => setTimeout(r, 3_000));
    assert.deepEqual(await store.history('ttl.t', { limit: 10 }), []);
    const trimmed = await store.trimmedThrough('ttl.t');
    assert.ok(trimmed && first.cursor < trimmed, `trimmed through ${trimmed}`);
    await store.close();
  });

  it('lists a topic TTLs emptied among its trimmed topics, and a pattern resume from before it is refused', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = keyspaceName();
    // Buckets of 1 s: their index rows expire 1 s after their messages, and `topics` forgets the topic.
    const options = { ...storeOptions(s, keyspace, 1_500), bucketMs: 1_000 };
    const store = createCassandraStore(options);
    const spoolDir = await tempDir();
    const spooling = createSpoolingStore(createCassandraStore(options), {
      dataDir: spoolDir,
      drainIntervalMs: 100,
      log: createLogger('silent'),
    });
    try {
      assert.equal((await store.health()).ok, true);
      assert.deepEqual(await store.trimmedTopics?.(), new Map());
      const clock = createHybridClock('gone');
      const make = (id: string, topic: string): Envelope => ({
        id,
        topic,
        cursor: clock.next(),
        source: 's',
        ts: 1,
        data: id,
      });
      const gone = [make('gone-1', 'gone.x'), make('gone-2', 'gone.x')];
      await store.append(gone);
      await new Promise((r) => setTimeout(r, 4_500));
      const kept = make('kept-1', 'gone.y');
      await store.append([kept]);
      assert.deepEqual(await store.history('gone.x', { limit: 10 }), []);
      assert.deepEqual(await store.topics(), ['gone.y'], 'the emptied topic is no longer listed');
      const marks = await store.trimmedTopics?.();
      const mark = marks?.get('gone.x');
      assert.ok(mark && (gone[1] as Envelope).cursor < mark, `gone.x trimmed through ${mark}`);
      assert.equal(marks?.has('gone.y'), false);
      assert.equal((await spooling.trimmedTopics?.())?.has('gone.x'), true, 'the spooling store asks Cassandra');
      // The hub on this store: `sub gone.> after` the first cursor is refused, as `sub gone.x` is.
      const hub = testHub(store);
      for (const pattern of ['gone.x', 'gone.>', 'gone.*']) {
        await assert.rejects(
          hub.subscribe(recorder(), pattern, gone[0]?.cursor),
          (error: Error & { code?: string }) => error.code === 'cursor_expired',
          pattern,
        );
      }
    } finally {
      await store.close();
      await spooling.close();
      await rm(spoolDir, { recursive: true, force: true });
    }
  });
});

// `only` only when asked: Node 24 running this file directly (not under --test) drops a suite
// given `only: false` without a word.
describe('relays on Cassandra', { skip, ...(process.env.ONLY_OUTAGE ? { only: true } : {}) }, () => {
  const relays: TestRelay[] = [];
  after(async () => {
    // Not swallowed: a relay that fails to stop leaves its store's connections open (and the
    // test process alive).
    for (const relay of relays) await relay.stop();
  });

  const cassandraFlags = (s: CassandraServer, keyspace: string) => ({
    store: 'cassandra',
    'cassandra-contact-points': `${s.host}:${s.port}`,
    'cassandra-keyspace': keyspace,
    'cassandra-timeout-ms': '2000',
    'cassandra-bucket-ms': '60000',
    'spool-drain-ms': '250',
    'publish-rate': '100000',
    'publish-burst': '100000',
  });

  it('two relays sharing Cassandra: publish on one, resume from a cursor on the other sees all', async () => {
    const s = (await serverReady) as CassandraServer;
    const keyspace = keyspaceName();
    const a = await startRelay(cassandraFlags(s, keyspace));
    const b = await startRelay(cassandraFlags(s, keyspace));
    relays.push(a, b);
    const publisher = createClient({ url: a.wsUrl });
    const first = await publisher.publish('shared.t', { n: 0 });
    const acks = [];
    for (let n = 1; n <= 50; n++) acks.push(await publisher.publish('shared.t', { n }));
    const received: Envelope[] = [];
    const reader = createClient({ url: b.wsUrl });
    const sub = reader.subscribe('shared.t', (m) => received.push(m), { after: first.cursor });
    await sub.ready;
    assert.deepEqual(
      received.map((m) => m.id),
      acks.map((a) => a.id),
    );
    publisher.close();
    reader.close();
  });

  it('a copy of a relay’s data folder does not start on its keyspace while that relay runs, and does after it stops', async () => {
    const s = (await serverReady) as CassandraServer;
    const flags = cassandraFlags(s, keyspaceName());
    const original = await tempDir();
    const copy = await tempDir();
    const a = await startRelay(flags, { dataDir: original });
    try {
      const [ack] = await (
        await fetch(`${a.url}/v1/topics/lease.t/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ data: 'from the original' }),
        })
      )
        .json()
        .then((body: { messages: { id: string }[] }) => body.messages);
      assert.ok(ack);
      // A cloned machine: the same node id, another folder (or host).
      await cp(original, copy, { recursive: true, filter: (path) => !path.endsWith('/lock') });
      const started = Date.now();
      await assert.rejects(startRelay(flags, { dataDir: copy }), /node id \w+ is in use by another relay/);
      const waited = Date.now() - started;
      // Refused once the holder renewed its lease (every 10 s), well before its lease could expire.
      assert.ok(waited < 25_000, `refused after ${waited} ms`);
      assert.equal((await (await fetch(`${a.url}/v1/status`)).json()).store.ok, true, 'the original runs on');
    } finally {
      await a.stop();
    }
    // Stopped cleanly, the original gave its lease up: the copy starts at once.
    const started = Date.now();
    const b = await startRelay(flags, { dataDir: copy });
    relays.push(b);
    assert.ok(Date.now() - started < 10_000, `started after ${Date.now() - started} ms`);
    const history = (await (await fetch(`${b.url}/v1/topics/lease.t/messages`)).json()) as { messages: Envelope[] };
    assert.deepEqual(
      history.messages.map((m) => m.data),
      ['from the original'],
    );
    await rm(original, { recursive: true, force: true });
  });

  it('keeps acking and delivering through a Cassandra outage, and every acked message lands in Cassandra', async () => {
    outageNode = await startCassandra({ fast: true, log });
    const s = outageNode;
    const keyspace = keyspaceName();
    const dataDir = await tempDir();
    const relay = await startRelay(cassandraFlags(s, keyspace), { dataDir });
    relays.push(relay);
    const live: Envelope[] = [];
    const subscriber = createClient({ url: relay.wsUrl });
    await subscriber.subscribe('outage.t', (m) => live.push(m)).ready;
    const publisher = createClient({ url: relay.wsUrl });
    const acked: string[] = [];
    let publishing = true;
    const pump = (async () => {
      let n = 0;
      while (publishing) {
        acked.push((await publisher.publish('outage.t', { n: n++ })).id);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const waitFor = async (count: number) => {
      while (acked.length < count) await new Promise((r) => setTimeout(r, 10));
    };
    await waitFor(50);
    const { dataDir: cassandraDir, port, storagePort } = s;
    await s.stop();
    const duringOutage = acked.length;
    await waitFor(duringOutage + 100); // acked from the local spool
    // A restart replays the commit log: on a loaded machine it can take minutes.
    outageNode = await startCassandra({
      dataDir: cassandraDir,
      cqlPort: port,
      storagePort,
      fast: true,
      timeoutMs: 300_000,
    });
    await waitFor(acked.length + 50);
    publishing = false;
    await pump;

    const status = (await (await fetch(`${relay.url}/v1/status`)).json()) as { store: { spool_depth: number } };
    assert.equal(typeof status.store.spool_depth, 'number');
    const deadline = Date.now() + 60_000;
    const stored = new Set<string>();
    let checkError: string | undefined;
    while (Date.now() < deadline) {
      const check = createCassandraStore(storeOptions(outageNode, keyspace));
      const history = await check.history('outage.t', { limit: 100_000 }).catch((error: Error) => {
        checkError = error.message;
        return [];
      });
      await check.close();
      for (const m of history) stored.add(m.id);
      if (acked.every((id) => stored.has(id))) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const missing = acked.filter((id) => !stored.has(id));
    assert.deepEqual(
      missing,
      [],
      `${missing.length} of ${acked.length} acked messages missing from Cassandra (last read error: ${checkError})`,
    );
    while (live.length < acked.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(
      live.map((m) => m.id),
      acked,
      'the subscriber saw the live stream throughout',
    );
    subscriber.close();
    publisher.close();
    await rm(dataDir, { recursive: true, force: true }).catch(() => {});
  });
});
