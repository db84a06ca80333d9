import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { asArgs, FAST_MESH, meshStatus, waitFor } from '../helpers/mesh.ts';
import { type RelayProcess, spawnRelay, tempDir } from '../helpers/relay.ts';

/**
 * The cluster view as a new user meets it: two relays in a mesh, a source added through the admin
 * API and paused. A paused source is `paused` on every relay (not `standby`), and each relay's
 * status card counted it as its own, so the page's "Sources owned" column listed it on both relays
 * ("2 of 2" beside "1 of 2" for two sources). Only the relay its `owner` names pulls it.
 */
const ADMIN = 'first-hour-admin-token-0123456789';
const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };

interface Status {
  node: { id: string; multiaddrs: string[] };
  sources: { name: string; state: string; owner: string | null }[];
  peers: { card?: { node: { id: string }; sources: { total: number; owned: string[] } } }[];
}

async function status(url: string): Promise<Status> {
  const response = await fetch(`${url}/v1/status`, { headers: admin, signal: AbortSignal.timeout(10_000) });
  assert.equal(response.status, 200);
  return (await response.json()) as Status;
}

describe('first hour: the cluster view of two relays', () => {
  const relays: RelayProcess[] = [];
  const watching: AbortController[] = [];
  after(async () => {
    for (const stream of watching) stream.abort();
    for (const relay of relays) relay.child.kill('SIGKILL');
    await Promise.all(relays.map((relay) => relay.exited));
  });

  it('a paused source is owned by the relay its owner names, on every relay’s card', async () => {
    const args = async (extra: string[]) => [
      '--port',
      '0',
      '--data-dir',
      await tempDir(),
      '--admin-token',
      ADMIN,
      ...asArgs(FAST_MESH),
      ...extra,
    ];
    const a = await spawnRelay(await args(['--listen', '/ip4/127.0.0.1/tcp/0']));
    relays.push(a);
    const bootstrap = (await meshStatus(a.url)).node.multiaddrs[0] as string;
    const b = await spawnRelay(await args(['--bootstrap', bootstrap]));
    relays.push(b);
    // A page open on each relay, as when a user watches: cards are then asked for every 2 s.
    for (const relay of relays) {
      const stream = new AbortController();
      watching.push(stream);
      const response = await fetch(`${relay.url}/v1/status/stream`, { headers: admin, signal: stream.signal });
      assert.equal(response.status, 200);
      void response.body?.pipeTo(new WritableStream()).catch(() => {});
    }

    for (const [name, paused] of [
      ['ticks', false],
      ['quotes', true],
    ] as const) {
      const response = await fetch(`${a.url}/v1/admin/sources`, {
        method: 'POST',
        headers: admin,
        body: JSON.stringify({ name, kind: 'http', url: 'http://127.0.0.1:9/none', topic: `fh.${name}`, paused }),
        signal: AbortSignal.timeout(10_000),
      });
      assert.equal(response.status, 201, await response.text());
    }

    // Both relays know both sources, each with one owner, and each shows the other's card of now.
    // A card is refreshed every 2 s: one made before its relay's ownership settled (no owner yet,
    // so nothing owned) is waited out, not taken for the answer.
    let statuses: Status[] = [];
    const ownersOf = (s: Status | undefined) => new Map(s?.sources.map((source) => [source.name, source.owner]));
    /** The sources `node` is the owner of, sorted, as `owners` names them. */
    const ownedBy = (owners: Map<string, string | null>, node: string) =>
      [...owners]
        .filter(([, owner]) => owner === node)
        .map(([name]) => name)
        .sort();
    const cardsAgree = () => {
      const owners = ownersOf(statuses[0]);
      return statuses.every((s) => {
        const card = s.peers[0]?.card;
        return card !== undefined && [...card.sources.owned].sort().join() === ownedBy(owners, card.node.id).join();
      });
    };
    await waitFor(
      'both relays to show each other’s card with both sources and their owners',
      async () => {
        statuses = await Promise.all(relays.map((relay) => status(relay.url)));
        return (
          statuses.every(
            (s) =>
              s.sources.length === 2 &&
              s.sources.every((source) => source.owner !== null) &&
              s.peers.length === 1 &&
              s.peers[0]?.card?.sources.total === 2,
          ) && cardsAgree()
        );
      },
      60_000,
      200,
    );
    const owners = ownersOf(statuses[0]);
    assert.deepEqual(
      statuses.map((s) => s.sources.find((source) => source.name === 'quotes')?.state),
      ['paused', 'paused'],
    );
    assert.equal(owners.get('quotes'), statuses[1]?.sources.find((s) => s.name === 'quotes')?.owner);
    // Each relay's card, as the other relay shows it, owns exactly the sources it is the owner of.
    for (const s of statuses) {
      const card = s.peers[0]?.card;
      assert.ok(card);
      assert.deepEqual([...card.sources.owned].sort(), ownedBy(owners, card.node.id), `relay ${card.node.id}'s card`);
    }
  });
});
