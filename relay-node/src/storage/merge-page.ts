import {
  compareCursors,
  dataBytes,
  type Envelope,
  type HistoryQuery,
  type MessageStore,
  newerForLatest,
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
  const last = messages.at(-1);
  if (!last) return { messages, more: false };
  const more =
    messages.length >= query.limit || (await store.history(topic, { after: last.cursor, limit: 1 })).length > 0;
  return { messages, more };
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
 * by the stores' rule (newerForLatest).
 */
export function mergeLatest(
  stored: Readonly<Record<string, Envelope>>,
  extra: Iterable<Envelope>,
): Record<string, Envelope> {
  const merged: Record<string, Envelope> = { ...stored };
  for (const envelope of extra) {
    const best = Object.hasOwn(merged, envelope.source) ? merged[envelope.source] : undefined;
    if (newerForLatest(envelope, best)) merged[envelope.source] = envelope;
  }
  return merged;
}
