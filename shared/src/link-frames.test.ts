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
});
