import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys';
import { loadNetworkKey, loadPeerKey } from './identity.ts';
import { watchFolderSyncs } from '../private-files.fixture.ts';

describe('peer key file', () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));
  const folder = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-peer-key-'));
    dirs.push(dir);
    return dir;
  };

  it('is made once, owner-only, and read back on the next start (same peer id)', async () => {
    const dir = await folder();
    const key = await loadPeerKey(dir);
    assert.equal(key.type, 'Ed25519');
    assert.equal((await stat(join(dir, 'peer-key'))).mode & 0o777, 0o600);
    assert.ok((await loadPeerKey(dir)).equals(key));
  });

  it('ignores a temporary file left by a crash while it was first written', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'peer-key.tmp'), '');
    const key = await loadPeerKey(dir);
    assert.ok(privateKeyFromProtobuf(await readFile(join(dir, 'peer-key'))).equals(key));
  });

  it('is in its folder for good before the relay uses it (the folder is synced)', async (t) => {
    const dir = await folder();
    const watch = await watchFolderSyncs(t, dir);
    await loadPeerKey(dir);
    assert.ok(watch.synced(), 'the data folder was synced after peer-key was put in it');
  });

  it('refuses to start on a file that does not hold a key, naming it', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'peer-key'), '');
    await assert.rejects(loadPeerKey(dir), /peer-key does not hold a libp2p private key/);
  });
});

describe('network key file', () => {
  it('names a file that is no swarm.key, and prints no path it cannot read (it may be the key)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-swarm-key-'));
    try {
      const junk = join(dir, 'swarm.key');
      await writeFile(junk, 'not a key\n');
      await assert.rejects(loadNetworkKey({ mesh_key_file: junk }), new RegExp(`^Error: ${junk}: not a swarm.key`));
      const hex = 'ab'.repeat(32);
      await assert.rejects(loadNetworkKey({ mesh_key_file: dir }), /\(EISDIR\); it names a folder/);
      for (const given of [hex, `/key/swarm/psk/1.0.0/\n/base16/\n${hex}`, `0x${hex}`, join(dir, 'missing')]) {
        await assert.rejects(loadNetworkKey({ mesh_key_file: given }), (error: Error) => {
          assert.match(error.message, /^cannot read the file mesh_key_file names \(ENOENT\)/);
          assert.ok(!error.message.includes(hex) && !error.message.includes(dir), error.message);
          return true;
        });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
