import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { history, startRelay, type TestRelay, tempDir } from '../helpers/relay.ts';
import { type Collector, collect, FAST_MESH, meshStatus, publish, waitFor } from '../helpers/mesh.ts';

/**
 * A relay whose retention deleted messages is offered them again by a peer that keeps them (a
 * longer retention, or no sweep yet) when it catches up from that peer: after a restart (its
 * recent ids are gone), within the lookback. It must not store them again, nor hand them to its
 * live subscribers as new (they are older than what those subscribers were sent, out of cursor
 * order, and its resume would refuse a cursor from before them as expired).
 */
async function offeredBack(by: 'count' | 'age', retention: Record<string, string>, topic: string) {
  const relays: TestRelay[] = [];
  const collectors: Collector[] = [];
  const start = async (...args: Parameters<typeof startRelay>) => {
    const relay = await startRelay(...args);
    relays.push(relay);
    return relay;
  };
  const stop = async (relay: TestRelay) => {
    relays.splice(relays.indexOf(relay), 1);
    await relay.stop();
  };
  try {
    const [dirA, dirB] = [await tempDir(), await tempDir()];
    const flagsA = { ...FAST_MESH, listen: '/ip4/127.0.0.1/tcp/0', 'retention-sweep-ms': '100', ...retention };
    let a = await start(flagsA, { dataDir: dirA });
    const addressOf = async (relay: TestRelay) => (await meshStatus(relay.url)).node.multiaddrs[0] as string;
    let bootstrap = await addressOf(a);
    const flagsB = () => ({ ...FAST_MESH, bootstrap });
    let b = await start(flagsB(), { dataDir: dirB });

    // Three messages reach A and are trimmed there by its retention; B keeps them.
    const old = (
      await publish(
        b.url,
        topic,
        [1, 2, 3].map((n) => ({ data: n })),
      )
    ).map((ack) => ack.id);
    // Count: A keeps two of them, so it is known to have had them by the third one.
    await waitFor('A to get the three', async () => {
      const held = (await history(a.url, topic)).map((m) => m.id);
      return by === 'count' ? held.includes(old[2] as string) : old.every((id) => held.includes(id));
    });
    if (by === 'age') {
      await waitFor('A to trim them by age', async () => (await history(a.url, topic)).length === 0);
    }
    const newer = (
      await publish(
        b.url,
        topic,
        [4, 5].map((n) => ({ data: n })),
      )
    ).map((ack) => ack.id);
    if (by === 'count') {
      await waitFor('A to trim all but the newest two', async () => {
        const kept = (await history(a.url, topic)).map((m) => m.id);
        return kept.length === 2 && kept.every((id) => newer.includes(id));
      });
    }
    await waitFor('B to hold all five', async () => (await history(b.url, topic)).length === 5);

    // A restarts (forgetting the ids it delivered) while B is away; a subscriber goes live on it.
    await stop(b);
    await stop(a);
    a = await start(flagsA, { dataDir: dirA });
    bootstrap = await addressOf(a);
    const live = await collect(a.wsUrl, `${topic.split('.')[0]}.>`);
    collectors.push(live);
    const runsBefore = (await meshStatus(a.url)).mesh.sync?.runs ?? 0;
    // B comes back: A catches up from it, and B offers all five.
    b = await start(flagsB(), { dataDir: dirB });
    await waitFor('A to catch up from B', async () => {
      const sync = (await meshStatus(a.url)).mesh.sync as { runs: number; failures: number } | null;
      return sync !== null && sync.runs - sync.failures > runsBefore;
    });
    // A marker published after the catch-up: once it arrives, anything the catch-up delivered has.
    const [marker] = await publish(b.url, topic, [{ data: 'marker' }]);
    await waitFor('the marker on A', () => live.ids().has(marker?.id as string));

    const replayed = live.received.filter((m) => old.includes(m.id)).map((m) => m.data);
    assert.deepEqual(replayed, [], 'messages retention deleted on A were delivered to its live subscriber again');
    const stored = (await history(a.url, topic)).map((m) => m.id);
    assert.ok(
      old.every((id) => !stored.includes(id)),
      `A stored trimmed messages again: ${JSON.stringify(stored)}`,
    );
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    const skipped = /^anode_mesh_catch_up_expired_total (\d+)/m.exec(metrics);
    assert.ok(skipped && Number(skipped[1]) >= 3, `the refused messages are counted: ${skipped?.[0]}`);
  } finally {
    for (const c of collectors) c.client.close();
    await Promise.all(relays.map((r) => r.stop()));
  }
}

describe('relay mesh: retention and catch-up', () => {
  it('a message trimmed by retention_max_messages is not stored nor delivered again when a peer offers it', () =>
    offeredBack('count', { 'retention-max-messages': '2' }, 'kept.count'));

  it('a message trimmed by retention_max_age_ms is not stored nor delivered again when a peer offers it', () =>
    offeredBack('age', { 'retention-max-age-ms': '2500' }, 'kept.age'));
});
