import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { generateKeyPair, publicKeyFromRaw } from '@libp2p/crypto/keys';
import { InvalidParametersError } from '@libp2p/interface';
import { AbstractMultiaddrConnection, InvalidMessageLengthError, LengthPrefixedDecoder } from '@libp2p/utils';
import { nodeCrypto } from '@libp2p/noise/crypto';
import { Socket } from 'node:net';
import { StreamState, YamuxStream } from '@libp2p/yamux/stream';

/**
 * Fixes to the libp2p packages we run, for costs that every gossip frame paid: in the profile of
 * an idle 9-relay mesh they were about 40% of a relay's busy time, and under load they set how
 * far behind the mesh fell. Each replaces one method, keeps its behaviour, and refuses to install
 * (throwing at start) if the method it replaces no longer looks like the one it was written
 * against, so an upgrade cannot silently drop or break it. Applied once, by `createHost`.
 *
 * 1. `LengthPrefixedDecoder.decode` (@libp2p/utils 7.4, used by noise for every encrypted frame)
 *    loops until its length decoder throws a RangeError for want of bytes: one thrown and caught
 *    error per TCP read, stack trace included, a quarter of an idle relay's CPU. Here the loop
 *    stops when the buffer is empty (a partial length prefix still ends it by the RangeError).
 *    The same flaw, in mplex, is ChainSafe/lodestar#3467.
 * 2. `YamuxStream.sendWindowUpdate` (@libp2p/yamux 8.0) answered every data frame with a window
 *    update frame: one more encrypted write, and one more frame for the peer to read, per
 *    gossip message. Here, as in hashicorp/yamux (Go), an established stream sends one only once
 *    at least half its receive window is used up.
 * 3. Ed25519 keys (@libp2p/crypto 5.1) built a Node `KeyObject` from a JWK for every signature
 *    they made or checked (every gossip batch, at every relay). Here the key objects are kept:
 *    per private key object, and for up to 4,096 public keys (the first seen dropped first).
 * 4. Every frame (a gossip RPC, an IDONTWANT, a window update: each its own noise message) was
 *    its own `write` to the TCP socket. Here what one event-loop turn sends on a TCP connection
 *    leaves as one `writev` (see `coalesceTcpWrites`).
 * 5. Noise (@libp2p/noise 17.0) encrypts and decrypts frames of 1,200 bytes and more with Node's
 *    chacha20-poly1305, passing the session key as bytes to `createCipheriv` for every frame;
 *    Node's key-type checks on raw bytes cost ~10 µs a frame (~10% of a receiving relay at
 *    load). Here each session key is turned into a `KeyObject` once (see `cacheNoiseKeys`).
 */
let applied = false;

export async function applyLibp2pFixes(): Promise<void> {
  if (applied) return;
  applied = true;
  fixLengthPrefixedDecoder();
  fixYamuxWindowUpdates();
  fixEd25519Verify();
  await fixEd25519Sign();
  coalesceTcpWrites();
  cacheNoiseKeys();
}

function expectShape(what: string, fn: unknown, markers: readonly string[]): void {
  const source = typeof fn === 'function' ? Function.prototype.toString.call(fn) : '';
  const missing = markers.filter((marker) => !source.includes(marker));
  if (missing.length > 0)
    throw new Error(
      `libp2p-fixes: ${what} is not the method this fix was written for (missing ${missing.join(', ')}); ` +
        'review relay-node/src/mesh/libp2p-fixes.ts against the installed package',
    );
}

interface DecoderFields {
  buffer: {
    append(buf: unknown): void;
    byteLength: number;
    sublist(a: number, b: number): unknown;
    consume(n: number): void;
  };
  maxBufferSize: number;
  maxDataLength: number;
  lengthDecoder(data: unknown): number;
  encodingLength(length: number): number;
}

