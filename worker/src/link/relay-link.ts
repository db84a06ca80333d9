import {
  AnodeError,
  compareCursors,
  cursorFloor,
  cursorTime,
  type EdgeFrame,
  encodeEdgeFrame,
  encodeLinkPub,
  type Envelope,
  InternalError,
  isCursor,
  parseRelayFrame,
  randomId,
  type RelayFrame,
  type RelayReply,
  UnavailableError,
} from '@anode/shared';
import type { EdgeConfig } from '../config.ts';
import { createDialer } from './dialer.ts';
import type { LinkStore } from './link-store.ts';
import { createRelayLimit } from './relay-limit.ts';
import { createReservedSources } from './reserved-sources.ts';

/**
 * The Durable Object's end of its relay link. The relay dials in (a hibernatable socket here, so
 * the object still hibernates with its link open); to get one, the object sends a dial request
 * (dialer.ts) and waits for the relay to call back. The link is wanted while the object has
 * clients, unforwarded publishes or a pending history request, and closed when it has been
 * unwanted for LINK_IDLE_MS. Its mesh subscription resumes from the last cursor received, so a
 * dropped link misses nothing; after an idle close it restarts from now (the ring's floor rises).
 */
export const LINK_TAG = 'link';
/** Clock skew allowed between this object and the relays when a mesh subscription restarts. */
export const RESTART_MARGIN_MS = 2_000;
const SUB_REF = 'link-sub';
/** A refused resume is asked again after 250 ms, doubling up to this. */
const SUB_RETRY_MAX_MS = 10_000;

/**
 * The trim mark a relay names in the text of its `cursor_expired` ("… trimmed through <cursor>) …"),
 * for a relay older than the `err` frame's `trimmed` field; one that words it otherwise is
 * retried with backoff.
 */
export function trimMark(message: string): string | undefined {
  const found = /trimmed through ([0-9a-f]{16}-[a-z0-9]{1,32})\b/.exec(message)?.[1];
  return found !== undefined && isCursor(found) ? found : undefined;
}
/** A link frame's payload stays well under workerd's 32 MiB WebSocket message cap. */
const LINK_FRAME_BYTES = 4 * 1024 * 1024;
/** Publish frames sent and not acked yet: bounds what a long outbox puts in memory at once. */
const MAX_IN_FLIGHT = 4;

/** Requests the object makes of the relay, by op (the link adds the ref). */
type LinkRequests = { [Op in 'history' | 'late' | 'latest']: Omit<Extract<EdgeFrame, { op: Op }>, 'ref'> };

/** Kept in the link socket's attachment, so it survives hibernation. */
interface LinkState {
  since: number;
  relay: string | undefined;
  /** The relay has sent everything since our resume point: the ring is complete above its floor. */
  caughtUp: boolean;
}

interface Pending {
  resolve: (frame: RelayFrame) => void;
  reject: (error: AnodeError) => void;
  timer: ReturnType<typeof setTimeout>;
}

export interface LinkDeps {
  ctx: DurableObjectState;
  store: LinkStore;
  config: EdgeConfig;
  topic: () => string;
  /** A message from the mesh. */
  onMessage(envelope: Envelope, body: string): void;
  /**
   * The relay refused to resume the mesh subscription (`refused`: the resume point it refused), or
   * took a restart only after refusing some: clients may have missed messages.
   */
  onGap(refused: string | undefined): void;
  /**
   * The ring's floor was raised to `floor` (a restart of the mesh subscription): the object's
   * clock moves past it, so what it accepts next sorts above the floor and is kept in the ring.
   */
  onFloor?(floor: string): void;
  /** Whether anything here needs a link now. */
  wanted(): boolean;
  reschedule(): Promise<void>;
}

