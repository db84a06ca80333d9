import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openSocket, type RawSocket } from '../../../test/helpers/ws.ts';
import { type EdgeRuntime, startEdge } from '../../test-support/edge-runtime.ts';

/**
 * PROTOCOL.md: frames are handled in order per connection, so a `pong` means every frame sent
 * before its `ping` was answered. The edge's connection answered pings itself at once while the
 * frames before them were still on their way to (and back from) the topics' objects, so a client
 * fencing on ping saw the pong before the acks.
 */
describe('edge connection: ping is a fence over every upstream (workerd)', () => {
  let edge: EdgeRuntime;
  let run = 0;

  before(async () => {
    edge = await startEdge({ PUBLISH_BURST: '10000' });
  });
  after(() => edge.stop());

  /** The ops of the frames with the given refs, in the order they arrived. */
  const arrival = (socket: RawSocket, refs: Set<string>) =>
    socket.frames.flatMap((f) => ('ref' in f && f.ref !== undefined && refs.has(f.ref) ? [f.ref] : []));

  it('sends the pong after the acks of publishes sent before the ping, to fresh topics', async () => {
    run += 1;
    const socket = await openSocket(`${edge.wsUrl}/v1/ws`);
    const refs = new Set<string>();
    // Each topic is new: its object starts (and opens its store) before it can answer.
    for (let i = 0; i < 20; i++) {
      const ref = `pub-${i}`;
      refs.add(ref);
      socket.send({ op: 'pub', topic: `fence.r${run}.t${i}`, data: i, ref });
    }
    socket.send({ op: 'ping', ref: 'fence' });
    await socket.next((f) => f.op === 'pong' && f.ref === 'fence', 30_000);
    const answered = arrival(socket, refs);
    assert.equal(answered.length, refs.size, `every ack came before the pong (got ${answered.length})`);
    assert.equal(socket.frames.filter((f) => f.op === 'ack').length, refs.size, 'every publish acked, none refused');
    socket.close();
  });

  it('keeps pongs in order and answers a ping with nothing outstanding at once', async () => {
    run += 1;
    const socket = await openSocket(`${edge.wsUrl}/v1/ws`);
    socket.send({ op: 'ping', ref: 'idle' });
    await socket.next((f) => f.op === 'pong' && f.ref === 'idle');
    socket.send({ op: 'pub', topic: `fence.r${run}.a`, data: 1, ref: 'a' });
    socket.send({ op: 'ping', ref: 'p1' });
    socket.send({ op: 'ping', ref: 'p2' });
    socket.send({ op: 'sub', topic: `fence.r${run}.b`, ref: 'b' });
    socket.send({ op: 'ping', ref: 'p3' });
    await socket.next((f) => f.op === 'pong' && f.ref === 'p3', 30_000);
    assert.deepEqual(arrival(socket, new Set(['a', 'p1', 'p2', 'b', 'p3'])), ['a', 'p1', 'p2', 'b', 'p3']);
    assert.ok(!socket.frames.some((f) => f.op === 'pong' && f.ref !== undefined && f.ref.startsWith('anode-')));
    socket.close();
  });
});
