import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { compareCursors, createHybridClock, type Envelope, MAX_CLOCK_SKEW_MS, type MessageStore } from '@anode/shared';
import { mergedHistory } from './merged-history.ts';
import { leaseClock } from '../clock-lease.ts';
import { createLogger } from '../logger.ts';
import { createSqliteStore } from '../storage/embedded/sqlite-store.ts';
import { memoryStore, recorder, remote, testHub } from './test-hub.ts';

const collect = async (source: AsyncGenerator<Envelope>) => {
  const out: Envelope[] = [];
  for await (const envelope of source) out.push(envelope);
  return out;
};

describe('merged history (resuming a pattern)', () => {
  it('merges every topic’s pages in cursor order, each message once, from after a cursor', async () => {
    const store = memoryStore();
    try {
      // 2,000 topics read together get pages of 10 messages: the busy topics are read page by
      // page while the quiet ones are done after one.
      const envelopes: Envelope[] = [];
      for (let t = 0; t < 2_000; t++) {
        const count = t < 5 ? 57 : 1;
        for (let i = 0; i < count; i++) {
          envelopes.push(
            remote(`m${t}-${i}`, `t.${t}`, 1_000_000 + ((t * 7919 + i * 104_729) % 500_000), 'nodeaaaaaa'),
          );
        }
      }
      await store.append(envelopes);
      const sorted = [...envelopes].sort((a, b) => compareCursors(a.cursor, b.cursor));
      const after = (sorted[100] as Envelope).cursor;
      const topics = Array.from({ length: 2_000 }, (_, t) => `t.${t}`);
      const merged = await collect(mergedHistory(store, topics, after));
      assert.deepEqual(
        merged.map((m) => m.id),
        sorted.slice(101).map((m) => m.id),
      );
    } finally {
      await store.close();
    }
  });

  it('gives the event loop a turn while it merges many topics', async () => {
    const store = memoryStore();
    try {
      const topics = Array.from({ length: 16_000 }, (_, t) => `t.${t}`);
      await store.append(topics.map((topic, t) => remote(`m${t}`, topic, 1_000_000 + t, 'nodeaaaaaa')));
      let turns = 0;
      const turn = () => {
        turns += 1;
        if (!done) setImmediate(turn);
      };
      let done = false;
      setImmediate(turn);
      let count = 0;
      for await (const _ of mergedHistory(store, topics, '0')) count += 1;
      done = true;
      assert.equal(count, 16_000);
      // The old merge ran from first read to last message without one turn (seconds at this size).
      assert.ok(turns > 1, `the event loop had ${turns} turn(s) during the merge`);
    } finally {
      await store.close();
    }
  });
});

describe('merged history under retention', () => {
  it('a resume that retention overtakes ends with cursor_expired, not with a silent gap', async () => {
    const store = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 100 } });
    try {
      const hub = testHub(store);
      const claims = { pub: ['>'], sub: ['>'] };
      const acks = await hub.publish(
        't',
        Array.from({ length: 1_200 }, (_, n) => ({ data: n })),
        { via: 'http', claims },
      );
      const first = acks[0]?.cursor as string;
      // A slow reader: after 500 messages, the sweep runs (keeping the newest 100) before it reads on.
      const reader = recorder('slow');
      let sends = 0;
      let swept: Promise<number> | undefined;
      const send = reader.send.bind(reader);
      reader.send = (frame) => ((sends += 1), send(frame));
      reader.backlog = () => (sends >= 500 ? (swept ??= store.sweep()).then(() => undefined) : undefined);
      await assert.rejects(
        hub.subscribe(reader, 't', first),
        (error: Error & { code?: string; trimmedThrough?: string }) => {
          assert.equal(error.code, 'cursor_expired');
          // An edge link's err frame carries it as `trimmed` (the edge restarts past it).
          assert.ok(error.trimmedThrough, 'the refusal names the trim mark');
          return true;
        },
      );
      assert.ok(((await swept) ?? 0) > 0, 'the sweep deleted messages mid-resume');
      assert.ok(reader.ids().length < 1_199, 'it stopped at the gap');
    } finally {
      await store.close();
    }
  });
});

