import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FAST_MESH, meshStatus, waitFor } from '../helpers/mesh.ts';
import { startRelay, tempDir, type TestRelay } from '../helpers/relay.ts';

type TwinStatus = { node: { peer_id: string }; mesh: { twins?: string[] } };
const status = async (relay: TestRelay) => (await meshStatus(relay.url)) as unknown as TwinStatus;

describe('relay mesh: two relays with one node id (a copied data folder)', () => {
  const relays: TestRelay[] = [];
  after(async () => {
    await Promise.all(relays.map((r) => r.stop()));
  });

  it('each shows the other in mesh.twins while both run; other relays show none', async () => {
    const original = await startRelay({ ...FAST_MESH, listen: '/ip4/127.0.0.1/tcp/0' });
    relays.push(original);
    const bootstrap = (await meshStatus(original.url)).node.multiaddrs[0] as string;
    // The copy kept node-id but made its own peer key (deleted with the rest, or never copied).
    const copyDir = await tempDir();
    await copyFile(join(original.dataDir, 'node-id'), join(copyDir, 'node-id'));
    const copy = await startRelay({ ...FAST_MESH, bootstrap }, { dataDir: copyDir });
    relays.push(copy);
    const other = await startRelay({ ...FAST_MESH, bootstrap });
    relays.push(other);
    const [a, b] = [await status(original), await status(copy)];
    await waitFor('both twins seen', async () => {
      const [sa, sb] = [await status(original), await status(copy)];
      return !!sa.mesh.twins?.includes(b.node.peer_id) && !!sb.mesh.twins?.includes(a.node.peer_id);
    });
    assert.equal((await status(other)).mesh.twins, undefined, 'a relay with its own node id has no twin');
    // A clean stop says it is leaving: the original no longer lists it.
    await copy.stop();
    relays.splice(relays.indexOf(copy), 1);
    await waitFor('the twin gone', async () => (await status(original)).mesh.twins === undefined);
  });
});
