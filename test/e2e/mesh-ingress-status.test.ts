import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { CATCH_UP_PROTOCOL } from '@anode/relay-node/src/mesh/catch-up.ts';
import { STATUS_PROTOCOL } from '@anode/relay-node/src/mesh/status-protocol.ts';
import { createTestPeer, type TestPeer } from '@anode/relay-node/src/mesh/test-peer.ts';
import { FAST_MESH, waitFor } from '../helpers/mesh.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';

/**
 * What enters a relay by the status protocol (`/anode/status/1.0.0`) from a member of its private
 * mesh: the card a peer answers with is shown in the relay's `/v1/status` and kept in its
 * remembered peers, so one card must not break either.
 */
const KEY = randomBytes(32).toString('hex');

describe('a status card from a member', { timeout: 120_000 }, () => {
  const relays: TestRelay[] = [];
  const peers: TestPeer[] = [];
  after(async () => {
    await Promise.all(peers.map((p) => p.stop()));
    await Promise.all(relays.map((r) => r.stop()));
  });

  it('nested deeper than JSON.stringify recurses is refused, and /v1/status keeps answering', async () => {
    const a = await startRelay({ ...FAST_MESH, 'mesh-key': KEY, listen: '/ip4/127.0.0.1/tcp/0' });
    relays.push(a);
    const status = async () => {
      const res = await fetch(`${a.url}/v1/status`);
      return {
        code: res.status,
        body: (await res.json()) as { peers?: { peer_id: string; card?: unknown; status_error?: string }[] },
      };
    };
    const addressA = ((await status()).body as unknown as { node: { multiaddrs: string[] } }).node.multiaddrs[0];

    // 20,000 levels in 40 KiB, well within the card limit (256 KiB): parsed fine, never serialized again.
    const depth = 20_000;
    const deep = `${'['.repeat(depth)}${']'.repeat(depth)}`;
    const member = await createTestPeer({ networkKey: KEY, answerPings: true });
    peers.push(member);
    let asked = 0;
    await member.serveJson(CATCH_UP_PROTOCOL, (request) =>
      request.op === 'topics' ? { topics: [], next: null } : { messages: [], next: null },
    );
    await member.serveJson(STATUS_PROTOCOL, () => {
      asked += 1;
      // As bytes: the member's own JSON.stringify could not write it either.
      return new TextEncoder().encode(`{"v":1,"node":{"name":"deep"},"extra":${deep}}`);
    });
    await member.dial(addressA as string);
    await waitFor('A to ask the member for its card', () => asked > 0);
    // Until its answer is taken in: shown (as a card, or why not), or /v1/status fails.
    await waitFor('the answer taken in', async () => {
      const now = await status();
      const seen = now.body.peers?.find((p) => p.peer_id === member.peerId);
      return now.code !== 200 || (seen !== undefined && (seen.card != null || seen.status_error !== undefined));
    });

    const { code, body } = await status();
    assert.equal(code, 200, `/v1/status answered ${code}: ${JSON.stringify(body)}`);
    const seen = body.peers?.find((p) => p.peer_id === member.peerId);
    assert.ok(seen, 'the member is listed');
    assert.match(seen.status_error ?? '', /nested/, 'its card is refused, and the reason shown');
  });
});
