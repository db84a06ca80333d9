// The compose files' `mesh-key` step: before any relay starts, it writes the mesh's private
// network key (a libp2p swarm.key file, mode 0600) into a volume the relays mount read-only.
// ANODE_MESH_KEY (64 hex digits) is written when given; otherwise a key already in the volume is
// kept, or a new random one is made. The key is never printed.
//   node docker/mesh-key.ts /keys/swarm.key
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { encodeSwarmKey, keyFromHex } from '../relay-node/src/mesh/pnet/swarm-key.ts';

const file = process.argv[2] ?? '/keys/swarm.key';
const given = process.env.ANODE_MESH_KEY?.trim();
const say = (message: string) => process.stdout.write(`${JSON.stringify({ msg: message, file })}\n`);

if (given) {
  let key: Uint8Array;
  try {
    key = keyFromHex(given);
  } catch {
    process.stderr.write('mesh-key: ANODE_MESH_KEY must be 64 hex digits (32 bytes), e.g. `openssl rand -hex 32`\n');
    process.exit(2);
  }
  writeFileSync(file, `${encodeSwarmKey(key)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  say('mesh key written from ANODE_MESH_KEY');
} else if (existsSync(file)) {
  say('mesh key kept');
} else {
  writeFileSync(file, `${encodeSwarmKey(randomBytes(32))}\n`, { mode: 0o600, flag: 'wx' });
  say('mesh key generated');
}
