import { compareCursors, type Envelope, utf8Length } from '@anode/shared';
import type { StoredMessage } from './hub-store.ts';

/**
 * What a topic object fanned out while resumes from the relay's history run (subscriptions.ts):
 * such a resume holds its socket out of live fan-out, and a message that reaches the object
 * meanwhile may be in no relay page it reads (the relay stored it after the page its cursor falls
 * in was read) nor in the ring by the end (below the floor, or trimmed). One short log for every
 * resume of the object: each reader takes what is new at each step (`read`), and an entry goes
 * once every reader has read it. At most `maxBytes` (UTF-8 bytes of the bodies) wait in all,
 * however many resume at once; past that the oldest go, and a reader that had not read one it
 * `needed` learns the lowest cursor it lost (`lowestLost`). An entry keeps the id, the cursor and
 * the body only: a parsed envelope of many small objects took ~20× its body's bytes of heap (a
 * review: 8 MiB of `[{},{},…]` bodies held 178 MB, past a Durable Object's 128 MB).
 */
export function createHeardLog(maxBytes: number) {
  type Entry = StoredMessage & { size: number };
  type Reader = { next: number; lowestLost: string | undefined; needed: (entry: StoredMessage) => boolean };
  let entries: (Entry | undefined)[] = [];
  // entries[head] is the oldest kept; `first` is its number (every entry ever added has one).
  let head = 0;
  let first = 0;
  let bytes = 0;
  const readers = new Set<Reader>();
  const end = () => first + entries.length - head;

  const dropOldest = (lost: boolean) => {
    const entry = entries[head] as Entry;
    if (lost) {
      for (const reader of readers) {
        if (reader.next > first || !reader.needed(entry)) continue;
        if (reader.lowestLost === undefined || compareCursors(entry.envelope.cursor, reader.lowestLost) < 0) {
          reader.lowestLost = entry.envelope.cursor;
        }
      }
    }
    bytes -= entry.size;
    entries[head] = undefined;
    head += 1;
    first += 1;
  };
  /** Let go what every reader has read; keep the array from growing at its head. */
  const trim = () => {
    let oldest = end();
    for (const reader of readers) oldest = Math.min(oldest, reader.next);
    while (first < oldest) dropOldest(false);
    if (head > 1024 && head * 2 > entries.length) {
      entries = entries.slice(head);
      head = 0;
    }
  };

  return {
    /** A message fanned out here; kept only while a resume listens. */
    add(envelope: Envelope, body: string): void {
      if (readers.size === 0) return;
      const size = utf8Length(body);
      const slim = { id: envelope.id, cursor: envelope.cursor } as Envelope;
      entries.push({ envelope: slim, body, size });
      bytes += size;
      while (bytes > maxBytes && head < entries.length) dropOldest(true);
      trim();
    },

    /**
     * Start hearing what is fanned out from now on, until `stop`. `needed`: whether an entry let
     * go unread counts as lost to this reader (one it would have sent).
     */
    listen(needed: (entry: StoredMessage) => boolean = () => true) {
      const reader: Reader = { next: end(), lowestLost: undefined, needed };
      readers.add(reader);
      let stopped = false;
      return {
        /** What was heard since the last read (since `listen` at first) and is still kept, in arrival order. */
        read(): StoredMessage[] {
          if (stopped) return [];
          const from = head + Math.max(0, reader.next - first);
          const fresh = entries.slice(from) as Entry[];
          reader.next = end();
          trim();
          return fresh;
        },
        /** The lowest cursor this reader needed and the log let go before it read it, if any. */
        get lowestLost(): string | undefined {
          return reader.lowestLost;
        },
        stop(): void {
          if (stopped) return;
          stopped = true;
          readers.delete(reader);
          trim();
        },
      };
    },

    /** For status and tests: the entries kept and their bytes. */
    get size(): { entries: number; bytes: number } {
      return { entries: entries.length - head, bytes };
    },
  };
}

export type HeardLog = ReturnType<typeof createHeardLog>;
export type Hearing = ReturnType<HeardLog['listen']>;
