import { z } from 'zod';
import { list, nonNegativeInt, timerMs } from '../config-fields.ts';

/**
 * Config keys of the edge link. Edge links are off unless `edge_link_secret` is set (the same
 * value as the Worker's LINK_SECRET secret). The relay dials, and presents the secret to, only
 * the origins listed in `edge_url`: with none, every dial request is refused (a dial request
 * names its origin, and whoever can make one must not choose where the secret goes).
 */
export const edgeConfigShape = {
  edge_link_secret: z
    .string()
    .min(16, 'must be at least 16 characters')
    .optional()
    .describe('shared secret of edge links (the Worker secret LINK_SECRET); unset: no edge links'),
  edge_url: list(z.url({ protocol: /^https?$/ }).transform((u) => u.replace(/\/+$/, '')))
    .default([])
    .describe('the edge Worker origin(s) this relay dials back (comma-separated); unset: no dials'),
  edge_max_links: nonNegativeInt
    .default(10_000)
    .describe('most edge links (one per topic) at once; past it dial requests get limit_reached (0 = no limit)'),
  edge_ping_ms: timerMs.default(30_000).describe('how often edge links are pinged (a silent link is dropped)'),
};
