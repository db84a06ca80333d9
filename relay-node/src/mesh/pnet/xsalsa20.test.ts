import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { describe, it } from 'node:test';
import { hsalsa20, xsalsa20 } from './xsalsa20.ts';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

// NaCl's test key and nonce (tests/stream.c, box.c; the same in libsodium's test/default/).
const FIRST_KEY = hex('1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389');
const NONCE = hex('69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37');

describe('xsalsa20', () => {
  it('matches NaCl core1: HSalsa20 of the box shared secret is the first key', () => {
    const shared = hex('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
    assert.equal(toHex(hsalsa20(shared, new Uint8Array(16))), toHex(FIRST_KEY));
  });

  it('matches NaCl stream: sha256 of the first 4,194,304 keystream bytes', () => {
    const stream = xsalsa20(FIRST_KEY, NONCE).update(new Uint8Array(4_194_304));
    assert.equal(
      createHash('sha256').update(stream).digest('hex'),
      '662b9d0e3463029156069b12f918691a98f7dfb2ca0393c96bbfc6b1fbd630a2',
    );
  });

  it('matches NaCl stream3: the first 32 keystream bytes', () => {
    assert.equal(
      toHex(xsalsa20(FIRST_KEY, NONCE).update(new Uint8Array(32))),
      'eea6a7251c1e72916d11c2cb214d3c252539121d8e234e652d651fa4c8cff880',
    );
  });

  it('matches NaCl box: 32 zero bytes then the message encrypt to the published ciphertext', () => {
    const message =
      hex(`be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffce5ecbaaf33bd751a1ac728d45e6c6129
      6cdc3c01233561f41db66cce314adb310e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde048977eb48f59ffd4924ca
      1c60902e52f0a089bc76897040e082f937763848645e0705`);
    const cipher = xsalsa20(FIRST_KEY, NONCE).update(Uint8Array.from([...new Uint8Array(32), ...message]));
    assert.equal(
      toHex(cipher.subarray(32)),
      `8e993b9f48681273c29650ba32fc76ce48332ea7164d96a4476fb8c531a1186ac0dfc17c98dce87b4da7f011ec48c97271d2c20f9b928fe2270d6f
      b863d51738b48eeee314a7cc8ab932164548e526ae90224368517acfeabd6bb3732bc0e9da99832b61ca01b6de56244a9e88d5f9b37973f622a43d
      14a6599b1f654cb45a74e355a5`.replace(/\s+/g, ''),
    );
  });

  it('carries the 64-bit block counter past 2^32 as libsodium does (crypto_stream_xsalsa20_xor_ic)', () => {
    // Blocks 2^32-1 and 2^32 of the NaCl key and nonce, from libsodium 1.0.18's
    // crypto_stream_xsalsa20_xor_ic(c, zeros[128], 128, nonce, 0xffffffff, key).
    const expected = `b46af0bf761b78533e01a0dd7e07216c9710ef35f09a28d1e5fa469b602472ca5085f6dbcc6a6b51fb89986f8feca856
      58d05701f5677d0bb340a1f2c769547219f5420c62ffff7d1304dad82b6dec2bdc59ec12a9e18a774eed128c2c90610a9d4c75c0817d64817a76
      bbc12746971ae897af210a072c1bc9fb044e086b7bfe`.replace(/\s+/g, '');
    assert.equal(toHex(xsalsa20(FIRST_KEY, NONCE, 2 ** 32 - 1).update(new Uint8Array(128))), expected);
    // Streamed across the boundary in odd pieces, too.
    const cipher = xsalsa20(FIRST_KEY, NONCE, 2 ** 32 - 1);
    const pieces = [
      cipher.update(new Uint8Array(61)),
      cipher.update(new Uint8Array(6)),
      cipher.update(new Uint8Array(61)),
    ];
    assert.equal(pieces.map(toHex).join(''), expected);
  });

  it('gives the same bytes however the stream is split into chunks', () => {
    for (let round = 0; round < 50; round++) {
      const key = randomBytes(32);
      const nonce = randomBytes(24);
      const data = randomBytes(randomInt(0, 5_000));
      const whole = xsalsa20(key, nonce).update(data);
      const streaming = xsalsa20(key, nonce);
      const parts: Uint8Array[] = [];
      for (let at = 0; at < data.length;) {
        const size = Math.min(data.length - at, randomInt(0, 200));
        // Odd offsets into a shared buffer, as socket chunks come.
        parts.push(streaming.update(data.subarray(at, at + size)));
        at += size;
      }
      assert.equal(toHex(Buffer.concat(parts)), toHex(whole), `round ${round}`);
    }
  });

  it('decrypts what it encrypts and leaves its input untouched', () => {
    const key = randomBytes(32);
    const nonce = randomBytes(24);
    const message = randomBytes(10_000);
    const copy = Buffer.from(message);
    const cipher = xsalsa20(key, nonce).update(message);
    assert.deepEqual(message, copy);
    assert.notDeepEqual(Buffer.from(cipher), copy);
    assert.deepEqual(Buffer.from(xsalsa20(key, nonce).update(cipher)), copy);
  });

  it('allocates only the size of what it encrypts', () => {
    const out = xsalsa20(randomBytes(32), randomBytes(24)).update(new Uint8Array(3 * 1024 * 1024 + 5));
    assert.equal(out.length, 3 * 1024 * 1024 + 5);
    assert.ok(out.buffer.byteLength <= out.length + 3);
  });

  it('rejects keys and nonces of the wrong size', () => {
    assert.throws(() => xsalsa20(new Uint8Array(31), new Uint8Array(24)), RangeError);
    assert.throws(() => xsalsa20(new Uint8Array(32), new Uint8Array(8)), RangeError);
  });
});
