import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareCursors, createHybridClock, cursorFloor, MAX_CLOCK_SKEW_MS } from '@anode/shared';
import { memoryStore, recorder, testHub } from './test-hub.ts';

const claims = { pub: ['>'], sub: ['>'] };

/** The `subscribed` frame's cursor a recorder was sent. */
const subscribedCursor = (subscriber: ReturnType<typeof recorder>) => {
  const frames: string[] = [];
  const send = subscriber.send.bind(subscriber);
  subscriber.send = (frame) => (frames.push(frame), send(frame));
  return () =>
    frames.map((f) => JSON.parse(f) as { op: string; cursor?: string }).find((f) => f.op === 'subscribed')?.cursor;
};

// A cursor another node minted ahead of this one's clock (its wall clock ahead, or a live
// position it handed out that was never gossiped here): a client that fails over with it resumes
// here, keeps it as its newest cursor, and resumes from it again after its next reconnect.
describe('hub: a resume from a cursor ahead of this node’s clock', () => {
  it('replays what it minted below that cursor to a later resume from it', async () => {
    const store = memoryStore();
    const hub = testHub(store, createHybridClock('nodehere0'));
    const ahead = `${cursorFloor(Date.now() + 5_000).slice(0, 16)}-nodeahead0`;
    const first = recorder();
    const cursorOf = subscribedCursor(first);
    await hub.subscribe(first, 't', ahead);
    assert.equal(cursorOf(), ahead, 'subscribed carries the cursor resumed from (nothing sent)');
    const [ack] = await hub.publish('t', [{ data: 1 }], { via: 'http', claims });
    assert.ok(ack);
    assert.deepEqual(first.ids(), [ack.id], 'sent live');
    // The client's next resume is from the newest cursor it holds: the one it resumed from.
    const again = recorder();
    await hub.subscribe(again, 't', ahead);
    assert.deepEqual(again.ids(), [ack.id]);
    await store.close();
  });

  it('does not move this node’s clock: any reader may send such a cursor', async () => {
    const store = memoryStore();
    const hub = testHub(store, createHybridClock('nodehere0'));
    for (const ms of [59_000, MAX_CLOCK_SKEW_MS + 60_000]) {
      await hub.subscribe(recorder(), 't', `${cursorFloor(Date.now() + ms).slice(0, 16)}-nodeahead0`);
      await hub.history('t', `${cursorFloor(Date.now() + ms).slice(0, 16)}-nodeahead0`, 10);
    }
    const [ack] = await hub.publish('t', [{ data: 1 }], { via: 'http', claims });
    assert.ok(ack);
    assert.ok(compareCursors(ack.cursor, cursorFloor(Date.now() + 1_000)) < 0, `${ack.cursor} stays at now`);
    await store.close();
  });

  it('holds nothing back for a cursor further ahead than any node’s clock may be', async () => {
    const store = memoryStore();
    const hub = testHub(store, createHybridClock('nodehere0'));
    const far = `${cursorFloor(Date.now() + MAX_CLOCK_SKEW_MS + 60_000).slice(0, 16)}-nodeahead0`;
    await hub.subscribe(recorder(), 't', far);
    await hub.publish('t', [{ data: 1 }], { via: 'http', claims });
    const again = recorder();
    await hub.subscribe(again, 't', far);
    assert.deepEqual(again.ids(), []);
    await store.close();
  });
});
