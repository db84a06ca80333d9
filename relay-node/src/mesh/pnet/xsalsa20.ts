/**
 * XSalsa20 (HSalsa20 subkey + Salsa20/20 keystream, 64-bit block counter), as in NaCl's
 * crypto_stream_xsalsa20, in plain TypeScript. Each cipher holds ~200 bytes of its own typed
 * arrays, collected with it; `update` allocates only its output (its input's size, plus at most
 * 3 bytes of alignment), so no message size and no number of ciphers can exhaust anything.
 */
export interface StreamCipher {
  /** XORs `input` with the next `input.length` keystream bytes into a new array (input untouched). */
  update(input: Uint8Array): Uint8Array;
}

export const KEY_BYTES = 32;
export const NONCE_BYTES = 24;
const BLOCK_BYTES = 64;

// "expand 32-byte k"
const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574] as const;

// Keystream words are XORed onto the output as 32-bit words: that needs a little-endian host.
if (new Uint8Array(new Int32Array([1]).buffer)[0] !== 1) throw new Error('xsalsa20 needs a little-endian host');

const word = (bytes: Uint8Array, at: number) =>
  bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24);

/**
 * The Salsa20 core on `input` (16 words): 20 rounds, then (`feedForward`) the input added back,
 * XORed onto `out` from word `at` (out is zero where a plain keystream block is wanted). HSalsa20
 * is the same rounds without the feed-forward.
 */
// prettier-ignore
function salsaCore(input: Int32Array, out: Int32Array, at: number, feedForward: boolean): void {
  const j0 = input[0]!, j1 = input[1]!, j2 = input[2]!, j3 = input[3]!;
  const j4 = input[4]!, j5 = input[5]!, j6 = input[6]!, j7 = input[7]!;
  const j8 = input[8]!, j9 = input[9]!, j10 = input[10]!, j11 = input[11]!;
  const j12 = input[12]!, j13 = input[13]!, j14 = input[14]!, j15 = input[15]!;
  let x0 = j0, x1 = j1, x2 = j2, x3 = j3, x4 = j4, x5 = j5, x6 = j6, x7 = j7;
  let x8 = j8, x9 = j9, x10 = j10, x11 = j11, x12 = j12, x13 = j13, x14 = j14, x15 = j15;
  let u: number;
  for (let i = 0; i < 20; i += 2) {
    // Column round.
    u = (x0 + x12) | 0; x4 ^= (u << 7) | (u >>> 25);
    u = (x4 + x0) | 0; x8 ^= (u << 9) | (u >>> 23);
    u = (x8 + x4) | 0; x12 ^= (u << 13) | (u >>> 19);
    u = (x12 + x8) | 0; x0 ^= (u << 18) | (u >>> 14);
    u = (x5 + x1) | 0; x9 ^= (u << 7) | (u >>> 25);
    u = (x9 + x5) | 0; x13 ^= (u << 9) | (u >>> 23);
    u = (x13 + x9) | 0; x1 ^= (u << 13) | (u >>> 19);
    u = (x1 + x13) | 0; x5 ^= (u << 18) | (u >>> 14);
    u = (x10 + x6) | 0; x14 ^= (u << 7) | (u >>> 25);
    u = (x14 + x10) | 0; x2 ^= (u << 9) | (u >>> 23);
    u = (x2 + x14) | 0; x6 ^= (u << 13) | (u >>> 19);
    u = (x6 + x2) | 0; x10 ^= (u << 18) | (u >>> 14);
    u = (x15 + x11) | 0; x3 ^= (u << 7) | (u >>> 25);
    u = (x3 + x15) | 0; x7 ^= (u << 9) | (u >>> 23);
    u = (x7 + x3) | 0; x11 ^= (u << 13) | (u >>> 19);
    u = (x11 + x7) | 0; x15 ^= (u << 18) | (u >>> 14);
    // Row round.
    u = (x0 + x3) | 0; x1 ^= (u << 7) | (u >>> 25);
    u = (x1 + x0) | 0; x2 ^= (u << 9) | (u >>> 23);
    u = (x2 + x1) | 0; x3 ^= (u << 13) | (u >>> 19);
    u = (x3 + x2) | 0; x0 ^= (u << 18) | (u >>> 14);
    u = (x5 + x4) | 0; x6 ^= (u << 7) | (u >>> 25);
    u = (x6 + x5) | 0; x7 ^= (u << 9) | (u >>> 23);
    u = (x7 + x6) | 0; x4 ^= (u << 13) | (u >>> 19);
    u = (x4 + x7) | 0; x5 ^= (u << 18) | (u >>> 14);
    u = (x10 + x9) | 0; x11 ^= (u << 7) | (u >>> 25);
    u = (x11 + x10) | 0; x8 ^= (u << 9) | (u >>> 23);
    u = (x8 + x11) | 0; x9 ^= (u << 13) | (u >>> 19);
    u = (x9 + x8) | 0; x10 ^= (u << 18) | (u >>> 14);
    u = (x15 + x14) | 0; x12 ^= (u << 7) | (u >>> 25);
    u = (x12 + x15) | 0; x13 ^= (u << 9) | (u >>> 23);
    u = (x13 + x12) | 0; x14 ^= (u << 13) | (u >>> 19);
    u = (x14 + x13) | 0; x15 ^= (u << 18) | (u >>> 14);
  }
  if (feedForward) {
    x0 = (x0 + j0) | 0; x1 = (x1 + j1) | 0; x2 = (x2 + j2) | 0; x3 = (x3 + j3) | 0;
    x4 = (x4 + j4) | 0; x5 = (x5 + j5) | 0; x6 = (x6 + j6) | 0; x7 = (x7 + j7) | 0;
    x8 = (x8 + j8) | 0; x9 = (x9 + j9) | 0; x10 = (x10 + j10) | 0; x11 = (x11 + j11) | 0;
    x12 = (x12 + j12) | 0; x13 = (x13 + j13) | 0; x14 = (x14 + j14) | 0; x15 = (x15 + j15) | 0;
  }
  out[at]! ^= x0; out[at + 1]! ^= x1; out[at + 2]! ^= x2; out[at + 3]! ^= x3;
  out[at + 4]! ^= x4; out[at + 5]! ^= x5; out[at + 6]! ^= x6; out[at + 7]! ^= x7;
  out[at + 8]! ^= x8; out[at + 9]! ^= x9; out[at + 10]! ^= x10; out[at + 11]! ^= x11;
  out[at + 12]! ^= x12; out[at + 13]! ^= x13; out[at + 14]! ^= x14; out[at + 15]! ^= x15;
}

