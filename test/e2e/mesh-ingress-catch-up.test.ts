import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CATCH_UP_PROTOCOL } from '@anode/relay-node/src/mesh/catch-up.ts';
import { createTestPeer, type TestPeer } from '@anode/relay-node/src/mesh/test-peer.ts';
import { FAST_MESH, meshStatus, publish, waitFor } from '../helpers/mesh.ts';
import { history, startRelay, type TestRelay, tempDir } from '../helpers/relay.ts';

/**
 * What enters a relay by catch-up from a member of its private mesh (holding the network key)
 * whose catch-up answers go nowhere: the relay catches up from one peer at a time, so a member
 * that holds that one slot for ever keeps every other peer's history from it.
 */
const KEY = randomBytes(32).toString('hex');
const TOPIC = 'ingress.feed';
const flags = { ...FAST_MESH, 'mesh-key': KEY, 'store-fsync': 'false' };
/** A cursor `n` ms into the epoch, as a member may mint. */
const cursorAt = (n: number) => `${n.toString(16).padStart(16, '0')}-member`;

describe('catch-up from a member whose answers never end', { timeout: 120_000 }, () => {
  const relays: TestRelay[] = [];
  const peers: TestPeer[] = [];
  after(async () => {
    await Promise.all(peers.map((p) => p.stop()));
    await Promise.all(relays.map((r) => r.stop()));
  });

  /**
   * Relay A catches up from a member answering with `answer` (a little slowed, to spare the
   * machine), then from relay B, which holds a message A can only get by catch-up (published while
   * B ran alone): resolves once A has it. `endless`: the member's catch-up never ends (nor fails).
   */
  const heldBy = async (answer: (request: Record<string, unknown>) => unknown, endless = false) => {
    const dirB = await tempDir();
    const alone = await startRelay({ ...flags, listen: '/ip4/127.0.0.1/tcp/0' }, { dataDir: dirB });
    const [ack] = await publish(alone.url, TOPIC, [{ data: 'only by catch-up' }]);
    await alone.stop();

    const a = await startRelay({ ...flags, listen: '/ip4/127.0.0.1/tcp/0' });
    relays.push(a);
    const addressA = (await meshStatus(a.url)).node.multiaddrs[0] as string;
    const member = await createTestPeer({ networkKey: KEY, answerPings: true });
    peers.push(member);
    let asked = 0;
    await member.serveJson(CATCH_UP_PROTOCOL, async (request) => {
      asked += 1;
      await sleep(20);
      return answer(request);
    });
    await member.dial(addressA);
    await waitFor('A to catch up from the member', () => asked > 0);

    const b = await startRelay({ ...flags, bootstrap: addressA }, { dataDir: dirB });
    relays.push(b);
    await waitFor(
      "B's message on A, by catch-up",
      async () => (await history(a.url, TOPIC)).some((m) => m.id === ack?.id),
      30_000,
    );
    assert.equal(
      member.connections(),
      1,
      'the member stayed connected: its catch-up was given up, not cut by liveness',
    );
    if (endless) return;
    const sync = (await meshStatus(a.url)).mesh.sync as unknown as { failures: number };
    assert.ok(sync.failures >= 1, 'the catch-up from the member failed, and is retried later');
  };

  it("still catches up from an honest relay: the member's endless topic listing no longer holds the catch-up slot", async () => {
    // The same topic on every page, with a `next` past the last each time, and no history of it.
    let page = 0;
    await heldBy((request) =>
      request.op === 'topics'
        ? { topics: ['ingress.rogue'], next: `ingress.p${String(++page).padStart(8, '0')}` }
        : { messages: [], next: null },
    );
  });

  it('still catches up from an honest relay: a member listing a new empty topic on every page no longer holds the catch-up slot', async () => {
    // Every page brings a topic never listed before, with nothing behind it: no page counts as empty,
    // and an honest relay's topics quiet since the watermark look the same. B's catch-up starts
    // beside the member's once that one has run 15 s (sync.ts LONG_RUN_MS).
    let page = 0;
    await heldBy((request) => {
      if (request.op !== 'topics') return { messages: [], next: null };
      const name = `ingress.n${String(++page).padStart(8, '0')}`;
      return { topics: [name], next: name };
    }, true);
  });

  it('still catches up from an honest relay: a member repeating one history page no longer holds the catch-up slot', async () => {
    // One message, the same on every page, with a `next` past the page's `after` each time.
    const same = { id: 'repeated', topic: 'ingress.rogue', cursor: cursorAt(1), source: 's', ts: 1, data: 1 };
    await heldBy((request) => {
      if (request.op === 'topics') return { topics: ['ingress.rogue'], next: null };
      const after = typeof request.after === 'string' && request.after !== '0' ? request.after : cursorAt(0);
      return { messages: [same], next: cursorAt(Number.parseInt(after.slice(0, 16), 16) + 1) };
    });
  });
});
