import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AnodeError, compareCursors, createHybridClock, type Envelope, utf8Length } from '@anode/shared';
import type { HubStore } from './hub-store.ts';
import { mergeByCursor } from './pages.ts';
import { envelope, newStore, objectOn, olderThanRing, resume, wake } from './resume-object.fixture.ts';

// A resume's replay of late arrivals, on the hub's real store and SQLite (node:sqlite, the same
// SQLite a Durable Object runs, through resume-object.fixture.ts's stand-in for
// DurableObjectStorage, which counts the bodies it hands out), resumed with the fixture's
// `resume` (the clients a recording double). The same resumes run end to end on workerd in relay-late.test.ts and topic-hub.test.ts.

/** A topic's hub store whose ring holds `count` late arrivals of `data` each, minted before `after`, which follows them. */
function topicWithLateArrivals(count: number, data: string, ringSize = 100_000) {
  const clock = createHybridClock('relay1');
  const late: Envelope[] = [];
  for (let i = 0; i < count; i++) {
    const envelope = { id: `late-${i}`, topic: 'late.t', cursor: clock.next(), source: 's', ts: 1, data } as Envelope;
    late.push(envelope);
  }
  const after = clock.next();
  const { db, store, reads } = newStore(ringSize, (fresh) => {
    const insert = fresh.prepare('INSERT INTO ring (cursor, id, body, arrived_at, late) VALUES (?, ?, ?, ?, 1)');
    for (const envelope of late) insert.run(envelope.cursor, envelope.id, JSON.stringify(envelope), Date.now());
  });
  return { store, reads, late, after, db };
}

/** A resume from `after` on the topic's object (its heard log bounded by the budget, as hub-core's). */
const resumeOn = (store: HubStore, after: string, budget: number, link?: Parameters<typeof resume>[4]) =>
  resume(store, objectOn(store, 'eedge0', budget), after, budget, link);

describe('a resume replays the newest late arrivals that fit their share', () => {
  it('reads no more late rows than it sends, plus one: not every late row the topic holds', () => {
    // A review's repro: 1,000 late rows of 100 KB, an 8 MiB budget (a 4 MiB share): all 1,000
    // (100 MB) were read and parsed to send 41.
    const { store, reads, late, after } = topicWithLateArrivals(1_000, 'x'.repeat(100_000));
    reads.bodies = 0;
    const { frames, messages } = resumeOn(store, after, 8 * 1024 * 1024);
    const share = 4 * 1024 * 1024;
    const fit = Math.floor(share / utf8Length(JSON.stringify(late[0])));
    assert.equal(messages.length, fit);
    assert.deepEqual(
      messages.map((message) => message.id),
      late.slice(-fit).map((envelope) => envelope.id),
      'the newest that fit, oldest of them first',
    );
    assert.match(frames.at(-1) ?? '', /"op":"subscribed"/);
    assert.ok(reads.bodies <= fit + 1, `read ${reads.bodies} late bodies to send ${fit}`);
  });

  it('counts the share in UTF-8 bytes, as every limit does', () => {
    // '界' is 3 bytes in UTF-8 and 1 UTF-16 character: counted in characters, 3× the share went out.
    const { store, after } = topicWithLateArrivals(200, '界'.repeat(10_000));
    const budget = 400_000;
    const { messages } = resumeOn(store, after, budget);
    const sent = messages.reduce((bytes, { op: _op, ...envelope }) => bytes + utf8Length(JSON.stringify(envelope)), 0);
    assert.ok(messages.length > 0);
    assert.ok(sent <= budget / 2, `late arrivals took ${sent} bytes of a ${budget / 2}-byte share`);
    assert.ok(sent > budget / 2 - 31_000, `late arrivals took ${sent} bytes: less than the share allows`);
  });
});