/** The 16 input words: constants, key, 8 nonce bytes, then the 64-bit block counter (low word first). */
// prettier-ignore
function salsaInput(key: Uint8Array, nonce8: Uint8Array, block: number): Int32Array {
  const s = new Int32Array(16);
  s[0] = SIGMA[0]; s[5] = SIGMA[1]; s[10] = SIGMA[2]; s[15] = SIGMA[3];
  for (let i = 0; i < 4; i++) {
    s[1 + i] = word(key, 4 * i);
    s[11 + i] = word(key, 16 + 4 * i);
  }
  s[6] = word(nonce8, 0);
  s[7] = word(nonce8, 4);
  s[8] = block | 0;
  s[9] = Math.floor(block / 2 ** 32) | 0;
  return s;
}

/** HSalsa20: the subkey XSalsa20 derives from the key and the first 16 nonce bytes. */
export function hsalsa20(key: Uint8Array, nonce16: Uint8Array): Uint8Array {
  const s = salsaInput(key, nonce16, 0);
  s[8] = word(nonce16, 8);
  s[9] = word(nonce16, 12);
  const x = new Int32Array(16);
  salsaCore(s, x, 0, false);
  const out = new Int32Array([x[0]!, x[5]!, x[10]!, x[15]!, x[6]!, x[7]!, x[8]!, x[9]!]);
  return new Uint8Array(out.buffer);
}

/**
 * A streaming XSalsa20 cipher: successive `update` calls continue one keystream, so any split of
 * a byte stream into chunks gives the same bytes as one call. `firstBlock` starts the 64-bit block
 * counter elsewhere than 0 (tests use it to cross the 2^32 boundary).
 */
export function xsalsa20(key: Uint8Array, nonce: Uint8Array, firstBlock = 0): StreamCipher {
  if (key.length !== KEY_BYTES) throw new RangeError(`xsalsa20 key must be ${KEY_BYTES} bytes`);
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`xsalsa20 nonce must be ${NONCE_BYTES} bytes`);
  if (!Number.isSafeInteger(firstBlock) || firstBlock < 0) throw new RangeError('first block must be a safe integer');
  const state = salsaInput(hsalsa20(key, nonce.subarray(0, 16)), nonce.subarray(16), firstBlock);
  const keystream = new Int32Array(16);
  const keystreamBytes = new Uint8Array(keystream.buffer);
  let used = BLOCK_BYTES; // keystream bytes of the current block already spent

  const nextBlock = (out: Int32Array, at: number) => {
    salsaCore(state, out, at, true);
    state[8] = (state[8]! + 1) | 0;
    if (state[8] === 0) state[9] = (state[9]! + 1) | 0;
  };

  return {
    update(input) {
      const length = input.length;
      const head = Math.min(length, BLOCK_BYTES - used);
      const blocks = Math.floor((length - head) / BLOCK_BYTES);
      // Place the output so that the full blocks after the head start on a 4-byte boundary.
      const shift = blocks > 0 ? (4 - (head & 3)) & 3 : 0;
      const output =
        shift > 0 ? new Uint8Array(new ArrayBuffer(length + shift), shift, length) : new Uint8Array(length);
      output.set(input);
      for (let i = 0; i < head; i++) output[i]! ^= keystreamBytes[used + i]!;
      used += head;
      if (blocks > 0) {
        const words = new Int32Array(output.buffer, shift + head, blocks * 16);
        for (let b = 0; b < blocks; b++) nextBlock(words, b * 16);
      }
      const tail = head + blocks * BLOCK_BYTES;
      if (tail < length) {
        keystream.fill(0);
        nextBlock(keystream, 0);
        for (let i = tail; i < length; i++) output[i]! ^= keystreamBytes[i - tail]!;
        used = length - tail;
      }
      return output;
    },
  };
}
