import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { signToken } from '@anode/shared';
import { type EdgeRuntime, startEdge } from '../helpers/edge.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

/**
 * PROTOCOL.md "WebSocket": an upgrade is checked before it is accepted, and a path that is no
 * endpoint is refused with an HTTP status and the JSON error body. The edge routed an upgrade like
 * any GET: a history, latest, status or health URL answered its JSON with 200 (a client's socket
 * failed to open on a success status with no error), where a relay answers 400 `bad_frame`.
 */
const SECRET = 'edge-api-upgrade-jwt-secret-0123456789';

describe('edge API: an upgrade to a path that is no WebSocket endpoint', () => {
  let relay: TestRelay;
  let edge: EdgeRuntime;
  let token: string;
  before(async () => {
    relay = await startRelay({ 'jwt-secret': SECRET });
    edge = await startEdge({ JWT_SECRET: SECRET });
    token = await signToken(SECRET, { subject: 'reader', pub: ['>'], sub: ['>'] });
  });
  after(async () => {
    await edge?.stop();
    await relay?.stop();
  });

  /** The status and error code an upgrade to `path` is answered with (bounded). */
  const refusal = async (wsUrl: string, path: string) => {
    const attempt = openSocket(`${wsUrl}${path}`, { headers: { authorization: `Bearer ${token}` } }).then(
      (socket) => {
        socket.close();
        return { status: 101, code: 'opened' };
      },
      (error: { status?: number; body?: string }) => ({
        status: error.status,
        code: (JSON.parse(error.body ?? '{}') as { error?: { code?: string } }).error?.code,
      }),
    );
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no answer to an upgrade of ${path}`)), 15_000).unref(),
    );
    return Promise.race([attempt, timeout]);
  };

  it('is refused 400 bad_frame, as a relay refuses it, on history, latest, status and health URLs', async () => {
    for (const path of ['/v1/topics/up.a/messages', '/v1/topics/up.a/latest', '/v1/status', '/healthz']) {
      const fromRelay = await refusal(relay.wsUrl, path);
      assert.deepEqual(fromRelay, { status: 400, code: 'bad_frame' }, `relay ${path}`);
      assert.deepEqual(await refusal(edge.wsUrl, path), fromRelay, `edge ${path}`);
    }
  });

  it('still opens the protocol endpoints', async () => {
    for (const path of ['/v1/ws', '/v1/topics/up.a/ws']) {
      assert.deepEqual(await refusal(edge.wsUrl, path), { status: 101, code: 'opened' }, path);
    }
  });
});
