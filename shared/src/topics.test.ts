import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { AnodeError } from './errors.ts';
import {
  assertPattern,
  assertTopic,
  covers,
  isPattern,
  isTopic,
  MAX_SEGMENT_LENGTH,
  MAX_SEGMENTS,
  MAX_TOPIC_LENGTH,
  matches,
  TopicIndex,
} from './topics.ts';

const CHARSET = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-'];

// Wide arbitraries exercise the whole grammar; narrow ones (three letters) make segments collide
// often enough for matching and covering to be interesting.
const segment = fc.string({ unit: fc.constantFrom(...CHARSET), minLength: 1, maxLength: MAX_SEGMENT_LENGTH });
const topic = fc.array(segment, { minLength: 1, maxLength: MAX_SEGMENTS }).map((s) => s.join('.'));

const narrowSegment = fc.constantFrom('a', 'b', 'c');
const narrowTopic = fc.array(narrowSegment, { minLength: 1, maxLength: 6 }).map((s) => s.join('.'));
const narrowPattern = fc
  .tuple(
    fc.array(fc.oneof(narrowSegment, fc.constant('*')), { minLength: 0, maxLength: 5 }),
    fc.constantFrom('a', 'b', '*', '>'),
  )
  .map(([head, last]) => [...head, last].join('.'));

/** Reference semantics: a pattern as a regular expression over concrete topics. */
function referenceMatches(pattern: string, concrete: string): boolean {
  const source = pattern
    .split('.')
    .map((s) => (s === '*' ? '[^.]+' : s === '>' ? '[^.]+(?:\\.[^.]+)*' : s.replace(/[-\\^$*+?.()|[\]{}]/g, '\\$&')))
    .join('\\.');
  return new RegExp(`^${source}$`).test(concrete);
}

const SEG = '[A-Za-z0-9_-]{1,64}';
const TOPIC_RE = new RegExp(`^${SEG}(?:\\.${SEG}){0,7}$`);
const PATTERN_RE = new RegExp(`^(?:(?:${SEG}|\\*)\\.){0,7}(?:${SEG}|\\*|>)$`);

function throwsBadTopic(fn: () => void): void {
  assert.throws(fn, (error: unknown) => error instanceof AnodeError && error.code === 'bad_topic');
}

/** Concrete topics a pattern matches: each `*` becomes one segment, `>` one to three. */
function instantiate(pattern: string): fc.Arbitrary<string> {
  const parts = pattern.split('.').map((s) => {
    if (s === '*') return narrowSegment.map((x) => [x]);
    if (s === '>') return fc.array(narrowSegment, { minLength: 1, maxLength: 3 });
    return fc.constant([s]);
  });
  return fc.tuple(...parts).map((chunks) => chunks.flat().join('.'));
}

/** Grants that ought to cover `pattern`: some segments become `*`, and the tail may become `>`. */
function widen(pattern: string): fc.Arbitrary<string> {
  const segments = pattern.split('.');
  return fc
    .tuple(
      fc.array(fc.boolean(), { minLength: segments.length, maxLength: segments.length }),
      fc.integer({ min: 0, max: segments.length }),
    )
    .map(([stars, cut]) => {
      const widened = segments.map((s, i) => (stars[i] && s !== '>' ? '*' : s));
      return cut < segments.length ? [...widened.slice(0, cut), '>'].join('.') : widened.join('.');
    });
}

const longest = Array.from({ length: MAX_SEGMENTS }, (_, i) => String(i).repeat(MAX_SEGMENT_LENGTH)).join('.');