function fixLengthPrefixedDecoder(): void {
  const proto = LengthPrefixedDecoder.prototype as unknown as { decode: unknown };
  expectShape('LengthPrefixedDecoder.decode', proto.decode, [
    'this.buffer.append',
    'this.lengthDecoder(this.buffer)',
    'RangeError',
    'this.encodingLength(dataLength)',
    'this.buffer.consume(chunkLength)',
  ]);
  proto.decode = function* decode(this: DecoderFields, buf: unknown) {
    this.buffer.append(buf);
    if (this.buffer.byteLength > this.maxBufferSize)
      throw new InvalidParametersError(
        `Buffer length limit exceeded - ${this.buffer.byteLength}/${this.maxBufferSize}`,
      );
    while (this.buffer.byteLength > 0) {
      let dataLength: number;
      try {
        dataLength = this.lengthDecoder(this.buffer);
      } catch (error) {
        if (error instanceof RangeError) break; // a partial length prefix: wait for more
        throw error;
      }
      if (dataLength < 0 || dataLength > this.maxDataLength)
        throw new InvalidMessageLengthError('Invalid message length');
      const lengthLength = this.encodingLength(dataLength);
      const chunkLength = lengthLength + dataLength;
      if (this.buffer.byteLength < chunkLength) break;
      const chunk = this.buffer.sublist(lengthLength, chunkLength) as { byteLength: number };
      this.buffer.consume(chunkLength);
      if (chunk.byteLength > 0) yield chunk;
    }
  };
}

interface YamuxWindowFields {
  state: unknown;
  recvWindow: number;
  recvWindowCapacity: number;
}

function fixYamuxWindowUpdates(): void {
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: (this: YamuxWindowFields) => void };
  const original = proto.sendWindowUpdate;
  expectShape('YamuxStream.sendWindowUpdate', original, [
    'StreamState.Paused',
    'this.getSendFlags()',
    'this.recvWindowCapacity >= this.recvWindow && flags === 0',
    'FrameType.WindowUpdate',
  ]);
  proto.sendWindowUpdate = function sendWindowUpdate(this: YamuxWindowFields) {
    // An established stream (no SYN/ACK flags left to send, not paused) with more than half its
    // window left has nothing to send yet. The rest (a paused stream, SYN/ACK flags, window
    // growth, the update itself) is the original's.
    if (this.state === StreamState.Established && this.recvWindow - this.recvWindowCapacity < this.recvWindow / 2)
      return;
    original.call(this);
  };
}

function fixEd25519Verify(): void {
  const proto = Object.getPrototypeOf(publicKeyFromRaw(new Uint8Array(32))) as {
    verify: (this: { raw: Uint8Array }, data: unknown, sig: Uint8Array, options?: { signal?: AbortSignal }) => unknown;
  };
  expectShape('Ed25519PublicKey.verify', proto.verify, ['hashAndVerify(this.raw, sig, data)']);
  const keys = new Map<string, KeyObject>();
  const MAX_KEYS = 4096;
  proto.verify = function verifyCached(data, sig, options) {
    options?.signal?.throwIfAborted();
    if (this.raw.byteLength !== 32) throw new TypeError('"key" must be 32 bytes in length.');
    if (sig.byteLength !== 64) throw new TypeError('"sig" must be 64 bytes in length.');
    // The key's JWK `x` (base64url of its 32 bytes) names it in the cache too.
    const x = Buffer.from(this.raw.buffer, this.raw.byteOffset, 32).toString('base64url');
    let key = keys.get(x);
    if (!key) {
      key = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x } });
      if (keys.size >= MAX_KEYS) keys.delete(keys.keys().next().value as string);
      keys.set(x, key);
    }
    const message = data instanceof Uint8Array ? data : (data as { subarray(): Uint8Array }).subarray();
    return verify(null, message, key, sig);
  };
}

async function fixEd25519Sign(): Promise<void> {
  const proto = Object.getPrototypeOf(await generateKeyPair('Ed25519')) as {
    sign: (this: { raw: Uint8Array }, message: unknown, options?: { signal?: AbortSignal }) => unknown;
  };
  const original = proto.sign;
  expectShape('Ed25519PrivateKey.sign', original, ['hashAndSign(this.raw, message)']);
  const keys = new WeakMap<object, KeyObject>();
  proto.sign = function signCached(message, options) {
    if (this.raw.byteLength !== 64) return original.call(this, message, options);
    options?.signal?.throwIfAborted();
    let key = keys.get(this);
    if (!key) {
      // raw: the 32-byte seed then the 32-byte public key (as @libp2p/crypto keeps it).
      const raw = Buffer.from(this.raw);
      key = createPrivateKey({
        format: 'jwk',
        key: {
          kty: 'OKP',
          crv: 'Ed25519',
          d: raw.subarray(0, 32).toString('base64url'),
          x: raw.subarray(32).toString('base64url'),
        },
      });
      keys.set(this, key);
    }
    const data = message instanceof Uint8Array ? message : (message as { subarray(): Uint8Array }).subarray();
    return sign(null, data, key);
  };
}

