import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DataDirInUseError, lockDataDir } from './data-dir-lock.ts';

describe('data folder lock', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'anode-lock-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('lets one holder in at a time, and the next one in once it is released', async () => {
    const first = lockDataDir(dir);
    assert.throws(() => lockDataDir(dir), DataDirInUseError);
    assert.throws(() => lockDataDir(dir), /in use by another relay .*--data-dir/);
    first.release();
    first.release();
    const second = lockDataDir(dir);
    assert.equal((await stat(second.path)).mode & 0o777, 0o600);
    second.release();
  });

  it('holds against another process, and is free once that process is killed', async () => {
    const module = new URL('./data-dir-lock.ts', import.meta.url).pathname;
    const holder = spawn(
      process.execPath,
      [
        '--expose-gc',
        '--input-type=module',
        '-e',
        // The lock is not kept by the caller here, and a garbage collection runs after taking
        // it: the lock must hold anyway (a collected connection closes, and its lock goes).
        `const { lockDataDir } = await import(${JSON.stringify(module)}); lockDataDir(${JSON.stringify(dir)}); globalThis.gc(); console.log('held'); setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((resolve) => holder.once('exit', resolve));
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout.once('data', () => resolve());
        holder.once('exit', (code) => reject(new Error(`holder exited with ${code} before taking the lock`)));
      });
      assert.throws(() => lockDataDir(dir), DataDirInUseError);
    } finally {
      holder.kill('SIGKILL');
      await exited;
    }
    lockDataDir(dir).release(); // no stale lock after a SIGKILL
  });

  it('keeps the lock against other processes after a second try in the same process was refused', async () => {
    const first = lockDataDir(dir);
    try {
      assert.throws(() => lockDataDir(dir), DataDirInUseError);
      // Another process must still be refused: closing any descriptor of the lock file (as a
      // second try that opened it did) dropped this process's lock on it.
      const module = new URL('./data-dir-lock.ts', import.meta.url).pathname;
      const child = spawn(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const { lockDataDir } = await import(${JSON.stringify(module)}); try { lockDataDir(${JSON.stringify(dir)}); console.log('took it'); } catch (e) { console.log(e.name); }`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      await new Promise((resolve) => child.once('exit', resolve));
      assert.equal(out.trim(), 'DataDirInUseError');
    } finally {
      first.release();
    }
  });
});