describe('topic grammar', () => {
  test('accepts topics of 1 to 8 segments of [A-Za-z0-9_-]{1,64}', () => {
    for (const t of ['a', 'prices.btc-usd', 'A_b-9.Z', 'x'.repeat(64), 'a.b.c.d.e.f.g.h', longest]) {
      assert.equal(isTopic(t), true, t);
      assertTopic(t);
    }
    assert.equal(longest.length, MAX_TOPIC_LENGTH);
  });

  test('rejects empty segments, bad characters, wildcards, long segments and too many segments', () => {
    const bad = [
      '',
      '.',
      'a.',
      '.a',
      'a..b',
      'a b',
      'a/b',
      'é',
      'a\n',
      '*',
      '>',
      'a.*',
      'a.>',
      'x'.repeat(65),
      `a.${'x'.repeat(65)}`,
      'a.b.c.d.e.f.g.h.i',
      `${longest}.a`,
    ];
    for (const t of bad) {
      assert.equal(isTopic(t), false, JSON.stringify(t));
      throwsBadTopic(() => assertTopic(t));
    }
  });

  test('rejects non-string topics and patterns with bad_topic', () => {
    for (const value of [undefined, null, 1, {}, ['a'], true]) {
      assert.equal(isTopic(value), false);
      throwsBadTopic(() => assertTopic(value));
      throwsBadTopic(() => assertPattern(value));
    }
  });

  test('accepts `*` in any position and `>` as the last segment of a pattern', () => {
    for (const p of ['*', '>', 'a.*', '*.b', '*.*.*', 'a.>', '*.>', 'a.*.>', 'a.b', '*.*.*.*.*.*.*.>']) {
      assertPattern(p);
    }
  });

  test('rejects `>` before the end, partial wildcards and malformed patterns', () => {
    for (const p of ['>.a', 'a.>.b', '>.>', '>>', 'a*', '**', 'a.*b', '*>', '', 'a..*', '*.', '*.*.*.*.*.*.*.*.*']) {
      throwsBadTopic(() => assertPattern(p));
    }
  });

  test('a bad pattern segment is refused with the grammar it breaks', () => {
    assert.throws(
      () => assertPattern('prices.#'),
      (error: unknown) =>
        error instanceof AnodeError &&
        error.message ===
          'bad pattern segment "#": use [A-Za-z0-9_-]{1,64}, * for exactly one segment, or > as the last for one or more',
    );
  });

  test('every generated valid topic is accepted as a topic and as a pattern, and matches itself', () => {
    fc.assert(
      fc.property(topic, (t) => {
        assert.equal(isTopic(t), true);
        assertPattern(t);
        assert.equal(isPattern(t), false);
        assert.equal(matches(t, t), true);
      }),
    );
  });

  test('isTopic and assertPattern agree with a regular-expression reading of PROTOCOL.md on arbitrary strings', () => {
    const unit = fc.oneof(fc.constantFrom('.', '*', '>', ' ', 'é', '/'), fc.constantFrom('a', 'Z', '0', '_', '-'));
    const candidate = fc.oneof(
      fc.string({ unit, maxLength: 20 }),
      fc
        .array(fc.oneof(segment, fc.constantFrom('*', '>', '', 'a b')), { minLength: 1, maxLength: 10 })
        .map((s) => s.join('.')),
    );
    fc.assert(
      fc.property(candidate, (s) => {
        assert.equal(isTopic(s), TOPIC_RE.test(s));
        let accepted = true;
        try {
          assertPattern(s);
        } catch (error) {
          assert.ok(error instanceof AnodeError && error.code === 'bad_topic');
          accepted = false;
        }
        assert.equal(accepted, PATTERN_RE.test(s));
      }),
      { numRuns: 2000 },
    );
  });

  test('isPattern is true exactly when some segment is a wildcard', () => {
    assert.equal(isPattern('a.*'), true);
    assert.equal(isPattern('>'), true);
    assert.equal(isPattern('a.b'), false);
    assert.equal(isPattern('a*.b>'), false);
  });
});

describe('matches', () => {
  test('`*` matches exactly one segment and `>` one or more', () => {
    assert.equal(matches('prices.*', 'prices.btc'), true);
    assert.equal(matches('prices.*', 'prices'), false);
    assert.equal(matches('prices.*', 'prices.btc.usd'), false);
    assert.equal(matches('prices.>', 'prices.btc.usd'), true);
    assert.equal(matches('prices.>', 'prices'), false);
    assert.equal(matches('>', 'a'), true);
    assert.equal(matches('*.usd', 'btc.usd'), true);
    assert.equal(matches('a.b', 'a.b.c'), false);
    assert.equal(matches('a.b.c', 'a.b'), false);
  });

  test('agrees with a regex built from the pattern', () => {
    fc.assert(
      fc.property(narrowPattern, narrowTopic, (p, t) => {
        assert.equal(matches(p, t), referenceMatches(p, t));
      }),
      { numRuns: 5000 },
    );
  });

  test('every instantiation of a pattern is matched by it', () => {
    fc.assert(
      fc.property(
        narrowPattern.chain((p) => fc.tuple(fc.constant(p), instantiate(p))),
        ([p, t]) => matches(p, t),
      ),
    );
  });
});

