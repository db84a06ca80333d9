import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import type { Envelope, MessageStore } from '@anode/shared';
import { createHybridClock } from '@anode/shared';
import type { Libp2p } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { multiaddr } from '@multiformats/multiaddr';
import { createLogger } from '../logger.ts';
import { memoryStore } from '../hub/test-hub.ts';
import { createSqliteStore } from '../storage/embedded/sqlite-store.ts';
import type { Host } from './host.ts';
import { loopbackNodes } from './loopback-nodes.fixture.ts';
import { createShards } from './shards.ts';
import {
  CATCH_UP_PROTOCOL,
  catchUpAnswer,
  catchUpFrameBytes,
  catchUpFrom,
  historyPage,
  serveCatchUp,
  topicsPage,
} from './catch-up.ts';

const utf8 = (text: string) => new TextEncoder().encode(text).byteLength;

describe('catch-up pages', () => {
  it('lists any number of long topic names in bounded pages, each name once, in order', () => {
    const names = Array.from(
      { length: 7_000 },
      (_, i) => `${String(i).padStart(5, '0')}${'t'.repeat(59)}.${'n'.repeat(454)}`,
    );
    const seen: string[] = [];
    let after: string | undefined;
    let pages = 0;
    do {
      const page = topicsPage(names, after);
      assert.ok(utf8(JSON.stringify(page)) <= 64 * 1024 + 1024, `page ${pages} is bounded`);
      seen.push(...page.topics);
      after = page.next ?? undefined;
      pages += 1;
    } while (after !== undefined && pages < 10_000);
    assert.deepEqual(seen, names);
    assert.ok(pages > 50, `${pages} pages`);
    assert.deepEqual(topicsPage([], undefined), { topics: [], next: null });
  });

  it('reads the stored topics once per catch-up stream, not once per page', async () => {
    const store = memoryStore();
    const shards = createShards(4);
    const names = Array.from({ length: 3_000 }, (_, i) => `${'n'.repeat(100)}${i}.t`);
    await store.append(
      names.map((topic, i) => ({ id: `m${i}`, topic, cursor: `${'0'.repeat(15)}1-n`, source: 's', ts: 0, data: 0 })),
    );
    let reads = 0;
    const counted: MessageStore = { ...store, topics: () => ((reads += 1), store.topics()) };
    const deps = { store: counted, shards, maxMessageBytes: 1024, log: createLogger('silent') };
    const wanted = [0, 2];
    const list = async (answer: ReturnType<typeof catchUpAnswer>) => {
      const seen: string[] = [];
      let after: string | undefined;
      let pages = 0;
      do {
        const text = await answer({ op: 'topics', shards: wanted, shard_count: 4, ...(after ? { after } : {}) });
        const page = JSON.parse(text as string) as { topics: string[]; next: string | null };
        seen.push(...page.topics);
        after = page.next ?? undefined;
        pages += 1;
      } while (after !== undefined);
      return { seen, pages };
    };
    const { seen, pages } = await list(catchUpAnswer(deps));
    assert.deepEqual(seen, names.filter((t) => wanted.includes(shards.of(t))).sort());
    assert.ok(pages > 2, `${pages} pages`);
    assert.equal(reads, 1, 'one store read for the whole listing');
    await store.append([
      { id: 'newer', topic: 'newer.t', cursor: `${'0'.repeat(15)}2-n`, source: 's', ts: 0, data: 0 },
    ]);
    const again = await list(catchUpAnswer(deps));
    assert.equal(reads, 2, 'the next catch-up stream reads the topics afresh');
    assert.ok(again.seen.includes('newer.t'), 'a topic stored since is listed'); // shard 2 of 4
    await store.close();
  });

  const envelope = (n: number, data: unknown): Envelope => ({
    id: `m${n}`,
    topic: 't',
    cursor: `${n.toString(16).padStart(16, '0')}-node`,
    source: 's',
    ts: n,
    data,
  });
  const MAX_ENVELOPE = 1024 * 1024 + 64 * 1024;

  it('cuts history pages by UTF-8 bytes and always fits one max-size message of wide characters', () => {
    const wide = '中'.repeat(349_000); // ~1 MiB in UTF-8, a third of that in UTF-16 units
    const page = [1, 2, 3].map((n) => envelope(n, wide));
    const frame = historyPage(page, 500, MAX_ENVELOPE);
    const parsed = JSON.parse(frame) as { messages: Envelope[]; next: string | null };
    assert.deepEqual(
      parsed.messages.map((m) => m.id),
      ['m1'],
    );
    assert.equal(parsed.next, page[0]?.cursor);
    assert.ok(utf8(frame) <= catchUpFrameBytes(MAX_ENVELOPE));
  });

  it('skips a stored message larger than the mesh carries, and moves on past it', () => {
    const page = [envelope(1, 'x'.repeat(MAX_ENVELOPE)), envelope(2, 'small')];
    const parsed = JSON.parse(historyPage(page, 500, MAX_ENVELOPE)) as { messages: Envelope[]; next: string | null };
    assert.deepEqual(
      parsed.messages.map((m) => m.id),
      ['m2'],
    );
    assert.equal(parsed.next, null);
    const full = JSON.parse(historyPage(page, 2, MAX_ENVELOPE)) as { next: string | null };
    assert.equal(full.next, page[1]?.cursor, 'a full page says where to go on');
  });

  it('reads no more than a page of bytes from the store for a history request, and pages on to the end', async () => {
    const store = memoryStore();
    const clock = createHybridClock('nodecatch0');
    const big = 'x'.repeat(300 * 1024);
    const stored: Envelope[] = Array.from({ length: 10 }, (_, i) => ({
      id: `big${i}`,
      topic: 't.big',
      cursor: clock.next(),
      source: 's',
      ts: i,
      data: `${i}${big}`,
    }));
    await store.append(stored);
    // What each store read held: the serving side must not load 500 of these for a 512 KiB page.
    let largest = 0;
    const watched: MessageStore = {
      ...store,
      history: async (topic, query) => {
        const page = await store.history(topic, query);
        largest = Math.max(
          largest,
          page.reduce((n, m) => n + JSON.stringify(m.data).length, 0),
        );
        return page;
      },
    };
    const answer = catchUpAnswer({
      store: watched,
      shards: createShards(4),
      maxMessageBytes: 1024 * 1024,
      log: createLogger('silent'),
    });
    const seen: string[] = [];
    let after = '0';
    for (let pages = 0; pages < 50; pages++) {
      const text = await answer({ op: 'history', topic: 't.big', after, limit: 500 });
      assert.equal(typeof text, 'string');
      const page = JSON.parse(text as string) as { messages: Envelope[]; next: string | null };
      seen.push(...page.messages.map((m) => m.id));
      if (page.next === null) break;
      after = page.next;
    }
    assert.deepEqual(
      seen,
      stored.map((m) => m.id),
      'every message once, in order, and the last page says so',
    );
    assert.ok(largest <= 2 * 300 * 1024 + 64, `a store read held ${largest} bytes of data`);
    await store.close();
  });
});

