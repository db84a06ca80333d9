import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readClientFrame } from './frame-reader.ts';

describe('readClientFrame', () => {
  test('reads a valid frame', () => {
    const read = readClientFrame('{"op":"ping","ref":"a"}', 100);
    assert.deepEqual(read.ok && read.frame, { op: 'ping', ref: 'a' });
  });

  test('refuses frames over the limit in UTF-8 bytes, not characters', () => {
    const read = readClientFrame(`{"op":"ping","ref":"${'é'.repeat(30)}"}`, 70);
    assert.equal(!read.ok && read.error.code, 'too_large');
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
});
