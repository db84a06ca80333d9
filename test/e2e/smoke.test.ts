import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

describe('smoke', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay();
  });
  after(() => relay.stop());

  it('publishes over WS and delivers to a subscriber', async () => {
    const sub = await openSocket(`${relay.wsUrl}/v1/ws`);
    sub.send({ op: 'sub', topic: 'a.b', ref: 's1' });
    await sub.next((f) => f.op === 'subscribed');
    const pub = await openSocket(`${relay.wsUrl}/v1/ws`);
    pub.send({ op: 'pub', topic: 'a.b', data: { x: 1 }, ref: 'p1' });
    const ack = await pub.next((f) => f.op === 'ack');
    const msg = await sub.next((f) => f.op === 'msg');
    assert.equal((msg as { id: string }).id, (ack as { id: string }).id);
    const res = await fetch(`${relay.url}/v1/topics/a.b/messages`);
    const body = (await res.json()) as { messages: unknown[] };
    assert.equal(body.messages.length, 1);
    sub.close();
    pub.close();
  });
});
