import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { MAX_DATA_DEPTH } from '@anode/shared';
import { asArgs, FAST_MESH, meshStatus, waitFor } from '../helpers/mesh.ts';
import { type RelayProcess, spawnRelay, tempDir } from '../helpers/relay.ts';

const TOKEN = 'deep-source-admin-token-123';
const admin = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

/**
 * A source definition as deep as the admin API takes (its http `body` nested MAX_DATA_DEPTH - 1
 * levels) sits a few levels down in the sources snapshot relays fetch from each other. The
 * snapshot was refused whole when it nested past MAX_DATA_DEPTH (9773033): no other relay learned
 * that source or any source change after it, and each logged a refusal twice a second.
 */
describe('a source definition at the depth limit, in a two-relay mesh', { timeout: 120_000 }, () => {
  const processes: RelayProcess[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const p of processes) p.child.kill('SIGKILL');
    await Promise.all(processes.map((p) => p.exited));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('reaches the other relay, and so does a source created after it', async () => {
    const args = async (extra: string[]) => {
      const dir = await tempDir();
      dirs.push(dir);
      return [
        '--data-dir',
        dir,
        '--admin-token',
        TOKEN,
        '--mesh-member-interval-ms',
        '250',
        ...asArgs(FAST_MESH),
        ...extra,
      ];
    };
    const a = await spawnRelay(await args(['--port', '0', '--listen', '/ip4/127.0.0.1/tcp/0']));
    processes.push(a);
    const bootstrap = (await meshStatus(a.url)).node.multiaddrs[0] as string;
    const b = await spawnRelay(
      await args(['--port', '0', '--listen', '/ip4/127.0.0.1/tcp/0', '--bootstrap', bootstrap]),
    );
    processes.push(b);
    await waitFor('B to see A', async () => (await meshStatus(b.url)).peers.length >= 1, 30_000, 200);
    const depth = MAX_DATA_DEPTH - 1;
    const body = JSON.parse(`${'['.repeat(depth)}1${']'.repeat(depth)}`) as unknown;
    const create = async (name: string, extra: Record<string, unknown>) => {
      const res = await fetch(`${a.url}/v1/admin/sources`, {
        method: 'POST',
        headers: admin,
        body: JSON.stringify({
          name,
          kind: 'http',
          url: 'http://127.0.0.1:9/feed',
          interval_ms: 60_000,
          topic: `deep.${name}`,
          ...extra,
        }),
      });
      assert.equal(res.status, 201, await res.text());
    };
    await create('deep', { method: 'POST', body });
    await create('flat', {});
    // A level deeper (the definition past MAX_DATA_DEPTH) is refused with a coded 400.
    const deeper = await fetch(`${a.url}/v1/admin/sources`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({
        name: 'deeper',
        kind: 'http',
        url: 'http://127.0.0.1:9/feed',
        topic: 'deep.deeper',
        method: 'POST',
        body: [body],
      }),
    });
    assert.equal(deeper.status, 400);
    assert.match(await deeper.text(), /"code":"bad_frame".*nested deeper than 1000 levels/);
    const known = async (name: string) =>
      (await fetch(`${b.url}/v1/admin/sources/${name}`, { headers: admin })).status === 200;
    await waitFor(
      'B to know both sources',
      async () => (await known('deep')) && (await known('flat')),
      20_000,
      250,
    ).catch((error: Error) => {
      const log = b.output
        .join('')
        .split('\n')
        .filter((l) => /refused|state/i.test(l))
        .slice(-3)
        .join('\n');
      throw new Error(`${error.message}\nB's log:\n${log}`);
    });
  });
});
