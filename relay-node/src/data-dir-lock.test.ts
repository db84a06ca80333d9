import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DataDirInUseError, lockDataDir } from './data-dir-lock.ts';
import { securePrivateDir } from './private-files.ts';

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

describe('data folder on a disk that refuses it', () => {
  it('names the lock file and says the path is too long for SQLite', async () => {
    const base = await mkdtemp(join(tmpdir(), 'anode-lock-long-'));
    try {
      // Each part under NAME_MAX, the whole well past what SQLite opens (~512).
      const dir = join(base, ...Array.from({ length: 4 }, (_, i) => `${i}`.repeat(200)));
      mkdirSync(dir, { recursive: true });
      assert.throws(
        () => lockDataDir(dir),
        (error: Error) =>
          error.message.includes(join(dir, 'lock')) &&
          /path short enough for SQLite \(\d+ characters here/.test(error.message),
      );
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it('does not take a folder whose name says locked for one in use (its lock file a folder)', async () => {
    const base = await mkdtemp(join(tmpdir(), 'anode-lock-name-'));
    try {
      const dir = join(base, 'unlocked-busy');
      mkdirSync(join(dir, 'lock'), { recursive: true });
      assert.throws(
        () => lockDataDir(dir),
        (error: Error) => !(error instanceof DataDirInUseError) && /EISDIR/.test(error.message),
      );
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  const root = process.platform === 'linux' && process.getuid?.() === 0;
  it(
    'says the disk is full, and a read-only file system, naming the folder (a tmpfs)',
    { skip: !root && 'needs root on Linux (mounts a tmpfs)' },
    async () => {
      const mnt = await mkdtemp(join(tmpdir(), 'anode-lock-disk-'));
      const mount = (options: string) => execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', mnt]);
      try {
        mount('size=64k');
        const dir = join(mnt, 'data');
        mkdirSync(dir);
        // The disk filled by another file, to its last block.
        const fd = openSync(join(mnt, 'fill'), 'w');
        try {
          for (let size = 65_536; size >= 1;) {
            try {
              writeSync(fd, Buffer.alloc(size, 1));
            } catch {
              size = Math.floor(size / 2);
            }
          }
        } finally {
          closeSync(fd);
        }
        assert.throws(
          () => lockDataDir(dir),
          (error: Error) => error.message.startsWith(`the data folder ${dir} `) && /no room left/.test(error.message),
        );
        execFileSync('umount', [mnt]);
        mount('ro,size=64k');
        assert.throws(
          () => securePrivateDir(join(mnt, 'data')),
          (error: Error) =>
            error.message.includes(join(mnt, 'data')) && /read-only file system: set data_dir/.test(error.message),
        );
      } finally {
        try {
          execFileSync('umount', [mnt]);
        } catch {
          // not mounted
        }
        await rm(mnt, { recursive: true, force: true });
      }
    },
  );
});
