import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { createRelayNode } from './node.ts';

/** Starts a standalone relay with these flags and returns the warnings it logged at start. */
async function startWarnings(flags: Record<string, string>, dirs: string[]): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'anode-mesh-off-'));
  dirs.push(dir);
  const lines: string[] = [];
  const log = createLogger('warn', { write: (line: string) => void lines.push(line) });
  const config = loadConfig({ flags: { port: '0', host: '127.0.0.1', 'data-dir': dir, ...flags }, env: {} });
  const node = await createRelayNode(config, log);
  await node.start();
  await node.stop();
  return lines.map((line) => (JSON.parse(line) as { msg: string }).msg);
}

describe('relay node: mesh options with the mesh off', () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

  it('warns that a mesh key file is not read while the mesh is off, and how to turn it on', async () => {
    // The file does not exist: the relay starts all the same, as it never reads it.
    const warnings = await startWarnings({ 'mesh-key-file': join(tmpdir(), 'anode-no-such-swarm.key') }, dirs);
    const warning = warnings.find((msg) => msg.includes('mesh is off'));
    assert.ok(warning, `a warning about the unused key file among: ${JSON.stringify(warnings)}`);
    assert.match(
      warning,
      /^mesh_key_file is set but the mesh is off.*key file is not read.*--mesh true, --listen or --bootstrap/,
    );
  });

  it('warns about mesh_key and mesh_allow the same way, and says nothing when no mesh option is set', async () => {
    const warnings = await startWarnings(
      { 'mesh-key': 'ab'.repeat(32), 'mesh-allow': `12D3KooW${'a'.repeat(44)}` },
      dirs,
    );
    assert.ok(
      warnings.some((msg) => /^mesh_key, mesh_allow are set but the mesh is off/.test(msg)),
      JSON.stringify(warnings),
    );
    assert.ok(!(await startWarnings({}, dirs)).some((msg) => msg.includes('mesh is off')));
  });
});
