import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import type { WebSocket } from 'ws';
import { loadConfig } from '../config.ts';
import type { Hub } from '../hub/hub.ts';
import { createLogger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { ClientConnection } from './connection.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const NOW = Date.UTC(2026, 0, 1);

/** A stand-in `ws` socket: records what is sent and how it was closed. */
class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  sent: string[] = [];
  closed: { code: number; reason: string } | undefined;
  send(text: string): void {
    this.sent.push(text);
  }
  close(code: number, reason: string): void {
    this.closed ??= { code, reason };
    this.readyState = 3;
    this.emit('close');
  }
  terminate(): void {}
}

/** A connection whose token expires `lifetimeMs` after NOW (timers and Date mocked from NOW). */
function connect(lifetimeMs: number) {
  const ws = new FakeSocket();
  const hub = { removeSubscriber: () => {}, isSubscribed: () => false, subscriptionCount: () => 0 } as unknown as Hub;
  const deps = {
    hub,
    config: loadConfig({ flags: {}, env: {} }),
    metrics: createMetrics(),
    log: createLogger('silent'),
    closing: () => {},
  };
  const claims = { pub: ['>'], sub: ['>'], exp: (NOW + lifetimeMs) / 1000 };
  new ClientConnection(ws as unknown as WebSocket, claims, deps);
  return ws;
}

describe('relay connection: a token past setTimeout limit (~24.8 days) still ends the socket at exp', () => {
  test('a token with exp 30 days out is closed with 4002 once the clock passes it', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: NOW });
    const ws = connect(30 * DAY_MS);
    t.mock.timers.tick(25 * DAY_MS);
    assert.equal(ws.closed, undefined, 'open after 25 days');
    t.mock.timers.tick(5 * DAY_MS - 1);
    assert.equal(ws.closed, undefined, 'open until exp');
    t.mock.timers.tick(1);
    assert.deepEqual(ws.closed, { code: 4002, reason: 'token expired' });
  });

  test('a frame that arrives after exp closes the socket with 4002 instead of being answered', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: NOW });
    const ws = connect(30 * DAY_MS);
    t.mock.timers.setTime(NOW + 31 * DAY_MS); // the clock passes exp; no timer has run
    ws.emit('message', Buffer.from('{"op":"pub","topic":"a.b","data":1,"ref":"late"}'), false);
    assert.deepEqual(ws.closed, { code: 4002, reason: 'token expired' });
    assert.deepEqual(ws.sent, [], 'nothing answered');
  });
});
