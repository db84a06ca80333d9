import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { createHybridClock, type Envelope, randomId } from '@anode/shared';
import { messageStoreCompliance } from '../message-store.compliance.ts';
import { createSqliteStore } from './sqlite-store.ts';

for (const fsync of [true, false])
  messageStoreCompliance(
    fsync ? 'embedded (SQLite)' : 'embedded (SQLite, fsync off: small batches written on the event loop)',
    async () => {
      let dir = await mkdtemp(join(tmpdir(), 'anode-sqlite-'));
      return {
        async open(retention, options) {
          if (!options?.reopen) {
            await rm(dir, { recursive: true, force: true });
            dir = await mkdtemp(join(tmpdir(), 'anode-sqlite-'));
          }
          return createSqliteStore({ dataDir: dir, retention, fsync });
        },
        async cleanup() {
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
    { countRetention: true, ageRetention: true },
  );

describe('embedded store retention, in steps', () => {
  // Cursors at a chosen time (retention by age reads the time in them), each one unique.
  let n = 0;
  const at = (ms: number) => `${ms.toString(16).padStart(12, '0')}${(n++).toString(16).padStart(4, '0')}-sweep`;
  const messages = (topic: string, n: number, ms = 1_000) =>
    Array.from({ length: n }, (): Envelope => ({
      id: randomId(),
      topic,
      cursor: at(ms),
      source: 's',
      ts: ms,
      data: n,
    }));
  const cursors = async (store: ReturnType<typeof createSqliteStore>, topic: string) =>
    (await store.history(topic, { limit: 10_000 })).map((m) => m.cursor);

  it('trims by count across several topics in steps of a few messages, with the same outcome as one', async () => {
    const retention = { maxAgeMs: 0, maxMessages: 5 };
    const stepped = createSqliteStore({ dataDir: '', memory: true, retention, sweepStep: 3 });
    const whole = createSqliteStore({ dataDir: '', memory: true, retention, sweepStep: 1_000 });
    const batch = [...messages('a', 17), ...messages('b', 4), ...messages('c', 9), ...messages('d', 6)];
    await stepped.append(batch);
    await whole.append(batch);
    assert.equal(await stepped.sweep(), 12 + 4 + 1);
    assert.equal(await whole.sweep(), 17);
    for (const topic of ['a', 'b', 'c', 'd']) {
      assert.deepEqual(await cursors(stepped, topic), await cursors(whole, topic), topic);
      assert.equal(await stepped.trimmedThrough(topic), await whole.trimmedThrough(topic), topic);
    }
    assert.equal((await cursors(stepped, 'a')).length, 5);
    assert.equal(await stepped.trimmedThrough('b'), undefined, 'b was under the limit');
    // The per-topic counts stayed right: another sweep deletes nothing, one more message one.
    assert.equal(await stepped.sweep(), 0);
    await stepped.append(messages('a', 1));
    assert.equal(await stepped.sweep(), 1);
    await stepped.close();
    await whole.close();
  });

  it('goes through more topics than one step reads (a page of 256), by pages and by budget', async () => {
    for (const sweepStep of [1_000, 100]) {
      const store = createSqliteStore({
        dataDir: '',
        memory: true,
        retention: { maxAgeMs: 0, maxMessages: 1 },
        sweepStep,
      });
      const names = Array.from({ length: 600 }, (_, i) => `t${String(i).padStart(3, '0')}`);
      await store.append(names.flatMap((topic) => messages(topic, 2)));
      assert.equal(await store.sweep(), 600);
      for (const topic of [names[0], names[255], names[256], names[599]] as string[]) {
        assert.equal((await cursors(store, topic)).length, 1, topic);
      }
      await store.close();
    }
  });

  it('trims by age in steps, then by count, and stops at the young messages', async () => {
    const stepped = createSqliteStore({
      dataDir: '',
      memory: true,
      retention: { maxAgeMs: 60_000, maxMessages: 4 },
      sweepStep: 4,
    });
    const old = messages('t', 10, 1_000);
    const young = messages('t', 7, 200_000);
    await stepped.append([...old, ...young]);
    assert.equal(await stepped.sweep(200_000), 10 + 3);
    assert.deepEqual(
      await cursors(stepped, 't'),
      young.slice(3).map((m) => m.cursor),
    );
    assert.equal(await stepped.trimmedThrough('t'), young[2]?.cursor);
    await stepped.close();
  });

  it('counts the latest rows the age limit deletes apart from the messages', async () => {
    const aged = createSqliteStore({
      dataDir: '',
      memory: true,
      retention: { maxAgeMs: 60_000, maxMessages: 0 },
      sweepStep: 3,
    });
    // Three sources of two old messages each on two topics, one young source: 12 messages and 6 latest rows expire.
    for (const topic of ['a', 'b'])
      for (const source of ['s1', 's2', 's3'])
        await aged.append(messages(topic, 2, 1_000).map((m) => ({ ...m, source })));
    await aged.append(messages('a', 1, 200_000));
    const counts = { latestDeleted: 0 };
    assert.equal(await aged.sweep(200_000, counts), 12);
    assert.equal(counts.latestDeleted, 6);
    assert.deepEqual(Object.keys(await aged.latest('a')), ['s']);
    assert.equal(await aged.sweep(200_000), 0, 'a sweep without counts still runs');
    await aged.close();
  });

  it('lets an append that arrives during a long sweep through before the sweep ends', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-sqlite-'));
    // The writer thread (fsync on: every write goes there); steps of 50 among 5,000 to delete.
    const store = createSqliteStore({
      dataDir: dir,
      retention: { maxAgeMs: 0, maxMessages: 10 },
      fsync: true,
      sweepStep: 50,
    });
    await store.append(messages('t', 5_010));
    const order: string[] = [];
    const sweeping = store.sweep().then((deleted) => {
      order.push('sweep');
      return deleted;
    });
    await new Promise((resolve) => setImmediate(resolve)); // the first step is on the thread
    const appended = store.append(messages('u', 1)).then(() => order.push('append'));
    assert.equal(await sweeping, 5_000);
    await appended;
    assert.deepEqual(order, ['append', 'sweep']);
    assert.equal((await cursors(store, 't')).length, 10);
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
});

describe('embedded store: a page and the trim mark it was read under', () => {
  it('gives them as of one moment while the writer thread sweeps beside the reads', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-sqlite-'));
    // The writer thread commits a sweep step (50 messages) whenever it likes, on its own core:
    // with the page and the mark read apart, steps landed between the two reads.
    const store = createSqliteStore({ dataDir: dir, retention: { maxAgeMs: 0, maxMessages: 500 }, sweepStep: 50 });
    let sweeping: Promise<number> | undefined;
    try {
      const clock = createHybridClock('marked');
      const all = Array.from({ length: 20_000 }, (_, n): Envelope => {
        const cursor = clock.next();
        return { id: `m${n}`, topic: 't', cursor, source: 's', ts: n, data: n };
      });
      for (let i = 0; i < all.length; i += 2_000) await store.append(all.slice(i, i + 2_000));
      let swept = false;
      sweeping = store.sweep().finally(() => (swept = true));
      let reads = 0;
      let refused = 0;
      while (!swept) {
        // A cursor just above the mark: the next step or two pass it.
        const mark = await store.trimmedThrough('t');
        const at = mark === undefined ? 0 : all.findIndex((m) => m.cursor === mark) + 1;
        const after = all[Math.min(at + 20, all.length - 1)]?.cursor as string;
        let given: { mark: string | undefined } | undefined;
        const page = await store.history('t', { after, limit: 400, onTrimmedThrough: (m) => (given = { mark: m }) });
        assert.ok(given, 'the store gives the mark with the page');
        reads += 1;
        if (given.mark !== undefined && given.mark > after) {
          // Read under a mark past `after`: retention had taken what followed it, nothing of it here.
          refused += 1;
          assert.ok((page[0]?.cursor ?? '~') > given.mark, `read ${reads}: a message at or below the mark`);
        } else {
          // Read under a mark at or below `after`: whole, from the message right after it.
          const from = all.findIndex((m) => m.cursor === after) + 1;
          assert.deepEqual(
            page.map((m) => m.id),
            all.slice(from, from + 400).map((m) => m.id),
            `read ${reads}: a page read under mark ${given.mark} (after ${after}) is not whole`,
          );
        }
        await new Promise((resolve) => setImmediate(resolve)); // the sweep's next step goes out
      }
      assert.equal(await sweeping, 19_500);
      assert.ok(reads > 20, `${reads} reads during the sweep`);
      assert.ok(refused < reads, `${refused} of ${reads} read under a mark past their cursor`);
    } finally {
      await sweeping?.catch(() => {});
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('gives the mark with an empty page, and with a page of limit 0', async () => {
    const store = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 2 } });
    try {
      const clock = createHybridClock('marked');
      const all = Array.from({ length: 5 }, (_, n): Envelope => {
        const cursor = clock.next();
        return { id: `m${n}`, topic: 't', cursor, source: 's', ts: n, data: n };
      });
      await store.append(all);
      await store.sweep();
      const marks: (string | undefined)[] = [];
      const onTrimmedThrough = (mark: string | undefined) => void marks.push(mark);
      assert.deepEqual(await store.history('t', { after: all[4]?.cursor, limit: 10, onTrimmedThrough }), []);
      assert.deepEqual(await store.history('t', { limit: 0, onTrimmedThrough }), []);
      assert.deepEqual(await store.history('never', { limit: 10, onTrimmedThrough }), []);
      assert.deepEqual(marks, [all[2]?.cursor, all[2]?.cursor, undefined]);
    } finally {
      await store.close();
    }
  });
});

describe('embedded store, fsync off: small batches on the event loop, large ones on the writer thread', () => {
  it('keeps every row of interleaved appends, in order, and after a reopen', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-sqlite-'));
    const clock = createHybridClock('mixed');
    const retention = { maxAgeMs: 0, maxMessages: 0 };
    const store = createSqliteStore({ dataDir: dir, retention, fsync: false });
    const sizes = [1, 50, 3, 40, 2, 1, 100, 5, 32, 33, 1];
    const batches = sizes.map((size) =>
      Array.from({ length: size }, (): Envelope => {
        const cursor = clock.next();
        return { id: randomId(), topic: 't', cursor, source: 's', ts: 1_000, data: cursor };
      }),
    );
    // Not awaited one by one: a small batch that finds the thread busy must queue behind it.
    const results = await Promise.all(batches.map((batch) => store.append(batch)));
    assert.ok(results.flat().every((r) => r.inserted));
    const expected = batches.flat().map((m) => m.cursor);
    const read = async (s: typeof store) => (await s.history('t', { limit: 1_000 })).map((m) => m.cursor);
    assert.deepEqual(await read(store), expected);
    // Appending them again inserts nothing (both paths see the same rows).
    const again = await Promise.all(batches.map((batch) => store.append(batch)));
    assert.ok(again.flat().every((r) => !r.inserted));
    await store.close();
    const reopened = createSqliteStore({ dataDir: dir, retention, fsync: false });
    assert.deepEqual(await read(reopened), expected);
    await reopened.close();
    await rm(dir, { recursive: true, force: true });
  });
});

describe('embedded store, fsync off: the log stays bounded when every batch is small', () => {
  it('has the writer thread checkpoint what the event loop wrote (its own connection never does)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-sqlite-'));
    const clock = createHybridClock('wal');
    const store = createSqliteStore({ dataDir: dir, retention: { maxAgeMs: 0, maxMessages: 0 }, fsync: false });
    const wal = async () => (await stat(join(dir, 'messages.sqlite-wal'))).size;
    const write = async (rows: number) => {
      for (let i = 0; i < rows; i += 10)
        await store.append(
          Array.from({ length: 10 }, (): Envelope => {
            const cursor = clock.next();
            return { id: randomId(), topic: 't', cursor, source: 's', ts: 1_000, data: 'x'.repeat(200) };
          }),
        );
    };
    await write(5_000);
    const afterFive = await wal();
    await write(25_000);
    // Without checkpoints the log would hold all 30,000 rows (6x the first 5,000); with one
    // every INLINE_CHECKPOINT_PAGES written on the event loop it is reused from its start after each.
    const afterThirty = await wal();
    assert.ok(afterThirty < afterFive * 3.5, `log ${afterThirty} bytes after 30,000 rows, ${afterFive} after 5,000`);
    assert.equal((await store.history('t', { limit: 100_000 })).length, 30_000);
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
});

describe('embedded store: one batch', () => {
  const clock = createHybridClock('batch');
  const make = (topic: string, over: Partial<Envelope> = {}): Envelope => ({
    id: randomId(),
    topic,
    cursor: clock.next(),
    source: 's',
    ts: 1_000,
    data: { n: 1 },
    ...over,
  });

  it('keeps latest by ts (then id) among messages of one append, whatever their order', async () => {
    const store = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 0 } });
    const newer = make('t', { source: 'a', ts: 2_000 });
    const tieHigh = make('t', { source: 'c', ts: 10, id: 'tie-b' });
    await store.append([
      newer,
      make('t', { source: 'a', ts: 1_000 }),
      make('t', { source: 'b', ts: 5 }),
      tieHigh,
      make('t', { source: 'c', ts: 10, id: 'tie-a' }),
    ]);
    const latest = await store.latest('t');
    assert.deepEqual(latest.a, newer);
    assert.equal(latest.b?.ts, 5);
    assert.deepEqual(latest.c, tieHigh);
    // A later batch still cannot replace a newer ts with an older one.
    await store.append([make('t', { source: 'a', ts: 1_500 }), make('t', { source: 'b', ts: 6 })]);
    assert.deepEqual((await store.latest('t')).a, newer);
    assert.equal((await store.latest('t')).b?.ts, 6);
    await store.close();
  });

  it('counts every new message of one append for retention, and no duplicate', async () => {
    const store = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 3 } });
    const first = make('t');
    const batch = [first, first, ...Array.from({ length: 5 }, () => make('t')), make('u')];
    const results = await store.append(batch);
    assert.deepEqual(
      results.map((r) => r.inserted),
      [true, false, true, true, true, true, true, true],
    );
    assert.equal(await store.sweep(), 3, 'six in t, kept three');
    assert.deepEqual(
      (await store.history('t', { limit: 10 })).map((m) => m.id),
      batch.slice(4, 7).map((m) => m.id),
    );
    assert.equal((await store.history('u', { limit: 10 })).length, 1);
    await store.close();
  });
});

