import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cursorTime } from '@anode/shared';
import { openSocket, type RawSocket } from '../../../test/helpers/ws.ts';
import { type EdgeRuntime, startEdge } from '../../test-support/edge-runtime.ts';
import { answerAsRelay, type LinkFrame, startStandInRelay } from './stand-in-relay.fixture.ts';

const cursorAt = (ms: number, node: string) => `${Math.floor(ms).toString(16).padStart(12, '0')}0000-${node}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type LateAnswer = (frame: LinkFrame, link: { topic: string; send(frame: unknown): void }) => void;

/**
 * A workerd edge (RING_SIZE 5, and `vars`) linked to a scripted stand-in relay (answerAsRelay,
 * with `late` and `history` answered as the test sets them); started before the describe's tests,
 * stopped after them.
 */
function linkedEdge(vars: Record<string, string> = {}) {
  const LINK_SECRET = 'unit-test-link-secret-late';
  const t = {
    relay: undefined as unknown as Awaited<ReturnType<typeof startStandInRelay>>,
    edge: undefined as unknown as EdgeRuntime,
    open: [] as RawSocket[],
    answerLate: undefined as LateAnswer | undefined,
    answerHistory: undefined as LateAnswer | undefined,
    lateAsked: [] as LinkFrame[],
    /** One publish over HTTP; its cursor. */
    async post(topic: string, data: unknown) {
      const response = await fetch(`${t.edge.url}/v1/topics/${topic}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data }),
      });
      return ((await response.json()) as { messages: { id: string; cursor: string }[] }).messages[0] as {
        id: string;
        cursor: string;
      };
    },
    /** Ten publishes (the ring of 5 keeps the last five); their cursors. */
    async publishTen(topic: string) {
      const cursors: string[] = [];
      for (let i = 0; i < 10; i++) {
        cursors.push((await t.post(topic, i)).cursor);
        await sleep(3);
      }
      return cursors;
    },
    /** A resume from `from`: its answer (or how it closed first) and the ids sent before, in order. */
    async resume(topic: string, from: string) {
      const socket = await openSocket(`${t.edge.wsUrl}/v1/ws`);
      t.open.push(socket);
      socket.send({ op: 'sub', topic, after: from, ref: 'resume' });
      const ids: string[] = [];
      const answer = await Promise.race([
        socket.next((f) => {
          if (f.op === 'msg' && !ids.includes(f.id as string)) ids.push(f.id as string);
          return f.op === 'subscribed' || f.op === 'err';
        }),
        socket.closed.then((c) => ({ op: 'closed', code: c.code })),
      ]);
      return { answer, ids };
    },
  };
  before(async () => {
    t.relay = await startStandInRelay({
      secret: LINK_SECRET,
      node: 'scripted',
      onFrame(frame, link) {
        if (frame.op === 'late') t.lateAsked.push(frame);
        answerAsRelay(frame, link, { late: t.answerLate, history: t.answerHistory });
      },
    });
    t.edge = await startEdge({
      RELAY_URLS: t.relay.url,
      LINK_SECRET,
      LINK_WAIT_MS: '1000',
      LINK_RETRY_MAX_MS: '200',
      RING_SIZE: '5',
      ...vars,
    });
  });
  after(async () => {
    for (const socket of t.open) socket.close();
    await t.edge?.stop();
    await t.relay?.stop();
  });
  return t;
}

const lateMessage = (topic: string, id: string, cursor: string, data: unknown = 'late') => ({
  id,
  topic,
  cursor,
  source: 'feed',
  ts: Date.now(),
  data,
});

/**
 * A resume older than the ring is served from the relay's history after `after`, which holds no
 * late arrival (cursor at or below `after`): one that reached the relay while this object's link
 * was closed was missed with no error. The edge now first asks the relay for the late arrivals its
 * own resume would replay (`late`), page by page. A workerd edge (RING_SIZE 5) linked to a
 * scripted stand-in relay (a test double: it answers `late` as the test says, as a real relay's
 * hub.lateFor would, or as a relay from before the frame does).
 */
