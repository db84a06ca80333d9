import { KEY_BYTES } from './xsalsa20.ts';

/**
 * The libp2p private-network key file (swarm.key, PSK v1, as go-libp2p, IPFS and js-libp2p write
 * it): a header line, an encoding line, and the 32-byte key. We read and write the base16 form.
 */
const HEADER = '/key/swarm/psk/1.0.0/';
const BASE16 = '/base16/';

/** The swarm.key text for a 32-byte key. */
export function encodeSwarmKey(key: Uint8Array): string {
  if (key.length !== KEY_BYTES) throw new RangeError(`a network key is ${KEY_BYTES} bytes`);
  return `${HEADER}\n${BASE16}\n${Buffer.from(key).toString('hex')}`;
}

/** The 32-byte key in a swarm.key text; throws (without echoing the text) when it is not one. */
export function decodeSwarmKey(text: string): Uint8Array {
  const lines = text.split(/\r?\n/);
  const hex = lines[2]?.trim() ?? '';
  if (lines[0]?.trim() !== HEADER || lines[1]?.trim() !== BASE16 || !/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new Error(`not a swarm.key (${HEADER}, ${BASE16}, 64 hex digits)`);
  }
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

/** The 32-byte key given as 64 hex digits (config `mesh_key`). */
export function keyFromHex(hex: string): Uint8Array {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error('a network key is 64 hex digits');
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}
