import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createCluster } from '../cluster.ts';
import { clusterOwnership, createRendezvousOwnership, rendezvousOwner, singleNodeOwnership } from './ownership.ts';
import { createReservedNames } from './reserved-names.ts';

const sources = Array.from({ length: 3000 }, (_, i) => `source-${i}`);
const members = ['node-a', 'node-b', 'node-c', 'node-d'];

describe('ownership', () => {
  it('one node owns every source', () => {
    assert.ok(sources.every((s) => singleNodeOwnership().isOwner(s)));
  });

  it('gives each source exactly one owner among the members, spread about evenly', () => {
    const views = members.map((m) => createRendezvousOwnership(m, members));
    const counts = members.map(() => 0);
    for (const s of sources) {
      const owners = views.flatMap((v, i) => (v.isOwner(s) ? [i] : []));
      assert.equal(owners.length, 1, s);
      const owner = owners[0] as number;
      counts[owner] = (counts[owner] ?? 0) + 1;
    }
    for (const n of counts) assert.ok(n > 600 && n < 900, `uneven spread ${counts.join(',')}`);
  });

  it('agrees whatever the order of the member list', () => {
    for (const s of sources.slice(0, 200)) {
      assert.equal(rendezvousOwner(members, s), rendezvousOwner([...members].reverse(), s));
    }
  });

  it('moves only the dead member’s sources when it leaves', () => {
    const before = new Map(sources.map((s) => [s, rendezvousOwner(members, s)]));
    const alive = members.filter((m) => m !== 'node-b');
    for (const s of sources) {
      const now = rendezvousOwner(alive, s);
      if (before.get(s) !== 'node-b') assert.equal(now, before.get(s), s);
      else assert.notEqual(now, 'node-b');
    }
  });

  it('notifies on a real membership change only, and answers from the new list', () => {
    const own = createRendezvousOwnership('node-a', ['node-a']);
    let changes = 0;
    own.onChange(() => (changes += 1));
    assert.ok(sources.every((s) => own.isOwner(s)));
    own.setMembers(['node-a']);
    assert.equal(changes, 0);
    own.setMembers(['node-b', 'node-a']);
    assert.equal(changes, 1);
    const mine = sources.filter((s) => own.isOwner(s)).length;
    assert.ok(mine > 1200 && mine < 1800, String(mine));
    assert.deepEqual(own.members(), ['node-a', 'node-b']);
  });

  it('owns nothing when not in the member list', () => {
    const own = createRendezvousOwnership('node-z', members);
    assert.ok(sources.every((s) => !own.isOwner(s)));
  });

  it('over a cluster: owns nothing until settled, then follows the live members', () => {
    const cluster = createCluster('node-a');
    cluster.update(['node-a'], false);
    const own = clusterOwnership(cluster);
    let changes = 0;
    own.onChange(() => (changes += 1));
    assert.ok(sources.every((s) => !own.isOwner(s) && own.ownerOf(s) === undefined));
    cluster.update(members, true);
    assert.ok(changes >= 1);
    for (const s of sources.slice(0, 300)) {
      assert.equal(own.ownerOf(s), rendezvousOwner(members, s));
      assert.equal(own.isOwner(s), rendezvousOwner(members, s) === 'node-a');
    }
    cluster.update(['node-a'], true); // the others died
    assert.ok(sources.every((s) => own.isOwner(s)));
    own.close();
  });

  it('draws a config-file source among the members whose file has it, and an admin one among all', async () => {
    const filed = sources.slice(0, 300); // in node-a's and node-c's files only
    const admin = new Set(sources.slice(0, 30)); // of which these were changed through the admin API
    const names = new Map(members.map((m) => [m, createReservedNames(m, m === 'node-a' ? filed : [], 1)]));
    const a = names.get('node-a') as ReturnType<typeof createReservedNames>;
    const cluster = createCluster('node-a');
    cluster.update(members, true);
    const own = clusterOwnership(cluster, { everywhere: (s) => admin.has(s), holds: a.holds });
    let changes = 0;
    a.onChange(own.refresh);
    own.onChange(() => (changes += 1));
    // node-a has heard no other member's list yet: it is the only one known to have them.
    for (const s of filed.slice(30)) assert.equal(own.ownerOf(s), 'node-a', s);
    for (const s of admin) assert.equal(own.ownerOf(s), rendezvousOwner(members, s));
    await a.shared.merge({ 'node-c': { at: 2, names: filed } });
    assert.equal(changes, 1);
    for (const s of filed.slice(30)) assert.equal(own.ownerOf(s), rendezvousOwner(['node-a', 'node-c'], s), s);
    const mine = filed.slice(30).filter((s) => own.isOwner(s)).length;
    assert.ok(mine > 90 && mine < 180, String(mine)); // shared with node-c, not with b and d
    // An admin change to a config-file source puts it on every member: drawn among all at once.
    const changed = filed[100] as string;
    admin.add(changed);
    assert.equal(own.ownerOf(changed), rendezvousOwner(members, changed));
    // node-c restarts without them in its file.
    await a.shared.merge({ 'node-c': { at: 3, names: [] } });
    for (const s of filed.slice(30)) if (s !== changed) assert.ok(own.isOwner(s), s);
    own.close();
  });
});
