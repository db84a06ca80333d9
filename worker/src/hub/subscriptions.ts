import {
  AnodeError,
  compareCursors,
  CursorExpiredError,
  type Envelope,
  followResumeCursor,
  type RelayReply,
  utf8Length,
} from '@anode/shared';
import { msgFrame, type StoredMessage } from './hub-store.ts';
import type { HubCore } from './hub-core.ts';
import { mergeByCursor } from './pages.ts';

/**
 * Subscribing a client socket, with a relay's semantics: with `after`, everything missed is sent
 * first, then `subscribed`, then live messages, with no gap. A cursor at or above the ring's floor
 * is served from the ring, synchronously (no live message can slip in between). An older one is
 * served from the relay's history over the link, page by page, while the socket is held out of
 * live fan-out; the ring and the unforwarded publishes then fill in what arrived meanwhile, in the
 * same synchronous step that makes the socket live. Duplicates may occur (same id); gaps may not.
 *
 * workerd cannot say how much a socket has not sent yet, so a resume may send at most
 * MAX_SEND_BUFFER_BYTES: past that the socket is closed as a slow consumer (4001) after what was
 * sent, and the client resumes from its last cursor, one bounded step at a time.
 *
 * A resume from the relay's history settles (for the ping order, client-frames.ts) once its
 * `subscribed` or err is sent, or at once when a later `sub`/`unsub` on the socket drops it: it
 * sends nothing more after that, though its request to the relay may still be out.
 */
const PAGE = 500;

/**
 * What a resume may still send (`left`), and of it what late arrivals may take (`lateLeft`): the
 * replayed late arrivals (cursor at or below the resume's `after`) come first, and a resume closed
 * for its budget by them alone made no progress: the client resumed from the same cursor, got the
 * same ones and the same close, for as long as they were remembered (a review's repro). Past their
 * share they are skipped (counted by cursor: `lateKnown` not in `lateSentCursors`), as a relay lets
 * go of them past its bounds (PROTOCOL.md: late arrivals in larger numbers may be missed), and the
 * resume goes on.
 */
type Budget = {
  left: number;
  lateLeft: number;
  after: string;
  /** Cursors of every late arrival this resume heard of, the relay's and this object's (each once). */
  lateKnown: Set<string>;
  /** Cursors of the late arrivals it sent. */
  lateSentCursors: Set<string>;
  /** The newest cursor sent: where a client cut off now resumes from. */
  top: string;
  progressed: boolean;
};

/** The share of a resume's send budget late arrivals may take. */
const LATE_SHARE = 0.5;