export function createRelayLink(deps: LinkDeps) {
  const { ctx, store, config } = deps;
  const pending = new Map<string, Pending>();
  const waiters = new Set<(ws: WebSocket | undefined) => void>();
  const reserved = createReservedSources(store.meta);
  const relayLimit = createRelayLimit(store.meta, config.MAX_MESSAGE_BYTES, deps.topic);
  const reservedWaiters = new Set<() => void>();
  let sentSeq = 0;
  let inFlight = 0;
  let lastSendAt = 0;
  const counts = { in: 0, out: 0, refusedFrames: 0 };
  /**
   * A `pub` frame's size, halved (for this instance) each time the relay refuses a whole frame as
   * malformed or too large: a relay with smaller limits than this edge's still takes smaller frames,
   * instead of refusing the same frames again on every resend.
   */
  let batchLimit = config.LINK_BATCH;
  let frameBytes = LINK_FRAME_BYTES;
  /** The `pub` frames in flight, by ref: what a refused one held. */
  const unacked = new Map<string, { messages: number; bytes: number }>();
  const dialer = createDialer({ store, config, topic: deps.topic, settled: deps.reschedule });

  const socket = (): WebSocket | undefined =>
    ctx.getWebSockets(LINK_TAG).find((ws) => ws.readyState === WebSocket.OPEN);

  const send = (ws: WebSocket, frame: EdgeFrame) => {
    ws.send(encodeEdgeFrame(frame));
  };

  const stateOf = (ws: WebSocket) => ws.deserializeAttachment() as LinkState;

  /** Publishes waiting for the reserved names go on (the names came, or none will). */
  const wakeReserved = () => {
    for (const wake of reservedWaiters) wake();
    reservedWaiters.clear();
  };

  /** Send stored publishes the relay has not been sent on this link yet, in bounded frames. */
  const forward = (ws = socket()) => {
    if (!ws) return;
    while (inFlight < MAX_IN_FLIGHT) {
      const batch: { seq: number; body: string }[] = [];
      let bytes = 0;
      for (const row of store.outbox.after(sentSeq)) {
        if (batch.length > 0 && bytes + row.body.length > frameBytes) break;
        bytes += row.body.length;
        batch.push(row);
        if (batch.length >= batchLimit) break;
      }
      const last = batch.at(-1);
      if (!last) return;
      const ref = `pub-${last.seq}`;
      ws.send(
        encodeLinkPub(
          ref,
          batch.map((m) => m.body),
        ),
      );
      unacked.set(ref, { messages: batch.length, bytes });
      counts.out += batch.length;
      sentSeq = last.seq;
      inFlight += 1;
      lastSendAt = Date.now();
    }
  };

  /** Send everything unacked again, from the start (the relay dedups by id). */
  const resend = (ws = socket()) => {
    sentSeq = 0;
    inFlight = 0;
    unacked.clear();
    forward(ws);
  };

  const subscribe = (ws: WebSocket) => {
    const after = store.meta.get('resume_from');
    send(ws, { op: 'sub', ref: SUB_REF, ...(after ? { after } : {}) });
  };

  /**
   * Restart the mesh subscription from about now (after an idle close, or a refused resume), and
   * never below `atLeast` (after a refusal: the relay's trim mark, or just past the refused point,
   * so a relay whose clock runs ahead of ours is not asked the same refused resume again).
   */
  const restart = (atLeast?: string) => {
    let from = cursorFloor(Date.now() - RESTART_MARGIN_MS);
    if (atLeast !== undefined && compareCursors(atLeast, from) > 0) from = atLeast;
    store.raiseFloor(from);
    // A retried restart (tick) raised it past the relay's trim mark, ahead of this clock: the
    // publishes accepted until the relay's `subscribed` got cursors at or below the floor, kept
    // out of the ring, and a client resuming from the ring missed them (a review, by reading).
    deps.onFloor?.(store.floor());
    store.meta.set('resume_from', from);
    store.meta.set('continuous', '1');
  };

  /**
   * The relay refused our resume point as `cursor_expired` (its retention passed it). The first
   * refusal of a gap restarts at once, from about now but not below the relay's trim mark (named
   * in its error) or the refused point, and tells the hub once (clients are closed, the cursors
   * they may hold are refused). A restart refused again (a relay whose clock runs ahead, with no
   * trim mark named) is retried with the same backoff as an unavailable relay, from a point that
   * only rises; when the relay finally takes one, the hub is told again (clients that came
   * meanwhile may have missed what the relay could not send).
   */
  const refusedExpired = (ws: WebSocket | undefined, refused: string | undefined, named: string | undefined) => {
    const floorPast = refused === undefined ? undefined : cursorFloor(cursorTime(refused) + 1);
    const trimmed = named !== undefined && isCursor(named) ? named : undefined;
    const atLeast = [floorPast, trimmed, store.meta.get('restart_min')]
      .filter((c): c is string => c !== undefined)
      .reduce<string | undefined>((a, b) => (a === undefined || compareCursors(b, a) > 0 ? b : a), undefined);
    if (atLeast !== undefined) store.meta.set('restart_min', atLeast);
    const refusals = Number(store.meta.get('gap_refusals') ?? '0');
    store.meta.set('gap_refusals', String(refusals + 1));
    if (refusals === 0) {
      restart(atLeast);
      if (ws) subscribe(ws);
      deps.onGap(refused);
      return;
    }
    store.meta.set('gap_restart', '1');
    store.meta.set('sub_retry_at', String(Date.now() + Math.min(SUB_RETRY_MAX_MS, 250 * 2 ** (refusals - 1))));
    void deps.reschedule();
  };

  /** The mesh subscription was taken: a gap that needed more than one restart ends. */
  const gapEnded = () => {
    const refusals = Number(store.meta.get('gap_refusals') ?? '0');
    store.meta.delete('gap_refusals');
    store.meta.delete('gap_restart');
    store.meta.delete('restart_min');
    if (refusals > 1) deps.onGap(undefined);
  };

  /**
   * No link and none wanted (closed or lost in the idle window, or the last client left while it
   * was down): as after an idle close, the next link restarts from about then. Resuming from the
   * last cursor hours later replayed everything since to clients as live, or lost the place
   * (cursor_expired: every client closed 4001).
   */
  const lapse = () => {
    if (store.meta.get('continuous') !== '0') store.meta.set('continuous', '0');
    store.meta.delete('idle_at');
    // A gap being retried ends with the link: the next one restarts from about then anyway.
    for (const key of ['gap_refusals', 'gap_restart', 'restart_min']) {
      if (store.meta.get(key) !== undefined) store.meta.delete(key);
    }
  };

  /**
   * The relay refused a whole `pub` frame for good (its shape or size): logged and counted, and
   * later frames are at most half as large as that one (one message always goes).
   */
  const refusedFrame = (code: string, message: string, frame: { messages: number; bytes: number }) => {
    counts.refusedFrames += 1;
    const before = { batch: batchLimit, bytes: frameBytes };
    if (code === 'bad_frame') batchLimit = Math.min(batchLimit, Math.max(1, Math.floor(frame.messages / 2)));
    else frameBytes = Math.min(frameBytes, Math.max(1, Math.floor(frame.bytes / 2)));
    console.error(
      JSON.stringify({
        msg: 'edge: the relay refused a whole pub frame; resending in smaller frames',
        topic: deps.topic(),
        relay: dialer.relay ?? null,
        code,
        error: message,
        refused_frame: frame,
        limits: before,
        next_limits: { batch: batchLimit, bytes: frameBytes },
        refused_frames: counts.refusedFrames,
      }),
    );
  };

  const failPending = (error: AnodeError) => {
    for (const [ref, request] of pending) {
      clearTimeout(request.timer);
      request.reject(error);
      pending.delete(ref);
    }
  };

  const link = {
    socket,

    /** Make sure a link is on its way when one is wanted. */
    ensure(): void {
      if (!deps.wanted()) return;
      store.meta.delete('idle_at');
      if (socket()) return;
      if (store.meta.get('continuous') !== '1') restart();
      void dialer.dial();
    },

    /** A relay dialed in: take the new link (replacing any old one) and start it. */
    accept(): Response {
      for (const old of ctx.getWebSockets(LINK_TAG)) {
        try {
          old.close(1000, 'replaced by a new link');
        } catch {
          // already closing
        }
      }
      const pair = new WebSocketPair();
      ctx.acceptWebSocket(pair[1], [LINK_TAG]);
      pair[1].serializeAttachment({ since: Date.now(), relay: dialer.relay, caughtUp: false } satisfies LinkState);
      dialer.connected();
      store.meta.delete('sub_retry_at');
      // A dial answered after the link lapsed (nobody needed it meanwhile) starts from about now.
      if (store.meta.get('continuous') !== '1') restart();
      subscribe(pair[1]);
      resend(pair[1]);
      for (const wake of waiters) wake(pair[1]);
      waiters.clear();
      void deps.reschedule();
      return new Response(null, { status: 101, webSocket: pair[0] });
    },

    onFrame(text: string): void {
      const frame = parseRelayFrame(text);
      if (!frame) return;
      switch (frame.op) {
        case 'msg': {
          const { op: _op, ...envelope } = frame;
          if (envelope.topic !== deps.topic()) return;
          counts.in += 1;
          const resumeFrom = store.meta.get('resume_from');
          if (!resumeFrom || compareCursors(envelope.cursor, resumeFrom) > 0)
            store.meta.set('resume_from', envelope.cursor);
          deps.onMessage(envelope, JSON.stringify(envelope));
          return;
        }
        case 'subscribed': {
          store.meta.delete('sub_retry_at');
          store.meta.delete('sub_refusals');
          if (frame.ref === SUB_REF) gapEnded();
          const resumeFrom = store.meta.get('resume_from');
          if (!resumeFrom || compareCursors(frame.cursor, resumeFrom) > 0) store.meta.set('resume_from', frame.cursor);
          const ws = socket();
          if (ws && frame.ref === SUB_REF) ws.serializeAttachment({ ...stateOf(ws), caughtUp: true });
          return;
        }
        case 'ack':
          unacked.delete(frame.ref);
          store.outbox.remove(frame.ids);
          if (frame.refused?.length) {
            console.warn(
              JSON.stringify({ msg: 'relay refused edge messages', topic: deps.topic, refused: frame.refused }),
            );
            store.outbox.remove(frame.refused.flatMap((r) => (r.id === null ? [] : [r.id])));
          }
          inFlight = Math.max(0, inFlight - 1);
          forward();
          return;
        case 'err':
          if (frame.ref === SUB_REF) {
            if (frame.code !== 'cursor_expired') {
              // The relay cannot serve the resume now (its storage is down): ask again later from
              // the same point. Restarting from now here skipped what the relay had acked into
              // its spool meanwhile (the Cassandra chaos run lost a message that way). The retry
              // is alarm work, so it survives hibernation.
              const refusals = Number(store.meta.get('sub_refusals') ?? '0');
              store.meta.set('sub_refusals', String(refusals + 1));
              store.meta.set('sub_retry_at', String(Date.now() + Math.min(SUB_RETRY_MAX_MS, 250 * 2 ** refusals)));
              void deps.reschedule();
              return;
            }
            // Our resume point is older than the relay keeps: start over, and tell the clients.
            // Restarting from now - 2 s at once on every refusal looped with a relay whose clock
            // runs ahead (its trim mark above that point): a sub, a refusal and a 4001 for every
            // client, again and again.
            refusedExpired(socket(), store.meta.get('resume_from'), frame.trimmed ?? trimMark(frame.message));
            return;
          } else if (frame.ref?.startsWith('pub-')) {
            const refused = unacked.get(frame.ref);
            unacked.delete(frame.ref);
            if (refused && (frame.code === 'bad_frame' || frame.code === 'too_large')) {
              refusedFrame(frame.code, frame.message, refused);
            }
            inFlight = MAX_IN_FLIGHT; // the relay could not store a batch: resend all on the next tick
            void deps.reschedule();
          }
          break;
        case 'hello':
          relayLimit.hello(frame.max_message_bytes);
          if (reserved.hello(frame.reserved === true)) {
            console.warn(
              JSON.stringify({
                msg: 'edge: the relay does not say which source names are reserved (older than the reserved frame); publishes are accepted under any name and the relay refuses reserved ones after the ack',
                topic: deps.topic(),
                relay: dialer.relay ?? null,
              }),
            );
            wakeReserved();
          }
          return;
        case 'reserved':
          reserved.replace(frame.sources);
          wakeReserved();
          return;
      }
      const request = frame.ref === undefined ? undefined : pending.get(frame.ref);
      if (!request || frame.ref === undefined) return;
      pending.delete(frame.ref);
      clearTimeout(request.timer);
      if (frame.op === 'err') request.reject(new AnodeError(frame.code, frame.message));
      else request.resolve(frame);
    },

    onClose(ws: WebSocket): void {
      if (socket() && socket() !== ws) return; // an old link, already replaced
      failPending(new UnavailableError('the relay link closed; try again'));
      if (!deps.wanted()) return lapse();
      link.ensure();
    },

    /** Forward new publishes now (called after each accept). */
    forward,

    /** A request to the relay (history, latest), waiting up to LINK_WAIT_MS for a link. */
    async request<Op extends keyof LinkRequests>(frame: LinkRequests[Op] & { op: Op }): Promise<RelayReply<Op>> {
      let ws = socket();
      if (!ws) {
        const woken = new Promise<WebSocket | undefined>((resolve) => {
          waiters.add(resolve);
          setTimeout(() => waiters.delete(resolve) && resolve(undefined), config.LINK_WAIT_MS);
        });
        link.ensure();
        ws = await woken;
      }
      if (!ws) throw new UnavailableError('no relay is reachable for history older than the edge keeps; try again');
      const ref = `q-${randomId()}`;
      const open = ws;
      return new Promise<RelayReply<Op>>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(ref);
          reject(new UnavailableError('the relay did not answer in time; try again'));
        }, config.LINK_WAIT_MS * 2);
        const answer = (reply: RelayFrame) =>
          reply.op === frame.op
            ? resolve(reply as RelayReply<Op>)
            : reject(new InternalError(`the relay answered ${frame.op} with ${reply.op}`));
        pending.set(ref, { resolve: answer, reject, timer });
        send(open, { ...frame, ref } as EdgeFrame);
      });
    },

    /** Whether the link is up and has delivered everything up to now (the ring is complete). */
    caughtUp(): boolean {
      const ws = socket();
      return ws !== undefined && stateOf(ws).caughtUp;
    },

    /** The source names the relay reserves, as last heard (hub-core checks publishes against them). */
    reserved,

    /** The largest `data` this object accepts while linked: its own limit, or the relay's when lower. */
    maxMessageBytes: () => relayLimit.effective(),

    /**
     * Resolves once the reserved source names are known (dialing a link to hear them), or after
     * LINK_WAIT_MS; undefined when they are known already.
     */
    untilReserved(): Promise<void> | undefined {
      if (reserved.known()) return undefined;
      const heard = new Promise<void>((resolve) => {
        const timer = setTimeout(() => reservedWaiters.delete(wake) && resolve(), config.LINK_WAIT_MS);
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        reservedWaiters.add(wake);
      });
      link.ensure();
      return heard;
    },

    /** Whether a request is waiting for a link or an answer (or for the reserved names). */
    waiting(): boolean {
      return waiters.size > 0 || pending.size > 0 || reservedWaiters.size > 0;
    },

    /** When the link next needs a tick (a dial, a resend, an idle close), if ever. */
    due(now = Date.now()): number | undefined {
      const ws = socket();
      if (!ws) {
        if (deps.wanted()) return dialer.due(now);
        lapse();
        return undefined;
      }
      if (!deps.wanted()) {
        let idleAt = Number(store.meta.get('idle_at') ?? Number.NaN);
        if (Number.isNaN(idleAt)) store.meta.set('idle_at', String((idleAt = now + config.LINK_IDLE_MS)));
        return idleAt;
      }
      const retry = store.meta.get('sub_retry_at');
      const resendAt = store.outbox.size() > 0 ? lastSendAt + config.LINK_WAIT_MS : undefined;
      if (retry === undefined) return resendAt;
      return resendAt === undefined ? Number(retry) : Math.min(resendAt, Number(retry));
    },

    /** Alarm work: dial, resend unacked publishes, or close a link nobody needs any more. */
    tick(now = Date.now()): void {
      const ws = socket();
      if (!ws) return link.ensure();
      const retry = store.meta.get('sub_retry_at');
      if (retry !== undefined && now >= Number(retry)) {
        store.meta.delete('sub_retry_at');
        // Retrying a restart refused as cursor_expired: from about now again, not below what was
        // refused. (A resume refused as unavailable is asked again from the same point.)
        if (store.meta.get('gap_restart') !== undefined) {
          store.meta.delete('gap_restart');
          restart(store.meta.get('restart_min'));
        }
        subscribe(ws);
      }
      if (!deps.wanted()) {
        if (now < Number(store.meta.get('idle_at') ?? now)) return;
        store.meta.set('continuous', '0');
        store.meta.delete('idle_at');
        ws.close(1000, 'idle');
        return;
      }
      if (store.outbox.size() > 0 && now - lastSendAt >= config.LINK_WAIT_MS) resend(ws); // no ack in time
    },

    status() {
      const ws = socket();
      const attachment = ws ? stateOf(ws) : undefined;
      const waiting = dialer.dialing ? 'dialing' : deps.wanted() ? 'waiting' : 'idle';
      return {
        state: attachment ? (attachment.caughtUp ? 'open' : 'catching-up') : waiting,
        relay: attachment?.relay ?? dialer.relay ?? null,
        since: attachment ? new Date(attachment.since).toISOString() : null,
        resume_from: store.meta.get('resume_from') ?? null,
        messages_in: counts.in,
        messages_out: counts.out,
        refused_frames: counts.refusedFrames,
        dial_requests: dialer.dials,
        reserved_sources_known: reserved.state() === 'heard',
        reserved_sources: reserved.state(),
        // The data limit this topic applies while linked: its own, or the relay's when lower.
        max_message_bytes: relayLimit.effective(),
      };
    },
  };
  return link;
}

export type RelayLink = ReturnType<typeof createRelayLink>;
