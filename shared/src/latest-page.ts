import { z } from 'zod';
import { dataBytes } from './envelope.ts';
import type { Envelope } from './frames.ts';
import { MAX_SOURCE_LENGTH } from './names.ts';
import type { LatestQuery } from './ports/message-store.ts';

/**
 * Sources one `latest` page holds at most (`GET /v1/topics/{topic}/latest`, an edge link's
 * `latest`). A page is also cut at HISTORY_PAGE_BYTES of data (one source always fits): unbounded,
 * 300 sources of 700 KiB were one 215 MB answer that held the relay's event loop for seconds, and
 * past ~512 MB the answer could not be made at all (a 500, for good, for that topic).
 */
export const LATEST_PAGE_SOURCES = 1000;

// The source grammar (isSourceName) without its refusal of Object.prototype's names: a store may
// hold such a source from before that rule, and a page ending on it must be able to go on.
const SOURCE_SEGMENT = /^[A-Za-z0-9_@:|-]+$/;
const afterSourceSchema = z
  .string()
  .refine(
    (s) => s.length <= MAX_SOURCE_LENGTH && s.split('.').every((segment) => SOURCE_SEGMENT.test(segment)),
    'not a source name',
  );

/** `?after_source=&limit=` of a latest page, refused as history's query is (`bad_frame`). */
export const latestQuerySchema = z.object({
  after_source: afterSourceSchema.optional(),
  // A blank value is refused, as for history's `limit`; 0 is too: a page of no sources says nothing.
  limit: z
    .preprocess((v) => (typeof v === 'string' && v.trim() === '' ? Number.NaN : v), z.coerce.number())
    .pipe(z.number().int().min(1).max(LATEST_PAGE_SOURCES))
    .default(LATEST_PAGE_SOURCES),
});

/** The order of a latest page: source names compared as stored (SQLite and Cassandra compare UTF-8 bytes; source names are ASCII). */
export const compareSources = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * A latest page from `envelopes` (any order, one per source): the sources after `query.after`,
 * in source order, at most `limit`, cut before the one that would take the data past `maxBytes`
 * (the first always fits). `cut`: stopped with sources left.
 */
export function takeLatestPage(envelopes: Iterable<Envelope>, query: LatestQuery): { page: Envelope[]; cut: boolean } {
  const after = query.after;
  const sorted = [...envelopes]
    .filter((e) => after === undefined || compareSources(e.source, after) > 0)
    .sort((a, b) => compareSources(a.source, b.source));
  const page: Envelope[] = [];
  let bytes = 0;
  for (const envelope of sorted) {
    if (page.length >= query.limit) return { page, cut: true };
    if (query.maxBytes !== undefined) {
      bytes += dataBytes(envelope);
      if (page.length > 0 && bytes > query.maxBytes) return { page, cut: true };
    }
    page.push(envelope);
  }
  return { page, cut: false };
}

/** A page as the `sources` object: own properties, so a source named `__proto__` is kept. */
export const sourcesOf = (page: Iterable<Envelope>): Record<string, Envelope> =>
  Object.fromEntries([...page].map((e) => [e.source, e]));