describe('covers', () => {
  test('a wider grant covers narrower requests but not the reverse', () => {
    assert.equal(covers('prices.>', 'prices.*.usd'), true);
    assert.equal(covers('prices.>', 'prices.>'), true);
    assert.equal(covers('prices.*', 'prices.>'), false);
    assert.equal(covers('prices.*', 'prices.btc'), true);
    assert.equal(covers('prices.btc', 'prices.*'), false);
    assert.equal(covers('prices.>', 'prices'), false);
    assert.equal(covers('>', 'anything.at.all'), true);
    assert.equal(covers('*.*', '*.>'), false);
    assert.equal(covers('a.b.c', 'a.b'), false);
  });

  test('is sound: every topic the request matches is matched by the grant', () => {
    // Half the grants are widenings of the request, so many pairs satisfy the precondition.
    const case_ = narrowPattern.chain((r) =>
      fc.tuple(fc.oneof(narrowPattern, widen(r)), fc.constant(r), instantiate(r)),
    );
    fc.assert(
      fc.property(case_, ([g, r, t]) => {
        fc.pre(covers(g, r));
        assert.equal(matches(g, t), true, `${g} covers ${r} but not ${t}`);
      }),
      { numRuns: 5000 },
    );
  });

  test('is exact: when it refuses, some topic the request matches escapes the grant', () => {
    // Fill wildcards with a segment no grant names, and `>` with every length up to past the grant.
    fc.assert(
      fc.property(narrowPattern, narrowPattern, (g, r) => {
        fc.pre(!covers(g, r));
        const witnesses: string[] = [];
        for (let n = 1; n <= g.split('.').length + 1; n++) {
          witnesses.push(
            r
              .split('.')
              .map((s) => (s === '*' ? 'q' : s === '>' ? Array(n).fill('q').join('.') : s))
              .join('.'),
          );
        }
        assert.ok(
          witnesses.some((t) => !matches(g, t)),
          `${g} does not cover ${r} yet matches every witness`,
        );
      }),
      { numRuns: 5000 },
    );
  });

  test('equals matches for concrete requests', () => {
    fc.assert(
      fc.property(narrowPattern, narrowTopic, (g, t) => {
        assert.equal(covers(g, t), matches(g, t));
      }),
      { numRuns: 5000 },
    );
  });

  test('is reflexive for patterns', () => {
    fc.assert(fc.property(narrowPattern, (p) => covers(p, p)));
  });
});

describe('TopicIndex', () => {
  test('finds exact and pattern subscribers once each, and forgets deleted ones', () => {
    const index = new TopicIndex<string>();
    index.add('prices.btc', 'alice');
    index.add('prices.*', 'alice');
    index.add('prices.>', 'bob');
    index.add('news.>', 'carol');
    assert.deepEqual([...index.lookup('prices.btc')].sort(), ['alice', 'bob']);
    assert.equal(index.size, 4);
    index.delete('prices.>', 'bob');
    index.delete('prices.>', 'nobody');
    index.delete('never.added', 'bob');
    assert.deepEqual([...index.lookup('prices.btc')], ['alice']);
    assert.deepEqual(
      index.counts(),
      new Map([
        ['prices.btc', 1],
        ['prices.*', 1],
        ['news.>', 1],
      ]),
    );
  });

  test('lookup, size and counts equal a brute-force filter after any adds and deletes', () => {
    const key = fc.oneof(narrowTopic, narrowPattern);
    const op = fc.record({ add: fc.boolean(), key, value: fc.integer({ min: 0, max: 4 }) });
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 40 }),
        fc.array(narrowTopic, { minLength: 1, maxLength: 10 }),
        (ops, probes) => {
          const index = new TopicIndex<number>();
          const model = new Map<string, Set<number>>();
          for (const { add, key, value } of ops) {
            if (add) {
              index.add(key, value);
              model.set(key, (model.get(key) ?? new Set()).add(value));
            } else {
              index.delete(key, value);
              model.get(key)?.delete(value);
              if (model.get(key)?.size === 0) model.delete(key);
            }
          }
          for (const t of probes) {
            const expected = new Set<number>();
            for (const [k, values] of model) if (matches(k, t)) for (const v of values) expected.add(v);
            assert.deepEqual(index.lookup(t), expected);
          }
          const counts = new Map([...model].map(([k, s]) => [k, s.size]));
          assert.deepEqual(new Map([...index.counts()].sort()), new Map([...counts].sort()));
          assert.equal(
            index.size,
            [...counts.values()].reduce((a, b) => a + b, 0),
          );
        },
      ),
    );
  });
});
