import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Claims } from '@anode/shared';

/**
 * connection.ts is typed for workerd (Cloudflare's types: WebSocketPair, Durable Object stubs),
 * which this Node-typed test project cannot load; it runs in Node all the same (nothing here
 * reaches a Workers-only API). Imported by a path tsc does not follow, with the part used here typed.
 */
type CreateConnection = (
  socket: EventTarget,
  options: { env: object; config: object; claims: Claims; token: undefined; origin: string },
) => unknown;
const connectionModule = './connection.ts';
const { createConnection } = (await import(connectionModule)) as { createConnection: CreateConnection };

const DAY_MS = 24 * 60 * 60 * 1000;
const NOW = Date.UTC(2026, 0, 1);

/** A stand-in for the Worker's server-side socket: records how it was closed. */
class FakeSocket extends EventTarget {
  sent: string[] = [];
  closed: { code: number; reason: string } | undefined;
  send(text: string): void {
    this.sent.push(text);
  }
  close(code: number, reason: string): void {
    this.closed ??= { code, reason };
  }
}

/** An edge connection whose token expires `lifetimeMs` after NOW (timers and Date mocked from NOW). */
function connect(lifetimeMs: number): FakeSocket {
  const socket = new FakeSocket();
  const claims = { pub: ['>'], sub: ['>'], exp: (NOW + lifetimeMs) / 1000 };
  createConnection(socket, {
    env: {},
    config: {
      PUBLISH_RATE: 1000,
      PUBLISH_BURST: 2000,
      MAX_FRAME_BYTES: 65_536,
      MAX_SUBSCRIPTIONS: 100,
      RELAY_URLS: [],
    },
    claims,
    token: undefined,
    origin: 'http://127.0.0.1',
  });
  return socket;
}

describe('edge connection: a token past setTimeout limit (~24.8 days) still ends the socket at exp', () => {
  test('a token with exp 30 days out is closed with 4002 once the clock passes it', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: NOW });
    const socket = connect(30 * DAY_MS);
    t.mock.timers.tick(25 * DAY_MS);
    assert.equal(socket.closed, undefined, 'open after 25 days');
    t.mock.timers.tick(5 * DAY_MS - 1);
    assert.equal(socket.closed, undefined, 'open until exp');
    t.mock.timers.tick(1);
    assert.deepEqual(socket.closed, { code: 4002, reason: 'token expired' });
  });

  test('a frame that arrives after exp closes the socket with 4002 instead of being answered', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: NOW });
    const socket = connect(30 * DAY_MS);
    t.mock.timers.setTime(NOW + 31 * DAY_MS); // the clock passes exp; no timer has run
    socket.dispatchEvent(new MessageEvent('message', { data: '{"op":"ping","ref":"late"}' }));
    assert.deepEqual(socket.closed, { code: 4002, reason: 'token expired' });
    assert.deepEqual(socket.sent, [], 'nothing answered');
  });
});
