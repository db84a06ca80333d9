import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createVersionClock } from './source-store.ts';

describe('source change versions', () => {
  it('increase on one node even when the clock stands still or steps back', () => {
    let now = 1_000;
    const next = createVersionClock('nodea', () => now);
    const versions = [next(), next()];
    now = 500;
    versions.push(next(), next());
    now = 2_000;
    versions.push(next());
    for (let i = 1; i < versions.length; i++) assert.ok((versions[i] as string) > (versions[i - 1] as string));
  });

  it('order changes from different nodes by time first', () => {
    const a = createVersionClock('nodez', () => 1_000)();
    const b = createVersionClock('nodea', () => 1_001)();
    assert.ok(b > a);
  });
});
