import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isNodeId } from '@anode/shared';
import { loadNodeId } from './node-id.ts';
import { watchFolderSyncs } from './private-files.fixture.ts';

describe('node id file', () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));
  const folder = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-node-id-'));
    dirs.push(dir);
    return dir;
  };

  it('is made once, owner-only, and read back on the next start', async () => {
    const dir = await folder();
    const id = await loadNodeId(dir);
    assert.ok(isNodeId(id));
    assert.equal((await stat(join(dir, 'node-id'))).mode & 0o777, 0o600);
    assert.equal(await loadNodeId(dir), id);
  });

  it('ignores a temporary file left by a crash while it was first written', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'node-id.tmp'), '');
    const id = await loadNodeId(dir);
    assert.equal(await readFile(join(dir, 'node-id'), 'utf8'), `${id}\n`);
  });

  it('is in its folder for good before the relay uses it (the folder is synced)', async (t) => {
    const dir = await folder();
    const watch = await watchFolderSyncs(t, dir);
    await loadNodeId(dir);
    assert.ok(watch.synced(), 'the data folder was synced after node-id was put in it');
  });

  it('refuses to start on a file that does not hold a node id, naming it', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'node-id'), 'not an id\n');
    await assert.rejects(loadNodeId(dir), /node-id does not hold a valid node id/);
  });
});
