import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createShards, fnv1a32 } from './shards.ts';

describe('topic shards', () => {
  it('hashes with 32-bit FNV-1a (the vectors in docs/mesh.md)', () => {
    assert.equal(fnv1a32(''), 0x811c9dc5);
    assert.equal(fnv1a32('a'), 0xe40c292c);
    assert.equal(fnv1a32('prices'), 0x15792b1b);
    assert.equal(fnv1a32('orders'), 0x325e96ec);
  });

  it('hashes the UTF-8 bytes, whether or not the text is ASCII', () => {
    const reference = (text: string) => {
      let hash = 0x811c9dc5;
      for (const byte of new TextEncoder().encode(text)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
      return hash >>> 0;
    };
    for (const text of [
      'prices',
      'a_b-c:d|e@f',
      '\u007f',
      '\u0080',
      'café',
      'ünïcödé',
      '价格',
      'x😀y',
      'plain ascii then é',
    ]) {
      assert.equal(fnv1a32(text), reference(text), text);
    }
  });

  it('maps a topic by its first segment to /anode/2/shard/<count>/<n>', () => {
    const shards = createShards(32);
    assert.equal(shards.gossipTopic('prices.btc-usd'), '/anode/2/shard/32/27');
    assert.equal(shards.gossipTopic('prices.eth-usd'), '/anode/2/shard/32/27');
    assert.equal(shards.gossipTopic('orders.eu'), '/anode/2/shard/32/12');
    assert.equal(shards.topics.length, 32);
    assert.equal(createShards(1).gossipTopic('anything.at.all'), '/anode/2/shard/1/0');
  });

  it('parses only its own shard topics', () => {
    const shards = createShards(32);
    assert.equal(shards.parse('/anode/2/shard/32/0'), 0);
    assert.equal(shards.parse('/anode/2/shard/32/31'), 31);
    for (const other of ['/anode/2/shard/32/32', '/anode/2/shard/16/3', '/anode/2/shard/32/03', '/anode/1/discovery']) {
      assert.equal(shards.parse(other), undefined, other);
    }
  });

  it('needs one shard for a pattern with a concrete first segment, and all for a wildcard one', () => {
    const shards = createShards(32);
    assert.deepEqual(shards.forPattern('prices.>'), [27]);
    assert.deepEqual(shards.forPattern('prices.*.usd'), [27]);
    assert.deepEqual(shards.forPattern('prices'), [27]);
    assert.equal(shards.forPattern('*.btc').length, 32);
    assert.equal(shards.forPattern('>').length, 32);
  });
});
