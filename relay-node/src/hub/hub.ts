import {
  checkEnvelope,
  checkPublished,
  type Claims,
  CursorExpiredError,
  ForbiddenError,
  REMOTE_TS_AHEAD_MS,
  sourceFor,
  compareCursors,
  contentId,
  cursorFloor,
  followResumeCursor,
  MAX_CLOCK_SKEW_MS,
  cursorTime,
  encodeServerFrame,
  type Envelope,
  envelopeText,
  compareSources,
  HISTORY_PAGE_BYTES,
  type HybridClock,
  isPattern,
  LATE_AFTER_MS,
  type MessageStore,
  matches,
  type PublishItem,
  messageId,
  TopicIndex,
  UnavailableError,
  validateEnvelope,
} from '@anode/shared';
import { type Logger, throttledWarning } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { morePast, pageAndMark } from '../storage/merge-page.ts';
import { createLateArrivals } from './late-arrivals.ts';
import { mergedHistory } from './merged-history.ts';
import { createHeap } from '../heap.ts';
import { SeenIds } from '@anode/shared';
import { createWriter, type WriteResult } from './writer.ts';

/**
 * The local hub: accepts publishes (id, cursor, durable write, then fan-out), and keeps the
 * subscriptions of this node's clients. A subscription that resumes from a cursor first gets
 * everything missed from the store while live messages wait in its buffer, merged into the
 * history by cursor; then the rest of the buffer goes out without the ids already sent,
 * `subscribed` is sent, and it goes live: no gap, no duplicate, even while publishing continues.
 */
export interface Subscriber {
  readonly id: string;
  /** Send a frame; false when the subscriber is gone (closed, or cut off as too slow). */
  send(frame: string): boolean;
  /** Called when catching up outgrows the buffer: the subscriber must be cut off. */
  overflow(): void;
  /**
   * While a resume replays history: undefined when the subscriber can take more now, else a
   * promise of when it can (its unsent bytes fell back), so a long replay goes at the reader's
   * pace instead of filling the send buffer and being cut off as too slow.
   */
  backlog?(): Promise<void> | undefined;
}

interface Entry {
  subscriber: Subscriber;
  pattern: string;
  live: boolean;
  buffer: Envelope[];
}

export interface HubOptions {
  store: MessageStore;
  clock: HybridClock;
  metrics: Metrics;
  log: Logger;
  /** The largest serialized `data` accepted (config `max_message_bytes`), at every entry. */
  maxMessageBytes: number;
  /** Live messages a catching-up subscription may buffer before it is cut off. */
  maxCatchUpBuffer?: number;
  /**
   * Messages may also arrive through `ingest` (a mesh: gossip and catch-up), so every delivered
   * id is remembered, and a copy of one coming back is not delivered twice. Default true. A relay
   * without a mesh passes false: nothing can come back, and remembering each id cost ~1 µs per
   * message (11% of a single relay's event loop at 110,000 msg/s); `ingest` then refuses.
   */
  remoteInputs?: boolean;
  /**
   * Called with the messages `ingest` delivered without storing them (persist mode `origin`: the
   * shared store is the accepting relay's to write). The relay holds them for its history reads
   * until the shared store has them (storage/held-store.ts).
   */
  onUnstored?: (envelopes: Envelope[]) => void;
  /**
   * Other relays write to the store (Cassandra): a message may be stored without passing through
   * this hub, so a resume that retention overtakes cannot count on the live buffer (subscribe).
   */
  storeShared?: boolean;
  /** When this run of the node began (default: now); tests set it back for a node up a while. */
  startedAt?: number;
}

export interface TopicStats {
  published: number;
  delivered: number;
  lastCursor: string | undefined;
  lastPublishedAt: number | undefined;
}

export interface Ack {
  id: string;
  cursor: string;
}

/**
 * Who publishes: a client, whose token binds the source (PROTOCOL.md "Auth"), or a pulled
 * source of this node, publishing under its own (reserved) name. A client's items come from
 * parseClientFrame or parsePublishBody, under a topic already checked (see checkPublished).
 */
export type PublishContext = { via: 'ws' | 'http'; claims: Claims } | { via: 'source'; source: string };

/** encodeServerFrame({ op: 'msg', ...envelope }), byte for byte, with the data serialized at most once. */
export const msgFrame = (envelope: Envelope): string => envelopeText(envelope, '"op":"msg",');

