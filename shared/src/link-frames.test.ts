import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { edgeFrameSchema, encodeEdgeFrame, encodeLinkPub, parseRelayFrame } from './link-frames.ts';

describe('link frames', () => {
  test('the spliced pub frame equals the encoded one and parses as an edge frame', () => {
    const messages = [{ id: 'r1', topic: 't', cursor: '0000000000010000-e1', source: 's', ts: 1, data: { a: [1] } }];
    const spliced = encodeLinkPub(
      'pub-1',
      messages.map((m) => JSON.stringify(m)),
    );
    assert.equal(spliced, encodeEdgeFrame({ op: 'pub', ref: 'pub-1', messages }));
    assert.equal(edgeFrameSchema.safeParse(JSON.parse(spliced)).success, true);
  });

  test('relay frames parse by op; anything else is undefined', () => {
    assert.deepEqual(parseRelayFrame('{"op":"ack","ref":"p","ids":["a"]}'), { op: 'ack', ref: 'p', ids: ['a'] });
    assert.equal(parseRelayFrame('{"op":"ack","ids":["a"]}'), undefined, 'an ack without ref');
    assert.equal(parseRelayFrame('{"op":"err","code":"nope","message":"m"}'), undefined, 'an unknown code');
    assert.equal(parseRelayFrame('not json'), undefined);
    assert.deepEqual(parseRelayFrame('{"op":"reserved","sources":["weather"]}'), {
      op: 'reserved',
      sources: ['weather'],
    });
    assert.equal(parseRelayFrame('{"op":"reserved","sources":"weather"}'), undefined, 'a list of names');
    // A relay that sends `reserved` frames says so in its hello; an older one's hello has no flag.
    assert.deepEqual(parseRelayFrame('{"op":"hello","node":"n","reserved":true}'), {
      op: 'hello',
      node: 'n',
      reserved: true,
    });
    assert.deepEqual(parseRelayFrame('{"op":"hello","node":"n"}'), { op: 'hello', node: 'n' });
  });

  test('latest pages both ways, and each end reads the other from before paging', () => {
    const paged = { op: 'latest', ref: 'l', after_source: 'b', limit: 2 };
    assert.deepEqual(edgeFrameSchema.parse(paged), paged);
    // An edge from before paging: the relay answers the first page.
    assert.deepEqual(edgeFrameSchema.parse({ op: 'latest', ref: 'l' }), { op: 'latest', ref: 'l' });
    for (const bad of [{ limit: 0 }, { limit: 1001 }, { limit: 1.5 }, { after_source: '' }, { after_source: 'a b' }]) {
      assert.equal(edgeFrameSchema.safeParse({ op: 'latest', ref: 'l', ...bad }).success, false, JSON.stringify(bad));
    }
    const envelope = { id: 'r1', topic: 't', cursor: '0000000000010000-e1', source: 's', ts: 1, data: 1 };
    assert.deepEqual(parseRelayFrame(JSON.stringify({ op: 'latest', ref: 'l', sources: { s: envelope }, next: 's' })), {
      op: 'latest',
      ref: 'l',
      sources: { s: envelope },
      next: 's',
    });
    // A relay from before paging sends no `next`.
    assert.deepEqual(parseRelayFrame(JSON.stringify({ op: 'latest', ref: 'l', sources: {} })), {
      op: 'latest',
      ref: 'l',
      sources: {},
    });
  });
});