/**
 * Every frame a connection sends (a gossip RPC, an IDONTWANT, a window update, each its own noise
 * message) was its own `write` to the TCP socket: one syscall, one loopback or network packet and
 * one wake-up of the peer per frame. Here a TCP connection's socket is corked on its first send in
 * an event-loop turn and uncorked at the end of the turn, so what a turn sends to one peer leaves
 * as one `writev`. Nothing waits longer than the current turn.
 */
function coalesceTcpWrites(): void {
  const proto = AbstractMultiaddrConnection.prototype as unknown as { send(data: unknown): boolean };
  const original = proto.send;
  expectShape('AbstractMessageStream.send', original, ['this.writeBuffer.append(data)', 'this.processSendQueue()']);
  const corked = new Set<Socket>();
  let scheduled = false;
  const uncorkAll = () => {
    scheduled = false;
    for (const socket of corked) socket.uncork();
    corked.clear();
  };
  proto.send = function send(this: { socket?: unknown }, data: unknown) {
    const socket = this.socket;
    if (socket instanceof Socket && !corked.has(socket) && !socket.destroyed) {
      socket.cork();
      corked.add(socket);
      if (!scheduled) {
        scheduled = true;
        setImmediate(uncorkAll);
      }
    }
    return original.call(this, data);
  };
}

/**
 * A noise session's keys are fixed `Uint8Array`s (one per direction, kept by its cipher states),
 * so a `KeyObject` made from one is kept as long as that array lives. The ciphers' output is the
 * original's: the same calls with the same bytes, only the key's form differs.
 */
function cacheNoiseKeys(): void {
  type Data = Uint8Array | { byteLength: number; length: number; subarray(): Uint8Array };
  const target = nodeCrypto as unknown as {
    chaCha20Poly1305Encrypt: (plaintext: Data, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array) => unknown;
    chaCha20Poly1305Decrypt: (
      ciphertext: Data,
      nonce: Uint8Array,
      ad: Uint8Array,
      k: Uint8Array,
      dst?: unknown,
    ) => unknown;
  };
  const encrypt = target.chaCha20Poly1305Encrypt;
  const decrypt = target.chaCha20Poly1305Decrypt;
  expectShape('noise nodeCrypto.chaCha20Poly1305Encrypt', encrypt, [
    'crypto.createCipheriv(CHACHA_POLY1305, k, nonce',
    'authTagLength: 16',
    'cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })',
  ]);
  expectShape('noise nodeCrypto.chaCha20Poly1305Decrypt', decrypt, [
    'crypto.createDecipheriv(CHACHA_POLY1305, k, nonce',
    'ciphertext.subarray(ciphertext.length - 16)',
    'decipher.setAuthTag(authTag)',
  ]);
  const keys = new WeakMap<Uint8Array, KeyObject>();
  const keyOf = (k: Uint8Array): KeyObject => {
    let key = keys.get(k);
    if (!key) keys.set(k, (key = createSecretKey(k)));
    return key;
  };
  const bytes = (data: Data): Uint8Array => (data instanceof Uint8Array ? data : data.subarray());
  target.chaCha20Poly1305Encrypt = function encryptKeyed(plaintext, nonce, ad, k) {
    const cipher = createCipheriv('chacha20-poly1305', keyOf(k), nonce, { authTagLength: 16 });
    const text = bytes(plaintext);
    cipher.setAAD(ad, { plaintextLength: text.byteLength });
    const updated = cipher.update(text);
    const final = cipher.final();
    const tag = cipher.getAuthTag();
    return Buffer.concat([updated, final, tag], updated.byteLength + final.byteLength + tag.byteLength);
  };
  target.chaCha20Poly1305Decrypt = function decryptKeyed(ciphertext, nonce, ad, k) {
    const data = bytes(ciphertext);
    const decipher = createDecipheriv('chacha20-poly1305', keyOf(k), nonce, { authTagLength: 16 });
    const text = data.subarray(0, data.byteLength - 16);
    decipher.setAAD(ad, { plaintextLength: text.byteLength });
    decipher.setAuthTag(data.subarray(data.byteLength - 16));
    const output = decipher.update(text);
    const final = decipher.final();
    return final.byteLength > 0 ? Buffer.concat([output, final], output.byteLength + final.byteLength) : output;
  };
}