/**
 * How far before `after` a resume replays when `after` was minted before this node started (the
 * subscriber was last served by an earlier run of this node, or by another node). Messages this
 * node stored just before a crash may have been sent and never received, and are not in the late
 * arrivals it remembered (that memory went with the crash); another node may have delivered in a
 * different order. Duplicates share an id and the client library drops them.
 */
export const RESUME_REWIND_MS = 5_000;

/** Ids a resume remembers having sent (see subscribe). */
const RESUME_SENT_IDS = 100_000;

/** A local publish's write options: minted here, so new by construction (see AppendOptions.minted). */
const MINTED = { minted: true } as const;

/** Topics whose counts the hub keeps for status (the most recently published ones). */
export const MAX_TOPIC_STATS = 10_000;

export function createHub(options: HubOptions) {
  const { store, clock, metrics } = options;
  const startedAt = options.startedAt ?? Date.now();
  /**
   * Past every cursor an earlier run of this node stored, so a resume's live buffer covers
   * nothing below it: those messages never come through here again (see subscribe). Its own
   * cursors are below its clock at start (the lease); another node's, observed but not yet
   * leased when it stopped (a peer whose clock runs ahead, a crash before the renewal), below
   * the wall clock (or the lease, if it stepped back) plus MAX_CLOCK_SKEW_MS, the most a cursor
   * from elsewhere may run ahead (a review: 200 of a peer's messages skipped after a restart
   * with the bound at the lease). So for that long after a start, a resume that retention
   * overtakes ends cursor_expired, as it did before the buffer counted at all.
   */
  const startMark = cursorFloor(Math.max(clock.time, startedAt) + MAX_CLOCK_SKEW_MS + 1);
  const maxCatchUpBuffer = options.maxCatchUpBuffer ?? 10_000;
  const index = new TopicIndex<Entry>();
  /** Moves on every change of `index` (status() rebuilds its index of subscribed keys only then). */
  let subscribedVersion = 0;
  let keyIndex: { version: number; keys: TopicIndex<string> } | undefined;
  const entries = new Map<Subscriber, Map<string, Entry>>();
  // Per topic, at most MAX_TOPIC_STATS of the most recently published topics: topics churn (per
  // room, per session), and status() copies them all every second. Each entry notes when it was
  // last used (a counter); at the cap the least recently used tenth goes at once, so a churning
  // topic costs one sort per that many new topics, not a reordering per message.
  const stats = new Map<string, TopicStats & { used: number }>();
  let uses = 0;

  const statsOf = (topic: string): TopicStats => {
    let s = stats.get(topic);
    if (!s) {
      if (stats.size >= MAX_TOPIC_STATS) {
        const oldest = [...stats].sort((a, b) => a[1].used - b[1].used);
        for (const [name] of oldest.slice(0, Math.ceil(MAX_TOPIC_STATS / 10))) stats.delete(name);
      }
      s = { published: 0, delivered: 0, lastCursor: undefined, lastPublishedAt: undefined, used: 0 };
      stats.set(topic, s);
    }
    s.used = ++uses;
    return s;
  };

  const fanOut = (envelope: Envelope, subscribed: Iterable<Entry>, s: TopicStats) => {
    // Encoded once, and only when someone is there to receive it.
    let frame: string | undefined;
    let sentTo: Set<Subscriber> | undefined;
    for (const entry of subscribed) {
      if (!entry.live) {
        entry.buffer.push(envelope);
        if (entry.buffer.length > maxCatchUpBuffer) entry.subscriber.overflow();
        continue;
      }
      // A client with overlapping patterns gets each message once.
      if (sentTo?.has(entry.subscriber)) continue;
      (sentTo ??= new Set()).add(entry.subscriber);
      frame ??= msgFrame(envelope);
      if (entry.subscriber.send(frame)) s.delivered += 1;
    }
    if (sentTo) metrics.delivered.inc(sentTo.size);
  };

  const acceptedListeners = new Set<(envelopes: Envelope[]) => void>();
  const recentRemote = new SeenIds(100_000);
  const remoteInputs = options.remoteInputs !== false;
  const onUnstored = options.onUnstored;
  const late = createLateArrivals();
  let reserved: (source: string) => boolean = () => false;

  /** The source a client's publish is stored under: bound to its token, never a reserved name. */
  const clientSource = (claims: Claims, requested: string | undefined) => {
    const source = sourceFor(claims, requested);
    if (reserved(source)) throw new ForbiddenError(`source ${source} is reserved: a source this node pulls`);
    return source;
  };
  const limits = { maxMessageBytes: options.maxMessageBytes };
  // The published counter per `via`, bound once (a labelled inc hashes its labels every call).
  const publishedChildren = new Map<PublishContext['via'], ReturnType<Metrics['published']['labels']>>();
  const publishedVia = (via: PublishContext['via']) => {
    let child = publishedChildren.get(via);
    if (!child) publishedChildren.set(via, (child = metrics.published.labels({ via })));
    return child;
  };
  const remoteLimits = () => ({ ...limits, now: Date.now(), tsAheadMs: REMOTE_TS_AHEAD_MS });
  // A line per refused envelope let one mesh member grow every relay's log without bound (a
  // batch of oversized or malformed envelopes that passes gossip's own checks): the first at
  // once, then one every 10 s with how many came since; each is counted in anode_errors_total.
  const refusedRemote = throttledWarning(options.log, 'envelope from elsewhere refused');

  // The newest cursor this node has delivered in any topic. Lateness is judged against it, not
  // against the message's own topic: a pattern subscriber resumes from the last cursor it got in
  // any of its topics, so a remote message older than that is skipped by the resume whatever its
  // topic saw (chaos found this: a relay's own message in topic b, then another relay's slightly
  // older one in topic c; the subscriber, cut off in between, resumed past the second one).
  let newestDelivered: string | undefined;
  const countDelivered = (cursor: string) => {
    if (newestDelivered === undefined || compareCursors(cursor, newestDelivered) > 0) newestDelivered = cursor;
  };
  /** Deliver messages in order; the subscribers of a topic are looked up once per run of it. */
  const deliver = (envelopes: readonly Envelope[]) => {
    const now = Date.now();
    let topic: string | undefined;
    let subscribed: Iterable<Entry> = [];
    let s: TopicStats | undefined;
    for (const envelope of envelopes) {
      if (envelope.topic !== topic || !s) {
        topic = envelope.topic;
        subscribed = index.lookup(topic);
        s = statsOf(topic);
      }
      // Local messages too: one committed after a gossiped message was delivered ahead of its
      // own commit (see ingest) may carry an older cursor than that one.
      late.observe(envelope, newestDelivered);
      // With remote inputs, every delivered id, local ones too: a catch-up from a shared store
      // (persist `origin`) reads this node's own messages back and must not deliver them twice.
      if (remoteInputs) recentRemote.add(envelope.id);
      countDelivered(envelope.cursor);
      s.published += 1;
      if (s.lastCursor === undefined || compareCursors(envelope.cursor, s.lastCursor) > 0)
        s.lastCursor = envelope.cursor;
      s.lastPublishedAt = now;
      fanOut(envelope, subscribed, s);
    }
  };

  const writer = createWriter({
    store,
    metrics,
    log: options.log.child({ component: 'writer' }),
    onCommitted(inserted, origin) {
      if (origin !== 'remote') deliver(inserted);
      else {
        // A remote message may have been delivered already (gossip goes out before its commit),
        // maybe under another cursor (one content id accepted at two relays). Its stored cursor
        // counts all the same, or a resume's live buffer was taken to cover it (subscribe), and a
        // resume overtaken there skipped it (a review's repro); counted after the others are
        // delivered, or they became late arrivals.
        const sent = inserted.filter((envelope) => recentRemote.has(envelope.id));
        deliver(sent.length === 0 ? inserted : inserted.filter((envelope) => !recentRemote.has(envelope.id)));
        for (const envelope of sent) countDelivered(envelope.cursor);
      }
      if (origin === 'local' && inserted.length > 0) {
        for (const listener of acceptedListeners) listener(inserted);
      }
    },
  });

  const refuseBefore = (topic: string, trimmed: string | undefined, after: string) => {
    if (trimmed !== undefined && compareCursors(after, trimmed) < 0) {
      throw new CursorExpiredError(
        `cursor ${after} is older than the retained history of ${topic} (trimmed through ${trimmed}); ` +
          'resubscribe without `after` or from a newer cursor',
        { trimmedThrough: trimmed },
      );
    }
  };

  const assertResumable = async (topics: readonly string[], after: string) => {
    for (const topic of topics) refuseBefore(topic, await store.trimmedThrough(topic), after);
  };

  /**
   * The topics a resume of `pattern` from `after` reads, once `after` is found resumable in each
   * topic it matches: those with messages, and those retention emptied (store.trimmedTopics). A
   * topic whose every message expired is in no listing of stored topics, and skipping it was a
   * silent gap: `sub a.> after` a cursor from before a.x expired answered `subscribed`, while
   * `sub a.x` answered `cursor_expired`.
   */
  const resumeTopics = async (pattern: string, after: string): Promise<string[]> => {
    if (!isPattern(pattern)) {
      await assertResumable([pattern], after);
      return [pattern];
    }
    // The listing first: a topic that empties after it is in the marks read after it. Read
    // together (Cassandra), a topic emptied between the two reads was in neither.
    const stored = await store.topics();
    const trimmed = await store.trimmedTopics?.(after);
    const topics = stored.filter((t) => matches(pattern, t));
    if (!trimmed) await assertResumable(topics, after);
    else for (const [topic, mark] of trimmed) if (matches(pattern, topic)) refuseBefore(topic, mark, after);
    return topics;
  };

  /**
   * The cursor a subscription without `after` goes live with: a resume from it must not miss a
   * message this subscription is sent from now on. A new cursor sorted after the publishes
   * accepted but not yet committed (their cursors minted), which reach it live after
   * `subscribed`: a client that resumed from that cursor before getting them never did (a review
   * saw 4 of 40 new subscriptions, at 3,000 msg/s, sent live messages below their cursor). So,
   * with writes waiting, the cursor is just below the oldest of them; but not below LATE_AFTER_MS
   * ago: a waiting message minted before that (a catch-up's, a slow commit's) is a late arrival
   * when it is fanned out, which a resume from a cursor minted since replays (late-arrivals.ts),
   * and a cursor kept from far back would replay all history since (or be refused as expired).
   * Messages fanned out before this that sort after the cursor are sent again by such a resume:
   * those of a millisecond or so, dropped by id.
   */
  const liveCursor = (): string => {
    const pending = writer.oldestPending();
    if (pending === undefined) return clock.next();
    const ms = cursorTime(pending);
    const floor = cursorFloor(ms);
    const below = compareCursors(floor, pending) < 0 ? floor : cursorFloor(ms - 1);
    const lateFloor = cursorFloor(Date.now() - LATE_AFTER_MS);
    return compareCursors(below, lateFloor) > 0 ? below : lateFloor;
  };

  // Set when the node stops: clients' publishes are refused from then on (see refusePublishes).
  let closing = false;

  /** A publish's messages with ids and cursors, checked (throws on a refused one). */
  const prepare = (topic: string, items: readonly PublishItem[], context: PublishContext): Envelope[] => {
    if (closing && context.via !== 'source') {
      throw new UnavailableError('node is shutting down: publish again, here once it is back or at another node');
    }
    const now = Date.now();
    const at = { ...limits, now };
    // A client's items were checked when their frame or body was parsed; what is left is
    // checked here. One bad item refuses the whole publish (its cursors are skipped: gaps are
    // harmless).
    const check = context.via === 'source' ? checkEnvelope : checkPublished;
    const sources = items.map((item) =>
      context.via === 'source' ? context.source : clientSource(context.claims, item.source),
    );
    return items.map((item, i): Envelope => {
      const source = sources[i] as string;
      const id = item.key === undefined ? messageId(now) : contentId(topic, source, item.key);
      return check({ id, topic, cursor: clock.next(), source, ts: item.ts ?? now, data: item.data }, at);
    });
  };

  /** A publish's results counted (published, duplicates, latency since `started`). */
  const counted = (results: WriteResult[], via: PublishContext['via'], started: number): WriteResult[] => {
    let inserted = 0;
    for (const result of results) if (result.inserted) inserted += 1;
    publishedVia(via).inc(inserted);
    if (inserted < results.length) metrics.duplicates.inc(results.length - inserted);
    metrics.publishLatency.observe((performance.now() - started) / 1000);
    return results;
  };

  /** Accept messages: assign ids and cursors, write durably, fan out; resolves with each write's result. */
  const accept = async (topic: string, items: readonly PublishItem[], context: PublishContext) => {
    const started = performance.now();
    const envelopes = prepare(topic, items, context);
    // Minted here: a random id is new by construction, so the store need not look it up.
    return counted(await writer.write(envelopes, 'local', MINTED), context.via, started);
  };

  const toAck = ({ envelope }: WriteResult): Ack => ({ id: envelope.id, cursor: envelope.cursor });

  return {
    writer,

    /**
     * From now on, refuse clients' publishes (`unavailable`): a message accepted while the node
     * stops might be stored after the mesh has stopped gossiping, and reach other relays only
     * when this one comes back. Sources go on until their component stops.
     */
    refusePublishes(): void {
      closing = true;
    },

    /** Accept messages: assign ids and cursors, write durably, fan out; resolves with the acks. */
    async publish(topic: string, items: readonly PublishItem[], context: PublishContext): Promise<Ack[]> {
      return (await accept(topic, items, context)).map(toAck);
    },

    /**
     * publish of one message (a client's `pub` frame), resolving with its ack: the same steps with
     * fewer promises between the commit and the ack. A refused message throws here, synchronously.
     */
    publishOne(topic: string, item: PublishItem, context: PublishContext): Promise<Ack> {
      const started = performance.now();
      const envelopes = prepare(topic, [item], context);
      return writer.write(envelopes, 'local', MINTED).then((results) => {
        const [result] = counted(results, context.via, started);
        if (!result) throw new Error('a publish was accepted without an ack');
        return toAck(result);
      });
    },

    /** publish, resolving with how many messages were new (not already stored): what a source counts. */
    async publishNew(topic: string, items: readonly PublishItem[], context: PublishContext): Promise<number> {
      return (await accept(topic, items, context)).filter((r) => r.inserted).length;
    },

    /**
     * Messages that already have an id and cursor, from elsewhere (mesh gossip, catch-up, an
     * edge link). With `persist`, they are stored (idempotently) and fanned out once committed;
     * without, only fanned out, once per id. Resolves with how many were new here.
     *
     * `deliverFirst` (live gossip): fanned out at once, then stored. The message is durable at
     * the node that accepted it, and this node's copy is a replica, so a subscriber need not wait
     * for it; a receiving relay's commit was most of a gossiped message's latency on a loaded
     * mesh. Delivery is once per id (the recent ids, then the store's answer); a resume waits
     * for the writes queued before it reads history (see subscribe), so it cannot miss a message
     * delivered but not yet stored; if the write fails, the ids are forgotten, so the catch-up
     * that repairs the store delivers them again (a duplicate at most, never a gap).
     */
    async ingest(values: readonly unknown[], options: { persist: boolean; deliverFirst?: boolean }): Promise<number> {
      if (!remoteInputs) throw new Error('hub created without remote inputs (remoteInputs: false) cannot ingest');
      const envelopes = this.checkRemote(values);
      for (const envelope of envelopes) clock.observe(envelope.cursor);
      if (options.persist && options.deliverFirst) {
        const early = envelopes.filter((envelope) => recentRemote.add(envelope.id));
        deliver(early);
        try {
          // Delivered above: not a write whose commit still fans out (see liveCursor).
          const results = await writer.write(envelopes, 'remote', { delivered: true });
          return results.filter((r) => r.inserted).length;
        } catch (error) {
          for (const envelope of early) recentRemote.delete(envelope.id);
          throw error;
        }
      }
      if (options.persist) {
        const results = await writer.write(envelopes, 'remote');
        return results.filter((r) => r.inserted).length;
      }
      const unseen = envelopes.filter((envelope) => recentRemote.add(envelope.id));
      deliver(unseen);
      if (unseen.length > 0) onUnstored?.(unseen);
      return unseen.length;
    },

    /**
     * The message contract for envelopes from elsewhere (mesh, catch-up, an edge link): the valid
     * ones, in order; the others are counted and dropped. `throwFirst` refuses the lot instead.
     */
    checkRemote(values: readonly unknown[], throwFirst = false): Envelope[] {
      const at = remoteLimits();
      const valid: Envelope[] = [];
      for (const value of values) {
        const checked = validateEnvelope(value, at);
        if (checked.ok) valid.push(checked.envelope);
        else if (throwFirst) throw checked.error;
        else {
          metrics.errors.inc({ code: checked.error.code });
          refusedRemote({ code: checked.error.code, reason: checked.reason });
        }
      }
      return valid;
    },

    /** Names no client may publish as (the sources this node pulls); set by the sources component. */
    reserveSources(isReserved: (source: string) => boolean): void {
      reserved = isReserved;
    },

    isReserved: (source: string) => reserved(source),

    /**
     * A cursor minted elsewhere that is stored here as this node's own (an edge link's publish):
     * this node's clock moves past it, so what it accepts next sorts after (hub.ingest does the
     * same for the mesh's messages). Else an edge's clock ahead of this one gave later local
     * messages older cursors, all taken as late arrivals.
     */
    observe: (cursor: string) => clock.observe(cursor),

    /** Listen for messages this node accepted, after they are durable (to gossip or forward them). */
    onAccepted(listener: (envelopes: Envelope[]) => void): () => void {
      acceptedListeners.add(listener);
      return () => acceptedListeners.delete(listener);
    },

    /**
     * Subscribe `subscriber` to a topic or pattern. With `after`, missed messages are sent first.
     * Sends `subscribed` (with `ref`) when the subscription goes live, and resolves with its cursor.
     */
    async subscribe(subscriber: Subscriber, pattern: string, after?: string, ref?: string): Promise<string> {
      // `subscribed` is sent here, in the same tick the entry goes live, so no live message can
      // slip in before it.
      const subscribed = (cursor: string) => {
        subscriber.send(
          encodeServerFrame({ op: 'subscribed', topic: pattern, cursor, ...(ref === undefined ? {} : { ref }) }),
        );
        return cursor;
      };
      // A cursor from a node whose clock is ahead: what is accepted here next sorts after it, or a
      // resume from it (the `subscribed` cursor the client keeps) skipped that (followResumeCursor).
      if (after !== undefined) followResumeCursor(clock, after);
      // Before anything is registered: minting it may throw (a clock lease that cannot be
      // written, on a full disk), and a refused `sub` stayed subscribed, sent live messages.
      const liveAt = after === undefined ? liveCursor() : undefined;
      let own = entries.get(subscriber);
      if (!own) entries.set(subscriber, (own = new Map()));
      const previous = own.get(pattern);
      if (previous) index.delete(pattern, previous);
      subscribedVersion += 1;
      const entry: Entry = { subscriber, pattern, live: after === undefined, buffer: [] };
      own.set(pattern, entry);
      index.add(pattern, entry);
      metrics.subscriptions.set(index.size);
      if (after === undefined) {
        const cursor = liveAt as string; // minted above, before the entry was registered
        // A message from another node with an older cursor that arrives after this answer is
        // sent live, but a resume from `cursor` would skip it: counted as delivered, it makes
        // such a message a late arrival, which that resume replays.
        countDelivered(cursor);
        return subscribed(cursor);
      }

      try {
        // Gossip is delivered before it is stored (see ingest): a message delivered before this
        // entry existed is in the store once the writes queued so far are done.
        await writer.fence();
        // What is delivered from now on reaches the entry's buffer, so retention deleting it while
        // the resume reads loses nothing: only what was delivered already (up to the newest
        // cursor delivered, read after the fence: the writes committed meanwhile count, which
        // only raises it) can be lost to it, and what an earlier run stored (up to startMark:
        // the first delivery after a restart can be an older cursor, a catch-up's or an edge's
        // resend, and the history handed over there skipped the rest of that run's messages).
        // Nothing delivered yet this run: no such bound (the clock's time was 0 with no lease,
        // which exempted every loss). A store other relays write holds messages past any of
        // these that never came through here: none.
        const covered =
          options.storeShared || newestDelivered === undefined
            ? undefined
            : compareCursors(newestDelivered, startMark) > 0
              ? newestDelivered
              : startMark;
        const topics = await resumeTopics(pattern, after);
        let cursor = after;
        // Ids sent by this resume, to skip them when history or the live buffer has them again.
        // The newest RESUME_SENT_IDS only: a resume of millions of messages would otherwise hold
        // every id, and an id forgotten costs at most a duplicate (which clients drop by id).
        const sent = new SeenIds(RESUME_SENT_IDS);
        // The live buffer, merged into the history by cursor: a message delivered while the
        // history is read goes out before the first history message newer than it, not after the
        // whole history. Sent last, it came after newer messages of another topic (a pattern
        // resume whose quiet topic got a message while a busy one was paged) or of its own (a
        // gossiped message delivered before a local one with a newer cursor, stored after the
        // page that held that one), and a client cut off in between resumed above it and lost it
        // with no error (a review's two repros). The buffer stays whole until the entry goes
        // live, so its overflow limit counts as before.
        const buffered = createHeap<Envelope>((a, b) => compareCursors(a.cursor, b.cursor) < 0);
        let absorbed = 0;
        /** Is a buffered message not sent yet below `before` (any at all, without)? */
        const bufferedBelow = (before?: string): boolean => {
          for (; absorbed < entry.buffer.length; absorbed++) buffered.push(entry.buffer[absorbed] as Envelope);
          for (let next = buffered.peek(); next && sent.has(next.id); next = buffered.peek()) buffered.pop();
          const next = buffered.peek();
          return next !== undefined && (before === undefined || compareCursors(next.cursor, before) < 0);
        };
        const sendBuffered = (): boolean => {
          const next = buffered.pop() as Envelope;
          if (!subscriber.send(msgFrame(next))) return false;
          metrics.delivered.inc();
          sent.add(next.id);
          if (compareCursors(next.cursor, cursor) > 0) cursor = next.cursor;
          return true;
        };
        /** The buffered messages below `before`, at the reader's pace; false once this resume ends. */
        const flushBelow = async (before?: string): Promise<boolean> => {
          while (bufferedBelow(before)) {
            const pending = subscriber.backlog?.();
            if (pending) {
              await pending;
              if (own.get(pattern) !== entry) return false;
              // More may have come meanwhile, older ones too: the smallest goes next.
              if (!bufferedBelow(before)) break;
            }
            if (!sendBuffered()) return false;
          }
          return true;
        };
        for (const envelope of late.replay(pattern, after)) {
          const pending = subscriber.backlog?.();
          if (pending) await pending;
          if (own.get(pattern) !== entry) return cursor;
          if (!subscriber.send(msgFrame(envelope))) return cursor;
          metrics.delivered.inc();
          sent.add(envelope.id);
        }
        const minted = cursorTime(after);
        const from = minted > RESUME_REWIND_MS && minted < startedAt ? cursorFloor(minted - RESUME_REWIND_MS) : after;
        for await (const envelope of mergedHistory(store, topics, from, after, covered)) {
          // The message at `after` itself is the one the subscriber has: never sent again.
          if (sent.has(envelope.id) || envelope.cursor === after) continue;
          const pending = subscriber.backlog?.();
          if (pending) await pending;
          if (own.get(pattern) !== entry) return cursor; // unsubscribed meanwhile
          // Checked last, with no await between the check and the send.
          while (bufferedBelow(envelope.cursor)) {
            if (!(await flushBelow(envelope.cursor)) || own.get(pattern) !== entry) return cursor;
          }
          if (sent.has(envelope.id)) continue; // it came from the buffer meanwhile
          if (!subscriber.send(msgFrame(envelope))) return cursor;
          metrics.delivered.inc();
          sent.add(envelope.id);
          // Delivered as much as a live one: the store shows a commit before its fan-out, and a
          // message from elsewhere with an older cursor arriving in between was not taken as late,
          // so a resume from this cursor skipped it (a review's repro).
          countDelivered(envelope.cursor);
          if (compareCursors(envelope.cursor, cursor) > 0) cursor = envelope.cursor;
        }
        // History may have shown messages whose commit has not reached fan-out yet (the store
        // commits off the event loop); they reach this entry's buffer once it has, and are
        // skipped there as sent. Going live first would send them again.
        await writer.settled();
        // Unsubscribed, or replaced by a newer `sub` for the same pattern, while catching up:
        // that one answers the client; this one must neither go live nor send `subscribed`.
        if (own.get(pattern) !== entry) return cursor;
        // The rest of the buffer in cursor order, paced like the history (unpaced, a buffer of
        // thousands filled the send buffer and cut the reader off in the middle of it); then,
        // with no await before the entry goes live, what came in the last turns.
        if (!(await flushBelow())) return cursor;
        if (own.get(pattern) !== entry) return cursor;
        while (bufferedBelow()) if (!sendBuffered()) return cursor;
        entry.buffer = [];
        entry.live = true;
        return subscribed(cursor);
      } catch (error) {
        // Remove only this attempt's entry: a newer subscription to the same pattern stays.
        if (own.get(pattern) === entry) this.unsubscribe(subscriber, pattern);
        throw error;
      }
    },

    unsubscribe(subscriber: Subscriber, pattern: string): boolean {
      const own = entries.get(subscriber);
      const entry = own?.get(pattern);
      if (!own || !entry) return false;
      own.delete(pattern);
      index.delete(pattern, entry);
      subscribedVersion += 1;
      metrics.subscriptions.set(index.size);
      return true;
    },

    isSubscribed(subscriber: Subscriber, pattern: string): boolean {
      return entries.get(subscriber)?.has(pattern) ?? false;
    },

    subscriptionCount(subscriber: Subscriber): number {
      return entries.get(subscriber)?.size ?? 0;
    },

    removeSubscriber(subscriber: Subscriber): void {
      for (const [pattern, entry] of entries.get(subscriber) ?? []) index.delete(pattern, entry);
      subscribedVersion += 1;
      entries.delete(subscriber);
      metrics.subscriptions.set(index.size);
    },

    /**
     * One page of a topic's history (refuses cursors older than retention), at most `limit`
     * messages and HISTORY_PAGE_BYTES of data (one message always). `next` is the last cursor
     * whenever more may follow: the page is full, or it is short and one more read finds a
     * message after it (a page cut by bytes looks like the end otherwise).
     */
    async history(topic: string, after: string | undefined, limit: number) {
      // A poller pages on from `after` while `next` is null: as for a resume (see subscribe).
      if (after !== undefined) followResumeCursor(clock, after);
      const query = { after, limit, maxBytes: HISTORY_PAGE_BYTES };
      // Retention runs beside the read (the writer thread, Cassandra's TTL): refused only if the
      // page was read under a mark past `after` (pageAndMark). A page read whole is answered even
      // if the mark passes `after` just after it; the next page is refused if it passed `next`.
      const { messages, trimmedThrough } = await pageAndMark(store, topic, query);
      if (after !== undefined) refuseBefore(topic, trimmedThrough, after);
      const more = await morePast(store, topic, query, messages);
      return { messages, next: more ? (messages.at(-1)?.cursor ?? null) : null };
    },

    /**
     * The late arrivals of `topic` a resume from `after` replays before its history (the rule of
     * subscribe above), in cursor order; those above `from` when paging. An edge's resume from
     * this relay's history asks for them (edge-link.ts): they are in no page after `after`.
     */
    lateFor(topic: string, after: string, from?: string): Envelope[] {
      const all = late.replay(topic, after);
      return from === undefined ? all : all.filter((m) => compareCursors(m.cursor, from) > 0);
    },

    /**
     * One page of the newest message per source: the sources after `after` in source order, at
     * most `limit` and HISTORY_PAGE_BYTES of data (one source always). `next`, the page's last
     * source, is there when one more read (one source) finds a source after it: a full page or one
     * cut by bytes may be the end or not. Unbounded, one topic of many large sources
     * was one answer of hundreds of MB built on the event loop, or none at all past ~512 MB.
     */
    async latest(topic: string, after: string | undefined, limit: number) {
      const query = { after, limit, maxBytes: HISTORY_PAGE_BYTES };
      const sources = await store.latest(topic, query);
      const names = Object.keys(sources);
      // Not the last key: an object lists integer-like names ("42") first.
      const last = names.length === 0 ? undefined : names.reduce((a, b) => (compareSources(a, b) >= 0 ? a : b));
      if (last === undefined) return { sources };
      const more = Object.keys(await store.latest(topic, { after: last, limit: 1 })).length > 0;
      // Only while more follow: a topic of one page is answered as before paging (and as the edge does).
      return more ? { sources, next: last } : { sources };
    },

    /** The subscribed topics and patterns (the mesh carries their shards), without status()'s counting. */
    subscribedKeys: (): Iterable<string> => index.counts().keys(),

    status() {
      const subscribers = index.counts();
      // Per topic, every subscription that matches it (its own and each pattern's), looked up in
      // an index of the subscribed keys rather than of the subscriptions: a pattern that 10,000
      // clients hold is one key to add, not 10,000 subscriptions to walk for every topic.
      if (keyIndex?.version !== subscribedVersion) {
        const built = new TopicIndex<string>();
        for (const key of subscribers.keys()) built.add(key, key);
        keyIndex = { version: subscribedVersion, keys: built };
      }
      const { keys } = keyIndex;
      const matching = (topic: string) => {
        let total = 0;
        for (const key of keys.lookup(topic)) total += subscribers.get(key) ?? 0;
        return total;
      };
      const topics = [...stats.entries()].map(([topic, s]) => ({
        topic,
        published: s.published,
        delivered: s.delivered,
        last_cursor: s.lastCursor ?? null,
        last_published_at: s.lastPublishedAt ?? null,
        subscribers: subscribers.get(topic) ?? 0,
        matching_subscribers: matching(topic),
      }));
      return { subscriptions: index.size, subscribers: Object.fromEntries(subscribers), topics };
    },
  };
}

export type Hub = ReturnType<typeof createHub>;
