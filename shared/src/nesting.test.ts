import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { assertJsonDepth, nestsDeeperThan, topLevelRef } from './nesting.ts';

/** The depth JSON.parse would see, measured on the parsed value. */
function depthOf(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  const inner = Object.values(value as Record<string, unknown>).map(depthOf);
  return 1 + Math.max(0, ...inner);
}

test('agrees with the depth of the parsed value for any JSON, brackets inside strings ignored', () => {
  fc.assert(
    fc.property(fc.json({ maxDepth: 12 }), fc.integer({ min: 0, max: 12 }), (text, max) => {
      assert.equal(nestsDeeperThan(text, max), depthOf(JSON.parse(text)) > max);
    }),
    { numRuns: 2_000 },
  );
  assert.equal(nestsDeeperThan(JSON.stringify({ s: '[[[[[[[[[[' + '\\"[[[' }), 2), false);
});

test('refuses a million levels without parsing them', () => {
  const n = 1_000_000;
  assert.equal(nestsDeeperThan(`{"op":"pub","data":${'['.repeat(n)}${']'.repeat(n)}}`, 1_001), true);
  assert.equal(nestsDeeperThan(`{"op":"pub","data":${'['.repeat(1_000)}${']'.repeat(1_000)}}`, 1_001), false);
});

test('finds the top-level ref of a frame without parsing it, and only that one', () => {
  const deep = `${'['.repeat(5_000)}${']'.repeat(5_000)}`;
  assert.equal(topLevelRef(`{"op":"pub","data":${deep},"ref":"r-1"}`), 'r-1');
  assert.equal(topLevelRef(`{"ref" : "a\\"b","data":1}`), 'a"b');
  assert.equal(topLevelRef(`{"data":{"ref":"inner"},"s":"\\"ref\\":\\"no\\""}`), undefined);
  assert.equal(topLevelRef(`{"ref":7}`), undefined);
  assert.equal(topLevelRef(`{"ref":"${'x'.repeat(129)}"}`), undefined);
  // Not JSON strings: an unknown escape, a raw control character, a bad \u escape. Undefined,
  // never a throw (a throw here ended the relay: it runs in the socket's message listener).
  for (const bad of ['"\\q"', '"a\tb"', '"\\u12"', '"\\x41"']) {
    assert.equal(topLevelRef(`{"ref":${bad},"data":1}`), undefined, bad);
  }
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (text) => {
      topLevelRef(`{"ref":"${text}`);
      topLevelRef(text);
    }),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), fc.jsonValue({ maxDepth: 4 }), (ref, data) => {
      const text = JSON.stringify({ op: 'pub', data, ref });
      assert.equal(topLevelRef(text), ref.length <= 128 ? ref : undefined);
    }),
  );
});

test('assertJsonDepth refuses, before parsing, what data nested past 1,000 levels would be refused for', () => {
  const nest = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
  assert.doesNotThrow(() => assertJsonDepth(`{"op":"pub","data":${nest(1_000)}}`, 1));
  assert.throws(() => assertJsonDepth(`{"op":"pub","data":${nest(1_001)}}`, 1), {
    code: 'bad_frame',
    message: 'data: nested deeper than 1000 levels',
  });
  // A field the parser would drop counts as well: the relay refuses it, so every node does.
  assert.throws(() => assertJsonDepth(`{"op":"pub","data":1,"x":${nest(1_001)}}`, 1), { code: 'bad_frame' });
  assert.doesNotThrow(() => assertJsonDepth(`[{"data":${nest(1_000)}}]`, 2), 'a body array adds one level');
  assert.throws(() => assertJsonDepth(`[{"data":${nest(1_001)}}]`, 2), { code: 'bad_frame' });
});
