import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startRelay, type TestRelay } from '../helpers/relay.ts';

/**
 * The dashboard's admin token, as a new user meets it after turning auth on (README "Run a relay"):
 * the page shows the relay's refusal above its token field. With no admin_token on the relay it
 * said "auth is on: set admin_token to open the dashboard" (no token typed there could ever open
 * it, and nothing said how to set one), and a wrong token was answered "the admin token is
 * required", as if none had been given.
 */
const SECRET = 'first-hour-jwt-secret-'.padEnd(40, 'x');
const ADMIN = 'first-hour-admin-token-0123456789';

async function refusal(relay: TestRelay, token?: string): Promise<{ status: number; message: string }> {
  const response = await fetch(`${relay.url}/v1/status/stream`, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await response.json()) as { error: { message: string } };
  return { status: response.status, message: body.error.message };
}

describe('first hour: the dashboard asks for the admin token', () => {
  let closed: TestRelay;
  let guarded: TestRelay;
  before(async () => {
    closed = await startRelay({ 'jwt-secret': SECRET });
    guarded = await startRelay({ 'jwt-secret': SECRET, 'admin-token': ADMIN });
  });
  after(() => Promise.all([closed?.stop(), guarded?.stop()]));

  it('auth on and no admin_token: says how to start the relay so that the dashboard opens', async () => {
    for (const token of [undefined, 'anything-typed-into-the-page']) {
      const { status, message } = await refusal(closed, token);
      assert.equal(status, 403);
      assert.match(message, /no admin_token/);
      assert.match(message, /--admin-token <at least 16 characters> \(or ANODE_ADMIN_TOKEN\)/);
    }
  });

  it('a wrong admin token is called wrong, a missing one missing', async () => {
    const wrong = await refusal(guarded, 'not-the-admin-token-at-all');
    assert.equal(wrong.status, 401);
    assert.match(wrong.message, /not this relay’s admin token/);
    const missing = await refusal(guarded);
    assert.equal(missing.status, 401);
    assert.match(missing.message, /admin token is required \(Authorization: Bearer <admin_token>\)/);
  });

  it('the right admin token opens the stream', async () => {
    const stream = new AbortController();
    const timer = setTimeout(() => stream.abort(), 30_000);
    try {
      const response = await fetch(`${guarded.url}/v1/status/stream`, {
        headers: { authorization: `Bearer ${ADMIN}` },
        signal: stream.signal,
      });
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /text\/event-stream/);
    } finally {
      clearTimeout(timer);
      stream.abort();
    }
  });
});
