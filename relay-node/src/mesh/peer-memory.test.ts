import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { createPeerMemory, MAX_REMEMBERED_PEERS, PEERS_FILE } from './peer-memory.ts';

const log = pino({ level: 'silent' });

describe('peer memory', () => {
  let dir: string;
  let clock: number;
  const make = () => createPeerMemory({ dataDir: dir, log, now: () => clock });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'anode-peer-memory-'));
    clock = 1_000_000;
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('remembers a peer that left as down, since when, with its last card, across a restart', async () => {
    const memory = make();
    await memory.load();
    memory.up('peer-a');
    clock += 5_000;
    memory.card('peer-a', { node: { id: 'node-a' } });
    clock += 1_000;
    memory.down('peer-a');
    await memory.flush();
    const mode = (await stat(join(dir, PEERS_FILE))).mode & 0o777;
    assert.equal(mode, 0o600, 'owner-only, like the other files of the data folder');

    clock += 60_000;
    const again = make();
    await again.load();
    const [peer] = again.list();
    assert.equal(peer?.peer_id, 'peer-a');
    assert.equal(peer?.up_since, null);
    assert.equal(peer?.down_since, 1_006_000);
    assert.equal(peer?.last_seen, 1_006_000);
    assert.deepEqual(peer?.card, { node: { id: 'node-a' } });
  });

  it('a peer that was up when this relay stopped comes back down, since it was last seen', async () => {
    const memory = make();
    await memory.load();
    memory.up('peer-b');
    clock += 2_000;
    memory.card('peer-b', { v: 1 });
    await memory.flush();
    const again = make();
    await again.load();
    assert.equal(again.get('peer-b')?.up_since, null);
    assert.equal(again.get('peer-b')?.down_since, 1_002_000);
  });

  it('forgets a down peer only; a connected one is kept', async () => {
    const memory = make();
    await memory.load();
    memory.up('up-peer');
    memory.up('gone-peer');
    memory.down('gone-peer');
    assert.equal(memory.forget('up-peer'), 'connected');
    assert.equal(memory.forget('gone-peer'), 'forgotten');
    assert.equal(memory.forget('gone-peer'), 'unknown');
    await memory.flush();
    const saved = JSON.parse(await readFile(join(dir, PEERS_FILE), 'utf8')) as { peers: { peer_id: string }[] };
    assert.deepEqual(
      saved.peers.map((p) => p.peer_id),
      ['up-peer'],
    );
  });

  it('keeps at most MAX_REMEMBERED_PEERS, dropping the longest unseen down peers', async () => {
    const memory = make();
    await memory.load();
    for (let i = 0; i <= MAX_REMEMBERED_PEERS; i++) {
      clock += 1;
      memory.up(`p${i}`);
      memory.down(`p${i}`);
    }
    memory.up('newest');
    assert.equal(memory.list().length, MAX_REMEMBERED_PEERS);
    assert.equal(memory.get('p0'), undefined);
    assert.ok(memory.get('newest'));
    await memory.flush();
  });

  it('starts empty from a damaged file instead of failing', async () => {
    await writeFile(join(dir, PEERS_FILE), '{not json');
    const memory = make();
    await memory.load();
    assert.deepEqual(memory.list(), []);
  });
});
