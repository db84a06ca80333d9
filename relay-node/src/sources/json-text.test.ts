import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hashId } from './extract.ts';
import { jsonPreview, writeJson } from './json-text.ts';

const text = (value: unknown) => {
  let out = '';
  writeJson(value, (piece) => ((out += piece), true));
  return out;
};
const nested = (levels: number): unknown => {
  let value: unknown = [1];
  for (let i = 0; i < levels; i++) value = { v: value };
  return value;
};

describe('JSON text without recursion', () => {
  it('writes what JSON.stringify writes', () => {
    const values: unknown[] = [
      null,
      0,
      -1.5e300,
      'é "q" \u2028 \ud83d\ude00',
      true,
      [],
      {},
      [1, undefined, () => 1, null, [[]]],
      { a: 1, skip: undefined, f: () => 1, b: { c: [{ d: 'x' }] }, '': NaN, when: new Date(0) },
      nested(3_000),
    ];
    for (const value of values) assert.equal(text(value), JSON.stringify(value));
  });

  it('hashes data deeper than JSON.stringify can go, to the digest the text would have', () => {
    assert.equal(hashId(nested(3_000)), hashId(JSON.parse(JSON.stringify(nested(3_000)))));
    const deep = nested(50_000);
    assert.throws(() => JSON.stringify(deep), RangeError);
    assert.match(hashId(deep), /^h[A-Za-z0-9_-]{22}$/);
    assert.equal(hashId(deep), hashId(nested(50_000)));
    assert.notEqual(hashId(deep), hashId(nested(49_999)));
  });

  it('previews at most the bounded start, of anything', () => {
    assert.equal(jsonPreview({ a: 'b' }, 100), '{"a":"b"}');
    const deep = jsonPreview(nested(50_000), 50);
    assert.equal(deep, `${'{"v":'.repeat(10)}…`);
    assert.equal(jsonPreview({ n: 10n }, 100), '{"n":"10"}');
    const cycle: Record<string, unknown> = { a: 1 };
    cycle.self = cycle;
    assert.equal(jsonPreview(cycle, 100), '{"a":1,"self":"[circular]"}');
    assert.throws(() => text(cycle), TypeError);
  });
});
