import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createShards } from '@anode/relay-node/src/mesh/shards.ts';
import { meshProcesses, meshStatus, publish, waitFor, waitForFullMesh } from '../helpers/mesh.ts';
import { history } from '../helpers/relay.ts';

const TOPIC = 'silent.ticks';
const gossipTopic = createShards(32).gossipTopic(TOPIC);
const LOOKBACK_MS = 1_000;

/**
 * A peer that goes silent (a frozen process here; a partition is the same to the others) is
 * dropped only after three missed pings, which takes longer than the catch-up lookback. Its
 * watermarks used to move on with the clock meanwhile (and at once when it woke up), so what the
 * others published while it was silent fell outside the catch-up it ran on reconnecting, and was
 * never fetched.
 */
describe('relay mesh: a peer that went silent catches up what was published meanwhile', () => {
  const { spawn, kill } = meshProcesses({ 'mesh-sync-lookback-ms': String(LOOKBACK_MS) });
  after(kill);

  it('fetches, once awake, what a peer published after dropping it', { timeout: 240_000 }, async () => {
    const a = await spawn('--listen', '/ip4/127.0.0.1/tcp/0');
    const addressA = (await meshStatus(a.url)).node.multiaddrs[0] as string;
    const b = await spawn('--bootstrap', addressA);
    await waitForFullMesh([a.url, b.url], gossipTopic, 60_000);
    const [first] = await publish(a.url, TOPIC, [{ data: 'before' }]);
    await waitFor('the first message on B', async () => (await history(b.url, TOPIC)).some((m) => m.id === first?.id));

    b.child.kill('SIGSTOP');
    let meanwhile: string[];
    try {
      // A notices B is gone (three missed pings of max(5 s, 1 s)), then goes on publishing.
      await waitFor('A to drop the silent B', async () => (await meshStatus(a.url)).peers.length === 0, 90_000, 500);
      meanwhile = (
        await publish(a.url, TOPIC, [{ data: 'while B was silent 1' }, { data: 'while B was silent 2' }])
      ).map((ack) => ack.id);
      // Longer ago than the lookback by the time B wakes up.
      await new Promise((resolve) => setTimeout(resolve, 3 * LOOKBACK_MS));
    } finally {
      b.child.kill('SIGCONT');
    }
    await waitFor('B to reconnect to A', async () => (await meshStatus(b.url)).peers.length === 1, 60_000, 200);
    await waitFor(
      'what A published while B was silent to reach B',
      async () => {
        const have = new Set((await history(b.url, TOPIC)).map((m) => m.id));
        return meanwhile.every((id) => have.has(id));
      },
      45_000,
      200,
    );
    const stored = (await history(b.url, TOPIC)).map((m) => m.id);
    assert.equal(new Set(stored).size, stored.length, 'each message stored once');
  });
});
