// Resumes from the relay's history on a topic object (subscriptions.ts), on the real hub store and
// heard log (resume-object.fixture.ts): two defects a review of 9a50e74 reproduced.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHybridClock } from '@anode/shared';
import { envelope, newStore, objectOn, resume } from './resume-object.fixture.ts';

// A message heard below the cursor a relay page already handed the client went out in a later
// page; a connection that drops meanwhile is not seen (what went into the dead socket counts as
// sent), so nothing marked it late, and the client's next resume, served from the ring, where it
// was an in-order row below its cursor, never sent it. Now a cursor a resume hands out is a
// reference for lateness (store.noteHanded), as everything a relay delivers is.
describe('a client whose connection drops during a resume from the relay’s history', () => {
  it('gets, on its next resume, what was heard below its cursor while it was away', async () => {
    const { store } = newStore(1000);
    const relay = createHybridClock('relay1');
    const after = relay.next(); // the client's cursor, older than the ring
    const H = [1, 2].map((i) => envelope(`H${i}`, relay.next()));
    const floor = relay.next();
    store.meta.set('floor', floor);
    const object = objectOn(store, 'eedge0');
    object.clock.observe(floor);
    // E: published at this edge (its clock a little behind the relay's: within MAX_CLOCK_SKEW_MS);
    // C, minted at the relay a moment later, is stored there when page 1 is read; E reaches the
    // relay after it (the same shape as late-replay.test.ts's "cut in pages").
    const E = envelope('E-published-here', object.clock.next());
    relay.observe(E.cursor);
    const C = envelope('C', relay.next());
    const R1 = envelope('R1', relay.next());
    let connected = true;
    let second: ReturnType<typeof resume> | undefined;
    let page = 0;
    const first = resume(
      store,
      object,
      after,
      8 * 1024 * 1024,
      {
        late: [],
        history: async () => {
          page += 1;
          if (page === 1) return { messages: [...H, C], next: C.cursor };
          // While page 2 is read: E is published here (ring, outbox, fanned out: heard), the client's
          // connection drops, and it reconnects at once from the newest cursor it got (C).
          object.accept(E);
          connected = false;
          for (const m of [C, R1]) object.deliver(m);
          second = resume(store, object, C.cursor, 8 * 1024 * 1024, { late: [] });
          store.outbox.remove([E.id]); // forwarded; the relay stored it (after C)
          return { messages: [R1], next: null };
        },
      },
      () => connected,
    );
    const one = await first.settled();
    const two = await second!.settled();
    // A third attempt, after the first resume ended: same answer.
    const three = await resume(store, object, C.cursor, 8 * 1024 * 1024, { late: [] }).settled();
    assert.ok(
      [...one.ids, ...two.ids].includes(E.id) && three.ids.includes(E.id),
      `${E.id} was acked and fanned out here; the client never got it`,
    );
  });
});

// The heard log counted as lost what the resume had already sent (or never would), and the
// resume refused its client's next resume, and others in the range, with cursor_expired.
describe('a resume on a busy topic whose heard log passes its bound after it sent what it heard', () => {
  it('leaves the client a resume from where it was left (no cursor_expired: nothing was lost)', async () => {
    const { store } = newStore(1000);
    const relay = createHybridClock('relay1');
    const after = relay.next();
    store.meta.set('floor', relay.next()); // `after` is older than the ring: relay history
    const budget = 100_000;
    const object = objectOn(store, 'e1', budget); // the object's log: MAX_SEND_BUFFER_BYTES
    const A = Array.from({ length: 60 }, (_, i) => envelope(`A${i}`, relay.next(), 1000));
    const B = Array.from({ length: 40 }, (_, i) => envelope(`B${i}`, relay.next(), 1000));
    let page = 0;
    const first = await resume(store, object, after, budget, {
      late: [],
      history: async () => {
        page += 1;
        // Live traffic reaches the relay and this object while each page is read.
        if (page === 1) {
          for (const m of A) object.deliver(m);
          return { messages: A, next: A.at(-1)!.cursor };
        }
        for (const m of B) object.deliver(m);
        return { messages: B, next: null };
      },
    }).settled();
    // Everything the log let go (A0…) had been sent in page 1.
    assert.ok(
      A.every((m) => first.ids.includes(m.id)),
      'all of A was sent',
    );
    const second = await resume(store, object, first.last, budget, { late: [] }).settled();
    // A third client, live until it dropped after A30, resumes from there.
    const third = await resume(store, object, A[30]!.cursor, budget, { late: [] }).settled();
    assert.match(second.frames.at(-1) ?? '', /"op":"subscribed"/, 'the next resume is served (the ring has B)');
    assert.match(third.frames.at(-1) ?? '', /"op":"subscribed"/, 'so is another client’s from a cursor in that range');
  });
});
