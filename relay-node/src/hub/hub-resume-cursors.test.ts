import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { compareCursors, createHybridClock, cursorFloor, type MessageStore } from '@anode/shared';
import { leaseClock } from '../clock-lease.ts';
import { createLogger } from '../logger.ts';
import { createSqliteStore } from '../storage/embedded/sqlite-store.ts';
import { memoryStore, recorder, remote, testHub } from './test-hub.ts';

const claims = { pub: ['>'], sub: ['>'] };
const expired = (error: Error & { code?: string }) => error.code === 'cursor_expired';

/** The `subscribed` frame's cursor a recorder was sent. */
const subscribedCursor = (frames: string[]) =>
  frames.map((f) => JSON.parse(f) as { op: string; cursor?: string }).find((f) => f.op === 'subscribed')?.cursor;

describe('hub: a pattern resume over a topic retention emptied', () => {
  const agedStore = () =>
    createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 1_000, maxMessages: 0 } });

  it('refuses a cursor from before what the emptied topic lost, for the topic and every pattern over it', async () => {
    const store = agedStore();
    const hub = testHub(store);
    const [first, second] = await hub.publish('a.x', [{ data: 1 }, { data: 2 }], { via: 'http', claims });
    // Retention empties a.x: its every message expires.
    assert.equal(await store.sweep(Date.now() + 60_000), 2);
    assert.deepEqual(await store.topics(), [], 'a.x has no message left');
    for (const pattern of ['a.x', 'a.>', 'a.*', '>']) {
      const subscriber = recorder();
      await assert.rejects(hub.subscribe(subscriber, pattern, first?.cursor), expired, pattern);
      assert.equal(hub.isSubscribed(subscriber, pattern), false, pattern);
    }
    // From the last message it lost on, nothing is missing: the resume goes live.
    const resumed = recorder();
    await hub.subscribe(resumed, 'a.>', second?.cursor);
    assert.deepEqual(resumed.ids(), []);
    // A pattern that does not match the emptied topic is not refused.
    await hub.subscribe(recorder(), 'b.>', first?.cursor);
    await store.close();
  });

  it('refuses it among topics that still hold messages, and resumes the others from a later cursor', async () => {
    const store = agedStore();
    const hub = testHub(store);
    const [old] = await hub.publish('p.old', [{ data: 1 }, { data: 2 }], { via: 'http', claims });
    await store.sweep(Date.now() + 60_000);
    const acks = [];
    for (let n = 0; n < 20; n++) acks.push(...(await hub.publish(`p.t${n}`, [{ data: n }], { via: 'http', claims })));
    await assert.rejects(hub.subscribe(recorder(), 'p.>', old?.cursor), expired);
    const resumed = recorder();
    await hub.subscribe(resumed, 'p.>', acks[9]?.cursor);
    assert.deepEqual(
      resumed.ids(),
      acks.slice(10).map((a) => a.id),
    );
    await store.close();
  });

  it('without trimmedTopics (a store that lacks it), checks the topics it lists', async () => {
    const inner = agedStore();
    const store: MessageStore = { ...inner };
    delete store.trimmedTopics;
    const hub = testHub(store);
    const acks = await hub.publish('q.x', [{ data: 1 }, { data: 2 }], { via: 'http', claims });
    assert.equal(await inner.sweep(Date.now() + 60_000), 2);
    // Published to again: listed, and its mark is checked.
    await hub.publish('q.x', [{ data: 3 }], { via: 'http', claims });
    await assert.rejects(hub.subscribe(recorder(), 'q.>', acks[0]?.cursor), expired);
    await inner.close();
  });
});

