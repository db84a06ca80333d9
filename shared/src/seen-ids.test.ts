import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RecentMap, SeenIds } from './seen-ids.ts';

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

test('an id deleted and added again is remembered for a full capacity from its new add', () => {
  const seen = new SeenIds(3);
  seen.add('a');
  seen.delete('a');
  assert.equal(seen.add('a'), true, 'a deleted is new again');
  seen.add('b');
  // The first add of a falls out of the ring here; its second add stands for it.
  seen.add('c');
  assert.equal(seen.has('a'), true);
  seen.add('d');
  assert.equal(seen.has('a'), false, 'three adds after its second add, a is forgotten');
  assert.equal(seen.has('b'), true);
});

test('a RecentMap updates a value in place: the key keeps its age', () => {
  const recent = new RecentMap<number>(2);
  assert.equal(recent.set('a', 1), true);
  assert.equal(recent.set('b', 1), true);
  assert.equal(recent.set('a', 2), false, 'a was there');
  assert.equal(recent.get('a'), 2);
  recent.set('c', 1);
  assert.equal(recent.get('a'), undefined, 'a, the oldest add, is forgotten first');
  assert.deepEqual([recent.get('b'), recent.get('c'), recent.size], [1, 1, 2]);
});

test('ids come out oldest first, without the evicted or deleted, and a re-added id at its new place', () => {
  const seen = new SeenIds(4);
  for (const id of ['a', 'b', 'c', 'd', 'e']) seen.add(id); // a is evicted
  seen.delete('c');
  seen.add('b'); // already there: keeps its place
  assert.deepEqual([...seen.ids()], ['b', 'd', 'e']);
  seen.delete('d');
  seen.add('d'); // new again: the youngest, and its add pushes the oldest add (b's) out
  assert.deepEqual([...seen.ids()], ['e', 'd']);
  assert.equal(seen.size, 2);
  assert.deepEqual([...new SeenIds(3).ids()], []);
});
