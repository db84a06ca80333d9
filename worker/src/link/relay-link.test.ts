import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MAX_LINK_BATCH } from '@anode/shared';
import { type EdgeRuntime, startEdge } from '../../test-support/edge-runtime.ts';
import { startStandInRelay } from './stand-in-relay.fixture.ts';

/**
 * A relay that takes at most `maxBatch` messages in one `pub` frame and refuses a larger frame
 * whole, as `bad_frame` (a relay refuses a frame above MAX_LINK_BATCH so). Played by a small
 * server: it dials back, announces no reserved names, and acks what it takes.
 */
async function startNarrowRelay(secret: string, maxBatch: number) {
  const stored: string[] = [];
  const frames = { refused: 0, taken: 0 };
  const relay = await startStandInRelay({
    secret,
    node: 'narrow-relay',
    onFrame(frame, link) {
      if (frame.op === 'sub') {
        link.send({ op: 'subscribed', topic: link.topic, cursor: frame.after ?? '0', ref: frame.ref });
      } else if (frame.op === 'pub') {
        const messages = frame.messages ?? [];
        if (messages.length > maxBatch) {
          frames.refused += 1;
          link.send({ op: 'err', code: 'bad_frame', message: 'messages: too many', ref: frame.ref });
          return;
        }
        frames.taken += 1;
        for (const m of messages) if (!stored.includes(m.id)) stored.push(m.id);
        link.send({ op: 'ack', ref: frame.ref, ids: messages.map((m) => m.id) });
      }
    },
  });
  return { url: relay.url, stored, frames, stop: relay.stop };
}

describe('relay link on workerd: a relay that refuses whole pub frames', () => {
  const LINK_SECRET = 'unit-test-link-secret-0123';
  let relay: Awaited<ReturnType<typeof startNarrowRelay>>;
  let edge: EdgeRuntime;
  before(async () => {
    relay = await startNarrowRelay(LINK_SECRET, 2);
    edge = await startEdge({ RELAY_URLS: relay.url, LINK_SECRET, LINK_BATCH: '8', LINK_WAIT_MS: '300' });
  });
  after(async () => {
    await edge?.stop();
    await relay?.stop();
  });

  // The same frames were refused and resent forever, with nothing logged or counted.
  it('counts each refused frame and resends in smaller frames until the relay takes them', async () => {
    const topic = 'narrow.a';
    const response = await fetch(`${edge.url}/v1/topics/${topic}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(Array.from({ length: 7 }, (_, i) => ({ data: i }))),
    });
    assert.equal(response.status, 202, await response.clone().text());
    const acks = ((await response.json()) as { messages: { id: string }[] }).messages;
    const deadline = Date.now() + 15_000;
    while (relay.stored.length < acks.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual([...relay.stored].sort(), acks.map((a) => a.id).sort(), 'every message reached the relay');
    const status = (await (await fetch(`${edge.url}/v1/status?topic=${topic}`)).json()) as {
      topic: { outbox: number; link: { refused_frames: number } };
    };
    assert.ok(status.topic.link.refused_frames >= 2, `counted ${status.topic.link.refused_frames} refused frames`);
    assert.equal(status.topic.link.refused_frames, relay.frames.refused);
    assert.equal(status.topic.outbox, 0);
  });
});

describe('relay link settings on workerd', () => {
  // A relay refuses a `pub` frame of more than MAX_LINK_BATCH messages as bad_frame: with a larger
  // LINK_BATCH every frame was refused and the outbox resent forever. The edge now refuses to start
  // (the error, naming LINK_BATCH and MAX_LINK_BATCH, is logged; requests get 500).
  it('refuses LINK_BATCH above the most a relay takes in one pub frame', async () => {
    for (const [batch, status] of [
      [String(MAX_LINK_BATCH), 200],
      [String(MAX_LINK_BATCH + 1), 500],
    ] as const) {
      const edge = await startEdge({ EDGE_URL: '', LINK_BATCH: batch });
      try {
        const response = await fetch(`${edge.url}/healthz`);
        await response.body?.cancel();
        assert.equal(response.status, status, `LINK_BATCH=${batch}`);
      } finally {
        await edge.stop();
      }
    }
  });
});
