import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertDataDepth, MAX_DATA_DEPTH } from './data-depth.ts';

const nested = (depth: number): unknown => JSON.parse(`${'['.repeat(depth)}${']'.repeat(depth)}`);

describe('assertDataDepth', () => {
  it('accepts scalars, wide values and nesting up to the limit', () => {
    for (const data of [null, 1, 'text', [], {}, Array.from({ length: 10_000 }, (_, i) => ({ i }))]) {
      assertDataDepth(data);
    }
    assertDataDepth(nested(MAX_DATA_DEPTH));
    assertDataDepth({ a: nested(MAX_DATA_DEPTH - 1) });
  });

  it('refuses deeper nesting with bad_frame, at any depth, without recursing', () => {
    for (const data of [nested(MAX_DATA_DEPTH + 1), { a: nested(MAX_DATA_DEPTH) }, nested(200_000)]) {
      assert.throws(() => assertDataDepth(data), { code: 'bad_frame' });
    }
  });
});
