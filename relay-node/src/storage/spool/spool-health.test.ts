import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createLogger } from '../../logger.ts';
import { awayCassandra, silentCassandraPort } from './away-cassandra.fixture.ts';
import { createSpoolingStore } from './spooling-store.ts';

describe('spooling store health', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('answers while the Cassandra check is still waiting on a node that never replies', async () => {
    // A "Cassandra" that accepts connections and never answers (packets dropped past the handshake).
    const silent = await silentCassandraPort();
    const { sockets } = silent;
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-health-'));
    dirs.push(dir);
    // The driver gives up on the silent node only after this long.
    const cassandra = await awayCassandra({ port: silent.port, timeoutMs: 15_000 });
    const spool = createSpoolingStore(cassandra, {
      dataDir: join(dir, 'spool'),
      drainIntervalMs: 60_000,
      log: createLogger('silent'),
    });
    try {
      // The Cassandra store's own check, asked first: it waits on the silent node.
      let checked = false;
      void cassandra.health().then(() => {
        checked = true;
      });
      const first = await spool.health();
      assert.ok(sockets.length > 0, 'the check did reach the silent node');
      assert.equal(checked, false, 'answered while the store’s own check still waits on the node');
      assert.equal(first.ok, true, 'writes would spool: the node stays healthy');
      assert.equal(first.state, 'unreachable');
      assert.match(String(first.detail), /not answered/);
      // A second call does not pile another check onto the silent node.
      const connections = sockets.length;
      const second = await spool.health();
      assert.equal(second.state, 'unreachable');
      assert.equal(sockets.length, connections);
    } finally {
      // Nothing listens any more and the driver's connect fails now: close does not wait it out.
      silent.close();
      await spool.close();
    }
  });
});
