import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import { cursorTime } from '@anode/shared';
import { openSocket } from '../../../test/helpers/ws.ts';
import { linkedEdge } from './linked-edge.fixture.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const cursorAt = (ms: number, node: string) => `${Math.floor(ms).toString(16).padStart(12, '0')}0000-${node}`;

/**
 * A message from the mesh with a cursor below the ring's floor (the ring let go of that time). A
 * review: a client that left before it arrived resumed from the ring and was answered `subscribed`
 * without it. Such a resume was then refused (cursor_expired); the message is now kept as a late
 * arrival (past the ring, as the ring's own), and the resume replays it, as a relay's does
 * (PROTOCOL.md): the client keeps its place instead of resubscribing without `after`.
 */
describe('relay link on workerd: a mesh message below the ring’s floor', () => {
  const t = linkedEdge();

  it('replays it to a resume that may have missed it, sends it live, and serves a fresh subscription', async () => {
    const topic = 'late.floor';
    const first = await openSocket(`${t.edge.wsUrl}/v1/ws`);
    t.open.push(first);
    first.send({ op: 'sub', topic, ref: 's1' });
    await first.next((f) => f.op === 'subscribed');
    const cursors: string[] = [];
    for (let i = 0; i < 10; i++) {
      const response = await fetch(`${t.edge.url}/v1/topics/${topic}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data: i }),
      });
      cursors.push(((await response.json()) as { messages: { cursor: string }[] }).messages[0]?.cursor as string);
      await sleep(5);
    }
    const newest = cursors.at(-1) as string;
    await first.next((f) => f.op === 'msg' && f.cursor === newest);
    first.close(); // it leaves with the newest cursor it got
    const live = await openSocket(`${t.edge.wsUrl}/v1/ws`);
    t.open.push(live);
    live.send({ op: 'sub', topic, ref: 'live' });
    await live.next((f) => f.op === 'subscribed');
    // Another relay's message, minted just before the 2nd publish (the ring of 5 let go of it).
    const link = t.relay.links.at(-1);
    assert.equal(link?.readyState, WebSocket.OPEN);
    const id = `mlate${'0'.repeat(19)}`;
    const cursor = cursorAt(cursorTime(cursors[1] as string) - 1, 'relay1');
    link?.send(JSON.stringify({ op: 'msg', id, topic, cursor, source: 'feed', ts: Date.now(), data: 'late' }));
    await live.next((f) => f.op === 'msg' && f.id === id);
    const resumed = await openSocket(`${t.edge.wsUrl}/v1/ws`);
    t.open.push(resumed);
    resumed.send({ op: 'sub', topic, after: newest, ref: 's2' });
    let replayed = false;
    const answer = await resumed.next((f) => {
      if (f.op === 'msg' && f.id === id) replayed = true;
      return f.op === 'subscribed' || f.op === 'err';
    });
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.ok(replayed, 'the late arrival was replayed');
    // A subscription from now on is served, and so is a resume from its cursor.
    const fresh = await openSocket(`${t.edge.wsUrl}/v1/ws`);
    t.open.push(fresh);
    fresh.send({ op: 'sub', topic, ref: 's3' });
    const taken = await fresh.next((f) => f.op === 'subscribed');
    const again = await openSocket(`${t.edge.wsUrl}/v1/ws`);
    t.open.push(again);
    again.send({ op: 'sub', topic, after: taken.op === 'subscribed' ? taken.cursor : '', ref: 's4' });
    assert.equal((await again.next((f) => f.op === 'subscribed' || f.op === 'err')).op, 'subscribed');
  });

  // A review: a late arrival (cursor below the ring's newest, above its floor) is kept with late=1
  // so a resume from a cursor handed out before it arrived replays it; trimming by cursor let it go
  // first and raised the floor only to its cursor, and that resume was answered `subscribed`
  // without it. Trimmed as it is stored (its cursor among the oldest five) or by later publishes:
  // kept past the ring (late_kept), the resume replays it.
  for (const [variant, below] of [
    ['as it arrives', 5],
    ['by later publishes', 7],
  ] as const) {
    it(`replays a late arrival the ring let go ${variant} to a resume that may have missed it`, async () => {
      const topic = `late.trim${below}`;
      const live = await t.live(topic);
      const cursors: string[] = [];
      for (let i = 0; i < 10; i++) {
        cursors.push(await t.post(topic, i));
        await sleep(5);
      }
      const newest = cursors.at(-1) as string; // a client leaves holding it; the ring holds 5..9
      await live.next((f) => f.op === 'msg' && f.cursor === newest);
      const id = `mlatetrim${below}${'0'.repeat(14)}`;
      t.sendFromMesh(topic, id, cursorAt(cursorTime(cursors[below] as string) - 1, 'relay1'), 'late');
      await live.next((f) => f.op === 'msg' && f.id === id);
      if (below === 7) for (const data of [100, 101]) await t.post(topic, data);
      const { answer, ids } = await t.resume(topic, newest);
      assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
      assert.ok(ids.has(id), `the late arrival was replayed: ${JSON.stringify([...ids])}`);
    });
  }

  it('keeps answering resumes in a topic published on both sides of the link, late arrivals and all', async () => {
    // Late arrivals are the rule when a topic is published here and elsewhere: refusing every
    // resume whose range a trimmed late arrival touched (a first fix) refused nearly all of them.
    const topic = 'late.both';
    const live = await t.live(topic);
    const late: string[] = [];
    let newest = '';
    for (let i = 0; i < 12; i++) {
      newest = await t.post(topic, i);
      const id = `mlateboth${String(i).padStart(2, '0')}${'0'.repeat(13)}`;
      t.sendFromMesh(topic, id, cursorAt(cursorTime(newest) - 1, 'relay1'), i);
      await live.next((f) => f.op === 'msg' && f.id === id);
      late.push(id);
      await sleep(3);
    }
    const { answer, ids: got } = await t.resume(topic, newest);
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.deepEqual(
      late.filter((id) => !got.has(id)),
      [],
      'every late arrival replayed (the client drops the copies it had)',
    );
  });

  it('replays to a resume from the relay’s history a late arrival it may have missed that came meanwhile', async () => {
    // A review: a resume below the floor waits for the relay's history; a late message with a
    // cursor below its `after` arriving meanwhile (in no page) went only to the sockets live then,
    // and the resume was answered `subscribed` without it. It was then refused (cursor_expired,
    // after any page it had sent: resume-heard.test.ts); it is replayed now, as on a relay.
    const topic = 'late.catchup';
    const cursors: string[] = [];
    for (let i = 0; i < 10; i++) {
      const response = await fetch(`${t.edge.url}/v1/topics/${topic}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data: i }),
      });
      cursors.push(((await response.json()) as { messages: { cursor: string }[] }).messages[0]?.cursor as string);
      await sleep(5);
    }
    const held = cursors[2] as string; // a client left holding it; the ring of 5 let it go
    const id = `mlatecatchup${'0'.repeat(12)}`;
    const cursor = cursorAt(cursorTime(held) - 1, 'relay1');
    t.onHistory = (link) => link.send({ op: 'msg', id, topic, cursor, source: 'feed', ts: Date.now(), data: 'late' });
    const resumed = await openSocket(`${t.edge.wsUrl}/v1/ws`);
    t.open.push(resumed);
    resumed.send({ op: 'sub', topic, after: held, ref: 'r' });
    let replayed = false;
    const answer = await resumed.next((f) => {
      if (f.op === 'msg' && f.id === id) replayed = true;
      return f.op === 'subscribed' || f.op === 'err';
    });
    assert.equal(t.onHistory, undefined, 'the resume was served from the relay’s history');
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.ok(replayed, 'the late arrival was replayed before `subscribed`');
  });

  it('takes a message it had, sent again by the relay after the ring let it go, as had', async () => {
    // A review of the case above: a relay's rewind after a restart (5 s of history) sends the
    // edge's own publishes back; the ring had let them go, so they looked new and below the floor,
    // and every resume from a cursor handed out before was refused.
    const topic = 'late.replay';
    const first = await openSocket(`${t.edge.wsUrl}/v1/ws`);
    t.open.push(first);
    first.send({ op: 'sub', topic, ref: 's1' });
    await first.next((f) => f.op === 'subscribed');
    const published: { id: string; cursor: string }[] = [];
    for (let i = 0; i < 10; i++) {
      const response = await fetch(`${t.edge.url}/v1/topics/${topic}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data: i }),
      });
      published.push(((await response.json()) as { messages: { id: string; cursor: string }[] }).messages[0] as never);
      await sleep(5);
    }
    const newest = published.at(-1)?.cursor as string;
    await first.next((f) => f.op === 'msg' && f.cursor === newest);
    first.close();
    const link = t.relay.links.at(-1);
    for (const [i, { id, cursor }] of published.entries()) {
      link?.send(JSON.stringify({ op: 'msg', id, topic, cursor, source: 'anonymous', ts: Date.now(), data: i }));
    }
    await sleep(300);
    const resumed = await openSocket(`${t.edge.wsUrl}/v1/ws`);
    t.open.push(resumed);
    resumed.send({ op: 'sub', topic, after: newest, ref: 's2' });
    const answer = await resumed.next((f) => f.op === 'subscribed' || f.op === 'err');
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
  });
});

describe('relay link on workerd: late arrivals past LATE_MEMORY', () => {
  const t = linkedEdge({ vars: { LATE_MEMORY: '2' } });

  it('keeps the newest LATE_MEMORY, lets the oldest go (not replayed, as on a relay) and keeps answering resumes', async () => {
    const topic = 'late.memory';
    const live = await t.live(topic);
    let held = '';
    for (let i = 0; i < 3; i++) {
      const newest = await t.post(topic, i);
      const id = `mlatememory${i}${'0'.repeat(12)}`;
      t.sendFromMesh(topic, id, cursorAt(cursorTime(newest) - 1, 'relay1'), i);
      await live.next((f) => f.op === 'msg' && f.id === id);
      for (let j = 0; j < 6; j++) held = await t.post(topic, 100 + j); // the ring of 5 lets the late arrival go
    }
    // A client leaves holding the newest cursor: the three late arrivals sort below it, so a
    // resume from it (served from the ring) replays those still kept.
    const { answer, ids } = await t.resume(topic, held);
    // A first fix refused such resumes (cursor_expired) from the first overflow on: in a busy
    // topic, every resume of a client away longer than the kept arrivals span.
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    const late = [...ids].filter((id) => id.startsWith('mlatememory'));
    // LATE_MEMORY (2) of them, the newest, as a relay keeps its own (it kept only one: a cut to 90%).
    assert.deepEqual(
      late,
      [1, 2].map((i) => `mlatememory${i}${'0'.repeat(12)}`),
      'the newest two kept, the oldest let go',
    );
  });
});
