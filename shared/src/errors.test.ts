import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  AnodeError,
  BadFrameError,
  BadTopicError,
  CursorExpiredError,
  ERROR_CODES,
  ForbiddenError,
  HTTP_STATUS,
  InternalError,
  isErrorCode,
  LimitReachedError,
  RateLimitedError,
  TooLargeError,
  toAnodeError,
  UnauthorizedError,
  UnavailableError,
} from './errors.ts';

const subclasses = [
  ['BadFrameError', BadFrameError, 'bad_frame', 400],
  ['TooLargeError', TooLargeError, 'too_large', 413],
  ['BadTopicError', BadTopicError, 'bad_topic', 400],
  ['UnauthorizedError', UnauthorizedError, 'unauthorized', 401],
  ['ForbiddenError', ForbiddenError, 'forbidden', 403],
  ['RateLimitedError', RateLimitedError, 'rate_limited', 429],
  ['CursorExpiredError', CursorExpiredError, 'cursor_expired', 410],
  ['UnavailableError', UnavailableError, 'unavailable', 503],
  ['LimitReachedError', LimitReachedError, 'limit_reached', 429],
  ['InternalError', InternalError, 'internal', 500],
] as const;

describe('error classes', () => {
  for (const [name, Subclass, code, status] of subclasses) {
    test(`${name} has code ${code}, HTTP status ${status} and its own name`, () => {
      const error = new Subclass('boom');
      assert.ok(error instanceof AnodeError);
      assert.ok(error instanceof Error);
      assert.equal(error.code, code);
      assert.equal(error.status, status);
      assert.equal(error.name, name);
      assert.equal(Subclass.name, name, 'the class itself is named, for loggers that read constructor.name');
      assert.equal(error.message, 'boom');
      assert.deepEqual(error.toJSON(), { code, message: 'boom' });
    });
  }

  test('every protocol error code has a subclass and a 4xx or 5xx status', () => {
    assert.deepEqual(subclasses.map(([, , code]) => code).sort(), [...ERROR_CODES].sort());
    for (const code of ERROR_CODES) assert.ok(HTTP_STATUS[code] >= 400 && HTTP_STATUS[code] < 600, code);
  });

  test('the JSON form carries only code and message, never the cause', () => {
    const error = new ForbiddenError('no', { cause: new Error('secret') });
    assert.equal(JSON.stringify(error), '{"code":"forbidden","message":"no"}');
    assert.equal((error.cause as Error).message, 'secret');
  });

  test('isErrorCode accepts exactly the protocol codes', () => {
    for (const code of ERROR_CODES) assert.equal(isErrorCode(code), true);
    for (const value of ['BAD_FRAME', 'nope', '', undefined, 400, null]) assert.equal(isErrorCode(value), false);
  });
});

describe('toAnodeError', () => {
  test('passes AnodeErrors through unchanged', () => {
    const error = new RateLimitedError('slow down');
    assert.equal(toAnodeError(error), error);
    const plain = new AnodeError('cursor_expired', 'gone');
    assert.equal(toAnodeError(plain), plain);
  });

  test('maps unknown failures to internal without leaking their message, keeping the cause', () => {
    for (const thrown of [
      new Error('password=hunter2'),
      new TypeError('x is undefined'),
      'password=hunter2',
      undefined,
      null,
      { message: 'password=hunter2' },
    ]) {
      const error = toAnodeError(thrown);
      assert.ok(error instanceof InternalError);
      assert.equal(error.code, 'internal');
      assert.equal(error.status, 500);
      assert.doesNotMatch(JSON.stringify(error), /hunter2|undefined/);
      assert.equal(error.cause, thrown);
    }
  });
});
