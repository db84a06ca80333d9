import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { writePrivateFileDurably } from './private-files.ts';

describe('private files made once', () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));
  const folder = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-private-files-'));
    dirs.push(dir);
    return dir;
  };

  it('are made whole and owner-only, leaving no temporary file', async () => {
    const dir = await folder();
    await writePrivateFileDurably(join(dir, 'node-id'), 'abc\n');
    assert.equal(await readFile(join(dir, 'node-id'), 'utf8'), 'abc\n');
    assert.equal((await stat(join(dir, 'node-id'))).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dir), ['node-id']);
  });

  it('never replace a file already there (another process made it meanwhile)', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'peer-key'), 'the first one');
    await assert.rejects(writePrivateFileDurably(join(dir, 'peer-key'), 'a second one'), { code: 'EEXIST' });
    assert.equal(await readFile(join(dir, 'peer-key'), 'utf8'), 'the first one');
    assert.deepEqual(await readdir(dir), ['peer-key'], 'the temporary file is removed');
  });
});
