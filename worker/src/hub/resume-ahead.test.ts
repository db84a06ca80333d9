import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareCursors, createHybridClock, cursorFloor, MAX_CLOCK_SKEW_MS } from '@anode/shared';
import { envelope, newStore, objectOn, resume } from './resume-object.fixture.ts';

const BUFFER = 8 * 1024 * 1024;
const subscribedCursor = (frames: string[]) =>
  frames
    .map((f) => (f.startsWith('{') ? (JSON.parse(f) as { op: string; cursor?: string }) : { op: f }))
    .find((f) => f.op === 'subscribed')?.cursor;

// A client failing over to this edge with a cursor from a node whose clock is ahead of this
// object's: the resume answers `subscribed` with that cursor, and the client resumes from it
// after its next reconnect. What this object accepted in between was minted below it.
describe('edge object: a resume from a cursor ahead of its clock', () => {
  it('replays a publish accepted here in between to the next resume from that cursor', async () => {
    const { store } = newStore(1000);
    const object = objectOn(store, 'eedge0');
    const ahead = createHybridClock('relayahead0', () => Date.now() + 5_000).next();
    const first = await resume(store, object, ahead, BUFFER).settled();
    assert.equal(subscribedCursor(first.frames), ahead);
    const minted = object.clock.next();
    assert.ok(compareCursors(minted, ahead) < 0, 'minted below the cursor resumed from');
    object.accept(envelope('P1', minted));
    const again = await resume(store, object, ahead, BUFFER).settled();
    assert.deepEqual(again.ids, ['P1']);
  });

  it('does not move the clock, in memory or after a wake', async () => {
    const { store } = newStore(1000);
    const object = objectOn(store, 'eedge0');
    const ahead = createHybridClock('relayahead0', () => Date.now() + 59_000).next();
    await resume(store, object, ahead, BUFFER).settled();
    const near = cursorFloor(Date.now() + 1_000);
    assert.ok(compareCursors(object.clock.next(), near) < 0);
    assert.ok(compareCursors(objectOn(store, 'eedge0').clock.next(), near) < 0, 'after a wake');
  });

  it('holds nothing back for a cursor further ahead than any node’s clock may be', async () => {
    const { store } = newStore(1000);
    const object = objectOn(store, 'eedge0');
    const far = createHybridClock('relayahead0', () => Date.now() + MAX_CLOCK_SKEW_MS + 60_000).next();
    await resume(store, object, far, BUFFER).settled();
    object.accept(envelope('P1', object.clock.next()));
    assert.deepEqual((await resume(store, object, far, BUFFER).settled()).ids, []);
  });
});
