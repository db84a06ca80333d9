import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareCursors, type MessageStore } from '@anode/shared';
import { memoryStore, recorder, remote, testHub } from './test-hub.ts';

const http = { via: 'http' as const, claims: { pub: ['>'], sub: ['>'] } };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Sent {
  id: string;
  topic: string;
  cursor: string;
}

/** A recorder that also keeps every `msg` it was sent, in order, and lets a test pace it. */
function reader() {
  const subscriber = recorder('slow');
  const sent: Sent[] = [];
  const send = subscriber.send.bind(subscriber);
  subscriber.send = (frame) => {
    const parsed = JSON.parse(frame) as Sent & { op: string };
    if (parsed.op === 'msg') sent.push(parsed);
    return send(frame);
  };
  return { subscriber, sent };
}

/** Sent in cursor order: then a client cut off anywhere resumes from its newest cursor with no gap. */
function assertCursorOrder(sent: readonly Sent[]) {
  for (let i = 1; i < sent.length; i++) {
    const [before, at] = [sent[i - 1] as Sent, sent[i] as Sent];
    assert.ok(
      compareCursors(before.cursor, at.cursor) < 0,
      `message ${i} (${at.topic} ${at.cursor}) sent after ${before.topic} ${before.cursor}`,
    );
  }
}

/** What a client cut off just before `sent[i]` gets when it resumes from the newest cursor it has. */
async function resumedBefore(hub: ReturnType<typeof testHub>, pattern: string, sent: readonly Sent[], i: number) {
  const newest = sent
    .slice(0, i)
    .map((m) => m.cursor)
    .sort(compareCursors)
    .at(-1) as string;
  const again = recorder('again');
  await hub.subscribe(again, pattern, newest);
  return again.ids();
}