// A timeout per test only so that a catch-up that would wait for good fails instead of hanging.
describe('catch-up from a peer that stops answering', { timeout: 30_000 }, () => {
  const { node, stop } = loopbackNodes();
  after(stop);
  const shards = createShards(4);
  const from = (client: Libp2p, server: Libp2p['peerId'], signal?: AbortSignal) =>
    catchUpFrom(client as unknown as Host, shards, 64 * 1024, {
      peer: server,
      shards: [0, 1, 2, 3],
      after: '0',
      ingest: async () => 0,
      timeoutMs: 1_000,
      ...(signal ? { signal } : {}),
    });

  it('gives up on a frozen peer that never opens the stream, while the node runs on', async (t) => {
    // A process of its own, stopped with SIGSTOP: its connection stays up, it answers nothing.
    const child = spawn(process.execPath, [new URL('./catch-up-peer.fixture.ts', import.meta.url).pathname], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(async () => {
      child.kill('SIGKILL');
      if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
    });
    const [address] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
    const client = await node();
    const connection = await client.dial(multiaddr(address));
    child.kill('SIGSTOP');
    // The node's stop signal, as sync passes it, never fires here: only the timeout ends the wait.
    const stop = new AbortController();
    await assert.rejects(from(client, connection.remotePeer, stop.signal), (error: Error) => {
      assert.match(error.name, /AbortError|TimeoutError/);
      return true;
    });
    assert.equal(connection.status, 'open', 'the connection itself was left to liveness');
  });

  it('gives up on a peer that opens the stream and then never answers a request', async () => {
    const server = await node();
    let asked = 0;
    await server.handle(CATCH_UP_PROTOCOL, () => void (asked += 1), { runOnLimitedConnection: true });
    const client = await node();
    await client.dial(server.getMultiaddrs());
    await assert.rejects(from(client, server.peerId), /abort|timeout/i);
    assert.equal(asked, 1);
  });

  it('stops waiting for an answer when the node stops', async () => {
    const server = await node();
    await server.handle(CATCH_UP_PROTOCOL, () => {}, { runOnLimitedConnection: true });
    const client = await node();
    await client.dial(server.getMultiaddrs());
    const stop = new AbortController();
    const running = from(client, server.peerId, stop.signal);
    stop.abort(new Error('node stopping'));
    await assert.rejects(running, /node stopping/);
  });

  /**
   * A peer (buggy, or another implementation) answering every history page with `junk` (nothing,
   * by default) and `next(after)`.
   */
  const emptyPeer = async (next: (after: string) => string | null, junk: unknown[] = []) => {
    const server = await node();
    const asked = { pages: 0 };
    await server.handle(
      CATCH_UP_PROTOCOL,
      async (stream) => {
        const lp = lpStream(stream);
        for (;;) {
          const request = JSON.parse(new TextDecoder().decode((await lp.read()).subarray())) as Record<string, string>;
          const answer =
            request.op === 'topics'
              ? { topics: ['t.a'], next: null }
              : (asked.pages++, { messages: junk, next: next(request.after ?? '0') });
          await lp.write(new TextEncoder().encode(JSON.stringify(answer)));
        }
      },
      { runOnLimitedConnection: true },
    );
    const client = await node();
    await client.dial(server.getMultiaddrs());
    return { client, server, asked };
  };

  it('stops paging a peer whose answers go nowhere (it held the one catch-up slot for ever)', async () => {
    // A `next` that is no cursor ends the topic.
    const junk = await emptyPeer((after) => `${after}z`);
    assert.equal(await from(junk.client, junk.server.peerId), 0);
    assert.equal(junk.asked.pages, 1);
    // Cursors with nothing behind them: the catch-up fails after 16 empty pages, the topic not
    // taken as finished (the next catch-up starts from the progress kept).
    const empty = await emptyPeer(bump);
    await assert.rejects(from(empty.client, empty.server.peerId), /16 pages in a row with no message/);
    assert.equal(empty.asked.pages, 17);
  });

  it('stops paging a peer whose pages hold nothing of the asked topic, only another’s entries and nulls', async () => {
    const other = { id: 'b1', topic: 't.b', cursor: bump('0'), source: 's', ts: 1, data: 'b1' };
    // It answers `next: null` after 40 pages, so that the test ends either way (a peer out to
    // hold the slot never does): counted as pages with messages, all 41 were followed.
    const junk = await emptyPeer((after) => (junk.asked.pages > 40 ? null : bump(after)), [other, null]);
    await assert.rejects(from(junk.client, junk.server.peerId), /16 pages in a row with no message/);
    assert.equal(junk.asked.pages, 17);
  });

  /**
   * A peer (buggy, or another implementation) whose topic listing goes on: page n lists
   * `listed(n)` and names the next page after it, until page 40 (so that the test ends either
   * way; a peer out to hold the slot never ends). Every history page answers `messages`, done.
   */
  const endlessListing = async (listed: (page: number) => string[], messages: unknown[] = []) => {
    const server = await node();
    const asked = { listings: 0, histories: [] as string[] };
    await server.handle(
      CATCH_UP_PROTOCOL,
      async (stream) => {
        const lp = lpStream(stream);
        for (;;) {
          const request = JSON.parse(new TextDecoder().decode((await lp.read()).subarray())) as Record<string, string>;
          let answer: unknown;
          if (request.op === 'topics') {
            const page = asked.listings++;
            answer = { topics: listed(page), next: page >= 40 ? null : `t.p${String(page).padStart(4, '0')}` };
          } else {
            asked.histories.push(request.topic as string);
            answer = { messages, next: null };
          }
          await lp.write(new TextEncoder().encode(JSON.stringify(answer)));
        }
      },
      { runOnLimitedConnection: true },
    );
    const client = await node();
    await client.dial(server.getMultiaddrs());
    return { client, server, asked };
  };
  const fromShardOf = (client: Libp2p, server: Libp2p['peerId'], topic: string) =>
    catchUpFrom(client as unknown as Host, shards, 64 * 1024, {
      peer: server,
      shards: [shards.of(topic)],
      after: '0',
      ingest: async (envelopes) => envelopes.length,
      timeoutMs: 5_000,
    });

  it('stops listing topics from a peer whose listing names none of the asked shards, page after page', async () => {
    // The catch-up asks for the shard of `t.a`; every page lists only a topic of another shard.
    const elsewhere = Array.from({ length: 64 }, (_, i) => `x${i}.a`).find((t) => shards.of(t) !== shards.of('t.a'));
    const junk = await endlessListing(() => [elsewhere as string]);
    await assert.rejects(
      fromShardOf(junk.client, junk.server.peerId, 't.a'),
      /16 topic pages in a row with no new topic/,
    );
    assert.equal(junk.asked.listings, 17, 'the listing was followed no further than 16 pages that brought nothing');
    assert.deepEqual(junk.asked.histories, []);
  });

  it('reads a topic a peer lists again and again only once, and stops following such a listing', async () => {
    const message = { id: 'a1', topic: 't.a', cursor: bump('0'), source: 's', ts: 1, data: 'a1' };
    const junk = await endlessListing(() => ['t.a'], [message]);
    await assert.rejects(
      fromShardOf(junk.client, junk.server.peerId, 't.a'),
      /16 topic pages in a row with no new topic/,
    );
    assert.deepEqual(junk.asked.histories, ['t.a'], 'each listed topic is read once');
    assert.equal(junk.asked.listings, 18);
  });

  it('stops paging a peer that answers every page with the same message, and a `next` past it each time', async () => {
    // A page repeated: its message is at or before the page's `after`, so it moves nothing on.
    const same = { id: 'a1', topic: 't.a', cursor: bump('0'), source: 's', ts: 1, data: 'a1' };
    const junk = await emptyPeer((after) => (junk.asked.pages > 40 ? null : bump(after)), [same]);
    await assert.rejects(from(junk.client, junk.server.peerId), /16 pages in a row with no message/);
    assert.equal(junk.asked.pages, 18, 'the first page brought the message, the 17 after it nothing new');
  });

  it('stops paging a peer that repeats one message ahead of the page, with a `next` creeping up to it', async () => {
    // Past each page's `after` (so "onward" by the page's own start), yet the same message every
    // time: only a cursor past the highest one already taken from the topic is progress.
    const ahead = {
      id: 'a1',
      topic: 't.a',
      cursor: `${(1_000_000).toString(16).padStart(16, '0')}-peer`,
      source: 's',
      ts: 1,
      data: 'a1',
    };
    const junk = await emptyPeer((after) => (junk.asked.pages > 200 ? null : bump(after)), [ahead]);
    await assert.rejects(from(junk.client, junk.server.peerId), /16 pages in a row with no message/);
    assert.equal(junk.asked.pages, 18, 'the first page brought the message, the 17 after it nothing new');
  });

  it('counts what a peer sends of another topic than the one asked, and takes only the asked one', async () => {
    const server = await node();
    const envelope = (id: string, topic: string): Envelope => ({
      id,
      topic,
      cursor: bump('0'),
      source: 's',
      ts: Date.now(),
      data: id,
    });
    await server.handle(
      CATCH_UP_PROTOCOL,
      async (stream) => {
        const lp = lpStream(stream);
        for (;;) {
          const request = JSON.parse(new TextDecoder().decode((await lp.read()).subarray())) as Record<string, string>;
          const answer =
            request.op === 'topics'
              ? { topics: ['t.a'], next: null }
              : { messages: [envelope('a1', 't.a'), envelope('b1', 't.b'), envelope('b2', 't.b'), null], next: null };
          await lp.write(new TextEncoder().encode(JSON.stringify(answer)));
        }
      },
      { runOnLimitedConnection: true },
    );
    const client = await node();
    await client.dial(server.getMultiaddrs());
    const got: string[] = [];
    const wrong: [string, number][] = [];
    await catchUpFrom(client as unknown as Host, shards, 64 * 1024, {
      peer: server.peerId,
      shards: [0, 1, 2, 3],
      after: '0',
      ingest: async (envelopes) => (got.push(...envelopes.map((m) => (m as Envelope).id)), envelopes.length),
      onWrongTopic: (topic, count) => wrong.push([topic, count]),
      timeoutMs: 5_000,
    });
    assert.deepEqual(got, ['a1']);
    assert.deepEqual(wrong, [['t.a', 3]], 'the entries of another topic (or none) are counted, not dropped unseen');
  });

  it('catches up past a message larger than this node takes, from a peer that takes more', async () => {
    // The peer's mesh_max_message_bytes is 2 MiB, this node's 64 KiB: the peer's page holding a
    // 900 KiB message outgrew this node's frame limit, the catch-up failed at that cursor, and
    // every later round asked for the same page (the topic never caught up past it).
    const store = memoryStore();
    const clock = createHybridClock('wide');
    const at = (i: number, data: unknown): Envelope => ({
      id: `w${i}`,
      topic: 't.a',
      cursor: clock.next(),
      source: 's',
      ts: Date.now(),
      data,
    });
    await store.append([at(0, 0), at(1, 'x'.repeat(900 * 1024)), at(2, 2), at(3, 3)]);
    const server = await node();
    await serveCatchUp(server as unknown as Host, {
      store,
      shards,
      maxMessageBytes: 2 * 1024 * 1024,
      log: createLogger('silent'),
    });
    const client = await node();
    await client.dial(server.getMultiaddrs());
    const got: string[] = [];
    const skipped: [string, number][] = [];
    const fresh = await catchUpFrom(client as unknown as Host, shards, 64 * 1024, {
      peer: server.peerId,
      shards: [0, 1, 2, 3],
      after: '0',
      ingest: async (envelopes) => (got.push(...envelopes.map((m) => (m as Envelope).id)), envelopes.length),
      onSkipped: (topic, count) => skipped.push([topic, count]),
      timeoutMs: 5_000,
    });
    assert.deepEqual(got, ['w0', 'w2', 'w3']);
    assert.equal(fresh, 3);
    assert.deepEqual(skipped, [['t.a', 1]], 'the message left out is reported, not lost silently');
    await store.close();
  });

  it('answers a history request whose limit is not a whole number, from a SQLite store, on the same stream', async () => {
    // Another implementation may send any JSON number: SQLite refused a fractional LIMIT
    // ("datatype mismatch"), and the stream was reset without an answer.
    const store = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 0 } });
    const clock = createHybridClock('frac');
    await store.append(
      [0, 1, 2, 3].map((i) => ({
        id: `f${i}`,
        topic: 't.a',
        cursor: clock.next(),
        source: 's',
        ts: Date.now(),
        data: i,
      })),
    );
    const server = await node();
    await serveCatchUp(server as unknown as Host, {
      store,
      shards,
      maxMessageBytes: 64 * 1024,
      log: createLogger('silent'),
    });
    const client = await node();
    await client.dial(server.getMultiaddrs());
    const stream = await client.dialProtocol(server.peerId, CATCH_UP_PROTOCOL, { signal: AbortSignal.timeout(5_000) });
    const lp = lpStream(stream);
    const ask = async (request: unknown) => {
      await lp.write(new TextEncoder().encode(JSON.stringify(request)), { signal: AbortSignal.timeout(5_000) });
      const frame = await lp.read({ signal: AbortSignal.timeout(5_000) });
      return JSON.parse(new TextDecoder().decode(frame.subarray())) as { messages: Envelope[]; next: string | null };
    };
    const first = await ask({ op: 'history', topic: 't.a', after: '0', limit: 2.5 });
    assert.deepEqual(
      first.messages.map((m) => m.id),
      ['f0', 'f1'],
      'a limit of 2.5 reads 2',
    );
    const rest = await ask({ op: 'history', topic: 't.a', after: first.next, limit: 0.5 });
    assert.deepEqual(
      rest.messages.map((m) => m.id),
      ['f2'],
      'a limit between 0 and 1 reads one, as a negative one does',
    );
    await stream.close();
    await store.close();
  });

  it('answers a frame that is not a JSON object with an error, then closes the stream', async () => {
    const store = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 0 } });
    const server = await node();
    await serveCatchUp(server as unknown as Host, {
      store,
      shards,
      maxMessageBytes: 64 * 1024,
      log: createLogger('silent'),
    });
    const client = await node();
    await client.dial(server.getMultiaddrs());
    for (const frame of ['not json', '[{"op":"topics"}]', 'null', '\u00ff']) {
      const stream = await client.dialProtocol(server.peerId, CATCH_UP_PROTOCOL, {
        signal: AbortSignal.timeout(5_000),
      });
      const lp = lpStream(stream);
      await lp.write(new TextEncoder().encode(frame), { signal: AbortSignal.timeout(5_000) });
      const answer = JSON.parse(
        new TextDecoder().decode((await lp.read({ signal: AbortSignal.timeout(5_000) })).subarray()),
      ) as { error?: unknown };
      assert.equal(typeof answer.error, 'string', `an error answer to ${JSON.stringify(frame)}`);
      await assert.rejects(lp.read({ signal: AbortSignal.timeout(5_000) }), { name: 'UnexpectedEOFError' });
      await stream.close();
    }
    await store.close();
  });

  it('answers no malformed request, and reads on past stored messages too large to carry', async () => {
    const store = memoryStore();
    const answer = catchUpAnswer({ store, shards, maxMessageBytes: 1024, log: createLogger('silent') });
    for (const request of [
      { op: 'history', topic: 't.a', after: 'nope' },
      { op: 'history', topic: 'a..b', after: '0' },
      { op: 'history', topic: 't.a' },
    ]) {
      assert.deepEqual(await answer(request), { error: 'history: topic or after malformed' }, JSON.stringify(request));
    }
    // 20 messages over the mesh's limit (each larger than a page), then 5 it carries: the first
    // answer already holds those 5, not an empty page with a `next`.
    const clock = createHybridClock('big');
    const at = (i: number, data: unknown): Envelope => ({
      id: `m${i}`,
      topic: 't.a',
      cursor: clock.next(),
      source: 's',
      ts: Date.now(),
      data,
    });
    await store.append([
      ...Array.from({ length: 20 }, (_, i) => at(i, 'x'.repeat(600 * 1024))),
      ...Array.from({ length: 5 }, (_, i) => at(20 + i, i)),
    ]);
    const page = JSON.parse((await answer({ op: 'history', topic: 't.a', after: '0', limit: 500 })) as string) as {
      messages: Envelope[];
    };
    assert.deepEqual(
      page.messages.map((m) => m.id),
      ['m20', 'm21', 'm22', 'm23', 'm24'],
    );
  });
});

/** The next cursor after `cursor`, by its time part (a well-formed cursor a peer could send). */
function bump(cursor: string): string {
  const time = cursor === '0' ? 1 : Number.parseInt(cursor.slice(0, 16), 16) + 1;
  return `${time.toString(16).padStart(16, '0')}-peer`;
}