describe('relay link on workerd: a resume below the ring replays the relay’s late arrivals', () => {
  const t = linkedEdge();
  const { publishTen, resume, lateAsked } = t;

  it('sends them before the history and the ring, page by page, then subscribes', async () => {
    const topic = 'relaylate.pages';
    const cursors = await publishTen(topic);
    const from = cursors[1] as string; // below the ring's floor: served from the relay
    const first = lateMessage(topic, `mrelaylate1${'0'.repeat(13)}`, cursorAt(cursorTime(from) - 2, 'relay2'));
    const second = lateMessage(topic, `mrelaylate2${'0'.repeat(13)}`, cursorAt(cursorTime(from) - 1, 'relay2'));
    t.answerLate = (frame, link) =>
      frame.from === undefined
        ? link.send({ op: 'late', ref: frame.ref, messages: [first], next: first.cursor })
        : link.send({ op: 'late', ref: frame.ref, messages: [second], next: null });
    lateAsked.length = 0;
    const { answer, ids } = await resume(topic, from);
    t.answerLate = undefined;
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.deepEqual(
      lateAsked.map((f) => [f.after, f.from]),
      [
        [from, undefined],
        [from, first.cursor],
      ],
      'asked for the late arrivals of a resume from `after`, then for the page above the first',
    );
    assert.deepEqual(ids.slice(0, 2), [first.id, second.id], `the relay's late arrivals first: ${ids}`);
    // The stand-in's history pages are empty: then the ring's five.
    assert.equal(ids.length, 2 + 5, `then the ring: ${ids}`);
  });

  it('still subscribes when the relay is older than the `late` frame (err bad_frame)', async () => {
    const topic = 'relaylate.old';
    const cursors = await publishTen(topic);
    t.answerLate = (frame, link) =>
      link.send({ op: 'err', code: 'bad_frame', message: 'invalid frame: op', ref: frame.ref });
    const { answer, ids } = await resume(topic, cursors[1] as string);
    t.answerLate = undefined;
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.equal(ids.length, 5, `the ring's messages (the stand-in's history is empty): ${ids}`);
  });

  it('answers the relay’s other refusals of `late` as a history failure would (not subscribed without them)', async () => {
    const topic = 'relaylate.down';
    const cursors = await publishTen(topic);
    t.answerLate = (frame, link) =>
      link.send({ op: 'err', code: 'unavailable', message: 'storage is down', ref: frame.ref });
    const { answer } = await resume(topic, cursors[1] as string);
    t.answerLate = undefined;
    assert.equal(answer.op === 'err' && answer.code, 'unavailable', JSON.stringify(answer));
  });

  it('goes on to the ring when the relay refuses a page at or above the ring’s floor (retention passed it)', async () => {
    // A review: the relay answers a page's `next` when retention deleted what followed it while it
    // was read; the next page is refused. At or above the ring's floor the ring has the rest.
    const topic = 'relaylate.ringrest';
    const cursors = await publishTen(topic);
    const within = cursors[6] as string; // the ring keeps 5..9
    t.answerHistory = (frame, link) =>
      frame.after === within
        ? link.send({ op: 'err', code: 'cursor_expired', message: 'trimmed', ref: frame.ref })
        : link.send({ op: 'history', ref: frame.ref, messages: [], next: within });
    const { answer, ids } = await resume(topic, cursors[1] as string);
    t.answerHistory = undefined;
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.equal(ids.length, 5, `the ring's messages: ${ids}`);
  });

  it('still refuses a resume whose relay page below the ring’s floor is refused', async () => {
    const topic = 'relaylate.below';
    const cursors = await publishTen(topic);
    const below = cursors[2] as string;
    t.answerHistory = (frame, link) =>
      frame.after === below
        ? link.send({ op: 'err', code: 'cursor_expired', message: 'trimmed', ref: frame.ref })
        : link.send({ op: 'history', ref: frame.ref, messages: [], next: below });
    const { answer } = await resume(topic, cursors[1] as string);
    t.answerHistory = undefined;
    assert.equal(answer.op === 'err' && answer.code, 'cursor_expired', JSON.stringify(answer));
  });
});

/**
 * Late arrivals come first in a resume, and past the send budget the socket is closed (4001): by
 * them alone, the client resumed from the same cursor, got the same ones and the same close, for
 * as long as they were remembered (a review's repro). They now take at most half the budget; past
 * it they are skipped, as past a relay's bounds, and the resume goes on to `subscribed`.
 */
