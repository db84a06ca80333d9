import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createShards } from '@anode/relay-node/src/mesh/shards.ts';
import { counter } from '../bench/mesh-edge-common.ts';
import { meshProcesses, meshStatus, publish, waitFor, waitForFullMesh } from '../helpers/mesh.ts';
import { history } from '../helpers/relay.ts';

const TOPIC = 'backlog.blobs';
const gossipTopic = createShards(32).gossipTopic(TOPIC);
const NO_STREAM = 'anode_mesh_gossip_dropped_total{reason="no_stream"}';
/** ~900 KB each: 64 of them are well past the 32 MiB backlog (default max_message_bytes). */
const BLOB = 'z'.repeat(900_000);
const BLOBS = 64;

/**
 * A peer that stops reading (frozen here) is dropped only after three missed pings; until then
 * gossip for it piled up in the publishing relay without a bound. Now its gossip stream is reset
 * once the backlog passes eight of the largest RPCs: the drop is counted, the link cut (or, on a
 * connection too young to cut, kept), the peer told since when to catch up (a resync notice), and
 * it catches up everything when it is back. Before the notice, about one run in five lost all of
 * it: the backlog overflowed on a connection under 2 s old, nothing cut it, and the peer's
 * watermark moved on with its answered pings.
 */
describe('relay mesh: gossip for a peer that stopped reading is bounded', () => {
  // Pings every 30 s: liveness would drop the frozen peer only after 90 s or more.
  const { spawn, kill } = meshProcesses({ 'mesh-ping-interval-ms': '30000' });
  after(kill);

  it(
    'resets the stream to a frozen peer past the backlog, counts it, and the peer catches up',
    { timeout: 280_000 },
    async () => {
      const a = await spawn('--listen', '/ip4/127.0.0.1/tcp/0');
      const addressA = (await meshStatus(a.url)).node.multiaddrs[0] as string;
      const b = await spawn('--bootstrap', addressA);
      await waitForFullMesh([a.url, b.url], gossipTopic, 60_000);
      const droppedBefore = await counter(a.url, NO_STREAM);

      const sent: string[] = [];
      b.child.kill('SIGSTOP');
      try {
        for (let i = 0; i < BLOBS; i += 4) {
          const acks = await Promise.all(
            [0, 1, 2, 3].map((j) => publish(a.url, TOPIC, [{ data: `${i + j}:${BLOB}` }])),
          );
          for (const [ack] of acks) sent.push(ack?.id as string);
        }
        await waitFor(
          'A to give up on the gossip stream to the frozen peer',
          async () => (await counter(a.url, NO_STREAM)) > droppedBefore,
          60_000,
          250,
        );
      } finally {
        b.child.kill('SIGCONT');
      }
      assert.ok(b.child.exitCode === null, 'B is still up');
      // On failure: what each relay logged about its peers, gossip and catch-up.
      const dump = () => {
        for (const [name, r] of [
          ['A', a],
          ['B', b],
        ] as const)
          for (const line of r.output.join('').split('\n'))
            if (/peer|catch|gossip|sync/.test(line)) console.log(name, line.slice(0, 400));
      };
      await waitFor(
        'B to catch up everything A published while it was frozen',
        async () => {
          const have = new Set((await history(b.url, TOPIC)).map((m) => m.id));
          return sent.every((id) => have.has(id));
        },
        150_000,
        500,
      ).catch(async (e) => {
        dump();
        const have = new Set((await history(b.url, TOPIC)).map((m) => m.id));
        console.log('missing', sent.filter((id) => !have.has(id)).length, 'of', sent.length);
        throw e;
      });
    },
  );
});