// A review's two repros: the live buffer was sent after the whole history, so a message delivered
// while the history was read went out after newer ones; a client cut off in between (a slow
// consumer, cut in the middle of the unpaced buffer) resumed above it and lost it, with no error.
describe('hub: a resume sends the live buffer merged with the history, in cursor order', () => {
  it('a quiet topic’s message published while a busy topic is paged (pattern resume)', async () => {
    const store = memoryStore();
    try {
      const hub = testHub(store);
      const [first] = await hub.publish('t.busy', [{ data: 'first' }], http);
      await hub.publish('t.quiet', [{ data: 'q0' }], http);
      await hub.publish(
        't.busy',
        Array.from({ length: 1200 }, (_, n) => ({ data: n })),
        http,
      );
      const { subscriber, sent } = reader();
      let q1 = '';
      let paused: Promise<void> | undefined;
      // Halfway through the first page, the quiet topic (its stream already done) gets one
      // message, then the busy one ten more.
      subscriber.backlog = () =>
        sent.length >= 50
          ? (paused ??= (async () => {
              q1 = (await hub.publish('t.quiet', [{ data: 'q1' }], http))[0]?.cursor as string;
              await hub.publish(
                't.busy',
                Array.from({ length: 10 }, (_, n) => ({ data: `late${n}` })),
                http,
              );
            })())
          : undefined;
      await hub.subscribe(subscriber, 't.*', first?.cursor);
      assert.equal(sent.length, 1 + 1200 + 1 + 10, 'every message after the cursor, once');
      assertCursorOrder(sent);
      const at = sent.findIndex((m) => m.cursor === q1);
      assert.ok(at > 0);
      assert.ok(
        (await resumedBefore(hub, 't.*', sent, at)).includes(sent[at]?.id as string),
        'q1 after a cut before it',
      );
    } finally {
      await store.close();
    }
  });

  it('a gossiped message delivered before a local one with a newer cursor, but stored after it', async () => {
    const inner = memoryStore();
    let gateL: Promise<void> | undefined;
    let gateG: Promise<void> | undefined;
    let handedL!: () => void;
    const lAtStore = new Promise<void>((resolve) => (handedL = resolve));
    // The store holds L's batch, then G's write, so the history reads L while G is not stored yet.
    const store: MessageStore = {
      ...inner,
      async append(messages, options) {
        if (messages.some((m) => m.data === 'L')) {
          handedL();
          await gateL;
        }
        if (messages.some((m) => m.id === 'G')) await gateG;
        return inner.append(messages, options);
      },
    };
    try {
      const hub = testHub(store);
      const [first] = await hub.publish('t', [{ data: 'first' }], http);
      await hub.publish(
        't',
        Array.from({ length: 100 }, (_, n) => ({ data: n })),
        http,
      );
      await sleep(200); // G, minted 20 ms before L, is newer than all of these
      const { subscriber, sent } = reader();
      let l = '';
      let paused: Promise<void> | undefined;
      subscriber.backlog = () =>
        sent.length === 50
          ? (paused ??= (async () => {
              let releaseL!: () => void;
              let releaseG!: () => void;
              gateL = new Promise((resolve) => (releaseL = resolve));
              gateG = new Promise((resolve) => (releaseG = resolve));
              const published = hub.publish('t', [{ data: 'L' }], http);
              await lAtStore;
              // G: minted by a peer 20 ms before L (in flight over the network), arrives now.
              void hub.ingest([remote('G', 't', Date.now() - 20, 'nodepeer00')], { persist: true, deliverFirst: true });
              releaseL();
              l = (await published)[0]?.cursor as string;
              setTimeout(releaseG, 200); // G is stored after the history read L
            })())
          : undefined;
      await hub.subscribe(subscriber, 't', first?.cursor);
      const g = sent.find((m) => m.id === 'G');
      assert.ok(g && compareCursors(g.cursor, l) < 0, 'G sorts before L');
      assertCursorOrder(sent);
      const iL = sent.findIndex((m) => m.cursor === l);
      assert.ok((await resumedBefore(hub, 't', sent, iL + 1)).includes('G') || sent.indexOf(g) < iL);
      await sleep(250); // G's write
    } finally {
      await inner.close();
    }
  });

  it('a gossiped message older than one the history sent before that one’s fan-out', async () => {
    const inner = memoryStore();
    let committedH!: () => void;
    const hInStore = new Promise<void>((resolve) => (committedH = resolve));
    let releaseH!: () => void;
    const gateH = new Promise<void>((resolve) => (releaseH = resolve));
    // H is visible to readers before the writer hands it to fan-out, as a store committing on
    // another thread shows it (see writer.settled in hub.ts).
    const store: MessageStore = {
      ...inner,
      async append(messages, options) {
        const result = await inner.append(messages, options);
        if (messages.some((m) => m.data === 'H')) {
          committedH();
          await gateH;
        }
        return result;
      },
    };
    try {
      const hub = testHub(store);
      const [first] = await hub.publish('t', [{ data: 'first' }], http);
      await hub.publish(
        't',
        Array.from({ length: 100 }, (_, n) => ({ data: n })),
        http,
      );
      await sleep(50);
      const { subscriber, sent } = reader();
      const send = subscriber.send;
      let ingested = false;
      subscriber.send = (frame) => {
        const parsed = JSON.parse(frame) as Sent & { op: string; data?: unknown };
        if (parsed.op === 'msg' && parsed.data === 'H' && !ingested) {
          ingested = true;
          // Right after the history sent H: a peer's message minted 5 ms before H, by gossip.
          const ms = Number.parseInt(parsed.cursor.slice(0, 12), 16) - 5;
          queueMicrotask(() => {
            void hub.ingest([remote('G', 't', ms, 'nodepeer00')], { persist: true, deliverFirst: true });
            setTimeout(releaseH, 20);
          });
        }
        return send(frame);
      };
      let paused: Promise<void> | undefined;
      subscriber.backlog = () =>
        sent.length === 50
          ? (paused ??= (async () => {
              void hub.publish('t', [{ data: 'H' }], http);
              await hInStore;
            })())
          : undefined;
      await hub.subscribe(subscriber, 't', first?.cursor);
      await sleep(100);
      const iG = sent.findIndex((m) => m.id === 'G');
      assert.ok(iG > 0, 'G sent');
      assert.ok((await resumedBefore(hub, 't', sent, iG)).includes('G'), 'G after a cut before it');
    } finally {
      await sleep(100);
      await inner.close();
    }
  });

  it('paces the buffer at the reader’s backlog, as it paces the history', async () => {
    const inner = memoryStore();
    // The live messages' commit is held until the history has been read: they reach the
    // subscription through its buffer only.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const store: MessageStore = {
      ...inner,
      async append(messages, options) {
        if (messages.some((m) => typeof m.data === 'string' && m.data.startsWith('live'))) await held;
        return inner.append(messages, options);
      },
    };
    try {
      const hub = testHub(store);
      const [first, second] = await hub.publish('t', [{ data: 0 }, { data: 1 }], http);
      const { subscriber, sent } = reader();
      // The reader takes 50 messages, then asks the resume to wait a turn.
      let sinceWait = 0;
      let longestRun = 0;
      const send = subscriber.send;
      subscriber.send = (frame) => {
        sinceWait += 1;
        longestRun = Math.max(longestRun, sinceWait);
        return send(frame);
      };
      let published: Promise<unknown> | undefined;
      subscriber.backlog = () => {
        if (!published) {
          published = hub.publish(
            't',
            Array.from({ length: 500 }, (_, n) => ({ data: `live${n}` })),
            http,
          );
          setTimeout(release, 100);
          return sleep(20).then(() => undefined); // until the writer has handed them to the store
        }
        if (sinceWait < 50) return undefined;
        return Promise.resolve().then(() => {
          sinceWait = 0;
        });
      };
      await hub.subscribe(subscriber, 't', first?.cursor);
      await published;
      assert.equal(sent.length, 501);
      assert.equal(sent[0]?.cursor, second?.cursor);
      assertCursorOrder(sent);
      assert.ok(longestRun <= 50, `${longestRun} messages sent without asking the reader`);
    } finally {
      await inner.close();
    }
  });
});
