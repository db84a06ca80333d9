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
});
