import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareCursors, createHybridClock } from '@anode/shared';
import { seedClock } from './clock-seed.ts';

describe('TopicHub clock on wake', () => {
  const wall = Date.UTC(2026, 10, 29, 12);
  const before = createHybridClock('etopic000000000', () => wall);
  const own = [before.next(), before.next(), before.next()].at(-1) as string;

  for (const back of [5_000, 120_000, 3_600_000]) {
    it(`continues after its own last cursor with the wall clock ${back / 1000} s behind`, () => {
      const clock = createHybridClock('etopic000000000', () => wall - back);
      seedClock(clock, own, undefined);
      assert.ok(compareCursors(clock.next(), own) > 0);
    });
  }

  it('observes the newest cursor of its ring with the skew limit (a relay clock far ahead is ignored)', () => {
    const clock = createHybridClock('etopic000000000', () => wall);
    const farAhead = createHybridClock('relay00000', () => wall + 3_600_000).next();
    seedClock(clock, undefined, farAhead);
    assert.ok(compareCursors(clock.next(), farAhead) < 0);
    const near = createHybridClock('relay00000', () => wall + 1_000).next();
    seedClock(clock, undefined, near);
    assert.ok(compareCursors(clock.next(), near) > 0);
  });

  it('ignores an own cursor that is not one', () => {
    const clock = createHybridClock('etopic000000000', () => wall);
    seedClock(clock, 'garbage', undefined);
    assert.ok(clock.next().startsWith(wall.toString(16).padStart(12, '0')));
  });
});
