import { compareCursors, type Envelope, utf8Length } from '@anode/shared';
import type { StoredMessage } from './hub-store.ts';

/**
 * What a topic object fanned out while resumes from the relay's history run (subscriptions.ts):
 * such a resume holds its socket out of live fan-out, and a message that reaches the object
 * meanwhile may be in no relay page it reads (the relay stored it after the page its cursor falls
 * in was read) nor in the ring by the end (below the floor, or trimmed). One log for every resume
 * of the object, each reading it from where it started listening: at most `maxBytes` (UTF-8 bytes
 * of the bodies) in all, however many resume at once (a log per resume held ~3 MB of entries
 * each, 40 of them past a Durable Object's 128 MB). Past the bound the oldest go, and a resume
 * that had heard them learns the lowest cursor it lost (`lowestLost`). Kept only while someone
 * listens.
 */
export function createHeardLog(maxBytes: number) {
  type Entry = StoredMessage & { size: number };
  type Reader = { start: number; lowestLost: string | undefined };
  let entries: (Entry | undefined)[] = [];
  // entries[head] is the oldest kept; `first` counts every entry ever let go before it.
  let head = 0;
  let first = 0;
  let bytes = 0;
  const readers = new Set<Reader>();
  const next = () => first + entries.length - head;

  const letGoOldest = () => {
    const entry = entries[head] as Entry;
    for (const reader of readers) {
      if (reader.start > first) continue;
      if (reader.lowestLost === undefined || compareCursors(entry.envelope.cursor, reader.lowestLost) < 0) {
        reader.lowestLost = entry.envelope.cursor;
      }
    }
    bytes -= entry.size;
    entries[head] = undefined;
    head += 1;
    first += 1;
  };
  const compact = () => {
    if (head > 1024 && head * 2 > entries.length) {
      entries = entries.slice(head);
      head = 0;
    }
  };
  /** Let go what no reader needs (everything before the oldest start). */
  const trim = () => {
    if (readers.size === 0) {
      first = next();
      entries = [];
      head = 0;
      bytes = 0;
      return;
    }
    const oldest = Math.min(...[...readers].map((reader) => reader.start));
    while (first < oldest && head < entries.length) {
      bytes -= (entries[head] as Entry).size;
      entries[head] = undefined;
      head += 1;
      first += 1;
    }
    compact();
  };

  return {
    /** A message fanned out here; kept only while a resume listens. */
    add(envelope: Envelope, body: string): void {
      if (readers.size === 0) return;
      const size = utf8Length(body);
      entries.push({ envelope, body, size });
      bytes += size;
      while (bytes > maxBytes && head < entries.length) letGoOldest();
      compact();
    },

    /** Start hearing what is fanned out from now on, until `stop`. */
    listen() {
      const reader: Reader = { start: next(), lowestLost: undefined };
      readers.add(reader);
      let stopped = false;
      return {
        /** What was heard since `listen` and is still kept, in arrival order. */
        *messages(): Generator<StoredMessage> {
          if (stopped) return;
          for (let i = head + Math.max(0, reader.start - first); i < entries.length; i++) {
            yield entries[i] as Entry;
          }
        },
        /** The lowest cursor heard and then let go for the bound, if any. */
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