describe('the warning of late arrivals skipped past their share', () => {
  it('counts each once, on a resume from the relay’s history, which chooses twice over the same rows', async (t) => {
    // A review: the object's unread rows were counted by both choices (skipped: 11 of 10).
    const { store, late, after } = topicWithLateArrivals(10, 'x'.repeat(100_000));
    // Three the relay holds that this object never heard of (minted at another node, same time).
    const fromRelay = late.slice(0, 3).map((envelope) => ({
      ...envelope,
      id: `relay-${envelope.id}`,
      cursor: envelope.cursor.replace('-relay1', '-relay0'),
    }));
    await new Promise((resolve) => setTimeout(resolve, 5));
    store.meta.set('floor', createHybridClock('relay1').next()); // the resume is older than the ring
    const warnings: string[] = [];
    t.mock.method(console, 'warn', (line: string) => void warnings.push(line));
    const { frames, messages } = await resumeOn(store, after, 1_000_000, { late: fromRelay }).settled();
    assert.match(frames.at(-1) ?? '', /"op":"subscribed"/);
    const skipped = late.length + fromRelay.length - messages.length;
    assert.ok(messages.length > 0 && skipped > 0, `${messages.length} sent`);
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.equal((JSON.parse(warnings[0] ?? '{}') as { skipped?: number }).skipped, skipped);
  });
});

describe('the warning of late arrivals skipped past their share, when none was', () => {
  it('stays quiet when the relay and this object hold the same late arrivals and all fit', async (t) => {
    // The relay and the object both heard these (the relay's `late` answer holds them too): each
    // is sent once, and the object's copy is not taken for one left unread.
    const { store, late, after } = topicWithLateArrivals(5, 'x'.repeat(1_000));
    await new Promise((resolve) => setTimeout(resolve, 5));
    store.meta.set('floor', createHybridClock('relay1').next());
    const warnings: string[] = [];
    t.mock.method(console, 'warn', (line: string) => void warnings.push(line));
    const { messages } = await resumeOn(store, after, 1_000_000, { late }).settled();
    assert.deepEqual(
      messages.map((message) => message.id),
      late.map((envelope) => envelope.id),
    );
    assert.deepEqual(warnings, []);
  });
});

/** A cursor above `after`: a ring floor that sends the resume to the relay's history. */
const above = (after: string) => {
  const clock = createHybridClock('relay1');
  clock.observe(after);
  return clock.next();
};

describe('the warning of late arrivals skipped past their share, when the relay and this object hold the same', () => {
  it('counts each skipped one once', async (t) => {
    // A review: 10 held by both, 4 fitting: the warning said 11 skipped (6 is right).
    const { store, late, after } = topicWithLateArrivals(10, 'x'.repeat(100_000));
    store.meta.set('floor', above(after));
    const warnings: string[] = [];
    t.mock.method(console, 'warn', (line: string) => void warnings.push(line));
    const { frames, messages } = await resumeOn(store, after, 1_000_000, { late }).settled();
    assert.match(frames.at(-1) ?? '', /"op":"subscribed"/);
    assert.ok(messages.length > 0 && messages.length < late.length, `${messages.length} sent`);
    assert.equal((JSON.parse(warnings[0] ?? '{}') as { skipped?: number }).skipped, late.length - messages.length);
  });
});

describe('a late arrival larger than the late share', () => {
  it('is replayed when it is the only one and fits the whole send buffer', () => {
    // A review: a 5 MiB message (MAX_MESSAGE_BYTES 5 MiB is valid) against the default 8 MiB
    // buffer's 4 MiB share was skipped every time, though nothing else was replayed.
    const { store, late, after } = topicWithLateArrivals(1, 'x'.repeat(5 * 1024 * 1024));
    const { frames, messages } = resumeOn(store, after, 8 * 1024 * 1024);
    assert.deepEqual(
      messages.map((message) => message.id),
      late.map((envelope) => envelope.id),
    );
    assert.match(frames.at(-1) ?? '', /"op":"subscribed"/);
  });

  it('still takes no more than the share beside it', () => {
    const { store, late, after } = topicWithLateArrivals(3, 'x'.repeat(5 * 1024 * 1024));
    const { messages } = resumeOn(store, after, 8 * 1024 * 1024);
    assert.deepEqual(
      messages.map((message) => message.id),
      late.slice(-1).map((envelope) => envelope.id),
      'the newest alone',
    );
  });
});

