import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createSourceStore, createVersionClock } from './source-store.ts';

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

describe('source store files', () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));
  const folder = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-source-store-'));
    dirs.push(dir);
    return { path: join(dir, 'sources.json'), journal: join(dir, 'sources.log') };
  };

  it('ignores a journal line cut short by a crash, and rewrites the journal on the next write', async () => {
    const { path, journal } = await folder();
    const snapshot = { version: 1, changes: { a: { name: 'a' } }, versions: { a: '0001' }, dropped: '' };
    await writeFile(path, JSON.stringify(snapshot));
    await writeFile(
      journal,
      `${JSON.stringify({ name: 'b', version: '0002', change: { name: 'b' } })}\n{"name":"c","ver`,
    );
    const store = createSourceStore(path);
    const state = await store.load();
    assert.deepEqual(Object.keys(state.changes).sort(), ['a', 'b']);
    state.changes.d = { name: 'd' };
    state.versions.d = '0003';
    await store.write(state, ['d']);
    assert.equal(await readFile(journal, 'utf8'), '');
    assert.deepEqual(Object.keys((await createSourceStore(path).load()).changes).sort(), ['a', 'b', 'd']);
  });

  it('replays a journal line only over an older version (a crash between rewrite and truncation)', async () => {
    const { path, journal } = await folder();
    const snapshot = { version: 1, changes: { a: null }, versions: { a: '0005' }, dropped: '' };
    await writeFile(path, JSON.stringify(snapshot));
    await writeFile(journal, `${JSON.stringify({ name: 'a', version: '0004', change: { name: 'a' } })}\n`);
    const state = await createSourceStore(path).load();
    assert.equal(state.changes.a, null);
  });

  it('names the file and line of a journal it cannot read', async () => {
    const { path, journal } = await folder();
    await writeFile(journal, 'not json\n');
    await assert.rejects(createSourceStore(path).load(), /sources\.log line 1/);
  });
});
