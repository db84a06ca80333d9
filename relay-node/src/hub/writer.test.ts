import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AnodeError, AppendResult, Envelope, MessageStore } from '@anode/shared';
import { createLogger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { StoreRejectedError } from '../storage/store-rejected.ts';
import { createWriter, type Writer } from './writer.ts';

/**
 * A store whose appends answer only when the test says so (a test double: it stands for a store
 * that is slow, answers out of order, or fails one batch). It records when each append started.
 */
function heldStore(pipelinedAppends: boolean) {
  const calls: { topics: string[]; answer(error?: Error): void }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const store = {
    kind: 'held',
    pipelinedAppends,
    append(messages: readonly Envelope[]): Promise<AppendResult[]> {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      return new Promise((resolve, reject) => {
        calls.push({
          topics: messages.map((m) => m.topic),
          answer(error) {
            inFlight -= 1;
            if (error) reject(error);
            else resolve(messages.map((envelope) => ({ envelope, inserted: true })));
          },
        });
      });
    },
  } as unknown as MessageStore;
  return { store, calls, maxInFlight: () => maxInFlight };
}

const message = (n: number): Envelope => ({
  id: `id${n}`,
  topic: `t${n}`,
  cursor: String(n).padStart(8, '0'),
  source: 's',
  ts: n,
  data: n,
});

const writerOn = (store: MessageStore, committed: string[]) =>
  createWriter({
    store,
    metrics: createMetrics(),
    log: createLogger('silent'),
    maxBatch: 2,
    onCommitted: (inserted) => committed.push(...inserted.map((m) => m.topic)),
  });

/** Six publishes of one message each, queued in one tick: three batches of two. */
const queueSix = (writer: Writer) =>
  Array.from({ length: 6 }, (_, n) =>
    writer.write([message(n)]).then(
      () => `ok ${n}`,
      (error: Error) => `${error.message.split(';')[0]} ${n}`,
    ),
  );

const until = async (condition: () => boolean) => {
  for (let i = 0; i < 100 && !condition(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(condition(), 'condition not reached');
};

test('with a backlog, a pipelined store gets the next batch before the previous one answers', async () => {
  const { store, calls, maxInFlight } = heldStore(true);
  const committed: string[] = [];
  const outcomes = queueSix(writerOn(store, committed));
  await until(() => calls.length === 2);
  assert.deepEqual(
    calls.map((c) => c.topics),
    [
      ['t0', 't1'],
      ['t2', 't3'],
    ],
  );
  // The second batch answers first: its fan-out still waits for the first one's.
  calls[1]?.answer();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(committed, [], 'nothing fanned out before the first batch answered');
  calls[0]?.answer(new Error('disk full'));
  await until(() => calls.length === 3);
  calls[2]?.answer();
  assert.deepEqual(await Promise.all(outcomes), [
    'storage is unavailable 0',
    'storage is unavailable 1',
    'ok 2',
    'ok 3',
    'ok 4',
    'ok 5',
  ]);
  assert.deepEqual(committed, ['t2', 't3', 't4', 't5']);
  assert.equal(maxInFlight(), 2, 'two batches in flight at most');
});

test('a store without pipelined appends gets one batch at a time', async () => {
  const { store, calls, maxInFlight } = heldStore(false);
  const committed: string[] = [];
  const outcomes = queueSix(writerOn(store, committed));
  for (let batch = 0; batch < 3; batch++) {
    await until(() => calls.length === batch + 1);
    await new Promise((r) => setImmediate(r));
    assert.equal(calls.length, batch + 1, 'the next batch waits for this one');
    calls[batch]?.answer();
  }
  assert.deepEqual(await Promise.all(outcomes), ['ok 0', 'ok 1', 'ok 2', 'ok 3', 'ok 4', 'ok 5']);
  assert.deepEqual(committed, ['t0', 't1', 't2', 't3', 't4', 't5']);
  assert.equal(maxInFlight(), 1);
});

test('settled() waits for every batch in flight', async () => {
  const { store, calls } = heldStore(true);
  const committed: string[] = [];
  const writer = writerOn(store, committed);
  const outcomes = queueSix(writer);
  await until(() => calls.length === 2);
  let settled = false;
  void writer.settled().then(() => (settled = true));
  calls[0]?.answer();
  await until(() => committed.length === 2);
  assert.equal(settled, false, 'the second batch is still in flight');
  calls[1]?.answer();
  await until(() => calls.length === 3);
  calls[2]?.answer();
  await Promise.all(outcomes);
  await until(() => settled);
});

test('a write made as the previous one is answered is written too', async () => {
  for (const pipelinedAppends of [true, false]) {
    const store = {
      kind: 'immediate',
      pipelinedAppends,
      append: async (messages: readonly Envelope[]) => messages.map((envelope) => ({ envelope, inserted: true })),
    } as unknown as MessageStore;
    const committed: string[] = [];
    const writer = writerOn(store, committed);
    // The next write comes 0 to 9 microtasks after the answer: one of them lands while the
    // flush that wrote the previous one is on its way out.
    const answered = (write: Promise<unknown>, what: string) =>
      Promise.race([
        write.then(() => 'ok'),
        new Promise<string>((r) => setTimeout(() => r(`${what}: not answered`), 1_000).unref()),
      ]);
    for (let ticks = 0; ticks < 10; ticks++) {
      const second = writer.write([message(ticks)]).then(async () => {
        for (let i = 0; i < ticks; i++) await null;
        return writer.write([message(100 + ticks)]);
      });
      assert.equal(await answered(second, `a write ${ticks} ticks after an answer`), 'ok');
    }
    assert.equal(committed.length, 20);
  }
});

test('cursor conflicts: the first is logged at once, the rest of its window when the window ends', async () => {
  // A store that refuses every message for a taken cursor (a test double of a twin's writes).
  const store = {
    kind: 'conflicting',
    append: async (messages: readonly Envelope[]): Promise<AppendResult[]> =>
      messages.map((envelope) => ({ envelope, inserted: false, conflict: true })),
  } as unknown as MessageStore;
  const lines: { messages: number; msg: string }[] = [];
  const writer = createWriter({
    store,
    metrics: createMetrics(),
    log: createLogger('error', { write: (line: string) => void lines.push(JSON.parse(line)) }),
    conflictLogMs: 300,
    onCommitted: () => {},
  });
  const refused = (n: number) => writer.write([message(n)], 'remote');
  await refused(1);
  assert.deepEqual(
    lines.map((l) => l.messages),
    [1],
  );
  await refused(2);
  await refused(3);
  assert.equal(lines.length, 1, 'within the window: counted, not logged yet');
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(
    lines.map((l) => l.messages),
    [1, 2],
    'the window’s two were logged when it ended, though no conflict came after them',
  );
  assert.match(lines[1]?.msg ?? '', /another message holds their cursor/);
});

test('a message the store refuses for good refuses only its own write: the batch is halved until it stands alone', async () => {
  // A test double for Cassandra refusing a mutation over its size limit: any append holding the
  // message whose data is 'huge' fails with StoreRejectedError; the rest are stored.
  const appended: number[] = [];
  const store = {
    kind: 'refusing',
    async append(messages: readonly Envelope[]): Promise<AppendResult[]> {
      appended.push(messages.length);
      if (messages.some((m) => m.data === 'huge')) {
        throw new StoreRejectedError('too_large', 'mutation over max_mutation_size');
      }
      return messages.map((envelope) => ({ envelope, inserted: true }));
    },
  } as unknown as MessageStore;
  const committed: string[] = [];
  const writer = createWriter({
    store,
    metrics: createMetrics(),
    log: createLogger('silent'),
    onCommitted: (inserted) => committed.push(...inserted.map((m) => m.topic)),
  });
  const huge = { ...message(1), data: 'huge' };
  const outcomes = await Promise.all(
    [message(0), huge, message(2)].map((m) =>
      writer.write([m]).then(
        () => 'stored',
        (error: AnodeError) => error.code,
      ),
    ),
  );
  assert.deepEqual(outcomes, ['stored', 'too_large', 'stored']);
  assert.deepEqual(committed, ['t0', 't2'], 'the others fanned out, in order');
  assert.deepEqual(appended, [3, 2, 1, 1, 1], 'one batch, then halves: [0, huge] → [0], [huge]; then [2]');
  assert.equal(writer.queued, 0);
});

/**
 * A test double for Cassandra refusing a mutation over its size limit after writing the batch's
 * other rows (an unlogged batch is not atomic): an append holding 'huge' stores the rest, then
 * fails; a later append of a stored id answers with the stored copy (inserted: false).
 */
function partialStore() {
  const stored = new Map<string, Envelope>();
  const appended: number[] = [];
  const store = {
    kind: 'partial',
    async append(messages: readonly Envelope[]): Promise<AppendResult[]> {
      appended.push(messages.length);
      const results = messages.map((envelope): AppendResult => {
        const held = stored.get(envelope.id);
        if (held) return { envelope: held, inserted: false };
        if (envelope.data !== 'huge') stored.set(envelope.id, envelope);
        return { envelope, inserted: true };
      });
      if (messages.some((m) => m.data === 'huge')) {
        throw new StoreRejectedError('too_large', 'mutation over max_mutation_size');
      }
      return results;
    },
  } as unknown as MessageStore;
  return { store, stored, appended };
}

test('writes the refused batch had already stored are still new when written again: fanned out, then acked', async () => {
  const { store } = partialStore();
  const committed: string[] = [];
  const writer = createWriter({
    store,
    metrics: createMetrics(),
    log: createLogger('silent'),
    onCommitted: (inserted) => committed.push(...inserted.map((m) => m.topic)),
  });
  const outcomes = await Promise.all(
    [message(0), { ...message(1), data: 'huge' }, message(2)].map((m) =>
      writer.write([m]).then(
        (results) => (results[0]?.inserted ? 'new' : 'old'),
        (error: AnodeError) => error.code,
      ),
    ),
  );
  assert.deepEqual(outcomes, ['new', 'too_large', 'new']);
  assert.deepEqual(committed, ['t0', 't2'], 'delivered live (and gossiped) although the failed batch stored them');
});

test('a message from elsewhere the store refuses for good is left out of its batch; the rest are stored', async () => {
  const { store, stored, appended } = partialStore();
  const committed: string[] = [];
  const writer = createWriter({
    store,
    metrics: createMetrics(),
    log: createLogger('silent'),
    onCommitted: (inserted) => committed.push(...inserted.map((m) => m.topic)),
  });
  // A catch-up page of three, the middle one too large for this store.
  const page = [message(0), { ...message(1), data: 'huge' }, message(2)];
  const results = await writer.write(page, 'remote');
  assert.deepEqual(
    results.map((r) => r.inserted),
    [true, false, true],
  );
  assert.deepEqual([...stored.keys()], ['id0', 'id2']);
  assert.deepEqual(committed, ['t0', 't2']);
  assert.deepEqual(appended, [3, 2, 1, 1, 1], 'the page, then halves down to the refused message');
});

test('one refused write among hundreds costs a few appends, not one per write', async () => {
  const { store, appended } = partialStore();
  const committed: string[] = [];
  const writer = createWriter({
    store,
    metrics: createMetrics(),
    log: createLogger('silent'),
    onCommitted: (inserted) => committed.push(...inserted.map((m) => m.id)),
  });
  const messages = Array.from({ length: 300 }, (_, i) => (i === 217 ? { ...message(i), data: 'huge' } : message(i)));
  const outcomes = await Promise.all(
    messages.map((m) =>
      writer.write([m]).then(
        () => 'stored',
        (error: AnodeError) => error.code,
      ),
    ),
  );
  assert.deepEqual(
    outcomes.flatMap((o, i) => (o === 'stored' ? [] : [`${i} ${o}`])),
    ['217 too_large'],
  );
  assert.deepEqual(
    committed,
    messages.filter((_, i) => i !== 217).map((m) => m.id),
    'every other write fanned out once, in order',
  );
  assert.ok(appended.length <= 2 + 2 * Math.ceil(Math.log2(300)), `appends: ${appended.join(' ')}`);
});

test('an outage while a refused page from elsewhere is halved refuses the page as a whole', async () => {
  let calls = 0;
  const store = {
    kind: 'refusing then away',
    async append(messages: readonly Envelope[]): Promise<AppendResult[]> {
      calls += 1;
      if (calls === 1) throw new StoreRejectedError('too_large', 'mutation over max_mutation_size');
      if (calls === 2) return messages.map((envelope) => ({ envelope, inserted: true }));
      throw new Error('connection refused');
    },
  } as unknown as MessageStore;
  const writer = createWriter({ store, metrics: createMetrics(), log: createLogger('silent'), onCommitted: () => {} });
  const page = [message(0), { ...message(1), data: 'huge' }, message(2), message(3)];
  await assert.rejects(writer.write(page, 'remote'), (error: AnodeError) => error.code === 'unavailable');
});

test('a split local write (an edge link frame) leaves out the refused message, naming it, and delivers the rest', async () => {
  const { store } = partialStore();
  const committed: string[] = [];
  const writer = createWriter({
    store,
    metrics: createMetrics(),
    log: createLogger('silent'),
    onCommitted: (inserted, origin) => committed.push(...inserted.map((m) => `${m.topic} ${origin}`)),
  });
  const frame = [message(0), { ...message(1), data: 'huge' }, message(2)];
  const results = await writer.write(frame, 'local', { split: true });
  assert.deepEqual(
    results.map((r) => [r.envelope.id, r.inserted, r.refused ? (r.refused as AnodeError).code : null]),
    [
      ['id0', true, null],
      ['id1', false, 'too_large'],
      ['id2', true, null],
    ],
  );
  assert.deepEqual(
    committed,
    ['t0 local', 't2 local'],
    'delivered and gossiped although the refused batch stored them',
  );
  // Without split, a local write is refused whole.
  await assert.rejects(writer.write([message(3), { ...message(4), data: 'huge' }], 'local'), { code: 'too_large' });
});

test('a split write of one message the store refuses is answered with refused, alone or batched with others', async () => {
  const { store } = partialStore();
  const writer = createWriter({ store, metrics: createMetrics(), log: createLogger('silent'), onCommitted: () => {} });
  const alone = await writer.write([{ ...message(1), data: 'huge' }], 'local', { split: true });
  assert.deepEqual(
    alone.map((r) => [r.envelope.id, r.inserted, (r.refused as AnodeError | undefined)?.code]),
    [['id1', false, 'too_large']],
  );
  // Batched with a client's publish: the publish is stored, the edge frame answered.
  const [publish, frame] = await Promise.all([
    writer.write([message(2)]),
    writer.write([{ ...message(3), data: 'huge' }], 'local', { split: true }),
  ]);
  assert.equal(publish[0]?.inserted, true);
  assert.equal((frame[0]?.refused as AnodeError | undefined)?.code, 'too_large');
});

test('oldestPending: the oldest cursor still to be fanned out, none once committed or refused', async () => {
  const { store, calls } = heldStore(false);
  const committed: string[] = [];
  const writer = writerOn(store, committed);
  assert.equal(writer.oldestPending(), undefined);
  const first = writer.write([message(5), message(3)]);
  // From elsewhere, older than what waits; and one delivered already (live gossip) is left out.
  const older = writer.write([message(2)], 'remote');
  const delivered = writer.write([message(1)], 'remote', { delivered: true });
  assert.equal(writer.oldestPending(), message(2).cursor);
  await new Promise((resolve) => setImmediate(resolve));
  calls[0]?.answer(); // the first batch (two messages: maxBatch is 2)
  await first;
  assert.equal(writer.oldestPending(), message(2).cursor, 'the older write still waits');
  await new Promise((resolve) => setImmediate(resolve));
  calls[1]?.answer(new Error('down')); // the other two, in one batch
  await assert.rejects(older);
  await assert.rejects(delivered);
  assert.equal(writer.oldestPending(), undefined, 'refused: nothing of it will be fanned out');
  const later = writer.write([message(9)]);
  assert.equal(writer.oldestPending(), message(9).cursor);
  await new Promise((resolve) => setImmediate(resolve));
  calls[2]?.answer();
  await later;
  assert.equal(writer.oldestPending(), undefined);
});
