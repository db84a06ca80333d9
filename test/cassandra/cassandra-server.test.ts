// Proves the launcher gives a real, writable Cassandra 5.0 and that last-write-wins
// by client timestamp holds (the relay relies on USING TIMESTAMP for ordering).
// A start failure FAILS with Cassandra's log tail; only a machine with no java at
// all, outside CI, skips.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import cassandra from 'cassandra-driver';
import { type CassandraServer, findJava, startCassandra } from './cassandra-server.ts';

const skip =
  !findJava() && !process.env.CI
    ? 'java is not on PATH: install Java 17 to run the real-Cassandra test (it never skips when CI is set)'
    : false;

describe('real Cassandra 5.0 from Maven Central', { skip }, () => {
  let server: CassandraServer | undefined;
  let client: cassandra.Client | undefined;

  before(
    async () => {
      server = await startCassandra({
        fast: true,
        heap: '512m',
        log: (line) => process.stderr.write(`# [cassandra] ${line}\n`),
      });
      client = new cassandra.Client({
        contactPoints: [server.host],
        protocolOptions: { port: server.port },
        localDataCenter: 'datacenter1',
      });
      await client.connect();
      await client.execute(
        "CREATE KEYSPACE anode_test WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
      );
      await client.execute('CREATE TABLE anode_test.items (id text PRIMARY KEY, value text)');
    },
    // The first run also resolves ~70 MB of jars from Maven Central.
    { timeout: 600_000 },
  );

  after(async () => {
    await client?.shutdown();
    await server?.stop();
  });

  test('reports a 5.0.x release', () => {
    assert.match(server?.releaseVersion ?? '', /^5\.0\.\d+$/);
  });

  test('writes and reads back a row', async () => {
    const db = client as cassandra.Client;
    await db.execute('INSERT INTO anode_test.items (id, value) VALUES (?, ?)', ['a', 'hello']);
    const row = (await db.execute('SELECT value FROM anode_test.items WHERE id = ?', ['a'])).first();
    assert.equal(row?.get('value'), 'hello');
  });

  test('a write with an older USING TIMESTAMP does not overwrite a newer one', async () => {
    const db = client as cassandra.Client;
    const read = async () =>
      (await db.execute('SELECT value, WRITETIME(value) AS ts FROM anode_test.items WHERE id = ?', ['b'])).first();
    await db.execute("INSERT INTO anode_test.items (id, value) VALUES ('b', 'newer') USING TIMESTAMP 2000");
    await db.execute("INSERT INTO anode_test.items (id, value) VALUES ('b', 'older') USING TIMESTAMP 1000");
    await db.execute("UPDATE anode_test.items USING TIMESTAMP 1500 SET value = 'older too' WHERE id = 'b'");
    let row = await read();
    assert.equal(row?.get('value'), 'newer');
    assert.equal(String(row?.get('ts')), '2000');
    // ...while a newer timestamp does win, so the checks above are not vacuous.
    await db.execute("INSERT INTO anode_test.items (id, value) VALUES ('b', 'newest') USING TIMESTAMP 3000");
    row = await read();
    assert.equal(row?.get('value'), 'newest');
  });
});
