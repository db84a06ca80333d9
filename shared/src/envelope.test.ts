import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_DATA_DEPTH } from './data-depth.ts';
import {
  assertDataSize,
  checkEnvelope,
  checkPublished,
  dataBytes,
  dataJson,
  envelopeText,
  utf8Length,
  validateEnvelope,
} from './envelope.ts';
import { encodeServerFrame } from './frames.ts';
import { isSourceName } from './names.ts';
import { createHybridClock, MAX_CLOCK_SKEW_MS } from './ids.ts';

const NOW = Date.now();
const limits = { maxMessageBytes: 1024, now: NOW };
const valid = () => ({
  id: 'rAbc_-1',
  topic: 'prices.btc',
  cursor: createHybridClock('node1', () => NOW).next(),
  source: 'ticker-42',
  ts: NOW,
  data: { price: 1 },
});

const refusedWith = (value: unknown, code: string) => {
  const checked = validateEnvelope(value, limits);
  assert.equal(checked.ok, false, JSON.stringify(value).slice(0, 200));
  assert.equal(checked.ok ? undefined : checked.error.code, code);
};

describe('the envelope validator', () => {
  it('accepts a well-formed envelope and keeps only its six fields', () => {
    const envelope = checkEnvelope({ ...valid(), extra: 1 }, limits);
    assert.deepEqual(Object.keys(envelope), ['id', 'topic', 'cursor', 'source', 'ts', 'data']);
  });

  it('refuses broken fields with bad_frame', () => {
    const cases: Record<string, unknown>[] = [
      { id: '' },
      { id: 'has space' },
      { id: 'x'.repeat(129) },
      { topic: 'a..b' },
      { cursor: '0' },
      { cursor: 'f'.repeat(16) + '-node1' },
      { cursor: 'nope' },
      { source: '' },
      { source: 'x'.repeat(5_000) },
      { source: '__proto__' },
      { source: 'constructor' },
      { ts: -1 },
      { ts: 1.5 },
      { ts: Number.NaN },
      { ts: '1' },
      { ts: 8.64e15 },
      { ts: NOW + 61_000 },
      { data: undefined },
      { data: JSON.parse(`${'['.repeat(MAX_DATA_DEPTH + 1)}${']'.repeat(MAX_DATA_DEPTH + 1)}`) },
    ];
    for (const patch of cases) refusedWith({ ...valid(), ...patch }, 'bad_frame');
    for (const value of [null, [], 'x', 1]) refusedWith(value, 'bad_frame');
  });

  it('bounds ts to MAX_TS_AHEAD_MS ahead of the clock, or the given allowance', () => {
    checkEnvelope({ ...valid(), ts: NOW + 60_000 }, limits);
    checkEnvelope({ ...valid(), ts: NOW + 100_000 }, { ...limits, tsAheadMs: 120_000 });
  });

  it('refuses data over max_message_bytes with too_large, counting UTF-8 bytes', () => {
    checkEnvelope({ ...valid(), data: 'x'.repeat(1022) }, limits); // 1,024 bytes with its quotes
    refusedWith({ ...valid(), data: 'x'.repeat(1023) }, 'too_large');
    refusedWith({ ...valid(), data: 'é'.repeat(512) }, 'too_large'); // 1,026 bytes in 514 characters
    // Measured as serialized, not as written: 205 numbers of 4 characters are 4,306 bytes.
    refusedWith({ ...valid(), data: JSON.parse(`[${Array(205).fill('1e20').join(',')}]`) }, 'too_large');
  });
});

describe('source names', () => {
  it('follow the grammar and refuse Object.prototype names', () => {
    for (const name of ['a', 'ticker-42', 'feeds.a', 'auth0|123', 'me@example.com', 'x'.repeat(128)]) {
      assert.ok(isSourceName(name), name);
    }
    for (const name of ['', 'x'.repeat(129), 'a b', 'a..b', '.a', '__proto__', 'constructor', 'toString', 1]) {
      assert.ok(!isSourceName(name), String(name));
    }
  });
});

