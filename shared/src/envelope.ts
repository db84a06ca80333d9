import { assertDataDepth } from './data-depth.ts';
import { type AnodeError, BadFrameError, TooLargeError } from './errors.ts';
import type { Envelope } from './frames.ts';
import { cursorTime, isCursor, MAX_CLOCK_SKEW_MS } from './ids.ts';
import { isMessageId, isSourceName } from './names.ts';
import { isTopic } from './topics.ts';

/**
 * The message contract (PROTOCOL.md "Envelope", "Limits"): the one check every entry runs on a
 * message before it is stored or forwarded - a publish (HTTP, WebSocket, the edge), a pulled
 * source's item, a gossiped or caught-up envelope, an edge link's `pub`. One spelling, so no
 * entry stores what another refuses.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
/** How far `ts` may be ahead of the accepting node's clock. */
export const MAX_TS_AHEAD_MS = MAX_CLOCK_SKEW_MS;
/** The same bound for envelopes accepted by another node (mesh, edge): its clock may run ahead of ours. */
export const REMOTE_TS_AHEAD_MS = 2 * MAX_TS_AHEAD_MS;
/**
 * Bytes an envelope adds around its serialized `data` at most: id (128), topic (519), cursor
 * (49), source (128), ts and the JSON punctuation, rounded up. Inner limits (gossip, catch-up and
 * link frames, WebSocket frames, HTTP bodies) must be at least max_message_bytes plus this.
 */
export const ENVELOPE_OVERHEAD_BYTES = 4 * 1024;
/**
 * The serialized `data` one client history page (HTTP, an edge link) or one resume read holds at
 * most, besides the one message a page always holds: a page of `limit` messages is also cut here,
 * so one reader cannot make a relay load `limit` × max_message_bytes at once.
 */
export const HISTORY_PAGE_BYTES = 4 * 1024 * 1024;

/** UTF-8 length of a string, without encoding it. */
const NON_ASCII = /[\u0080-\uffff]/;

export function utf8Length(text: string): number {
  if (!NON_ASCII.test(text)) return text.length; // the common case, found natively
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) bytes += code >= 0x800 && (code < 0xd800 || code > 0xdfff) ? 2 : 1;
  }
  // A valid surrogate pair counted 1 + 1 extra above: 4 bytes in all, as UTF-8 has it.
  return bytes;
}

export interface MessageLimits {
  /** The largest serialized `data` accepted, in bytes (config `max_message_bytes`). */
  maxMessageBytes: number;
  /** The accepting node's clock (default: now). */
  now?: number;
  /** How far `ts` may run ahead of `now` (default MAX_TS_AHEAD_MS; a mesh allows for drift). */
  tsAheadMs?: number;
}

/** What a message's `data` weighs in every byte bound: its JSON, in UTF-8 bytes. */
export const dataBytes = (envelope: Pick<Envelope, 'data'>): number => utf8Length(JSON.stringify(envelope.data) ?? '');

/**
 * Throws `too_large` when `data`, serialized as UTF-8 JSON, exceeds the limit. Always measured
 * on the value: the bytes it arrived in are no bound (`1e20` serializes to 21 characters).
 */
export function assertDataSize(data: unknown, limits: Pick<MessageLimits, 'maxMessageBytes'>): void {
  const max = limits.maxMessageBytes;
  // Data parsed from JSON always has a JSON form; a source's plugin or middleware may hand over
  // a function, a symbol, a BigInt or a cycle. Counted as 0 bytes, such data reached the store,
  // which refused the whole batch (other clients' publishes in it too) as `unavailable`.
  let text: string | undefined;
  try {
    text = JSON.stringify(data) as string | undefined;
  } catch (error) {
    throw new BadFrameError(`data: not serializable as JSON (${(error as Error).message})`);
  }
  if (text === undefined) throw new BadFrameError('data: has no JSON form (a function, a symbol or undefined)');
  if (text.length > max || (text.length * 3 > max && utf8Length(text) > max)) {
    throw new TooLargeError(`data: ${utf8Length(text)} bytes serialized; at most ${max} (max_message_bytes)`);
  }
}

/** Checks a timestamp: a finite integer in milliseconds, not before 1970, not ahead of the clock. */
export function assertTs(ts: unknown, limits: Pick<MessageLimits, 'now' | 'tsAheadMs'>): asserts ts is number {
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) {
    throw new BadFrameError('ts: an integer count of milliseconds since the epoch');
  }
  const ahead = limits.tsAheadMs ?? MAX_TS_AHEAD_MS;
  if (ts > (limits.now ?? Date.now()) + ahead) throw new BadFrameError(`ts: more than ${ahead} ms in the future`);
}

/**
 * Checks a whole envelope and returns it with exactly the six fields (extra fields dropped).
 * Throws `bad_frame` for a broken field, `too_large` for oversized data.
 */
export function checkEnvelope(value: unknown, limits: MessageLimits): Envelope {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadFrameError('envelope: not a JSON object');
  }
  const { id, topic, cursor, source, ts, data } = value as Record<string, unknown>;
  if (!isMessageId(id)) throw new BadFrameError('id: 1 to 128 of [A-Za-z0-9_-]');
  if (!isTopic(topic)) throw new BadFrameError('topic: not a topic');
  if (!isCursor(cursor) || cursor === '0') throw new BadFrameError('cursor: not a message cursor');
  const now = limits.now ?? Date.now();
  if (cursorTime(cursor) > now + MAX_CLOCK_SKEW_MS) throw new BadFrameError('cursor: too far in the future');
  if (!isSourceName(source)) throw new BadFrameError('source: not a source name');
  assertTs(ts, { ...limits, now });
  if (data === undefined) throw new BadFrameError('data: required (use null for no data)');
  assertDataDepth(data);
  assertDataSize(data, limits);
  return { id, topic, cursor, source, ts, data };
}

/**
 * The rest of checkEnvelope for a client's publish: its frame or body passed parseClientFrame or
 * parsePublishBody (shape, topic, source name, key, ts type, nesting) and the accepting node
 * minted its id and cursor, so only the `ts` bound and the serialized size are left. Checking the
 * rest again would validate every publish twice.
 */
export function checkPublished(envelope: Envelope, limits: MessageLimits): Envelope {
  assertTs(envelope.ts, limits);
  assertDataSize(envelope.data, limits);
  return envelope;
}

export type CheckedEnvelope = { ok: true; envelope: Envelope } | { ok: false; error: AnodeError; reason: string };

/** checkEnvelope without throwing (for paths that count and skip bad envelopes). */
export function validateEnvelope(value: unknown, limits: MessageLimits): CheckedEnvelope {
  try {
    return { ok: true, envelope: checkEnvelope(value, limits) };
  } catch (error) {
    const anode = error as AnodeError;
    return { ok: false, error: anode, reason: anode.message };
  }
}

/**
 * Whether `candidate` replaces `current` as the `latest` of its source (PROTOCOL.md "latest"):
 * the later `ts` wins, then the greater id. Every store and merge of `latest` applies this rule
 * (the SQL stores spell it in their statements).
 */
export function newerForLatest(candidate: Envelope, current: Envelope | undefined): boolean {
  return !current || candidate.ts > current.ts || (candidate.ts === current.ts && candidate.id > current.id);
}
