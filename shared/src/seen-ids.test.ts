import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SeenIds } from './seen-ids.ts';

test('an id is new once and a duplicate afterwards', () => {
  const seen = new SeenIds(10);
  assert.equal(seen.add('a'), true);
  assert.equal(seen.add('b'), true);
  assert.equal(seen.add('a'), false);
  assert.equal(seen.add('b'), false);
});

test('past capacity the oldest id is forgotten first', () => {
  const seen = new SeenIds(3);
  for (const id of ['a', 'b', 'c', 'd']) seen.add(id);
  assert.equal(seen.add('b'), false);
  assert.equal(seen.add('c'), false);
  assert.equal(seen.add('d'), false);
  assert.equal(seen.add('a'), true, 'a was evicted');
});

test('seeing a duplicate does not make it young again (insertion order, not LRU)', () => {
  const seen = new SeenIds(2);
  seen.add('a');
  seen.add('b');
  seen.add('a');
  seen.add('c');
  assert.equal(seen.add('a'), true);
});

test('a capacity below one still remembers the last id', () => {
  const seen = new SeenIds(0);
  assert.equal(seen.add('a'), true);
  assert.equal(seen.add('a'), false);
  assert.equal(seen.add('b'), true);
  assert.equal(seen.add('a'), true);
});

test('agrees with a queue of the last `capacity` distinct ids', () => {
  const id = fc.constantFrom(...'abcdefgh');
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 6 }), fc.array(id, { maxLength: 100 }), (capacity, ids) => {
      const seen = new SeenIds(capacity);
      const queue: string[] = [];
      for (const x of ids) {
        const fresh = !queue.includes(x);
        assert.equal(seen.add(x), fresh);
        if (fresh) {
          queue.push(x);
          if (queue.length > capacity) queue.shift();
        }
      }
    }),
  );
});
