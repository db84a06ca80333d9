import { z } from 'zod';
import { positiveInt } from '../config-fields.ts';

/**
 * Config keys of the edge link. Edge links are off unless `edge_link_secret` is set (the same
 * value as the Worker's LINK_SECRET secret). A Durable Object asks to be dialed at the origin it
 * is served from; `edge_url` pins that origin, so a relay only ever dials its own Worker.
 */
export const edgeConfigShape = {
  edge_link_secret: z
    .string()
    .min(16, 'must be at least 16 characters')
    .optional()
    .describe('shared secret of edge links (the Worker secret LINK_SECRET); unset: no edge links'),
  edge_url: z
    .url({ protocol: /^https?$/ })
    .optional()
    .describe('the edge Worker origin to dial (default: the origin each dial request names)'),
  edge_ping_ms: positiveInt.default(30_000).describe('how often edge links are pinged (a silent link is dropped)'),
};
