import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { memoryStore, recorder, remote, testHub } from './test-hub.ts';

describe('hub: late arrivals across the topics of a pattern', () => {
  it('replays to a pattern resume a remote message older than the cursor it resumes from, in another topic', async () => {
    const hub = testHub(memoryStore());
    const now = Date.now();
    // Topic b gets a message from node z at `now`; topic c then gets one from node a minted a
    // moment earlier (its cursor sorts before b's), arriving after it.
    const first = remote('k-first-in-b', 'chaos.b', now, 'zzzzzzzzzz');
    const older = remote('k-older-in-c', 'chaos.c', now, 'aaaaaaaaaa');
    assert.ok(older.cursor < first.cursor);
    await hub.ingest([first], { persist: true });
    await hub.ingest([older], { persist: true });
    // A pattern subscriber that got `first` and was cut off before `older` resumes from it.
    const resumed = recorder();
    await hub.subscribe(resumed, 'chaos.>', first.cursor);
    assert.deepEqual(resumed.ids(), ['k-older-in-c'], 'the resume skipped the older message of another topic');
    await hub.writer.drain();
  });

  it('replays to a resume from a fresh subscribed cursor a remote message minted just before it that came after', async () => {
    const hub = testHub(memoryStore());
    const fresh = recorder('fresh');
    const cursor = await hub.subscribe(fresh, 'gap.t');
    // Another relay minted this a moment before that cursor; gossip brings it just after.
    const behind = remote('k-behind', 'gap.t', Date.now() - 50, 'aaaaaaaaaa');
    assert.ok(behind.cursor < cursor);
    await hub.ingest([behind], { persist: true });
    assert.deepEqual(fresh.ids(), ['k-behind'], 'delivered live');
    // The subscriber dropped right after `subscribed` and resumes from its cursor.
    const resumed = recorder('resumed');
    await hub.subscribe(resumed, 'gap.t', cursor);
    assert.deepEqual(resumed.ids(), ['k-behind'], 'the resume from the subscribed cursor skipped it');
    await hub.writer.drain();
  });

  it('after a restart, a resume replays what was stored just before its cursor (sent, perhaps never received)', async () => {
    const store = memoryStore();
    const hubOn = () => testHub(store);
    const before = hubOn();
    const now = Date.now() - 1_000;
    const got = remote('k-got-it', 'chaos.b', now, 'zzzzzzzzzz');
    const lost = remote('k-lost-in-kill', 'chaos.c', now - 300, 'aaaaaaaaaa');
    const tooOld = remote('k-long-before', 'chaos.c', now - 60_000, 'aaaaaaaaaa');
    await before.ingest([tooOld, lost, got], { persist: true });
    await before.writer.drain();
    await new Promise((resolve) => setTimeout(resolve, 5));
    // The node restarts (the late arrivals it remembered are gone); the subscriber got `got`.
    const after = hubOn();
    const resumed = recorder();
    await after.subscribe(resumed, 'chaos.>', got.cursor);
    assert.ok(resumed.ids().includes('k-lost-in-kill'), `resume replayed ${JSON.stringify(resumed.ids())}`);
    assert.equal(resumed.ids().includes('k-long-before'), false, 'the rewind is bounded');
    // A cursor this run minted is trusted as is: no rewind.
    const fresh = remote('k-fresh', 'chaos.b', Date.now() + 10, 'zzzzzzzzzz');
    await after.ingest([fresh], { persist: true });
    const live = recorder();
    await after.subscribe(live, 'chaos.>', fresh.cursor);
    assert.deepEqual(live.ids(), []);
  });

  it('answers an edge`s `late` with the late arrivals its own resume replays: this topic only, in cursor order, paged by `from`', async () => {
    const hub = testHub(memoryStore());
    const now = Date.now();
    const newest = remote('k-newest', 'edge.t', now, 'zzzzzzzzzz');
    const lateA = remote('k-late-a', 'edge.t', now - 20, 'aaaaaaaaaa');
    const lateB = remote('k-late-b', 'edge.t', now - 10, 'aaaaaaaaaa');
    const elsewhere = remote('k-late-other', 'edge.u', now - 15, 'aaaaaaaaaa');
    await hub.ingest([remote('k-newest-u', 'edge.u', now, 'zzzzzzzzzz')], { persist: true });
    await hub.ingest([newest], { persist: true });
    await hub.ingest([lateB], { persist: true });
    await hub.ingest([lateA, elsewhere], { persist: true });
    const ids = (list: { id: string }[]) => list.map((m) => m.id);
    assert.deepEqual(ids(hub.lateFor('edge.t', newest.cursor)), ['k-late-a', 'k-late-b']);
    assert.deepEqual(ids(hub.lateFor('edge.t', newest.cursor, lateA.cursor)), ['k-late-b']);
    assert.deepEqual(ids(hub.lateFor('edge.t', lateA.cursor)), ['k-late-a'], 'only those at or below `after`');
    // What a subscriber of the relay resuming from the same cursor gets first: the same ones.
    const resumed = recorder();
    await hub.subscribe(resumed, 'edge.t', newest.cursor);
    assert.deepEqual(resumed.ids(), ['k-late-a', 'k-late-b']);
    await hub.writer.drain();
  });
});
