// docker/mesh-key.ts, the compose files' `mesh-key` step, run as the compose files run it (Node on
// the script, the key file as its argument) on a temporary folder: no Docker needed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ROOT } from './compose.ts';

const SCRIPT = join(ROOT, 'docker/mesh-key.ts');
const dirs: string[] = [];
after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function keyFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'anode-mesh-key-'));
  dirs.push(dir);
  return join(dir, 'swarm.key');
}

function meshKey(file: string, env: Record<string, string> = {}) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('ANODE_')));
  const result = spawnSync(process.execPath, [SCRIPT, file], { env: { ...base, ...env }, encoding: 'utf8' });
  return { status: result.status, out: result.stdout, err: result.stderr };
}

const hexIn = (file: string) => readFileSync(file, 'utf8').split('\n')[2];

describe('docker/mesh-key.ts', () => {
  it('generates a key once, owner-only, never printed, and keeps it', () => {
    const file = keyFile();
    const first = meshKey(file);
    assert.equal(first.status, 0, first.err);
    assert.match(first.out, /mesh key generated/);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const hex = hexIn(file) as string;
    assert.match(hex, /^[0-9a-f]{64}$/);
    assert.ok(!first.out.includes(hex) && !first.err.includes(hex), 'the key is never printed');
    const again = meshKey(file);
    assert.equal(again.status, 0, again.err);
    assert.match(again.out, /mesh key kept/);
    assert.equal(hexIn(file), hex);
  });

  it('writes ANODE_MESH_KEY when there is no key yet, and keeps it when it is given again', () => {
    const file = keyFile();
    const key = randomBytes(32).toString('hex');
    const first = meshKey(file, { ANODE_MESH_KEY: key });
    assert.equal(first.status, 0, first.err);
    assert.match(first.out, /mesh key written from ANODE_MESH_KEY/);
    assert.equal(hexIn(file), key);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const again = meshKey(file, { ANODE_MESH_KEY: key.toUpperCase() });
    assert.equal(again.status, 0, again.err);
    assert.match(again.out, /mesh key kept/);
    assert.equal(hexIn(file), key);
  });

  it('refuses to replace a stored key with a different ANODE_MESH_KEY, saying how to rotate', () => {
    const file = keyFile();
    const old = randomBytes(32).toString('hex');
    assert.equal(meshKey(file, { ANODE_MESH_KEY: old }).status, 0);
    const changed = randomBytes(32).toString('hex');
    const refused = meshKey(file, { ANODE_MESH_KEY: changed });
    assert.equal(refused.status, 3, 'a non-zero exit stops the relays that depend on this step');
    assert.match(refused.err, /differs from the mesh key already stored/);
    assert.match(refused.err, /ANODE_MESH_KEY_ROTATE=1/);
    assert.match(refused.err, /docker-compose down/);
    assert.equal(hexIn(file), old, 'the stored key is untouched');
    for (const key of [old, changed]) {
      assert.ok(!refused.out.includes(key) && !refused.err.includes(key), 'no key is printed');
    }
    // A generated key is stored too: setting ANODE_MESH_KEY later is a rotation as well.
    const generated = keyFile();
    assert.equal(meshKey(generated).status, 0);
    assert.equal(meshKey(generated, { ANODE_MESH_KEY: changed }).status, 3);
  });

  it('replaces the stored key with ANODE_MESH_KEY_ROTATE=1', () => {
    const file = keyFile();
    assert.equal(meshKey(file).status, 0);
    const key = randomBytes(32).toString('hex');
    const rotated = meshKey(file, { ANODE_MESH_KEY: key, ANODE_MESH_KEY_ROTATE: '1' });
    assert.equal(rotated.status, 0, rotated.err);
    assert.match(rotated.out, /mesh key replaced from ANODE_MESH_KEY/);
    assert.equal(hexIn(file), key);
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  it('treats a stored file that is not a key as a key to keep, not one to overwrite', () => {
    const file = keyFile();
    writeFileSync(file, 'not a swarm key\n', { mode: 0o600 });
    const refused = meshKey(file, { ANODE_MESH_KEY: randomBytes(32).toString('hex') });
    assert.equal(refused.status, 3);
    assert.equal(readFileSync(file, 'utf8'), 'not a swarm key\n');
  });

  it('refuses an ANODE_MESH_KEY that is not 64 hex digits', () => {
    const file = keyFile();
    const bad = meshKey(file, { ANODE_MESH_KEY: 'abc' });
    assert.equal(bad.status, 2);
    assert.match(bad.err, /64 hex digits/);
  });
});
