import { type Envelope, isCursor, isTopic, type MessageStore, utf8Length } from '@anode/shared';
import type { PeerId, Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { pageWithMore } from '../storage/merge-page.ts';
import type { Logger } from '../logger.ts';
import type { CatchUpPlan } from './catch-up-progress.ts';
import type { Host } from './host.ts';
import type { Shards } from './shards.ts';

/**
 * The catch-up protocol (`/anode/catch-up/2.0.0`): history by cursor range over a libp2p
 * stream, like Waku's store protocol. The client sends requests and the server answers each
 * with one frame; every frame is a varint-length-prefixed UTF-8 JSON object:
 *
 * - `{"op":"topics","shards":[n…],"shard_count":N,"after"?:"<topic>"}` → `{"topics":["t"…],
 *   "next":"<topic>"|null}`: the server's stored topics in those shards, sorted, after `after`,
 *   at most TOPICS_PAGE names and TOPICS_PAGE_BYTES of them; `next` is the `after` of the
 *   following page, null at the end.
 * - `{"op":"history","topic":"t","after":"<cursor>","limit":n,"max_bytes"?:m}` →
 *   `{"messages":[envelope…],"next":"<cursor>"|null,"skipped"?:k}`: stored messages of `t` with
 *   cursor > `after`, ascending, at most `limit` (≤ 500) and PAGE_BYTES of envelopes, but always
 *   one when there is one; `next` is where the following page starts, null at the end. Envelopes
 *   larger than the server carries, or than `max_bytes` (the client's own limit), are left out
 *   and counted in `skipped`: a client with a lower limit than its peer's stalled at such a
 *   message for ever (its frame limit refused the page, and the next round asked again).
 * - anything else → `{"error":"…"}`, and the server closes the stream.
 *
 * No list and no message can outgrow a frame: pages are cut by their serialized UTF-8 size, and
 * the frame limit is PAGE_BYTES plus the largest envelope the mesh carries (which config keeps
 * above max_message_bytes). A stored envelope larger than that (kept from before the limit) is
 * skipped, not sent. The client closes the stream when done; the hub checks every envelope.
 */
export const CATCH_UP_PROTOCOL = '/anode/catch-up/2.0.0';
const PAGE_LIMIT = 500;
const PAGE_BYTES = 512 * 1024;
const TOPICS_PAGE = 1000;
const TOPICS_PAGE_BYTES = 64 * 1024;
const FRAME_SLACK = 64 * 1024;
const REQUEST_TIMEOUT_MS = 15_000;
/**
 * Pages in a row a peer may answer with no message of the asked topic and a `next` (a page of
 * only messages too large to carry is one, as is one of only another topic's): past them it is
 * taken as going nowhere. A peer answering `next` after
 * `next` with nothing held the one catch-up slot for ever (every other peer's repair waited).
 * The same bound holds for topic listing pages that bring no topic to read (none of the asked
 * shards, or only topics listed before). A listing that names a new topic on every page, each
 * with nothing behind it, is followed on: an honest relay's topics quiet since the watermark look
 * the same. It no longer holds the other peers' catch-ups (sync.ts, LONG_RUN_MS).
 */
const MAX_EMPTY_PAGES = 16;
/** Store reads one history request may make past envelopes too large to carry (see catchUpAnswer). */
const SKIP_READS = 64;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const isEof = (error: unknown) => (error as Error)?.name === 'UnexpectedEOFError';
// Every wait on a peer is bounded: a paused or vanished peer must not hold a stream (and one of
// the protocol's few inbound stream slots, or the client's one catch-up at a time) open for
// good; the caller aborts the stream instead. `stop` ends the wait early.
const within = (timeoutMs: number, stop?: AbortSignal) => {
  const timeout = AbortSignal.timeout(timeoutMs);
  return { signal: stop ? AbortSignal.any([stop, timeout]) : timeout };
};
const bounded = () => within(REQUEST_TIMEOUT_MS);

/** The largest catch-up frame, for a mesh whose largest envelope is `maxEnvelopeBytes`. */
export const catchUpFrameBytes = (maxEnvelopeBytes: number) => PAGE_BYTES + maxEnvelopeBytes + FRAME_SLACK;

/** A frame that arrived whole but is not a UTF-8 JSON object (the server answers it `{"error"}`). */
class MalformedFrameError extends Error {
  override name = 'MalformedFrameError';
}

const frames = (stream: Stream, maxEnvelopeBytes: number, timeoutMs = REQUEST_TIMEOUT_MS, stop?: AbortSignal) => {
  const lp = lpStream(stream, { maxDataLength: catchUpFrameBytes(maxEnvelopeBytes) });
  return {
    async read(): Promise<Record<string, unknown>> {
      const bytes = (await lp.read(within(timeoutMs, stop))).subarray();
      let value: unknown;
      try {
        value = JSON.parse(decoder.decode(bytes));
      } catch {
        throw new MalformedFrameError('frame is not UTF-8 JSON');
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        throw new MalformedFrameError('frame is not an object');
      return value as Record<string, unknown>;
    },
    write: (value: unknown) =>
      lp.write(encoder.encode(typeof value === 'string' ? value : JSON.stringify(value)), within(timeoutMs, stop)),
  };
};

/** The index of the first name in `sorted` greater than `after` (binary search). */
const firstAfter = (sorted: readonly string[], after: string) => {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((sorted[mid] as string) > after) high = mid;
    else low = mid + 1;
  }
  return low;
};

/** One page of topic names after `after`, cut by count and bytes. */
export function topicsPage(sorted: readonly string[], after: string | undefined) {
  const topics: string[] = [];
  let bytes = 0;
  let i = after === undefined ? 0 : firstAfter(sorted, after);
  for (; i < sorted.length && topics.length < TOPICS_PAGE; i++) {
    const topic = sorted[i] as string;
    bytes += utf8Length(topic) + 3;
    if (topics.length > 0 && bytes > TOPICS_PAGE_BYTES) break;
    topics.push(topic);
  }
  return { topics, next: i < sorted.length ? (topics.at(-1) ?? null) : null };
}

/**
 * One history page as frame text: envelopes serialized once, cut at PAGE_BYTES (one always
 * fits), envelopes over `maxEnvelopeBytes` skipped. `beyond`: the store has more after it (pageWithMore).
 */
export function historyPage(
  page: readonly Envelope[],
  limit: number,
  maxEnvelopeBytes: number,
  log?: Logger,
  beyond = false,
) {
  return historyFrame(historyParts(page, limit, maxEnvelopeBytes, log, beyond));
}

/** A history answer's frame text from its envelopes' JSON and where the next page starts. */
function historyFrame({
  parts,
  next,
  skipped,
}: {
  parts: string[];
  next: string | undefined;
  skipped: number;
}): string {
  const more = next === undefined ? 'null' : JSON.stringify(next);
  return `{"messages":[${parts.join(',')}],"next":${more}${skipped > 0 ? `,"skipped":${skipped}` : ''}}`;
}

/** historyPage's envelopes (as JSON text) and where the next page starts (undefined: done). */
function historyParts(
  page: readonly Envelope[],
  limit: number,
  maxEnvelopeBytes: number,
  log?: Logger,
  beyond = false,
  takerBytes = maxEnvelopeBytes,
): { parts: string[]; next: string | undefined; skipped: number } {
  const parts: string[] = [];
  let bytes = 0;
  let last: string | undefined;
  let taken = 0;
  let skipped = 0;
  for (const envelope of page) {
    const { id, topic, cursor, source, ts, data } = envelope;
    const text = JSON.stringify({ id, topic, cursor, source, ts, data });
    const size = utf8Length(text) + 1;
    if (size > maxEnvelopeBytes) {
      log?.warn({ id, topic, bytes: size }, 'catch-up: stored message larger than the mesh carries; skipped');
      skipped += 1;
    } else if (size > takerBytes) {
      // The asking node takes less (its mesh_max_message_bytes is lower): it is told how many.
      skipped += 1;
    } else {
      if (parts.length > 0 && bytes + size > PAGE_BYTES) break;
      parts.push(text);
      bytes += size;
    }
    last = cursor;
    taken += 1;
  }
  const more = taken < page.length || page.length === limit || beyond;
  return { parts, next: more ? last : undefined, skipped };
}

/**
 * The answers to one catch-up stream's requests from this node's store (serveCatchUp's, testable
 * alone). The stream's topic list is read and sorted once, at its first `topics` request, and its
 * later pages come from that: the store has no paged listing, and reading and sorting every
 * stored topic again per page of 1,000 made a listing quadratic in the topic count. A topic first
 * stored while the listing pages on is left to gossip, to the lookback and to the next catch-up,
 * as are messages stored in a topic after its history was read.
 */
export function catchUpAnswer(deps: { store: MessageStore; shards: Shards; maxMessageBytes: number; log: Logger }) {
  const { store, shards, log } = deps;
  let listing: { shards: string; sorted: string[] } | undefined;
  const listed = async (requested: unknown) => {
    const key = JSON.stringify(Array.isArray(requested) ? requested : null);
    if (listing?.shards !== key) {
      const wanted = Array.isArray(requested) ? new Set(requested) : undefined;
      const sorted = (await store.topics()).filter((topic) => !wanted || wanted.has(shards.of(topic))).sort();
      listing = { shards: key, sorted };
    }
    return listing.sorted;
  };
  return async (request: Record<string, unknown>): Promise<string | { error: string }> => {
    if (request.op === 'topics') {
      if (request.shard_count !== shards.count) return { error: `shard count ${shards.count} here` };
      const after = typeof request.after === 'string' ? request.after : undefined;
      return JSON.stringify(topicsPage(await listed(request.shards), after));
    }
    if (request.op === 'history') {
      if (!isTopic(request.topic) || !isCursor(request.after)) return { error: 'history: topic or after malformed' };
      // A whole number: SQLite refuses a fractional LIMIT, which reset the stream unanswered.
      const limit = Math.min(PAGE_LIMIT, Math.max(1, Math.floor(Number(request.limit) || PAGE_LIMIT)));
      // Read no more than a frame holds: 500 stored messages of 1 MiB would otherwise be loaded
      // for a page that sends one. A page the store cut short by bytes is not the end: one more
      // read says whether anything follows.
      // Stored envelopes too large to carry are skipped; a page of only those is read on past
      // (up to SKIP_READS reads), so a page is empty only at the end (or past that budget): a
      // client stops following pages that bring nothing.
      // `max_bytes` (optional): the largest envelope the asking node takes, when below this
      // node's own limit; larger ones are skipped and counted in the answer's `skipped`.
      const asked = Number(request.max_bytes);
      const takerBytes = Number.isSafeInteger(asked) && asked > 0 ? asked : deps.maxMessageBytes;
      let after = request.after;
      let skipped = 0;
      for (let reads = 1; ; reads++) {
        const page = await pageWithMore(store, request.topic, { after, limit, maxBytes: PAGE_BYTES });
        const taken = historyParts(page.messages, limit, deps.maxMessageBytes, log, page.more, takerBytes);
        skipped += taken.skipped;
        if (taken.parts.length > 0 || taken.next === undefined || reads >= SKIP_READS) {
          return historyFrame({ ...taken, skipped });
        }
        after = taken.next;
      }
    }
    return { error: 'unknown request' };
  };
}

/** Serve catch-up requests from this node's store. */
export function serveCatchUp(
  host: Host,
  deps: { store: MessageStore; shards: Shards; maxMessageBytes: number; log: Logger },
) {
  return host.handle(
    CATCH_UP_PROTOCOL,
    async (stream) => {
      const answer = catchUpAnswer(deps);
      const io = frames(stream, deps.maxMessageBytes);
      try {
        for (;;) {
          let response: string | { error: string };
          try {
            response = await answer(await io.read());
          } catch (error) {
            // A frame that is no request is answered as the protocol says, not with a reset stream.
            if (!(error instanceof MalformedFrameError)) throw error;
            response = { error: error.message };
          }
          await io.write(response);
          if (typeof response !== 'string') break;
        }
        await stream.close(bounded());
      } catch (error) {
        if (!isEof(error)) deps.log.debug({ err: error }, 'catch-up request failed');
        stream.abort(error as Error);
      }
    },
    { runOnLimitedConnection: true, maxInboundStreams: 8 },
  );
}

export interface CatchUpRequest {
  peer: PeerId;
  shards: readonly number[];
  after: string;
  /** Checks (the message contract) and stores one page; resolves with how many were new. */
  ingest(envelopes: unknown[]): Promise<number>;
  /** The peer left out `count` stored messages of `topic`: larger than `maxMessageBytes`. */
  onSkipped?(topic: string, count: number): void;
  /** The peer answered a page of `topic` with `count` entries of another topic (or none): dropped. */
  onWrongTopic?(topic: string, count: number): void;
  /** Stops the catch-up (the node stops). */
  signal?: AbortSignal;
  /** How long the peer may take to open the stream or to answer one request (default 15 s). */
  timeoutMs?: number;
  /** Where each topic starts (default `after`), and where progress goes (catch-up-progress.ts). */
  plan?: CatchUpPlan;
}

/** Fetch everything `peer` stored after a cursor in the given shards; resolves with how many were new here. */
export async function catchUpFrom(host: Host, shards: Shards, maxMessageBytes: number, request: CatchUpRequest) {
  // Use the connection there is, relayed or not: dialling would open another one.
  const open = host.getConnections(request.peer).filter((c) => c.status === 'open');
  const connection = open.find((c) => c.limits === undefined) ?? open[0];
  if (!connection) throw new Error(`not connected to ${request.peer.toString()}`);
  const timeoutMs = request.timeoutMs ?? REQUEST_TIMEOUT_MS;
  // Bounded by time as well as by stop: given a signal, libp2p drops its own negotiation timeout,
  // and a frozen peer would hold the one catch-up slot (every other peer's catch-up waits) until
  // liveness drops its connection, 30-60 s later.
  const stream = await connection.newStream(CATCH_UP_PROTOCOL, {
    runOnLimitedConnection: true,
    ...within(timeoutMs, request.signal),
  });
  const io = frames(stream, maxMessageBytes, timeoutMs, request.signal);
  const ask = async (frame: Record<string, unknown>) => {
    await io.write(frame);
    const response = await io.read();
    if (typeof response.error === 'string') throw new Error(`catch-up refused: ${response.error}`);
    return response;
  };
  const historyOf = async (topic: string) => {
    // Read whole by an earlier turn of this catch-up (it yielded its slot): not asked again. It
    // still counts as a listed topic to read (below): a listing of many such is no empty page.
    if (request.plan?.skip?.(topic)) return 0;
    let fresh = 0;
    let after: string | null = request.plan?.from(topic) ?? request.after;
    let empty = 0;
    // The highest cursor taken from this topic so far: only a message past it is progress.
    let highest: string | null = after;
    while (after !== null) {
      request.signal?.throwIfAborted();
      const page = await ask({ op: 'history', topic, after, limit: PAGE_LIMIT, max_bytes: maxMessageBytes });
      const messages = (Array.isArray(page.messages) ? page.messages : []) as unknown[];
      if (Number.isSafeInteger(page.skipped) && (page.skipped as number) > 0) {
        request.onSkipped?.(topic, page.skipped as number);
      }
      const ofTopic = messages.filter((m) => (m as { topic?: unknown } | null)?.topic === topic);
      // A peer that answers one topic with another's messages misbehaves: they are not taken
      // (the page's cursors are the asked topic's), and not dropped unseen either.
      if (ofTopic.length < messages.length) request.onWrongTopic?.(topic, messages.length - ofTopic.length);
      fresh += await request.ingest(ofTopic);
      const next: unknown = page.next;
      // Empty unless it brought a message of the asked topic past every one taken before: a page
      // of another topic's entries (or nulls), or one repeating what came before (at or before its
      // `after`, or the same message ahead of a `next` creeping up to it), moves no more than an
      // empty one does.
      const before = highest;
      let onward = false;
      for (const m of ofTopic) {
        const cursor = (m as { cursor?: unknown }).cursor;
        if (isCursor(cursor) && (before === null || cursor > before)) {
          onward = true;
          if (highest === null || cursor > highest) highest = cursor;
        }
      }
      empty = onward ? 0 : empty + 1;
      if (empty > MAX_EMPTY_PAGES && next !== null) {
        // Not finished: this peer's catch-up fails, and the next one starts from the progress kept.
        throw new Error(`catch-up of ${topic}: ${MAX_EMPTY_PAGES} pages in a row with no message`);
      }
      // Only a cursor past this page's start moves on (it is kept as progress, in mesh-sync.json).
      after = isCursor(next) && next > after ? next : null;
      if (after !== null) request.plan?.reached(topic, after);
    }
    request.plan?.finished(topic);
    return fresh;
  };
  let fresh = 0;
  try {
    const wanted = new Set(request.shards);
    // A turn going on from an earlier one lists only past the topics that turn read whole: listing
    // them again cost a request per page, each turn more, and could take a whole turn.
    let topicsAfter: string | undefined = request.plan?.listAfter;
    // The last topic read: a listing is sorted, so a name not past it was read already.
    let read: string | undefined = topicsAfter;
    // Listing pages in a row that brought no topic to read (see MAX_EMPTY_PAGES).
    let empty = 0;
    do {
      const listed = await ask({
        op: 'topics',
        shards: request.shards,
        shard_count: shards.count,
        ...(topicsAfter === undefined ? {} : { after: topicsAfter }),
      });
      const topics = Array.isArray(listed.topics) ? (listed.topics as unknown[]) : [];
      let taken = 0;
      for (const topic of topics) {
        if (!isTopic(topic) || !wanted.has(shards.of(topic)) || (read !== undefined && topic <= read)) continue;
        read = topic;
        taken += 1;
        fresh += await historyOf(topic);
      }
      const next: unknown = listed.next;
      // A listing page goes on only from a topic past the last, and only while it lists some.
      topicsAfter =
        isTopic(next) && topics.length > 0 && (topicsAfter === undefined || next > topicsAfter) ? next : undefined;
      // A peer listing only topics of other shards, or the same ones again, with a `next` after
      // `next`, held the one catch-up slot for ever, as empty history pages did.
      empty = taken === 0 ? empty + 1 : 0;
      if (empty > MAX_EMPTY_PAGES && topicsAfter !== undefined) {
        throw new Error(`catch-up: ${MAX_EMPTY_PAGES} topic pages in a row with no new topic of the asked shards`);
      }
    } while (topicsAfter !== undefined);
    await stream.close(bounded());
    return fresh;
  } catch (error) {
    stream.abort(error as Error);
    throw error;
  }
}
