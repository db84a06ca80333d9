import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareCursors, type MessageStore } from '@anode/shared';
import { createSqliteStore } from '../storage/embedded/sqlite-store.ts';
import { recorder, testHub } from './test-hub.ts';

const claims = { pub: ['>'], sub: ['>'] };
const expired = (error: Error & { code?: string }) => error.code === 'cursor_expired';

/**
 * Test double around a real embedded store: once armed, the next page read is followed by a
 * retention sweep before the read returns, as when the writer thread commits a sweep just after
 * a page was read (before the relay reads anything else).
 */
function sweepAfterNextRead(inner: MessageStore, sweepAt?: () => number) {
  const state = { armed: false, swept: 0 };
  const store: MessageStore = {
    ...inner,
    async history(topic, query) {
      const page = await inner.history(topic, query);
      if (state.armed && query.limit > 1) {
        state.armed = false;
        state.swept = await inner.sweep(sweepAt?.());
      }
      return page;
    },
  };
  return { store, state };
}

/** A hub on an embedded store keeping `keep` messages, with `count` published to `t`. */
async function published(keep: number, count: number) {
  const inner = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: keep } });
  const { store, state } = sweepAfterNextRead(inner);
  const hub = testHub(store);
  const acks = await hub.publish(
    't',
    Array.from({ length: count }, (_, n) => ({ data: n })),
    { via: 'http', claims },
  );
  await hub.writer.drain();
  return { inner, hub, state, acks, cursor: (n: number) => acks[n]?.cursor as string };
}

describe('hub: a history page read whole before retention passed its cursor', () => {
  it('is answered, not refused cursor_expired; the page after it too', async () => {
    const { inner, hub, state, acks, cursor } = await published(250, 300);
    try {
      state.armed = true;
      const page = await hub.history('t', cursor(9), 100);
      assert.ok(state.swept > 0, 'the sweep ran after the read');
      assert.ok(compareCursors((await inner.trimmedThrough('t')) as string, cursor(9)) > 0, 'and passed `after`');
      assert.deepEqual(
        page.messages.map((m) => m.id),
        acks.slice(10, 110).map((a) => a.id),
      );
      assert.equal(page.next, cursor(109));
      // The trim (through message 49) is below `next`: the client pages on with no gap.
      const rest = await hub.history('t', page.next as string, 1000);
      assert.deepEqual(
        rest.messages.map((m) => m.id),
        acks.slice(110).map((a) => a.id),
      );
      // A cursor really below the mark is still refused.
      await assert.rejects(hub.history('t', cursor(9), 100), expired);
    } finally {
      await inner.close();
    }
  });

  it('is refused cursor_expired on the next page when retention passed that page too', async () => {
    const { inner, hub, state, cursor } = await published(100, 300);
    try {
      state.armed = true;
      const page = await hub.history('t', cursor(9), 100);
      assert.equal(page.messages.length, 100, 'the page read whole is answered');
      await assert.rejects(hub.history('t', page.next as string, 100), expired, 'trimmed through message 199');
    } finally {
      await inner.close();
    }
  });
});

describe('hub: a resume whose page was read whole before retention passed its cursor', () => {
  it('sends every message and goes live, not cursor_expired', async () => {
    const { inner, hub, state, acks, cursor } = await published(250, 300);
    try {
      state.armed = true;
      const reader = recorder('resumer');
      await hub.subscribe(reader, 't', cursor(9));
      assert.ok(state.swept > 0, 'the sweep ran after the first page was read');
      assert.deepEqual(
        reader.ids(),
        acks.slice(10).map((a) => a.id),
      );
    } finally {
      await inner.close();
    }
  });

  it('still ends cursor_expired, after the page it read whole, when retention passed what it had not read', async () => {
    // One topic is read in pages of 500: the sweep after the first one trims through message 1,099.
    const { inner, hub, state, acks, cursor } = await published(100, 1_200);
    try {
      state.armed = true;
      const reader = recorder('resumer');
      await assert.rejects(hub.subscribe(reader, 't', cursor(9)), expired);
      assert.deepEqual(
        reader.ids(),
        acks.slice(10, 510).map((a) => a.id),
        'the first page, and nothing past the hole',
      );
    } finally {
      await inner.close();
    }
  });
});

describe('hub: a history page cut by bytes, then retention deleting everything after it', () => {
  const maxAgeMs = 60_000;
  /** A hub on an embedded store keeping `maxAgeMs`, whose armed sweep expires every message. */
  async function aged(data: string, count: number) {
    const inner = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs, maxMessages: 0 } });
    const { store, state } = sweepAfterNextRead(inner, () => Date.now() + 10 * maxAgeMs);
    const hub = testHub(store);
    const acks = await hub.publish(
      't',
      Array.from({ length: count }, () => ({ data })),
      { via: 'http', claims },
    );
    await hub.writer.drain();
    return { inner, hub, state, acks, cursor: (n: number) => acks[n]?.cursor as string };
  }

  it('says `next`, and the page after it is refused cursor_expired (answered `next: null`, the gap was silent)', async () => {
    // Four of ~900 KB fit in HISTORY_PAGE_BYTES (4 MiB): the page from message 0 ends at 4 of 9.
    const { inner, hub, state, cursor } = await aged('x'.repeat(900 * 1024), 10);
    try {
      state.armed = true;
      const page = await hub.history('t', cursor(0), 100);
      assert.ok(state.swept > 0, 'the sweep ran after the read');
      assert.equal(page.messages.length, 4, 'the page was cut by bytes');
      assert.equal(page.next, cursor(4), 'more followed the page when it was read');
      await assert.rejects(hub.history('t', page.next as string, 100), expired);
    } finally {
      await inner.close();
    }
  });

  it('still ends `next: null` when the page held the last message', async () => {
    const { inner, hub, state, acks, cursor } = await aged('small', 10);
    try {
      state.armed = true;
      const page = await hub.history('t', cursor(0), 100);
      assert.ok(state.swept > 0, 'the sweep ran after the read');
      assert.deepEqual(
        page.messages.map((m) => m.id),
        acks.slice(1).map((a) => a.id),
      );
      assert.equal(page.next, null);
    } finally {
      await inner.close();
    }
  });
});
