import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHybridClock, type Envelope } from '@anode/shared';
import { createHeardLog } from './heard.ts';

const clock = createHybridClock('relay1');
const message = (id: string, size = 10) => {
  const envelope = { id, topic: 't', cursor: clock.next(), source: 's', ts: 1, data: 'x'.repeat(size) } as Envelope;
  return [envelope, JSON.stringify(envelope)] as const;
};
const ids = (messages: { envelope: Envelope }[]) => messages.map((m) => m.envelope.id);

describe('the heard log of a topic object', () => {
  it('keeps nothing while nobody listens; each reader reads what came since its last read', () => {
    const log = createHeardLog(1_000_000);
    log.add(...message('before'));
    assert.deepEqual(log.size, { entries: 0, bytes: 0 });
    const a = log.listen();
    log.add(...message('one'));
    const b = log.listen();
    log.add(...message('two'));
    assert.deepEqual(ids(a.read()), ['one', 'two']);
    assert.equal(log.size.entries, 1, 'what every reader has read goes');
    log.add(...message('three'));
    assert.deepEqual(ids(b.read()), ['two', 'three']);
    assert.deepEqual(ids(a.read()), ['three']);
    assert.deepEqual(log.size, { entries: 0, bytes: 0 });
    a.stop();
    b.stop();
    log.add(...message('after'));
    assert.deepEqual(log.size, { entries: 0, bytes: 0 });
    assert.deepEqual(b.read(), [], 'a stopped reader reads nothing');
  });

  it('keeps only the id, the cursor and the body of an entry', () => {
    const log = createHeardLog(1_000_000);
    const reader = log.listen();
    const [envelope, body] = message('slim');
    log.add(envelope, body);
    const [entry] = reader.read();
    assert.deepEqual(entry?.envelope, { id: 'slim', cursor: envelope.cursor });
    assert.equal(entry?.body, body);
  });

  it('holds at most its bound for every reader together; a reader learns the lowest cursor it needed and lost', () => {
    const [first, firstBody] = message('m0', 100);
    const size = Buffer.byteLength(firstBody);
    const log = createHeardLog(size * 3);
    const readers = Array.from({ length: 40 }, () => log.listen());
    const choosy = log.listen((entry) => entry.envelope.id !== 'm0' && entry.envelope.id !== 'm1');
    log.add(first, firstBody);
    for (let i = 1; i < 5; i++) log.add(...message(`m${i}`, 100));
    assert.ok(log.size.bytes <= size * 3, `${log.size.bytes} bytes for 41 readers`);
    for (const reader of readers) {
      assert.deepEqual(ids(reader.read()), ['m2', 'm3', 'm4']);
      assert.equal(reader.lowestLost, first.cursor);
    }
    assert.equal(choosy.lowestLost, undefined, 'what it did not need is not lost to it');
    const late = log.listen();
    const [fifth, fifthBody] = message('m5', 100);
    log.add(fifth, fifthBody);
    assert.equal(late.lowestLost, undefined, 'what went before it listened is not lost to it');
    for (let i = 6; i < 10; i++) log.add(...message(`m${i}`, 100));
    assert.equal(late.lowestLost, fifth.cursor, 'what went before it read is');
    for (const reader of [...readers, choosy, late]) reader.stop();
    assert.deepEqual(log.size, { entries: 0, bytes: 0 });
  });
});
