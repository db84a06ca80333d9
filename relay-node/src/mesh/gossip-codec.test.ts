import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Envelope } from '@anode/shared';
import { decodeEnvelope, encodeEnvelope, gossipMessageId } from './gossip-codec.ts';
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

describe('gossip codec', () => {
  it('round-trips an envelope as UTF-8 JSON, dropping unknown fields', () => {
    assert.deepEqual(decodeEnvelope(encodeEnvelope(good), rules), { ok: true, envelope: good });
    assert.deepEqual(decodeEnvelope(bytes({ ...good, extra: 1 }), rules), { ok: true, envelope: good });
    assert.equal(new TextDecoder().decode(encodeEnvelope({ ...good, extra: 1 } as Envelope)).includes('extra'), false);
  });

  it('rejects what the README lists as invalid', () => {
    const cases: [string, Uint8Array][] = [
      ['oversized', bytes({ ...good, data: 'x'.repeat(5000) })],
      ['not JSON', new TextEncoder().encode('{nope')],
      ['not UTF-8', new Uint8Array([0x7b, 0xff, 0x7d])],
      ['an array', bytes([good])],
      ['bad id', bytes({ ...good, id: 'has space' })],
      ['long id', bytes({ ...good, id: 'x'.repeat(129) })],
      ['bad topic', bytes({ ...good, topic: 'prices..btc' })],
      ['pattern topic', bytes({ ...good, topic: 'prices.>' })],
      ['zero cursor', bytes({ ...good, cursor: '0' })],
      ['bad cursor', bytes({ ...good, cursor: 'abc' })],
      ['future cursor', bytes({ ...good, cursor: `${(now + 120_000).toString(16).padStart(12, '0')}0000-x` })],
      ['empty source', bytes({ ...good, source: '' })],
      ['fractional ts', bytes({ ...good, ts: 1.5 })],
      ['negative ts', bytes({ ...good, ts: -1 })],
      ['no data', bytes({ ...good, data: undefined })],
      [
        'too deep',
        new TextEncoder().encode(
          JSON.stringify({ ...good, data: null }).replace('null', `${'['.repeat(1001)}${']'.repeat(1001)}`),
        ),
      ],
      ['wrong shard', bytes({ ...good, topic: 'orders.eu' })],
    ];
    for (const [name, data] of cases) assert.equal(decodeEnvelope(data, rules).ok, false, name);
  });

  it('uses the envelope id as the message id, and a hash for invalid data', () => {
    const data = encodeEnvelope(good);
    assert.equal(gossipMessageId(decodeEnvelope(data, rules), data), good.id);
    const bad = bytes({ ...good, topic: 'orders.eu' });
    const id = gossipMessageId(decodeEnvelope(bad, rules), bad);
    assert.match(id, /^!/);
    assert.notEqual(id, good.id, 'an invalid message never takes a valid one’s id');
  });
});
