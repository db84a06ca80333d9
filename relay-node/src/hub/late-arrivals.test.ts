import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Envelope } from '@anode/shared';
import { createLateArrivals } from './late-arrivals.ts';

const T = 1_800_000_000_000;
const cursor = (ms: number, node = 'nodea') => `${ms.toString(16).padStart(12, '0')}0000-${node}`;
const message = (id: string, ms: number, topic = 'prices.btc'): Envelope => ({
  id,
  topic,
  cursor: cursor(ms),
  source: 's',
  ts: ms,
  data: null,
});

describe('late arrivals', () => {
  it('remembers remote messages older than what their topic delivered, or minted long before arriving', () => {
    let now = T;
    const late = createLateArrivals({ now: () => now });
    late.observe(message('on-time', T - 10), cursor(T - 20));
    late.observe(message('first', T - 10), undefined);
    late.observe(message('out-of-order', T - 30), cursor(T - 20));
    late.observe(message('caught-up', T - 5_000), undefined);
    assert.equal(late.size, 2);
    now += 10;
    assert.deepEqual(
      late.replay('prices.>', cursor(T)).map((m) => m.id),
      ['caught-up', 'out-of-order'],
      'in cursor order',
    );
  });

  it('replays only what a resume from `after` could have skipped, for the subscribed pattern', () => {
    const late = createLateArrivals({ now: () => T });
    late.observe(message('old', T - 5_000), undefined);
    late.observe(message('other-topic', T - 5_000, 'orders.eu'), undefined);
    assert.deepEqual(
      late.replay('prices.btc', cursor(T - 1_000)).map((m) => m.id),
      ['old'],
    );
    assert.deepEqual(late.replay('prices.btc', cursor(T - 6_000)), [], 'newer than after: history has it');
    assert.deepEqual(late.replay('prices.btc', cursor(T - 3_600_000)), [], 'arrived long after after was minted');
  });

  it('forgets after the window, and beyond its capacity', () => {
    let now = T;
    const late = createLateArrivals({ now: () => now, windowMs: 1_000, maxEntries: 2 });
    for (const id of ['a', 'b', 'c']) late.observe(message(id, T - 5_000), undefined);
    assert.deepEqual(
      late.replay('>', cursor(T)).map((m) => m.id),
      ['b', 'c'],
    );
    now += 2_000;
    assert.deepEqual(late.replay('>', cursor(T)), []);
  });

  it('keeps at most maxBytes of data, oldest forgotten first', () => {
    const late = createLateArrivals({ now: () => T, maxBytes: 25_000 });
    for (const id of ['a', 'b', 'c', 'd'])
      late.observe({ ...message(id, T - 5_000), data: 'x'.repeat(10_000) }, undefined);
    assert.deepEqual(
      late.replay('>', cursor(T)).map((m) => m.id),
      ['c', 'd'],
    );
    assert.ok(late.bytes <= 25_000, `${late.bytes} bytes kept`);
    // One larger than the whole budget is not kept at all.
    late.observe({ ...message('huge', T - 5_000), data: 'x'.repeat(30_000) }, undefined);
    assert.deepEqual(late.replay('>', cursor(T)), []);
    assert.equal(late.bytes, 0);
  });
});
