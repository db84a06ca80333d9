import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { type ClientFrame, type ErrorCode, isErrorCode, MAX_DATA_DEPTH, parseClientFrame } from '@anode/shared';
import fc from 'fast-check';

/**
 * Fuzz cases for a relay's WebSocket endpoint and the oracle saying what PROTOCOL.md gives each:
 * random and malformed frames of many kinds (wrong types, mutated text, bad topics, invalid
 * UTF-8, binary, oversized, deeply nested) mixed with valid ones, all from a fixed seed. Used by
 * the fuzz test (test/e2e/fuzz.test.ts) and the fuzz command (test/fuzz/run.ts).
 */
export const SEED = 20_240_611;
export const MAX_FRAME = 64 * 1024;
/** The largest message such frames can carry: a relay refuses a frame limit below message + 4 KiB. */
export const MAX_MESSAGE = MAX_FRAME - 4 * 1024;

export interface CaseOptions {
  seed?: number;
  /** The relay's `max_frame_bytes`: `huge` cases are above it, and below twice it (the hard cap). */
  maxFrame?: number;
  /** Topics of valid publishes (default: many random `fz.*` topics). */
  topic?: fc.Arbitrary<string>;
  /** Cursors of valid `sub … after` frames (default: old ones, so a resume reads history). */
  cursor?: fc.Arbitrary<string>;
}

export interface FuzzCase {
  kind: string;
  payload: Buffer;
  binary: boolean;
  /** The error this case is built to provoke when the frame parser alone cannot tell. */
  refusedWith?: ErrorCode;
}

export interface Expected {
  err?: ErrorCode;
  reply?: 'ack' | 'subscribed' | 'pong';
  /** The reply comes after a storage write or history read, so after the barrier pong. */
  late: boolean;
}

// ---- generators ------------------------------------------------------------------------------

const optional = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const ref = optional(fc.string({ maxLength: 20 }));
const manyTopics = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/).map((s) => `fz.${s}`);
const pattern = fc.constantFrom('fz.a', 'fz.*', 'fz.b.>', 'fz.*.c');
const oldCursors = fc.constantFrom('0', '0000018f00000000-abc', '0000018f2a3b0001-node1');
const data = fc.jsonValue({ maxDepth: 3 });

function validFrameOf(topic: fc.Arbitrary<string>, cursor: fc.Arbitrary<string>) {
  return fc.oneof(
    fc.record({ op: fc.constant('ping'), ref }),
    fc.record({
      op: fc.constant('pub'),
      topic,
      data,
      source: optional(fc.string({ minLength: 1, maxLength: 20 })),
      ts: optional(fc.nat()),
      key: optional(fc.string({ minLength: 1, maxLength: 20 })),
      ref,
    }),
    fc.record({ op: fc.constant('sub'), topic: pattern, after: optional(cursor), ref }),
    fc.record({ op: fc.constant('unsub'), topic: pattern, ref }),
  );
}

const wrongValue = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(''),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
  fc.string({ minLength: 129, maxLength: 300 }),
  fc.constantFrom('subscribe', 'PUB', 'nope', '-1', '1.5'),
);
const badTopic = fc.oneof(
  fc.constantFrom('', '.', 'a.', '.a', 'a..b', 'a b', 'ä', 'a/b', 'a.>.b', '>.a', 'a.b*', '**', 'x'.repeat(65)),
  fc.constant(Array.from({ length: 9 }, () => 's').join('.')),
  fc.string({ minLength: 1, maxLength: 30 }).filter((s) => /[^A-Za-z0-9_.*>-]/.test(s)),
);
const badTopicFrame = fc
  .record({ op: fc.constantFrom('pub', 'sub', 'unsub'), topic: badTopic, data, ref })
  .map((frame) => JSON.stringify(frame));

const INVALID_UTF8 = [
  [0xff],
  [0xfe, 0xff],
  [0xc3, 0x28],
  [0xc0, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xf8, 0x88, 0x80],
  [0xe2, 0x82],
];
const ARRAYS = { open: '[', close: ']' };
const OBJECTS = { open: '{"a":', close: '}' };
const nested = (depth: number, { open, close }: typeof ARRAYS) => `${open.repeat(depth)}1${close.repeat(depth)}`;
const deepPub = (data: string) => `{"op":"pub","topic":"fz.deep","data":${data}}`;

const text =
  (kind: string) =>
  (s: string | Buffer): FuzzCase => ({ kind, payload: Buffer.from(s), binary: false });

