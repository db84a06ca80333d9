import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ServerFrame } from '@anode/shared';
import WebSocket from 'ws';
import { expectedFor, generateCases, MAX_FRAME, MAX_MESSAGE, SEED } from '../fuzz/cases.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

/**
 * Fuzzes `/v1/ws` with thousands of random and malformed frames, one at a time, each followed by
 * a ping barrier so that every reply is attributed to the frame that caused it. Each frame must
 * get exactly the reply PROTOCOL.md gives it: one `err` for a bad frame, or the ack, subscribed
 * or pong of a frame that turned out valid. Meanwhile a well-formed subscriber on another
 * connection must keep receiving everything, and the node must stay healthy. The cases and the
 * oracle live in test/fuzz/cases.ts (shared with `npm run fuzz`, which pipelines a million).
 */

// ---- a client that sees every frame -----------------------------------------------------------

function collect(ws: WebSocket) {
  const frames: ServerFrame[] = [];
  let wake: (() => void) | undefined;
  ws.on('message', (raw) => {
    frames.push(JSON.parse(String(raw)) as ServerFrame);
    wake?.();
  });
  ws.on('close', () => wake?.());
  const until = (done: () => boolean, what: string, timeoutMs = 10_000) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      wake = () => {
        if (ws.readyState !== WebSocket.OPEN) {
          clearTimeout(timer);
          reject(new Error(`fuzz connection closed while waiting for ${what}`));
        } else if (done()) {
          clearTimeout(timer);
          resolve();
        }
      };
      wake();
    });
  return { frames, until };
}

describe('fuzzing the WebSocket endpoint', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({
      'max-frame-bytes': String(MAX_FRAME),
      'max-message-bytes': String(MAX_MESSAGE),
      'publish-rate': '100000',
      'publish-burst': '100000',
      'max-subscriptions': '10000',
      'store-fsync': 'false',
    });
  });
  after(() => relay.stop());

  it('answers every malformed frame with exactly one err while the node and other clients carry on', async (t) => {
    const fuzzCases = generateCases();
    assert.ok(fuzzCases.length >= 3_000, `only ${fuzzCases.length} cases`);

    // A well-formed subscriber and a steady publisher on their own connections.
    const watcher = await openSocket(`${relay.wsUrl}/v1/ws`);
    watcher.send({ op: 'sub', topic: 'watch.feed', ref: 'watch' });
    await watcher.next((f) => f.op === 'subscribed');
    const publisher = await openSocket(`${relay.wsUrl}/v1/ws`);
    let published = 0;
    const publishOne = () =>
      publisher.send({ op: 'pub', topic: 'watch.feed', data: published, ref: `w${published++}` });
    const ticker = setInterval(publishOne, 5);

    const ws = new WebSocket(`${relay.wsUrl}/v1/ws`, { perMessageDeflate: false });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const { frames, until } = collect(ws);

    const mismatches: string[] = [];
    const byKind = new Map<string, number>();
    let expectedErrors = 0;
    try {
      for (const [i, c] of fuzzCases.entries()) {
        byKind.set(c.kind, (byKind.get(c.kind) ?? 0) + 1);
        const expected = expectedFor(c);
        if (expected.err) expectedErrors++;
        const start = frames.length;
        const barrier = `fuzz-barrier-${i}`;
        ws.send(c.payload, { binary: c.binary });
        ws.send(JSON.stringify({ op: 'ping', ref: barrier }));
        const window = () => frames.slice(start).filter((f) => f.op !== 'msg');
        const hasBarrier = () => window().some((f) => f.op === 'pong' && f.ref === barrier);
        const hasLateReply = () => window().some((f) => f.op === 'ack' || f.op === 'err' || f.op === 'subscribed');
        await until(() => hasBarrier() && (!expected.late || hasLateReply()), `the replies to case ${i} (${c.kind})`);

        const replies = window().filter((f) => !(f.op === 'pong' && f.ref === barrier));
        const errs = replies.filter((f) => f.op === 'err');
        const ok =
          errs.length === (expected.err ? 1 : 0) &&
          (!expected.err || errs[0]?.code === expected.err) &&
          replies.length === (expected.err || expected.reply ? 1 : 0) &&
          (!expected.reply || replies[0]?.op === expected.reply);
        if (!ok) {
          const preview = c.payload.subarray(0, 160).toString(c.binary ? 'hex' : 'utf8');
          mismatches.push(
            `#${i} ${c.kind} ${JSON.stringify(preview)}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(replies)}`,
          );
        }
      }
    } finally {
      clearInterval(ticker);
    }
    t.diagnostic(`cases by kind: ${JSON.stringify(Object.fromEntries(byKind))}`);
    t.diagnostic(`${expectedErrors} err frames expected, seed ${SEED}`);
    assert.deepEqual(mismatches.slice(0, 10), [], `${mismatches.length} frames got the wrong reply`);
    assert.equal(
      frames.filter((f) => f.op === 'err').length,
      expectedErrors,
      'one err per malformed frame, none for valid ones',
    );
    assert.ok(expectedErrors >= 2_500, `only ${expectedErrors} malformed frames were generated`);

    // The fuzzed connection and the node are still up, and keep serving.
    assert.equal(ws.readyState, WebSocket.OPEN);
    ws.send(JSON.stringify({ op: 'ping', ref: 'still-there' }));
    await until(() => frames.some((f) => f.op === 'pong' && f.ref === 'still-there'), 'a pong after fuzzing');
    ws.close();
    assert.equal((await fetch(`${relay.url}/healthz`)).status, 200);

    for (let i = 0; i < 20; i++) publishOne();
    const acks = await Promise.all(
      Array.from({ length: published }, (_, i) =>
        publisher
          .next((f) => 'ref' in f && f.ref === `w${i}`)
          .then((f) => {
            assert.equal(f.op, 'ack', JSON.stringify(f));
            return (f as { id: string }).id;
          }),
      ),
    );
    watcher.send({ op: 'ping', ref: 'settle' });
    await watcher.next((f) => f.op === 'pong' && f.ref === 'settle');
    assert.ok(published > 20, 'messages were published during the fuzzing');
    assert.deepEqual(
      watcher.frames.filter((f) => f.op === 'msg').map((f) => (f as { id: string }).id),
      acks,
      'the well-formed subscriber received every message, once, in order',
    );
    watcher.close();
    publisher.close();
  });
});
