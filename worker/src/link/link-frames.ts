import { envelopeSchema, ERROR_CODES } from '@anode/shared';
import { z } from 'zod';

/**
 * The edge link protocol, Durable Object side. JSON text frames on one WebSocket per topic that
 * a relay dials into the topic's Durable Object (relay-node/src/edge/link-frames.ts is the
 * relay's half; both must agree).
 *
 * edge → relay: `sub {after?, ref?}` (subscribe this topic; catch up after a cursor),
 *   `pub {ref, messages: envelope[]}` (messages accepted at the edge, ids and cursors set),
 *   `history {ref, after?, limit}`, `latest {ref}`.
 * relay → edge: `hello {node}`, `msg {…envelope}`, `subscribed {topic, cursor, ref?}`,
 *   `ack {ref, ids, refused?}` (stored durably by the relay; `refused`: never storable there), `history {ref, messages, next}`,
 *   `latest {ref, sources}`, `err {code, message, ref?}`.
 */
const ref = z.string().max(128);

export const relayFrameSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('hello'), node: z.string() }),
  envelopeSchema.extend({ op: z.literal('msg') }),
  z.object({ op: z.literal('subscribed'), topic: z.string(), cursor: z.string(), ref: ref.optional() }),
  z.object({
    op: z.literal('ack'),
    ref,
    ids: z.array(z.string()),
    // Messages the relay's message contract refused: never storable there, so not sent again.
    refused: z.array(z.object({ id: z.string().nullable(), code: z.string(), message: z.string() })).optional(),
  }),
  z.object({ op: z.literal('history'), ref, messages: z.array(envelopeSchema), next: z.string().nullable() }),
  z.object({ op: z.literal('latest'), ref, sources: z.record(z.string(), envelopeSchema) }),
  z.object({ op: z.literal('err'), code: z.enum(ERROR_CODES), message: z.string(), ref: ref.optional() }),
]);

export type RelayFrame = z.infer<typeof relayFrameSchema>;

export function parseRelayFrame(text: string): RelayFrame | undefined {
  try {
    const result = relayFrameSchema.safeParse(JSON.parse(text));
    return result.success ? result.data : undefined;
  } catch {
    return undefined;
  }
}