/** Every case of every kind, shuffled, from a fixed seed: the same frames on every run. */
export function generateCases(options: CaseOptions = {}): FuzzCase[] {
  const maxFrame = options.maxFrame ?? MAX_FRAME;
  const validFrame = validFrameOf(options.topic ?? manyTopics, options.cursor ?? oldCursors);
  let seed = options.seed ?? SEED;
  const wrongTypes = fc
    .tuple(validFrame, fc.constantFrom('op', 'topic', 'after', 'ts', 'source', 'key', 'ref', 'data'), wrongValue)
    .map(([frame, field, value]) => {
      const mutated: Record<string, unknown> = { ...frame, [field]: value };
      if (field === 'data') delete mutated.data;
      return JSON.stringify(mutated);
    });

  const mutatedText = fc
    .tuple(validFrame, fc.nat(), fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }), fc.nat(4))
    .map(([frame, at, chars, how]) => {
      const text = JSON.stringify(frame);
      const i = at % text.length;
      switch (how) {
        case 0:
          return text.slice(0, i) + text.slice(i + 1);
        case 1:
          return text.slice(0, i) + chars + text.slice(i);
        case 2:
          return text.slice(0, i) + chars + text.slice(i + 1);
        case 3:
          return text.slice(0, i);
        default:
          return text + text.slice(i);
      }
    });

  const invalidUtf8 = fc.tuple(validFrame, fc.nat(), fc.constantFrom(...INVALID_UTF8)).map(([frame, at, bytes]) => {
    const text = Buffer.from(JSON.stringify(frame));
    const i = at % (text.length + 1);
    return Buffer.concat([text.subarray(0, i), Buffer.from(bytes), text.subarray(i)]);
  });

  const sample = (arb: fc.Arbitrary<FuzzCase>, numRuns: number) => fc.sample(arb, { numRuns, seed: seed++ });
  const all = [
    ...sample(fc.string({ unit: 'binary', maxLength: 300 }).map(text('random string')), 400),
    ...sample(fc.string({ unit: 'grapheme', maxLength: 100 }).map(text('random unicode')), 200),
    ...sample(fc.json({ maxDepth: 4 }).map(text('random JSON')), 400),
    ...sample(
      fc.object({ maxDepth: 2 }).map((o) => text('random object')(JSON.stringify(o))),
      200,
    ),
    ...sample(wrongTypes.map(text('wrong types')), 600),
    ...sample(mutatedText.map(text('mutated frame')), 500),
    ...sample(badTopicFrame.map(text('bad topic')), 400),
    ...sample(invalidUtf8.map(text('invalid UTF-8')), 250),
    ...sample(
      fc
        .oneof(
          validFrame.map((f) => Buffer.from(JSON.stringify(f))),
          fc.uint8Array({ maxLength: 200 }),
        )
        .map((bytes) => ({ kind: 'binary', payload: Buffer.from(bytes), binary: true })),
      200,
    ),
    ...sample(
      fc
        .tuple(fc.integer({ min: maxFrame + 1, max: 2 * maxFrame - 64 }), fc.boolean())
        .map(([size, asFrame]) =>
          text('huge')(
            asFrame
              ? JSON.stringify({ op: 'pub', topic: 'fz.huge', data: 'x'.repeat(size) })
              : Buffer.alloc(size, 0x7b),
          ),
        ),
      40,
    ),
    ...sample(
      fc
        .integer({ min: maxFrame - 4 * 1024 - 1000, max: maxFrame - 4 * 1024 - 2 })
        .map((size) => text('big but allowed')(JSON.stringify({ op: 'pub', topic: 'fz.big', data: 'y'.repeat(size) }))),
      10,
    ),
    ...sample(
      fc
        .tuple(fc.integer({ min: 1, max: 8_000 }), fc.constantFrom(ARRAYS, OBJECTS))
        .map(([depth, brackets]) => text('deep frame')(nested(depth, brackets))),
      50,
    ),
    ...sample(
      fc
        .tuple(fc.integer({ min: 1, max: MAX_DATA_DEPTH }), fc.constantFrom(ARRAYS, OBJECTS))
        .map(([depth, brackets]) => text('deep data')(deepPub(nested(depth, brackets)))),
      50,
    ),
    ...sample(
      fc.integer({ min: MAX_DATA_DEPTH + 1, max: 20_000 }).map((depth): FuzzCase => ({
        ...text('data too deep')(deepPub(nested(depth, ARRAYS))),
        refusedWith: 'bad_frame',
      })),
      30,
    ),
    ...sample(
      validFrame.map((f) => text('valid')(JSON.stringify(f))),
      300,
    ),
  ];
  const shuffle = fc.shuffledSubarray(all, { minLength: all.length, maxLength: all.length });
  return fc.sample(shuffle, { numRuns: 1, seed })[0] ?? [];
}

// ---- the oracle: what PROTOCOL.md says each frame gets --------------------------------------

export function expectedFor(c: FuzzCase, maxFrame = MAX_FRAME): Expected {
  if (c.payload.byteLength > maxFrame) return { err: 'too_large', late: false };
  if (c.binary || !isUtf8(c.payload)) return { err: 'bad_frame', late: false };
  let frame: ClientFrame;
  try {
    frame = parseClientFrame(c.payload.toString('utf8'));
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    assert.ok(isErrorCode(code), `the frame parser threw a non-protocol error: ${String(error)}`);
    return { err: code, late: false };
  }
  const late = frame.op === 'pub' || (frame.op === 'sub' && frame.after !== undefined);
  if (c.refusedWith) return { err: c.refusedWith, late };
  const reply = ({ pub: 'ack', sub: 'subscribed', ping: 'pong', unsub: undefined } as const)[frame.op];
  return { reply, late };
}
