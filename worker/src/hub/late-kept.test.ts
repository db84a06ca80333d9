import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHybridClock } from '@anode/shared';
import { envelope, newStore, objectOn } from './resume-object.fixture.ts';

// Mesh messages below the ring's floor, kept as late arrivals (late_kept) since 0f597ed. A review
// found the edge kept fewer than a relay (a cut to 90%: nothing at all at LATE_MEMORY=1), and took
// a relay's resend of one it kept for a new message: sent live again, its 10 minutes restarted.
function belowFloor(lateMemory: number) {
  const { db, store } = newStore(1000, undefined, lateMemory);
  const relay = createHybridClock('relay1');
  const late = Array.from({ length: lateMemory + 1 }, (_, i) => envelope(`L${i}`, relay.next()));
  const floor = relay.next();
  store.meta.set('floor', floor);
  const object = objectOn(store, 'eedge0');
  object.clock.observe(floor);
  const kept = () =>
    (
      db.prepare('SELECT id, arrived_at FROM late_kept ORDER BY cursor').all() as { id: string; arrived_at: number }[]
    ).map((row) => ({ ...row }));
  return { store, object, late, kept, after: object.clock.next() };
}

describe('late arrivals below the ring’s floor', () => {
  for (const lateMemory of [1, 10]) {
    it(`keeps the newest LATE_MEMORY of them (${lateMemory}), as a relay does, and replays those`, () => {
      const { store, object, late, kept, after } = belowFloor(lateMemory);
      for (const m of late) object.deliver(m);
      const want = late.slice(1).map((m) => m.id);
      assert.deepEqual(
        kept().map((row) => row.id),
        want,
      );
      assert.deepEqual(store.lateFor(after).cursors.length, lateMemory);
    });
  }

  it('takes a relay’s resend of one it kept as had: not sent live again, its arrival time kept', async () => {
    const { store, object, late, kept } = belowFloor(10);
    const [first] = late;
    assert.ok(first);
    const body = JSON.stringify(first);
    assert.equal(store.receive(first, body), true, 'the first copy is new');
    const before = kept();
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(store.receive(first, body), false, 'a resend is had');
    assert.deepEqual(kept(), before, 'its arrival time (and so its 10 minutes) unchanged');
    object.deliver(first);
    assert.deepEqual(kept(), before);
  });
});
