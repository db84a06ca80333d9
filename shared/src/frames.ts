import { z } from 'zod';
import { assertDataDepth } from './data-depth.ts';
import { isSourceName, isWellFormedText, SOURCE_NAME_RULE, WELL_FORMED_RULE } from './names.ts';
import { BadFrameError, ERROR_CODES } from './errors.ts';
import { isCursor } from './ids.ts';
import { assertPattern, assertTopic } from './topics.ts';

/**
 * Protocol v1 frames and bodies: these schemas are the one source of truth for both the types
 * and the runtime checks. Unknown fields are ignored (fields may be added to the protocol).
 * Structure errors are `bad_frame`; names that break the grammar are `bad_topic`.
 */
export const cursorSchema = z.string().refine(isCursor, 'not a cursor');
const ref = z.string().max(128).optional();
const source = z.string().refine(isSourceName, `not a source name (${SOURCE_NAME_RULE})`);
/**
 * An idempotency key: 1 to MAX_KEY_LENGTH characters of well-formed Unicode, in a body, a frame or
 * the header. It is hashed as UTF-8 into the message id (contentId), which a lone surrogate has no
 * form in: refused, not repaired, so two different keys never share an id.
 */
export const MAX_KEY_LENGTH = 256;
const key = z.string().min(1).max(MAX_KEY_LENGTH).refine(isWellFormedText, WELL_FORMED_RULE);
// The tighter bound (MAX_TS_AHEAD_MS past the accepting node's clock) is checked on the envelope.
const ts = z.number().int().nonnegative().max(8.64e15);

export const publishItemSchema = z.object({
  // Optional here only so that a missing `data` is worded by assertData ("required (use null for
  // no data)"): zod 4 words a missing unknown key "expected nonoptional".
  data: z.unknown().optional(),
  source: source.optional(),
  ts: ts.optional(),
  key: key.optional(),
});

export const clientFrameSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('sub'), topic: z.string(), after: cursorSchema.optional(), ref }),
  z.object({ op: z.literal('unsub'), topic: z.string(), ref }),
  publishItemSchema.extend({ op: z.literal('pub'), topic: z.string(), ref }),
  z.object({ op: z.literal('ping'), ref }),
]);

export type ClientFrame = z.infer<typeof clientFrameSchema>;
export type PublishItem = z.infer<typeof publishItemSchema>;
export type SubFrame = Extract<ClientFrame, { op: 'sub' }>;
export type PubFrame = Extract<ClientFrame, { op: 'pub' }>;

export const envelopeSchema = z.object({
  id: z.string(),
  topic: z.string(),
  cursor: z.string(),
  source: z.string(),
  ts: z.number(),
  data: z.unknown(),
});
export type Envelope = z.infer<typeof envelopeSchema>;

export const serverFrameSchema = z.discriminatedUnion('op', [
  envelopeSchema.extend({ op: z.literal('msg') }),
  z.object({ op: z.literal('subscribed'), topic: z.string(), cursor: z.string(), ref }),
  z.object({ op: z.literal('ack'), id: z.string(), cursor: z.string(), ref }),
  z.object({ op: z.literal('err'), code: z.enum(ERROR_CODES), message: z.string(), ref }),
  z.object({ op: z.literal('pong'), ref }),
]);
export type ServerFrame = z.infer<typeof serverFrameSchema>;

/** The one way a server frame becomes text (a `msg` may also be spliced from a stored envelope's JSON). */
export const encodeServerFrame = (frame: ServerFrame): string => JSON.stringify(frame);

export const MAX_PUBLISH_BATCH = 1000;
const publishArraySchema = z.array(publishItemSchema).min(1).max(MAX_PUBLISH_BATCH);
/** The shape of an HTTP publish body; parsePublishBody checks it branch by branch (publishItemsBySchema). */
export const publishBodySchema = z.union([publishItemSchema, publishArraySchema]);

