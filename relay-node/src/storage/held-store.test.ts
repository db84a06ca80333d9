import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  compareCursors,
  createHybridClock,
  dataBytes,
  type Envelope,
  type HistoryQuery,
  messageId,
} from '@anode/shared';
import { createSqliteStore } from './embedded/sqlite-store.ts';
import { createHeldStore } from './held-store.ts';
import { messageStoreCompliance } from './message-store.compliance.ts';

// With nothing held, the held store is the store it wraps: the whole suite holds.
messageStoreCompliance(
  'held store in front of SQLite',
  async () => {
    let dir = await mkdtemp(join(tmpdir(), 'anode-held-'));
    return {
      async open(retention, options) {
        if (!options?.reopen) {
          await rm(dir, { recursive: true, force: true });
          dir = await mkdtemp(join(tmpdir(), 'anode-held-'));
        }
        const inner = createSqliteStore({ dataDir: dir, retention });
        return createHeldStore(inner, { holdMs: 60_000, maxBytes: 1 << 20, checkMs: 0 });
      },
      async cleanup() {
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
  { countRetention: true, ageRetention: true },
);

// The shared store is a real (in-memory) embedded store; "another relay" is a second clock whose
// messages reach this relay's hub by gossip (hold) and the shared store later (append to inner).
const shared = () => createSqliteStore({ memory: true, dataDir: '', retention: { maxAgeMs: 0, maxMessages: 0 } });

function minter(node: string) {
  const clock = createHybridClock(node);
  return (topic: string, data: unknown): Envelope => ({
    id: messageId(),
    topic,
    cursor: clock.next(),
    source: 's',
    ts: Date.now(),
    data,
  });
}

const ids = (messages: readonly Envelope[]) => messages.map((m) => m.data);

describe('held store (persist origin: messages other relays accepted, until the shared store has them)', () => {
  it('merges held messages into history by cursor, page by page, and into topics', async () => {
    const inner = shared();
    const held = createHeldStore(inner, { holdMs: 60_000, maxBytes: 1 << 20 });
    const a = minter('nodea');
    const b = minter('nodeb');
    // Interleaved in time: b's are in the store, a's only held (a's spool has not drained).
    const all = [b('t', 0), a('t', 1), b('t', 2), a('t', 3), b('t', 4), a('u', 'other topic')];
    await inner.append(all.filter((m) => m.cursor.endsWith('nodeb')));
    held.hold(all.filter((m) => m.cursor.endsWith('nodea')));

    // Cursor order (two clocks in one millisecond order by node id, not by minting).
    const inT = ids(all.filter((m) => m.topic === 't').sort((x, y) => compareCursors(x.cursor, y.cursor)));
    assert.deepEqual(ids(await held.history('t', { limit: 100 })), inT);
    // Pages: each page ends where the merge ends it, and the next starts after it.
    const first = await held.history('t', { limit: 2 });
    assert.deepEqual(ids(first), inT.slice(0, 2));
    const second = await held.history('t', { after: first.at(-1)?.cursor, limit: 2 });
    assert.deepEqual(ids(second), inT.slice(2, 4));
    const third = await held.history('t', { after: second.at(-1)?.cursor, limit: 2 });
    assert.deepEqual(ids(third), inT.slice(4));
    assert.deepEqual(await held.topics(), ['t', 'u']);
    assert.deepEqual(await inner.topics(), ['t']);
    await held.close();
  });

  it('lets go of a message once a history read finds it in the shared store, and returns it once', async () => {
    const inner = shared();
    const held = createHeldStore(inner, { holdMs: 60_000, maxBytes: 1 << 20 });
    const a = minter('nodea');
    const spooled = [a('t', 'x'), a('t', 'y')];
    held.hold(spooled);
    held.hold(spooled); // a second copy (catch-up after gossip) is held once
    assert.equal(held.held.messages, 2);
    await inner.append(spooled); // the spool drained
    assert.deepEqual(ids(await held.history('t', { limit: 10 })), ['x', 'y']);
    assert.equal(held.held.messages, 0);
    assert.deepEqual(ids(await held.history('t', { limit: 10 })), ['x', 'y']);
    await held.close();
  });

  it('holds a message at most holdMs, and at most maxBytes of data (oldest first)', async () => {
    let now = 1_000_000;
    const inner = shared();
    const held = createHeldStore(inner, { holdMs: 5_000, maxBytes: 3 * (256 + 100) });
    const a = minter('nodea');
    const data = 'd'.repeat(97); // serialized with its digit and quotes: 100 bytes
    const [m1, m2, m3, m4] = [a('t', `1${data}`), a('t', `2${data}`), a('t', `3${data}`), a('t', `4${data}`)];
    const clockedHeld = createHeldStore(inner, { holdMs: 5_000, maxBytes: 1 << 20, now: () => now });
    clockedHeld.hold([m1 as Envelope]);
    now += 3_000;
    clockedHeld.hold([m2 as Envelope]);
    now += 2_500; // m1 is 5.5 s old, m2 2.5 s
    assert.deepEqual(
      (await clockedHeld.history('t', { limit: 10 })).map((m) => m.id),
      [m2?.id],
    );
    assert.equal(clockedHeld.held.messages, 1);

    held.hold([m1, m2, m3] as Envelope[]);
    assert.equal(held.held.messages, 3);
    held.hold([m4 as Envelope]); // over the byte bound: the oldest goes
    assert.deepEqual(
      (await held.history('t', { limit: 10 })).map((m) => m.id),
      [m2?.id, m3?.id, m4?.id],
    );
    assert.ok(held.held.bytes <= 3 * (256 + 100), `held ${held.held.bytes} bytes`);
    await held.close();
  });

  it('reads a large, out-of-order hold page by page in cursor order, as parts of it reach the store', async () => {
    const inner = shared();
    const held = createHeldStore(inner, { holdMs: 60_000, maxBytes: 1 << 30 });
    const origins = ['nodea', 'nodec', 'noded'].map(minter);
    const messages = Array.from({ length: 900 }, (_, i) => (origins[i % 3] as ReturnType<typeof minter>)('t', i));
    // Gossip from three origins: each origin's in order, the three interleaved out of order.
    const arrival = [...messages.filter((_, i) => i % 3 === 2), ...messages.filter((_, i) => i % 3 !== 2)];
    for (let i = 0; i < arrival.length; i += 50) held.hold(arrival.slice(i, i + 50));
    // One origin's spool drains; a read finds them in the store and lets them go.
    await inner.append(messages.filter((_, i) => i % 3 === 0));
    const inOrder = [...messages].sort((x, y) => compareCursors(x.cursor, y.cursor)).map((m) => m.id);
    const read: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < 100; page++) {
      const got = await held.history('t', { after, limit: 64 });
      read.push(...got.map((m) => m.id));
      if (got.length < 64) break;
      after = got.at(-1)?.cursor;
    }
    assert.deepEqual(read, inOrder);
    assert.equal(held.held.messages, 600);
    await inner.append(messages);
    assert.equal((await held.history('t', { limit: 1000 })).length, 900);
    assert.equal(held.held.messages, 0);
    await held.close();
  });

  it('cuts merged pages by maxBytes, and paging on reads stored and held messages once each, in order', async () => {
    const inner = shared();
    const held = createHeldStore(inner, { holdMs: 60_000, maxBytes: 1 << 24, checkMs: 0 });
    const a = minter('nodea');
    const b = minter('nodeb');
    // Interleaved: b's in the store (large), a's only held (small), so a stored page cut by bytes
    // is followed by held messages that would still fit: they must wait for the next page.
    const all = Array.from({ length: 60 }, (_, i) =>
      i % 3 === 0 ? a('t', 'x'.repeat(10 + i)) : b('t', 'x'.repeat(1_200 + (i % 4) * 100)),
    );
    await inner.append(all.filter((m) => m.cursor.endsWith('nodeb')));
    held.hold(all.filter((m) => m.cursor.endsWith('nodea')));
    const inOrder = [...all].sort((x, y) => compareCursors(x.cursor, y.cursor)).map((m) => m.id);
    const read: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < 200; page++) {
      const got = await held.history('t', { after, limit: 100, maxBytes: 3_000 });
      if (got.length === 0) break;
      const bytes = got.reduce((sum, m) => sum + dataBytes(m), 0);
      assert.ok(bytes <= 3_000, `page ${page}: ${bytes} bytes of data`);
      read.push(...got.map((m) => m.id));
      after = got.at(-1)?.cursor;
    }
    assert.deepEqual(read, inOrder);
    await held.close();
  });

  it('answers latest with a held message that is newer than the stored one of its source', async () => {
    const inner = shared();
    const held = createHeldStore(inner, { holdMs: 60_000, maxBytes: 1 << 20 });
    const a = minter('nodea');
    const at = Date.now();
    const stored = { ...a('t', 'stored'), ts: at };
    const older = { ...a('t', 'older, held'), ts: at - 1_000 };
    const other = { ...a('t', 'another source, held'), ts: at - 5_000, source: 'other' };
    await inner.append([stored]);
    held.hold([older, other]);
    const data = async () =>
      Object.fromEntries(Object.entries(await held.latest('t')).map(([source, m]) => [source, m.data]));
    assert.deepEqual(await data(), { s: 'stored', other: 'another source, held' });
    held.hold([{ ...a('t', 'newer, held'), ts: at + 1_000 }]);
    assert.deepEqual(await data(), { s: 'newer, held', other: 'another source, held' });
    await held.close();
  });

  it('passes writes and everything else to the shared store', async () => {
    const inner = shared();
    const held = createHeldStore(inner, { holdMs: 60_000, maxBytes: 1 << 20 });
    const a = minter('nodea');
    const [m] = [a('t', 'own')];
    const [result] = await held.append([m as Envelope]);
    assert.equal(result?.inserted, true);
    assert.deepEqual(ids(await inner.history('t', { limit: 10 })), ['own']);
    assert.equal((await held.latest('t')).s?.id, m?.id);
    const health = await held.health();
    assert.equal(health.ok, true);
    assert.equal(health.held_messages, 0);
    await held.close();
  });

  it('asks the store for what it holds, so its bounds are spent on spooled messages alone', async () => {
    const inner = shared();
    // Room for about 4,000 messages: before the store was asked, the busy topic's pushed the
    // spooled one out within seconds.
    const held = createHeldStore(inner, { holdMs: 60_000, maxBytes: 1 << 20, checkMs: 0 });
    const a = minter('nodea');
    const b = minter('nodeb');
    const spooled = a('quiet', 'spooled by nodea');
    held.hold([spooled]);
    for (let round = 0; round < 10; round++) {
      // nodeb stored these before gossiping them; 1,200 a round, so a round reads three pages.
      const busy = Array.from({ length: 1_200 }, (_, i) => b('busy', round * 1_200 + i));
      await inner.append(busy);
      held.hold(busy);
      await held.check();
      assert.equal(held.held.messages, 1, `round ${round}: only the spooled one is held`);
    }
    assert.deepEqual(ids(await held.history('quiet', { limit: 10 })), ['spooled by nodea']);
    // Past pages of stored messages on the spooled one's own topic too.
    const later = Array.from({ length: 1_100 }, (_, i) => b('quiet', i));
    await inner.append(later);
    held.hold(later);
    await held.check();
    assert.equal(held.held.messages, 1);
    await inner.append([spooled]); // its spool drained
    await held.check();
    assert.equal(held.held.messages, 0);
    await held.close();
  });

  it('goes on where a round ran out of reads, after the other topics had their turn', async () => {
    const inner = shared();
    const readsOf: string[] = [];
    const counted = {
      ...inner,
      history: (topic: string, query: HistoryQuery) => (readsOf.push(topic), inner.history(topic, query)),
    };
    const held = createHeldStore(counted, { holdMs: 60_000, maxBytes: 1 << 30, checkMs: 0 });
    const a = minter('nodea');
    const b = minter('nodeb');
    const spooled = a('busy', 'spooled by nodea');
    held.hold([spooled]);
    // Behind it, more stored messages than two rounds read (50 pages of 500 each).
    for (let i = 0; i < 60; i++) {
      const busy = Array.from({ length: 1_000 }, (_, k) => b('busy', i * 1_000 + k));
      await inner.append(busy);
      held.hold(busy);
    }
    const quiet = Array.from({ length: 10 }, (_, k) => b('quiet', k));
    await inner.append(quiet);
    held.hold(quiet);
    const rounds: { quiet: boolean; held: number }[] = [];
    for (let round = 0; round < 3; round++) {
      readsOf.length = 0;
      await held.check();
      rounds.push({ quiet: readsOf.includes('quiet'), held: held.held.messages });
    }
    // Before, every round read the busy topic's first 25,000 again: nothing else ever went.
    assert.deepEqual(
      rounds.map((r) => r.quiet),
      [false, true, false],
    );
    assert.ok(rounds[0]!.held > rounds[1]!.held, JSON.stringify(rounds));
    assert.equal(rounds[2]?.held, 1);
    assert.deepEqual(ids(await held.history('busy', { limit: 1 })), ['spooled by nodea']);
    await held.close();
  });

  it('reads only pages near what it holds, so steady gossip behind a spooled message costs the same each round', async () => {
    const inner = shared();
    let reads = 0;
    const counted = {
      ...inner,
      history: (topic: string, query: HistoryQuery) => ((reads += 1), inner.history(topic, query)),
    };
    // Room for about 4,000 messages: before, each round read everything stored since the spooled
    // one, the reads ran out after some 25 rounds, and the spooled one was pushed out.
    const held = createHeldStore(counted, { holdMs: 15 * 60_000, maxBytes: 1 << 20, checkMs: 0 });
    const a = minter('nodea');
    const b = minter('nodeb');
    const spooled = a('busy', 'spooled by nodea');
    held.hold([spooled]);
    for (let round = 0; round < 10; round++) {
      const busy = Array.from({ length: 1_000 }, (_, k) => b('busy', round * 1_000 + k));
      await inner.append(busy);
      held.hold(busy);
      reads = 0;
      await held.check();
      assert.equal(held.held.messages, 1, `round ${round}`);
      assert.ok(reads <= 4, `round ${round}: ${reads} reads`);
    }
    await held.close();
  });

  it('asks again later when the store cannot answer, and keeps holding meanwhile', async () => {
    const inner = shared();
    let away = true;
    const flaky = {
      ...inner,
      history: (topic: string, query: HistoryQuery) =>
        away ? Promise.reject(new Error('store unreachable (test double)')) : inner.history(topic, query),
    };
    const held = createHeldStore(flaky, { holdMs: 60_000, maxBytes: 1 << 20, checkMs: 0 });
    const b = minter('nodeb');
    const stored = [b('t', 1), b('t', 2)];
    await inner.append(stored);
    held.hold(stored);
    await held.check();
    assert.equal(held.held.messages, 2);
    away = false;
    await held.check();
    assert.equal(held.held.messages, 0);
    await held.close();
  });

  it('places messages that arrive late (catch-up) by cursor among many newer ones', async () => {
    const held = createHeldStore(shared(), { holdMs: 60_000, maxBytes: 1 << 24, checkMs: 0 });
    const a = minter('nodea');
    const all = Array.from({ length: 3_000 }, (_, i) => a('t', i));
    held.hold(all.slice(1_000)); // gossip: the newer two thirds
    for (const m of all.slice(0, 1_000)) held.hold([m]); // catch-up, oldest first, one by one
    const page = await held.history('t', { limit: 3_000 });
    assert.deepEqual(ids(page), ids(all));
    await held.close();
  });
});
