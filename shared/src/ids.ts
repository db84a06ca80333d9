import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { isWellFormedText } from './names.ts';

/**
 * Cursors and message ids.
 *
 * A cursor is `<12 hex: physical ms><4 hex: logical counter>-<node id>`: it sorts as a string by
 * time, then counter, then node, so cursors minted on different nodes interleave by time. The
 * hybrid logical clock keeps a node's cursors strictly increasing even when the wall clock steps
 * back. `CURSOR_ZERO` sorts before every cursor ("from the beginning").
 */
export const CURSOR_ZERO = '0';
const CURSOR = /^(?:0|[0-9a-f]{16}-[a-z0-9]{1,32})$/;
const NODE_ID = /^[a-z0-9]{1,32}$/;
const MAX_COUNTER = 0xffff;
export const MAX_CLOCK_SKEW_MS = 60_000;
/**
 * How far ahead of a node's wall clock a cursor a client resumes or pages from may move the
 * node's clock (followResumeCursor). Another node's cursor (its clock ahead, or a live position it
 * handed out and never gossiped) comes back as the resume's `subscribed` cursor, and the client
 * resumes from it after its next reconnect: minted below it, what this node accepted in between
 * was skipped. Far less than MAX_CLOCK_SKEW_MS: any reader may send one, and a clock (and its
 * lease) dragged a minute ahead stamps cursors other nodes refuse as from the future.
 */
export const RESUME_AHEAD_MS = 5_000;

export function isCursor(value: unknown): value is string {
  return typeof value === 'string' && CURSOR.test(value);
}

export function isNodeId(value: unknown): value is string {
  return typeof value === 'string' && NODE_ID.test(value);
}

export function compareCursors(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The physical milliseconds a cursor was minted at (0 for CURSOR_ZERO). */
export function cursorTime(cursor: string): number {
  return cursor === CURSOR_ZERO ? 0 : Number.parseInt(cursor.slice(0, 12), 16);
}

/**
 * The smallest cursor minted at `ms` on any node: every cursor minted at or after `ms` sorts
 * after it (a resume point "from about then"). The one spelling of the cursor's time prefix
 * outside the clock.
 */
export function cursorFloor(ms: number): string {
  return `${Math.max(0, Math.floor(ms)).toString(16).padStart(12, '0')}0000-0`;
}

export interface HybridClock {
  readonly nodeId: string;
  /** A new cursor, strictly greater than every cursor this clock minted or observed before. */
  next(): string;
  /**
   * Move the clock past a cursor seen from elsewhere (mesh gossip), so ours sort after it.
   * Cursors more than `MAX_CLOCK_SKEW_MS` ahead of our wall clock are ignored: one peer with a
   * broken clock must not drag every node's cursors into the future. Returns whether it moved.
   */
  observe(cursor: string): boolean;
  /** The time (ms since the epoch) of the newest cursor minted or observed. */
  readonly time: number;
  /**
   * Start after `ms`: every later cursor sorts after any minted before that time. For a floor this
   * node kept itself (its clock lease across restarts), so no skew limit applies.
   */
  advanceTo(ms: number): void;
}

export function createHybridClock(nodeId: string, now: () => number = Date.now): HybridClock {
  if (!isNodeId(nodeId)) throw new TypeError(`node id must match ${NODE_ID}: ${nodeId}`);
  let last = 0;
  let counter = 0;
  const format = () => `${last.toString(16).padStart(12, '0')}${counter.toString(16).padStart(4, '0')}-${nodeId}`;
  return {
    nodeId,
    next() {
      const physical = now();
      if (physical > last) {
        last = physical;
        counter = 0;
      } else if (++counter > MAX_COUNTER) {
        last += 1; // borrow a millisecond rather than repeat a cursor
        counter = 0;
      }
      return format();
    },
    observe(cursor) {
      if (cursor === CURSOR_ZERO || !isCursor(cursor)) return false;
      const time = cursorTime(cursor);
      if (time > now() + MAX_CLOCK_SKEW_MS) return false;
      const count = Number.parseInt(cursor.slice(12, 16), 16);
      if (time > last || (time === last && count > counter)) {
        last = time;
        counter = count;
        return true;
      }
      return false;
    },
    get time() {
      return last;
    },
    advanceTo(ms) {
      if (Number.isSafeInteger(ms) && ms > last) {
        last = ms;
        counter = 0;
      }
    },
  };
}

/**
 * Move `clock` past a cursor a client resumes or pages from (a `sub`'s or a history request's
 * `after`), when it is ahead of the clock by at most RESUME_AHEAD_MS past the wall clock: what this
 * node accepts next then sorts after it. Returns whether the clock moved.
 */
export function followResumeCursor(clock: HybridClock, cursor: string, now: number = Date.now()): boolean {
  return cursorTime(cursor) <= now + RESUME_AHEAD_MS && clock.observe(cursor);
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function base64url(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += BASE64URL[(value >> bits) & 63];
    }
  }
  if (bits > 0) out += BASE64URL[(value << (6 - bits)) & 63];
  return out;
}

