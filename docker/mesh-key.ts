// The compose files' `mesh-key` step: before any relay starts, it writes the mesh's private
// network key (a libp2p swarm.key file, mode 0600) into a volume the relays mount read-only.
// ANODE_MESH_KEY (64 hex digits) is written when there is no key yet; otherwise a key already in
// the volume is kept, or a new random one is made. The key is never printed.
//
// A stored key is never replaced silently: relays already running keep the key they read at
// start, so a new key written under them splits the mesh at the next restart of any one of them
// (it comes back healthy, with no peers). An ANODE_MESH_KEY that differs from the stored key is
// refused (exit 3) unless ANODE_MESH_KEY_ROTATE=1 says the relays were stopped first
// (docs/deploy.md: rotating the mesh key).
//   node docker/mesh-key.ts /keys/swarm.key
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { decodeSwarmKey, encodeSwarmKey, keyFromHex } from '../relay-node/src/mesh/pnet/swarm-key.ts';

const file = process.argv[2] ?? '/keys/swarm.key';
const given = process.env.ANODE_MESH_KEY?.trim();
const rotate = process.env.ANODE_MESH_KEY_ROTATE?.trim() === '1';
const say = (message: string) => process.stdout.write(`${JSON.stringify({ msg: message, file })}\n`);
function fail(code: number, message: string): never {
  process.stderr.write(`mesh-key: ${message}\n`);
  process.exit(code);
}

/** The stored key, or undefined when the file is not a swarm.key (never echoed). */
function storedKey(): Uint8Array | undefined {
  try {
    return decodeSwarmKey(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

const write = (key: Uint8Array) => {
  writeFileSync(file, `${encodeSwarmKey(key)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
};

if (given) {
  let key: Uint8Array;
  try {
    key = keyFromHex(given);
  } catch {
    fail(2, 'ANODE_MESH_KEY must be 64 hex digits (32 bytes), e.g. `openssl rand -hex 32`');
  }
  if (!existsSync(file)) {
    write(key);
    say('mesh key written from ANODE_MESH_KEY');
  } else {
    const stored = storedKey();
    if (stored && timingSafeEqual(stored, key)) {
      say('mesh key kept (the same as ANODE_MESH_KEY)');
    } else if (rotate) {
      write(key);
      say('mesh key replaced from ANODE_MESH_KEY (ANODE_MESH_KEY_ROTATE=1)');
    } else {
      fail(
        3,
        `ANODE_MESH_KEY differs from the mesh key already stored in ${file}; it was NOT replaced. ` +
          'Running relays keep the key they started with, so replacing it under them would split the mesh ' +
          'at their next restart. To keep the stored key, set ANODE_MESH_KEY back (or unset it). ' +
          'To rotate: stop every relay (docker-compose down), then start once with the new key and ' +
          'ANODE_MESH_KEY_ROTATE=1 (ANODE_MESH_KEY_ROTATE=1 docker-compose up -d), and remove ' +
          'ANODE_MESH_KEY_ROTATE again. Relays elsewhere in the mesh need the new key too.',
      );
    }
  }
} else if (existsSync(file)) {
  say('mesh key kept');
} else {
  writeFileSync(file, `${encodeSwarmKey(randomBytes(32))}\n`, { mode: 0o600, flag: 'wx' });
  say('mesh key generated');
}
