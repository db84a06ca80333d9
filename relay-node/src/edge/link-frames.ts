import { cursorSchema } from '@anode/shared';
import { z } from 'zod';

/**
 * The edge link protocol, relay side (worker/src/link/link-frames.ts is the Durable Object's
 * half; both must agree). The Durable Object sends `sub`, `pub`, `history`, `latest`; the relay
 * answers with `hello`, `msg`, `subscribed`, `ack`, `history`, `latest` and `err` frames. An `ack`
 * of a `pub` lists the ids stored and, in `refused`, those the message contract refused (with a
 * code): they will never be stored, so the edge drops them instead of sending them again.
 */
const ref = z.string().max(128);

export const edgeFrameSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('sub'), after: cursorSchema.optional(), ref: ref.optional() }),
  // Each message is checked by the message contract (hub.checkRemote), one by one.
  z.object({ op: z.literal('pub'), ref, messages: z.array(z.unknown()).max(1000) }),
  z.object({
    op: z.literal('history'),
    ref,
    after: cursorSchema.optional(),
    limit: z.number().int().min(0).max(1000),
  }),
  z.object({ op: z.literal('latest'), ref }),
]);

export type EdgeFrame = z.infer<typeof edgeFrameSchema>;
