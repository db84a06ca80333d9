import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareCursors } from '@anode/shared';
import { linkedEdge } from './linked-edge.fixture.ts';

const cursorAt = (ms: number, node: string) => `${Math.floor(ms).toString(16).padStart(12, '0')}0000-${node}`;

// da8acba on workerd: a resume from the relay's history hands out a relay cursor ahead of the
// object's clock; the object keeps it in meta (`handed`) and, woken after an eviction, seeds its
// clock past it (hub-core). Without that, publishes here after the wake were stamped below the
// handed cursor, each one a late arrival for the client holding it. The node:sqlite fixture
// (resume-heard.test.ts) covers its own copy of the seeding; this covers hub-core's.
describe('relay link on workerd: a cursor handed out ahead of the edge’s clock, then an eviction', () => {
  const t = linkedEdge({ pagesFromStored: true });

  it('stamps the first publish after the wake above the handed cursor', async () => {
    const topic = 'handed.wake';
    const status = async () =>
      (
        (await (await fetch(`${t.edge.url}/v1/status?topic=${topic}`)).json()) as {
          topic: { instance: { id: string } };
        }
      ).topic;
    const cursors: string[] = [];
    for (let i = 0; i < 7; i++) cursors.push(await t.post(topic, i)); // the ring of 5 lets the first two go
    // At the relay, minted by a clock 30 s ahead of the edge's (within the 60 s a clock observes).
    const ahead = { id: `mhandedwake0${'0'.repeat(12)}`, topic, cursor: cursorAt(Date.now() + 30_000, 'relay1') };
    t.stored.push({ ...ahead, source: 'feed', ts: Date.now(), data: 'ahead' } as never);
    const { answer, ids } = await t.resume(topic, cursors[0] as string);
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.ok(ids.has(ahead.id), 'the relay’s page handed the message ahead out');
    assert.ok(compareCursors(String(answer.cursor), ahead.cursor) >= 0, `subscribed at ${String(answer.cursor)}`);
    const before = await status();
    for (const socket of t.open.splice(0)) socket.close();
    // workerd evicts an idle object whose sockets are all hibernatable after about 10 s (no event
    // to await from outside; asking its status wakes it): waited so long and 5 s more.
    await new Promise((resolve) => setTimeout(resolve, 15_000));
    const next = await t.post(topic, 99);
    assert.notEqual((await status()).instance.id, before.instance.id, 'the object was evicted and woke again');
    assert.ok(compareCursors(next, ahead.cursor) > 0, `published at ${next}, below the handed ${ahead.cursor}`);
  });
});
