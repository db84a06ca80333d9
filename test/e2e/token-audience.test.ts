import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { signToken } from '@anode/shared';
import { startEdge } from '../helpers/edge.ts';
import { startRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

/**
 * PROTOCOL.md "Auth" and RFC 7519 4.1.3: a token whose `aud` does not name the node is refused.
 * Nodes checked no audience at all, so a token minted for another service (`aud: "billing"`)
 * signed with the same key was accepted. One case list, run against a relay (`jwt_audience`) and
 * the edge (`JWT_AUDIENCE`), each started with and without an audience.
 */
const SECRET = 'token-audience-e2e-jwt-secret-0123456789';
const AUDIENCES = 'anode, anode-staging';

interface Node {
  url: string;
  wsUrl: string;
  stop(): Promise<void>;
}

const targets: Record<string, (audience: string | undefined) => Promise<Node>> = {
  relay: (audience) => startRelay({ 'jwt-secret': SECRET, ...(audience ? { 'jwt-audience': audience } : {}) }),
  edge: (audience) => startEdge({ JWT_SECRET: SECRET, EDGE_URL: '', ...(audience ? { JWT_AUDIENCE: audience } : {}) }),
};

const tokenFor = (audience?: string | string[]) =>
  signToken(SECRET, { subject: 'aud-tester', pub: ['>'], sub: ['>'], ...(audience ? { audience } : {}) });

/** A refusal's code and message, over HTTP (a publish) and on the WebSocket handshake; undefined when accepted. */
async function refusal(node: Node, token: string): Promise<{ code: string; message: string } | undefined> {
  const response = await fetch(`${node.url}/v1/topics/aud.a/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ data: 1 }),
  });
  const body = (await response.json()) as { error?: { code: string; message: string } };
  const socket = await openSocket(`${node.wsUrl}/v1/topics/aud.a/ws?token=${token}`).then(
    (s) => (s.close(), undefined),
    (error: { status?: number }) => error,
  );
  if (response.status === 202) {
    assert.equal(socket, undefined, 'the WebSocket handshake is accepted as HTTP is');
    return undefined;
  }
  assert.equal(response.status, 401);
  assert.equal(socket?.status, 401, 'the WebSocket handshake is refused as HTTP is');
  return body.error;
}

for (const [name, start] of Object.entries(targets)) {
  describe(`token audience on the ${name}`, () => {
    describe(`with an audience configured (${AUDIENCES})`, () => {
      let node: Node;
      before(async () => (node = await start(AUDIENCES)));
      after(() => node.stop());

      it('accepts a token whose aud names one of the audiences', async () => {
        for (const audience of ['anode', 'anode-staging', ['billing', 'anode']]) {
          assert.equal(await refusal(node, await tokenFor(audience)), undefined, JSON.stringify(audience));
        }
      });

      it('refuses a token minted for another service: unauthorized, the audience does not match', async () => {
        const refused = await refusal(node, await tokenFor('billing'));
        assert.equal(refused?.code, 'unauthorized');
        assert.match(refused?.message ?? '', /audience does not match/);
      });

      it('refuses a token without aud: unauthorized, the audience does not match', async () => {
        const refused = await refusal(node, await tokenFor());
        assert.equal(refused?.code, 'unauthorized');
        assert.match(refused?.message ?? '', /audience does not match/);
      });
    });

    describe('with no audience configured', () => {
      let node: Node;
      before(async () => (node = await start(undefined)));
      after(() => node.stop());

      it('refuses a token that carries an aud, telling the operator to set jwt_audience', async () => {
        const refused = await refusal(node, await tokenFor('billing'));
        assert.equal(refused?.code, 'unauthorized');
        assert.match(refused?.message ?? '', /set jwt_audience/);
      });

      it('accepts a token without aud', async () => {
        assert.equal(await refusal(node, await tokenFor()), undefined);
      });
    });
  });
}
