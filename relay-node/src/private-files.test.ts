import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs, { realpathSync } from 'node:fs';
import {
  chmod,
  chown,
  copyFile,
  link,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { securePrivateDir, writePrivateFileDurably } from './private-files.ts';

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

describe('securing the data folder', () => {
  it('tightens secret files left readable by others, mesh-sync.json among them', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-private-dir-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await chmod(dir, 0o755);
    for (const file of ['node-id', 'mesh-peers.json', 'mesh-sync.json'])
      await writeFile(join(dir, file), '{}', { mode: 0o644 });
    securePrivateDir(dir);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    for (const file of ['node-id', 'mesh-peers.json', 'mesh-sync.json']) {
      assert.equal((await stat(join(dir, file))).mode & 0o777, 0o600, file);
    }
  });
});

describe('a data folder path that names a file', () => {
  it('says the path is a file, not a folder (not a bare EEXIST from mkdir)', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-private-dir-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'relay.json');
    await writeFile(file, '{}');
    assert.throws(
      () => securePrivateDir(file),
      (error: NodeJS.ErrnoException) => {
        assert.equal(error.code, 'EEXIST', 'the code is kept');
        assert.match(
          error.message,
          new RegExp(`^the data folder ${file} is a file, not a folder: set data_dir to a folder`),
        );
        return true;
      },
    );
    assert.throws(
      () => securePrivateDir(join(file, 'data')),
      (error: NodeJS.ErrnoException) => {
        assert.equal(error.code, 'ENOTDIR', 'the code is kept');
        assert.match(error.message, /is a file, not a folder: set data_dir to a folder/);
        return true;
      },
    );
    assert.equal(await readFile(file, 'utf8'), '{}', 'the file is left as it was');
  });
});

describe('a data folder whose parent takes no new folder', () => {
  // Node's recursive mkdir never returns on either (ENOENT for the folder, EEXIST for its parent).
  it('says so at once under /proc', { skip: process.platform !== 'linux' && 'needs /proc' }, () => {
    assert.throws(
      () => securePrivateDir('/proc/anode-nope/data'),
      (error: NodeJS.ErrnoException) => {
        assert.equal(error.code, 'ENOENT', 'the code is kept');
        assert.match(error.message, /^cannot create the data folder \/proc\/anode-nope\/data: \/proc does not take/);
        return true;
      },
    );
  });

  it('says so at once behind a link to a folder that is gone', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-private-dir-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const dangling = join(dir, 'data');
    await symlink(join(dir, 'gone'), dangling);
    assert.throws(
      () => securePrivateDir(join(dangling, 'relay')),
      (error: Error) => {
        assert.match(
          error.message,
          new RegExp(`^${dangling} in the data folder's path .* is a link to a folder that is not there`),
        );
        return true;
      },
    );
  });
});

describe('a data folder the relay may not change', () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));
  const folder = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-private-dir-'));
    dirs.push(dir);
    return dir;
  };
  const saysChown = (dir: string, code: string) => (error: unknown) => {
    const e = error as NodeJS.ErrnoException;
    assert.equal(e.code, code, 'the code is kept');
    assert.match(e.message, new RegExp(`data folder ${dir}.* must be owned by the relay's user`));
    assert.match(e.message, /chown -R 1000:1000 <host folder>/, 'with the Docker hint');
    assert.match(e.message, new RegExp(`${code}: .*chmod`), 'and the cause');
    return true;
  };

  it('says it must be owned by the relay user when it cannot be tightened (EPERM)', async (t) => {
    const dir = await folder();
    await chmod(dir, 0o755);
    // As root nothing is refused: the refusal a non-owner meets is played here.
    const { chmodSync } = fs;
    fs.chmodSync = (path: fs.PathLike) => {
      throw Object.assign(new Error(`EPERM: operation not permitted, chmod '${String(path)}'`), {
        code: 'EPERM',
        syscall: 'chmod',
        path,
      });
    };
    syncBuiltinESMExports();
    t.after(() => {
      fs.chmodSync = chmodSync;
      syncBuiltinESMExports();
    });
    assert.throws(() => securePrivateDir(dir), saysChown(dir, 'EPERM'));
  });

  // For real: a folder owned by root, the relay another user (nobody).
  const asRoot = process.platform === 'linux' && process.getuid?.() === 0;
  it('for real: a root-owned folder, a relay that is not root', { skip: !asRoot && 'needs root' }, async () => {
    const dir = await folder();
    await chmod(dir, 0o755);
    // The child runs as nobody, who may not reach this checkout or its node binary (a fresh clone
    // under a 0700 temp folder): both go to a folder it can read, the binary linked, not copied.
    const bin = await folder();
    await chmod(bin, 0o755);
    const module = join(bin, 'private-files.ts');
    await copyFile(fileURLToPath(new URL('./private-files.ts', import.meta.url)), module);
    await chmod(module, 0o644);
    const node = join(bin, 'node');
    await link(realpathSync(process.execPath), node).catch(() => copyFile(process.execPath, node));
    const secure = (path: string): Error => {
      const script =
        `import { securePrivateDir } from ${JSON.stringify(module)};\n` +
        `try { securePrivateDir(${JSON.stringify(path)}); } catch (e) {\n` +
        '  console.log(JSON.stringify({ code: e.code, message: e.message }));\n' +
        '}';
      const child = spawnSync(node, ['--input-type=module', '-e', script], {
        uid: 65534,
        gid: 65534,
        encoding: 'utf8',
      });
      assert.equal(child.status, 0, child.stderr);
      return Object.assign(new Error(), JSON.parse(child.stdout || '{}'));
    };
    assert.ok(saysChown(dir, 'EPERM')(secure(dir)));
    const inside = join(dir, 'relay');
    const created = secure(inside) as NodeJS.ErrnoException;
    assert.equal(created.code, 'EACCES');
    assert.ok(
      created.message.startsWith(
        `cannot create the data folder ${inside}: create it owned by the relay's user (uid 65534)`,
      ),
      created.message,
    );
    // Its own folder, read-only (555): it owns it, so chown is not the answer.
    const own = join(bin, 'own');
    await mkdir(own);
    await chown(own, 65534, 65534);
    await chmod(own, 0o555);
    const readOnly = secure(own);
    assert.ok(
      readOnly.message.startsWith(
        `the data folder ${own} is not readable and writable by the relay's user (uid 65534), who owns it: \`chmod 700 ${own}\``,
      ),
      readOnly.message,
    );
  });
});
