import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Envelope, signToken } from '@anode/shared';
import { freePort, LINK_SECRET, startEdge, type EdgeRuntime } from '../helpers/edge.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

/**
 * PROTOCOL.md (Auth): names of sources a node pulls are reserved, and a publish as one is
 * `forbidden`. The edge used to ack such a publish, fan it out to its own subscribers and queue it
 * for the relay, which refused it: an acked message lost, and a pulled source spoofed at the edge.
 * The relay now tells its linked edge the reserved names, and the edge refuses before it acks.
 */
const JWT_SECRET = 'edge-reserved-e2e-jwt-secret-0123456789';
const ADMIN = 'edge-reserved-e2e-admin-token-0123';
const source = (name: string) => ({
  name,
  kind: 'http',
  url: 'http://127.0.0.1:9/',
  interval_ms: 60_000,
  topic: 'pulled.x',
});

describe('reserved source names at the edge (relay in process, Worker on workerd)', () => {
  let relay: TestRelay;
  let edge: EdgeRuntime;
  let anyName: string;
  const publishAs = (topic: string, name: string, data: unknown) =>
    fetch(`${edge.url}/v1/topics/${topic}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${anyName}` },
      body: JSON.stringify({ data, source: name }),
    });
  const storedOn = async (topic: string) =>
    (
      (await (
        await fetch(`${relay.url}/v1/topics/${topic}/messages`, { headers: { authorization: `Bearer ${anyName}` } })
      ).json()) as { messages: Envelope[] }
    ).messages;
  const errorOf = async (response: Response) =>
    ((await response.json()) as { error: { code: string; message: string } }).error;

  before(async () => {
    const edgeUrl = `http://127.0.0.1:${await freePort()}`;
    relay = await startRelay({
      'edge-link-secret': LINK_SECRET,
      'edge-url': edgeUrl,
      'jwt-secret': JWT_SECRET,
      'admin-token': ADMIN,
      sources: JSON.stringify([source('weather')]),
    });
    edge = await startEdge({
      RELAY_URLS: relay.url,
      LINK_SECRET,
      JWT_SECRET,
      EDGE_URL: edgeUrl,
      LINK_WAIT_MS: '2000',
      LINK_RETRY_MAX_MS: '400',
      PUBLISH_BURST: '1000',
    });
    anyName = await signToken(JWT_SECRET, { subject: 'any', pub: ['>'], sub: ['>'], src: ['>'] });
  });
  after(async () => {
    await edge?.stop();
    await relay?.stop();
  });

  it('refuses a publish as a pulled source with forbidden before acking it, on HTTP and on the WebSocket', async () => {
    // A fresh topic object: it has not heard the names yet, so the publish waits for its link.
    const refused = await publishAs('spoof.http', 'weather', 'fake');
    assert.equal(refused.status, 403);
    assert.deepEqual(await errorOf(refused), {
      code: 'forbidden',
      message: 'source weather is reserved: a source the mesh pulls',
    });
    assert.equal((await publishAs('spoof.http', 'bots.ok', 'real')).status, 202, 'other names still publish');

    const socket = await openSocket(`${edge.wsUrl}/v1/topics/spoof.ws/ws?token=${anyName}`);
    await socket.next((f) => f.op === 'subscribed');
    socket.send({ op: 'pub', topic: 'spoof.ws', data: 'fake', source: 'weather', ref: 'spoof' });
    const err = await socket.next((f) => f.op === 'err' && f.ref === 'spoof');
    assert.equal(err.op === 'err' && err.code, 'forbidden');
    socket.send({ op: 'pub', topic: 'spoof.ws', data: 'real', source: 'bots.ok', ref: 'fine' });
    await socket.next((f) => f.op === 'ack' && f.ref === 'fine');
    assert.deepEqual(
      socket.frames.flatMap((f) => (f.op === 'msg' ? [f.source] : [])),
      ['bots.ok'],
      'edge subscribers never saw the spoofed message',
    );
    socket.close();

    // Everything the edge acked reaches the relay; nothing under the reserved name does.
    for (const topic of ['spoof.http', 'spoof.ws']) {
      const deadline = Date.now() + 15_000;
      let stored = await storedOn(topic);
      while (stored.length === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        stored = await storedOn(topic);
      }
      assert.deepEqual(
        stored.map((m) => [m.source, m.data]),
        [['bots.ok', 'real']],
      );
    }
  });

  it('learns a source added on the relay over an open link, and keeps refusing with the relay gone', async () => {
    const socket = await openSocket(`${edge.wsUrl}/v1/topics/spoof.later/ws?token=${anyName}`);
    await socket.next((f) => f.op === 'subscribed');
    const added = await fetch(`${relay.url}/v1/admin/sources`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
      body: JSON.stringify(source('radar')),
    });
    assert.equal(added.status, 201);
    // The relay passes changes on within about a second; until then the name is still free here.
    const deadline = Date.now() + 10_000;
    let status = 0;
    for (let i = 0; status !== 403 && Date.now() < deadline; i++) {
      socket.send({ op: 'pub', topic: 'spoof.later', data: i, source: 'radar', ref: `r${i}` });
      const answer = await socket.next((f) => (f.op === 'ack' || f.op === 'err') && f.ref === `r${i}`);
      status = answer.op === 'err' && answer.code === 'forbidden' ? 403 : 202;
      if (status !== 403) await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(status, 403, 'radar became reserved at the edge');

    // The object keeps the last names it heard: with no relay reachable it still refuses them,
    // and still acks (and keeps for the relay) everything else.
    await relay.stop();
    const refused = await publishAs('spoof.later', 'weather', 'fake');
    assert.equal(refused.status, 403);
    assert.equal((await publishAs('spoof.later', 'bots.ok', 'kept')).status, 202);
    socket.close();
  });
});
