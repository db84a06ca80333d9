import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHybridClock, type Envelope, type MessageStore, type RetentionPolicy } from '@anode/shared';

/**
 * The MessageStore compliance suite: every adapter runs these same cases (embedded SQLite in
 * its unit tests, Cassandra against a real cluster). An adapter passes a fixture that opens a
 * store on fresh storage, or reopens the previous one to prove durability.
 */
export interface StoreFixture {
  open(retention: RetentionPolicy, options?: { reopen?: boolean }): Promise<MessageStore>;
  cleanup(): Promise<void>;
}

export interface ComplianceOptions {
  /** The adapter enforces `maxMessages` per topic in `sweep` (Cassandra uses TTLs instead). */
  countRetention: boolean;
  /** The adapter enforces `maxAgeMs` by cursor time in `sweep`. */
  ageRetention: boolean;
}

const KEEP_ALL: RetentionPolicy = { maxAgeMs: 0, maxMessages: 0 };

export function messageStoreCompliance(
  name: string,
  makeFixture: () => Promise<StoreFixture>,
  options: ComplianceOptions,
): void {
  describe(`MessageStore compliance: ${name}`, () => {
    let fixture: StoreFixture;
    let store: MessageStore;
    let time = 1_700_000_000_000;
    const clock = createHybridClock('compliance', () => time);
    const make = (topic: string, over: Partial<Envelope> = {}): Envelope => {
      const cursor = clock.next();
      return { id: `id-${cursor}`, topic, cursor, source: 'src', ts: time, data: { n: cursor }, ...over };
    };

    before(async () => {
      fixture = await makeFixture();
    });
    after(async () => {
      await fixture?.cleanup();
    });

    it('returns history after a cursor in ascending cursor order, honouring limit', async () => {
      store = await fixture.open(KEEP_ALL);
      const batch = Array.from({ length: 25 }, () => make('h.one'));
      const results = await store.append(batch);
      assert.deepEqual(
        results.map((r) => r.inserted),
        batch.map(() => true),
      );
      const all = await store.history('h.one', { limit: 100 });
      assert.deepEqual(all, batch);
      const page = await store.history('h.one', { after: batch[9]?.cursor, limit: 5 });
      assert.deepEqual(page, batch.slice(10, 15));
      assert.deepEqual(await store.history('h.one', { limit: 0 }), []);
      assert.deepEqual(await store.history('h.one', { after: batch[24]?.cursor, limit: 10 }), []);
      assert.deepEqual(await store.history('h.none', { limit: 10 }), []);
    });

    it('keeps topics apart and lists the topics it holds', async () => {
      const a = make('iso.a');
      const b = make('iso.b');
      await store.append([a, b]);
      assert.deepEqual(await store.history('iso.a', { limit: 10 }), [a]);
      assert.deepEqual(await store.history('iso.b', { limit: 10 }), [b]);
      const topics = await store.topics();
      assert.ok(topics.includes('iso.a') && topics.includes('iso.b') && topics.includes('h.one'));
    });

    it('cuts a page by maxBytes before the message that would pass it, holding one message always', async () => {
      // A string of n - 2 characters serializes to n bytes (with its quotes).
      const sizes = [1_000, 1_000, 1_000, 3_000, 500, 500, 10_000, 100];
      const batch = sizes.map((n) => make('bytes.t', { data: 'x'.repeat(n - 2) }));
      await store.append(batch);
      const pages: Envelope[][] = [];
      for (let after: string | undefined; ;) {
        const page = await store.history('bytes.t', { after, limit: 100, maxBytes: 3_500 });
        if (page.length === 0) break;
        pages.push(page);
        after = page.at(-1)?.cursor;
      }
      assert.deepEqual(
        pages.map((page) => page.map((m) => (m.data as string).length + 2)),
        // 3,000 + 3,000 passes; 3,000 + 500 is exactly the budget; 10,000 alone is over it but a
        // page holds one message always.
        [[1_000, 1_000, 1_000], [3_000, 500], [500], [10_000], [100]],
      );
      assert.deepEqual(pages.flat(), batch, 'paged on, every message once, in order');
      assert.deepEqual(await store.history('bytes.t', { limit: 2, maxBytes: 1e9 }), batch.slice(0, 2), 'limit too');
      assert.deepEqual(await store.history('bytes.t', { limit: 0, maxBytes: 1e9 }), []);
      // Bytes are UTF-8: "€" is 3 bytes (1 UTF-16 unit), so two 302-byte strings pass 500.
      const euros = [make('bytes.utf8', { data: '€'.repeat(100) }), make('bytes.utf8', { data: '€'.repeat(100) })];
      await store.append(euros);
      assert.deepEqual(await store.history('bytes.utf8', { limit: 10, maxBytes: 500 }), euros.slice(0, 1));
      assert.deepEqual(await store.history('bytes.utf8', { limit: 10, maxBytes: 604 }), euros);
    });

    it('round-trips any JSON data', async () => {
      const values = [null, 0, -1.5, 'text ✓ 中文', true, [1, [2, { x: null }]], { nested: { deep: ['a'] } }];
      const messages = values.map((data) => make('json.round', { data }));
      await store.append(messages);
      const got = await store.history('json.round', { limit: 100 });
      assert.deepEqual(
        got.map((m) => m.data),
        values,
      );
    });

    it('is idempotent by id, within a batch and across batches', async () => {
      const first = make('dup.t');
      const again = { ...first, cursor: clock.next(), data: 'different' };
      const [r1] = await store.append([first]);
      assert.equal(r1?.inserted, true);
      const [r2, r3] = await store.append([again, { ...again }]);
      assert.equal(r2?.inserted, false);
      assert.equal(r3?.inserted, false);
      assert.deepEqual(r2?.envelope, first, 'the stored copy is returned, with its original cursor');
      const fresh = make('dup.t');
      const [r4, r5] = await store.append([fresh, { ...fresh, cursor: clock.next() }]);
      assert.equal(r4?.inserted, true);
      assert.equal(r5?.inserted, false);
      assert.deepEqual(await store.history('dup.t', { limit: 10 }), [first, fresh]);
    });

    it('keeps the latest message per source by ts, never letting an older ts win', async () => {
      const topic = 'latest.t';
      const newer = make(topic, { source: 'a', ts: 2_000 });
      const older = make(topic, { source: 'a', ts: 1_000 });
      const other = make(topic, { source: 'b', ts: 500 });
      await store.append([newer]);
      await store.append([older, other]);
      let latest = await store.latest(topic);
      assert.deepEqual(latest.a, newer);
      assert.deepEqual(latest.b, other);
      const newest = make(topic, { source: 'a', ts: 3_000 });
      await store.append([newest]);
      latest = await store.latest(topic);
      assert.deepEqual(latest.a, newest);
      const tieLow = make(topic, { source: 'c', ts: 10, id: 'tie-a' });
      const tieHigh = make(topic, { source: 'c', ts: 10, id: 'tie-b' });
      await store.append([tieHigh]);
      await store.append([tieLow]);
      assert.equal((await store.latest(topic)).c?.id, 'tie-b', 'equal ts: the greater id wins on every replica');
      assert.deepEqual(await store.latest('latest.none'), {});
    });

    it('keys latest by any source name, even ones that name object internals', async () => {
      const topic = 'latest.names';
      const sources = ['__proto__', 'constructor', 'toString'];
      await store.append(sources.map((source) => make(topic, { source })));
      const latest = await store.latest(topic);
      assert.deepEqual(Object.keys(latest).sort(), sources);
      assert.equal(Object.getOwnPropertyDescriptor(latest, '__proto__')?.value.source, '__proto__');
    });

    it('pages latest by source name: at most `limit`, cut at `maxBytes`, every source once', async () => {
      const topic = 'latest.pages';
      // 30 sources of 10 KB each, published out of name order; a name that sorts as an integer too.
      const names = Array.from({ length: 29 }, (_, i) => `s-${String((i * 7) % 29).padStart(2, '0')}`).concat('42');
      const blob = 'x'.repeat(10_000);
      await store.append(names.map((source) => make(topic, { source, data: blob })));
      const sorted = [...names].sort();
      const readAll = async (limit: number, maxBytes?: number) => {
        const pages: string[][] = [];
        let after: string | undefined;
        for (let n = 0; n < 100; n++) {
          const page = await store.latest(topic, { after, limit, maxBytes });
          const got = Object.keys(page).sort();
          if (got.length === 0) break;
          for (const source of got) assert.equal(page[source]?.source, source);
          pages.push(got);
          after = got.at(-1);
        }
        return pages;
      };
      const byCount = await readAll(7);
      assert.deepEqual(
        byCount.map((p) => p.length),
        [7, 7, 7, 7, 2],
      );
      assert.deepEqual(byCount.flat(), sorted, 'in source order, each source once');
      const byBytes = await readAll(1000, 25_000);
      assert.ok(
        byBytes.every((p) => p.length === 2 || p === byBytes.at(-1)),
        `two 10 KB sources fit in 25,000 bytes: ${byBytes.map((p) => p.length)}`,
      );
      assert.deepEqual(byBytes.flat(), sorted, 'cut by bytes: still each source once');
      const one = await store.latest(topic, { limit: 1000, maxBytes: 1 });
      assert.deepEqual(Object.keys(one), [sorted[0]], 'the first source always fits');
      assert.deepEqual(await store.latest(topic, { after: sorted.at(-1), limit: 10 }), {}, 'nothing after the last');
      assert.deepEqual(Object.keys(await store.latest(topic)).sort(), sorted, 'without a query: every source');
    });

    it('takes large batches in one append', async () => {
      const batch = Array.from({ length: 500 }, () => make('batch.big'));
      const results = await store.append(batch);
      assert.equal(results.filter((r) => r.inserted).length, 500);
      const got = await store.history('batch.big', { limit: 1000 });
      assert.equal(got.length, 500);
      assert.deepEqual(
        got.map((m) => m.id),
        batch.map((m) => m.id),
      );
    });

    it('with pipelinedAppends, answers an overlapping append only after the one before it', async (t) => {
      if (store.pipelinedAppends !== true) {
        // Not a skip: the store promises nothing here, and the writer never overlaps its appends.
        t.diagnostic('one append at a time (pipelinedAppends not declared)');
        return;
      }
      const first = Array.from({ length: 500 }, () => make('pipe.first'));
      const second = [make('pipe.second')];
      const firstDone = store.append(first);
      await store.append(second);
      assert.equal(
        (await store.history('pipe.first', { limit: 1000 })).length,
        500,
        'the first append committed before the second answered',
      );
      assert.equal((await firstDone).filter((r) => r.inserted).length, 500);
    });

    it('keeps what it acknowledged across a close and reopen', async () => {
      const kept = make('durable.t');
      await store.append([kept]);
      await store.close();
      store = await fixture.open(KEEP_ALL, { reopen: true });
      assert.deepEqual(await store.history('durable.t', { limit: 10 }), [kept]);
      assert.deepEqual((await store.latest('durable.t')).src, kept);
      assert.equal((await store.health()).ok, true);
    });

    it('reports no trimming for a topic retention never touched', async () => {
      assert.equal(await store.trimmedThrough('h.one'), undefined);
      assert.equal(await store.trimmedThrough('never.seen'), undefined);
      assert.deepEqual(await store.trimmedTopics?.(), new Map());
      await store.close();
    });

    if (options.countRetention) {
      it('trims a topic to maxMessages and records where it trimmed', async () => {
        const trimmed = await fixture.open({ maxAgeMs: 0, maxMessages: 4 }, { reopen: true });
        try {
          const batch = Array.from({ length: 10 }, () => make('ret.count'));
          await trimmed.append(batch);
          const deleted = await trimmed.sweep(time);
          assert.ok(deleted >= 6, `deleted ${deleted}`);
          assert.deepEqual(await trimmed.history('ret.count', { limit: 100 }), batch.slice(6));
          assert.equal(await trimmed.trimmedThrough('ret.count'), batch[5]?.cursor);
          assert.deepEqual((await trimmed.latest('ret.count')).src, batch[9], 'the count limit leaves latest');
          assert.equal(await trimmed.sweep(time), 0, 'a second sweep finds nothing more');
        } finally {
          await trimmed.close();
        }
      });

      it('gives a page the trim mark it was read under, when it gives one at all', async () => {
        const trimmed = await fixture.open({ maxAgeMs: 0, maxMessages: 4 }, { reopen: true });
        try {
          const batch = Array.from({ length: 10 }, () => make('ret.marked'));
          await trimmed.append(batch);
          const marks: (string | undefined)[] = [];
          const onTrimmedThrough = (mark: string | undefined) => void marks.push(mark);
          const before = await trimmed.history('ret.marked', { after: batch[1]?.cursor, limit: 3, onTrimmedThrough });
          assert.deepEqual(before, batch.slice(2, 5), 'the same page as without it');
          await trimmed.sweep(time);
          const page = await trimmed.history('ret.marked', { after: batch[1]?.cursor, limit: 3, onTrimmedThrough });
          assert.deepEqual(page, batch.slice(6, 9));
          await trimmed.history('ret.marked', { after: batch[1]?.cursor, limit: 0, onTrimmedThrough });
          // Optional in the port (Cassandra cannot): a store that gives it, gives it once per page.
          if (marks.length > 0) assert.deepEqual(marks, [undefined, batch[5]?.cursor, batch[5]?.cursor]);
        } finally {
          await trimmed.close();
        }
      });
    }

    if (options.ageRetention) {
      it('deletes messages older than maxAgeMs by the time in their cursor', async () => {
        const aged = await fixture.open({ maxAgeMs: 60_000, maxMessages: 0 }, { reopen: true });
        try {
          const old = Array.from({ length: 3 }, () => make('ret.age'));
          time += 120_000;
          const young = Array.from({ length: 2 }, () => make('ret.age'));
          await aged.append([...old, ...young]);
          await aged.sweep(time);
          assert.deepEqual(await aged.history('ret.age', { limit: 100 }), young);
          assert.equal(await aged.trimmedThrough('ret.age'), old[2]?.cursor);
          assert.deepEqual(await aged.history('h.one', { limit: 1 }), [], 'older topics were trimmed too');
        } finally {
          await aged.close();
        }
      });

      it('deletes the latest rows of sources whose newest message is older than maxAgeMs', async () => {
        const aged = await fixture.open({ maxAgeMs: 60_000, maxMessages: 0 }, { reopen: true });
        try {
          const gone = make('ret.latest', { source: 'quiet' });
          const replaced = make('ret.latest', { source: 'busy' });
          time += 120_000;
          const kept = make('ret.latest', { source: 'busy', ts: time });
          await aged.append([gone, replaced, kept]);
          assert.deepEqual(Object.keys(await aged.latest('ret.latest')).sort(), ['busy', 'quiet']);
          await aged.sweep(time);
          assert.deepEqual(await aged.history('ret.latest', { limit: 10 }), [kept]);
          assert.deepEqual(await aged.latest('ret.latest'), { busy: kept }, 'quiet expired with its message');
          assert.deepEqual(await aged.latest('ret.latest', { limit: 10 }), { busy: kept });
        } finally {
          await aged.close();
        }
      });

      it('lists a topic retention emptied among its trimmed topics, with its mark', async () => {
        const aged = await fixture.open({ maxAgeMs: 60_000, maxMessages: 0 }, { reopen: true });
        try {
          // Optional in the port for test doubles; every adapter has it (a pattern resume needs it).
          assert.ok(aged.trimmedTopics, 'implements trimmedTopics');
          const gone = Array.from({ length: 2 }, () => make('ret.gone'));
          time += 120_000;
          const kept = [make('ret.kept')];
          await aged.append([...gone, ...kept]);
          await aged.sweep(time);
          assert.deepEqual(await aged.history('ret.gone', { limit: 10 }), []);
          const marks = await aged.trimmedTopics();
          assert.equal(marks.get('ret.gone'), gone[1]?.cursor, 'emptied, and listed with its mark');
          assert.equal(marks.get('ret.gone'), await aged.trimmedThrough('ret.gone'));
          assert.equal(marks.get('ret.age'), await aged.trimmedThrough('ret.age'), 'trimmed earlier, still listed');
          assert.equal(marks.has('ret.kept'), false, 'a topic retention never touched is not listed');
          for (const [topic, mark] of marks) assert.equal(mark, await aged.trimmedThrough(topic), topic);
          // Only marks past a cursor, when asked with one: what a pattern resume from it must refuse.
          assert.deepEqual(await aged.trimmedTopics(gone[1]?.cursor), new Map(), 'none past the newest mark');
          assert.deepEqual(
            await aged.trimmedTopics(gone[0]?.cursor),
            new Map([['ret.gone', gone[1]?.cursor]]),
            'only the marks past the cursor',
          );
        } finally {
          await aged.close();
        }
      });
    }
  });
}
