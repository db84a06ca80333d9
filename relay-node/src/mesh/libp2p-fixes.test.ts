import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Socket, connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { generateKeyPair, privateKeyFromRaw } from '@libp2p/crypto/keys';
import { nodeCrypto, pureJsCrypto } from '@libp2p/noise/crypto';
import { Uint8ArrayList } from 'uint8arraylist';
import type { Logger as Libp2pLogger } from '@libp2p/interface';
import { AbstractMultiaddrConnection, LengthPrefixedDecoder } from '@libp2p/utils';
import { yamux } from '@libp2p/yamux';
import { multiaddr } from '@multiformats/multiaddr';
import { applyLibp2pFixes } from './libp2p-fixes.ts';

const quiet = Object.assign(() => {}, {
  trace() {},
  error() {},
  enabled: false,
  newScope: () => quiet,
}) as unknown as Libp2pLogger;

/**
 * A real TCP socket as a libp2p connection, the way @libp2p/tcp wraps one (whose class is not
 * exported): every chunk is one `socket.write`, every 'data' event goes to `onData`.
 */
class SocketConnection extends AbstractMultiaddrConnection {
  readonly socket: Socket;
  constructor(socket: Socket, direction: 'inbound' | 'outbound') {
    super({ log: quiet, direction, remoteAddr: multiaddr('/ip4/127.0.0.1/tcp/1') });
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
  }
  sendData(data: Iterable<Uint8Array>) {
    let sentBytes = 0;
    let canSendMore = true;
    for (const chunk of data) {
      sentBytes += chunk.byteLength;
      canSendMore = this.socket.write(chunk);
    }
    return { sentBytes, canSendMore };
  }
  sendReset() {
    this.socket.destroy();
  }
  async sendClose() {
    this.socket.end();
  }
  sendPause() {
    this.socket.pause();
  }
  sendResume() {
    this.socket.resume();
  }
}

const u16 = (n: number) => new Uint8Array([n >> 8, n & 0xff]);
const frame = (body: Uint8Array) => new Uint8Array([...u16(body.byteLength), ...body]);
const uint16Length = (data: { byteLength: number; subarray(a: number, b: number): Uint8Array }) => {
  if (data.byteLength < 2) throw new RangeError('Could not decode int16BE');
  const head = data.subarray(0, 2);
  return ((head[0] as number) << 8) + (head[1] as number);
};

