import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import type { TokenVerifier } from '@anode/shared';
import { WebSocket } from 'ws';
import { loadConfig } from '../config.ts';
import type { Hub } from '../hub/hub.ts';
import { createLogger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { attachWebSockets } from './ws-server.ts';

describe('relay WebSockets: closing connection lines', () => {
  test('a flood of closed sockets logs one line at once and the rest as a count, none lost', async () => {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) });
    const hub = { removeSubscriber: () => {}, isSubscribed: () => false, subscriptionCount: () => 0 } as unknown as Hub;
    const server = createServer();
    // Every token expires 300 ms after it is checked: each socket is closed by the server (4002).
    const verify = (async () => ({
      pub: ['>'],
      sub: ['>'],
      exp: (Date.now() + 300) / 1000,
    })) as unknown as TokenVerifier;
    const sockets = attachWebSockets(server, {
      hub,
      config: loadConfig({ flags: {}, env: {} }),
      metrics: createMetrics(),
      log,
      verify,
      accepting: () => true,
      verifiesTokens: false,
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    try {
      const clients = Array.from({ length: 30 }, () => new WebSocket(`ws://127.0.0.1:${port}/v1/ws`));
      const codes = await Promise.all(clients.map(async (ws) => ((await once(ws, 'close')) as [number])[0]));
      assert.deepEqual(new Set(codes), new Set([4002]));
      const closing = () => lines.filter((line) => line.msg === 'closing connection');
      assert.equal(closing().length, 1, 'one line for the flood, not one per socket');
      await sockets.closeAll();
      assert.deepEqual(
        closing().map((line) => [line.reason, line.connections]),
        [
          ['auth_expired', 1],
          ['auth_expired', 29],
        ],
        'what was held back is counted at stop',
      );
    } finally {
      server.close();
    }
  });
});
