import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import type { MessageStore } from '@anode/shared';
import { WebSocketServer } from 'ws';
import { memoryStore, testHub } from '../../hub/test-hub.ts';
import { createLogger } from '../../logger.ts';
import { parseDefinition } from '../definition.ts';
import { createIngest } from '../ingest.ts';
import { createScheduler } from '../scheduler.ts';
import { createSourceRuntime, type RuntimeDeps } from '../source-runtime.ts';
import { BUILTIN_KINDS } from './builtin-kinds.ts';
import { websocketKind } from './websocket-kind.ts';

const waitFor = async (what: string, ready: () => boolean | Promise<boolean>, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** A test double: a store whose appends wait until `release()` (a store that stopped answering). */
function stuckStore(store: MessageStore) {
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));
  const stuck = new Proxy(store, {
    get(target, key) {
      if (key === 'append') {
        return async (...args: Parameters<MessageStore['append']>) => {
          await released;
          return target.append(...args);
        };
      }
      const value: unknown = Reflect.get(target, key);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { store: stuck, release };
}

/** A test double: an ingest that never settles, counting the payloads handed to it. */
function hangingIngest() {
  let calls = 0;
  return { ingest: () => ((calls += 1), new Promise<void>(() => {})), calls: () => calls };
}

describe('websocket source: a store that does not answer', () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  /**
   * An upstream that sends `frames` frames `{id: n}` (n counting every frame sent) on each
   * connection, and one source on it (cap 1 s).
   */
  const setup = async (ingest: RuntimeDeps['ingest'], frames = 1, onGiveUp?: RuntimeDeps['onGiveUp']) => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await once(wss, 'listening');
    let connections = 0;
    let sent = 0;
    wss.on('connection', (ws) => {
      connections += 1;
      for (let i = 0; i < frames; i++) ws.send(JSON.stringify({ id: ++sent }));
    });
    const { port } = wss.address() as { port: number };
    const scheduler = createScheduler({ concurrency: 2 });
    const definition = parseDefinition(
      {
        name: 'feed',
        kind: 'websocket',
        url: `ws://127.0.0.1:${port}/`,
        topic: 'feed.items',
        id_path: '$.id',
        timeout_ms: 100, // a publish is given up on after 10 × 100 ms
        backoff_min_ms: 20,
        backoff_max_ms: 50,
        heartbeat_ms: 60_000,
      },
      BUILTIN_KINDS,
    );
    const runtime = createSourceRuntime(definition, websocketKind, {
      scheduler,
      log: createLogger('silent'),
      ingest,
      onError() {},
      onGiveUp,
    });
    runtime.start();
    cleanups.push(() => {
      runtime.stop();
      scheduler.stop();
      for (const client of wss.clients) client.terminate();
      wss.close();
    });
    return { runtime, connections: () => connections, sent: () => sent };
  };

  it('gives up on a publish after 10 × timeout_ms: the error shows, the connection is redialled, one publish at most is left with the store', async () => {
    const store = hangingIngest();
    const s = await setup(store.ingest);
    // Before, the first frame's publish held the stream for ever: still `connected`, no error.
    await waitFor('three connections, each dropped by a publish given up on', () => s.connections() >= 3);
    await waitFor('a later frame given up on', () => s.runtime.status().dropped_publishes >= 1);
    const status = s.runtime.status();
    assert.equal(
      status.last_error?.message,
      'publishing took too long: a payload not published within 1000 ms (10 × timeout_ms)',
    );
    assert.ok(status.errors >= 2, `${status.errors} errors`);
    assert.equal(status.publish_stuck, true);
    // The frames of later connections waited for the stuck publish and were given up on unsent:
    // one publish abandoned in the store, the others dropped.
    assert.equal(store.calls(), 1);
    assert.equal(status.abandoned_publishes, 1);
  });

  it('counts the frames a dropped connection had queued as lost, in dropped_publishes and stage queued', async () => {
    const store = hangingIngest();
    const queued: number[] = [];
    const s = await setup(
      store.ingest,
      50,
      (_runtime, stage, count) => void (stage === 'queued' && queued.push(count)),
    );
    // Each connection's first frame is given up on (the first running, the later ones queued
    // behind it), and its 49 others are never emitted. Before, those were only logged: 2 counted
    // of 100 lost, while dropped_publishes claims to count the payloads really lost.
    await waitFor('the frames of two connections counted', () => {
      const status = s.runtime.status();
      return status.abandoned_publishes + status.dropped_publishes >= 100;
    });
    const status = s.runtime.status();
    assert.equal(store.calls(), 1);
    assert.equal(status.abandoned_publishes, 1);
    assert.ok(status.abandoned_publishes + status.dropped_publishes <= s.sent(), 'no frame counted twice');
    assert.equal(
      queued.reduce((a, b) => a + b, 0),
      status.dropped_publishes,
    );
  });

  it('counts a frame whose publish the store refused as lost, with the frames queued behind it', async () => {
    let calls = 0;
    let stored = 0;
    // A test double: the first append is refused (an overloaded store), not given up on.
    const ingest = async () => {
      calls += 1;
      if (calls === 1) {
        await new Promise((r) => setTimeout(r, 20));
        throw new Error('node is overloaded');
      }
      stored += 1;
    };
    const s = await setup(ingest, 10);
    await waitFor('the second connection stored', () => stored === 10);
    const status = s.runtime.status();
    assert.equal(s.sent(), 20);
    assert.equal(status.abandoned_publishes, 0);
    // Before, the refused frame was counted nowhere: 9 dropped of the 10 lost.
    assert.equal(status.dropped_publishes, 10);
  });

  it('keeps what the store takes after its publish was given up on, and publishes again once it answers', async () => {
    const { store, release } = stuckStore(memoryStore());
    const hub = testHub(store);
    cleanups.push(async () => {
      release(); // else a failed test waits here for good
      await hub.writer.drain();
      await store.close();
    });
    const log = createLogger('silent');
    const ingest = createIngest({
      hub,
      steps: new Map(),
      topicPipelines: [],
      deadLetterTopic: 'dead.letters',
      stepTimeoutMs: 1_000,
      maxMessageBytes: 1024 * 1024,
      log,
      onDeadLetter() {},
    });
    const s = await setup(ingest);
    await waitFor('a later frame given up on', () => s.runtime.status().dropped_publishes >= 1);
    release();
    const stored = async () =>
      (await store.history('feed.items', { limit: 100 })).map((m) => (m.data as { id: number }).id);
    await waitFor('a frame of a later connection stored', async () => (await stored()).some((id) => id > 1));
    const ids = await stored();
    assert.equal(ids[0], 1, 'the first frame, whose publish was given up on, is stored');
    assert.equal(new Set(ids).size, ids.length);
    // The first frame's items count too, though its publish was given up on.
    await waitFor('both counted as items', () => s.runtime.status().items >= 2);
    assert.equal(s.runtime.status().publish_stuck, false);
  });
});
