import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MessageStore } from '@anode/shared';
import { createHeldStore } from '../storage/held-store.ts';
import { cursorAt, memoryStore, recorder, remote as remoteIn, testHub } from './test-hub.ts';

const remote = (id: string, ms: number) => remoteIn(id, 'df.a', ms, 'zzzzzzzzzz');
/** A cursor from a second ago: a resume from before the messages of a test. */
const before = () => cursorAt(Date.now() - 1_000, 'aaaaaaaaaa');

/** A real in-memory store whose appends wait until `open()` (or fail once `fail` is set). */
function gatedStore() {
  const store = memoryStore();
  let gate: { promise: Promise<void>; open: () => void } | undefined;
  const state = { fail: false, appends: 0 };
  const close = () => {
    let open = () => {};
    const promise = new Promise<void>((resolve) => (open = resolve));
    gate = { promise, open };
  };
  const gated = new Proxy(store, {
    get(target, key, receiver) {
      if (key !== 'append') return Reflect.get(target, key, receiver) as unknown;
      return async (...args: Parameters<MessageStore['append']>) => {
        state.appends += 1;
        await gate?.promise;
        if (state.fail) throw new Error('store down (test)');
        return target.append(...args);
      };
    },
  });
  return {
    store: gated,
    state,
    close,
    open: () => {
      gate?.open();
      gate = undefined;
    },
  };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('hub: gossip delivered before its local commit (deliverFirst)', () => {
  it('reaches a live subscriber while the commit is still pending, and only once', async () => {
    const g = gatedStore();
    const hub = testHub(g.store);
    const live = recorder();
    await hub.subscribe(live, 'df.a');
    g.close();
    const m = remote('k-early', Date.now());
    const stored = hub.ingest([m], { persist: true, deliverFirst: true });
    assert.deepEqual(live.ids(), ['k-early'], 'delivered before the store answered');
    await turn();
    assert.equal(g.state.appends, 1, 'the write is under way');
    g.open();
    assert.equal(await stored, 1);
    // The same message again through catch-up (stored first): new to nobody.
    assert.equal(await hub.ingest([m], { persist: true }), 0);
    assert.deepEqual(live.ids(), ['k-early']);
    // And in one batch twice, from gossip: once.
    const n = remote('k-twice', Date.now());
    await hub.ingest([n, n], { persist: true, deliverFirst: true });
    assert.deepEqual(live.ids(), ['k-early', 'k-twice']);
  });

  it('a message whose commit was pending when it was delivered reaches the catch-up-only path once', async () => {
    // Catch-up stores first and delivers at commit; gossip of the same id meanwhile delivers at
    // once: the commit must not deliver it a second time.
    const g = gatedStore();
    const hub = testHub(g.store);
    const live = recorder();
    await hub.subscribe(live, 'df.a');
    g.close();
    const m = remote('k-both-ways', Date.now());
    const caughtUp = hub.ingest([m], { persist: true });
    const gossiped = hub.ingest([m], { persist: true, deliverFirst: true });
    assert.deepEqual(live.ids(), ['k-both-ways']);
    g.open();
    await Promise.all([caughtUp, gossiped]);
    assert.deepEqual(live.ids(), ['k-both-ways']);
  });

  it('a failed write forgets the delivery, so the repairing catch-up delivers it again', async () => {
    const g = gatedStore();
    const hub = testHub(g.store);
    const live = recorder();
    await hub.subscribe(live, 'df.a');
    g.state.fail = true;
    const m = remote('k-unstored', Date.now());
    await assert.rejects(hub.ingest([m], { persist: true, deliverFirst: true }), /unavailable/);
    assert.deepEqual(live.ids(), ['k-unstored']);
    // Meanwhile a subscriber resumed from before it: the store never had it.
    const resumed = recorder();
    await hub.subscribe(resumed, 'df.a', before());
    assert.deepEqual(resumed.ids(), []);
    g.state.fail = false;
    assert.equal(await hub.ingest([m], { persist: true }), 1);
    assert.deepEqual(resumed.ids(), ['k-unstored'], 'the repair reached the subscriber that resumed meanwhile');
    assert.deepEqual(live.ids(), ['k-unstored', 'k-unstored'], 'a duplicate at most (same id)');
  });

  it('a resume that starts while a delivered message is uncommitted reads it from the store', async () => {
    const g = gatedStore();
    const hub = testHub(g.store);
    g.close();
    const m = remote('k-in-flight', Date.now());
    const stored = hub.ingest([m], { persist: true, deliverFirst: true });
    // Subscribed after the delivery (so not buffered), from a cursor before the message.
    const resumed = recorder();
    const subscribed = hub.subscribe(resumed, 'df.a', before());
    await turn();
    await turn();
    assert.deepEqual(resumed.ids(), [], 'the resume waits for the write');
    g.open();
    await Promise.all([stored, subscribed]);
    assert.deepEqual(resumed.ids(), ['k-in-flight']);
  });

  it('a local message committed after newer gossip was delivered is replayed to a resume from that gossip', async () => {
    const g = gatedStore();
    const hub = testHub(g.store);
    g.close();
    const local = hub.publish('df.a', [{ data: 'mine' }], { via: 'source', source: 'feed' });
    await turn();
    // Gossip minted a little later elsewhere: its cursor is newer than the local one.
    const newer = remote('k-newer', Date.now() + 50);
    const live = recorder();
    await hub.subscribe(live, 'df.a');
    const gossiped = hub.ingest([newer], { persist: true, deliverFirst: true });
    assert.deepEqual(live.ids(), ['k-newer']);
    g.open();
    const [ack] = await local;
    await gossiped;
    assert.deepEqual(live.ids(), ['k-newer', ack?.id]);
    // Cut off right after `k-newer`, the subscriber resumes from its cursor: the older local
    // message it never got is replayed.
    const resumed = recorder();
    await hub.subscribe(resumed, 'df.a', newer.cursor);
    assert.deepEqual(resumed.ids(), [ack?.id]);
  });
});

describe('remote inputs', () => {
  it('with them (a mesh), a local message that comes back through ingest is not delivered again', async () => {
    const hub = testHub(memoryStore());
    const live = recorder();
    await hub.subscribe(live, 'df.a');
    const [ack] = await hub.publish('df.a', [{ data: 1 }], { via: 'source', source: 'feed' });
    const [own] = (await hub.history('df.a', undefined, 10)).messages;
    assert.equal(own?.id, ack?.id);
    await hub.ingest([own], { persist: true, deliverFirst: true });
    await hub.ingest([own], { persist: false });
    assert.deepEqual(live.ids(), [ack?.id]);
  });

  it('without them (no mesh), delivers local messages and refuses ingest with a clear error', async () => {
    const hub = testHub(memoryStore(), undefined, { remoteInputs: false });
    const live = recorder();
    await hub.subscribe(live, 'df.a');
    const [ack] = await hub.publish('df.a', [{ data: 1 }], { via: 'source', source: 'feed' });
    assert.deepEqual(live.ids(), [ack?.id]);
    await assert.rejects(hub.ingest([remote('r1', Date.now())], { persist: true }), /without remote inputs/);
  });
});

describe('hub: persist origin (the shared store is the accepting relay’s to write)', () => {
  it('hands what ingest delivered without storing to onUnstored, once per id; a resume reads it back held', async () => {
    const held = createHeldStore(memoryStore(), { holdMs: 60_000, maxBytes: 1 << 20 });
    const unstored: string[][] = [];
    const hub = testHub(held, undefined, {
      onUnstored: (envelopes) => {
        unstored.push(envelopes.map((e) => e.id));
        held.hold(envelopes);
      },
    });
    const resumeFrom = before();
    const live = recorder();
    await hub.subscribe(live, 'df.a');
    const now = Date.now();
    assert.equal(
      await hub.ingest([remote('r1', now), remote('r2', now + 1)], { persist: false, deliverFirst: true }),
      2,
    );
    assert.equal(await hub.ingest([remote('r1', now), remote('r3', now + 2)], { persist: false }), 1);
    assert.deepEqual(unstored, [['r1', 'r2'], ['r3']]);
    assert.deepEqual(live.ids(), ['r1', 'r2', 'r3']);
    // Nothing was written to the store, yet a resume from before them gets all three.
    assert.deepEqual(await held.topics(), ['df.a']);
    const resumed = recorder();
    await hub.subscribe(resumed, 'df.a', resumeFrom);
    assert.deepEqual(resumed.ids(), ['r1', 'r2', 'r3']);
  });
});
