import { HTTP_STATUS, isErrorCode, isTopic, parsePublishBody } from '@anode/shared';
import fc from 'fast-check';

/**
 * Fuzz cases for `POST /v1/topics/{topic}/messages` and the oracle saying what each gets:
 * `202` for a valid body, otherwise the status and code of the first check it fails, in the
 * relay's order (topic, size, JSON, body shape and data depth).
 */
export const MAX_BODY = 64 * 1024;

export interface HttpCase {
  kind: string;
  topic: string;
  body: Buffer;
  contentType: string;
}

const FUZZ_TOPICS = ['fz.a', 'fz.b', 'fz.c.d'];
const BAD_TOPICS = ['a..b', '.a', 'a.', 'x'.repeat(65), 'a.b.c.d.e.f.g.h.i', 'a%20b', 'a*b', '%3E'];

const optional = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const item = fc.record({
  data: fc.jsonValue({ maxDepth: 3 }),
  source: optional(fc.string({ minLength: 1, maxLength: 20 })),
  ts: optional(fc.nat()),
  key: optional(fc.string({ minLength: 1, maxLength: 20 })),
});
const validBody = fc.oneof(item, fc.array(item, { minLength: 1, maxLength: 5 }));
const wrongValue = fc.oneof(
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(''),
  fc.string({ maxLength: 300 }),
);
const wrongBody = fc
  .tuple(item, fc.constantFrom('data', 'source', 'ts', 'key', 'extra'), wrongValue)
  .map(([value, field, wrong]) => {
    const mutated: Record<string, unknown> = { ...value, [field]: wrong };
    if (field === 'data' && wrong === null) delete mutated.data;
    return mutated;
  });
const nested = (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`;

export function generateBodies(seed: number): HttpCase[] {
  let s = seed;
  const sample = <T>(arb: fc.Arbitrary<T>, n: number) => fc.sample(arb, { numRuns: n, seed: s++ });
  const topic = fc.constantFrom(...FUZZ_TOPICS);
  const json = (kind: string) => (value: [unknown, string]) => ({
    kind,
    topic: value[1],
    body: Buffer.from(JSON.stringify(value[0]) ?? 'null'),
    contentType: 'application/json',
  });
  return [
    ...sample(fc.tuple(validBody, topic).map(json('valid body')), 150),
    ...sample(fc.tuple(wrongBody, topic).map(json('wrong types')), 150),
    ...sample(
      fc.tuple(fc.json({ maxDepth: 3 }), topic).map(([text, t]) => ({
        kind: 'random JSON',
        topic: t,
        body: Buffer.from(text),
        contentType: 'application/json',
      })),
      100,
    ),
    ...sample(
      fc
        .tuple(validBody, fc.nat(), fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }), topic)
        .map(([b, at, chars, t]) => {
          const text = JSON.stringify(b);
          const i = at % text.length;
          return {
            kind: 'mutated body',
            topic: t,
            body: Buffer.from(text.slice(0, i) + chars + text.slice(i + 1)),
            contentType: 'application/json',
          };
        }),
      150,
    ),
    ...sample(
      fc.tuple(fc.uint8Array({ maxLength: 200 }), topic).map(([bytes, t]) => ({
        kind: 'random bytes',
        topic: t,
        body: Buffer.from(bytes),
        contentType: 'application/octet-stream',
      })),
      50,
    ),
    ...sample(
      fc.tuple(fc.integer({ min: MAX_BODY + 1, max: MAX_BODY * 3 }), topic).map(([size, t]) => ({
        kind: 'too large',
        topic: t,
        body: Buffer.from(JSON.stringify({ data: 'z'.repeat(size) })),
        contentType: 'application/json',
      })),
      10,
    ),
    ...sample(
      fc.tuple(fc.integer({ min: 1, max: 5_000 }), topic).map(([depth, t]) => ({
        kind: 'deep data',
        topic: t,
        body: Buffer.from(`{"data":${nested(depth)}}`),
        contentType: 'application/json',
      })),
      30,
    ),
    ...sample(fc.tuple(validBody, fc.constantFrom(...BAD_TOPICS)).map(json('bad topic')), 30),
  ];
}

export function expectedHttp(c: HttpCase): { status: number; code?: string } {
  let topic: string;
  try {
    topic = decodeURIComponent(c.topic);
  } catch {
    topic = c.topic;
  }
  if (!isTopic(topic)) return { status: 400, code: 'bad_topic' };
  if (c.body.byteLength > MAX_BODY) return { status: 413, code: 'too_large' };
  let value: unknown;
  try {
    value = JSON.parse(c.body.toString('utf8'));
  } catch {
    return { status: 400, code: 'bad_frame' };
  }
  try {
    parsePublishBody(value);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (!isErrorCode(code)) throw error;
    return { status: HTTP_STATUS[code], code };
  }
  return { status: 202 };
}
