import { compareCursors, utf8Length } from '@anode/shared';

/**
 * Bounded reads over stored messages. The ring and the outbox are read row by row (a SQL cursor,
 * never `toArray`), so what a page or a resume holds in memory is what it takes, one row more at
 * most: with 1 MiB messages a whole ring would not fit in a Durable Object's 128 MB.
 */
export interface Row {
  /** The envelope's JSON. */
  body: string;
}

export interface Paged<T> {
  page: T[];
  /** Stopped with rows left (a next page has something). */
  cut: boolean;
}

/** The UTF-8 size of a row (the whole envelope: a little stricter than counting its data). */
export const rowBytes = (row: Row): number => utf8Length(row.body);

/**
 * At most `limit` rows and `maxBytes` (the first row always), read lazily: one row past the page
 * at most, to tell whether more follow.
 */
export function takePage<T extends Row>(rows: Iterable<T>, limit: number, maxBytes: number): Paged<T> {
  const page: T[] = [];
  let bytes = 0;
  for (const row of rows) {
    if (page.length >= limit) return { page, cut: true };
    bytes += rowBytes(row);
    if (page.length > 0 && bytes > maxBytes) return { page, cut: true };
    page.push(row);
  }
  return { page, cut: false };
}

/**
 * Two sequences each in cursor order, merged in cursor order, read lazily; a message in both
 * (the same cursor: a publish here sits in the ring and the outbox) comes once.
 */
export function* mergeByCursor<T extends { envelope: { cursor: string } }>(a: Iterable<T>, b: Iterable<T>) {
  const left = a[Symbol.iterator]();
  const right = b[Symbol.iterator]();
  let x = left.next();
  let y = right.next();
  while (!x.done || !y.done) {
    if (y.done || (!x.done && compareCursors(x.value.envelope.cursor, y.value.envelope.cursor) < 0)) {
      yield x.value;
      x = left.next();
    } else if (x.done || compareCursors(x.value.envelope.cursor, y.value.envelope.cursor) > 0) {
      yield y.value;
      y = right.next();
    } else {
      yield x.value;
      x = left.next();
      y = right.next();
    }
  }
}
