import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AnodeError, createHybridClock, type HybridClock } from '@anode/shared';
import { memoryStore, recorder, remote, testHub } from './test-hub.ts';

/**
 * A second relay minting under this relay's node id (a data folder copied to another machine)
 * mints this relay's cursors. Played here by a clock that repeats its cursors (a test double of
 * that twin); the store is the real embedded one.
 */
function twinClock(): HybridClock & { repeat: (cursor: string) => void } {
  const clock = createHybridClock('twin000000');
  let repeat: string | undefined;
  return {
    ...clock,
    next: () => {
      const cursor = repeat ?? clock.next();
      repeat = undefined;
      return cursor;
    },
    repeat: (cursor) => {
      repeat = cursor;
    },
  };
}

describe('hub: a cursor another message holds', () => {
  it('refuses a local publish with internal instead of acknowledging a message it did not store', async () => {
    const store = memoryStore();
    const clock = twinClock();
    const hub = testHub(store, clock);
    const live = recorder();
    await hub.subscribe(live, 't');
    const [first] = await hub.publish('t', [{ data: 1 }], { via: 'source', source: 'feed' });
    assert.ok(first);
    clock.repeat(first.cursor);
    await assert.rejects(
      hub.publish('t', [{ data: 2 }], { via: 'source', source: 'feed' }),
      (error: AnodeError) => error.code === 'internal' && /already holds another message/.test(error.message),
    );
    assert.deepEqual(
      (await store.history('t', { limit: 10 })).map((m) => m.data),
      [1],
    );
    assert.deepEqual(live.ids(), [first.id], 'the refused message reached nobody');
    // The next publish gets a cursor of its own and is stored.
    const [third] = await hub.publish('t', [{ data: 3 }], { via: 'source', source: 'feed' });
    assert.deepEqual(
      (await store.history('t', { limit: 10 })).map((m) => m.id),
      [first.id, third?.id],
    );
  });

  it('does not deliver or count a message from elsewhere whose cursor is taken', async () => {
    const store = memoryStore();
    const hub = testHub(store);
    const live = recorder();
    await hub.subscribe(live, 'g');
    const at = Date.now();
    assert.equal(await hub.ingest([remote('m-first', 'g', at, 'zzzzzzzzzz')], { persist: true }), 1);
    // Another message under the same cursor (the twin of node zzzzzzzzzz), and a new one.
    const twin = remote('m-twin', 'g', at, 'zzzzzzzzzz');
    const next = remote('m-next', 'g', at + 1, 'zzzzzzzzzz');
    assert.equal(await hub.ingest([twin, next], { persist: true }), 1);
    assert.deepEqual(live.ids(), ['m-first', 'm-next']);
    assert.deepEqual(
      (await store.history('g', { limit: 10 })).map((m) => m.id),
      ['m-first', 'm-next'],
    );
  });
});
