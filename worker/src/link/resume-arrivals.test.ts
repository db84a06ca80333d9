// A resume from the relay's history holds its socket out of fan-out: a message minted elsewhere
// that reaches the relay after the page its cursor falls in was read, and the edge meanwhile, is
// in no page; by the end of the resume it may be nowhere in the edge either (below the ring's
// floor, or trimmed from the ring). A review's repro answered `subscribed` without it (a silent
// gap); the resume now sends what arrived during it (subscriptions.ts, arrivedDuring).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cursorTime, compareCursors } from '@anode/shared';
import { openSocket, type RawSocket } from '../../../test/helpers/ws.ts';
import { type EdgeRuntime, startEdge } from '../../test-support/edge-runtime.ts';
import { answerAsRelay, startStandInRelay } from './stand-in-relay.fixture.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const cursorAt = (ms: number, node: string) => `${Math.floor(ms).toString(16).padStart(12, '0')}0000-${node}`;

describe('relay link on workerd: a mesh message above a resume’s `after` that arrives while it pages the relay’s history', () => {
  const LINK_SECRET = 'unit-test-link-secret-0123';
  let relay: Awaited<ReturnType<typeof startStandInRelay>>;
  let edge: EdgeRuntime;
  const open: RawSocket[] = [];
  // What the stand-in relay stored: the edge's publishes (acked), by cursor.
  const stored: { id: string; cursor: string }[] = [];
  let onHistory: ((link: { send(frame: unknown): void }) => void | Promise<void>) | undefined;

  before(async () => {
    relay = await startStandInRelay({
      secret: LINK_SECRET,
      node: 'scripted',
      onFrame(frame, link) {
        if (frame.op === 'pub') for (const m of frame.messages ?? []) stored.push(m as never);
        answerAsRelay(frame, link, {
          history(request, answering) {
            // The page is read now (M not stored yet); its answer goes out 300 ms later.
            const messages = stored
              .filter((m) => compareCursors(m.cursor, request.after ?? '0') > 0)
              .sort((a, b) => compareCursors(a.cursor, b.cursor));
            const hook = onHistory;
            onHistory = undefined;
            void Promise.resolve(hook?.(answering)).then(() =>
              setTimeout(
                () => answering.send({ op: 'history', ref: request.ref, messages, next: null }),
                hook ? 300 : 0,
              ),
            );
          },
        });
      },
    });
    edge = await startEdge({
      RELAY_URLS: relay.url,
      LINK_SECRET,
      LINK_WAIT_MS: '1000',
      LINK_RETRY_MAX_MS: '200',
      RING_SIZE: '5',
    });
  });
  after(async () => {
    for (const socket of open) socket.close();
    await edge?.stop();
    await relay?.stop();
  });

  /** A resume from `after` on a new socket: its answer (`subscribed` or `err`) and the ids sent before it. */
  const resume = async (topic: string, after: string) => {
    const resumed = await openSocket(`${edge.wsUrl}/v1/ws`);
    open.push(resumed);
    resumed.send({ op: 'sub', topic, after, ref: 'r' });
    const ids = new Set<string>();
    const answer = await resumed.next((f) => {
      if (f.op === 'msg') ids.add(f.id as string);
      return f.op === 'subscribed' || f.op === 'err';
    });
    return { answer, ids };
  };

  it('is sent before `subscribed` when it lands below the ring’s floor', async () => {
    const topic = 'gap.above';
    const live = await openSocket(`${edge.wsUrl}/v1/ws`);
    open.push(live);
    live.send({ op: 'sub', topic, ref: 'live' });
    await live.next((f) => f.op === 'subscribed');
    const cursors: string[] = [];
    for (let i = 0; i < 10; i++) {
      const response = await fetch(`${edge.url}/v1/topics/${topic}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data: i }),
      });
      cursors.push(((await response.json()) as { messages: { cursor: string }[] }).messages[0]?.cursor as string);
      await sleep(5);
    }
    await live.next((f) => f.op === 'msg' && f.cursor === cursors[9]);
    for (let i = 0; i < 50 && stored.length < 10; i++) await sleep(50); // the relay stored all 10
    assert.equal(stored.length, 10);
    const held = cursors[2] as string; // a client left holding it; the ring of 5 holds 5..9 (floor: 4)
    // Another relay's message, minted between the 3rd and 4th publish: above `held`, below the floor.
    // It reaches the stand-in relay (stored) only after the resume's history page was read.
    const id = `mgapabove${'0'.repeat(15)}`;
    const cursor = cursorAt(cursorTime(cursors[3] as string) - 1, 'relay1');
    assert.ok(compareCursors(cursor, held) > 0 && compareCursors(cursor, cursors[4] as string) < 0);
    onHistory = (link) => {
      stored.push({ id, cursor });
      link.send({ op: 'msg', id, topic, cursor, source: 'feed', ts: Date.now(), data: 'late' });
    };
    const { answer, ids } = await resume(topic, held);
    await live.next((f) => f.op === 'msg' && f.id === id); // the edge took it (sent live to `live`)
    assert.equal(onHistory, undefined, 'served from the relay’s history');
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.ok(ids.has(id), `answered ${JSON.stringify(answer)} without ${id}: a silent gap`);
  });

  it('is sent before `subscribed` when it lands in the ring and the ring lets it go before the resume ends', async () => {
    const topic = 'gap.trimmed';
    const post = async (data: number) => {
      const response = await fetch(`${edge.url}/v1/topics/${topic}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data }),
      });
      return ((await response.json()) as { messages: { cursor: string }[] }).messages[0]?.cursor as string;
    };
    const live = await openSocket(`${edge.wsUrl}/v1/ws`);
    open.push(live);
    live.send({ op: 'sub', topic, ref: 'live' });
    await live.next((f) => f.op === 'subscribed');
    const cursors: string[] = [];
    for (let i = 0; i < 10; i++) {
      cursors.push(await post(i));
      await sleep(5);
    }
    await live.next((f) => f.op === 'msg' && f.cursor === cursors[9]);
    for (let i = 0; i < 50 && stored.filter((m) => m.cursor.includes('-e')).length < 20; i++) await sleep(50);
    const held = cursors[1] as string; // below the ring's floor (4): served from the relay
    const id = `mgaptrimmed${'0'.repeat(13)}`;
    const cursor = cursorAt(cursorTime(cursors[7] as string) - 1, 'relay1'); // above the floor, in the ring
    onHistory = async (link) => {
      stored.push({ id, cursor });
      link.send({ op: 'msg', id, topic, cursor, source: 'feed', ts: Date.now(), data: 'late' });
      await live.next((f) => f.op === 'msg' && f.id === id);
      for (let i = 0; i < 5; i++) await post(100 + i); // the ring of 5 lets it go
    };
    const { answer, ids } = await resume(topic, held);
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.ok(ids.has(id), `answered ${JSON.stringify(answer)} without ${id}: a silent gap`);
  });
});