export function createSubscriptions(
  core: Pick<HubCore, 'clients' | 'store' | 'clock' | 'link' | 'config' | 'topic' | 'ctx' | 'linked' | 'hear'>,
) {
  const { clients, store, clock, link } = core;
  const newBudget = (after: string): Budget => ({
    left: core.config.MAX_SEND_BUFFER_BYTES,
    lateLeft: Math.floor(core.config.MAX_SEND_BUFFER_BYTES * LATE_SHARE),
    after,
    lateKnown: new Set(),
    lateSentCursors: new Set(),
    top: after,
    progressed: false,
  });

  /**
   * Whether a late arrival of `size` bytes fits, `held` bytes of them being chosen already: within
   * the share, or the first of all when it fits the whole budget (one message larger than the
   * share, 5 MiB against a 4 MiB share, was never replayed; one alone cannot close the resume
   * before progress, see sendAll).
   */
  const lateFits = (budget: Budget, held: number, size: number) =>
    held + size <= budget.lateLeft || (held === 0 && budget.lateSentCursors.size === 0 && size <= budget.left);

  /**
   * The newest late arrivals that fit in `limit` bytes (UTF-8), kept as they are read in cursor order
   * (what is let go is let go at once: at most `limit` bytes held) and taken in cursor order. The
   * newest are the ones a client away from `after` most likely missed: those of the minute before
   * it left (the replay window starts a clock skew before `after` was minted) reached it live.
   */
  const newestLate = (limit: number) => {
    const kept: ({ message: StoredMessage; size: number } | undefined)[] = [];
    let head = 0;
    let bytes = 0;
    return {
      add(message: StoredMessage) {
        const size = utf8Length(message.body);
        kept.push({ message, size });
        bytes += size;
        // The newest is kept whatever its size: lateFits decides (a lone one larger than the share
        // is sent when it fits the whole budget; a review found the relay's never was).
        for (; bytes > limit && head < kept.length - 1; head++) {
          const old = kept[head] as { message: StoredMessage; size: number };
          bytes -= old.size;
          kept[head] = undefined;
        }
        if (head * 2 > kept.length) {
          kept.splice(0, head);
          head = 0;
        }
      },
      take: (): StoredMessage[] => kept.slice(head).map((entry) => (entry as { message: StoredMessage }).message),
    };
  };

  /**
   * The newest late arrivals of the relay's (newest first, held) and this object's (store.lateFor:
   * newest first, read as taken) within the budget's late share, each id once, in cursor order.
   * This object's are read only down to the first that does not fit: the rest are known by cursor
   * (lateKnown, for the warning), never read.
   */
  const lateWithin = (
    budget: Budget,
    relays: StoredMessage[],
    own: ReturnType<HubCore['store']['lateFor']>,
    skip?: Set<string>,
  ): StoredMessage[] => {
    const seen = new Set<string>();
    const chosen: StoredMessage[] = [];
    let bytes = 0;
    for (const cursor of own.cursors) budget.lateKnown.add(cursor);
    for (const message of mergeByCursor(relays, own.newestFirst, true)) {
      const { id } = message.envelope;
      if (seen.has(id) || skip?.has(id)) continue;
      seen.add(id);
      const size = utf8Length(message.body);
      if (!lateFits(budget, bytes, size)) break;
      bytes += size;
      chosen.push(message);
    }
    return chosen.reverse();
  };

  const withRef = (ref: string | undefined) => (ref === undefined ? {} : { ref });
  /** Settles the resume in progress on a socket (this instance's memory, like the resume itself). */
  const resuming = new WeakMap<WebSocket, () => void>();
  /** A `sub` or `unsub`: the socket's resume in progress, if any, is dropped and settles now. */
  const nextGen = (ws: WebSocket, change: { subscribed: boolean; live: boolean }) => {
    resuming.get(ws)?.();
    resuming.delete(ws);
    return clients.update(ws, { ...change, gen: clients.state(ws).gen + 1 }).gen;
  };

  const goLive = (ws: WebSocket, gen: number, cursor: string, ref: string | undefined, budget?: Budget) => {
    if (clients.state(ws).gen !== gen) return;
    let skipped = 0;
    for (const cursor of budget?.lateKnown ?? []) if (!budget?.lateSentCursors.has(cursor)) skipped += 1;
    if (skipped > 0) {
      console.warn(
        JSON.stringify({
          msg: 'edge: a resume skipped late arrivals past their share of the send buffer (MAX_SEND_BUFFER_BYTES)',
          topic: core.topic,
          skipped,
        }),
      );
    }
    clients.update(ws, { live: true });
    clients.frame(ws, { op: 'subscribed', topic: core.topic, cursor, ...withRef(ref) });
  };

  /**
   * Refuse a resume from a cursor in the range the store marked unsafe (store.expired): it may be
   * past messages this edge can no longer send. True when refused.
   */
  const refusedAsExpired = (ws: WebSocket, after: string, ref: string | undefined): boolean => {
    const expired = store.expired();
    if (!expired || compareCursors(after, expired.from) <= 0 || compareCursors(after, expired.through) >= 0) {
      return false;
    }
    clients.update(ws, { subscribed: false });
    clients.error(
      ws,
      new CursorExpiredError(
        `cursor ${after} may be past messages this edge can no longer send (it lost its place in the topic, ` +
          `or more arrived during a resume than it could hold); resubscribe without \`after\` or from a cursor at or after ${expired.through}`,
      ),
      ref,
    );
    return true;
  };

  /**
   * Send messages not sent yet; the cursor reached, or undefined when the budget ran out. Stored
   * messages are read as they are sent, so the budget also bounds what a resume loads.
   */
  const sendAll = (
    ws: WebSocket,
    messages: Iterable<StoredMessage>,
    cursor: string,
    budget: Budget,
    skip?: Set<string>,
  ) => {
    for (const { envelope, body } of messages) {
      if (skip?.has(envelope.id)) continue;
      const late = compareCursors(envelope.cursor, budget.after) <= 0;
      // UTF-8 bytes, as every limit counts (a review: CJK data sent 3× the budget, in characters).
      const size = utf8Length(body);
      if (late) {
        if (!lateFits(budget, 0, size)) continue;
        budget.lateLeft = Math.max(0, budget.lateLeft - size);
        budget.lateSentCursors.add(envelope.cursor);
      }
      budget.left -= size;
      // One message after `after` always goes, as a page holds one at least: closed before any,
      // the client would resume from the same cursor to the same close.
      if (budget.left < 0 && (budget.progressed || late)) {
        clients.close(ws, 'slow_consumer', 'catch-up is larger than the send buffer; resume from your last cursor');
        return undefined;
      }
      if (!late) budget.progressed = true;
      skip?.add(envelope.id);
      clients.send(ws, msgFrame(body));
      // A cursor handed out is a lateness reference here (store.noteHanded), and this object's
      // clock moves past it, so what is published here next is not stamped below it (a relay's
      // clock ahead made every publish of the next seconds a late arrival, and those filled the
      // late share of later resumes ahead of the late arrivals they had missed).
      store.noteHanded(envelope.cursor);
      clock.observe(envelope.cursor);
      if (compareCursors(envelope.cursor, cursor) > 0) cursor = envelope.cursor;
      if (compareCursors(envelope.cursor, budget.top) > 0) budget.top = envelope.cursor;
    }
    return cursor;
  };

  /** What a resume from the relay's history heard fanned out here while it ran (heard.ts). */
  type Held = {
    /** Those heard above the resume's `after`, up to `cursor` (all without it), not sent yet, in cursor order. */
    upTo(cursor?: string): StoredMessage[];
    /** Whether the log let go of some it had heard (more than MAX_SEND_BUFFER_BYTES arrived). */
    lost(): boolean;
  };

  /**
   * Relay history after `after`, to the end, sent as it comes, each page merged by cursor with
   * what was heard here up to its last cursor (so a client cut off after it has everything below
   * where it resumes from, as a relay's resume flushes its buffer below each message it sends):
   * the cursor reached (undefined when the resume ended), and whether the relay refused a page at
   * or above the ring's floor.
   */
  const fromRelay = async (
    ws: WebSocket,
    gen: number,
    after: string,
    budget: Budget,
    sent: Set<string>,
    answered: () => boolean,
    held: Held,
  ) => {
    let cursor: string | undefined = after;
    for (let page: string | null = after; page !== null && cursor !== undefined;) {
      let reply: RelayReply<'history'>;
      try {
        reply = await link.request({ op: 'history', after: page, limit: PAGE });
      } catch (error) {
        // The relay's retention passed `page` (its last page was cut, or answered `next` because
        // the rest expired meanwhile): what follows the ring's floor is in the ring, sent after
        // this, so the resume has lost nothing when `page` is at or above it.
        const expired = error instanceof AnodeError && error.code === 'cursor_expired';
        if (expired && clients.state(ws).gen === gen && compareCursors(page, store.floor()) >= 0) {
          return answered() ? { cursor, ringHasRest: true } : undefined;
        }
        throw error;
      }
      if (clients.state(ws).gen !== gen || !answered()) return undefined;
      if (held.lost()) {
        // Closed before any page past what it let go: the client resumes from below it.
        clients.close(
          ws,
          'slow_consumer',
          'more arrived during catch-up than the send buffer holds; resume from your last cursor',
        );
        return undefined;
      }
      const got = reply.messages.map(asStored);
      const last = got.at(-1)?.envelope.cursor;
      cursor = sendAll(ws, last === undefined ? got : mergeByCursor(got, held.upTo(last)), cursor, budget, sent);
      store.saveHanded();
      page = reply.next;
    }
    return cursor === undefined ? undefined : { cursor, ringHasRest: false };
  };

  /**
   * The late arrivals a resume from the relay's history replays, chosen before the first page is
   * asked for and sent once it is answered (the relay checks `after` against its retention there:
   * a cursor it no longer keeps is refused before any message, as PROTOCOL.md says), before its
   * messages (the pages could use up the budget and leave a later resume's window past them): the
   * relay's own (its resume from `after` replays them: one that reached it while this object's
   * link was closed is in no page, and this object never heard of it) and this object's, the
   * newest that fit their share across both. A relay from before the `late` frame refuses it
   * (bad_frame): then only this object's. Undefined when the resume ended meanwhile (a later
   * `sub`/`unsub`).
   */
  const chooseLate = async (ws: WebSocket, gen: number, after: string, budget: Budget, sent: Set<string>) => {
    const relays = newestLate(budget.lateLeft);
    for (let from: string | undefined; ;) {
      let reply: RelayReply<'late'>;
      try {
        reply = await link.request({ op: 'late', after, ...(from === undefined ? {} : { from }) });
      } catch (error) {
        if (error instanceof AnodeError && error.code === 'bad_frame') break;
        throw error;
      }
      if (clients.state(ws).gen !== gen) return undefined;
      for (const envelope of reply.messages) {
        budget.lateKnown.add(envelope.cursor);
        relays.add(asStored(envelope));
      }
      // Each page starts above the last one (a relay that does not move on is not asked again).
      if (reply.next === null || reply.messages.length === 0) break;
      if (from !== undefined && compareCursors(reply.next, from) <= 0) break;
      from = reply.next;
    }
    if (clients.state(ws).gen !== gen) return undefined;
    return lateWithin(budget, relays.take().reverse(), store.lateFor(after), sent);
  };

  /**
   * What this object holds that a resume from `after` missed: its late arrivals not sent yet, the
   * newest that fit what is left of their share (store.lateFor), then what follows `after`
   * (store.since) merged by cursor with `held` (what a resume from the relay's history heard and
   * has not sent); as sendAll.
   */
  const sendMissed = (
    ws: WebSocket,
    cursor: string,
    budget: Budget,
    sent?: Set<string>,
    held: StoredMessage[] = [],
  ) => {
    const reached = sendAll(ws, lateWithin(budget, [], store.lateFor(budget.after), sent), cursor, budget, sent);
    return reached === undefined
      ? undefined
      : sendAll(ws, mergeByCursor(store.since(budget.after), held), reached, budget, sent);
  };

  /**
   * A resume from the relay's history. It hears what is fanned out here meanwhile (core.hear)
   * and sends it merged into the pages and the end by cursor, before `subscribed`: a message
   * minted elsewhere that reached the relay after the page its cursor falls in was read is in no
   * page, and the ring may have let it go by the end (a review's repro answered `subscribed`
   * without it). Ended before it went live (cut for its budget, dropped by a later `sub` or
   * `unsub`, refused), what it heard and did not send with a cursor below where it left the
   * client becomes a late arrival here (store.markLate), replayed to the client's next resume
   * from there; what the log let go for its bound meanwhile (more than MAX_SEND_BUFFER_BYTES
   * arrived) closes the resume at once, and refuses that next resume (store.expire) if any of
   * it was below.
   */
  const catchUp = async (ws: WebSocket, gen: number, after: string, ref: string | undefined) => {
    const sent = new Set<string>();
    const budget = newBudget(after);
    // Only what this resume would still send counts as lost (above `after`, not sent yet).
    const needed = (m: StoredMessage) => compareCursors(m.envelope.cursor, after) > 0 && !sent.has(m.envelope.id);
    const hearing = core.hear(needed);
    // What it heard and has not sent, above `after`, in cursor order; read from the log at each
    // step, so a page costs what arrived since the last one (a rescan of all it heard, per page,
    // was quadratic: 41 ms a page at the bound). Sent ones leave the front as the pages pass them.
    const pending: StoredMessage[] = [];
    let pendingBytes = 0;
    const refresh = () => {
      while (pending.length > 0 && sent.has((pending[0] as StoredMessage).envelope.id)) {
        pendingBytes -= utf8Length((pending.shift() as StoredMessage).body);
      }
      for (const message of hearing.read()) {
        if (!needed(message)) continue;
        let at = pending.length;
        while (
          at > 0 &&
          compareCursors((pending[at - 1] as StoredMessage).envelope.cursor, message.envelope.cursor) > 0
        )
          at--;
        pending.splice(at, 0, message);
        pendingBytes += utf8Length(message.body);
      }
    };
    const held: Held = {
      upTo(cursor) {
        refresh();
        if (cursor === undefined) return pending.filter((m) => !sent.has(m.envelope.id));
        const found: StoredMessage[] = [];
        for (const m of pending) {
          if (compareCursors(m.envelope.cursor, cursor) > 0) break;
          if (!sent.has(m.envelope.id)) found.push(m);
        }
        return found;
      },
      lost() {
        refresh();
        return hearing.lowestLost !== undefined || pendingBytes > core.config.MAX_SEND_BUFFER_BYTES;
      },
    };
    let done = false;
    /** The resume ends here: keep what the client was not sent below where it stands (above). */
    const end = (live: boolean) => {
      if (done) return;
      done = true;
      try {
        if (!live) {
          for (const { envelope, body } of held.upTo(budget.top)) store.markLate(envelope, body);
          const lost = hearing.lowestLost;
          if (lost !== undefined && compareCursors(lost, budget.top) < 0) store.expire(lost, clock.next());
        }
      } finally {
        hearing.stop();
      }
    };
    // A later `sub`/`unsub` on the socket drops this resume (nextGen): it ends then, before the
    // next resume reads the late arrivals, not when the relay answers this one's request.
    const settle = resuming.get(ws);
    if (settle) {
      resuming.set(ws, () => {
        end(false);
        settle();
      });
    }
    let cursor = after;
    try {
      const late = await chooseLate(ws, gen, after, budget, sent);
      if (late === undefined) return;
      // Sent once the first page is answered (so after the relay found `after` within what it keeps).
      let pending: StoredMessage[] | undefined = late;
      const answered = () => {
        if (pending === undefined) return true;
        const reached = sendAll(ws, pending, after, budget, sent);
        pending = undefined;
        return reached !== undefined;
      };
      // Trimming the ring while we page could drop something the relay had not stored when we
      // asked, so page again until the floor holds still over a whole pass; not past a page
      // refused at or above the floor (the ring has the rest; asking again could only be refused
      // once a trim lifted the floor past it).
      for (let floor = ''; floor !== store.floor();) {
        floor = store.floor();
        const reached = await fromRelay(ws, gen, cursor, budget, sent, answered, held);
        if (reached === undefined) return;
        cursor = reached.cursor;
        if (reached.ringHasRest) break;
      }
      if (clients.state(ws).gen !== gen) return;
      // The link may have lost its place while the relay was asked (hub-core's onGap widens the
      // expired range): checked again here, in the step that makes the socket live. A late message
      // that arrived meanwhile (a cursor at or below `after`, so in no page) is kept as a late
      // arrival (store.receive) and replayed by sendMissed below.
      if (refusedAsExpired(ws, after, ref)) return;
      if (held.lost()) {
        clients.close(
          ws,
          'slow_consumer',
          'more arrived during catch-up than the send buffer holds; resume from your last cursor',
        );
        return;
      }
      // What this object holds after `after` (and any late arrival it kept since chooseLate read),
      // merged with what it heard during the resume and has not sent.
      const reached = sendMissed(ws, cursor, budget, sent, held.upTo());
      if (reached === undefined) return;
      end(true);
      goLive(ws, gen, reached, ref, budget);
    } catch (error) {
      if (clients.state(ws).gen !== gen) return;
      clients.update(ws, { subscribed: false });
      clients.error(ws, error, ref);
    } finally {
      end(false);
    }
  };

  return {
    /** Resolves when a resume from the relay's history settles; undefined when answered already. */
    subscribe(ws: WebSocket, after: string | undefined, ref: string | undefined): void | Promise<void> {
      const gen = nextGen(ws, { subscribed: true, live: false });
      // Linked, a fresh subscription starts where the topic stands here, not at the clock: a mesh
      // message minted just before (at a relay) and still on its way sorted below the clock's
      // cursor and was skipped by a resume from it. Anything arriving at or below this position
      // is marked late and replayed (hub-store.ts).
      if (after === undefined) return goLive(ws, gen, core.linked ? store.position() : clock.next(), ref);
      if (refusedAsExpired(ws, after, ref)) return;
      // A cursor from a node whose clock is ahead (a client failing over): what is published here
      // next sorts after it, or the client's next resume from it skipped that. The clock only: as a
      // lateness reference (`handed`) one reader's cursor made every relay message of the next
      // seconds late (re-sent to every resume, copied to late_kept) and cost a storage write per
      // request. Kept in memory: an object is evicted only after idle seconds, by which time the
      // wall clock has passed a cursor at most RESUME_AHEAD_MS ahead.
      followResumeCursor(clock, after);
      if (compareCursors(after, store.floor()) >= 0) {
        const budget = newBudget(after);
        const reached = sendMissed(ws, after, budget);
        return reached === undefined ? undefined : goLive(ws, gen, reached, ref, budget);
      }
      if (!core.linked) {
        clients.update(ws, { subscribed: false });
        clients.error(
          ws,
          new CursorExpiredError(
            `cursor ${after} is older than this edge keeps (from ${store.floor()}) and no relay is configured; ` +
              'resubscribe without `after` or from a newer cursor',
          ),
          ref,
        );
        return;
      }
      return new Promise<void>((settle) => {
        resuming.set(ws, settle);
        const done = catchUp(ws, gen, after, ref).finally(() => {
          // Still this resume's (catchUp may have wrapped `settle`), unless a later sub/unsub took over.
          if (clients.state(ws).gen === gen) resuming.delete(ws);
          settle();
        });
        core.ctx.waitUntil(done);
      });
    },

    unsubscribe(ws: WebSocket): void {
      nextGen(ws, { subscribed: false, live: false });
    },
  };
}

const asStored = (envelope: Envelope): StoredMessage => ({ envelope, body: JSON.stringify(envelope) });
