import { validateEnvelope as checkEnvelope, type Envelope, envelopeText, REMOTE_TS_AHEAD_MS } from '@anode/shared';

/**
 * The wire encoding of gossip and the rules a receiver checks before it accepts, stores and
 * forwards it (docs/mesh.md, "Joining the mesh from another implementation").
 *
 * Gossip format 2 (topics `/anode/2/shard/<count>/<shard>`): a gossip message's data is one
 * batch, UTF-8 JSON `{"v":2,"node":"<node id>","envelopes":[envelope…]}`, every envelope being
 * `{"id","topic","cursor","source","ts","data"}`. A batch holds only envelopes its publisher
 * accepted (from its clients, its sources or its edge link), in the order it accepted them, all
 * in the shard of the gossip topic; `node` is the publisher's cursor node id. Its gossipsub
 * message id is `<publisher peer id>/<seqno as 16 hex digits>` (the batch id): gossipsub's
 * strict signing binds both to the publisher's key, so no peer can make a batch of its own take
 * another's id, and forwarders pass the publisher's signed bytes on unchanged. Receivers dedup
 * the envelopes by envelope id (the store and the hub), as they always did.
 */
export const GOSSIP_VERSION = 2;
/** A batch may exceed the largest envelope by this much (its own fields, JSON punctuation). */
export const BATCH_OVERHEAD_BYTES = 64 * 1024;
/** Publishers close a batch once it passes this size (a single larger envelope goes alone). */
export const BATCH_TARGET_BYTES = 64 * 1024;
/** At most this many envelopes in one batch. */
export const MAX_BATCH_ENVELOPES = 4096;

const NODE_ID = /^[a-z0-9]{1,32}$/;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** One envelope's JSON, exactly the six fields (extra ones are dropped); its data as its check serialized it. */
export const envelopeJson = (envelope: Envelope): string => envelopeText(envelope);

/** A batch from envelope JSONs made by `envelopeJson`. */
export function encodeBatch(node: string, envelopeJsons: readonly string[]): Uint8Array {
  return encoder.encode(
    `{"v":${GOSSIP_VERSION},"node":${JSON.stringify(node)},"envelopes":[${envelopeJsons.join(',')}]}`,
  );
}

/** The size a batch of envelope JSONs of `bytes` UTF-8 bytes in total (n of them) will have. */
export const batchBytes = (node: string, bytes: number, n: number) => 32 + node.length + bytes + Math.max(0, n - 1);

export interface Batch {
  node: string;
  envelopes: Envelope[];
}

export type Decoded = { ok: true; envelope: Envelope } | { ok: false; reason: string };
export type DecodedBatch = { ok: true; batch: Batch } | { ok: false; reason: string };

export interface DecodeRules {
  /** The largest batch accepted, in bytes. */
  maxBytes: number;
  /** The shard every envelope's topic must map to (the gossip topic it came on). */
  shardOf(topic: string): number;
  shard: number;
  now?: number;
}

const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

/**
 * Decode and validate one batch. One invalid envelope makes the whole batch invalid (its
 * publisher sent it, signed, so its publisher is to blame). Extra fields are dropped.
 */
export function decodeBatch(bytes: Uint8Array, rules: DecodeRules): DecodedBatch {
  if (bytes.byteLength > rules.maxBytes) return fail(`larger than ${rules.maxBytes} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    return fail('not UTF-8 JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('not a JSON object');
  const { v, node, envelopes } = value as Record<string, unknown>;
  if (v !== GOSSIP_VERSION) return fail(`v: not ${GOSSIP_VERSION}`);
  if (typeof node !== 'string' || !NODE_ID.test(node)) return fail('node: not a node id');
  if (!Array.isArray(envelopes) || envelopes.length < 1 || envelopes.length > MAX_BATCH_ENVELOPES) {
    return fail(`envelopes: 1 to ${MAX_BATCH_ENVELOPES}`);
  }
  const now = rules.now ?? Date.now();
  const out: Envelope[] = [];
  for (const [index, item] of envelopes.entries()) {
    const decoded = validateEnvelope(item, now, rules.maxBytes);
    if (!decoded.ok) return fail(`envelopes[${index}]: ${decoded.reason}`);
    if (rules.shardOf(decoded.envelope.topic) !== rules.shard) return fail(`envelopes[${index}]: not in this shard`);
    out.push(decoded.envelope);
  }
  return { ok: true, batch: { node, envelopes: out } };
}

/** The node id a cursor was minted by (the part after `-`). */
export const cursorNode = (cursor: string) => cursor.slice(cursor.indexOf('-') + 1);

/**
 * The message contract (shared checkEnvelope) for gossip: `maxBytes` bounds the data as well,
 * the node's exact max_message_bytes being checked again where the hub takes it (hub.ingest).
 */
export function validateEnvelope(value: unknown, now = Date.now(), maxBytes = Number.MAX_SAFE_INTEGER): Decoded {
  const checked = checkEnvelope(value, { maxMessageBytes: maxBytes, now, tsAheadMs: REMOTE_TS_AHEAD_MS });
  return checked.ok ? checked : fail(checked.reason);
}

/** A batch's gossipsub message id: `<publisher peer id>/<seqno, 16 lowercase hex digits>`. */
export const batchId = (from: string, seqno: bigint) => `${from}/${seqno.toString(16).padStart(16, '0')}`;
