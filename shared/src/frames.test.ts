import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { AnodeError, type ErrorCode } from './errors.ts';
import {
  clientFrameSchema,
  historyQuerySchema,
  MAX_PUBLISH_BATCH,
  parseClientFrame,
  parsePublishBody,
  parseWith,
  publishItemsBySchema,
  refOf,
} from './frames.ts';
import { createHybridClock } from './ids.ts';
import { assertDataDepth, MAX_DATA_DEPTH } from './data-depth.ts';
import { assertPattern, assertTopic, isTopic } from './topics.ts';

const CURSOR = createHybridClock('n1', () => 1_700_000_000_000).next();

function throwsCode(fn: () => unknown, code: ErrorCode, label = ''): void {
  assert.throws(fn, (error: unknown) => error instanceof AnodeError && error.code === code, label);
}

const frame = (value: unknown) => JSON.stringify(value);

describe('parseClientFrame accepts', () => {
  test('sub with a pattern, cursor and ref', () => {
    assert.deepEqual(parseClientFrame(frame({ op: 'sub', topic: 'prices.>', after: CURSOR, ref: '1' })), {
      op: 'sub',
      topic: 'prices.>',
      after: CURSOR,
      ref: '1',
    });
    assert.deepEqual(parseClientFrame(frame({ op: 'sub', topic: 'a', after: '0' })), {
      op: 'sub',
      topic: 'a',
      after: '0',
    });
  });

  test('unsub with a pattern', () => {
    assert.deepEqual(parseClientFrame(frame({ op: 'unsub', topic: '*.usd' })), { op: 'unsub', topic: '*.usd' });
  });

  test('pub with every optional field', () => {
    const pub = {
      op: 'pub',
      topic: 'prices.btc',
      data: { p: 1 },
      source: 'feed',
      ts: 1_700_000_000_000,
      key: 'k',
      ref: 'r',
    };
    assert.deepEqual(parseClientFrame(frame(pub)), pub);
  });

  test('pub with falsy data (null, 0, false, empty string)', () => {
    for (const data of [null, 0, false, '', [], {}]) {
      assert.deepEqual(parseClientFrame(frame({ op: 'pub', topic: 't', data })), { op: 'pub', topic: 't', data });
    }
  });

  test('ping with and without ref', () => {
    assert.deepEqual(parseClientFrame('{"op":"ping"}'), { op: 'ping' });
    assert.deepEqual(parseClientFrame('{"op":"ping","ref":"x"}'), { op: 'ping', ref: 'x' });
  });

  test('frames with unknown fields, which it drops (fields may be added to the protocol)', () => {
    assert.deepEqual(parseClientFrame(frame({ op: 'ping', future: true, v: 2 })), { op: 'ping' });
  });
});

describe('parseClientFrame rejects', () => {
  const badFrames: [string, unknown][] = [
    ['an unknown op', { op: 'publish', topic: 't', data: 1 }],
    ['a missing op', { topic: 't' }],
    ['a non-string op', { op: 1 }],
    ['a missing topic', { op: 'sub' }],
    ['a numeric topic', { op: 'sub', topic: 7 }],
    ['a null topic', { op: 'unsub', topic: null }],
    ['pub without data', { op: 'pub', topic: 't' }],
    ['a malformed cursor in after', { op: 'sub', topic: 't', after: 'yesterday' }],
    ['a numeric cursor in after', { op: 'sub', topic: 't', after: 0 }],
    ['a non-string ref', { op: 'ping', ref: 5 }],
    ['a ref over 128 characters', { op: 'ping', ref: 'x'.repeat(129) }],
    ['an empty source', { op: 'pub', topic: 't', data: 1, source: '' }],
    ['a source over 256 characters', { op: 'pub', topic: 't', data: 1, source: 's'.repeat(257) }],
    ['an empty key', { op: 'pub', topic: 't', data: 1, key: '' }],
    ['a fractional ts', { op: 'pub', topic: 't', data: 1, ts: 1.5 }],
    ['a negative ts', { op: 'pub', topic: 't', data: 1, ts: -1 }],
    ['a ts past the end of Date', { op: 'pub', topic: 't', data: 1, ts: 8.64e15 + 1 }],
    ['a string ts', { op: 'pub', topic: 't', data: 1, ts: '1' }],
  ];
  for (const [what, value] of badFrames) {
    test(`${what} with bad_frame`, () => throwsCode(() => parseClientFrame(frame(value)), 'bad_frame'));
  }

  test('text that is not JSON with bad_frame', () => {
    for (const text of ['', '{', 'op: sub', '{"op":"ping"', 'undefined', "{'op':'ping'}"]) {
      throwsCode(() => parseClientFrame(text), 'bad_frame', text);
    }
  });

  test('JSON that is not an object with bad_frame', () => {
    for (const text of ['null', '1', '"ping"', 'true', '[]', '[{"op":"ping"}]']) {
      throwsCode(() => parseClientFrame(text), 'bad_frame', text);
    }
  });

  test('names that break the grammar with bad_topic', () => {
    const bad: unknown[] = [
      { op: 'sub', topic: 'a..b' },
      { op: 'sub', topic: '' },
      { op: 'sub', topic: '>.a' },
      { op: 'unsub', topic: 'a b' },
      { op: 'sub', topic: 'a.b.c.d.e.f.g.h.i' },
      { op: 'pub', topic: 'prices.*', data: 1 },
      { op: 'pub', topic: 'prices.>', data: 1 },
      { op: 'pub', topic: 'x'.repeat(65), data: 1 },
    ];
    for (const value of bad) throwsCode(() => parseClientFrame(frame(value)), 'bad_topic', frame(value));
  });
});

