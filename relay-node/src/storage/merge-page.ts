import { compareCursors, type Envelope, newerForLatest } from '@anode/shared';

/**
 * A page of stored history with messages not in the store yet merged in (a spool's, a hold's):
 * in cursor order, each id once (the stored copy wins), cut to `limit`. A message merged past
 * the cut comes in the next page, which starts after this page's last cursor.
 */
export function mergePage(stored: Envelope[], extra: readonly Envelope[], limit: number): Envelope[] {
  if (extra.length === 0) return stored;
  const ids = new Set(stored.map((m) => m.id));
  const merged = [...stored, ...extra.filter((m) => !ids.has(m.id))];
  merged.sort((a, b) => compareCursors(a.cursor, b.cursor));
  return merged.slice(0, limit);
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