describe('a resume the relay refuses as cursor_expired', () => {
  it('is refused before any message is sent, the late arrivals included (PROTOCOL.md)', async () => {
    // A review: the late arrivals went out first, then the refusal.
    const { store, late, after, db } = topicWithLateArrivals(3, 'x'.repeat(100));
    db.exec('DELETE FROM ring');
    store.meta.set('floor', above(after));
    const { frames } = await resumeOn(store, after, 1_000_000, {
      late,
      history: async () => {
        throw new AnodeError('cursor_expired', `cursor ${after} is older than this node keeps`);
      },
    }).settled();
    assert.deepEqual(frames, [`error cursor_expired cursor ${after} is older than this node keeps`]);
  });

  it('sends the late arrivals before the first page once the relay answers it', async () => {
    const { store, late, after, db } = topicWithLateArrivals(3, 'x'.repeat(100));
    db.exec('DELETE FROM ring');
    store.meta.set('floor', above(after));
    const page = [{ ...(late[0] as Envelope), id: 'page-1', cursor: above(after) }];
    const { messages, frames } = await resumeOn(store, after, 1_000_000, {
      late,
      history: async (frame) => (frame.after === after ? { messages: page, next: null } : { messages: [], next: null }),
    }).settled();
    assert.deepEqual(
      messages.map((message) => message.id),
      [...late.map((envelope) => envelope.id), 'page-1'],
      frames.join('\n'),
    );
  });
});

describe('messages that arrive while a resume pages the relay’s history', () => {
  it('are sent before `subscribed` (as a relay’s resume buffer), once, and only those above `after`', async () => {
    const { store, late, after, db } = topicWithLateArrivals(1, 'x');
    db.exec('DELETE FROM ring');
    store.meta.set('floor', above(after));
    const object = objectOn(store, 'eedge0', 1_000_000);
    const arrival = { ...(late[0] as Envelope), id: 'arrived', cursor: above(after) };
    // Fanned out at the object (heard) during the resume: the log alone, not the store.
    const fanOut = (m: Envelope) => object.heard.add(m, JSON.stringify(m));
    const { frames, messages } = await resume(store, object, after, 1_000_000, {
      late: [],
      history: async () => {
        fanOut(arrival);
        fanOut(late[0] as Envelope); // at or below `after`: not this buffer's
        return { messages: [], next: null };
      },
    }).settled();
    assert.deepEqual(
      messages.map((message) => message.id),
      ['arrived'],
    );
    assert.match(frames.at(-1) ?? '', /"op":"subscribed"/);
  });

  it('close the socket as a slow consumer when more arrive than the send buffer holds', async () => {
    const { store, late, after, db } = topicWithLateArrivals(1, 'x');
    db.exec('DELETE FROM ring');
    store.meta.set('floor', above(after));
    const object = objectOn(store, 'eedge0', 1_000_000);
    const { frames } = await resume(store, object, after, 1_000_000, {
      late: [],
      history: async () => {
        for (let i = 0; i < 3; i++) {
          const arrival = { ...(late[0] as Envelope), id: `big-${i}`, cursor: above(after), data: 'y'.repeat(400_000) };
          object.heard.add(arrival, JSON.stringify(arrival));
        }
        return { messages: [], next: null };
      },
    }).settled();
    assert.deepEqual(frames, ['close slow_consumer']);
  });
});

