import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createReservedNames } from './reserved-names.ts';

describe('reserved source names across the mesh', () => {
  it('takes other members’ names, keeps its own, and converges to one digest', async () => {
    const a = createReservedNames('a', ['weather'], 1);
    const b = createReservedNames('b', ['prices'], 2);
    assert.equal(a.has('prices'), false);
    await a.shared.merge(b.shared.snapshot());
    await b.shared.merge(a.shared.snapshot());
    assert.ok(a.has('prices') && a.has('weather') && b.has('weather'));
    assert.equal(a.shared.digest(), b.shared.digest());
    // Nobody rewrites a member's own entry.
    await a.shared.merge({ a: { at: 99, names: [] } });
    assert.ok(a.has('weather'));
  });

  it('replaces a member’s list only with a newer one, and drops names the grammar refuses', async () => {
    const a = createReservedNames('a', [], 1);
    await a.shared.merge({ b: { at: 5, names: ['old', '__proto__', 42] } });
    assert.ok(a.has('old'));
    assert.equal(a.has('__proto__'), false);
    await a.shared.merge({ b: { at: 4, names: ['stale'] } });
    assert.equal(a.has('stale'), false);
    await a.shared.merge({ b: { at: 6, names: ['new'] } });
    assert.ok(a.has('new'));
    assert.equal(a.has('old'), false);
    await a.shared.merge({ c: 'garbage', d: null, e: { at: 'x', names: [] } });
    assert.equal(a.has('garbage'), false);
  });

  it('says which member holds which name, and tells when another member’s list changed', async () => {
    const a = createReservedNames('a', ['weather'], 1);
    let changes = 0;
    a.onChange(() => (changes += 1));
    assert.ok(a.holds('a', 'weather'));
    assert.equal(a.holds('b', 'weather'), false);
    await a.shared.merge({ b: { at: 1, names: ['weather', 'prices'] } });
    assert.equal(changes, 1);
    assert.ok(a.holds('b', 'weather') && a.holds('b', 'prices') && !a.holds('a', 'prices'));
    await a.shared.merge({ b: { at: 1, names: ['other'] } }); // not newer: nothing changes
    assert.equal(changes, 1);
    await a.shared.merge({ b: { at: 2, names: ['prices'] } });
    assert.equal(changes, 2);
    assert.equal(a.holds('b', 'weather'), false);
  });
});
