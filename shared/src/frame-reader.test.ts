import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_DATA_DEPTH } from './data-depth.ts';
import { readClientFrame, readJsonBody } from './frame-reader.ts';
import { parsePublishBody } from './frames.ts';

describe('readClientFrame', () => {
  test('reads a valid frame', () => {
    const read = readClientFrame('{"op":"ping","ref":"a"}', 100);
    assert.deepEqual(read.ok && read.frame, { op: 'ping', ref: 'a' });
  });

  test('refuses frames over the limit in UTF-8 bytes, not characters', () => {
    const read = readClientFrame(`{"op":"ping","ref":"${'é'.repeat(30)}"}`, 70);
    assert.equal(!read.ok && read.error.code, 'too_large');
    assert.equal(
      !read.ok && read.error.message,
      "frame of 82 bytes exceeds max_frame_bytes (70); a message's data is limited by max_message_bytes",
    );
  });

  test('answers a frame over the limit with the ref found in its first 4 KiB, not parsing the rest', () => {
    const big = (ref: string) => `{"op":"pub","ref":"${ref}","topic":"a","data":"${'x'.repeat(10_000)}"}`;
    for (const message of [big('s1'), new TextEncoder().encode(big('b1'))]) {
      const read = readClientFrame(message, 5_000);
      assert.equal(!read.ok && read.error.code, 'too_large');
      assert.match(String(!read.ok && read.ref), /^(s1|b1)$/);
    }
    // A ref behind the data, or inside it, is not looked for.
    const late = readClientFrame(`{"op":"pub","topic":"a","data":"${'x'.repeat(10_000)}","ref":"z"}`, 5_000);
    assert.equal(!late.ok && late.ref, undefined);
    const nested = readClientFrame(`{"op":"pub","data":{"ref":"in"},"pad":"${'x'.repeat(10_000)}"}`, 5_000);
    assert.equal(!nested.ok && nested.ref, undefined);
  });

  test('refuses binary frames with the ref they hold', () => {
    const read = readClientFrame(new TextEncoder().encode('{"op":"ping","ref":"bin"}'), 100);
    assert.deepEqual(!read.ok && [read.error.code, read.ref], ['bad_frame', 'bin']);
  });

  test('refuses malformed frames with a coded error and the ref when readable', () => {
    const read = readClientFrame('{"op":"sub","topic":"a..b","ref":"t"}', 100);
    assert.deepEqual(!read.ok && [read.error.code, read.ref], ['bad_topic', 't']);
    const garbage = readClientFrame('nope', 100);
    assert.deepEqual(!garbage.ok && [garbage.error.code, garbage.ref], ['bad_frame', undefined]);
  });

  test('refuses a frame nested past 1,000 levels before parsing it, unknown fields too, with its ref', () => {
    const nest = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    const deep = readClientFrame(`{"ref":"d","op":"pub","topic":"a","data":${'['.repeat(1 << 20)}`, 4 << 20);
    assert.deepEqual(!deep.ok && [deep.error.code, deep.error.message, deep.ref], [
      'bad_frame',
      'data: nested deeper than 1000 levels',
      'd',
    ]);
    const unknown = readClientFrame(`{"op":"pub","topic":"a","data":1,"x":${nest(1_001)},"ref":"u"}`, 1 << 20);
    assert.deepEqual(!unknown.ok && [unknown.error.code, unknown.ref], ['bad_frame', 'u']);
    const fine = readClientFrame(`{"op":"pub","topic":"a","data":${nest(1_000)},"ref":"f"}`, 1 << 20);
    assert.equal(fine.ok, true);
    const binary = readClientFrame(new TextEncoder().encode(`{"ref":"b","data":${nest(2_000)}}`), 1 << 20);
    assert.deepEqual(!binary.ok && [binary.error.code, binary.ref], ['bad_frame', 'b']);
  });
});

describe('readJsonBody', () => {
  const bytes = (...parts: (string | number[])[]) =>
    new Uint8Array(parts.flatMap((p) => (typeof p === 'string' ? [...new TextEncoder().encode(p)] : p)));

  test('parses a UTF-8 JSON body', () => {
    assert.deepEqual(readJsonBody(bytes('[{"data":"é"}]')), [{ data: 'é' }]);
  });

  test('refuses invalid UTF-8 instead of repairing it with U+FFFD', () => {
    for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80]]) {
      assert.throws(() => readJsonBody(bytes('{"data":"', bad, '"}')), {
        code: 'bad_frame',
        message: 'body is not valid UTF-8',
      });
    }
  });

  test('refuses a body nested past 1,000 levels of data before parsing, and malformed JSON', () => {
    const nest = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    assert.throws(() => readJsonBody(bytes('['.repeat(4 << 20))), {
      code: 'bad_frame',
      message: 'data: nested deeper than 1000 levels',
    });
    assert.ok(Array.isArray(readJsonBody(bytes(`[{"data":${nest(1_000)}}]`))));
    assert.throws(() => readJsonBody(bytes('{"data":')), { code: 'bad_frame', message: 'body is not valid JSON' });
  });
});

describe('depth: a WebSocket pub and an HTTP body refuse the same values at the same depth', () => {
  // PROTOCOL.md: `data` nests at most 1,000 levels (MAX_DATA_DEPTH). The text is scanned before
  // it is parsed, so any member counts as `data` does; a lone HTTP item's other members were taken
  // at 1,001 levels while a frame refused them.
  const nest = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
  const outcome = (read: () => unknown) => {
    try {
      read();
      return 'ok';
    } catch (error) {
      return `${(error as { code?: string }).code}: ${(error as Error).message}`;
    }
  };
  const ws = (members: string) => () => {
    const read = readClientFrame(`{"op":"pub","topic":"a",${members}}`, 1 << 20);
    if (!read.ok) throw read.error;
  };
  const http = (body: string) => () => parsePublishBody(readJsonBody(new TextEncoder().encode(body)));
  const refused = `bad_frame: data: nested deeper than ${MAX_DATA_DEPTH} levels`;

  for (const depth of [MAX_DATA_DEPTH, MAX_DATA_DEPTH + 1]) {
    for (const [where, members] of [
      ['data', `"data":${nest(depth)}`],
      ['an unknown member', `"data":1,"extra":${nest(depth)}`],
      ['data, an object', `"data":${'{"a":'.repeat(depth - 1)}{}${'}'.repeat(depth - 1)}`],
    ] as const) {
      test(`${where} nested ${depth} levels: ${depth > MAX_DATA_DEPTH ? 'refused' : 'taken'} on every path`, () => {
        const expected = depth > MAX_DATA_DEPTH ? refused : 'ok';
        assert.deepEqual(
          {
            ws: outcome(ws(members)),
            httpItem: outcome(http(`{${members}}`)),
            httpItemSpaced: outcome(http(`\uFEFF \r\n{${members}}`)),
            httpArray: outcome(http(`[{${members}}]`)),
            httpArraySpaced: outcome(http(`\t [{"data":0},{${members}}]`)),
          },
          {
            ws: expected,
            httpItem: expected,
            httpItemSpaced: expected,
            httpArray: expected,
            httpArraySpaced: expected,
          },
        );
      });
    }
  }
});