describe('parseClientFrame on arbitrary input', () => {
  const outcome = (text: string) => {
    try {
      return parseClientFrame(text);
    } catch (error) {
      assert.ok(error instanceof AnodeError, `threw a non-AnodeError: ${String(error)}`);
      assert.ok(error.code === 'bad_frame' || error.code === 'bad_topic', error.code);
      return undefined;
    }
  };

  /** A frame that parsed is one the protocol allows: a valid name for its op, data on a pub. */
  const assertSound = (parsed: ReturnType<typeof parseClientFrame> | undefined) => {
    if (!parsed) return;
    if (parsed.op === 'pub') {
      assert.equal(isTopic(parsed.topic), true);
      assert.notEqual(parsed.data, undefined);
    }
    if (parsed.op === 'sub' || parsed.op === 'unsub') assertPattern(parsed.topic);
  };

  test('arbitrary strings only ever fail with bad_frame or bad_topic', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' })), (text) => assertSound(outcome(text))),
      { numRuns: 2000 },
    );
  });

  test('arbitrary JSON values only ever fail with bad_frame or bad_topic', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.json(),
          fc.anything().map((v) => JSON.stringify(v) ?? 'undefined'),
        ),
        (text) => assertSound(outcome(text)),
      ),
      { numRuns: 2000 },
    );
  });

  test('near-valid frames only ever fail with bad_frame or bad_topic', () => {
    const name = fc.oneof(
      fc.constantFrom('a', 'a.b', 'a.*', 'a.>', '>', '*', '>.a', 'a..b', '', ' ', '__proto__', 'constructor'),
      fc.anything(),
    );
    const nearFrame = fc.record(
      {
        op: fc.oneof(fc.constantFrom('sub', 'unsub', 'pub', 'ping', 'msg', 'PUB'), fc.anything()),
        topic: name,
        data: fc.anything(),
        after: fc.oneof(fc.constantFrom(CURSOR, '0', 'nope'), fc.anything()),
        ref: fc.oneof(fc.string(), fc.anything()),
        source: fc.oneof(fc.string(), fc.anything()),
        ts: fc.oneof(fc.integer(), fc.double(), fc.anything()),
        key: fc.oneof(fc.string(), fc.anything()),
      },
      { requiredKeys: ['op'] },
    );
    fc.assert(
      fc.property(nearFrame, (value) => assertSound(outcome(JSON.stringify(value)))),
      { numRuns: 3000 },
    );
  });

  test('a pub frame parses to what the schema alone gives, and fails with its error', () => {
    // parseClientFrame reads a well-formed pub by hand; the schema is the reference.
    const bySchema = (value: unknown) => {
      const frame = parseWith(clientFrameSchema, value);
      if (frame.op !== 'pub') return frame;
      if (frame.data === undefined) throw new AnodeError('bad_frame', 'data: required (use null for no data)');
      assertDataDepth(frame.data);
      assertTopic(frame.topic);
      return frame;
    };
    const settle = (fn: () => unknown) => {
      try {
        return { ok: fn() };
      } catch (error) {
        return { code: (error as AnodeError).code, message: (error as AnodeError).message };
      }
    };
    const pub = fc.record(
      {
        op: fc.constant('pub'),
        topic: fc.oneof(fc.constantFrom('a', 'a.b', 'a.*', '', 'x'.repeat(65), '__proto__'), fc.anything()),
        data: fc.oneof(
          fc.json().map((j) => JSON.parse(j) as unknown),
          fc.anything(),
        ),
        ref: fc.oneof(fc.string({ maxLength: 130 }), fc.constant('r'.repeat(129)), fc.anything()),
        source: fc.oneof(fc.constantFrom('s', 'a@b:c|d.e', '', 's'.repeat(129), 'a b'), fc.anything()),
        ts: fc.oneof(fc.integer(), fc.constantFrom(0, -1, 1.5, 8.64e15, 8.64e15 + 1, -0), fc.anything()),
        key: fc.oneof(fc.string({ maxLength: 258 }), fc.anything()),
        extra: fc.anything(),
      },
      { requiredKeys: ['op'] },
    );
    fc.assert(
      fc.property(pub, (value) => {
        const text = JSON.stringify(value);
        assert.deepEqual(
          settle(() => parseClientFrame(text)),
          settle(() => bySchema(JSON.parse(text))),
        );
      }),
      { numRuns: 5000 },
    );
  });

  test('nesting up to MAX_DATA_DEPTH parses; deeper data is bad_frame, without a crash', () => {
    const frame = (depth: number) => `{"op":"pub","topic":"t","data":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    assert.equal(parseClientFrame(frame(MAX_DATA_DEPTH)).op, 'pub');
    assert.throws(
      () => parseClientFrame(frame(5000)),
      (e: unknown) => e instanceof AnodeError && e.code === 'bad_frame',
    );
  });
});

describe('parsePublishBody', () => {
  test('a body parses to what the schema alone gives, and fails with its error', () => {
    // parsePublishBody reads well-formed items by hand; the schema is the reference.
    const bySchema = (value: unknown) => {
      const items = publishItemsBySchema(value);
      const batch = Array.isArray(value);
      items.forEach((item, index) => {
        const at = batch ? `[${index}].` : '';
        if (item.data === undefined) throw new AnodeError('bad_frame', `${at}data: required (use null for no data)`);
        try {
          assertDataDepth(item.data);
        } catch (error) {
          throw batch ? new AnodeError('bad_frame', `${at}${(error as Error).message}`) : error;
        }
      });
      return items;
    };
    const settle = (fn: () => unknown) => {
      try {
        return { ok: fn() };
      } catch (error) {
        return { code: (error as AnodeError).code, message: (error as AnodeError).message };
      }
    };
    const item = fc.oneof(
      fc.record(
        {
          data: fc.oneof(
            fc.json().map((j) => JSON.parse(j) as unknown),
            fc.anything(),
          ),
          source: fc.oneof(fc.constantFrom('s', 'a@b:c|d.e', '', 's'.repeat(129), 'a b'), fc.anything()),
          ts: fc.oneof(fc.integer(), fc.constantFrom(0, -1, 1.5, 8.64e15, 8.64e15 + 1), fc.anything()),
          key: fc.oneof(fc.string({ maxLength: 258 }), fc.anything()),
          extra: fc.anything(),
        },
        { requiredKeys: [] },
      ),
      fc.anything(),
    );
    const body = fc.oneof(item, fc.array(item, { maxLength: 5 }));
    fc.assert(
      fc.property(body, (value) => {
        const parsed = JSON.parse(JSON.stringify(value) ?? 'null') as unknown;
        assert.deepEqual(
          settle(() => parsePublishBody(parsed)),
          settle(() => bySchema(parsed)),
        );
      }),
      { numRuns: 5000 },
    );
    const many = Array.from({ length: MAX_PUBLISH_BATCH + 1 }, (_, n) => ({ data: n }));
    assert.deepEqual(
      settle(() => parsePublishBody(many)),
      settle(() => bySchema(many)),
    );
  });

  test('an Idempotency-Key header fills the key of a single message, never overrides it, and refuses arrays', () => {
    assert.deepEqual(parsePublishBody({ data: 1 }, 'h'), [{ data: 1, key: 'h' }]);
    assert.deepEqual(parsePublishBody({ data: 1, key: 'own' }, 'h'), [{ data: 1, key: 'own' }]);
    // PROTOCOL.md: the header with an array body is bad_frame, an array of one too.
    for (const batch of [[{ data: 1 }, { data: 2 }], [{ data: 1 }]]) {
      assert.throws(
        () => parsePublishBody(batch, 'h'),
        (e: unknown) => e instanceof AnodeError && e.code === 'bad_frame',
      );
    }
    // The header is held to the body key's limits.
    for (const header of ['', 'k'.repeat(257)]) {
      assert.throws(
        () => parsePublishBody({ data: 1 }, header),
        (e: unknown) => e instanceof AnodeError && e.code === 'bad_frame' && /Idempotency-Key/.test(e.message),
      );
    }
  });

  test('a key that is not well-formed Unicode (a lone surrogate) is bad_frame, in a body, an array, the header and a frame', () => {
    // UTF-8 makes each lone surrogate U+FFFD, so these keys once shared one content id: the
    // second and third publishes were acked with the first's id and silently not stored.
    const keys = ['x\ud800', 'x\udfff', '\udc00x', 'a\ud83d'];
    const wellFormed = /well-formed Unicode/;
    for (const key of keys) {
      const label = JSON.stringify(key);
      const refused = (e: unknown) => e instanceof AnodeError && e.code === 'bad_frame' && wellFormed.test(e.message);
      assert.throws(() => parsePublishBody({ data: 1, key }), refused, label);
      assert.throws(() => parsePublishBody([{ data: 1 }, { data: 2, key }]), refused, label);
      assert.throws(() => parsePublishBody({ data: 1 }, key), refused, label);
      assert.throws(() => parseClientFrame(frame({ op: 'pub', topic: 't', data: 1, key })), refused, label);
    }
    // Well-formed keys outside the BMP (a surrogate pair) and U+FFFD itself are taken.
    for (const key of ['x\ufffd', '鍵🔑', '\ud83d\udd11']) {
      assert.deepEqual(parsePublishBody({ data: 1, key }), [{ data: 1, key }]);
      assert.deepEqual(parsePublishBody({ data: 1 }, key), [{ data: 1, key }]);
      assert.equal((parseClientFrame(frame({ op: 'pub', topic: 't', data: 1, key })) as { key?: string }).key, key);
    }
  });

  test('a key is at most 256 characters counted in code points (an emoji is one), on every path', () => {
    const at = (n: number) => '\u{1F511}'.repeat(n); // 2 UTF-16 units each
    const key = at(256);
    assert.deepEqual(parsePublishBody({ data: 1, key }), [{ data: 1, key }]);
    assert.deepEqual(parsePublishBody([{ data: 1, key }]), [{ data: 1, key }]);
    assert.equal((parseClientFrame(frame({ op: 'pub', topic: 't', data: 1, key })) as { key?: string }).key, key);
    const over = at(257);
    const refused = (e: unknown) => e instanceof AnodeError && e.code === 'bad_frame';
    assert.throws(() => parsePublishBody({ data: 1, key: over }), refused);
    assert.throws(() => parseClientFrame(frame({ op: 'pub', topic: 't', data: 1, key: over })), refused);
  });

  test('a body that fits neither shape names the field, and an array item its index, not "Invalid input"', () => {
    const cases: [unknown, RegExp][] = [
      [{ source: 's' }, /^data: required/],
      [{ data: 1, ts: 1.5 }, /^ts: not an integer$/],
      [{ data: 1, ts: '123' }, /^ts: .*expected number, received string/],
      [{ data: 1, key: 7 }, /^key: .*expected string/],
      [null, /expected object, received null/],
      [Array.from({ length: MAX_PUBLISH_BATCH + 1 }, () => ({ data: 1 })), /1 to 1000 messages; this one has 1001/],
      [[], /1 to 1000 messages; this one has 0/],
      [[{ data: 1 }, { data: 2, ts: 1.5 }], /^\[1\]\.ts: not an integer$/],
      [[{ data: 1 }, { source: 's' }], /^\[1\]\.data: required/],
      [[{ data: 1 }, 'x'], /^\[1\]: .*expected object, received string/],
      [
        [{ data: 1 }, { data: JSON.parse(`${'['.repeat(MAX_DATA_DEPTH + 1)}${']'.repeat(MAX_DATA_DEPTH + 1)}`) }],
        /^\[1\]\.data: nested/,
      ],
    ];
    for (const [body, message] of cases) {
      assert.throws(
        () => parsePublishBody(body),
        (e: unknown) => e instanceof AnodeError && e.code === 'bad_frame' && message.test(e.message),
        `${JSON.stringify(body)?.slice(0, 60)} should fail with ${message}`,
      );
    }
  });

  test('turns one item into a list of one', () => {
    assert.deepEqual(parsePublishBody({ data: 1, source: 's', key: 'k', ts: 5 }), [
      { data: 1, source: 's', key: 'k', ts: 5 },
    ]);
    assert.deepEqual(parsePublishBody({ data: null }), [{ data: null }]);
  });

  test('accepts arrays of 1 to 1000 items, in order', () => {
    assert.deepEqual(parsePublishBody([{ data: 'x' }]), [{ data: 'x' }]);
    const items = Array.from({ length: MAX_PUBLISH_BATCH }, (_, i) => ({ data: i }));
    assert.deepEqual(parsePublishBody(items), items);
  });

  test('rejects an empty array and arrays over 1000 items with bad_frame', () => {
    throwsCode(() => parsePublishBody([]), 'bad_frame');
    throwsCode(() => parsePublishBody(Array.from({ length: MAX_PUBLISH_BATCH + 1 }, () => ({ data: 1 }))), 'bad_frame');
  });

  test('rejects items without data, with bad fields, and non-object bodies with bad_frame', () => {
    const bad: unknown[] = [
      {},
      [{ data: 1 }, {}],
      { data: 1, ts: -1 },
      { data: 1, source: '' },
      { data: 1, key: 7 },
      [{ data: 1 }, 'x'],
      null,
      undefined,
      'data',
      42,
      [[{ data: 1 }]],
    ];
    for (const value of bad) throwsCode(() => parsePublishBody(value), 'bad_frame', JSON.stringify(value));
  });

  test('arbitrary bodies give a non-empty list of items with data, or bad_frame', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.anything(), fc.array(fc.record({ data: fc.anything() }, { requiredKeys: [] }))),
        (value) => {
          try {
            const items = parsePublishBody(value);
            assert.ok(items.length >= 1 && items.length <= MAX_PUBLISH_BATCH);
            for (const item of items) assert.notEqual(item.data, undefined);
          } catch (error) {
            assert.ok(error instanceof AnodeError && error.code === 'bad_frame', String(error));
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('history query and refOf', () => {
  test('history limit is coerced from a query string, defaults to 100 and is capped at 1000', () => {
    assert.deepEqual(parseWith(historyQuerySchema, {}), { limit: 100 });
    assert.deepEqual(parseWith(historyQuerySchema, { after: CURSOR, limit: '5' }), { after: CURSOR, limit: 5 });
    throwsCode(() => parseWith(historyQuerySchema, { limit: '1001' }), 'bad_frame');
    throwsCode(() => parseWith(historyQuerySchema, { limit: 'lots' }), 'bad_frame');
    throwsCode(() => parseWith(historyQuerySchema, { after: 'bad' }), 'bad_frame');
  });

  test('a bad limit is refused in plain words, not in zod wording', () => {
    const refusal = (query: object) => {
      try {
        parseWith(historyQuerySchema, query);
      } catch (error) {
        return error instanceof AnodeError && `${error.code} ${error.message}`;
      }
      return 'accepted';
    };
    assert.equal(refusal({ limit: '1001' }), 'bad_frame limit: at most 1000');
    assert.equal(refusal({ limit: '-1' }), 'bad_frame limit: at least 0');
    assert.equal(refusal({ limit: '1.5' }), 'bad_frame limit: not an integer');
    assert.equal(refusal({ limit: 'lots' }), 'bad_frame limit: not a number');
  });

  test('an empty or blank limit (`?limit=`) is refused as `after=` is, not read as 0', () => {
    // Number('') is 0: the page came back empty with next null, as if the topic had nothing.
    for (const limit of ['', ' ', '\t']) throwsCode(() => parseWith(historyQuerySchema, { limit }), 'bad_frame');
    throwsCode(() => parseWith(historyQuerySchema, { after: '' }), 'bad_frame');
    assert.deepEqual(parseWith(historyQuerySchema, { limit: '0' }), { limit: 0 });
  });

  test('refOf recovers a string ref from invalid frames and nothing otherwise', () => {
    assert.equal(refOf('{"op":"nope","ref":"r1"}'), 'r1');
    assert.equal(refOf('{"ref":5}'), undefined);
    assert.equal(refOf(`{"ref":"${'x'.repeat(129)}"}`), undefined);
    assert.equal(refOf('not json'), undefined);
    assert.equal(refOf('null'), undefined);
    fc.assert(fc.property(fc.oneof(fc.string(), fc.json()), (text) => void refOf(text)));
  });
});
