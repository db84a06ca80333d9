import { compareCursors, utf8Length } from '@anode/shared';

/**
 * Bounded reads over stored messages. The ring and the outbox are read row by row (a SQL cursor,
 * never `toArray`), so what a page (shared takePage) or a resume holds in memory is what it takes,
 * one row more at most: with 1 MiB messages a whole ring would not fit in a Durable Object's 128 MB.
 */
export interface Row {
  /** The envelope's JSON. */
  body: string;
}

/** The UTF-8 size of a row (the whole envelope: a little stricter than counting its data). */
export const rowBytes = (row: Row): number => utf8Length(row.body);

/**
 * Two sequences each in cursor order (newest first when `descending`), merged in that order, read
 * lazily; a message in both (the same cursor: a publish here sits in the ring and the outbox) comes
 * once. Stopped early, it stops both (their SQL statements end then, not at garbage collection).
 */
export function* mergeByCursor<T extends { envelope: { cursor: string } }>(
  a: Iterable<T>,
  b: Iterable<T>,
  descending = false,
): Generator<T> {
  const left = a[Symbol.iterator]();
  const right = b[Symbol.iterator]();
  const order = (x: T, y: T) => (descending ? -1 : 1) * compareCursors(x.envelope.cursor, y.envelope.cursor);
  try {
    let x = left.next();
    let y = right.next();
    while (!x.done || !y.done) {
      if (y.done || (!x.done && order(x.value, y.value) < 0)) {
        yield x.value;
        x = left.next();
      } else if (x.done || order(x.value, y.value) > 0) {
        yield y.value;
        y = right.next();
      } else {
        yield x.value;
        x = left.next();
        y = right.next();
      }
    }
  } finally {
    left.return?.();
    right.return?.();
  }
}
