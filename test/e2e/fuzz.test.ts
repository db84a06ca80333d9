import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { after, before, describe, it } from 'node:test';
import { type ClientFrame, type ErrorCode, isErrorCode, parseClientFrame, type ServerFrame } from '@anode/shared';
import fc from 'fast-check';
import WebSocket from 'ws';
import { MAX_DATA_DEPTH } from '@anode/shared';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

/**
 * Fuzzes `/v1/ws` with thousands of random and malformed frames, one at a time, each followed by
 * a ping barrier so that every reply is attributed to the frame that caused it. Each frame must
 * get exactly the reply PROTOCOL.md gives it: one `err` for a bad frame, or the ack, subscribed
 * or pong of a frame that turned out valid. Meanwhile a well-formed subscriber on another
 * connection must keep receiving everything, and the node must stay healthy.
 */

const SEED = 20_240_611;
const MAX_FRAME = 64 * 1024;

interface FuzzCase {
  kind: string;
  payload: Buffer;
  binary: boolean;
  /** The error this case is built to provoke when the frame parser alone cannot tell. */
  refusedWith?: ErrorCode;
}

interface Expected {
  err?: ErrorCode;
  reply?: 'ack' | 'subscribed' | 'pong';
  /** The reply comes after a storage write or history read, so after the barrier pong. */
  late: boolean;
}

// ---- generators ------------------------------------------------------------------------------

const optional = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const ref = optional(fc.string({ maxLength: 20 }));
const topic = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/).map((s) => `fz.${s}`);
const pattern = fc.constantFrom('fz.a', 'fz.*', 'fz.b.>', 'fz.*.c');
const cursor = fc.constantFrom('0', '0000018f00000000-abc', '0000018f2a3b0001-node1');
const data = fc.jsonValue({ maxDepth: 3 });

