import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope, type MessageStore } from '@anode/shared';
import { createLogger } from '../../logger.ts';
import { createSqliteStore } from '../embedded/sqlite-store.ts';
import { createSpoolingStore } from './spooling-store.ts';

const log = createLogger('silent');
const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** Test double: a real SQLite store whose appends fail while `down` (a remote store that went away). */
function failingAppends(inner: MessageStore) {
  const state = { down: false };
  const store: MessageStore = {
    ...inner,
    append: async (messages, options) => {
      if (state.down) throw new Error('remote store unreachable (test double)');
      return inner.append(messages, options);
    },
  };
  return { store, state };
}

describe('spooling store: history sees the spool', () => {
  it('merges spooled messages into history and topics by cursor until they drain, then holds each once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-history-'));
    dirs.push(dir);
    const clock = createHybridClock('spoolhist');
    const make = (topic: string, data: unknown): Envelope => ({
      id: `r${clock.next().replace(/[^0-9a-z]/g, '')}`,
      topic,
      cursor: clock.next(),
      source: 's',
      ts: Date.now(),
      data,
    });
    const primary = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    const { store: remote, state } = failingAppends(primary);
    // A drain far in the future: the spool stays full while the test reads.
    let spooling = createSpoolingStore(remote, { dataDir: join(dir, 'spool'), drainIntervalMs: 600_000, log });

    const first = [make('h.t', 1), make('h.t', 2)];
    await spooling.append(first);
    state.down = true;
    const waiting = [make('h.t', 3), make('h.t', 4), make('h.new', 'only spooled')];
    const results = await spooling.append(waiting);
    assert.ok(results.every((r) => r.inserted));
    assert.equal(spooling.spoolDepth, 3);
    state.down = false; // reads answer again; the spool has not drained

    const ids = (messages: Envelope[]) => messages.map((m) => m.data);
    assert.deepEqual(ids(await spooling.history('h.t', { limit: 10 })), [1, 2, 3, 4]);
    // Pages: the limit cuts the merged list, and `after` continues it.
    const page = await spooling.history('h.t', { limit: 3 });
    assert.deepEqual(ids(page), [1, 2, 3]);
    assert.deepEqual(ids(await spooling.history('h.t', { after: page.at(-1)?.cursor as string, limit: 3 })), [4]);
    assert.deepEqual(ids(await spooling.history('h.new', { limit: 10 })), ['only spooled']);
    assert.deepEqual((await spooling.topics()).sort(), ['h.new', 'h.t']);
    assert.deepEqual(await primary.topics(), ['h.t'], 'the remote store has not got them yet');

    // Reopened (as after a restart), the spool drains: history holds each message once.
    await spooling.close();
    const reopened = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    spooling = createSpoolingStore(reopened, { dataDir: join(dir, 'spool'), drainIntervalMs: 20, log });
    await spooling.drained(10_000);
    assert.deepEqual(ids(await spooling.history('h.t', { limit: 10 })), [1, 2, 3, 4]);
    assert.deepEqual(ids(await reopened.history('h.new', { limit: 10 })), ['only spooled']);
    await spooling.close();
  });

  it('cuts merged pages by maxBytes, and paging on reads stored and spooled messages once each, in order', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-bytes-'));
    dirs.push(dir);
    const clock = createHybridClock('spoolbytes');
    const make = (i: number): Envelope => ({
      id: `r${clock.next().replace(/[^0-9a-z]/g, '')}`,
      topic: 'b.t',
      cursor: clock.next(),
      source: 's',
      ts: Date.now(),
      data: 'x'.repeat(i % 2 === 0 ? 1_200 + (i % 4) * 100 : 10 + i),
    });
    const primary = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    const { store: remote, state } = failingAppends(primary);
    const spooling = createSpoolingStore(remote, { dataDir: join(dir, 'spool'), drainIntervalMs: 600_000, log });
    const all = Array.from({ length: 60 }, (_, i) => make(i));
    // Stored (large; by another relay, straight into the shared store) and spooled here (small),
    // one by one: a stored page cut by bytes is followed by spooled messages that would still
    // fit, and they must wait for the next page.
    state.down = true;
    for (const [i, m] of all.entries()) await (i % 2 === 0 ? primary.append([m]) : spooling.append([m]));
    state.down = false;
    assert.ok(spooling.spoolDepth > 0 && spooling.spoolDepth < all.length);
    const read: Envelope[] = [];
    let after: string | undefined;
    for (let page = 0; page < 200; page++) {
      const got = await spooling.history('b.t', { after, limit: 100, maxBytes: 3_000 });
      if (got.length === 0) break;
      const bytes = got.reduce((sum, m) => sum + JSON.stringify(m.data).length, 0);
      assert.ok(bytes <= 3_000, `page ${page}: ${bytes} bytes of data`);
      read.push(...got);
      after = got.at(-1)?.cursor;
    }
    assert.deepEqual(
      read.map((m) => m.id),
      all.map((m) => m.id),
    );
    await spooling.close();
  });

  it('answers latest with a spooled message newer than the stored one of its source, until it drains', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-latest-'));
    dirs.push(dir);
    const clock = createHybridClock('spoollatest');
    const make = (source: string, ts: number, data: unknown): Envelope => ({
      id: `r${clock.next().replace(/[^0-9a-z]/g, '')}`,
      topic: 'l.t',
      cursor: clock.next(),
      source,
      ts,
      data,
    });
    const primary = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    const { store: remote, state } = failingAppends(primary);
    const spooling = createSpoolingStore(remote, { dataDir: join(dir, 'spool'), drainIntervalMs: 600_000, log });
    const t = Date.now();
    await spooling.append([make('a', t, 'a stored'), make('b', t + 5, 'b stored')]);
    state.down = true;
    // a: two spooled, the newer by ts first; b: a spooled one older than the stored one; c: only spooled.
    await spooling.append([make('a', t + 9, 'a newest'), make('a', t + 3, 'a older'), make('b', t + 1, 'b older')]);
    await spooling.append([make('c', t, 'c only spooled')]);
    // d: the same ts twice: the greater id wins.
    await spooling.append([
      { ...make('d', t, 'd greater id'), id: 'k-zz' },
      { ...make('d', t, 'd lesser id'), id: 'k-aa' },
    ]);
    state.down = false;
    const data = (latest: Record<string, Envelope>) =>
      Object.fromEntries(Object.entries(latest).map(([source, m]) => [source, m.data]));
    assert.deepEqual(data(await spooling.latest('l.t')), {
      a: 'a newest',
      b: 'b stored',
      c: 'c only spooled',
      d: 'd greater id',
    });
    assert.deepEqual(data(await primary.latest('l.t')), { a: 'a stored', b: 'b stored' }, 'not drained yet');
    // Paged: a spooled source goes in the page that reads the stored sources around it, each once.
    for (const [limit, maxBytes] of [[1], [2], [3], [1, 1], [3, 4 * 1024 * 1024]]) {
      const pages: Record<string, unknown>[] = [];
      let after: string | undefined;
      for (let n = 0; n < 10; n++) {
        const page = data(await spooling.latest('l.t', { after, limit: limit as number, maxBytes }));
        const sources = Object.keys(page).sort();
        if (sources.length === 0) break;
        assert.ok(sources.length <= (limit as number));
        pages.push(page);
        after = sources.at(-1);
      }
      const seen = pages.flatMap((page) => Object.keys(page));
      assert.deepEqual(seen, ['a', 'b', 'c', 'd'], `limit ${limit}, maxBytes ${maxBytes}: each source once, in order`);
      assert.deepEqual(Object.assign({}, ...pages), {
        a: 'a newest',
        b: 'b stored',
        c: 'c only spooled',
        d: 'd greater id',
      });
    }
    assert.deepEqual(await spooling.latest('l.none'), {});
    await spooling.close();
  });

  it('reads latest from a spool written by an older relay (rows without source and ts)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-old-'));
    dirs.push(dir);
    const clock = createHybridClock('spoolold');
    const old: Envelope = {
      id: 'old-1',
      topic: 'o.t',
      cursor: clock.next(),
      source: 'a',
      ts: Date.now(),
      data: 'old row',
    };
    await mkdir(join(dir, 'spool'), { recursive: true });
    // The spool table as relays before these columns wrote it.
    const legacy = new DatabaseSync(join(dir, 'spool', 'spool.sqlite'));
    legacy.exec(
      'CREATE TABLE spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, envelope TEXT NOT NULL, id TEXT, topic TEXT, cursor TEXT)',
    );
    legacy
      .prepare('INSERT INTO spool (id, envelope, topic, cursor) VALUES (?, ?, ?, ?)')
      .run(old.id, JSON.stringify(old), old.topic, old.cursor);
    legacy.close();
    const primary = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    const { store: remote, state } = failingAppends(primary);
    state.down = true; // the row stays in the spool (a drain starts at once)
    const spooling = createSpoolingStore(remote, { dataDir: join(dir, 'spool'), drainIntervalMs: 600_000, log });
    assert.equal(spooling.spoolDepth, 1);
    assert.deepEqual((await spooling.latest('o.t')).a?.data, 'old row');
    assert.equal(spooling.spoolDepth, 1, 'still spooled');
    assert.deepEqual(await primary.latest('o.t'), {});
    await spooling.close();
  });
});
