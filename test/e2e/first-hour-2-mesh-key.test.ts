import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { asArgs, FAST_MESH, meshStatus, waitFor } from '../helpers/mesh.ts';
import { type RelayProcess, spawnRelay, tempDir } from '../helpers/relay.ts';

/**
 * A new user joins a second relay to a private mesh with another key (or none). Before, its log
 * said only "bootstrap dial failed" with `EncryptionFailedError: read ECONNRESET` (or "Message
 * length length too long"): nothing pointed at the key.
 */
describe('first hour: a relay joining a mesh with another mesh key', () => {
  const relays: RelayProcess[] = [];
  after(async () => {
    for (const relay of relays) relay.child.kill('SIGKILL');
    await Promise.all(relays.map((relay) => relay.exited));
  });

  it('logs that the mesh keys may differ and what to check, printing no key', async () => {
    const key = randomBytes(32).toString('hex');
    const other = randomBytes(32).toString('hex');
    const base = async () => ['--port', '0', '--data-dir', await tempDir(), ...asArgs(FAST_MESH)];
    const a = await spawnRelay([...(await base()), '--listen', '/ip4/127.0.0.1/tcp/0', '--mesh-key', key]);
    relays.push(a);
    const bootstrap = (await meshStatus(a.url)).node.multiaddrs[0] as string;
    // One joins with another key, one with none: both garble the handshake.
    for (const joining of [['--mesh-key', other], []]) {
      relays.push(await spawnRelay([...(await base()), '--bootstrap', bootstrap, ...joining]));
    }
    for (const relay of relays.slice(1)) {
      const failed = () =>
        relay.output
          .join('')
          .split('\n')
          .filter((line) => line.includes('bootstrap dial failed'))
          .map((line) => JSON.parse(line) as { level: string; msg: string; err?: { type?: string } });
      await waitFor('the failed bootstrap dial to be logged', () => failed().length > 0, 60_000);
      const [line] = failed();
      assert.equal(line?.level, 'warn');
      assert.equal(line?.err?.type, 'EncryptionFailedError', 'the cause is still logged');
      assert.match(line?.msg ?? '', /different mesh keys/);
      assert.match(line?.msg ?? '', /check that mesh_key \(or mesh_key_file\) is the same on both relays/);
    }
    for (const relay of relays) {
      const output = relay.output.join('');
      assert.ok(!output.includes(key) && !output.includes(other), 'no key is printed');
    }
  });

  it('does not blame the keys when they match and the address names another peer id', async () => {
    // The same key; the address's /p2p/ id is stale (the relay's data_dir was reset): noise
    // refuses the peer, wrapped as an EncryptionFailedError too.
    const key = randomBytes(32).toString('hex');
    const base = async () => ['--port', '0', '--data-dir', await tempDir(), ...asArgs(FAST_MESH), '--mesh-key', key];
    const a = await spawnRelay([...(await base()), '--listen', '/ip4/127.0.0.1/tcp/0']);
    relays.push(a);
    const real = (await meshStatus(a.url)).node.multiaddrs[0] as string;
    const stale = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString();
    const b = await spawnRelay([...(await base()), '--bootstrap', real.replace(/\/p2p\/[^/]+$/, `/p2p/${stale}`)]);
    relays.push(b);
    const failed = () =>
      b.output
        .join('')
        .split('\n')
        .find((line) => line.includes('bootstrap dial failed'));
    await waitFor('the failed bootstrap dial to be logged', () => failed() !== undefined, 60_000);
    const line = JSON.parse(failed() as string) as { msg: string };
    assert.doesNotMatch(line.msg, /different mesh keys/);
    assert.match(line.msg, /another peer than its \/p2p\/ id names/);
  });
});
