import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { UnavailableError } from '@anode/shared';
import { createPingFences } from './ping-fences.ts';
import { createUpstream, type UpstreamEvents, type UpstreamSocket } from './upstream.ts';

/**
 * The upstream's bookkeeping, driven through a socket that stands in for workerd's (the far end's
 * answers are played by hand, in the orders a relay or a topic's object can produce them).
 */
class FarEnd extends EventTarget {
  readonly sent: string[] = [];
  accept(): void {}
  send(text: string): void {
    this.sent.push(text);
  }
  close(): void {}
  /** A frame from the far end. */
  answer(frame: object): void {
    this.dispatchEvent(Object.assign(new Event('message'), { data: JSON.stringify(frame) }));
  }
  /** The far end went away. */
  lose(): void {
    this.dispatchEvent(Object.assign(new Event('close'), { code: 1006, reason: '' }));
  }
}

async function open(key = 't') {
  const far = new FarEnd();
  const refused: (string | undefined)[] = [];
  const forwarded: string[] = [];
  const subsRefused: string[] = [];
  const events: UpstreamEvents = {
    onFrame: (text) => void forwarded.push(text),
    onLost: () => {},
    onRefused: (_error: UnavailableError, ref) => void refused.push(ref),
    onDialFailed: () => {},
    onSubRefused: (topic) => void subsRefused.push(topic),
  };
  const upstream = createUpstream(key, () => Promise.resolve(far as unknown as UpstreamSocket), events);
  await new Promise((resolve) => setImmediate(resolve)); // the dial settles
  return { far, upstream, refused, forwarded, subsRefused };
}

const fenceRef = (far: FarEnd) => {
  const ping = far.sent.map((text) => JSON.parse(text) as { op: string; ref: string }).findLast((f) => f.op === 'ping');
  assert.ok(ping, 'a fence ping was sent');
  return ping.ref;
};