const validFrame = fc.oneof(
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
const wrongTypes = fc
  .tuple(validFrame, fc.constantFrom('op', 'topic', 'after', 'ts', 'source', 'key', 'ref', 'data'), wrongValue)
  .map(([frame, field, value]) => {
    const mutated: Record<string, unknown> = { ...frame, [field]: value };
    if (field === 'data') delete mutated.data;
    return JSON.stringify(mutated);
  });

const badTopic = fc.oneof(
  fc.constantFrom('', '.', 'a.', '.a', 'a..b', 'a b', 'ä', 'a/b', 'a.>.b', '>.a', 'a.b*', '**', 'x'.repeat(65)),
  fc.constant(Array.from({ length: 9 }, () => 's').join('.')),
  fc.string({ minLength: 1, maxLength: 30 }).filter((s) => /[^A-Za-z0-9_.*>-]/.test(s)),
);
const badTopicFrame = fc
  .record({ op: fc.constantFrom('pub', 'sub', 'unsub'), topic: badTopic, data, ref })
  .map((frame) => JSON.stringify(frame));

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

const INVALID_UTF8 = [
  [0xff],
  [0xfe, 0xff],
  [0xc3, 0x28],
  [0xc0, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xf8, 0x88, 0x80],
  [0xe2, 0x82],
];
const invalidUtf8 = fc.tuple(validFrame, fc.nat(), fc.constantFrom(...INVALID_UTF8)).map(([frame, at, bytes]) => {
  const text = Buffer.from(JSON.stringify(frame));
  const i = at % (text.length + 1);
  return Buffer.concat([text.subarray(0, i), Buffer.from(bytes), text.subarray(i)]);
});

const ARRAYS = { open: '[', close: ']' };
const OBJECTS = { open: '{"a":', close: '}' };
const nested = (depth: number, { open, close }: typeof ARRAYS) => `${open.repeat(depth)}1${close.repeat(depth)}`;
const deepPub = (data: string) => `{"op":"pub","topic":"fz.deep","data":${data}}`;

const text =
  (kind: string) =>
  (s: string | Buffer): FuzzCase => ({ kind, payload: Buffer.from(s), binary: false });

/** Every case of every kind, shuffled, from a fixed seed: the same frames on every run. */
function generateCases(): FuzzCase[] {
  let seed = SEED;
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
        .tuple(fc.integer({ min: MAX_FRAME + 1, max: 3 * MAX_FRAME }), fc.boolean())
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
        .integer({ min: MAX_FRAME - 1000, max: MAX_FRAME - 100 })
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

function expectedFor(c: FuzzCase): Expected {
  if (c.payload.byteLength > MAX_FRAME) return { err: 'too_large', late: false };
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

// ---- a client that sees every frame -----------------------------------------------------------

function collect(ws: WebSocket) {
  const frames: ServerFrame[] = [];
  let wake: (() => void) | undefined;
  ws.on('message', (raw) => {
    frames.push(JSON.parse(String(raw)) as ServerFrame);
    wake?.();
  });
  ws.on('close', () => wake?.());
  const until = (done: () => boolean, what: string, timeoutMs = 10_000) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      wake = () => {
        if (ws.readyState !== WebSocket.OPEN) {
          clearTimeout(timer);
          reject(new Error(`fuzz connection closed while waiting for ${what}`));
        } else if (done()) {
          clearTimeout(timer);
          resolve();
        }
      };
      wake();
    });
  return { frames, until };
}

describe('fuzzing the WebSocket endpoint', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({
      'max-frame-bytes': String(MAX_FRAME),
      'publish-rate': '100000',
      'publish-burst': '100000',
      'max-subscriptions': '10000',
      'store-fsync': 'false',
    });
  });
  after(() => relay.stop());

  it('answers every malformed frame with exactly one err while the node and other clients carry on', async (t) => {
    const fuzzCases = generateCases();
    assert.ok(fuzzCases.length >= 3_000, `only ${fuzzCases.length} cases`);

    // A well-formed subscriber and a steady publisher on their own connections.
    const watcher = await openSocket(`${relay.wsUrl}/v1/ws`);
    watcher.send({ op: 'sub', topic: 'watch.feed', ref: 'watch' });
    await watcher.next((f) => f.op === 'subscribed');
    const publisher = await openSocket(`${relay.wsUrl}/v1/ws`);
    let published = 0;
    const publishOne = () =>
      publisher.send({ op: 'pub', topic: 'watch.feed', data: published, ref: `w${published++}` });
    const ticker = setInterval(publishOne, 5);

    const ws = new WebSocket(`${relay.wsUrl}/v1/ws`, { perMessageDeflate: false });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const { frames, until } = collect(ws);

    const mismatches: string[] = [];
    const byKind = new Map<string, number>();
    let expectedErrors = 0;
    try {
      for (const [i, c] of fuzzCases.entries()) {
        byKind.set(c.kind, (byKind.get(c.kind) ?? 0) + 1);
        const expected = expectedFor(c);
        if (expected.err) expectedErrors++;
        const start = frames.length;
        const barrier = `fuzz-barrier-${i}`;
        ws.send(c.payload, { binary: c.binary });
        ws.send(JSON.stringify({ op: 'ping', ref: barrier }));
        const window = () => frames.slice(start).filter((f) => f.op !== 'msg');
        const hasBarrier = () => window().some((f) => f.op === 'pong' && f.ref === barrier);
        const hasLateReply = () => window().some((f) => f.op === 'ack' || f.op === 'err' || f.op === 'subscribed');
        await until(() => hasBarrier() && (!expected.late || hasLateReply()), `the replies to case ${i} (${c.kind})`);

        const replies = window().filter((f) => !(f.op === 'pong' && f.ref === barrier));
        const errs = replies.filter((f) => f.op === 'err');
        const ok =
          errs.length === (expected.err ? 1 : 0) &&
          (!expected.err || errs[0]?.code === expected.err) &&
          replies.length === (expected.err || expected.reply ? 1 : 0) &&
          (!expected.reply || replies[0]?.op === expected.reply);
        if (!ok) {
          const preview = c.payload.subarray(0, 160).toString(c.binary ? 'hex' : 'utf8');
          mismatches.push(
            `#${i} ${c.kind} ${JSON.stringify(preview)}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(replies)}`,
          );
        }
      }
    } finally {
      clearInterval(ticker);
    }
    t.diagnostic(`cases by kind: ${JSON.stringify(Object.fromEntries(byKind))}`);
    t.diagnostic(`${expectedErrors} err frames expected, seed ${SEED}`);
    assert.deepEqual(mismatches.slice(0, 10), [], `${mismatches.length} frames got the wrong reply`);
    assert.equal(
      frames.filter((f) => f.op === 'err').length,
      expectedErrors,
      'one err per malformed frame, none for valid ones',
    );
    assert.ok(expectedErrors >= 2_500, `only ${expectedErrors} malformed frames were generated`);

    // The fuzzed connection and the node are still up, and keep serving.
    assert.equal(ws.readyState, WebSocket.OPEN);
    ws.send(JSON.stringify({ op: 'ping', ref: 'still-there' }));
    await until(() => frames.some((f) => f.op === 'pong' && f.ref === 'still-there'), 'a pong after fuzzing');
    ws.close();
    assert.equal((await fetch(`${relay.url}/healthz`)).status, 200);

    for (let i = 0; i < 20; i++) publishOne();
    const acks = await Promise.all(
      Array.from({ length: published }, (_, i) =>
        publisher
          .next((f) => 'ref' in f && f.ref === `w${i}`)
          .then((f) => {
            assert.equal(f.op, 'ack', JSON.stringify(f));
            return (f as { id: string }).id;
          }),
      ),
    );
    watcher.send({ op: 'ping', ref: 'settle' });
    await watcher.next((f) => f.op === 'pong' && f.ref === 'settle');
    assert.ok(published > 20, 'messages were published during the fuzzing');
    assert.deepEqual(
      watcher.frames.filter((f) => f.op === 'msg').map((f) => (f as { id: string }).id),
      acks,
      'the well-formed subscriber received every message, once, in order',
    );
    watcher.close();
    publisher.close();
  });
});
