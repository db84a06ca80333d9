import assert from 'node:assert/strict';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Worker } from 'node:worker_threads';
import { describe, it } from 'node:test';
import { createHybridClock, type Envelope, OPEN_CLAIMS, randomId } from '@anode/shared';
import { recorder, testHub } from '../../hub/test-hub.ts';
import { createSqliteStore } from './sqlite-store.ts';
import { startWriterThread, UNCONFIRMED_CURSORS_MAX } from './sqlite-writer.ts';
import type { WriteRow } from './sqlite-writes.ts';

/**
 * The writer thread dies (an uncaught error, an out-of-memory in the thread, a terminate): the
 * store starts another, with backoff, and publishes are taken again. A write the dead thread did
 * not confirm is refused (never acknowledged); every acknowledged write is in the file.
 */
describe('embedded store: the writer thread dies', () => {
  for (const fsync of [true, false]) {
    it(`is started again, publishes are taken again, and no acknowledged write is lost (fsync ${fsync})`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'anode-writer-restart-'));
      const threads: Worker[] = [];
      const warnings: string[] = [];
      const retention = { maxAgeMs: 0, maxMessages: 0 };
      const store = createSqliteStore({
        dataDir: dir,
        retention,
        fsync,
        onWriterThread: (worker) => threads.push(worker),
        log: { warn: (_fields, message) => void warnings.push(message) },
      });
      const clock = createHybridClock('restart');
      // Batches of 40: above the inline size, so with fsync off too they go to the thread.
      const batch = (): Envelope[] =>
        Array.from({ length: 40 }, (_, i) => ({
          id: randomId(),
          topic: 'restart.t',
          cursor: clock.next(),
          source: 's',
          ts: Date.now(),
          data: i,
        }));
      const acked = new Set<string>();
      const refused: Envelope[] = [];
      const write = (messages: Envelope[]) =>
        store.append(messages).then(
          () => messages.forEach((m) => acked.add(m.id)),
          (error: Error) => {
            refused.push(...messages);
            return error;
          },
        );
      try {
        for (let i = 0; i < 10; i++) await write(batch());
        assert.equal(threads.length, 1);
        // Killed with several writes in flight (the hub pipelines its batches).
        const inFlight = Array.from({ length: 6 }, () => write(batch()));
        await threads[0]?.terminate();
        const errors = (await Promise.all(inFlight)).filter((e): e is Error => e instanceof Error);
        assert.ok(errors.length > 0, 'writes the thread had not answered are refused');
        for (const error of errors) assert.match(error.message, /writer thread exited .* before confirming this write/);
        // Down (the thread starts again in 100 ms), or just up again with the last write failed.
        const health = await store.health();
        assert.equal(health.ok, false, 'not ok while the thread is down');
        assert.match(String(health.detail), /writer thread exited/);
        // Publishes are taken again within a few seconds.
        let taken = 0;
        for (let i = 0; i < 200 && taken < 10; i++) {
          const before = acked.size;
          await write(batch());
          if (acked.size > before) taken++;
          else await sleep(50);
        }
        assert.equal(taken, 10, `publishes taken again after the thread died (refused: ${refused.length})`);
        assert.equal(threads.length, 2, 'one new thread');
        assert.equal((await store.health()).ok, true, 'ok again once a write is taken');
        assert.equal((await store.health()).writer_restarts, 1);
        assert.ok(
          warnings.some((w) => /writer thread exited/.test(w)),
          `the restart is logged: ${warnings.join('; ')}`,
        );
        // Twice more, to see the count and the backoff reset after a thread that works.
        for (let kill = 0; kill < 2; kill++) {
          await threads.at(-1)?.terminate();
          for (let i = 0; i < 200; i++) {
            const before = acked.size;
            await write(batch());
            if (acked.size > before) break;
            await sleep(50);
          }
        }
        assert.equal((await store.health()).writer_restarts, 3);
        assert.equal(threads.length, 4);
      } finally {
        await store.close();
      }
      // Every acknowledged write is in the file; a refused one may be too (committed, then the
      // thread died before saying so): sent again, it is stored once.
      const again = createSqliteStore({ dataDir: dir, retention, fsync });
      try {
        const stored = new Set((await again.history('restart.t', { limit: 100_000 })).map((m) => m.id));
        const lost = [...acked].filter((id) => !stored.has(id));
        assert.deepEqual(lost, [], 'no acknowledged write lost');
        assert.ok(acked.size >= 10 * 40 + 10 * 40 + 2 * 40);
        const results = await again.append(refused);
        assert.equal(results.length, refused.length);
        const all = await again.history('restart.t', { limit: 100_000 });
        assert.equal(all.length, new Set(all.map((m) => m.id)).size, 'each id once');
        assert.equal(all.length, acked.size + refused.length);
      } finally {
        await again.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  it('says why it died when the thread failed with an uncaught error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-writer-restart-'));
    const threads: Worker[] = [];
    const warnings: string[] = [];
    const store = createSqliteStore({
      dataDir: dir,
      retention: { maxAgeMs: 0, maxMessages: 0 },
      onWriterThread: (worker) => threads.push(worker),
      log: { warn: (_fields, message) => void warnings.push(message) },
    });
    const message = (id: string): Envelope => ({ id, topic: 't', cursor: id, source: 's', ts: 1, data: id });
    try {
      await store.append([message('0001')]);
      // As Node reports an uncaught error (or ERR_WORKER_OUT_OF_MEMORY): 'error', then 'exit'.
      threads[0]?.emit('error', new Error('boom'));
      await threads[0]?.terminate();
      assert.match(String((await store.health()).detail), /store writer thread failed: boom; started again in 100 ms/);
      assert.match(
        warnings.join('\n'),
        /store writer thread failed: boom; writes are refused until it is started again/,
      );
      await sleep(300);
      await store.append([message('0002')]);
      assert.deepEqual(
        (await store.history('t', { limit: 10 })).map((m) => m.id),
        ['0001', '0002'],
      );
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps trying when no new thread can be made, refusing writes meanwhile', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-writer-restart-'));
    const threads: Worker[] = [];
    const warnings: string[] = [];
    let starts = 0;
    let failStarts = 0; // the next starts that fail as `new Worker` does at the process's thread limit
    const store = createSqliteStore({
      dataDir: dir,
      retention: { maxAgeMs: 0, maxMessages: 0 },
      onWriterThread: (worker) => threads.push(worker),
      testBeforeWriterThread: () => {
        starts += 1;
        if (failStarts === 0) return;
        failStarts -= 1;
        throw Object.assign(new Error('EAGAIN'), {
          code: 'ERR_WORKER_INIT_FAILED',
        });
      },
      log: { warn: (_fields, message) => void warnings.push(message) },
    });
    const message = (id: string): Envelope => ({ id, topic: 't', cursor: id, source: 's', ts: 1, data: id });
    try {
      await store.append([message('0001')]);
      failStarts = 2;
      await threads[0]?.terminate();
      // Starts at 100 ms (fails), 100 + 200 ms (fails), then 100 + 200 + 400 ms.
      for (let i = 0; i < 100 && starts < 3; i++) await sleep(10);
      assert.equal(starts, 3, 'two failed starts');
      const health = await store.health();
      assert.equal(health.ok, false);
      assert.match(String(health.detail), /store writer thread could not be started: EAGAIN; started again in 400 ms/);
      await assert.rejects(store.append([message('0002')]), /could not be started/);
      assert.match(warnings.join('\n'), /could not be started: .*; writes are refused until it is started again/);
      let taken = false;
      for (let i = 0; i < 40 && !taken; i++) {
        taken = await store.append([message('0003')]).then(
          () => true,
          () => false,
        );
        if (!taken) await sleep(50);
      }
      assert.ok(taken, 'publishes taken again once a thread can be made');
      assert.equal(starts, 4);
      assert.equal(threads.length, 2);
      assert.equal((await store.health()).writer_restarts, 1);
      assert.deepEqual(
        (await store.history('t', { limit: 10 })).map((m) => m.id),
        ['0001', '0003'],
      );
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  /**
   * The thread commits an append and dies before its answer reaches the store (deterministic here:
   * its answers are dropped, and it is killed once the rows are visible): the write is refused,
   * yet stored. Sent again (a keyed publish's id is its content's), it is found stored: it must be
   * reported new once, or it was acked and never fanned out nor gossiped.
   */
  const commitThenDie = async (fsync: boolean) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-writer-restart-'));
    const threads: Worker[] = [];
    const store = createSqliteStore({
      dataDir: dir,
      retention: { maxAgeMs: 0, maxMessages: 0 },
      fsync,
      // A small write may commit on the event loop when the thread is idle: these go to the thread.
      inlineWrites: false,
      onWriterThread: (worker) => threads.push(worker),
      log: { warn: () => {} },
    });
    /** Runs `write` on a thread that commits it and dies before answering; returns its refusal. */
    let killed = 0;
    const lostAnswer = async (write: () => Promise<unknown>, topic: string, rows: number) => {
      for (let i = 0; i < 200 && threads.length === killed; i++) await sleep(10); // the next thread
      killed += 1;
      const thread = threads.at(-1) as Worker;
      thread.removeAllListeners('message'); // its answers no longer reach the store
      const refusal = write().then(
        () => undefined,
        (error: Error) => error,
      );
      for (let i = 0; i < 500 && (await store.history(topic, { limit: 1000 })).length < rows; i++) await sleep(5);
      assert.equal((await store.history(topic, { limit: 1000 })).length, rows, 'committed by the thread');
      await thread.terminate();
      const error = await refusal;
      const why = error?.cause instanceof Error ? error.cause : error; // the hub's refusal: its cause
      assert.match(String(why?.message), /before confirming this write/);
    };
    /** Retries `write` (refused while the thread is down) until it is taken. */
    const untilTaken = async <T>(write: () => Promise<T>): Promise<T> => {
      for (let i = 0; ; i++) {
        try {
          return await write();
        } catch (error) {
          if (i > 100) throw error;
          await sleep(20);
        }
      }
    };
    return { store, dir, lostAnswer, untilTaken };
  };

  for (const fsync of [true, false]) {
    it(`reports a write the dead thread committed without confirming as new once, sent again (fsync ${fsync})`, async () => {
      const { store, dir, lostAnswer, untilTaken } = await commitThenDie(fsync);
      const clock = createHybridClock('unconfirmed');
      const ids = Array.from({ length: 40 }, () => randomId());
      // Sent again with new cursors, as a keyed publish is (same id, minted again).
      const batch = (): Envelope[] =>
        ids.map((id, i) => ({ id, topic: 'u', cursor: clock.next(), source: 's', ts: 1, data: i }));
      const other = Array.from({ length: 40 }, (_, i) => ({
        id: randomId(),
        topic: 'v',
        cursor: clock.next(),
        source: 's',
        ts: 1,
        data: i,
      }));
      try {
        await store.append(batch()); // ids taken earlier, acked: not new again
        const first = batch();
        const stored = (await store.history('u', { limit: 1000 })).map((m) => m.cursor);
        // A batch of ids stored before: the dead thread's answer would have been "not new".
        await lostAnswer(() => store.append(first), 'u', 40);
        // Now ids that were not stored before.
        const fresh = Array.from({ length: 40 }, (_, i) => ({ ...other[i]!, id: randomId() }));
        await lostAnswer(() => store.append(fresh), 'v', 40);
        const again = await untilTaken(() => store.append(fresh.map((m) => ({ ...m, cursor: clock.next() }))));
        assert.deepEqual(
          again.map((r) => r.inserted),
          fresh.map(() => true),
          'committed, refused, sent again: new once',
        );
        assert.deepEqual(
          again.map((r) => r.envelope.cursor),
          fresh.map((m) => m.cursor),
          'as stored',
        );
        const third = await store.append(fresh.map((m) => ({ ...m, cursor: clock.next() })));
        assert.deepEqual(
          third.map((r) => r.inserted),
          fresh.map(() => false),
          'only once',
        );
        // The ids stored before the dead write (which then found them stored): not new.
        const old = await store.append(batch());
        assert.deepEqual(
          old.map((r) => r.inserted),
          ids.map(() => false),
        );
        assert.deepEqual(
          old.map((r) => r.envelope.cursor),
          stored,
        );
      } finally {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  for (const fsync of [true, false]) {
    it(`reports as new once an id that was in two appends the dead thread never answered (fsync ${fsync})`, async () => {
      // The same keyed message twice in flight (a client retrying on a timeout, two clients with
      // one key): the first append committed it under its cursor, the second found it stored.
      const dir = await mkdtemp(join(tmpdir(), 'anode-writer-twice-'));
      const threads: Worker[] = [];
      const store = createSqliteStore({
        dataDir: dir,
        retention: { maxAgeMs: 0, maxMessages: 0 },
        fsync,
        onWriterThread: (worker) => threads.push(worker),
        log: { warn: () => {} },
      });
      const clock = createHybridClock('twice');
      const ids = Array.from({ length: 40 }, () => randomId()); // past the inline size: on the thread
      const batch = (): Envelope[] =>
        ids.map((id, i) => ({ id, topic: 'k', cursor: clock.next(), source: 's', ts: 1, data: i }));
      try {
        const thread = threads[0] as Worker;
        thread.removeAllListeners('message'); // its answers are lost
        const first = store.append(batch()).catch((error: Error) => error);
        const second = store.append(batch()).catch((error: Error) => error);
        for (let i = 0; i < 300 && (await store.history('k', { limit: 1000 })).length < 40; i++) await sleep(10);
        await sleep(50); // the thread has handled the second append too (found stored)
        await thread.terminate();
        assert.ok((await first) instanceof Error && (await second) instanceof Error, 'both refused');
        let again: Awaited<ReturnType<typeof store.append>> | undefined;
        for (let i = 0; again === undefined; i++) {
          try {
            again = await store.append(batch());
          } catch (error) {
            if (i > 200) throw error;
            await sleep(20);
          }
        }
        // Before: 0 of 40 (the second append's cursor was remembered, not the stored one).
        assert.equal(again.filter((r) => r.inserted).length, 40, 'committed, refused, never fanned out: new once');
      } finally {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  it('delivers and gossips a keyed publish the dead thread committed without confirming, once sent again', async () => {
    const { store, dir, lostAnswer, untilTaken } = await commitThenDie(true);
    const hub = testHub(store);
    const gossiped: string[] = [];
    hub.onAccepted((envelopes) => gossiped.push(...envelopes.map((m) => m.id)));
    const live = recorder();
    await hub.subscribe(live, 'k');
    const context = { via: 'ws', claims: OPEN_CLAIMS } as const;
    const publish = () => hub.publishOne('k', { data: { n: 1 }, key: 'key-1' }, context);
    try {
      await lostAnswer(publish, 'k', 1);
      const ack = await untilTaken(publish);
      await sleep(50);
      assert.deepEqual(live.ids(), [ack.id], 'delivered to the live subscriber');
      assert.deepEqual(gossiped, [ack.id], 'handed to gossip');
      const [stored] = await store.history('k', { limit: 10 });
      assert.equal(ack.cursor, stored?.cursor);
    } finally {
      hub.removeSubscriber(live);
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  /**
   * The backoff between starts grows while each new thread dies soon after it started, and is
   * reset once a new thread has proved healthy: it answered a request, or it lived a while
   * (writerHealthyAfterMs, 300 ms here for 10 s). Before, only an answer reset it: a relay with
   * no writes, or with fsync off whose small writes never reach the thread, kept the wait it had
   * reached for good (the next death, hours later, waited 200 ms, then 400 ms, up to 10 s).
   */
  for (const fsync of [true, false]) {
    it(`grows the restart wait while new threads keep dying, resets it once one lived a while (fsync ${fsync})`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'anode-writer-backoff-'));
      const threads: Worker[] = [];
      const waits: number[] = [];
      let dieSoon = false; // each new thread is killed 30 ms after it starts
      const store = createSqliteStore({
        dataDir: dir,
        retention: { maxAgeMs: 0, maxMessages: 0 },
        fsync,
        writerHealthyAfterMs: 300,
        onWriterThread: (worker) => {
          threads.push(worker);
          if (dieSoon) setTimeout(() => void worker.terminate(), 30);
        },
        log: { warn: (fields) => void waits.push((fields as { wait_ms: number }).wait_ms) },
      });
      let n = 0;
      // One message: with fsync off it is written on the event loop, never answered by the thread.
      const publishOne = () =>
        store.append([
          { id: randomId(), topic: 'b', cursor: String(++n).padStart(8, '0'), source: 's', ts: 1, data: n },
        ]);
      const until = async (done: () => boolean) => {
        for (let i = 0; i < 300 && !done(); i++) await sleep(10);
        assert.ok(done());
      };
      try {
        await publishOne();
        // Idle (no writes at all) between the deaths, each thread living past 300 ms.
        for (let kill = 0; kill < 3; kill++) {
          await threads.at(-1)?.terminate();
          await until(() => threads.length === kill + 2);
          await sleep(400);
        }
        assert.deepEqual(waits, [100, 100, 100], 'an idle thread that lived 400 ms resets the wait');
        // Writing one message at a time between the deaths (with fsync off, none on the thread).
        waits.length = 0;
        for (let kill = 0; kill < 3; kill++) {
          await threads.at(-1)?.terminate();
          await until(() => threads.length === kill + 5);
          for (let i = 0; i < 8; i++) {
            await publishOne();
            await sleep(50);
          }
        }
        assert.deepEqual(waits, [100, 100, 100], 'a writing thread that lived 400 ms resets the wait');
        // Each new thread dies 30 ms after it starts, before answering anything: the wait grows.
        waits.length = 0;
        dieSoon = true;
        await threads.at(-1)?.terminate();
        await until(() => waits.length === 5);
        assert.deepEqual(waits, [100, 200, 400, 800, 1600], 'threads that keep dying: the wait doubles');
        dieSoon = false;
        await until(() => threads.length === 12);
        await sleep(400);
        await threads.at(-1)?.terminate();
        await until(() => waits.length === 6);
        assert.equal(waits.at(-1), 100, 'reset once a thread lived past 300 ms again');
      } finally {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  /** The files under `dir` this process has open (Linux: /proc/self/fd). */
  const openUnder = (dir: string): string[] =>
    readdirSync('/proc/self/fd')
      .map((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`);
        } catch {
          return ''; // closed meanwhile (the fd readdir itself used)
        }
      })
      .filter((target) => target.startsWith(`${dir}/`))
      .map((target) => target.slice(dir.length + 1))
      .sort();

  it(
    'fails to open, closing what it opened, when the first writer thread cannot be made',
    { skip: !existsSync('/proc/self/fd') && 'needs /proc/self/fd' },
    async () => {
      const dir = await realpath(await mkdtemp(join(tmpdir(), 'anode-writer-first-')));
      const retention = { maxAgeMs: 0, maxMessages: 0 };
      try {
        for (const fsync of [true, false]) {
          assert.throws(
            () =>
              createSqliteStore({
                dataDir: dir,
                retention,
                fsync,
                // As `new Worker` throws at the process's thread limit.
                testBeforeWriterThread: () => {
                  throw Object.assign(new Error('EAGAIN'), {
                    code: 'ERR_WORKER_INIT_FAILED',
                  });
                },
              }),
            (error: Error & { code?: string }) => {
              assert.equal(
                error.message,
                `${join(dir, 'messages.sqlite')}: the store's writer thread could not be started: ` + 'EAGAIN',
              );
              assert.equal(error.code, 'ERR_WORKER_INIT_FAILED');
              return true;
            },
          );
          // Before: messages.sqlite, its -wal and -shm stayed open (the read connection, never closed).
          assert.deepEqual(openUnder(dir), [], `nothing left open (fsync ${fsync})`);
        }
        // The same folder opens again in this process, and works.
        const store = createSqliteStore({ dataDir: dir, retention });
        try {
          const m: Envelope = { id: 'a1', topic: 't', cursor: '0001', source: 's', ts: 1, data: 1 };
          assert.equal((await store.append([m]))[0]?.inserted, true);
          assert.deepEqual(
            (await store.history('t', { limit: 10 })).map((e) => e.id),
            ['a1'],
          );
        } finally {
          await store.close();
        }
        assert.deepEqual(openUnder(dir), []);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it('keeps at most UNCONFIRMED_CURSORS_MAX cursors per id of appends a dead thread never answered', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-writer-cap-'));
    await createSqliteStore({ dataDir: dir, retention: { maxAgeMs: 0, maxMessages: 0 } }).close(); // the schema
    const threads: Worker[] = [];
    const writes = startWriterThread(join(dir, 'messages.sqlite'), true, {
      onThread: (worker) => threads.push(worker),
      log: { warn: () => {} },
    });
    let n = 0;
    const row = (id: string): WriteRow => [id, 'k', String(++n).padStart(8, '0'), 's', 1, '1'];
    /** `count` appends of `id` on a thread whose answers are lost, then killed: all refused. */
    const unanswered = async (id: string, count: number) => {
      for (let i = 0; i < 200 && (threads.length === 0 || writes.failure); i++) await sleep(10);
      const thread = threads.at(-1) as Worker;
      thread.removeAllListeners('message');
      const refusals = Array.from({ length: count }, () =>
        writes.append([row(id)]).then(
          () => assert.fail('answered'),
          () => {},
        ),
      );
      await thread.terminate();
      await Promise.all(refusals);
    };
    try {
      // A client sending one keyed message again and again while the thread dies under it: the
      // first append stored it (cursor 00000001), each later one found it stored.
      await unanswered('x', 3 * UNCONFIRMED_CURSORS_MAX);
      assert.equal(writes.unconfirmed, 1, 'one id');
      // Before: every cursor (24), with no bound however many times it was sent.
      assert.equal(writes.unconfirmedCursors, UNCONFIRMED_CURSORS_MAX, 'the newest cursors only');
      await unanswered('x', 5); // another death: still bounded
      await unanswered('y', 2);
      assert.equal(writes.unconfirmed, 2);
      assert.equal(writes.unconfirmedCursors, UNCONFIRMED_CURSORS_MAX + 2);
      // The cursor it was stored under was dropped (the oldest): it is reported new all the same,
      // as may be one an answered append stored (a duplicate delivery, never a message not delivered).
      assert.equal(writes.takeUnconfirmed('x', '00000001'), true, 'dropped, still reported new');
      assert.equal(writes.takeUnconfirmed('x', '00000001'), false, 'once');
      // An id under the bound still needs its own cursor.
      assert.equal(writes.takeUnconfirmed('y', '00000001'), false, 'not one of its cursors');
      assert.equal(writes.unconfirmedCursors, 0);
    } finally {
      await writes.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('closes while the thread is down, without starting another', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-writer-restart-'));
    const threads: Worker[] = [];
    const store = createSqliteStore({
      dataDir: dir,
      retention: { maxAgeMs: 0, maxMessages: 0 },
      onWriterThread: (worker) => threads.push(worker),
      log: { warn: () => {} },
    });
    try {
      await threads[0]?.terminate();
      await store.close();
      await sleep(300);
      assert.equal(threads.length, 1, 'none started after close');
      await assert.rejects(store.append([]), /closed/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
