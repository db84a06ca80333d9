import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { extractItems, hashId, toTimestamp } from './extract.ts';

describe('extractItems', () => {
  it('makes the whole payload one item with a content-hash id when no path is given', () => {
    const [item, ...rest] = extractItems({ price: 1 }, { topic: 't.x' }, 1234);
    assert.equal(rest.length, 0);
    assert.deepEqual(item, { id: hashId({ price: 1 }), ts: 1234, topic: 't.x', data: { price: 1 } });
    assert.equal(hashId({ price: 1 }), extractItems({ price: 1 }, { topic: 't.x' })[0]?.id);
  });

  it('finds no items, and no error, where items_path matches nothing (docs/sources.md: a poll with 0 items)', () => {
    for (const payload of [42, 'text', null, { error: 'rate limited' }, { data: {} }]) {
      assert.deepEqual(extractItems(payload, { topic: 't.x', items_path: '$.data[*]' }), [], JSON.stringify(payload));
    }
  });

  it('maps items, ids, timestamps and topics from JSONPath expressions', () => {
    const payload = {
      data: {
        rows: [
          { id: 7, at: '2026-01-01T00:00:00Z', kind: 'a.b', v: 1 },
          { id: 'x', at: 1_700_000_000, v: 2 },
        ],
      },
    };
    const items = extractItems(payload, {
      topic: 'fallback',
      items_path: '$.data.rows',
      id_path: '$.id',
      ts_path: '$.at',
      topic_path: '$.kind',
    });
    assert.deepEqual(
      items.map((i) => [i.id, i.ts, i.topic]),
      [
        ['7', Date.parse('2026-01-01T00:00:00Z'), 'a.b'],
        ['x', 1_700_000_000_000, 'fallback'],
      ],
    );
  });

  it('takes a topic_path that finds "" as no topic: the source\'s topic, as for a missing or non-string one', () => {
    // An empty string was taken as the topic and every such item dead-lettered as bad_topic,
    // where a missing field or a number fell back to `topic`.
    const items = extractItems([{ kind: '' }, { kind: 7 }, {}, { kind: 'a.b' }], {
      topic: 'fallback',
      items_path: '$[*]',
      topic_path: '$.kind',
    });
    assert.deepEqual(
      items.map((i) => i.topic),
      ['fallback', 'fallback', 'fallback', 'a.b'],
    );
  });

  it('accepts filter expressions and gives no items when nothing matches', () => {
    const payload = { rows: [{ v: 1 }, { v: 5 }] };
    assert.deepEqual(
      extractItems(payload, { topic: 't', items_path: '$.rows[?(@.v > 2)]' }).map((i) => i.data),
      [{ v: 5 }],
    );
    assert.deepEqual(extractItems('text', { topic: 't', items_path: '$.rows' }), []);
  });

  it('reads timestamps in ms, seconds and date strings', () => {
    assert.equal(toTimestamp(1_700_000_000_123), 1_700_000_000_123);
    assert.equal(toTimestamp('1700000000'), 1_700_000_000_000);
    assert.equal(toTimestamp('nonsense'), undefined);
    assert.equal(toTimestamp(null), undefined);
  });

  it('reads epoch timestamps in microseconds and nanoseconds, not as ms 50,000 years ahead', () => {
    assert.equal(toTimestamp(1_700_000_000_123_456), 1_700_000_000_123);
    assert.equal(toTimestamp('1700000000123456'), 1_700_000_000_123);
    assert.equal(toTimestamp('1700000000123456789'), 1_700_000_000_123);
    assert.equal(toTimestamp(1.7e18), 1_700_000_000_000);
    // The bounds between units: ms up to 1e14 (year 5138), then µs from 1e14 (1973).
    assert.equal(toTimestamp(99_999_999_999_999), 99_999_999_999_999);
    assert.equal(toTimestamp(100_000_000_000_000), 100_000_000_000);
  });
});
