import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CloseReason } from './close-codes.ts';
import { atTokenExpiry, handleClientFrame, type SessionPort } from './session.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const NOW = Date.UTC(2026, 0, 1);

/** A session port that records what the protocol asked of it; `expired` as given. */
function recordingPort(expired: () => boolean) {
  const closes: [CloseReason, string][] = [];
  const sent: unknown[] = [];
  const refused: unknown[] = [];
  const published: unknown[] = [];
  const port: SessionPort = {
    expired,
    close: (reason, message) => void closes.push([reason, message]),
    assertPublish: () => {},
    assertSubscribe: () => {},
    takeToken: () => true,
    publishRate: 1,
    publish: (frame) => void published.push(frame),
    subscribe: () => {},
    unsubscribe: () => {},
    send: (frame) => void sent.push(frame),
    refuse: (cause) => void refused.push(cause),
  };
  return { port, closes, sent, refused, published };
}

describe('a frame on a socket whose token expired', () => {
  for (const frame of [
    { op: 'ping', ref: 'p' },
    { op: 'pub', topic: 'a.b', data: 1, ref: 'x' },
    { op: 'sub', topic: 'a.b' },
  ] as const) {
    test(`${frame.op}: closes the socket auth_expired (4002) as its timer would, and is not handled`, () => {
      const { port, closes, sent, refused, published } = recordingPort(() => true);
      void handleClientFrame(frame, JSON.stringify(frame), port);
      assert.deepEqual(closes, [['auth_expired', 'token expired']]);
      assert.deepEqual([sent, refused, published], [[], [], []]);
    });
  }

  test('before expiry the frame is handled and nothing closes', () => {
    const { port, closes, sent } = recordingPort(() => false);
    void handleClientFrame({ op: 'ping', ref: 'p' }, '', port);
    assert.deepEqual(closes, []);
    assert.deepEqual(sent, [{ op: 'pong', ref: 'p' }]);
  });
});

describe('atTokenExpiry', () => {
  test('a token that expires 30 days out (past setTimeout limit) fires once the clock passes exp', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: NOW });
    let fired = 0;
    atTokenExpiry((NOW + 30 * DAY_MS) / 1000, () => (fired += 1));
    t.mock.timers.tick(24 * DAY_MS); // the first step (2^31-1 ms, ~24.8 days) has not ended
    assert.equal(fired, 0);
    t.mock.timers.tick(DAY_MS); // it has: re-armed, exp still ahead
    assert.equal(fired, 0);
    t.mock.timers.tick(5 * DAY_MS - 1);
    assert.equal(fired, 0, 'not before exp');
    t.mock.timers.tick(1);
    assert.equal(fired, 1);
    t.mock.timers.tick(60 * DAY_MS);
    assert.equal(fired, 1, 'once');
  });

  test('an exp already past fires on the next turn, never synchronously', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: NOW });
    let fired = 0;
    atTokenExpiry(NOW / 1000 - 60, () => (fired += 1));
    assert.equal(fired, 0);
    t.mock.timers.tick(0);
    assert.equal(fired, 1);
  });

  test('cancelled, or with no exp, nothing fires', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: NOW });
    let fired = 0;
    const cancel = atTokenExpiry((NOW + 30 * DAY_MS) / 1000, () => (fired += 1));
    t.mock.timers.tick(26 * DAY_MS); // past the first step: the re-armed timer is the one cancelled
    cancel();
    atTokenExpiry(undefined, () => (fired += 1))();
    t.mock.timers.tick(10 * DAY_MS);
    assert.equal(fired, 0);
  });
});
