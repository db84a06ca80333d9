import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareCursors, createHybridClock, cursorFloor, RESUME_AHEAD_MS } from '@anode/shared';
import { envelope, newStore, objectOn, resume } from './resume-object.fixture.ts';

const BUFFER = 8 * 1024 * 1024;
/** A cursor a relay minted `ms` ahead of this object's wall clock. */
const aheadBy = (ms: number) => createHybridClock('relayahead0', () => Date.now() + ms).next();
const subscribedCursor = (frames: string[]) =>
  frames
    .map((f) => (f.startsWith('{') ? (JSON.parse(f) as { op: string; cursor?: string }) : { op: f }))
    .find((f) => f.op === 'subscribed')?.cursor;

// A client failing over to this edge with a cursor from a node whose clock is ahead of this
// object's: the resume answers `subscribed` with that cursor, and the client resumes from it
// after its next reconnect.
describe('edge object: a resume from a cursor ahead of its clock', () => {
  it('stamps the next publish here above it, so the next resume from it has that publish', async () => {
    const { store } = newStore(1000);
    const object = objectOn(store, 'eedge0');
    const ahead = aheadBy(3_000);
    const first = await resume(store, object, ahead, BUFFER).settled();
    assert.equal(subscribedCursor(first.frames), ahead);
    const minted = object.clock.next();
    assert.ok(compareCursors(minted, ahead) > 0, `${minted} sorts after ${ahead}`);
    object.accept(envelope('P1', minted));
    const again = await resume(store, object, ahead, BUFFER).settled();
    assert.deepEqual(again.ids, ['P1']);
  });

  it('marks no mesh message late: a client resuming from its own newest cursor gets none again', async () => {
    const { store } = newStore(1000);
    const object = objectOn(store, 'eedge0');
    await resume(store, object, aheadBy(4_900), BUFFER).settled();
    const relay = createHybridClock('relaynow0');
    const cursors = [];
    for (let n = 0; n < 30; n++) {
      const cursor = relay.next();
      object.deliver(envelope(`R${n}`, cursor));
      cursors.push(cursor);
    }
    assert.deepEqual((await resume(store, object, cursors.at(-1) as string, BUFFER).settled()).ids, []);
  });

  it('moves the clock at most RESUME_AHEAD_MS past the wall clock', async () => {
    const { store } = newStore(1000);
    const object = objectOn(store, 'eedge0');
    await resume(store, object, aheadBy(59_000), BUFFER).settled();
    const bound = cursorFloor(Date.now() + RESUME_AHEAD_MS + 1_000);
    assert.ok(compareCursors(object.clock.next(), bound) < 0);
  });

  it('sends a client resuming from its own newest cursor nothing again, whatever cursor a reader sent', async () => {
    const { store } = newStore(1000);
    const object = objectOn(store, 'eedge0');
    await resume(store, object, aheadBy(59_000), BUFFER).settled();
    const cursors = [];
    for (let n = 0; n < 20; n++) {
      const cursor = object.clock.next();
      object.accept(envelope(`P${n}`, cursor));
      cursors.push(cursor);
    }
    assert.deepEqual((await resume(store, object, cursors.at(-1) as string, BUFFER).settled()).ids, []);
  });
});