describe('utf8Length', () => {
  it('matches TextEncoder for every width', () => {
    for (const text of ['', 'abc', 'é', '€', '😀', 'a😀é€z']) {
      assert.equal(utf8Length(text), new TextEncoder().encode(text).byteLength, text);
    }
  });
});

it('assertDataSize refuses data with no JSON form with bad_frame (what a source plugin may hand over)', () => {
  const limits = { maxMessageBytes: 1024 };
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  for (const data of [() => 1, Symbol('s'), undefined, 10n, { n: 10n }, cyclic]) {
    assert.throws(() => assertDataSize(data, limits), { code: 'bad_frame' }, String(typeof data));
  }
  // A function inside an object is dropped by JSON, as it is when the message is stored and sent.
  assert.doesNotThrow(() => assertDataSize({ f: () => 1, n: 1 }, limits));
});

describe('envelope text', () => {
  const odd: unknown[] = [
    null,
    0,
    -0,
    1e20,
    1e21,
    -1.5e-7,
    'plain',
    'quotes " and \\ backslash, \n\t\u0001 controls',
    '\u2028 and \u2029 separators',
    'é€😀 and a lone \ud800 surrogate',
    [],
    {},
    { nested: [1, { deeper: [null, true, false, 'x'] }], 'key "quoted"': '\u2028' },
  ];

  it('is JSON.stringify of the six fields, and with the msg head the msg frame', () => {
    for (const data of odd) {
      const envelope = checkEnvelope({ ...valid(), data }, limits);
      const { id, topic, cursor, source, ts } = envelope;
      assert.equal(envelopeText(envelope), JSON.stringify({ id, topic, cursor, source, ts, data }), String(data));
      assert.equal(envelopeText(envelope, '"op":"msg",'), encodeServerFrame({ op: 'msg', ...envelope }));
      // An unchecked envelope (from a store) is serialized on the spot, to the same bytes.
      const plain = { ...envelope };
      assert.equal(envelopeText(plain), envelopeText(envelope));
      assert.equal(dataBytes(envelope), new TextEncoder().encode(JSON.stringify(data)).byteLength);
    }
  });

  it('is remembered per checked envelope, never per data object (a plugin may mutate and republish)', () => {
    const data = { price: 1 };
    const first = checkEnvelope({ ...valid(), data }, limits);
    const published = checkPublished({ ...valid(), data }, limits);
    data.price = 2;
    const second = checkEnvelope({ ...valid(), data }, limits);
    const republished = checkPublished({ ...valid(), data }, limits);
    assert.equal(dataJson(second), '{"price":2}');
    assert.equal(dataJson(republished), '{"price":2}');
    // The first envelopes keep the text they were checked with.
    assert.equal(dataJson(first), '{"price":1}');
    assert.equal(dataJson(published), '{"price":1}');
    // Nothing checked: the data as it is now.
    assert.equal(dataJson({ data }), '{"price":2}');
    data.price = 3;
    assert.equal(dataJson({ data }), '{"price":3}');
  });

  it("a checked envelope checked again is the same object, still bound by this check's limit and clock", () => {
    const envelope = checkEnvelope({ ...valid(), data: 'x'.repeat(100) }, limits);
    assert.equal(checkEnvelope(envelope, limits), envelope);
    assert.throws(() => checkEnvelope(envelope, { ...limits, maxMessageBytes: 101 }), { code: 'too_large' });
    assert.throws(() => checkEnvelope(envelope, { ...limits, now: NOW - MAX_CLOCK_SKEW_MS - 1_000 }), {
      code: 'bad_frame',
      message: /cursor/,
    });
    assert.throws(() => checkEnvelope(envelope, { ...limits, now: NOW - 30_000, tsAheadMs: 1_000 }), {
      code: 'bad_frame',
      message: /^ts:/,
    });
    const published = checkPublished({ ...valid(), data: 'x'.repeat(100) }, limits);
    assert.equal(checkEnvelope(published, limits), published);
    assert.throws(() => checkEnvelope(published, { ...limits, maxMessageBytes: 101 }), { code: 'too_large' });
  });
});