describe('merged history under retention, messages the live buffer holds', () => {
  // A slow reader: after 140 messages it pauses while 300 more are published and the sweep runs
  // (retention keeps 100); it records the cursors it gets, in order.
  const slowResume = async (options: { storeShared?: boolean } = {}) => {
    const store = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 100 } });
    // A node up for longer than a cursor from elsewhere may run ahead: before that, what an
    // earlier run stored may lie past anything this one delivered (see the restart cases below).
    const hub = testHub(store, undefined, { ...options, startedAt: Date.now() - 2 * MAX_CLOCK_SKEW_MS });
    const claims = { pub: ['>'], sub: ['>'] };
    const publish = (from: number, count: number) =>
      hub.publish(
        't',
        Array.from({ length: count }, (_, n) => ({ data: from + n })),
        { via: 'http', claims },
      );
    const first = await publish(0, 150);
    const cursors: string[] = [];
    let later: Awaited<ReturnType<typeof publish>> = [];
    let paused: Promise<void> | undefined;
    const reader = recorder('slow');
    const send = reader.send.bind(reader);
    reader.send = (frame) => {
      const parsed = JSON.parse(frame) as { op: string; cursor?: string };
      if (parsed.op === 'msg') cursors.push(parsed.cursor as string);
      return send(frame);
    };
    reader.backlog = () =>
      cursors.length >= 140
        ? (paused ??= (async () => {
            later = await publish(150, 300);
            await store.sweep();
          })())
        : undefined;
    const outcome = await hub.subscribe(reader, 't', first[0]?.cursor).then(
      () => 'subscribed',
      (error: Error & { code?: string }) => error.code,
    );
    await paused;
    await store.close();
    return { outcome, cursors, later };
  };

  it('does not refuse a resume whose deleted messages came after it subscribed', async () => {
    const { outcome, cursors, later } = await slowResume();
    assert.equal(outcome, 'subscribed');
    const got = new Set(cursors);
    assert.deepEqual(
      later.filter((a) => !got.has(a.cursor)),
      [],
      'live messages were lost',
    );
    assert.equal(got.size, 449);
  });

  it('sends what retention deleted before anything newer, so a client cut off anywhere resumes with no gap', async () => {
    const { outcome, cursors, later } = await slowResume();
    assert.equal(outcome, 'subscribed');
    // Going on with the history past the hole sent the 100 survivors first and the 200 deleted
    // ones after them, from the buffer: a client cut off in between resumed above those 200.
    const sorted = [...cursors].sort(compareCursors);
    assert.deepEqual(cursors, sorted, 'messages were sent out of cursor order');
    assert.equal(new Set(cursors).size, 449);
    assert.equal(cursors.at(-1), later.at(-1)?.cursor);
  });

  /**
   * A slow resume of t from `after` that a sweep overtakes once `sends` messages went out: how it
   * ended ('subscribed' or the error's code) and the ids it got.
   */
  const overtakenResume = async (
    hub: ReturnType<typeof testHub>,
    store: MessageStore,
    after: string | undefined,
    sends: number,
  ) => {
    const reader = recorder('slow');
    let sent = 0;
    let swept: Promise<number> | undefined;
    const send = reader.send.bind(reader);
    reader.send = (frame) => ((sent += 1), send(frame));
    reader.backlog = () => (sent >= sends ? (swept ??= store.sweep()).then(() => undefined) : undefined);
    const outcome = await hub.subscribe(reader, 't', after).then(
      () => 'subscribed',
      (error: Error & { code?: string }) => error.code,
    );
    assert.ok(((await swept) ?? 0) > 0, 'the sweep deleted messages mid-resume');
    return { outcome, got: new Set(reader.ids()) };
  };

  it('does not count on the live buffer when other relays write the store (Cassandra)', async () => {
    const { outcome } = await slowResume({ storeShared: true });
    assert.equal(outcome, 'cursor_expired');
  });

  it('does not count on the live buffer before this node delivered anything (a new relay on a shared file)', async () => {
    const store = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 100 } });
    try {
      const claims = { pub: ['>'], sub: ['>'] };
      const writer = testHub(store);
      const acks = await writer.publish(
        't',
        Array.from({ length: 1_200 }, (_, n) => ({ data: n })),
        { via: 'http', claims },
      );
      // A hub whose clock never minted or observed a cursor (time 0) and that delivered nothing,
      // up for a while (or its start mark alone refuses the hand-over).
      const hub = testHub(store, createHybridClock('nodefresh0'), { startedAt: Date.now() - 2 * MAX_CLOCK_SKEW_MS });
      const { outcome } = await overtakenResume(hub, store, acks[0]?.cursor, 500);
      assert.equal(outcome, 'cursor_expired');
    } finally {
      await store.close();
    }
  });

  it('does not count on the live buffer for what an earlier run stored (a restart, then an older cursor first)', async () => {
    const store = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 100 } });
    try {
      const claims = { pub: ['>'], sub: ['>'] };
      const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
      // The node's first run stores 1,200 messages, in two batches a few milliseconds apart.
      const first = testHub(store, createHybridClock('nodelocal0'));
      const early = await first.publish(
        't',
        Array.from({ length: 600 }, (_, n) => ({ data: n })),
        { via: 'http', claims },
      );
      await sleep(5);
      const between = Date.now();
      await sleep(5);
      const late = await first.publish(
        't',
        Array.from({ length: 600 }, (_, n) => ({ data: n })),
        { via: 'http', claims },
      );
      const all = [...early, ...late];
      // Its next run: the clock starts past the first run's cursors (the lease does that).
      const clock = createHybridClock('nodelocal0');
      clock.observe(all.at(-1)?.cursor as string);
      const hub = testHub(store, clock, { remoteInputs: true });
      // The first delivery of this run is older than the first run's newest: a catch-up's.
      assert.equal(await hub.ingest([remote('r1', 'u', between, 'nodepeer00')], { persist: true }), 1);
      const { outcome, got } = await overtakenResume(hub, store, all[0]?.cursor, 800);
      const missing = all.slice(1).filter((m) => !got.has(m.id)).length;
      // Handed over to a buffer that never got them, 200 were skipped with a `subscribed`.
      assert.ok(outcome === 'cursor_expired' || missing === 0, `${outcome} with ${missing} messages never sent`);
    } finally {
      await store.close();
    }
  });

  it('does not count on the live buffer for a peer’s messages stored just before a stop (its clock ahead, the lease not renewed)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-lease-'));
    const store = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 100 } });
    const log = createLogger('silent');
    try {
      const claims = { pub: ['>'], sub: ['>'] };
      const firstLease = leaseClock(dir, createHybridClock('nodelocal0'), log);
      const first = testHub(store, firstLease.clock, { remoteInputs: true });
      const local = await first.publish(
        't',
        Array.from({ length: 600 }, (_, n) => ({ data: n })),
        { via: 'http', claims },
      );
      // A peer whose clock runs 30 s ahead (within MAX_CLOCK_SKEW_MS) gossips 600 messages; the
      // node stops before its lease is renewed past them.
      const ahead = Date.now() + 30_000;
      const peer = Array.from({ length: 600 }, (_, n) => remote(`p${n}`, 't', ahead + n, 'nodepeer00'));
      assert.equal(await first.ingest(peer, { persist: true }), 600);
      firstLease.stop();
      const lease = leaseClock(dir, createHybridClock('nodelocal0'), log);
      try {
        const hub = testHub(store, lease.clock, { remoteInputs: true });
        await hub.publish('u', [{ data: 'first of this run' }], { via: 'http', claims });
        const { outcome, got } = await overtakenResume(hub, store, local[0]?.cursor, 800);
        const missing = [...local.map((a) => a.id), ...peer.map((p) => p.id)].slice(1).filter((id) => !got.has(id));
        assert.ok(outcome === 'cursor_expired' || missing.length === 0, `${outcome} with ${missing.length} never sent`);
      } finally {
        lease.stop();
      }
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('does not count on the live buffer for a message stored at one cursor and delivered at another', async () => {
    const store = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 100 } });
    try {
      const claims = { pub: ['>'], sub: ['>'] };
      const hub = testHub(store, undefined, { remoteInputs: true, startedAt: Date.now() - 2 * MAX_CLOCK_SKEW_MS });
      const publish = (n: number) =>
        hub.publish(
          't',
          Array.from({ length: n }, (_, i) => ({ data: i })),
          { via: 'http', claims },
        );
      const [first] = await publish(1);
      await publish(499);
      // One content id X accepted by two relays (a keyed publish retried at another one): B's copy
      // comes by catch-up, A's (an earlier cursor) by gossip, delivered at once; one commit keeps
      // B's, which is then not delivered here (its id went out already).
      const now = Date.now() + 1_000;
      const catchUp = hub.ingest([remote('X', 't', now + 30_000, 'nodepeerb0')], { persist: true });
      const gossip = hub.ingest([remote('X', 't', now, 'nodepeera0'), remote('Y', 't', now + 1, 'nodepeera0')], {
        persist: true,
        deliverFirst: true,
      });
      await Promise.all([catchUp, gossip]);
      const stored = await store.history('t', { after: '', limit: 1_000 });
      assert.match(stored.find((m) => m.id === 'X')?.cursor ?? '', /nodepeerb0$/, 'the store kept B’s copy');
      const reader = recorder('slow');
      let sent = 0;
      let paused: Promise<void> | undefined;
      const send = reader.send.bind(reader);
      reader.send = (frame) => ((sent += 1), send(frame));
      reader.backlog = () =>
        sent >= 140
          ? (paused ??= (async () => {
              await publish(300);
              await store.sweep();
            })())
          : undefined;
      const outcome = await hub.subscribe(reader, 't', first?.cursor).then(
        () => 'subscribed',
        (error: Error & { code?: string }) => error.code,
      );
      assert.ok(outcome === 'cursor_expired' || reader.ids().includes('X'), `${outcome} without X`);
    } finally {
      await store.close();
    }
  });
});
