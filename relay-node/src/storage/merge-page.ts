import {
  compareCursors,
  compareSources,
  dataBytes,
  type Envelope,
  type HistoryQuery,
  type LatestQuery,
  type MessageStore,
  newerForLatest,
  sourcesOf,
  takeLatestPage,
  takePage,
} from '@anode/shared';

/**
 * One page of `topic` from `store`, and whether more follows: the page is full, or it is short
 * and one more read finds a message after it (a page cut by `maxBytes` looks like the end
 * otherwise). An empty page is the end.
 */
export async function pageWithMore(
  store: MessageStore,
  topic: string,
  query: HistoryQuery,
): Promise<{ messages: Envelope[]; more: boolean }> {
  const messages = await store.history(topic, query);
  return { messages, more: await morePast(store, topic, query, messages) };
}

/**
 * Whether more of `topic` follows `messages`, a page read by `query` (see pageWithMore). Read
 * after the page, so retention may have deleted since what followed it: the trim mark, read
 * after finding nothing, past the page's last cursor says so (embedded: a message past it was
 * deleted; Cassandra: the TTL horizon passed it), and the page is not the end. Answered as the
 * end, a page cut by bytes let the reader stop at a gap; answered as more, the page after it is
 * refused `cursor_expired`. The mark is read last: marks only grow, so one not past the cursor
 * then deleted nothing past it before the read that found nothing.
 */
export async function morePast(
  store: MessageStore,
  topic: string,
  query: HistoryQuery,
  messages: readonly Envelope[],
): Promise<boolean> {
  const last = messages.at(-1);
  if (!last) return false;
  if (messages.length >= query.limit) return true;
  if ((await store.history(topic, { after: last.cursor, limit: 1 })).length > 0) return true;
  const mark = await store.trimmedThrough(topic);
  return mark !== undefined && compareCursors(mark, last.cursor) > 0;
}

/**
 * One page of `topic` and its retention mark, to tell whether retention took messages past the
 * page's `after` from under it (cursor_expired). The mark as of the page's own read when the
 * store gives it (HistoryQuery.onTrimmedThrough); else read after the page, never before: marks
 * only grow, so one read after is at least the mark the page was read under, and a sweep between
 * the two reads can only refuse a page that was whole. Read before, a sweep in between deleted
 * messages past `after` that the page then lacked, under a mark that did not show it: a gap
 * answered as a whole page.
 */
export async function pageAndMark(
  store: MessageStore,
  topic: string,
  query: HistoryQuery,
): Promise<{ messages: Envelope[]; trimmedThrough: string | undefined }> {
  const seen: { given: boolean; mark?: string | undefined } = { given: false };
  const onTrimmedThrough = (mark: string | undefined) => Object.assign(seen, { given: true, mark });
  const messages = await store.history(topic, { ...query, onTrimmedThrough });
  return { messages, trimmedThrough: seen.given ? seen.mark : await store.trimmedThrough(topic) };
}

/**
 * A page of stored history with messages not in the store yet merged in (a spool's, a hold's):
 * in cursor order, each id once (the stored copy wins), cut like a store's page (takePage). The
 * next page starts after this page's last cursor, so a side that may go on past its last message
 * ends the page there: a message of the other side past it would skip one not read yet. A stored
 * page may go on when it is full, or with `maxBytes` whenever it is not empty (a short page may
 * have been cut by bytes); `extra.cut` says whether the extra messages were.
 */
export function mergePage(
  stored: Envelope[],
  extra: { page: readonly Envelope[]; cut: boolean },
  query: HistoryQuery,
): Envelope[] {
  if (extra.page.length === 0) return stored;
  const ids = new Set(stored.map((m) => m.id));
  const merged = [...stored, ...extra.page.filter((m) => !ids.has(m.id))];
  merged.sort((a, b) => compareCursors(a.cursor, b.cursor));
  const storedLast = stored.at(-1);
  const storedOpen = storedLast && (stored.length >= query.limit || query.maxBytes !== undefined);
  const ends = [storedOpen ? storedLast.cursor : undefined, extra.cut ? extra.page.at(-1)?.cursor : undefined];
  let end: string | undefined;
  for (const cursor of ends)
    if (cursor !== undefined && (end === undefined || compareCursors(cursor, end) < 0)) end = cursor;
  const upTo = end === undefined ? merged : merged.filter((m) => compareCursors(m.cursor, end) <= 0);
  return takePage(upTo, query, dataBytes).page;
}

/**
 * `latest` (the newest message per source) with messages not in the store yet taken into account,
 * by the stores' rule (newerForLatest). With `query`, `stored` is the store's page and the answer
 * one page too: the next page starts after its last source, so when the stored page may go on
 * (full, or with `maxBytes` not empty: a short page may have been cut by bytes) an extra source
 * past its last one waits for the page that reads its stored rows; else it would skip them.
 */
export function mergeLatest(
  stored: Readonly<Record<string, Envelope>>,
  extra: Iterable<Envelope>,
  query?: LatestQuery,
): Record<string, Envelope> {
  const merged = new Map(Object.entries(stored));
  const storedSources = [...merged.keys()];
  const storedOpen =
    query && storedSources.length > 0 && (storedSources.length >= query.limit || query.maxBytes !== undefined);
  const end = storedOpen ? storedSources.reduce((a, b) => (compareSources(a, b) >= 0 ? a : b)) : undefined;
  for (const envelope of extra) {
    if (query?.after !== undefined && compareSources(envelope.source, query.after) <= 0) continue;
    if (end !== undefined && compareSources(envelope.source, end) > 0) continue;
    if (newerForLatest(envelope, merged.get(envelope.source))) merged.set(envelope.source, envelope);
  }
  return sourcesOf(query ? takeLatestPage(merged.values(), query).page : merged.values());
}
