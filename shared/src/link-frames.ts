import { z } from 'zod';
import { ERROR_CODES } from './errors.ts';
import { cursorSchema, envelopeSchema } from './frames.ts';
import { LATEST_PAGE_SOURCES, latestQuerySchema } from './latest-page.ts';

/**
 * The edge link protocol, both directions in one module: JSON text frames on the one WebSocket
 * per topic that a relay dials into the topic's Durable Object (relay-node/src/edge/ is the
 * relay's end, worker/src/link/ the object's).
 *
 * edge → relay: `sub {after?, ref?}` (subscribe this topic; catch up after a cursor),
 *   `pub {ref, messages: envelope[]}` (messages accepted at the edge, ids and cursors set),
 *   `history {ref, after?, limit}`, `late {ref, after, from?}` (the late arrivals a resume from
 *   `after` replays on the relay, its own rule: cursor at or below `after`, arrived since shortly
 *   before `after` was minted; those above `from` when paging; a relay from before the frame
 *   answers `err bad_frame`), `latest {ref, after_source?, limit?}` (one page, as
 *   `GET …/latest?after_source=&limit=`; without them the first page of LATEST_PAGE_SOURCES).
 * relay → edge: `hello {node, reserved?, max_message_bytes?}` (`reserved: true`: this relay sends
 *   `reserved` frames, a relay from before them says nothing; `max_message_bytes`: the relay's
 *   limit, which the edge applies too when it is lower than its own), `reserved {sources}` (the source names no publish may
 *   use: the sources the mesh pulls; sent after `hello` and again whenever they change), `msg {…envelope}`,
 *   `subscribed {topic, cursor, ref?}`,
 *   `ack {ref, ids, refused?}` (stored durably by the relay; `refused`: never storable there, so
 *   not sent again), `history {ref, messages, next}`, `late {ref, messages, next}` (in cursor
 *   order, cut by bytes like a history page; `next`: the `from` of the next page, or null),
 *   `latest {ref, sources, next?}` (`next`: the page's last source, present only while more follow),
 *   `err {code, message, trimmed?, ref?}` (`trimmed`: a refused resume's trim mark).
 */
const ref = z.string().max(128);
/** Publishes per link `pub` frame, at most. */
export const MAX_LINK_BATCH = 1000;

export const edgeFrameSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('sub'), after: cursorSchema.optional(), ref: ref.optional() }),
  // Each message is checked by the relay's message contract, one by one.
  z.object({ op: z.literal('pub'), ref, messages: z.array(z.unknown()).max(MAX_LINK_BATCH) }),
  z.object({ op: z.literal('history'), ref, after: cursorSchema.optional(), limit: z.number().int().min(0).max(1000) }),
  z.object({ op: z.literal('late'), ref, after: cursorSchema, from: cursorSchema.optional() }),
  // Paging fields optional both ways: a relay from before them strips them (zod objects drop
  // unknown keys) and answers its first page, or every source; an edge from before them asks none.
  z.object({
    op: z.literal('latest'),
    ref,
    after_source: latestQuerySchema.shape.after_source,
    limit: z.number().int().min(1).max(LATEST_PAGE_SOURCES).optional(),
  }),
]);
export type EdgeFrame = z.infer<typeof edgeFrameSchema>;

export const relayFrameSchema = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('hello'),
    node: z.string(),
    reserved: z.boolean().optional(),
    max_message_bytes: z.number().int().positive().optional(),
  }),
  z.object({ op: z.literal('reserved'), sources: z.array(z.string()) }),
  envelopeSchema.extend({ op: z.literal('msg') }),
  z.object({ op: z.literal('subscribed'), topic: z.string(), cursor: z.string(), ref: ref.optional() }),
  z.object({
    op: z.literal('ack'),
    ref,
    ids: z.array(z.string()),
    refused: z.array(z.object({ id: z.string().nullable(), code: z.string(), message: z.string() })).optional(),
  }),
  z.object({ op: z.literal('history'), ref, messages: z.array(envelopeSchema), next: z.string().nullable() }),
  z.object({ op: z.literal('late'), ref, messages: z.array(envelopeSchema), next: z.string().nullable() }),
  z.object({
    op: z.literal('latest'),
    ref,
    sources: z.record(z.string(), envelopeSchema),
    next: z.string().optional(),
  }),
  z.object({
    op: z.literal('err'),
    code: z.enum(ERROR_CODES),
    message: z.string(),
    /** `cursor_expired` of a resume: the cursor through which the topic lost messages. */
    trimmed: z.string().optional(),
    ref: ref.optional(),
  }),
]);
export type RelayFrame = z.infer<typeof relayFrameSchema>;
export type RelayReply<Op extends RelayFrame['op']> = Extract<RelayFrame, { op: Op }>;

export const encodeEdgeFrame = (frame: EdgeFrame): string => JSON.stringify(frame);
export const encodeRelayFrame = (frame: RelayFrame): string => JSON.stringify(frame);

/**
 * A `pub` frame from envelopes already serialized (the object keeps each message's JSON): spliced,
 * not re-serialized. Equal to `encodeEdgeFrame({op:'pub', ref, messages})`.
 */
export function encodeLinkPub(ref: string, bodies: readonly string[]): string {
  return `{"op":"pub","ref":${JSON.stringify(ref)},"messages":[${bodies.join(',')}]}`;
}

/** A relay's frame, or undefined when it is not one (the object ignores what it cannot read). */
export function parseRelayFrame(text: string): RelayFrame | undefined {
  try {
    const result = relayFrameSchema.safeParse(JSON.parse(text));
    return result.success ? result.data : undefined;
  } catch {
    return undefined;
  }
}
