import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { decodeSwarmKey, encodeSwarmKey, keyFromHex } from './swarm-key.ts';

describe('swarm.key', () => {
  const key = randomBytes(32);
  const hex = key.toString('hex');

  it('reads what go-libp2p and IPFS tools write (trailing newline, CRLF, upper case)', () => {
    for (const text of [
      `/key/swarm/psk/1.0.0/\n/base16/\n${hex}\n`,
      `/key/swarm/psk/1.0.0/\r\n/base16/\r\n${hex.toUpperCase()}\r\n`,
      encodeSwarmKey(key),
    ]) {
      assert.deepEqual(Buffer.from(decodeSwarmKey(text)), key);
    }
    assert.deepEqual(Buffer.from(keyFromHex(hex)), key);
  });

  it('refuses other formats and keys of the wrong length, without echoing the content', () => {
    for (const text of [
      `/key/swarm/psk/1.0.0/\n/base64/\n${key.toString('base64')}`,
      `/key/swarm/psk/2.0.0/\n/base16/\n${hex}`,
      `/key/swarm/psk/1.0.0/\n/base16/\n${hex.slice(2)}`,
      hex,
    ]) {
      assert.throws(
        () => decodeSwarmKey(text),
        (error: Error) => /not a swarm.key/.test(error.message) && !error.message.includes(hex.slice(2, 20)),
      );
    }
    assert.throws(() => keyFromHex('zz'.repeat(32)));
    assert.throws(() => encodeSwarmKey(new Uint8Array(16)), RangeError);
  });
});