describe('relay link on workerd: late arrivals beyond their share of the send budget', () => {
  const t = linkedEdge({ MAX_SEND_BUFFER_BYTES: '6000' });
  const { post, resume, open } = t;
  let late: unknown[] = [];
  before(() => {
    t.answerLate = (frame, link) => link.send({ op: 'late', ref: frame.ref, messages: late, next: null });
  });
  /** Four late arrivals of ~2 KB each (8 KB against a budget of 6,000 bytes) just below `cursor`. */
  const bigLate = (topic: string, cursor: string, prefix: string) =>
    [1, 2, 3, 4].map((n) => ({
      id: `${prefix}${n}${'0'.repeat(23 - prefix.length)}`,
      topic,
      cursor: cursorAt(cursorTime(cursor) - 5 + n, 'relay2'),
      source: 'feed',
      ts: Date.now(),
      data: 'x'.repeat(2_000),
    }));
  const late4Id = (prefix: string) => `${prefix}4${'0'.repeat(23 - prefix.length)}`;
  it('from the relay (a resume below the ring): skips the rest and subscribes, with the ring', async () => {
    const topic = 'relaylate.budget';
    const cursors: string[] = [];
    for (let i = 0; i < 10; i++) {
      cursors.push((await post(topic, i)).cursor);
      await sleep(3);
    }
    const from = cursors[1] as string;
    late = bigLate(topic, from, 'mbudgetrelay');
    const { answer, ids } = await resume(topic, from);
    late = [];
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    const lateIds = ids.filter((id) => id.startsWith('mbudgetrelay'));
    // The newest that fit: those a client away from `from` most likely missed.
    assert.deepEqual(lateIds, [late4Id('mbudgetrelay')], `the late arrivals within half of 6,000 bytes`);
    assert.equal(ids.length - lateIds.length, 5, 'and the ring');
  });

  it('kept by the edge (a resume from the ring): skips the rest and subscribes', async () => {
    const topic = 'edgelate.budget';
    const live = await openSocket(`${t.edge.wsUrl}/v1/ws`);
    open.push(live);
    live.send({ op: 'sub', topic, ref: 'live' });
    await live.next((f) => f.op === 'subscribed');
    let newest = '';
    for (let i = 0; i < 5; i++) newest = (await post(topic, i)).cursor;
    await live.next((f) => f.op === 'msg' && f.cursor === newest);
    const arrivals = bigLate(topic, newest, 'mbudgetedge');
    for (const message of arrivals) t.relay.links.at(-1)?.send(JSON.stringify({ op: 'msg', ...message }));
    await live.next((f) => f.op === 'msg' && f.id === arrivals.at(-1)?.id);
    const { answer, ids } = await resume(topic, newest);
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.deepEqual(
      ids.filter((id) => id.startsWith('mbudgetedge')),
      [late4Id('mbudgetedge')],
    );
  });

  it('keeps the newest late arrivals across the relay’s and its own, not the relay’s first', async () => {
    // A review: the relay's late arrivals filled the share before the object's own were read, so
    // an own late arrival newer than all of them was the one skipped.
    const topic = 'edgelate.across';
    const live = await openSocket(`${t.edge.wsUrl}/v1/ws`);
    open.push(live);
    live.send({ op: 'sub', topic, ref: 'live' });
    await live.next((f) => f.op === 'subscribed');
    const cursors: string[] = [];
    for (let i = 0; i < 5; i++) cursors.push((await post(topic, i)).cursor);
    await live.next((f) => f.op === 'msg' && f.cursor === cursors[4]);
    const from = cursors[3] as string; // a client leaves holding it
    // This object's own late arrival, just below it (kept: the ring's floor is below it now).
    const own = {
      id: `mbudgetown1${'0'.repeat(13)}`,
      topic,
      cursor: cursorAt(cursorTime(from) - 1, 'relay3'),
      source: 'feed',
      ts: Date.now(),
      data: 'z'.repeat(1_500),
    };
    t.relay.links.at(-1)?.send(JSON.stringify({ op: 'msg', ...own }));
    await live.next((f) => f.op === 'msg' && f.id === own.id);
    // The ring lets go of `from` and the late arrival (kept past it).
    for (let i = 5; i < 15; i++) cursors.push((await post(topic, i)).cursor);
    // The relay's late arrivals, all older than the object's own.
    late = bigLate(topic, cursorAt(cursorTime(from) - 10, 'relay2'), 'mbudgetolder');
    const { answer, ids } = await resume(topic, from);
    late = [];
    assert.equal(answer.op, 'subscribed', JSON.stringify(answer));
    assert.ok(ids.includes(own.id), `the newest late arrival, the object's own, went: ${ids}`);
    assert.deepEqual(
      ids.filter((id) => id.startsWith('mbudgetolder')),
      [],
      'none of the older ones fit beside it',
    );
  });

  it('sends one message after the cursor even when it alone is larger than what the budget leaves', async () => {
    // A review: closed 4001 before any message after `after`, the client resumed from the same
    // cursor to the same close.
    const topic = 'edgelate.big';
    const from = (await post(topic, 0)).cursor;
    const big = (await post(topic, 'y'.repeat(7_000))).id;
    const { ids } = await resume(topic, from);
    assert.ok(ids.includes(big), `the message after the cursor went: ${ids}`);
  });
});
