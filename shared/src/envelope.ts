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

/**
 * The JSON text of each checked envelope's `data`, so that the hot paths (subscribers' frames,
 * gossip, the store) serialize it once, in the check. Keyed by the envelope a check returned,
 * never by its data: a source's plugin may mutate its data object and publish it again, and that
 * new envelope must not be served the old text.
 */
const dataTexts = new WeakMap<object, string>();

/** An envelope's `data` as JSON: the text its check made, or serialized now (an unchecked envelope). */
export const dataJson = (envelope: Pick<Envelope, 'data'>): string =>
  dataTexts.get(envelope) ?? JSON.stringify(envelope.data) ?? '';

/** What a message's `data` weighs in every byte bound: its JSON, in UTF-8 bytes. */
export const dataBytes = (envelope: Pick<Envelope, 'data'>): number => utf8Length(dataJson(envelope));

/**
 * An envelope's JSON, exactly the six fields (extra ones are dropped), with `head` (fields and
 * their trailing comma) spliced in first: `'"op":"msg",'` makes its `msg` frame. The same bytes as
 * JSON.stringify of those fields in that order, with the data serialized at most once.
 */
export function envelopeText(envelope: Envelope, head = ''): string {
  const { id, topic, cursor, source, ts } = envelope;
  const data = dataJson(envelope);
  // JSON.stringify leaves out a field with no JSON form; only an unchecked envelope has one.
  const tail = data === '' ? '}' : `,"data":${data}}`;
  return `{${head}"id":${JSON.stringify(id)},"topic":${JSON.stringify(topic)},"cursor":${JSON.stringify(cursor)},"source":${JSON.stringify(source)},"ts":${JSON.stringify(ts)}${tail}`;
}

/**
 * Serializes `data` and throws `too_large` when its UTF-8 JSON exceeds the limit. Always measured
 * on the value: the bytes it arrived in are no bound (`1e20` serializes to 21 characters).
 */
function sizedDataText(data: unknown, limits: Pick<MessageLimits, 'maxMessageBytes'>): string {
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
  assertTextSize(text, limits.maxMessageBytes);
  return text;
}

function assertTextSize(text: string, max: number): void {
  if (text.length > max || (text.length * 3 > max && utf8Length(text) > max)) {
    throw new TooLargeError(`data: ${utf8Length(text)} bytes serialized; at most ${max} (max_message_bytes)`);
  }
}

/** Throws `too_large` (or `bad_frame`, for data with no JSON form) as the envelope checks do. */
export function assertDataSize(data: unknown, limits: Pick<MessageLimits, 'maxMessageBytes'>): void {
  sizedDataText(data, limits);
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
 * Throws `bad_frame` for a broken field, `too_large` for oversized data. An envelope a check
 * returned (gossip decoded it, then the hub takes it) comes back as it is, checked again only
 * against this call's clock and limit.
 */
export function checkEnvelope(value: unknown, limits: MessageLimits): Envelope {
  const now = limits.now ?? Date.now();
  const checkedText = dataTexts.get(value as object);
  if (checkedText !== undefined) {
    const envelope = value as Envelope;
    assertCursorTime(envelope.cursor, now);
    assertTs(envelope.ts, { ...limits, now });
    assertTextSize(checkedText, limits.maxMessageBytes);
    return envelope;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadFrameError('envelope: not a JSON object');
  }
  const { id, topic, cursor, source, ts, data } = value as Record<string, unknown>;
  if (!isMessageId(id)) throw new BadFrameError('id: 1 to 128 of [A-Za-z0-9_-]');
  if (!isTopic(topic)) throw new BadFrameError('topic: not a topic');
  if (!isCursor(cursor) || cursor === '0') throw new BadFrameError('cursor: not a message cursor');
  assertCursorTime(cursor, now);
  if (!isSourceName(source)) throw new BadFrameError('source: not a source name');
  assertTs(ts, { ...limits, now });
  if (data === undefined) throw new BadFrameError('data: required (use null for no data)');
  assertDataDepth(data);
  const text = sizedDataText(data, limits);
  const envelope = { id, topic, cursor, source, ts, data };
  dataTexts.set(envelope, text);
  return envelope;
}

function assertCursorTime(cursor: string, now: number): void {
  if (cursorTime(cursor) > now + MAX_CLOCK_SKEW_MS) throw new BadFrameError('cursor: too far in the future');
}

/**
 * The rest of checkEnvelope for a client's publish: its frame or body passed parseClientFrame or
 * parsePublishBody (shape, topic, source name, key, ts type, nesting) and the accepting node
 * minted its id and cursor, so only the `ts` bound and the serialized size are left. Checking the
 * rest again would validate every publish twice.
 */
export function checkPublished(envelope: Envelope, limits: MessageLimits): Envelope {
  assertTs(envelope.ts, limits);
  dataTexts.set(envelope, sizedDataText(envelope.data, limits));
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
