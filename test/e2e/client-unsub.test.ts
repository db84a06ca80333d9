import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { createClient } from '@anode/client';
import { type WebSocket, WebSocketServer } from 'ws';

// A stand-in node (a test double for the order of frames): it answers `sub` with `subscribed`, and
// `unsub` with a message of that topic, as a node does whose message was on the wire when the
// `unsub` came; `ping` with `pong`, after what came before it.
test('a message that arrives after its only subscription was unsubscribed is not emitted as `message`', async () => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => wss.once('listening', resolve));
  wss.on('connection', (ws: WebSocket) => {
    let n = 0;
    const perTopic = new Map<string, number>();
    const msg = (topic: string) => {
      perTopic.set(topic, (perTopic.get(topic) ?? 0) + 1);
      return JSON.stringify({
        op: 'msg',
        id: `id-${topic}-${++n}`,
        topic,
        cursor: `01a234b0${(0x60770000 + n).toString(16)}-node`,
        source: 's',
        ts: 1,
        data: perTopic.get(topic),
      });
    };
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as { op: string; topic?: string; ref?: string };
      if (frame.op === 'sub') {
        ws.send(
          JSON.stringify({ op: 'subscribed', topic: frame.topic, cursor: '01a234b060770000-node', ref: frame.ref }),
        );
        ws.send(msg(frame.topic as string));
      } else if (frame.op === 'unsub') ws.send(msg(frame.topic as string));
      else if (frame.op === 'ping') ws.send(JSON.stringify({ op: 'pong', ...(frame.ref ? { ref: frame.ref } : {}) }));
    });
  });
  const client = createClient({ url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}` });
  try {
    const events: string[] = [];
    client.on('message', (m) => events.push(`${m.topic} ${String(m.data)}`));
    const handled: unknown[] = [];
    const kept = client.subscribe('kept.t');
    const sub = client.subscribe('gone.t', (m) => handled.push(m.data));
    await Promise.all([kept.ready, sub.ready]);
    await client.ping();
    assert.deepEqual(events.sort(), ['gone.t 1', 'kept.t 1']);
    sub.unsubscribe();
    await client.ping(); // answered after the message sent on `unsub`
    assert.deepEqual(handled, [1], 'the handler heard nothing after unsubscribe()');
    assert.deepEqual(events.sort(), ['gone.t 1', 'kept.t 1'], 'no `message` event for it either');
  } finally {
    await client.close();
    for (const ws of wss.clients) ws.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});