describe('embedded store: a cursor another message holds', () => {
  for (const fsync of [true, false]) {
    it(`answers conflict, stores nothing for it and counts it nowhere (fsync ${fsync})`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'anode-sqlite-conflict-'));
      const store = createSqliteStore({ dataDir: dir, retention: { maxAgeMs: 0, maxMessages: 0 }, fsync });
      try {
        const cursor = createHybridClock('conflict00').next();
        const now = Date.now();
        const message = (id: string, data: number, at = cursor): Envelope => ({
          id,
          topic: 'c',
          cursor: at,
          source: 's',
          ts: now + data, // the twin is newer: it must not become `latest` either
          data,
        });
        assert.equal((await store.append([message('first', 1)]))[0]?.inserted, true);
        const later = `${cursor.slice(0, 12)}ffff${cursor.slice(16)}`;
        const [twin, next, again] = await store.append([
          message('twin', 2),
          message('next', 3, later),
          message('first', 1),
        ]);
        assert.deepEqual(twin, { envelope: message('twin', 2), inserted: false, conflict: true });
        assert.equal(next?.inserted, true);
        assert.deepEqual(
          [again?.inserted, again?.conflict, again?.envelope.id],
          [false, undefined, 'first'],
          'a plain duplicate',
        );
        assert.deepEqual(
          (await store.history('c', { limit: 10 })).map((m) => m.id),
          ['first', 'next'],
        );
        assert.equal((await store.latest('c')).s?.id, 'next');
      } finally {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('embedded store on a full disk', () => {
  for (const fsync of [true, false]) {
    it(`says why a write failed and is not healthy meanwhile; reads go on (fsync ${fsync})`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'anode-sqlite-'));
      // SQLite's max_page_count stands in for a full disk: writes past it fail with SQLITE_FULL.
      const store = createSqliteStore({
        dataDir: dir,
        retention: { maxAgeMs: 0, maxMessages: 0 },
        fsync,
        maxPages: 80,
      });
      const clock = createHybridClock('full');
      const big = (i: number): Envelope => ({
        id: randomId(),
        topic: 'full.t',
        cursor: clock.next(),
        source: 's',
        ts: Date.now(),
        data: `${i}:${'x'.repeat(20_000)}`,
      });
      try {
        let failure: Error | undefined;
        let stored = 0;
        for (let i = 0; i < 100 && !failure; i++) {
          // Batches above the event loop's inline size go to the writer thread (fsync off too).
          await store.append(Array.from({ length: 40 }, (_, j) => big(i * 40 + j))).then(
            () => (stored += 40),
            (error: Error) => (failure = error),
          );
        }
        assert.match(String(failure?.message), /full/, 'the write says the disk is full, not that a rollback failed');
        const health = await store.health();
        assert.equal(health.ok, false);
        assert.match(String(health.detail), /last write failed: .*full/);
        assert.equal((await store.history('full.t', { limit: 1_000 })).length, stored, 'what was stored is read');
      } finally {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});

const readlinkSafe = (path: string) => {
  try {
    return readlinkSync(path);
  } catch {
    return ''; // gone meanwhile (the descriptor readdir used)
  }
};

describe('embedded store: schema', () => {
  it('reads the topics trimmed past a cursor through an index (a database of schema 1 gets it)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-schema-'));
    try {
      // A file as schema 1 left it: the index is made when the store opens it.
      const old = new DatabaseSync(join(dir, 'messages.sqlite'));
      old.exec(
        'CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);' +
          'CREATE TABLE topics (topic TEXT PRIMARY KEY, count INTEGER NOT NULL DEFAULT 0, trimmed_through TEXT) WITHOUT ROWID;' +
          'CREATE TABLE messages (id TEXT PRIMARY KEY, topic TEXT NOT NULL, cursor TEXT NOT NULL, source TEXT NOT NULL, ts INTEGER NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;' +
          'CREATE UNIQUE INDEX messages_by_topic_cursor ON messages (topic, cursor);' +
          'CREATE TABLE latest (topic TEXT NOT NULL, source TEXT NOT NULL, id TEXT NOT NULL, cursor TEXT NOT NULL, ts INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (topic, source)) WITHOUT ROWID;',
      );
      old.close();
      const store = createSqliteStore({ dataDir: dir, retention: { maxAgeMs: 0, maxMessages: 0 } });
      await store.close();
      const db = new DatabaseSync(join(dir, 'messages.sqlite'));
      const plan = db
        .prepare("EXPLAIN QUERY PLAN SELECT topic, trimmed_through FROM topics WHERE trimmed_through > ''")
        .all() as { detail: string }[];
      db.close();
      assert.match(plan.map((p) => p.detail).join('; '), /topics_by_trimmed/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('adds the latest index at schema version 2, so a relay from before still opens the file, and says so once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-schema-'));
    try {
      const retention = { maxAgeMs: 0, maxMessages: 0 };
      const said: string[] = [];
      const log = { warn: () => {}, info: (_fields: object, message: string) => void said.push(message) };
      const store = createSqliteStore({ dataDir: dir, retention, log });
      await store.append([{ id: 'a', topic: 't', cursor: '0001', source: 's', ts: 1, data: 1 }]);
      await store.close();
      assert.deepEqual(said, [], 'nothing to say of a new, empty file');
      // A file with latest rows from before the index (a relay older than 47c93e8).
      const old = new DatabaseSync(join(dir, 'messages.sqlite'));
      old.exec('DROP INDEX latest_by_cursor');
      old.close();
      for (let open = 0; open < 2; open++) await createSqliteStore({ dataDir: dir, retention, log }).close();
      assert.deepEqual(
        said,
        ['adding an index on latest: may take seconds on a large file'],
        'said at the first open only',
      );
      const db = new DatabaseSync(join(dir, 'messages.sqlite'));
      // What a relay from before 47c93e8 checks: it knows up to version 2 and refuses more.
      const version = (db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number }).v;
      const index = db.prepare("SELECT sql FROM sqlite_master WHERE name = 'latest_by_cursor'").get() as {
        sql: string;
      };
      db.close();
      assert.equal(version, 2);
      assert.match(index.sql, /ON latest \(topic, cursor\)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a file of a newer schema (a relay downgraded) naming it, both versions and what to do', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-schema-'));
    try {
      const retention = { maxAgeMs: 0, maxMessages: 0 };
      const file = join(dir, 'messages.sqlite');
      const store = createSqliteStore({ dataDir: dir, retention });
      await store.append([{ id: 'kept', topic: 't', cursor: '0001', source: 's', ts: 1, data: 1 }]);
      await store.close();
      // A newer relay migrated it past what this one knows (and changed what it means).
      const newer = new DatabaseSync(file);
      const known = (newer.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number }).v;
      newer.exec(`INSERT INTO schema_version VALUES (${known + 1})`);
      newer.close();
      const before = await readFile(file);
      assert.throws(
        () => createSqliteStore({ dataDir: dir, retention }),
        (error: Error & { code?: string }) => {
          assert.equal(error.code, 'schema_too_new');
          assert.ok(error.message.startsWith(`${file}: `), error.message);
          assert.match(
            error.message,
            new RegExp(`schema version ${known + 1}.* this relay .*schema version ${known}\\b`),
          );
          assert.match(error.message, /newer version of anode/);
          assert.match(error.message, /start that version again/);
          return true;
        },
      );
      assert.deepEqual(await readFile(file), before, 'the file is left as it was');
      // Its connection is closed: the file can be opened, checked, and written by its own version.
      const db = new DatabaseSync(file);
      assert.equal((db.prepare('SELECT COUNT(*) AS n FROM messages').get() as { n: number }).n, 1);
      db.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a damaged file naming it and saying what to do, and opens once it is moved aside', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-schema-'));
    try {
      const file = join(dir, 'messages.sqlite');
      await writeFile(file, Buffer.alloc(8192, 0x5a), { mode: 0o600 });
      const retention = { maxAgeMs: 0, maxMessages: 0 };
      assert.throws(
        () => createSqliteStore({ dataDir: dir, retention }),
        (error: Error) => {
          assert.ok(error.message.startsWith(`${file}: file is not a database.`), error.message);
          assert.match(error.message, /damaged: stop the relay, move it aside/);
          return true;
        },
      );
      // Its connection is closed (on Linux: no descriptor of this process names the file).
      if (process.platform === 'linux') {
        const open = (await readdir('/proc/self/fd')).map((fd) => readlinkSafe(`/proc/self/fd/${fd}`));
        assert.ok(
          !open.some((target) => target.startsWith(dir)),
          `still open: ${open.filter((t) => t.startsWith(dir))}`,
        );
      }
      await rename(file, `${file}.damaged`);
      const store = createSqliteStore({ dataDir: dir, retention });
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
