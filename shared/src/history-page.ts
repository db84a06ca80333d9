import type { HistoryQuery } from './ports/message-store.ts';

/**
 * A history page taken from `rows` in cursor order (MessageStore `history`): at most `limit`,
 * and with `maxBytes`, stopped before the row that would take the data past it (the first row
 * always fits). `rows` is read lazily, one row past the page at most, so an iterator over a
 * table holds no more than that. `cut`: stopped with rows left.
 */
export function takePage<T>(
  rows: Iterable<T>,
  query: HistoryQuery,
  measure: (row: T) => number,
): { page: T[]; cut: boolean } {
  const page: T[] = [];
  if (query.limit <= 0) return { page, cut: false };
  let bytes = 0;
  for (const row of rows) {
    if (page.length >= query.limit) return { page, cut: true };
    if (query.maxBytes !== undefined) {
      bytes += measure(row);
      if (page.length > 0 && bytes > query.maxBytes) return { page, cut: true };
    }
    page.push(row);
  }
  return { page, cut: false };
}
