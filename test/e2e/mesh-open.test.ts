import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { spawnRelay, tempDir } from '../helpers/relay.ts';

const SECRET = 'mesh-open-test-jwt-secret-0123456789';
const ADMIN = 'mesh-open-test-admin-token-0123';
const REFUSAL = /auth is on but the mesh has neither mesh_key nor mesh_allow.*--mesh-key.*--mesh-allow.*--mesh-open/;
const WARNING = 'OPEN MESH WITH AUTH ON';

const relayArgs = async (...extra: string[]) => [
  '--port',
  '0',
  '--data-dir',
  await tempDir(),
  '--jwt-secret',
  SECRET,
  '--admin-token',
  ADMIN,
  ...extra,
];

async function meshSection(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}/v1/status`, { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(res.status, 200);
  return ((await res.json()) as { mesh: Record<string, unknown> }).mesh;
}

describe('relay mesh: an open mesh with auth on', () => {
  for (const [name, flags] of [
    ['listening', ['--listen', '/ip4/127.0.0.1/tcp/0']],
    ['joining through a bootstrap address', ['--bootstrap', '/ip4/127.0.0.1/tcp/9']],
    ['switched on with --mesh', ['--mesh', 'true']],
  ] as const) {
    it(`refuses to start when ${name} with neither key nor allow-list (exit 2, one line naming the fix)`, async () => {
      const error = await spawnRelay(await relayArgs(...flags)).then(
        () => assert.fail('the relay started'),
        (e: Error) => e,
      );
      assert.match(error.message, /^relay exited \(2\) before ready:/);
      const output = error.message.split('\n').slice(1).join('\n').trim();
      assert.equal(output.split('\n').length, 1, output);
      assert.match(output, /^anode: /);
      assert.match(output, REFUSAL);
    });
  }

  it('starts with --mesh-open, warns loudly once and shows it in the status mesh section', async () => {
    const relay = await spawnRelay(await relayArgs('--listen', '/ip4/127.0.0.1/tcp/0', '--mesh-open', 'true'));
    try {
      const mesh = await meshSection(relay.url);
      assert.equal(mesh.open_with_auth, true);
      const warnings = relay.output
        .join('')
        .split('\n')
        .filter((line) => line.includes(WARNING));
      assert.equal(warnings.length, 1);
      assert.equal((JSON.parse(warnings[0]!) as { level: unknown }).level, 'warn');
    } finally {
      relay.child.kill('SIGTERM');
      await relay.exited;
    }
  });

  for (const [name, flags] of [
    ['a mesh key', ['--mesh-key', randomBytes(32).toString('hex')]],
    ['an allow-list', ['--mesh-allow', '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo']],
  ] as const) {
    it(`starts without a warning with ${name}`, async () => {
      const relay = await spawnRelay(await relayArgs('--listen', '/ip4/127.0.0.1/tcp/0', ...flags));
      try {
        assert.equal((await meshSection(relay.url)).open_with_auth, false);
        assert.ok(!relay.output.join('').includes(WARNING));
      } finally {
        relay.child.kill('SIGTERM');
        await relay.exited;
      }
    });
  }
});
