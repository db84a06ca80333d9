import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertDataDepth } from './data-depth.ts';
import { checkEnvelope } from './envelope.ts';
import { parseClientFrame, parsePublishBody } from './frames.ts';
import { createHybridClock } from './ids.ts';

// JSON.parse reads a number literal past the double range (1e999, -1e999) as ±Infinity, which
// JSON cannot hold: stored and sent on, it became null. The message was acked with other data than
// its publisher sent; now it is refused where every way in parses it.
const overflowing = ['1e999', '-1e999', '[1, 1e400]', '{"a":{"b":[0, -2e308]}}'];
const badFrame = { code: 'bad_frame', message: /data: .*number/ };

describe('data holding a number JSON cannot carry', () => {
  it('is refused by the data check, at any depth', () => {
    for (const text of overflowing) assert.throws(() => assertDataDepth(JSON.parse(text)), badFrame, text);
    for (const data of [0, -0, 1.7976931348623157e308, 5e-324, [1, 2.5], { a: -1e300 }]) assertDataDepth(data);
  });

  it('is refused in a pub frame', () => {
    for (const text of overflowing) {
      assert.throws(() => parseClientFrame(`{"op":"pub","topic":"t","data":${text}}`), badFrame, text);
    }
  });

  it('is refused in an HTTP body, alone or in a batch', () => {
    for (const text of overflowing) {
      assert.throws(() => parsePublishBody(JSON.parse(`{"data":${text}}`)), badFrame, text);
      assert.throws(() => parsePublishBody(JSON.parse(`[{"data":1},{"data":${text}}]`)), badFrame, text);
    }
  });

  it('is refused in an envelope from another node (gossip, catch-up, an edge link)', () => {
    const now = Date.now();
    for (const text of overflowing) {
      const envelope = {
        id: 'rAbc_-1',
        topic: 't',
        cursor: createHybridClock('node1', () => now).next(),
        source: 's',
        ts: now,
        data: JSON.parse(text) as unknown,
      };
      assert.throws(() => checkEnvelope(envelope, { maxMessageBytes: 1024, now }), badFrame, text);
    }
  });
});
