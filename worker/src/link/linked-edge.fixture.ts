// Test support (not a test): a workerd edge linked to a scripted stand-in relay, for the link's
// tests of resumes and late arrivals (below-floor.test.ts, resume-arrivals.test.ts).
import { after, before } from 'node:test';
import { compareCursors } from '@anode/shared';
import { openSocket, type RawSocket } from '../../../test/helpers/ws.ts';
import { type EdgeRuntime, startEdge } from '../../test-support/edge-runtime.ts';
import { answerAsRelay, startStandInRelay } from './stand-in-relay.fixture.ts';

/**
 * A workerd edge (RING_SIZE 5, and `vars`) linked to a stand-in relay that acks publishes (keeping
 * them in `stored`) and answers late arrivals with nothing and history with nothing, or with
 * `stored` after the page's `after` when `pagesFromStored`, read as the request comes in. `onHistory`
 * runs as the next history request comes in; its answer then waits for it and 300 ms more. Started
 * before the describe's tests, stopped after them.
 */
export function linkedEdge(options: { vars?: Record<string, string>; pagesFromStored?: boolean } = {}) {
  const LINK_SECRET = 'unit-test-link-secret-0123';
  const t = {
    relay: undefined as unknown as Awaited<ReturnType<typeof startStandInRelay>>,
    edge: undefined as unknown as EdgeRuntime,
    open: [] as RawSocket[],
    /** What the stand-in relay stored: the edge's publishes (acked), and what a test adds. */
    stored: [] as { id: string; cursor: string }[],
    onHistory: undefined as ((link: { send(frame: unknown): void }) => void | Promise<void>) | undefined,
    /** A new socket, closed after the tests. */
    async socket() {
      const socket = await openSocket(`${t.edge.wsUrl}/v1/ws`);
      t.open.push(socket);
      return socket;
    },
    /** A socket subscribed to `topic`, live. */
    async live(topic: string) {
      const socket = await t.socket();
      socket.send({ op: 'sub', topic, ref: 'live' });
      await socket.next((f) => f.op === 'subscribed');
      return socket;
    },
    /** The stand-in relay sends a mesh message over the newest link. */
    sendFromMesh(topic: string, id: string, cursor: string, data: unknown) {
      t.relay.links
        .at(-1)
        ?.send(JSON.stringify({ op: 'msg', id, topic, cursor, source: 'feed', ts: Date.now(), data }));
    },
    /** A resume from `after`: its answer (`subscribed` or `err`) and the ids sent before it. */
    async resume(topic: string, after: string) {
      const socket = await t.socket();
      socket.send({ op: 'sub', topic, after, ref: 'resume' });
      // (The predicate sees a buffered frame again with each new one: a set counts each once.)
      const ids = new Set<string>();
      const answer = await socket.next((f) => {
        if (f.op === 'msg') ids.add(f.id as string);
        return f.op === 'subscribed' || f.op === 'err';
      });
      return { answer, ids };
    },
    /** Publish one message over HTTP; its cursor. */
    async post(topic: string, data: number) {
      const response = await fetch(`${t.edge.url}/v1/topics/${topic}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data }),
      });
      return ((await response.json()) as { messages: { cursor: string }[] }).messages[0]?.cursor as string;
    },
  };
  before(async () => {
    t.relay = await startStandInRelay({
      secret: LINK_SECRET,
      node: 'scripted',
      onFrame(frame, link) {
        if (frame.op === 'pub') for (const m of frame.messages ?? []) t.stored.push(m as never);
        answerAsRelay(frame, link, {
          history(request, answering) {
            const messages = options.pagesFromStored
              ? t.stored
                  .filter((m) => compareCursors(m.cursor, request.after ?? '0') > 0)
                  .sort((a, b) => compareCursors(a.cursor, b.cursor))
              : [];
            const hook = t.onHistory;
            t.onHistory = undefined;
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
    t.edge = await startEdge({
      RELAY_URLS: t.relay.url,
      LINK_SECRET,
      LINK_WAIT_MS: '1000',
      LINK_RETRY_MAX_MS: '200',
      RING_SIZE: '5',
      ...options.vars,
    });
  });
  after(async () => {
    for (const socket of t.open) socket.close();
    await t.edge?.stop();
    await t.relay?.stop();
  });
  return t;
}
