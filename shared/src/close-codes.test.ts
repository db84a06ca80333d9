import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CLOSE_CODES, CLOSE_MESSAGE_TOO_BIG } from './close-codes.ts';

test('server close codes are distinct and in 4000–4999, apart from the standard too-big code', () => {
  const codes = Object.values(CLOSE_CODES);
  assert.equal(new Set(codes).size, codes.length);
  for (const code of codes) assert.ok(code >= 4000 && code <= 4999, String(code));
  assert.equal(CLOSE_MESSAGE_TOO_BIG, 1009);
});