describe('libp2p fixes', () => {
  before(async () => applyLibp2pFixes());

  describe('length-prefixed decoding (noise frames)', () => {
    const bodies = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(300).fill(7), new Uint8Array([9])];
    const stream = new Uint8Array(bodies.flatMap((b) => [...frame(b)]));

    it('decodes the same frames wherever the reads split them, and never asks for a length of nothing', () => {
      for (let split = 1; split <= stream.byteLength; split++) {
        let emptyLookups = 0;
        const decoder = new LengthPrefixedDecoder({
          lengthDecoder: (data) => {
            if (data.byteLength === 0) emptyLookups += 1;
            return uint16Length(data as Uint8Array);
          },
          encodingLength: () => 2,
        });
        const out: number[][] = [];
        for (let at = 0; at < stream.byteLength; at += split)
          for (const chunk of decoder.decode(stream.subarray(at, at + split))) out.push([...chunk.subarray()]);
        // Empty bodies are not yielded (as before the fix).
        assert.deepEqual(
          out,
          bodies.filter((b) => b.byteLength > 0).map((b) => [...b]),
          `split every ${split} bytes`,
        );
        assert.equal(emptyLookups, 0, `split every ${split} bytes: a length was decoded from an empty buffer`);
      }
    });

    it('still refuses an overfull buffer and an oversized length, with the same errors', () => {
      const small = new LengthPrefixedDecoder({
        maxBufferSize: 4,
        lengthDecoder: uint16Length as never,
        encodingLength: () => 2,
      });
      assert.throws(() => [...small.decode(new Uint8Array(5))], { name: 'InvalidParametersError' });
      const strict = new LengthPrefixedDecoder({
        maxDataLength: 2,
        lengthDecoder: uint16Length as never,
        encodingLength: () => 2,
      });
      assert.throws(() => [...strict.decode(frame(new Uint8Array(3)))], { name: 'InvalidMessageLengthError' });
    });
  });

  describe('Ed25519 signatures with kept key objects', () => {
    it('signs exactly as Ed25519 does and verifies only what the key signed', async () => {
      // A key made by Node, handed to libp2p as its raw seed and public key: the reference
      // signature comes from Node's own key object.
      const node = generateKeyPairSync('ed25519');
      const jwk = node.privateKey.export({ format: 'jwk' });
      const a = privateKeyFromRaw(
        Buffer.concat([Buffer.from(jwk.d as string, 'base64url'), Buffer.from(jwk.x as string, 'base64url')]),
      );
      const b = await generateKeyPair('Ed25519');
      const message = new TextEncoder().encode('a gossip batch');
      const reference = sign(null, message, node.privateKey);
      for (let round = 0; round < 3; round++) {
        const signature = await a.sign(message);
        assert.deepEqual(Buffer.from(signature), reference, 'Ed25519 is deterministic: the same signature every time');
        assert.equal(await a.publicKey.verify(message, signature), true);
        assert.equal(await b.publicKey.verify(message, signature), false, "another key does not verify a's signature");
        assert.equal(await a.publicKey.verify(new TextEncoder().encode('a gossip batcH'), signature), false);
        const forged = Uint8Array.from(signature);
        forged[0] = (forged[0] as number) ^ 1;
        assert.equal(await a.publicKey.verify(message, forged), false);
      }
      assert.throws(() => a.publicKey.verify(message, new Uint8Array(63)), TypeError);
    });
  });

  describe("noise's chacha20-poly1305 with kept key objects", () => {
    it('seals and opens exactly as the pure-JS cipher does, and refuses what was tampered with', () => {
      const k = Uint8Array.from({ length: 32 }, (_, i) => i * 7);
      const other = Uint8Array.from({ length: 32 }, (_, i) => 255 - i);
      const ad = new TextEncoder().encode('handshake hash');
      for (const size of [0, 1, 1199, 1200, 4096, 65_519]) {
        const plaintext = Uint8Array.from({ length: size }, (_, i) => (i * 31) & 255);
        for (let n = 0; n < 3; n++) {
          const nonce = new Uint8Array(12);
          nonce[4] = n;
          // The reference: the package's own JS implementation, untouched by the fixes.
          const reference = pureJsCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k).subarray();
          const sealed = nodeCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k).subarray();
          assert.deepEqual(Buffer.from(sealed), Buffer.from(reference), `${size} bytes, nonce ${n}`);
          const listed = nodeCrypto.chaCha20Poly1305Encrypt(new Uint8ArrayList(plaintext), nonce, ad, k).subarray();
          assert.deepEqual(Buffer.from(listed), Buffer.from(reference), 'a Uint8ArrayList seals the same');
          const opened = nodeCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, k).subarray();
          assert.deepEqual(Buffer.from(opened), Buffer.from(plaintext));
          const openedList = nodeCrypto.chaCha20Poly1305Decrypt(new Uint8ArrayList(sealed), nonce, ad, k).subarray();
          assert.deepEqual(Buffer.from(openedList), Buffer.from(plaintext));
          assert.throws(() => nodeCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, other), 'another key');
          const tampered = Uint8Array.from(sealed);
          tampered[0] = (tampered[0] as number) ^ 1;
          assert.throws(() => nodeCrypto.chaCha20Poly1305Decrypt(tampered, nonce, ad, k), 'a flipped bit');
        }
      }
    });
  });

  describe('yamux over a real TCP connection', () => {
    let server: ReturnType<typeof createServer>;
    let client: Socket;
    let accepted: Socket;
    before(async () => {
      server = createServer();
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const port = (server.address() as { port: number }).port;
      const acceptedOnce = once(server, 'connection');
      client = connect(port, '127.0.0.1');
      accepted = ((await acceptedOnce) as [Socket])[0];
    });
    after(async () => {
      client.destroy();
      accepted.destroy();
      server.close();
      await once(server, 'close');
    });

    it('delivers 3 MB in order with one window update per half window, and a turn of frames as one write', async () => {
      const sender = yamux({ enableKeepAlive: false })().createStreamMuxer(new SocketConnection(client, 'outbound'));
      const receiver = yamux({ enableKeepAlive: false })().createStreamMuxer(new SocketConnection(accepted, 'inbound'));
      let windowUpdates = 0;
      const sendFrame = (receiver as unknown as { sendFrame: (header: { type: number }, data?: unknown) => boolean })
        .sendFrame;
      (receiver as unknown as { sendFrame: typeof sendFrame }).sendFrame = function (header, data) {
        if (header.type === 1) windowUpdates += 1;
        return sendFrame.call(this, header, data);
      };
      const total = 3_000_000;
      const chunk = 1000;
      let received = 0;
      let inOrder = true;
      const done = new Promise<void>((resolve) => {
        receiver.addEventListener('stream', (event) => {
          event.detail.addEventListener('message', (message) => {
            for (const byte of message.data.subarray()) {
              if (byte !== Math.floor(received / chunk) % 251) inOrder = false;
              received += 1;
            }
            if (received >= total) resolve();
          });
        });
      });
      const stream = await sender.createStream();
      const writes = { count: 0 };
      const writev = client._writev?.bind(client);
      const write = client._write.bind(client);
      client._writev = (chunks, callback) => {
        writes.count += 1;
        writev?.(chunks, callback);
      };
      client._write = (data, encoding, callback) => {
        writes.count += 1;
        write(data, encoding, callback);
      };
      for (let sent = 0, n = 0; sent < total; sent += chunk, n++) {
        if (!stream.send(new Uint8Array(chunk).fill(n % 251))) await once(stream, 'drain');
        if (n % 50 === 49) await nextTurn(); // 50 frames per event-loop turn
      }
      await nextTurn();
      const turns = total / chunk / 50;
      await done;
      assert.equal(received, total);
      assert.ok(inOrder, 'bytes arrived out of order');
      // The original sent one per data frame (3,000 here); the sender's window is 256 KiB.
      assert.ok(windowUpdates >= 2 && windowUpdates <= 40, `window updates: ${windowUpdates}`);
      // Without coalescing: one write per frame (3,000). Allow for the few turns a full socket split.
      assert.ok(writes.count <= turns * 2 + 10, `socket writes: ${writes.count} for ${Math.ceil(turns)} turns`);
      await Promise.all([sender.close(), receiver.close()]);
    });
  });
});
