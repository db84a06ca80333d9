import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { createShards } from '@anode/relay-node/src/mesh/shards.ts';
import { type RelayProcess, spawnRelay, tempDir, history } from '../helpers/relay.ts';
import {
  asArgs,
  type Collector,
  collect,
  FAST_MESH,
  rejoinableArgs,
  meshStatus,
  publish,
  waitFor,
  waitForFullMesh,
} from '../helpers/mesh.ts';

const TOPIC = 'failover.ticks';

/** Publishes batches to one node until stopped or the node fails; records every acked id. */
function publisher(url: string, acked: Set<string>) {
  let running = true;
  let n = 0;
  const done = (async () => {
    while (running) {
      try {
        const items = Array.from({ length: 5 }, () => ({ data: { n: n++ } }));
        for (const ack of await publish(url, TOPIC, items)) acked.add(ack.id);
      } catch {
        return; // the node is gone
      }
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
    },
  };
}

describe('relay mesh: failures', () => {
  const processes: RelayProcess[] = [];
  const dirs: string[] = [];
  const collectors: Collector[] = [];

  after(async () => {
    for (const c of collectors) c.client.close();
    for (const p of processes) p.child.kill('SIGKILL');
    await Promise.all(processes.map((p) => p.exited));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('loses nothing for subscribers anywhere when a relay is killed with SIGKILL mid-stream, and the restarted relay catches up', async () => {
    const fast = asArgs(FAST_MESH);
    const node = async (args: string[]) => {
      const dir = await tempDir();
      dirs.push(dir);
      return { dir, args: ['--data-dir', dir, ...fast, ...args] };
    };
    const a = await node(['--port', '0', '--listen', '/ip4/127.0.0.1/tcp/0']);
    const relayA = await spawnRelay(a.args);
    processes.push(relayA);
    const bootstrap = (await meshStatus(relayA.url)).node.multiaddrs[0] as string;
    const b = await node(['--port', '0', '--bootstrap', bootstrap]);
    // C keeps its ports, so that its subscriber's client reconnects to it after the restart.
    const c = await node(await rejoinableArgs(bootstrap));
    const [relayB, relayC] = await Promise.all([spawnRelay(b.args), spawnRelay(c.args)]);
    processes.push(relayB as RelayProcess, relayC as RelayProcess);
    const urls = [relayA.url, relayB.url, relayC.url];
    await waitForFullMesh(urls, createShards(32).gossipTopic(TOPIC));
    const [onA, onB, onC] = await Promise.all(
      [relayA, relayB, relayC].map((r) => collect((r as RelayProcess).wsUrl, 'failover.>')),
    );
    collectors.push(onA as Collector, onB as Collector, onC as Collector);

    const acked = new Set<string>();
    const pubs = urls.map((url) => publisher(url, acked));
    await waitFor('traffic on all three nodes', () => acked.size >= 300);
    relayC.child.kill('SIGKILL');
    assert.equal((await relayC.exited).signal, 'SIGKILL');
    await pubs[2]?.stop();
    const atKill = acked.size;
    await waitFor('more traffic while C is down', () => acked.size >= atKill + 300);

    const restarted = await spawnRelay(c.args);
    processes.push(restarted);
    await waitFor('traffic after C is back', () => acked.size >= atKill + 500);
    await Promise.all(pubs.slice(0, 2).map((p) => p.stop()));

    for (const [name, collector] of [
      ['A', onA],
      ['B', onB],
      ['C (resumed after its restart)', onC],
    ] as const) {
      await waitFor(
        `the subscriber on ${name} to have every acked message`,
        () => [...acked].every((id) => collector?.ids().has(id)),
        20_000,
      );
    }
    await waitFor('the restarted store to hold every acked message', async () => {
      const stored = new Set((await history(restarted.url, TOPIC)).map((m) => m.id));
      return [...acked].every((id) => stored.has(id));
    });
    const storedA = (await history(relayA.url, TOPIC)).map((m) => m.id);
    const storedC = (await history(restarted.url, TOPIC)).map((m) => m.id);
    assert.deepEqual(new Set(storedC), new Set(storedA), 'the replicas converged');
    assert.equal(new Set(storedC).size, storedC.length, 'no duplicates in the restarted store');
  });

  it('keeps a peer frozen for one ping, drops one frozen for three (SIGSTOP), and takes it back with what it missed', async () => {
    const fast = asArgs(FAST_MESH);
    const [dirA, dirB] = [await tempDir(), await tempDir()];
    dirs.push(dirA, dirB);
    const a = await spawnRelay(['--port', '0', '--data-dir', dirA, ...fast, '--listen', '/ip4/127.0.0.1/tcp/0']);
    processes.push(a);
    const bootstrap = (await meshStatus(a.url)).node.multiaddrs[0] as string;
    const b = await spawnRelay(['--port', '0', '--data-dir', dirB, ...fast, '--bootstrap', bootstrap]);
    processes.push(b);
    await waitFor('b to connect', async () => (await meshStatus(a.url)).peers.length === 1);

    // A short freeze (one ping unanswered, 5 s) is a slow peer, not a dead one: the link stays.
    b.child.kill('SIGSTOP');
    const frozeAt = Date.now();
    let dropped = false;
    while (Date.now() - frozeAt < 6_000) {
      if ((await meshStatus(a.url)).peers.length === 0) dropped = true;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    b.child.kill('SIGCONT');
    assert.equal(dropped, false, 'a dropped b after one unanswered ping');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    assert.equal((await meshStatus(a.url)).peers.length, 1, 'b is still connected after a 6 s freeze');

    // A long one (three pings unanswered in a row) is a dead peer: dropped.
    b.child.kill('SIGSTOP');
    await waitFor(
      'a to notice b is dead (three failed pings)',
      async () => (await meshStatus(a.url)).peers.length === 0,
      45_000,
    );
    const missed = await publish(a.url, 'frozen.t', [{ data: 1 }, { data: 2 }]);
    b.child.kill('SIGCONT');
    await waitFor('b to reconnect', async () => (await meshStatus(a.url)).peers.length === 1);
    await waitFor('b to catch up', async () => (await history(b.url, 'frozen.t')).length === missed.length);
  });
});
