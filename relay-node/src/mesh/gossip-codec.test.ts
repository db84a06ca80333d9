import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Envelope } from '@anode/shared';
import {
  BATCH_TARGET_BYTES,
  batchBytes,
  batchId,
  cursorNode,
  decodeBatch,
  encodeBatch,
  envelopeJson,
  MAX_BATCH_ENVELOPES,
} from './gossip-codec.ts';
import { createShards } from './shards.ts';

const shards = createShards(32);
const now = 0x01a1fcac8572;
const good: Envelope = {
  id: 'rLB_wB_8-uNvlDVPivh98Ew',
  topic: 'prices.btc',
  cursor: `${now.toString(16).padStart(12, '0')}0000-hbs73xse4x`,
  source: 'feed',
  ts: 1_700_000_000_000,
  data: { price: 1 },
};
const rules = { maxBytes: 4096, shardOf: shards.of, shard: shards.of('prices.btc'), now };
const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const batch = (...envelopes: unknown[]) => bytes({ v: 2, node: 'hbs73xse4x', envelopes });

describe('gossip codec (format 2: batches)', () => {
  it('round-trips a batch as UTF-8 JSON in order, dropping unknown fields', () => {
    const second = { ...good, id: 'second', cursor: good.cursor.replace('0000-', '0001-') };
    const data = encodeBatch('hbs73xse4x', [envelopeJson(good), envelopeJson(second)]);
    assert.deepEqual(decodeBatch(data, rules), { ok: true, batch: { node: 'hbs73xse4x', envelopes: [good, second] } });
    assert.equal(
      data.byteLength,
      batchBytes('hbs73xse4x', Buffer.byteLength(envelopeJson(good) + envelopeJson(second)), 2),
    );
    assert.deepEqual(decodeBatch(batch({ ...good, extra: 1 }), rules), {
      ok: true,
      batch: { node: 'hbs73xse4x', envelopes: [good] },
    });
    assert.equal(envelopeJson({ ...good, extra: 1 } as Envelope).includes('extra'), false);
    assert.equal(cursorNode(good.cursor), 'hbs73xse4x');
  });

  it('rejects a whole batch when any part of it is invalid', () => {
    const cases: [string, Uint8Array][] = [
      ['oversized', batch({ ...good, data: 'x'.repeat(5000) })],
      ['not JSON', new TextEncoder().encode('{nope')],
      ['not UTF-8', new Uint8Array([0x7b, 0xff, 0x7d])],
      ['an array', bytes([good])],
      ['a bare envelope (format 1)', bytes(good)],
      ['another version', bytes({ v: 1, node: 'hbs73xse4x', envelopes: [good] })],
      ['bad node', bytes({ v: 2, node: 'Not-A-Node', envelopes: [good] })],
      ['no envelopes', bytes({ v: 2, node: 'hbs73xse4x', envelopes: [] })],
      ['too many envelopes', bytes({ v: 2, node: 'x', envelopes: Array(MAX_BATCH_ENVELOPES + 1).fill(1) })],
      ['bad id', batch(good, { ...good, id: 'has space' })],
      ['long id', batch({ ...good, id: 'x'.repeat(129) })],
      ['bad topic', batch({ ...good, topic: 'prices..btc' })],
      ['pattern topic', batch({ ...good, topic: 'prices.>' })],
      ['zero cursor', batch({ ...good, cursor: '0' })],
      ['bad cursor', batch({ ...good, cursor: 'abc' })],
      ['future cursor', batch({ ...good, cursor: `${(now + 120_000).toString(16).padStart(12, '0')}0000-x` })],
      ['empty source', batch({ ...good, source: '' })],
      ['fractional ts', batch({ ...good, ts: 1.5 })],
      ['negative ts', batch({ ...good, ts: -1 })],
      ['no data', batch({ ...good, data: undefined })],
      [
        'too deep',
        new TextEncoder().encode(
          JSON.stringify({ v: 2, node: 'x', envelopes: [{ ...good, data: null }] }).replace(
            'null',
            `${'['.repeat(1001)}${']'.repeat(1001)}`,
          ),
        ),
      ],
      ['wrong shard', batch(good, { ...good, topic: 'orders.eu' })],
    ];
    const big = { ...rules, maxBytes: 1024 * 1024 };
    for (const [name, data] of cases)
      assert.equal(decodeBatch(data, name === 'oversized' ? rules : big).ok, false, name);
  });

  it('ids a batch by its publisher and sequence number', () => {
    assert.equal(batchId('12D3KooWabc', 0x1a2bn), '12D3KooWabc/0000000000001a2b');
    assert.ok(BATCH_TARGET_BYTES < 1024 * 1024);
  });
});
