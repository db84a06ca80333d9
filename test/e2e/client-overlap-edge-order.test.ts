// The edge-overlap retried-resume failure, frame for frame, from a stand-in edge: the order of
// frames a real edge sends when the topic's object's link brings a3 to the relay only after the
// pattern's retried resume was answered (a real run: edge log "drop <a3> from *patterns* (by rv.a)").
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { createClient } from '@anode/client';

async function until(ok: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const C0 = '01a234b05eba0000-relay';
const msg = (id: string, topic: string, cursor: string, data: string) =>
  JSON.stringify({ op: 'msg', id, topic, cursor, source: 'anonymous', ts: 1, data });

test('a pattern waiting to retry its refused resume at an edge still gets the message the topic brought meanwhile', async () => {
  const A1 = '01a234b060770000-do-a';
  const B2 = '01a234b0664a0000-do-b';
  const A3 = '01a234b067320000-do-a';
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => wss.once('listening', resolve));
  let connections = 0;
  let patternSubs = 0;
  wss.on('connection', (ws: WebSocket) => {
    connections += 1;
    const conn = connections;
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as { op: string; topic?: string; ref?: string; after?: string };
      if (frame.op === 'ping') return ws.send(JSON.stringify({ op: 'pong', ...(frame.ref ? { ref: frame.ref } : {}) }));
      if (frame.op !== 'sub') return;
      const subscribed = (cursor: string) =>
        ws.send(JSON.stringify({ op: 'subscribed', topic: frame.topic, cursor, ref: frame.ref }));
      if (conn === 1) {
        subscribed(C0);
        if (frame.topic === 'rv.a') {
          // a1 through the topic's object; the relay's copy for the pattern is dropped by the edge.
          ws.send(msg('id-a1', 'rv.a', A1, 'a1'));
        }
        return;
      }
      // Connection 2 (after the relay restarted): the topic's object resumes the exact subscription.
      if (frame.topic === 'rv.a') return subscribed(A1);
      patternSubs += 1;
      if (patternSubs === 1) {
        // The relay's store cannot list topics: the pattern's resume is refused for now. Then a3,
        // published at the edge, comes live through the topic's object while the pattern waits.
        ws.send(JSON.stringify({ op: 'err', code: 'unavailable', message: 'cannot list topics', ref: frame.ref }));
        ws.send(msg('id-a3', 'rv.a', A3, 'a3'));
        return;
      }
      // The retry is served: the relay has b2 (rv.b's link was quick), not yet a3 (rv.a's link was
      // down). a3 reaches the relay later and comes live, and the edge drops that copy: the topic's
      // object delivered a3 on this connection already.
      ws.send(msg('id-b2', 'rv.b', B2, 'b2'));
      subscribed(B2);
    });
  });
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  const client = createClient({ url, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  client.on('error', () => {});
  try {
    const pattern: unknown[] = [];
    const topic: unknown[] = [];
    const wide = client.subscribe('rv.>', (m) => void pattern.push(m.data));
    const exact = client.subscribe('rv.a', (m) => void topic.push(m.data));
    await Promise.all([wide.ready, exact.ready]);
    await until(() => pattern.length === 1 && topic.length === 1, 'a1 at both subscriptions');
    for (const ws of wss.clients) ws.close(4000, 'node is shutting down');
    await until(() => patternSubs >= 2 && topic.length === 2, "the pattern's retry served");
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual([...pattern].sort(), ['a1', 'a3', 'b2'], `the pattern has ${JSON.stringify(pattern)}`);
    assert.equal(wide.cursor, B2, "the pattern's cursor is where its resume left it");
  } finally {
    await client.close();
    for (const ws of wss.clients) ws.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});
