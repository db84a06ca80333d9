import { createHash } from 'node:crypto';
import { assertDataDepth, cursorTime, type Envelope, isCursor, isTopic, MAX_CLOCK_SKEW_MS } from '@anode/shared';

/**
 * The wire encoding of a gossiped message and the rules a receiver checks before it accepts,
 * stores and forwards one (the README's "Wire format" and "Validation"). A gossip message's data
 * is one envelope as UTF-8 JSON, `{"id","topic","cursor","source","ts","data"}`; its gossipsub
 * message id is the envelope id, so the mesh and the store dedup alike.
 */
const ID = /^[A-Za-z0-9_-]{1,128}$/;
const MAX_SOURCE_LENGTH = 256;
const MAX_TS = 8.64e15;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function encodeEnvelope(envelope: Envelope): Uint8Array {
  const { id, topic, cursor, source, ts, data } = envelope;
  return encoder.encode(JSON.stringify({ id, topic, cursor, source, ts, data }));
}

export type Decoded = { ok: true; envelope: Envelope } | { ok: false; reason: string };

export interface DecodeRules {
  maxBytes: number;
  /** The shard this message's topic must map to (the gossip topic it came on). */
  shardOf(topic: string): number;
  shard: number;
  now?: number;
}

const fail = (reason: string): Decoded => ({ ok: false, reason });

/** Decode and validate one gossip message's data. Extra envelope fields are dropped. */
export function decodeEnvelope(bytes: Uint8Array, rules: DecodeRules): Decoded {
  if (bytes.byteLength > rules.maxBytes) return fail(`larger than ${rules.maxBytes} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    return fail('not UTF-8 JSON');
  }
  const decoded = validateEnvelope(value, rules.now);
  if (decoded.ok && rules.shardOf(decoded.envelope.topic) !== rules.shard) return fail('topic: not in this shard');
  return decoded;
}

/** Check that a parsed value is a well-formed envelope (gossip and catch-up alike). */
export function validateEnvelope(value: unknown, now = Date.now()): Decoded {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('not a JSON object');
  const { id, topic, cursor, source, ts, data } = value as Record<string, unknown>;
  if (typeof id !== 'string' || !ID.test(id)) return fail('id: 1 to 128 of [A-Za-z0-9_-]');
  if (!isTopic(topic)) return fail('topic: not a topic');
  if (!isCursor(cursor) || cursor === '0') return fail('cursor: not a message cursor');
  if (cursorTime(cursor) > now + MAX_CLOCK_SKEW_MS) return fail('cursor: too far in the future');
  if (typeof source !== 'string' || source.length < 1 || source.length > MAX_SOURCE_LENGTH) {
    return fail('source: 1 to 256 characters');
  }
  if (typeof ts !== 'number' || !Number.isInteger(ts) || ts < 0 || ts > MAX_TS) return fail('ts: not a timestamp');
  if (data === undefined) return fail('data: required');
  try {
    assertDataDepth(data);
  } catch (error) {
    return fail((error as Error).message);
  }
  return { ok: true, envelope: { id, topic, cursor, source, ts, data } };
}

/**
 * The gossipsub message id of a shard message: the envelope id when the message is valid,
 * otherwise a hash of its bytes, so that an invalid message can never occupy (in gossipsub's
 * seen-cache) the id of a valid one.
 */
export function gossipMessageId(decoded: Decoded, bytes: Uint8Array): string {
  return decoded.ok ? decoded.envelope.id : `!${createHash('sha256').update(bytes).digest('base64url')}`;
}