describe('a resume from the relay’s history cut off (4001) after hearing a message it had not sent', () => {
  // A review: what a resume heard went out after every page and the whole ring, so a cut before
  // the end left the client above it. Its next resume, served from the ring (which had it in
  // order, not late) or the relay's pages after its cursor, never sent it.
  // What each cut is about (a mutation run removing it fails that case):
  // - pages: each relay page is merged by cursor with what was heard up to its last cursor
  //   (subscriptions.ts fromRelay): E goes out before C, in the cut resume. Without that merge
  //   E is left below the client and only end(false)'s markLate saves it (the two removed: lost).
  // - ring: the end (store.since) is merged by cursor with what was heard (sendMissed): the page
  //   stops below E and C, so they go out between the page and the ring's R1. Without that merge
  //   they followed the ring, past the cut, and only markLate saves them.
  // - overflow: the log let E go before it was read (more arrived than the send buffer holds):
  //   the resume is closed before its next page (fromRelay's held.lost()), so it hands out
  //   nothing above E; sending the page first left the client above a message it never got.
  for (const cut of ['pages', 'overflow', 'ring'] as const) {
    it(`leaves it to the client’s next resume from where it was left: cut in ${cut}`, async () => {
      const size = JSON.stringify(envelope('C', createHybridClock('relay1').next())).length; // C's, below
      const budget = Math.floor(size * (cut === 'overflow' ? 2.5 : 5.5));
      // The client's cursor, older than the ring (of 3); H1 and H2 stored at the relay long before.
      const { store, object, relay, after, older } = olderThanRing({ ringSize: 3, logBytes: budget });
      // E: published at this edge during the resume; C, minted elsewhere a moment later, is at
      // the relay when the page is read, E not yet.
      const published = envelope('E-published-here', object.clock.next());
      relay.observe(published.cursor);
      const minted = envelope('C', relay.next());
      const later = [1, 2, 3].map((i) => envelope(`R${i}`, relay.next()));
      const atRelay = [...older, published, minted, ...later];
      let pass = 0;
      const first = await resume(store, object, after, budget, {
        late: [],
        history: async () => {
          pass += 1;
          if (pass === 1) {
            object.accept(published);
            store.outbox.remove([published.id]); // forwarded and acked: the relay stored it just after the page
            for (const m of [minted, ...later]) object.deliver(m); // the ring of 3 lets E (and C) go
            // In `ring`, C too reached the relay after the page was read: the page stops below E.
            return {
              messages: cut === 'overflow' ? [minted] : cut === 'ring' ? older : [...older, minted],
              next: null,
            };
          }
          // The second pass (the floor moved) reads after C: E's cursor is below it, in no page.
          return { messages: cut === 'pages' ? later : [], next: null };
        },
      }).settled();
      assert.equal(first.frames.at(-1), 'close slow_consumer', 'cut off (4001)');
      const order = (r: { frames: string[] }) =>
        JSON.stringify(r.frames.map((f) => (f.startsWith('{"op":"msg"') ? (JSON.parse(f) as Envelope).id : f)));
      const cursors = first.messages.map((m) => m.cursor);
      assert.deepEqual(cursors, [...cursors].sort(compareCursors), `in cursor order: ${order(first)}`);
      if (cut === 'overflow') {
        // Closed before the page: nothing handed out above E, which the log let go unread.
        assert.deepEqual(first.ids, [], order(first));
      } else {
        // Below where it left the client, E went out in this resume, as a relay's resume flushes
        // what it buffered below each message it sends (not only as a late arrival next time).
        assert.ok(compareCursors(published.cursor, first.last) < 0, order(first));
        assert.ok(first.ids.includes(published.id), `${published.id} below the cut, not sent: ${order(first)}`);
      }
      // The client library resumes from the newest cursor it got; the relay has everything now.
      const second = await resume(store, object, first.last, size * 10, {
        late: [],
        history: async (frame) => ({
          messages: atRelay.filter((m) => m.cursor > (frame.after ?? '')),
          next: null,
        }),
      }).settled();
      assert.match(second.frames.at(-1) ?? '', /"op":"subscribed"/);
      assert.ok(
        [...first.ids, ...second.ids].includes(published.id),
        `${published.id} was acked and fanned out here, and neither resume sent it: ${order(first)} ${order(second)}`,
      );
    });
  }
});

