import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { cursorFloor, cursorTime } from '@anode/shared';
import { openSocket, type RawSocket } from '../../../test/helpers/ws.ts';
import { type EdgeRuntime, startEdge } from '../../test-support/edge-runtime.ts';
import { startStandInRelay } from './stand-in-relay.fixture.ts';

/**
 * Resume points at a linked edge, against a scripted relay: it dials back, announces no reserved
 * names, acks publishes, and answers the link's `sub` as `answer` says (subscribed, or refused as
 * `cursor_expired` with the relay's wording, which names its trim mark).
 */
/** A refusal names its trim mark in the `err` frame's `trimmed` field (a relay of now), or in its text only (an older one). */
type SubAnswer = { subscribed: true } | { subscribed: false; trimmedThrough?: string; named?: 'field' | 'text' };

async function startScriptedRelay(secret: string) {
  const subs: { at: number; topic: string; after: string | undefined }[] = [];
  let answer = (_after: string | undefined, _topic: string): SubAnswer => ({ subscribed: true });
  const standIn = await startStandInRelay({
    secret,
    node: 'scripted-relay',
    onFrame(frame, link) {
      const { topic } = link;
      if (frame.op === 'sub') {
        subs.push({ at: Date.now(), topic, after: frame.after });
        const answered = answer(frame.after, topic);
        if (answered.subscribed) {
          link.send({ op: 'subscribed', topic, cursor: frame.after ?? '0', ref: frame.ref });
        } else {
          // The relay's own wording (relay-node/src/hub/hub.ts, assertResumable).
          const inText = answered.trimmedThrough !== undefined && answered.named !== 'field';
          const message = !inText
            ? `cursor ${frame.after} is older than the retained history of ${topic}`
            : `cursor ${frame.after} is older than the retained history of ${topic} (trimmed through ` +
              `${answered.trimmedThrough}); resubscribe without \`after\` or from a newer cursor`;
          const trimmed = answered.named === 'field' ? { trimmed: answered.trimmedThrough } : {};
          link.send({ op: 'err', code: 'cursor_expired', message, ...trimmed, ref: frame.ref });
        }
      } else if (frame.op === 'pub') {
        link.send({ op: 'ack', ref: frame.ref, ids: (frame.messages ?? []).map((m) => m.id) });
      } else if (frame.op === 'late') {
        link.send({ op: 'late', ref: frame.ref, messages: [], next: null });
      } else if (frame.op === 'history') {
        link.send({ op: 'history', ref: frame.ref, messages: [], next: null });
      }
    },
  });
  return {
    url: standIn.url,
    subs,
    /** How the relay answers the link's next `sub`. */
    set answer(next: typeof answer) {
      answer = next;
    },
    /** Send a frame on the open link. */
    send(frame: unknown) {
      const link = standIn.links.at(-1);
      assert.ok(link && link.readyState === WebSocket.OPEN, 'a link is open');
      link.send(JSON.stringify(frame));
    },
    dropLinks: standIn.dropLinks,
    stop: standIn.stop,
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const cursorAt = (ms: number, node: string) => `${Math.floor(ms).toString(16).padStart(12, '0')}0000-${node}`;

async function waitFor(what: string, check: () => boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('resume points at a linked edge (scripted relay)', () => {
  const LINK_SECRET = 'unit-test-link-secret-0123';
  let relay: Awaited<ReturnType<typeof startScriptedRelay>>;
  let edge: EdgeRuntime;
  const open: RawSocket[] = [];
  const socket = async () => {
    const ws = await openSocket(`${edge.wsUrl}/v1/ws`);
    open.push(ws);
    return ws;
  };
  before(async () => {
    relay = await startScriptedRelay(LINK_SECRET);
    edge = await startEdge({ RELAY_URLS: relay.url, LINK_SECRET, LINK_WAIT_MS: '1000', LINK_RETRY_MAX_MS: '200' });
  });
  after(async () => {
    for (const ws of open) ws.close();
    await edge?.stop();
    await relay?.stop();
  });

  const subscribe = async (ws: RawSocket, topic: string, after?: string) => {
    const ref = `s-${Math.random().toString(36).slice(2)}`;
    ws.send({ op: 'sub', topic, ref, ...(after ? { after } : {}) });
    return (await ws.next((f) => (f.op === 'subscribed' || f.op === 'err') && (f as { ref?: string }).ref === ref)) as {
      op: string;
      cursor?: string;
      code?: string;
    };
  };

  // A fresh `sub` was answered with the object's clock: a message minted at a relay just before,
  // still on its way over the link, sorted below that cursor and a resume from it skipped it.
  it('a resume from a fresh subscription cursor gets a relay message minted just before it that arrived after', async () => {
    relay.answer = () => ({ subscribed: true });
    const topic = 'resume.fresh';
    const warm = await fetch(`${edge.url}/v1/topics/${topic}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ data: 'warm' }),
    });
    assert.equal(warm.status, 202, await warm.clone().text());
    await warm.body?.cancel();
    await sleep(50);
    const a = await socket();
    const fresh = await subscribe(a, topic);
    assert.equal(fresh.op, 'subscribed');
    const s = fresh.cursor!;
    // The relay minted it 5 ms before `s` was handed out, on another node; it arrives now.
    const cursor = cursorAt(cursorTime(s) - 5, 'relay1');
    const id = 'm' + 'in-flight'.padEnd(24, '0').replace(/[^0-9a-z]/g, '0');
    relay.send({ op: 'msg', id, topic, cursor, source: 'feed', ts: Date.now(), data: 'in flight' });
    await a.next((f) => f.op === 'msg' && (f as { id: string }).id === id);
    const b = await socket();
    const resumed = await subscribe(b, topic, s);
    assert.equal(resumed.op, 'subscribed');
    assert.ok(
      b.frames.some((f) => f.op === 'msg' && (f as { id: string }).id === id),
      `the resume from ${s} got the message minted at ${cursor}`,
    );
  });

  // The link's resume refused as cursor_expired restarted it from now - 2 s and closed clients
  // 4001 "resume from your last cursor"; one holding a cursor above what it never got resumed
  // with no error.
  for (const named of ['field', 'text'] as const)
    it(`refuses a resume from a cursor handed out before the link lost its place (trim mark in the ${named})`, async () => {
      relay.answer = () => ({ subscribed: true });
      const topic = `resume.gap-${named}`;
      const a = await socket();
      assert.equal((await subscribe(a, topic)).op, 'subscribed');
      a.send({ op: 'pub', topic, data: 'e1', ref: 'p' });
      const e1 = (await a.next((f) => f.op === 'ack')) as { cursor: string };
      // The relay's retention passed the link's resume point while it was away.
      relay.answer = (after, of) =>
        of === topic && after !== undefined && cursorTime(after) < cursorTime(e1.cursor) + 100
          ? { subscribed: false, trimmedThrough: cursorAt(cursorTime(e1.cursor) + 100, 'r1'), named }
          : { subscribed: true };
      const before = relay.subs.length;
      relay.dropLinks();
      const closed = await Promise.race([a.closed, sleep(10_000).then(() => undefined)]);
      assert.equal(closed?.code, 4001, 'the client was told to resume');
      const ours = () => relay.subs.slice(before).filter((s) => s.topic === topic);
      await waitFor('the link to subscribe again', () => ours().length >= 2);
      const b = await socket();
      const resumed = await subscribe(b, topic, e1.cursor);
      assert.equal(resumed.op, 'err', `a resume from e1 ${e1.cursor} was answered ${JSON.stringify(resumed)}`);
      assert.equal(resumed.code, 'cursor_expired');
      // The link restarted at the relay's trim mark, not below it.
      const restarted = ours().at(-1)!.after!;
      assert.ok(cursorTime(restarted) >= cursorTime(e1.cursor) + 100, `restarted from ${restarted}`);
      // A fresh subscription after the gap resumes as usual.
      const c = await socket();
      const fresh = await subscribe(c, topic);
      assert.equal(fresh.op, 'subscribed');
      const d = await socket();
      assert.equal((await subscribe(d, topic, fresh.cursor)).op, 'subscribed');
    });

  // restart() used now - 2 s: a relay whose clock runs ahead refused that again, and the object
  // re-subscribed and closed every client at once, in a loop.
  it('backs off a relay that keeps refusing the restart, and closes clients once', async () => {
    relay.answer = () => ({ subscribed: true });
    const topic = 'resume.ahead';
    let closes = 0;
    let stopped = false;
    // A client that resubscribes each time it is closed, as the client library would.
    const client = async (): Promise<void> => {
      while (!stopped) {
        try {
          const ws = await socket();
          await subscribe(ws, topic);
          const { code } = await ws.closed;
          if (code === 4001) closes += 1;
        } catch {
          // closed while subscribing: try again
        }
      }
    };
    const running = client();
    await waitFor('the link', () => relay.subs.some((s) => s.topic === topic));
    await sleep(200);
    relay.answer = (after, of) => {
      const mark = Date.now() + 3_000;
      return of === topic && after !== undefined && cursorTime(after) < mark
        ? { subscribed: false, trimmedThrough: cursorFloor(mark) }
        : { subscribed: true };
    };
    const before = relay.subs.length;
    relay.dropLinks();
    const ours = () => relay.subs.slice(before).filter((s) => s.topic === topic);
    await waitFor('the link to subscribe again', () => ours().length > 0);
    const first = ours()[0]!.at;
    await sleep(1_000);
    const subs = ours().filter((s) => s.at <= first + 1_000).length;
    relay.answer = () => ({ subscribed: true });
    stopped = true;
    assert.ok(subs <= 5, `${subs} subs within 1 s`);
    assert.equal(closes, 1, 'the client was told of the gap once');
    for (const ws of open) ws.close();
    await Promise.race([running, sleep(2_000)]);
  });

  // A relay that names no trim mark, with its clock 1 s ahead: the restart is retried with backoff
  // from a point that only rises, until about now - 2 s passes its mark; the clients are told when
  // the gap is found and once more when it ends (a client that came meanwhile may have missed
  // what the relay could not send).
  it('retries a restart refused without a trim mark until the relay takes one', async () => {
    relay.answer = () => ({ subscribed: true });
    const topic = 'resume.unnamed';
    let closes = 0;
    let stopped = false;
    const client = async (): Promise<void> => {
      while (!stopped) {
        try {
          const ws = await socket();
          await subscribe(ws, topic);
          const { code } = await ws.closed;
          if (code === 4001) closes += 1;
        } catch {
          // closed while subscribing: try again
        }
      }
    };
    const running = client();
    await waitFor('the link', () => relay.subs.some((s) => s.topic === topic));
    await sleep(200);
    const mark = Date.now() + 1_000;
    relay.answer = (after, of) =>
      of === topic && after !== undefined && cursorTime(after) <= mark ? { subscribed: false } : { subscribed: true };
    const before = relay.subs.length;
    relay.dropLinks();
    const ours = () => relay.subs.slice(before).filter((s) => s.topic === topic);
    await waitFor('the relay to take a restart', () => ours().some((s) => cursorTime(s.after ?? '0') > mark), 10_000);
    const afters = ours().map((s) => s.after ?? '0');
    assert.deepEqual(afters, [...afters].sort(), 'each restart from a point at or above the one before');
    assert.ok(afters.length <= 8, `${afters.length} subs`);
    await waitFor('the clients to be told the gap ended', () => closes >= 2, 2_000);
    stopped = true;
    assert.equal(closes, 2);
    for (const ws of open) ws.close();
    await Promise.race([running, sleep(2_000)]);
  });
});
