import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseDefinition } from './definition.ts';
import { BUILTIN_KINDS } from './kinds/builtin-kinds.ts';
import { createSourceStore, createVersionClock, shadowedByAdmin } from './source-store.ts';

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

  it('answers a change only once its file and folder are synced to disk', async (t) => {
    const { path, journal } = await folder();
    // The real files, with FileHandle's sync calls recorded (which file, in which order).
    const probe = await open(path, 'w');
    const proto = Object.getPrototypeOf(probe) as { datasync(): Promise<void>; sync(): Promise<void> };
    await probe.close();
    await rm(path);
    const synced: string[] = [];
    const inodes = new Map<number, string>();
    const name = async (handle: { stat(): Promise<{ ino: number }> }) => {
      const { ino } = await handle.stat();
      return inodes.get(ino) ?? 'other';
    };
    const { datasync, sync } = proto;
    t.after(() => Object.assign(proto, { datasync, sync }));
    proto.datasync = async function (this: never) {
      synced.push(`data ${await name(this)}`);
      return datasync.call(this);
    };
    proto.sync = async function (this: never) {
      synced.push(`full ${await name(this)}`);
      return sync.call(this);
    };
    inodes.set((await stat(join(path, '..'))).ino, 'folder');

    const store = createSourceStore(path);
    const state = await store.load();
    state.changes.a = { name: 'a' };
    state.versions.a = '0001';
    const first = store.write(state, ['a']);
    await first;
    // The journal was created by that write: its line and its name are on disk once it answers.
    inodes.set((await stat(journal)).ino, 'journal');
    assert.deepEqual(synced.slice(-1), ['full folder']);
    assert.equal(synced.length, 2, `one data sync of the journal, one folder sync: ${synced.join(', ')}`);
    synced.length = 0;
    state.changes.b = { name: 'b' };
    state.versions.b = '0002';
    await store.write(state, ['b']);
    assert.deepEqual(synced, ['data journal'], 'a line added to an existing journal: the journal synced');
    synced.length = 0;
    await store.rewrite(state);
    assert.ok(synced.includes('full folder'), `the snapshot's rename synced in its folder: ${synced.join(', ')}`);
    assert.equal(synced.filter((s) => s.startsWith('data')).length, 2, 'the new snapshot and the emptied journal');
    assert.deepEqual(JSON.parse(await readFile(path, 'utf8')).changes, { a: { name: 'a' }, b: { name: 'b' } });
  });

  it('settles once every write scheduled has finished, a failing one too, without rejecting', async () => {
    const { path, journal } = await folder();
    const store = createSourceStore(path);
    const state = await store.load();
    await store.settled(); // nothing scheduled
    state.changes.a = { name: 'a' };
    state.versions.a = '0001';
    const order: string[] = [];
    // Not awaited by its caller, as the rewrite after an undo is not: settled() still waits for it.
    void store.rewrite(state).then(() => order.push('rewrite'));
    await store.settled().then(() => order.push('settled'));
    assert.deepEqual(order, ['rewrite', 'settled']);
    assert.deepEqual(JSON.parse(await readFile(path, 'utf8')).changes, { a: { name: 'a' } });
    // A journal that cannot be written (a folder in its place): the write fails, settled() does not.
    await rm(journal, { force: true });
    await mkdir(journal);
    state.changes.b = { name: 'b' };
    state.versions.b = '0002';
    const failed = store.write(state, ['b']).then(
      () => 'written',
      (error: Error) => error.message,
    );
    await store.settled();
    assert.match(await failed, /cannot write .*sources\.log: EISDIR/);
  });
});

describe('shadowedByAdmin', () => {
  // A review of ecc762e: the startup warning named fields that did not differ (the same headers
  // in another order; a PUT spelling out a default the file leaves out), saying the file's values
  // were not applied when they were the same.
  const kinds = new Map(BUILTIN_KINDS);
  const file = {
    name: 's',
    kind: 'http',
    url: 'http://127.0.0.1:1/x',
    topic: 't',
    headers: { authorization: 'Bearer a', accept: 'application/json' },
  };
  const state = (change: Record<string, unknown>) => ({ changes: { s: change }, versions: { s: 'v' }, dropped: '' });

  it('names no field where only key order or spelled-out defaults differ', () => {
    const put = {
      ...file,
      headers: { accept: 'application/json', authorization: 'Bearer a' },
      method: 'GET',
      interval_ms: parseDefinition(file, kinds).interval_ms,
      paused: true,
    };
    assert.deepEqual(
      shadowedByAdmin([file], state(put), (raw) => parseDefinition(raw, kinds)),
      [],
    );
  });

  it('names the fields that differ, and compares raw a definition it cannot parse', () => {
    const put = { ...file, url: 'http://127.0.0.1:1/y', headers: { ...file.headers, accept: 'text/plain' } };
    assert.deepEqual(
      shadowedByAdmin([file], state(put), (raw) => parseDefinition(raw, kinds)),
      [{ name: 's', fields: ['headers', 'url'], version: 'v' }],
    );
    const odd = { ...file, kind: 'gone' };
    assert.deepEqual(shadowedByAdmin([odd], state(file), (raw) => parseDefinition(raw, kinds))[0]?.fields, ['kind']);
  });
});
