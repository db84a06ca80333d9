// Resumes from the relay's history on a topic object (subscriptions.ts), on the real hub store and
// heard log (resume-object.fixture.ts): two defects a review of 9a50e74 reproduced.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHybridClock } from '@anode/shared';
import { envelope, newStore, objectOn, olderThanRing, resume, wake } from './resume-object.fixture.ts';

// A message heard below the cursor a relay page already handed the client went out in a later
// page; a connection that drops meanwhile is not seen (what went into the dead socket counts as
// sent), so nothing marked it late, and the client's next resume, served from the ring, where it
// was an in-order row below its cursor, never sent it. Now a cursor a resume hands out is a
// reference for lateness (store.noteHanded), as everything a relay delivers is.
describe('a client whose connection drops during a resume from the relay’s history', () => {
  it('gets, on its next resume, what was heard below its cursor while it was away', async () => {
    const { store, object, relay, after, older: H } = olderThanRing(); // the client's cursor, older than the ring
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

// A review of 4e3efc5: a cursor a resume hands out, from a relay whose clock runs ahead, made every
// message published here in the next seconds late (in order as they were), and they filled the
// late share of later resumes ahead of a late arrival those had missed. The object's clock now
// moves past what it hands out.
describe('a relay cursor handed out ahead of this object’s clock', () => {
  it('leaves later publishes here in order, so a real late arrival still has the share', async () => {
    const { store } = newStore(1000);
    const relay = createHybridClock('relay1', () => Date.now() + 30_000); // 30 s ahead (the limit is 60)
    const object = objectOn(store, 'e1');
    const old = object.clock.next();
    store.meta.set('floor', object.clock.next());
    const handed = envelope('R', relay.next()); // at the relay; the link is down, not here yet
    await resume(store, object, old, 20_000, {
      late: [],
      history: async () => ({ messages: [handed], next: null }),
    }).settled();
    const published = Array.from({ length: 20 }, (_, i) => envelope(`P${i}`, object.clock.next(), 1000));
    const missed = envelope('L-late', published[5]!.cursor.replace(/-e1$/, '-e2'), 1000); // another edge, same instant
    for (const m of published) object.accept(m); // a live client gets them all, then drops
    object.deliver(missed); // a real late arrival: below the last one the client had
    const again = await resume(store, object, published.at(-1)!.cursor, 20_000, { late: [] }).settled();
    assert.ok(again.ids.includes(missed.id), `the late arrival it missed was not replayed: ${again.ids.join(',')}`);
  });
});

// A review of a434305: the clock moved past a handed cursor in memory only. Woken after an
// eviction, it was seeded from its own last publish and its ring, not from `handed` (kept in
// meta), so the next publishes here were stamped below it, each one late, and they took the late
// share of later resumes again, ahead of a late arrival those had missed.
describe('a relay cursor handed out ahead of this object’s clock, then an eviction', () => {
  it('leaves publishes here after the wake in order, so a real late arrival still has the share', async () => {
    const { db, store } = newStore(1000);
    const relay = createHybridClock('relay1', () => Date.now() + 30_000); // 30 s ahead (the limit is 60)
    const object = objectOn(store, 'e1');
    const old = object.clock.next();
    store.meta.set('floor', object.clock.next());
    const handed = envelope('R', relay.next()); // at the relay; the link is down, not here yet
    await resume(store, object, old, 20_000, {
      late: [],
      history: async () => ({ messages: [handed], next: null }),
    }).settled();
    const woken = wake(db);
    const object2 = objectOn(woken, 'e1');
    const published = Array.from({ length: 20 }, (_, i) => envelope(`P${i}`, object2.clock.next(), 1000));
    const missed = envelope('L-late', published[5]!.cursor.replace(/-e1$/, '-e2'), 1000); // another edge, same instant
    for (const m of published) object2.accept(m); // a live client gets them all, then drops
    object2.deliver(missed); // a real late arrival: below the last one the client had
    const again = await resume(woken, object2, published.at(-1)!.cursor, 20_000, { late: [] }).settled();
    assert.ok(again.ids.includes(missed.id), `the late arrival it missed was not replayed: ${again.ids.join(',')}`);
  });
});

// The same review: `handed` was kept in memory only, so once the object was evicted and woken, a
// message arriving below a cursor handed out before was an ordinary in-order row again, and the
// client's resume from that cursor, served from the ring, never sent it.
describe('a cursor handed out before the object was evicted', () => {
  it('still marks what arrives below it late after the wake', async () => {
    const { db, store, object, relay, after, older, floor } = olderThanRing({ relayNow: () => Date.now() + 5_000 }); // 5 s ahead
    const handed = envelope('C', relay.next()); // at the relay, on its way over the link (down)
    let connected = true;
    let page = 0;
    const first = await resume(
      store,
      object,
      after,
      8 * 1024 * 1024,
      {
        late: [],
        history: async () => {
          page += 1;
          if (page === 1) return { messages: [...older, handed], next: handed.cursor };
          connected = false; // the client drops; it resumes from C
          return { messages: [], next: null };
        },
      },
      () => connected,
    ).settled();
    assert.ok(first.ids.includes(handed.id));
    // Evicted and woken: a new store and object (and clock) on the same database.
    const woken = wake(db);
    const object2 = objectOn(woken, 'eedge0');
    // Minted at another edge above the floor and below C, as the relay runs ahead (not here: this
    // object's clock is seeded past C on the wake); it comes over the link first.
    const elsewhere = createHybridClock('eother');
    elsewhere.observe(floor);
    const published = envelope('E-published-elsewhere', elsewhere.next());
    object2.deliver(published);
    object2.deliver(handed); // the link is back
    const again = await resume(woken, object2, handed.cursor, 8 * 1024 * 1024, { late: [] }).settled();
    assert.ok(again.ids.includes(published.id), `${published.id} arrived after C; the resume from C never sent it`);
  });
});

// A late arrival (minted elsewhere before the client's cursor, so in no page of the relay's history
// after it) that reaches the object while a resume pages the relay's history is below the ring's
// floor: it used to widen the expired range, and the resume, having sent its pages, ended in
// `cursor_expired` (PROTOCOL.md: refused before any message, or no refusal). It is kept as a late
// arrival now, and the resume replays it, as a relay's does.
describe('a late arrival heard while a resume pages the relay’s history', () => {
  it('is replayed before `subscribed`, not refused as cursor_expired after the pages went out', async () => {
    const { store, object, after, older: pages, floor } = olderThanRing(); // the client's cursor, older than the ring
    // Minted at relay0 just before `after` (same instant, a lower node id): the client never had it.
    const missed = envelope('L-late', after.replace(/-relay1$/, '-relay0'));
    const resumed = await resume(store, object, after, 8 * 1024 * 1024, {
      late: [],
      history: async () => {
        object.deliver(missed); // below `after` (and the floor): in no page
        return { messages: pages, next: null };
      },
    }).settled();
    assert.match(resumed.frames.at(-1) ?? '', /"op":"subscribed"/, resumed.frames.at(-1));
    assert.deepEqual(resumed.ids.sort(), ['H1', 'H2', 'L-late']);
    // A client that left holding a cursor above it, handed out before it arrived, gets it too.
    const later = await resume(store, object, floor, 8 * 1024 * 1024, { late: [] }).settled();
    assert.match(later.frames.at(-1) ?? '', /"op":"subscribed"/, later.frames.at(-1));
    assert.ok(later.ids.includes(missed.id), `not replayed: ${later.ids.join(',')}`);
  });
});
