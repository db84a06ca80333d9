import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CATCH_UP_PROTOCOL } from '@anode/relay-node/src/mesh/catch-up.ts';
import { MEMBERS_TOPIC, STATE_PROTOCOL } from '@anode/relay-node/src/mesh/members.ts';
import { createTestPeer, type TestPeer } from '@anode/relay-node/src/mesh/test-peer.ts';
import { asArgs, FAST_MESH, meshStatus, waitFor } from '../helpers/mesh.ts';
import { type RelayProcess, spawnRelay, tempDir } from '../helpers/relay.ts';

/**
 * What enters a relay by the members protocol from a member of its private mesh: a heartbeat on
 * `/anode/1/members` whose digest differs from the relay's makes it fetch that shared state from
 * the member (`/anode/state/1.0.0`) and merge it.
 */
const KEY = randomBytes(32).toString('hex');

describe('shared state from a member', { timeout: 120_000 }, () => {
  const relays: RelayProcess[] = [];
  const peers: TestPeer[] = [];
  after(async () => {
    await Promise.all(peers.map((p) => p.stop()));
    for (const relay of relays) relay.child.kill('SIGKILL');
    await Promise.all(relays.map((r) => r.exited));
  });

  it('nested deeper than JSON.stringify recurses is refused, and the relay runs on', async () => {
    // A process of its own: what it does on an uncaught exception is what a relay does.
    const dir = await tempDir();
    const flags = { ...FAST_MESH, 'mesh-key': KEY, listen: '/ip4/127.0.0.1/tcp/0', 'data-dir': dir, port: '0' };
    const a = await spawnRelay(asArgs(flags));
    relays.push(a);
    const status = await meshStatus(a.url);
    const member = await createTestPeer({ networkKey: KEY, answerPings: true });
    peers.push(member);
    let fetched = 0;
    await member.serveJson(CATCH_UP_PROTOCOL, (request) =>
      request.op === 'topics' ? { topics: [], next: null } : { messages: [], next: null },
    );
    // A source definition nested 20,000 levels deep (40 KiB), as bytes: JSON.stringify cannot write it.
    const depth = 20_000;
    await member.serveJson(STATE_PROTOCOL, () => {
      fetched += 1;
      return new TextEncoder().encode(
        `{"snapshot":{"changes":{"deep":{"kind":"http","x":${'['.repeat(depth)}${']'.repeat(depth)}}},"versions":{"deep":"~"}}}`,
      );
    });
    await member.dial(status.node.multiaddrs[0] as string);
    await member.join(MEMBERS_TOPIC, status.node.peer_id);
    const beat = new TextEncoder().encode(JSON.stringify({ v: 1, node: 'member1', digests: { sources: 'other' } }));
    await member.publishRaw(MEMBERS_TOPIC, beat);
    await waitFor('A to fetch the member’s sources state', () => fetched > 0);
    // A few of A's member ticks (one a second) after the merge.
    await sleep(3_000);
    assert.equal(a.child.exitCode, null, `the relay exited:\n${a.output.join('').slice(-2000)}`);
    assert.equal((await fetch(`${a.url}/v1/status`)).status, 200);
  });
});