describe('a message minted below a cursor a resume from the relay’s history handed out, heard here after it', () => {
  // 4e3efc5: a relay page can hand a client a cursor above everything this object holds
  // (noteHanded keeps the newest handed out); X, minted elsewhere before it and reaching this
  // object only later, went into the ring in order, and the client's next resume from that
  // cursor, served from the ring, never sent it.
  // - after the resume: X heard once the resume ended (noteHanded alone marks it late);
  // - after the resume and a wake: the object evicted and woken in between (saveHanded kept the
  //   cursor in meta 'handed');
  // - during the resume: heard while it paged, below what it had handed, then cut (noteHanded and
  //   end(false)'s markLate both mark it: either alone keeps it).
  for (const when of ['after the resume', 'after the resume and a wake', 'during the resume'] as const) {
    it(`is replayed to the client’s next resume from that cursor: heard ${when}`, async () => {
      const size = JSON.stringify(envelope('X', createHybridClock('relay1').next())).length;
      const budget = Math.floor(size * 3.5); // H1, H2 and P1 go out; the next is cut (4001)
      const { db, store, object, relay, after, older } = olderThanRing({ logBytes: budget });
      // X is minted elsewhere before P1..P3 and reaches the relay after its page was read; this
      // object never heard of any of them (its link was down) until X comes.
      const minted = envelope('X', relay.next());
      const [p1, p2, p3] = [1, 2, 3].map((i) => envelope(`P${i}`, relay.next())) as [Envelope, Envelope, Envelope];
      const first = await resume(store, object, after, budget, {
        late: [],
        history: async (frame) => {
          if (when !== 'during the resume') return { messages: [...older, p1, p2, p3], next: null };
          if (frame.after === after) return { messages: [...older, p1], next: p1.cursor };
          object.deliver(minted); // while the next page is asked for, below P1, handed already
          return { messages: [p2, p3], next: null };
        },
      }).settled();
      const ids = (r: { frames: string[] }) =>
        JSON.stringify(r.frames.map((f) => (f.startsWith('{"op":"msg"') ? (JSON.parse(f) as Envelope).id : f)));
      assert.equal(first.frames.at(-1), 'close slow_consumer', `cut off (4001): ${ids(first)}`);
      assert.equal(first.last, p1.cursor, ids(first));
      assert.ok(compareCursors(minted.cursor, p1.cursor) < 0);
      assert.ok(!first.ids.includes(minted.id), ids(first));
      // Evicted and woken: a new store and object on the same database.
      const [now, on] =
        when === 'after the resume and a wake'
          ? (() => {
              const woken = wake(db);
              return [woken, objectOn(woken, 'eedge0', budget)] as const;
            })()
          : ([store, object] as const);
      if (when !== 'during the resume') on.deliver(minted);
      // The client resumes from P1, above the ring's floor: served from the ring, not the relay.
      const second = await resume(now, on, first.last, size * 10, {
        late: [],
        history: async () => assert.fail('served from the ring'),
      }).settled();
      assert.match(second.frames.at(-1) ?? '', /"op":"subscribed"/, ids(second));
      assert.deepEqual(second.ids, [minted.id], ids(second));
    });
  }
});

describe('mergeByCursor', () => {
  it('stops both sources when it is stopped early, in either order', () => {
    for (const descending of [false, true]) {
      let closed = 0;
      const source = (cursors: string[]) =>
        (function* () {
          try {
            for (const cursor of cursors) yield { envelope: { cursor } };
          } finally {
            closed += 1;
          }
        })();
      const order = (cursors: string[]) => (descending ? [...cursors].reverse() : cursors);
      const merged = mergeByCursor(
        order(['1', '3', '5']).map((cursor) => ({ envelope: { cursor } })),
        source(order(['2', '4', '6'])),
        descending,
      );
      const both = mergeByCursor(source(order(['1', '3', '5'])), source(order(['2', '4', '6'])), descending);
      assert.deepEqual(
        [...merged].map((m) => m.envelope.cursor),
        order(['1', '2', '3', '4', '5', '6']),
      );
      closed = 0;
      for (const message of both) {
        assert.equal(message.envelope.cursor, descending ? '6' : '1');
        break;
      }
      assert.equal(closed, 2, `descending ${descending}: both sources stopped`);
    }
  });
});
