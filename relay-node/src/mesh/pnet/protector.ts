import { randomBytes } from 'node:crypto';
import type { AbortOptions, ConnectionProtector, MultiaddrConnection } from '@libp2p/interface';
import { byteStream } from '@libp2p/utils';
import { PrivateConnection } from './private-connection.ts';
import { KEY_BYTES, NONCE_BYTES, xsalsa20 } from './xsalsa20.ts';

export interface PrivateNetworkOptions {
  /** The 32-byte pre-shared key (the one in swarm.key). */
  key: Uint8Array;
  /**
   * The nonce exchange must finish within this long (default 3 s; @libp2p/pnet's 1 s failed
   * dials on a loaded 2-core machine; the upgrader's own timeout still bounds the whole upgrade).
   */
  handshakeTimeoutMs?: number;
}

/**
 * libp2p private networks, PSK v1 (libp2p/specs pnet/Private-Networks-PSK-V1.md), wire-compatible
 * with go-libp2p and @libp2p/pnet: each side sends 24 random bytes, then everything it sends is
 * XSalsa20 of the key and its own nonce; it decrypts with the peer's nonce. A peer without the key
 * produces garbage the encryption handshake after this rejects. Use as libp2p's
 * `connectionProtector`.
 */
export function privateNetwork(options: PrivateNetworkOptions): () => ConnectionProtector {
  if (options.key.length !== KEY_BYTES) throw new RangeError(`a network key is ${KEY_BYTES} bytes`);
  const key = Uint8Array.from(options.key);
  const timeoutMs = options.handshakeTimeoutMs ?? 3_000;
  const protector: ConnectionProtector = {
    async protect(connection: MultiaddrConnection, abort?: AbortOptions): Promise<MultiaddrConnection> {
      const log = connection.log.newScope('pnet');
      const localNonce = randomBytes(NONCE_BYTES);
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = abort?.signal ? AbortSignal.any([abort.signal, timeout]) : timeout;
      const bytes = byteStream(connection);
      const [remote] = await Promise.all([
        bytes.read({ bytes: NONCE_BYTES, signal }),
        bytes.write(localNonce, { signal }),
      ]);
      log('exchanged nonces');
      return new PrivateConnection({
        inner: bytes.unwrap(),
        inbound: xsalsa20(key, remote.subarray()),
        outbound: xsalsa20(key, localNonce),
        log,
      });
    },
  };
  return () => protector;
}