describe('hub: the cursor a new subscription goes live with', () => {
  it('is below a publish accepted but not yet committed, so a resume from it replays that publish', async () => {
    const store = memoryStore();
    const hub = testHub(store);
    // Queued, not awaited: its cursor is minted, its commit waits for the writer's next turn.
    const acked = hub.publish('t', [{ data: 'in flight' }], { via: 'http', claims });
    const live = recorder();
    const cursor = await hub.subscribe(live, 't');
    const [ack] = await acked;
    assert.ok(ack);
    assert.deepEqual(live.ids(), [ack.id], 'sent live after `subscribed`');
    assert.ok(compareCursors(cursor, ack.cursor) < 0, `subscribed ${cursor} is not below ${ack.cursor}`);
    // The client lost the connection before it got the message: it resumes from `subscribed`.
    const resumed = recorder();
    await hub.subscribe(resumed, 't', cursor);
    assert.deepEqual(resumed.ids(), [ack.id]);
    await store.close();
  });

  it('is a new cursor when nothing waits, and a resume from it re-sends nothing', async () => {
    const store = memoryStore();
    const hub = testHub(store);
    const [ack] = await hub.publish('t', [{ data: 'done' }], { via: 'http', claims });
    const live = recorder();
    const cursor = await hub.subscribe(live, 't');
    assert.ok(ack && compareCursors(cursor, ack.cursor) > 0);
    const resumed = recorder();
    await hub.subscribe(resumed, 't', cursor);
    assert.deepEqual(resumed.ids(), []);
    await store.close();
  });

  it('is not held back by a write delivered before it is stored (live gossip)', async () => {
    const store = memoryStore();
    const hub = testHub(store);
    const gossip = remote('g-1', 't', Date.now(), 'othernode0');
    const stored = hub.ingest([gossip], { persist: true, deliverFirst: true });
    const cursor = await hub.subscribe(recorder(), 't');
    assert.ok(compareCursors(cursor, gossip.cursor) > 0, 'delivered already: the cursor is after it');
    await stored;
    await store.close();
  });

  it('stays recent while an old message waits (a catch-up), which a resume replays as a late arrival', async () => {
    const store = memoryStore();
    const hub = testHub(store);
    const old = remote('c-old', 't', Date.now() - 60_000, 'othernode0');
    const caughtUp = hub.ingest([old], { persist: true });
    const live = recorder();
    const cursor = await hub.subscribe(live, 't');
    assert.ok(
      compareCursors(cursor, cursorFloor(Date.now() - 2_000)) > 0,
      `${cursor} went back to the waiting message`,
    );
    await caughtUp;
    assert.deepEqual(live.ids(), ['c-old']);
    const resumed = recorder();
    await hub.subscribe(resumed, 't', cursor);
    assert.deepEqual(resumed.ids(), ['c-old']);
    await store.close();
  });

  it('sends `subscribed` with that cursor', async () => {
    const store = memoryStore();
    const hub = testHub(store);
    const frames: string[] = [];
    const subscriber = { ...recorder(), send: (frame: string) => (frames.push(frame), true) };
    const acked = hub.publish('t', [{ data: 1 }], { via: 'http', claims });
    const cursor = await hub.subscribe(subscriber, 't');
    assert.equal(subscribedCursor(frames), cursor);
    await acked;
    await store.close();
  });
});

describe('hub: a history page that retention overtakes while it is read', () => {
  it('is refused cursor_expired, not answered with a hole', async () => {
    const inner = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 3 } });
    // The sweep (on the writer thread in a relay) runs between the check and the read.
    let sweepFirst = false;
    const store: MessageStore = {
      ...inner,
      async history(topic, query) {
        if (sweepFirst) await inner.sweep();
        return inner.history(topic, query);
      },
    };
    const hub = testHub(store);
    const acks = await hub.publish(
      'h.t',
      Array.from({ length: 10 }, (_, n) => ({ data: n })),
      { via: 'http', claims },
    );
    sweepFirst = true;
    await assert.rejects(hub.history('h.t', acks[1]?.cursor, 100), expired);
    await inner.close();
  });
});

describe('hub: a fresh subscription while no cursor can be minted', () => {
  it('is refused and not left subscribed (the clock lease cannot be written, as on a full disk)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-lease-'));
    try {
      await writeFile(join(dir, 'clock-lease'), `${Date.now() - 60_000}\n`); // the last run's lease
      // The lease's writes fail: a folder stands where each one writes its file.
      await mkdir(join(dir, 'clock-lease.tmp'));
      await mkdir(join(dir, 'clock-lease.renewal'));
      const lease = leaseClock(dir, createHybridClock('nodelocal0'), createLogger('silent'));
      const store = memoryStore();
      try {
        const hub = testHub(store, lease.clock);
        const subscriber = recorder();
        await assert.rejects(hub.subscribe(subscriber, 't.x'), { code: 'unavailable' });
        assert.equal(hub.isSubscribed(subscriber, 't.x'), false, 'a refused sub stayed subscribed');
        // Room again: a publish goes through, and the refused subscriber is sent nothing.
        await rm(join(dir, 'clock-lease.tmp'), { recursive: true });
        await hub.publish('t.x', [{ data: 1 }], { via: 'http', claims });
        assert.deepEqual(subscriber.ids(), []);
      } finally {
        lease.stop();
        await store.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
