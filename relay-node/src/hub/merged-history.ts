import {
  compareCursors,
  CursorExpiredError,
  type Envelope,
  HISTORY_PAGE_BYTES,
  type MessageStore,
} from '@anode/shared';
import { createHeap } from '../heap.ts';
import { pageAndMark } from '../storage/merge-page.ts';

/**
 * What a resume holds in memory at once, over all its topics: the pages read ahead for the merge.
 * Split evenly across the topics, each with a small floor so many topics still move: with n
 * topics, at most max(RESUME_BYTES, n × STREAM_FLOOR_BYTES) of data and max(RESUME_MESSAGES,
 * n × STREAM_FLOOR_MESSAGES) messages, plus one message per topic past its budget (a page holds
 * one message always). One topic reads pages of HISTORY_PAGE_BYTES and 500 messages.
 */
export const RESUME_BYTES = 16 * 1024 * 1024;
export const RESUME_MESSAGES = 20_000;
const STREAM_FLOOR_BYTES = 16 * 1024;
const STREAM_FLOOR_MESSAGES = 10;
const STREAM_PAGE = 500;

/** The page bounds of each of `streams` topics read together (see RESUME_BYTES). */
export function streamBudget(streams: number): { limit: number; maxBytes: number } {
  const n = Math.max(1, streams);
  return {
    limit: Math.min(STREAM_PAGE, Math.max(STREAM_FLOOR_MESSAGES, Math.floor(RESUME_MESSAGES / n))),
    maxBytes: Math.min(HISTORY_PAGE_BYTES, Math.max(STREAM_FLOOR_BYTES, Math.floor(RESUME_BYTES / n))),
  };
}

/** A resume gives the event loop a turn at least this often (ms), however many topics it merges. */
const SLICE_MS = 10;
/** Pages read together: a resume over thousands of topics reads them a slice at a time. */
const REFILL_BATCH = 256;

interface Stream {
  topic: string;
  after: string;
  page: Envelope[];
  /** The index of the page's next message. */
  at: number;
  done: boolean;
}

/**
 * Every stored message of `topics` after `after`, in cursor order across topics (a k-way merge
 * of per-topic pages, each bounded by streamBudget), for resuming subscriptions. A topic is done
 * when a page comes back empty: a page cut by bytes may be short while more follow.
 *
 * The streams with a message waiting sit in a heap by their next cursor, so each message costs
 * O(log topics): a scan of every topic per message made a resume of `>` over 16,000 topics hold
 * the event loop for ~6 s. The merge also yields to the event loop every SLICE_MS.
 *
 * Retention may delete while a slow resume reads (the sweep runs on the writer thread): each page
 * comes with the trim mark it was read under, and one past where the page was read from, and past
 * `since` (what the subscriber already has), throws CursorExpiredError rather than skip what was
 * deleted unseen (a review's slow reader lost 3,556 of 9,597 messages this way, with no error),
 * unless all it may have deleted there is past `covered`: then every message from there on, of
 * every topic, is in the subscription's live buffer, and the history ends there for the buffer
 * to go on from. Going on with the history past the hole sent newer messages before the deleted
 * ones (which came only with the buffer, last): a client cut off between the two resumed from
 * its newest cursor, above them, and lost them with no error (200 of 450 in a review's repro).
 */
export async function* mergedHistory(
  store: MessageStore,
  topics: readonly string[],
  after: string,
  since: string = after,
  /**
   * Messages past this cursor reach the subscriber through its live buffer whatever retention
   * does (they were committed after its subscription was added): their deletion is no gap.
   */
  covered?: string,
): AsyncGenerator<Envelope> {
  const budget = streamBudget(topics.length);
  const ready = createHeap<Stream>(
    (a, b) => compareCursors((a.page[a.at] as Envelope).cursor, (b.page[b.at] as Envelope).cursor) < 0,
  );
  // Only the streams whose page ran out wait on the store (awaiting every stream per message
  // cost ~2 µs each: 30 s for a resume of 40,000 messages over 400 topics).
  let empty: Stream[] = topics.map((topic) => ({ topic, after, page: [], at: 0, done: false }));
  let sliceStart = performance.now();
  const breathe = async () => {
    if (performance.now() - sliceStart < SLICE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    sliceStart = performance.now();
  };
  // Set when retention deleted past `covered` what this resume had not sent: the live buffer
  // holds everything from there on, so the history stops (see above).
  let handOff = false;
  const refill = async (s: Stream) => {
    // The mark the page was read under (pageAndMark): one that passed `from` only after the read
    // took nothing from this page, and the next page's mark tells whether it took more.
    const { messages, trimmedThrough: trimmed } = await pageAndMark(store, s.topic, { after: s.after, ...budget });
    s.page = messages;
    const from = compareCursors(s.after, since) > 0 ? s.after : since;
    if (trimmed !== undefined && compareCursors(trimmed, from) > 0) {
      // A stream is read again only once all that was sent is at or below its `after` (the
      // heap gives the smallest cursor first), so nothing past `from` has been sent yet.
      if (covered !== undefined && compareCursors(covered, from) <= 0) handOff = true;
      else {
        throw new CursorExpiredError(
          `retention deleted messages of ${s.topic} after ${from} (trimmed through ${trimmed}) while this resume ` +
            'read them; resubscribe from a newer cursor or without `after`',
          { trimmedThrough: trimmed },
        );
      }
    }
    s.at = 0;
    const last = s.page.at(-1);
    if (last) s.after = last.cursor;
    else s.done = true;
  };
  for (;;) {
    if (empty.length > 0) {
      const waiting = empty;
      empty = [];
      for (let i = 0; i < waiting.length; i += REFILL_BATCH) {
        await Promise.all(waiting.slice(i, i + REFILL_BATCH).map(refill));
        if (handOff) return;
        await breathe();
      }
      for (const s of waiting) if (!s.done) ready.push(s);
    }
    const next = ready.pop();
    if (!next) return;
    const envelope = next.page[next.at] as Envelope;
    next.at += 1;
    // A stream whose page ran out is read again before the next pick: its next page may hold
    // the smallest cursor of all.
    if (next.at < next.page.length) ready.push(next);
    else empty.push(next);
    yield envelope;
    await breathe();
  }
}