/** Escapes `\` and newline so that joining fields with newlines is unambiguous. */
const field = (s: string) => s.replaceAll('\\', '\\\\').replaceAll('\n', '\\n');

/**
 * A content-addressed id: the same (topic, source, idempotency key) gives the same id on every
 * node, so the mesh, the store and clients dedup a republished message alike. Fields are escaped
 * so a newline in `source` or `key` cannot make two different triples hash alike; ids of fields
 * without `\` or newline are unchanged by that. Text that is not well-formed Unicode (a lone
 * surrogate) has no UTF-8 form: UTF-8 turned each into U+FFFD, so such keys collided. The parsers
 * refuse such client keys (`bad_frame`); any other caller (a source's item id from upstream JSON)
 * gets an id of the text's UTF-16 code units behind a 0xFF byte, which no UTF-8 holds, so it
 * cannot collide with the id of well-formed text, and one bad item does not fail its payload.
 */
export function contentId(topic: string, source: string, key: string): string {
  const text = `${field(topic)}\n${field(source)}\n${field(key)}`;
  const digest = sha256(isWellFormedText(text) ? utf8ToBytes(text) : utf16Marked(text));
  return `k${base64url(digest.subarray(0, 16))}`;
}

/** 0xFF, then each UTF-16 code unit big-endian: bytes no well-formed text's UTF-8 can be. */
function utf16Marked(text: string): Uint8Array {
  const bytes = new Uint8Array(1 + 2 * text.length);
  bytes[0] = 0xff;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    bytes[1 + 2 * i] = unit >> 8;
    bytes[2 + 2 * i] = unit & 0xff;
  }
  return bytes;
}

// Random bytes are drawn a page at a time: one getRandomValues call per 256 ids instead of one per
// id (it was 4% of the relay's publish path). Each byte is used once. Filled on first use, not at
// load: a Worker may not generate random values outside a request.
const RANDOM_POOL_BYTES = 4096;
const randomPool = new Uint8Array(RANDOM_POOL_BYTES);
let randomPoolAt = RANDOM_POOL_BYTES;

/** The next `n` unused bytes of the pool (a view: read it before the next draw). */
function randomBytes(n: number): Uint8Array {
  if (randomPoolAt + n > RANDOM_POOL_BYTES) {
    crypto.getRandomValues(randomPool);
    randomPoolAt = 0;
  }
  const bytes = randomPool.subarray(randomPoolAt, randomPoolAt + n);
  randomPoolAt += n;
  return bytes;
}

/**
 * A fresh random id, `r` and 22 base64url characters (connections, instances, refs). A message
 * published without an idempotency key gets `messageId()` instead.
 */
export function randomId(): string {
  return `r${base64url(randomBytes(16))}`;
}

const idBytes = new Uint8Array(16);

/**
 * The id of a message published without an idempotency key: `r` and 22 base64url characters, like
 * `randomId()`, but its first six bytes are the minting time in milliseconds and only the other
 * ten are random (80 bits: two nodes would mint ~10^12 ids in one millisecond before a collision
 * became likely). Ids minted close together share their first characters, so a store keyed by id
 * (the embedded store's messages table) puts a batch's rows on a few pages: with random ids every
 * row of a commit landed on a page of its own, and each such page was written to the log.
 */
export function messageId(now = Date.now()): string {
  const ms = Math.max(0, Math.floor(now));
  const high = Math.floor(ms / 2 ** 32);
  idBytes[0] = (high >>> 8) & 255;
  idBytes[1] = high & 255;
  idBytes[2] = (ms >>> 24) & 255;
  idBytes[3] = (ms >>> 16) & 255;
  idBytes[4] = (ms >>> 8) & 255;
  idBytes[5] = ms & 255;
  idBytes.set(randomBytes(10), 6);
  return `r${base64url(idBytes)}`;
}

/** A short random node id for cursors (lowercase base32). */
export function randomNodeId(length = 10): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => alphabet[b & 31]).join('');
}
