import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareCursors, createHybridClock, cursorFloor, RESUME_AHEAD_MS } from '@anode/shared';
import { memoryStore, recorder, testHub } from './test-hub.ts';

const claims = { pub: ['>'], sub: ['>'] };
/** A cursor another node minted `ms` ahead of this one's wall clock. */
const aheadBy = (ms: number) => createHybridClock('nodeahead0', () => Date.now() + ms).next();

// A cursor another node minted ahead of this one's clock (its wall clock ahead, or a live position
// it handed out that was never gossiped here): a client that fails over with it resumes here,
// keeps it as its newest cursor (`subscribed` carries it), and resumes from it again after its
// next reconnect.
describe('hub: a resume or a history page from a cursor ahead of this node’s clock', () => {
  it('mints what it accepts next above that cursor, so the next resume from it has it', async () => {
    const store = memoryStore();
    const hub = testHub(store, createHybridClock('nodehere0'));
    const ahead = aheadBy(3_000);
    const first = recorder();
    await hub.subscribe(first, 't', ahead);
    const [ack] = await hub.publish('t', [{ data: 1 }], { via: 'http', claims });
    assert.ok(ack && compareCursors(ack.cursor, ahead) > 0, `${ack?.cursor} sorts after ${ahead}`);
    assert.deepEqual(first.ids(), [ack.id], 'sent live');
    const again = recorder();
    await hub.subscribe(again, 't', ahead);
    assert.deepEqual(again.ids(), [ack.id]);
    await store.close();
  });

  it('the same for a poller paging on from it over HTTP', async () => {
    const store = memoryStore();
    const hub = testHub(store, createHybridClock('nodehere0'));
    const ahead = aheadBy(3_000);
    assert.deepEqual(await hub.history('t', ahead, 100), { messages: [], next: null });
    const [ack] = await hub.publish('t', [{ data: 1 }], { via: 'http', claims });
    const page = await hub.history('t', ahead, 100);
    assert.deepEqual(
      page.messages.map((m) => m.id),
      [ack?.id],
    );
    await store.close();
  });

  it('moves the clock at most RESUME_AHEAD_MS past the wall clock: any reader may send one', async () => {
    const store = memoryStore();
    const hub = testHub(store, createHybridClock('nodehere0'));
    await hub.subscribe(recorder(), 't', aheadBy(59_000));
    await hub.history('u', aheadBy(59_000), 10);
    const [ack] = await hub.publish('t', [{ data: 1 }], { via: 'http', claims });
    assert.ok(ack);
    const bound = cursorFloor(Date.now() + RESUME_AHEAD_MS + 1_000);
    assert.ok(compareCursors(ack.cursor, bound) < 0, `${ack.cursor} within RESUME_AHEAD_MS of now`);
    await store.close();
  });

  it('sends a client resuming from its own newest cursor nothing again, whatever cursor a reader sent', async () => {
    const store = memoryStore();
    const hub = testHub(store, createHybridClock('nodehere0'));
    await hub.subscribe(recorder(), 'noise', aheadBy(59_000));
    const acks = [];
    for (let n = 0; n < 20; n++) acks.push(...(await hub.publish('room', [{ data: n }], { via: 'http', claims })));
    const resumed = recorder();
    await hub.subscribe(resumed, 'room', acks.at(-1)?.cursor);
    assert.deepEqual(resumed.ids(), []);
    await store.close();
  });
});
