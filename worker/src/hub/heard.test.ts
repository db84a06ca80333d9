import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHybridClock, type Envelope } from '@anode/shared';
import { createHeardLog } from './heard.ts';

const clock = createHybridClock('relay1');
const message = (id: string, size = 10) => {
  const envelope = { id, topic: 't', cursor: clock.next(), source: 's', ts: 1, data: 'x'.repeat(size) } as Envelope;
  return [envelope, JSON.stringify(envelope)] as const;
};
const ids = (reader: { messages(): Iterable<{ envelope: Envelope }> }) =>
  [...reader.messages()].map((m) => m.envelope.id);

describe('the heard log of a topic object', () => {
  it('keeps nothing while nobody listens, and each reader hears from when it started', () => {
    const log = createHeardLog(1_000_000);
    log.add(...message('before'));
    assert.deepEqual(log.size, { entries: 0, bytes: 0 });
    const a = log.listen();
    log.add(...message('one'));
    const b = log.listen();
    log.add(...message('two'));
    assert.deepEqual(ids(a), ['one', 'two']);
    assert.deepEqual(ids(b), ['two']);
    a.stop();
    assert.equal(log.size.entries, 1, 'what only the stopped reader needed goes');
    assert.deepEqual(ids(b), ['two']);
    b.stop();
    assert.deepEqual(log.size, { entries: 0, bytes: 0 });
    assert.deepEqual(ids(b), [], 'a stopped reader hears nothing');
  });

  it('holds at most its bound for every reader together, and tells a reader the lowest cursor it lost', () => {
    const [first, firstBody] = message('m0', 100);
    const size = Buffer.byteLength(firstBody);
    const log = createHeardLog(size * 3);
    const readers = Array.from({ length: 40 }, () => log.listen());
    log.add(first, firstBody);
    for (let i = 1; i < 5; i++) log.add(...message(`m${i}`, 100));
    assert.ok(log.size.bytes <= size * 3, `${log.size.bytes} bytes for 40 readers`);
    for (const reader of readers) {
      assert.deepEqual(ids(reader), ['m2', 'm3', 'm4']);
      assert.equal(reader.lowestLost, first.cursor);
    }
    const late = log.listen();
    log.add(...message('m5', 100));
    assert.equal(late.lowestLost, undefined, 'it had not heard what went');
    for (const reader of [...readers, late]) reader.stop();
    assert.deepEqual(log.size, { entries: 0, bytes: 0 });
  });
});
