import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { writePrivateFileDurably } from '../private-files.ts';
import { decodeSwarmKey, keyFromHex } from './pnet/swarm-key.ts';
import { unreadableFileHint } from '../unreadable-file.ts';

/**
 * This relay's persistent libp2p identity: an Ed25519 key made once and kept in the data folder
 * (`peer-key`, the libp2p protobuf encoding, readable by the owner only), so its peer id
 * survives restarts and others can allow-list it. Written whole or not at all: a power cut after
 * the first start must not leave an empty file that stops every later start.
 */
export async function loadPeerKey(dataDir: string): Promise<PrivateKey> {
  const path = join(dataDir, 'peer-key');
  try {
    return privateKeyFromProtobuf(await readFile(path));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`${path} does not hold a libp2p private key: ${(error as Error).message}`, { cause: error });
    }
  }
  const key = await generateKeyPair('Ed25519');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await writePrivateFileDurably(path, privateKeyToProtobuf(key));
  return key;
}

/**
 * The private-network key (32 bytes), from `mesh_key` (64 hex digits) or `mesh_key_file` (a
 * swarm.key file, as made by go-libp2p and IPFS tools); none when neither is set.
 */
export async function loadNetworkKey(config: { mesh_key?: string; mesh_key_file?: string }) {
  if (config.mesh_key) return keyFromHex(config.mesh_key);
  if (!config.mesh_key_file) return undefined;
  let text: string;
  try {
    text = await readFile(config.mesh_key_file, 'utf8');
  } catch (error) {
    // Neither the path nor the caught message (which holds it): a key given where its file's path
    // goes (as hex, or a swarm.key's whole text) would reach the logs.
    const { code } = error as NodeJS.ErrnoException;
    // eslint-disable-next-line preserve-caught-error -- the caught error's message holds the path
    throw new Error(
      `cannot read the file mesh_key_file names (${code ?? 'unreadable'}); ${unreadableFileHint(code, 'mesh_key')}`,
    );
  }
  try {
    return decodeSwarmKey(text);
  } catch (error) {
    throw new Error(`${config.mesh_key_file}: ${(error as Error).message}`, { cause: error });
  }
}