export const historyQuerySchema = z.object({
  after: cursorSchema.optional(),
  // A blank value (`?limit=`) is refused, as a blank `after` is: coerced, it was 0, an empty page
  // with `next` null, as if the topic held nothing.
  limit: z
    .preprocess((v) => (typeof v === 'string' && v.trim() === '' ? Number.NaN : v), z.coerce.number())
    .pipe(z.number().int().min(0).max(1000))
    .default(100),
});

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid frame';
  // An array index reads as `[1]`: `[1].ts` is the `ts` of a body's second message.
  const at = issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i > 0 ? '.' : ''}${String(p)}`));
  const path = at.length > 0 ? `${at.join('')}: ` : '';
  return `${path}${numberRule(issue) ?? issue.message}`;
}

/**
 * A number's bound in plain words (`limit: at most 1000`), for zod's own wording only ("Too big:
 * expected number to be <=1000"); a message a schema gave its rule is kept.
 */
function numberRule(issue: z.core.$ZodIssue): string | undefined {
  if (!/^(Too big|Too small|Invalid input):/.test(issue.message)) return undefined;
  if (issue.code === 'too_big' && issue.origin === 'number') {
    return `${issue.inclusive === false ? 'below' : 'at most'} ${String(issue.maximum)}`;
  }
  if (issue.code === 'too_small' && issue.origin === 'number') {
    return `${issue.inclusive === false ? 'above' : 'at least'} ${String(issue.minimum)}`;
  }
  if (issue.code === 'invalid_type' && issue.expected === 'int') return 'not an integer';
  const received = (issue as { received?: unknown }).received;
  if (issue.code === 'invalid_type' && issue.expected === 'number' && received === 'NaN') return 'not a number';
  return undefined;
}

/** Validate a parsed value against a schema, throwing `bad_frame` with the first problem. */
export function parseWith<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new BadFrameError(describe(result.error));
  return result.data;
}

function assertData(item: { data?: unknown }): void {
  if (item.data === undefined) throw new BadFrameError('data: required (use null for no data)');
  assertDataDepth(item.data);
}

const optional = <T>(value: T | undefined, ok: (v: T) => boolean) => value === undefined || ok(value);

// The common case, well-formed publishes, is checked by hand with exactly the schemas' rules (zod
// cost a publish more than the rest of its parse). Undefined when any field is off: the schema
// then finds the problem and words the error, so errors keep one spelling. Nesting and the topic
// are checked after the shape, as on the schema path; frames.test.ts holds the two paths equal.

function readItem(value: unknown): PublishItem | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const { data, source, ts, key } = value as Record<string, unknown>;
  if (data === undefined) return undefined;
  if (!optional(source, (s) => typeof s === 'string' && isSourceName(s))) return undefined;
  if (!optional(ts, (t) => typeof t === 'number' && Number.isSafeInteger(t) && t >= 0 && t <= 8.64e15)) {
    return undefined;
  }
  if (
    !optional(key, (k) => typeof k === 'string' && k.length >= 1 && k.length <= MAX_KEY_LENGTH && isWellFormedText(k))
  ) {
    return undefined;
  }
  const item: PublishItem = { data };
  if (source !== undefined) item.source = source as string;
  if (ts !== undefined) item.ts = ts as number;
  if (key !== undefined) item.key = key as string;
  return item;
}

function readPub(value: Record<string, unknown>): PubFrame | undefined {
  const { topic, ref } = value;
  if (typeof topic !== 'string' || !optional(ref, (r) => typeof r === 'string' && r.length <= 128)) return undefined;
  const item = readItem(value);
  if (!item) return undefined;
  assertDataDepth(item.data);
  assertTopic(topic);
  const frame: PubFrame = { op: 'pub', topic, ...item };
  if (ref !== undefined) frame.ref = ref as string;
  return frame;
}

function readItems(value: unknown): PublishItem[] | undefined {
  if (!Array.isArray(value)) {
    const item = readItem(value);
    return item && [item];
  }
  if (value.length < 1 || value.length > MAX_PUBLISH_BATCH) return undefined;
  const items: PublishItem[] = [];
  for (const entry of value) {
    const item = readItem(entry);
    if (!item) return undefined;
    items.push(item);
  }
  return items;
}

/** Parse one WebSocket text frame from a client. Throws AnodeError (`bad_frame`, `bad_topic`). */
export function parseClientFrame(text: string): ClientFrame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new BadFrameError('frame is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadFrameError('frame must be a JSON object');
  }
  const fast = (value as { op?: unknown }).op === 'pub' ? readPub(value as Record<string, unknown>) : undefined;
  if (fast) return fast;
  const frame = parseWith(clientFrameSchema, value);
  if (frame.op === 'pub') {
    assertData(frame);
    assertTopic(frame.topic);
  } else if (frame.op === 'sub' || frame.op === 'unsub') {
    assertPattern(frame.topic);
  }
  return frame;
}

/**
 * The schema path of parsePublishBody. The branch is picked by the body's shape: checked against
 * the union, a body that fit neither branch got zod's "Invalid input", naming no field.
 */
export function publishItemsBySchema(value: unknown): PublishItem[] {
  if (!Array.isArray(value)) return [parseWith(publishItemSchema, value)];
  if (value.length < 1 || value.length > MAX_PUBLISH_BATCH) {
    throw new BadFrameError(`an array body holds 1 to ${MAX_PUBLISH_BATCH} messages; this one has ${value.length}`);
  }
  return parseWith(publishArraySchema, value);
}

/** assertData for each item, an item of an array named by its index as the schema's errors do. */
function assertItemsData(items: PublishItem[], batch: boolean): void {
  items.forEach((item, index) => {
    try {
      assertData(item);
    } catch (error) {
      if (batch && error instanceof BadFrameError) throw new BadFrameError(`[${index}].${error.message}`);
      throw error;
    }
  });
}

/** Parse an HTTP publish body (one item or an array). */
export function parsePublishBody(value: unknown, idempotencyKey?: string): PublishItem[] {
  const items = readItems(value) ?? publishItemsBySchema(value);
  assertItemsData(items, Array.isArray(value));
  // The `Idempotency-Key` header stands for `key` of a single-message body (PROTOCOL.md), and an
  // array is a batch even of one: refused, not read as the key of its one item.
  if (idempotencyKey !== undefined) {
    if (Array.isArray(value) || items.length !== 1) {
      throw new BadFrameError('Idempotency-Key header needs a single message body (an object, not an array)');
    }
    if (idempotencyKey.length < 1 || idempotencyKey.length > MAX_KEY_LENGTH) {
      throw new BadFrameError(`Idempotency-Key: 1 to ${MAX_KEY_LENGTH} characters`);
    }
    // Node and workerd read header values as Latin-1, which has no surrogates; checked all the same,
    // as every other way a key comes in.
    if (!isWellFormedText(idempotencyKey)) throw new BadFrameError(`Idempotency-Key: ${WELL_FORMED_RULE}`);
    if (items[0] && items[0].key === undefined) items[0].key = idempotencyKey;
  }
  return items;
}

/** The `ref` of a frame, recovered as far as possible even from an invalid one (for err frames). */
export function refOf(text: string): string | undefined {
  try {
    const value = JSON.parse(text) as { ref?: unknown };
    return typeof value?.ref === 'string' && value.ref.length <= 128 ? value.ref : undefined;
  } catch {
    return undefined;
  }
}
