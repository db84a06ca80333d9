// A resume from the relay's history holds its socket out of fan-out: a message minted elsewhere
// that reaches the relay after the page its cursor falls in was read, and the edge meanwhile, is
// in no page; by the end of the resume it may be nowhere in the edge either (below the ring's
// floor, or trimmed from the ring). A review's repro answered `subscribed` without it (a silent
// gap); the resume now sends what arrived during it (subscriptions.ts catchUp, heard.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cursorTime, compareCursors } from '@anode/shared';
import { linkedEdge } from './linked-edge.fixture.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const cursorAt = (ms: number, node: string) => `${Math.floor(ms).toString(16).padStart(12, '0')}0000-${node}`;

describe('relay link on workerd: a mesh message above a resume’s `after` that arrives while it pages the relay’s history', () => {
  const t = linkedEdge({ pagesFromStored: true });

  it('is sent before `subscribed` when it lands below the ring’s floor', async () => {
    const topic = 'gap.above';
    const live = await t.live(topic);
    const cursors: string[] = [];
    for (let i = 0; i < 10; i++) {
      cursors.push(await t.post(topic, i));
      await sleep(5);
    }
    await live.next((f) => f.op === 'msg' && f.cursor === cursors[9]);
    for (let i = 0; i < 50 && t.stored.length < 10; i++) await sleep(50); // the relay stored all 10
    assert.equal(t.stored.length, 10);
    const held = cursors[2] as string; // a client left holding it; the ring of 5 holds 5..9 (floor: 4)
    // Another relay's message, minted between the 3rd and 4th publish: above `held`, below the floor.
    // It reaches the stand-in relay (stored) only after the resume's history page was read.
    const id = `mgapabove${'0'.repeat(15)}`;
    const cursor = cursorAt(cursorTime(cursors[3] as string) - 1, 'relay1');
    assert.ok(compareCursors(cursor, held) > 0 && compareCursors(cursor, cursors[4] as string) < 0);
    t.onHistory = (link) => {
      t.stored.push({ id, cursor });
      link.send({ op: 'msg', id, topic, cursor, source: 'feed', ts: Date.now(), data: 'late' });
    };
    const { answer, ids } = await t.resume(topic, held);
    await live.next((f) => f.op === 'msg' && f.id === id); // the edge took it (sent live to `live`)
    assert.equal(t.onHistory, undefined, 'served from the relay’s history');
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.ok(ids.has(id), `answered ${JSON.stringify(answer)} without ${id}: a silent gap`);
  });

  it('is sent before `subscribed` when it lands in the ring and the ring lets it go before the resume ends', async () => {
    const topic = 'gap.trimmed';
    const live = await t.live(topic);
    const cursors: string[] = [];
    for (let i = 0; i < 10; i++) {
      cursors.push(await t.post(topic, i));
      await sleep(5);
    }
    await live.next((f) => f.op === 'msg' && f.cursor === cursors[9]);
    for (let i = 0; i < 50 && t.stored.filter((m) => m.cursor.includes('-e')).length < 20; i++) await sleep(50);
    const held = cursors[1] as string; // below the ring's floor (4): served from the relay
    const id = `mgaptrimmed${'0'.repeat(13)}`;
    const cursor = cursorAt(cursorTime(cursors[7] as string) - 1, 'relay1'); // above the floor, in the ring
    t.onHistory = async (link) => {
      t.stored.push({ id, cursor });
      link.send({ op: 'msg', id, topic, cursor, source: 'feed', ts: Date.now(), data: 'late' });
      await live.next((f) => f.op === 'msg' && f.id === id);
      for (let i = 0; i < 5; i++) await t.post(topic, 100 + i); // the ring of 5 lets it go
    };
    const { answer, ids } = await t.resume(topic, held);
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.ok(ids.has(id), `answered ${JSON.stringify(answer)} without ${id}: a silent gap`);
  });
});
