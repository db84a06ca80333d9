import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import {
  assertDataDepth,
  assertDataSize,
  assertTs,
  createHybridClock,
  type Envelope,
  MAX_DATA_DEPTH,
} from '@anode/shared';
import { createHub } from '../hub/hub.ts';
import { memoryStore } from '../hub/test-hub.ts';
import { createLogger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { parseDefinition } from './definition.ts';
import { hashId } from './extract.ts';
import { createIngest } from './ingest.ts';
import { BUILTIN_KINDS } from './kinds/builtin-kinds.ts';
import { defineStep, type Step } from './plugin-api.ts';
import { createScheduler } from './scheduler.ts';
import { createSourceRuntime } from './source-runtime.ts';

const MAX_BYTES = 64 * 1024;
const DEAD = 'sources.dead';
const log = createLogger('silent');
const nested = (levels: number): unknown => {
  let value: unknown = 'bottom';
  for (let i = 0; i < levels; i++) value = { v: value };
  return value;
};

/** A real hub on an in-memory store, the ingest of one source, and what landed where. */
function setup(mapping: Record<string, unknown>, steps: Step[] = []) {
  const store = memoryStore();
  // The hub enforces the same limit as the ingest, as in a relay.
  const hub = createHub({
    store,
    clock: createHybridClock('nodelocal0'),
    metrics: createMetrics(),
    log,
    maxMessageBytes: MAX_BYTES,
  });
  const scheduler = createScheduler({ concurrency: 1 });
  const deadLetters: string[] = [];
  const ingest = createIngest({
    hub,
    steps: new Map(steps.map((s) => [s.name, s])),
    topicPipelines: [],
    deadLetterTopic: DEAD,
    stepTimeoutMs: 1_000,
    maxMessageBytes: MAX_BYTES,
    log,
    onDeadLetter: (_runtime, reason) => deadLetters.push(reason),
  });
  const definition = parseDefinition(
    { name: 'src', kind: 'http', url: 'http://127.0.0.1:1/x', topic: 't.items', ...mapping },
    BUILTIN_KINDS,
  );
  const runtime = createSourceRuntime(definition, BUILTIN_KINDS.get('http')!, {
    scheduler,
    log,
    ingest: (r, payload) => ingest(r, payload),
    onError() {},
  });
  const stored = async (topic: string) => (await store.history(topic, { limit: 100 })) as Envelope[];
  /** How many messages the topic holds, page by page. */
  const count = async (topic: string) => {
    let total = 0;
    for (let after: string | undefined, page: Envelope[]; ; after = page.at(-1)?.cursor) {
      page = await store.history(topic, { limit: 10_000, ...(after === undefined ? {} : { after }) });
      total += page.length;
      if (page.length < 10_000) return total;
    }
  };
  return {
    runtime,
    deadLetters,
    stored,
    count,
    ingest: (payload: unknown) => ingest(runtime, payload),
    async close() {
      scheduler.stop();
      await hub.writer.drain();
      await store.close();
    },
  };
}

/** The dead letter passes every check of the message contract at the default limits and at ours. */
const assertPublishable = (data: unknown) => {
  assertDataDepth(data);
  assertDataSize(data, { maxMessageBytes: MAX_BYTES });
};

describe('ingest: one bad item of a payload', () => {
  const open: { close(): Promise<void> }[] = [];
  after(async () => {
    for (const s of open) await s.close();
  });
  const start = (...args: Parameters<typeof setup>) => {
    const s = setup(...args);
    open.push(s);
    return s;
  };

  it('dead-letters an item nested deeper than the limit and publishes the others', async () => {
    const s = start({ items_path: '$[*]', id_path: '$.id' });
    const bad = { id: 'bad', v: nested(MAX_DATA_DEPTH + 1) };
    // No id: its id is the hash of its JSON, deeper than JSON.stringify can go.
    const unnamed = { v: nested(200_000) };
    await s.ingest([{ id: 'good1' }, bad, unnamed, { id: 'good2' }]);
    assert.deepEqual(
      (await s.stored('t.items')).map((m) => (m.data as { id: string }).id),
      ['good1', 'good2'],
    );
    const [letter, other, ...more] = await s.stored(DEAD);
    assert.equal(more.length, 0);
    assertPublishable(other?.data);
    assert.match(String((other?.data as { reason: string }).reason), /^bad_frame: data: nested deeper/);
    assert.equal((other?.data as { id: string }).id, hashId(unnamed));
    const data = letter?.data as Record<string, unknown>;
    assertPublishable(data);
    assert.match(String(data.reason), /^bad_frame: data: nested deeper than 1000 levels/);
    assert.equal(data.id, 'bad');
    assert.equal(data.data_omitted, true);
    assert.ok(typeof data.preview === 'string' && data.preview.startsWith('{"id":"bad","v":{"v":'));
    assert.ok((data.preview as string).length <= 1_100);
    assert.equal(s.runtime.health.deadLetters, 2);
    // The next poll of the same payload publishes nothing new and dead-letters nothing again.
    await s.ingest([{ id: 'good1' }, bad, unnamed, { id: 'good2' }]);
    assert.equal((await s.stored(DEAD)).length, 2);
  });

  it('dead-letters an oversized item, and one whose ts is ahead with data near the size limit', async () => {
    const s = start({ items_path: '$[*]', id_path: '$.id', ts_path: '$.ts' });
    const near = 'x'.repeat(MAX_BYTES - 60);
    const future = Date.now() + 24 * 3_600_000;
    await s.ingest([
      { id: 'good1' },
      { id: 'huge', blob: 'y'.repeat(MAX_BYTES + 1) },
      { id: 'ahead', ts: future, blob: near },
      { id: 'good2' },
    ]);
    assert.deepEqual(
      (await s.stored('t.items')).map((m) => (m.data as { id: string }).id),
      ['good1', 'good2'],
    );
    const letters = (await s.stored(DEAD)).map((m) => m.data as Record<string, unknown>);
    assert.deepEqual(
      letters.map((l) => [l.id, String(l.reason).split(':')[0], l.data_omitted]),
      [
        ['huge', 'too_large', true],
        ['ahead', 'bad_frame', true],
      ],
    );
    for (const letter of letters) assertPublishable(letter);
    assert.equal(letters[1]?.ts, future);
  });

  it('counts a dead letter once, when the payload comes again and the item is past dedup_window', async () => {
    const s = start({ items_path: '$[*]', id_path: '$.id', ts_path: '$.ts', dedup_window: 1 });
    const payload = [{ id: 'ahead', ts: Date.now() + 24 * 3_600_000 }, { id: 'good1' }, { id: 'good2' }];
    for (let poll = 0; poll < 3; poll++) await s.ingest(payload);
    assert.equal((await s.stored(DEAD)).length, 1);
    assert.equal(s.deadLetters.length, 1);
    assert.equal(s.runtime.status().dead_letters, 1);
  });

  it('keeps the item whole in the dead letter when that fits the contract', async () => {
    const poison = defineStep({
      name: 'poison',
      kind: 'filter',
      run: (m) => {
        if ((m.data as { poison?: boolean }).poison) throw new Error('poisoned');
        return true;
      },
    });
    const s = start({ items_path: '$[*]', id_path: '$.id', pipeline: ['poison'] }, [poison]);
    await s.ingest([{ id: 'a' }, { id: 'b', poison: true }]);
    const [letter] = await s.stored(DEAD);
    assert.deepEqual(letter?.data, {
      reason: 'Error: poisoned',
      step: 'poison',
      source: 'src',
      topic: 't.items',
      id: 'b',
      ts: (letter?.data as { ts: number }).ts,
      data: { id: 'b', poison: true },
    });
    assertTs((letter?.data as { ts: number }).ts, {});
    assert.deepEqual(
      (await s.stored('t.items')).map((m) => (m.data as { id: string }).id),
      ['a'],
    );
  });

  it('dead-letters an item too deep to search, without blowing the stack', async () => {
    // `$..when` walks the item recursively: RangeError on this one, which goes alone.
    const s = start({ items_path: '$[*]', id_path: '$.id', ts_path: '$..when' });
    const deep = { v: nested(200_000) };
    await s.ingest([{ id: 'good1' }, deep, { id: 'good2' }]);
    assert.deepEqual(
      (await s.stored('t.items')).map((m) => (m.data as { id: string }).id),
      ['good1', 'good2'],
    );
    const letters = (await s.stored(DEAD)).map((m) => m.data as Record<string, unknown>);
    assert.equal(letters.length, 1);
    assertPublishable(letters[0]);
    assert.match(String(letters[0]?.reason), /^RangeError: /);
    assert.equal(letters[0]?.step, '(extract)');
    assert.match(String(letters[0]?.id), /^h[A-Za-z0-9_-]{22}$/);
    // The same item gets the same id on the next poll: it is not dead-lettered again.
    await s.ingest([{ id: 'good1' }, deep, { id: 'good2' }]);
    assert.equal((await s.stored(DEAD)).length, 1);
  });

  it('dead-letters the whole payload once when a recursive items_path cannot search it, and does not fail', async () => {
    const s = start({ items_path: '$..entries', id_path: '$.id' });
    const payload = { feed: { entries: [{ id: 'good1' }, { id: 'bad', deep: nested(20_000) }, { id: 'good2' }] } };
    await s.ingest(payload);
    const letters = (await s.stored(DEAD)).map((m) => m.data as Record<string, unknown>);
    assert.equal(letters.length, 1);
    assertPublishable(letters[0]);
    assert.equal(letters[0]?.step, '(extract)');
    assert.match(String(letters[0]?.reason), /^RangeError: /);
    // The same payload next poll: the same id, not dead-lettered again.
    await s.ingest(payload);
    assert.equal((await s.stored(DEAD)).length, 1);
  });
});

describe('ingest: what reaches the store', () => {
  const open: { close(): Promise<void> }[] = [];
  after(async () => {
    for (const s of open) await s.close();
  });

  it('stores a payload with more items for one topic than the writer lets wait (50,000)', async () => {
    const s = setup({ items_path: '$[*]', id_path: '$.id' });
    open.push(s);
    const ITEMS = 60_000;
    await s.ingest(Array.from({ length: ITEMS }, (_, id) => ({ id })));
    assert.equal(await s.count('t.items'), ITEMS);
    assert.equal(s.runtime.health.items, ITEMS);
  });

  it('counts as items only the messages new to the store, not those it forgot and sends again', async () => {
    // A dedup window of 2: three of the five ids are forgotten and published again next poll.
    const s = setup({ items_path: '$[*]', id_path: '$.id', dedup_window: 2 });
    open.push(s);
    const payload = ['a', 'b', 'c', 'd', 'e'].map((id) => ({ id }));
    await s.ingest(payload);
    await s.ingest(payload);
    assert.equal(await s.count('t.items'), 5);
    assert.equal(s.runtime.health.items, 5);
    assert.equal(s.runtime.status().items, 5);
  });
});

describe('ingest: item ids', () => {
  const open: { close(): Promise<void> }[] = [];
  after(async () => {
    for (const s of open) await s.close();
  });

  it('takes an empty id as no id: each item gets its content hash instead of all sharing ""', async () => {
    const s = setup({ items_path: '$[*]', id_path: '$.id' });
    open.push(s);
    const payload = [
      { id: '', v: 1 },
      { id: '', v: 2 },
      { id: 'x', v: 3 },
    ];
    await s.ingest(payload);
    await s.ingest(payload); // polled again: nothing twice
    assert.deepEqual(
      (await s.stored('t.items')).map((m) => (m.data as { v: number }).v),
      [1, 2, 3],
    );
    assert.equal(s.runtime.health.items, 3);
    assert.ok(s.runtime.seen.has(hashId({ id: '', v: 2 })));
  });

  it('refuses an empty id_path when the definition is parsed', () => {
    assert.throws(
      () =>
        parseDefinition(
          { name: 's', kind: 'http', url: 'http://127.0.0.1:1/', topic: 't', id_path: '' },
          BUILTIN_KINDS,
        ),
      /^SourceDefinitionError: source s: id_path: /,
    );
  });
});
