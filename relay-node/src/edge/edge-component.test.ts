import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type WebSocket, WebSocketServer } from 'ws';
import { loadConfig } from '../config.ts';
import { createLogger } from '../logger.ts';
import { createRelayNode, type RelayNode } from '../node.ts';

const SECRET = 'relay-unit-link-secret-0123';

/** A stand-in for a Durable Object: accepts the relay's dial-back and records its frames. */
async function fakeEdge() {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  const links: { ws: WebSocket; request: IncomingMessage; frames: Record<string, unknown>[] }[] = [];
  wss.on('connection', (ws, request) => {
    const link = { ws, request, frames: [] as Record<string, unknown>[] };
    ws.on('message', (data) => link.frames.push(JSON.parse(String(data)) as Record<string, unknown>));
    links.push(link);
  });
  const { port } = wss.address() as { port: number };
  const until = async <T>(what: string, get: () => T | undefined, ms = 5_000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (let v = get(); ; v = get()) {
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { origin: `http://127.0.0.1:${port}`, links, until, close: () => wss.close() };
}

describe('edge links, relay side', () => {
  let node: RelayNode;
  let url: string;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'anode-edge-unit-'));
    const config = loadConfig({
      flags: { port: '0', 'data-dir': dir, 'log-level': 'silent', 'edge-link-secret': SECRET },
      env: {},
    });
    node = await createRelayNode(config, createLogger('silent'));
    ({ url } = await node.start());
  });
  after(async () => {
    await node.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const dial = (query: string, secret = SECRET) =>
    fetch(`${url}/v1/edge/dial?${query}`, { method: 'POST', headers: { authorization: `Bearer ${secret}` } });

  it('refuses dial requests without the secret, for bad topics, or without an origin', async () => {
    assert.equal((await dial('topic=a.b&edge=http://127.0.0.1:1', 'wrong-secret-0123456789')).status, 401);
    assert.equal((await dial('topic=a..b&edge=http://127.0.0.1:1')).status, 400);
    assert.equal((await dial('topic=a.b&edge=ftp://x')).status, 400);
  });

  it('dials back with the secret and speaks the link protocol: sub, pub with ack, history, latest', async () => {
    const edge = await fakeEdge();
    assert.equal((await dial(`topic=unit.link&edge=${encodeURIComponent(edge.origin)}`)).status, 202);
    const link = await edge.until('the dial-back', () => edge.links[0]);
    assert.equal(link.request.url, '/v1/edge/link/unit.link');
    assert.equal(link.request.headers.authorization, `Bearer ${SECRET}`);
    const frame = (op: string, ref?: string) =>
      edge.until(op, () => link.frames.find((f) => f.op === op && (ref === undefined || f.ref === ref)));
    await frame('hello');

    link.ws.send(JSON.stringify({ op: 'sub', ref: 's' }));
    await frame('subscribed', 's');
    const envelope = { id: 'kedge1', topic: 'unit.link', cursor: '0000000000010000-eabc', source: 'e', ts: 1, data: 1 };
    link.ws.send(JSON.stringify({ op: 'pub', ref: 'p1', messages: [envelope] }));
    assert.deepEqual((await frame('ack', 'p1')).ids, ['kedge1']);

    const published = await fetch(`${url}/v1/topics/unit.link/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ data: 'from the relay' }),
    });
    assert.equal(published.status, 202);
    const msg = await frame('msg');
    assert.equal(msg.data, 'from the relay', 'mesh → edge, without echoing the edge its own message');

    link.ws.send(JSON.stringify({ op: 'history', ref: 'h', limit: 10 }));
    const history = (await frame('history', 'h')) as { messages: { id: string }[] };
    assert.deepEqual(history.messages[0]?.id, 'kedge1');
    link.ws.send(JSON.stringify({ op: 'latest', ref: 'l' }));
    assert.ok(((await frame('latest', 'l')).sources as Record<string, unknown>).e);

    link.ws.send(JSON.stringify({ op: 'pub', ref: 'bad', messages: [{ ...envelope, topic: 'other.topic' }] }));
    assert.equal((await frame('err', 'bad')).code, 'forbidden');

    const status = (await (await fetch(`${url}/v1/status`)).json()) as {
      edge: { links: { topic: string; state: string; messages_from_edge: number; messages_to_edge: number }[] };
    };
    assert.deepEqual(
      status.edge.links.map(({ topic, state, messages_from_edge, messages_to_edge }) => ({
        topic,
        state,
        messages_from_edge,
        messages_to_edge,
      })),
      [{ topic: 'unit.link', state: 'open', messages_from_edge: 1, messages_to_edge: 1 }],
    );
    edge.close();
  });
});