describe('upstream (edge connection to a topic object or relay)', () => {
  it('reports a sub answered with an err as refused, when the err is certainly its answer', async () => {
    const { far, upstream, subsRefused } = await open('*patterns*');
    upstream.send('{"op":"sub","topic":"a.>","ref":"s1"}', { ref: 's1', sub: 'a.>' });
    upstream.send('{"op":"sub","topic":"b.>","ref":"s2"}', { ref: 's2', sub: 'b.>' });
    far.answer({ op: 'subscribed', topic: 'b.>', cursor: 'c', ref: 's2' });
    far.answer({ op: 'err', code: 'forbidden', message: 'no', ref: 's1' });
    assert.deepEqual(subsRefused, ['a.>']);
    // A resubscription's err is no old one's: a sub dropped by a later sub of its topic is not reported.
    upstream.send('{"op":"sub","topic":"c.>","ref":"s3"}', { ref: 's3', sub: 'c.>' });
    upstream.send('{"op":"sub","topic":"c.>","ref":"s4"}', { ref: 's4', sub: 'c.>' });
    far.answer({ op: 'err', code: 'cursor_expired', message: 'old', ref: 's3' });
    assert.deepEqual(subsRefused, ['a.>']);
    far.answer({ op: 'err', code: 'cursor_expired', message: 'old', ref: 's4' });
    assert.deepEqual(subsRefused, ['a.>', 'c.>']);
  });

  it('does not guess which frame an ambiguous err answers', async () => {
    const { far, upstream, subsRefused } = await open('*patterns*');
    // No refs: the err could answer either pattern's sub.
    upstream.send('{"op":"sub","topic":"a.>"}', { ref: undefined, sub: 'a.>' });
    upstream.send('{"op":"sub","topic":"b.>"}', { ref: undefined, sub: 'b.>' });
    far.answer({ op: 'err', code: 'forbidden', message: 'no' });
    // One ref for a publish and a sub: the err could answer the publish.
    const topic = await open('t');
    topic.upstream.send('{"op":"pub","topic":"t","data":1,"ref":"r"}', { ref: 'r' });
    topic.upstream.send('{"op":"sub","topic":"t","after":"0","ref":"r"}', { ref: 'r', sub: 't' });
    topic.far.answer({ op: 'err', code: 'rate_limited', message: 'slow', ref: 'r' });
    assert.deepEqual([...subsRefused, ...topic.subsRefused], []);
  });

  it('on loss refuses only the frames not answered, by ref, whatever order the answers came in', async () => {
    const { far, upstream, refused } = await open();
    upstream.send('{"op":"sub","topic":"t","after":"0","ref":"s1"}', { ref: 's1' });
    upstream.send('{"op":"pub","topic":"t","data":1,"ref":"p1"}', { ref: 'p1' });
    // A resume still reading history: the later publish is acked first.
    far.answer({ op: 'ack', id: 'i', cursor: 'c', ref: 'p1' });
    far.lose();
    assert.deepEqual(refused, ['s1'], 'the acked publish is not refused; the unanswered resume is');
  });

  it('refuses as many ref-less frames as were left unanswered, without a ref', async () => {
    const { far, upstream, refused } = await open();
    upstream.send('{"op":"pub","topic":"t","data":1}', { ref: undefined });
    upstream.send('{"op":"pub","topic":"t","data":2}', { ref: undefined });
    upstream.send('{"op":"pub","topic":"t","data":3,"ref":"r"}', { ref: 'r' });
    far.answer({ op: 'ack', id: 'i', cursor: 'c' });
    far.lose();
    assert.deepEqual(refused, [undefined, 'r']);
  });

  it('lets a fence through on its own pong, though a dropped resume before it is never answered', async () => {
    const { far, upstream, forwarded } = await open();
    upstream.send('{"op":"sub","topic":"t","after":"0","ref":"s1"}', { ref: 's1' });
    upstream.send('{"op":"unsub","topic":"t"}');
    let through = false;
    const fence = upstream.fence().then(() => (through = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(through, false, 'not before the far end answered the ping');
    far.answer({ op: 'pong', ref: fenceRef(far) });
    await fence;
    assert.deepEqual(forwarded, [], 'the fence pong is not the client’s');
  });

  it('owes nothing for a resume a later sub or unsub dropped: it is not kept, nor refused on loss', async () => {
    const { far, upstream, refused } = await open();
    for (let i = 0; i < 10_000; i++) {
      upstream.send(`{"op":"sub","topic":"t","after":"0","ref":"s${i}"}`, { ref: `s${i}`, sub: 't' }, 't');
      upstream.send('{"op":"unsub","topic":"t"}', undefined, 't');
    }
    // A resume that is answered, then one dropped by a second sub whose own answer comes.
    upstream.send('{"op":"sub","topic":"t","ref":"kept"}', { ref: 'kept', sub: 't' }, 't');
    far.answer({ op: 'subscribed', topic: 't', cursor: '0', ref: 'kept' });
    upstream.send('{"op":"sub","topic":"t","after":"0","ref":"old"}', { ref: 'old', sub: 't' }, 't');
    upstream.send('{"op":"sub","topic":"t","ref":"new"}', { ref: 'new', sub: 't' }, 't');
    upstream.send('{"op":"pub","topic":"t","data":1,"ref":"p"}', { ref: 'p' });
    far.lose();
    assert.deepEqual(refused.sort(), ['new', 'p'], 'only frames still owed an answer');
  });

  it('lets earlier fences through with a later one’s pong, and retires once its fence is through', async () => {
    const { far, upstream } = await open();
    const first = upstream.fence();
    const second = upstream.fence();
    far.answer({ op: 'pong', ref: fenceRef(far) });
    await Promise.all([first, second]);
    upstream.send('{"op":"pub","topic":"t","data":1,"ref":"p"}', { ref: 'p' });
    let closed = false;
    const retired = upstream.retire().then(() => (closed = true));
    assert.equal(upstream.retire(), upstream.retire(), 'one retirement');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(closed, false);
    far.answer({ op: 'ack', id: 'i', cursor: 'c', ref: 'p' });
    far.answer({ op: 'pong', ref: fenceRef(far) });
    await retired;
  });
});

describe('ping fences (edge connection)', () => {
  it('holds a retired upstream only until it has closed: publishing to many topics keeps nothing', async () => {
    const fences = createPingFences();
    for (let i = 0; i < 50; i++) {
      const { far, upstream } = await open(`t${i}`);
      upstream.send(`{"op":"pub","topic":"t${i}","data":1,"ref":"p${i}"}`, { ref: `p${i}` });
      fences.sent(upstream);
      far.answer({ op: 'ack', id: `i${i}`, cursor: 'c', ref: `p${i}` });
      fences.retire(upstream); // past the connection's spares, as upstreamFor does
      far.answer({ op: 'pong', ref: fenceRef(far) });
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.equal(fences.held(), 0, 'every retired upstream closed and was let go, with no ping from the client');
  });

  it('keeps a pong behind a retiring upstream, and lets go of one that was lost', async () => {
    const fences = createPingFences();
    const retiring = await open('a');
    retiring.upstream.send('{"op":"pub","topic":"a","data":1,"ref":"p"}', { ref: 'p' });
    fences.sent(retiring.upstream);
    fences.retire(retiring.upstream);
    const lost = await open('b');
    lost.upstream.send('{"op":"unsub","topic":"b"}');
    fences.sent(lost.upstream);
    let ponged = false;
    fences.pong(() => (ponged = true));
    lost.far.lose();
    fences.ended(lost.upstream);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(ponged, false, 'the retiring upstream has not answered yet');
    retiring.far.answer({ op: 'ack', id: 'i', cursor: 'c', ref: 'p' });
    retiring.far.answer({ op: 'pong', ref: fenceRef(retiring.far) });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(ponged, true);
    assert.equal(fences.held(), 0);
    let again = false;
    fences.pong(() => (again = true));
    assert.equal(again, true, 'with nothing outstanding a pong goes at once');
  });
});
