import type { CloseReason } from './close-codes.ts';
import { LimitReachedError, RateLimitedError } from './errors.ts';
import { readClientFrame } from './frame-reader.ts';
import type { ClientFrame, PubFrame, ServerFrame, SubFrame } from './frames.ts';
import { MAX_TIMER_MS } from './timers.ts';

type UnsubFrame = Extract<ClientFrame, { op: 'unsub' }>;

/** What a publish is answered with once accepted. */
export interface SessionAck {
  id: string;
  cursor: string;
}

/**
 * The runtime's side of one client socket: where publishes and subscriptions go, how a frame is
 * sent, and the socket's own state (rights, token bucket, subscriptions), kept wherever the
 * runtime keeps per-socket state (a relay connection's fields, a hibernatable socket's
 * attachment). `handleClientFrame` does the protocol's part; each method here is the runtime's.
 */
export interface SessionPort {
  /** The socket's token has expired. */
  expired(): boolean;
  /** Close the socket for one of the server's own reasons (CLOSE_CODES); a second close is a no-op. */
  close(reason: CloseReason, message: string): void;
  /** Throws `forbidden` (or another coded error) when this socket may not publish to `topic`. */
  assertPublish(topic: string): void;
  /** Throws when this socket may not subscribe to `topic` (a topic or pattern). */
  assertSubscribe(topic: string): void;
  /** Takes one publish token; false when the socket is over its rate. */
  takeToken(): boolean;
  readonly publishRate: number;
  /** The subscription cap, where the socket can hold more than one subscription. */
  readonly subscriptions?: { max: number; has(topic: string): boolean; count(): number };
  /**
   * Accept a publish. An ack (or its promise) is answered here with the frame's ref; `undefined`
   * means the runtime answers itself (an edge connection forwards the frame to the topic's object).
   */
  publish(frame: PubFrame, text: string): SessionAck | Promise<SessionAck> | undefined;
  /** Subscribe; the runtime sends `subscribed` (with the ref) when the subscription is live. */
  subscribe(frame: SubFrame, text: string): void | Promise<unknown>;
  unsubscribe(frame: UnsubFrame, text: string): void;
  send(frame: ServerFrame): void;
  /** Answer a refused or failed frame with a coded `err` (the runtime logs and counts as it likes). */
  refuse(cause: unknown, ref: string | undefined): void;
}

/**
 * One parsed client frame, as every node that serves clients handles it (PROTOCOL.md): token
 * expiry first (the socket of an expired token is closed `auth_expired`, as its expiry timer
 * would have closed it, and the frame goes unanswered), then `ping` → `pong`; `pub` → rights,
 * the rate, the runtime's publish, `ack`; `sub` → rights, the subscription cap, the runtime's
 * subscribe; `unsub`. Anything refused or
 * failing is answered with a coded `err` carrying the frame's ref, and the socket stays open.
 * Resolves when the frame is answered (a relay's publish waits for its store).
 */
export function handleClientFrame(frame: ClientFrame, text: string, port: SessionPort): void | Promise<void> {
  const ref = frame.ref;
  const fail = (cause: unknown) => port.refuse(cause, ref);
  try {
    if (port.expired()) return port.close('auth_expired', 'token expired');
    switch (frame.op) {
      case 'ping':
        return port.send({ op: 'pong', ...(ref === undefined ? {} : { ref }) });
      case 'pub': {
        port.assertPublish(frame.topic);
        if (!port.takeToken()) throw new RateLimitedError(`publish rate limit of ${port.publishRate}/s exceeded`);
        const acked = port.publish(frame, text);
        const answer = (ack: SessionAck) =>
          port.send({ op: 'ack', id: ack.id, cursor: ack.cursor, ...(ref === undefined ? {} : { ref }) });
        if (acked instanceof Promise) return acked.then(answer, fail);
        if (acked) answer(acked);
        return;
      }
      case 'sub': {
        port.assertSubscribe(frame.topic);
        const caps = port.subscriptions;
        if (caps && !caps.has(frame.topic) && caps.count() >= caps.max) {
          throw new LimitReachedError(`subscription limit of ${caps.max} per connection reached`);
        }
        const done = port.subscribe(frame, text);
        if (done instanceof Promise) return done.then(() => {}, fail);
        return;
      }
      case 'unsub':
        return port.unsubscribe(frame, text);
    }
  } catch (cause) {
    fail(cause);
  }
}

/** Pings one socket may have waiting for earlier frames' answers (past it: `limit_reached`). */
export const MAX_WAITING_PINGS = 1_000;

/**
 * PROTOCOL.md's order on one socket: a `ping` is answered only once every frame before it was (a
 * publish's ack sent, a resume's `subscribed` sent or the resume dropped: the promise
 * handleClientFrame returned has settled). Other frames are handled at once, in arrival order;
 * only pings wait. One per socket; `port` is asked for each frame handled.
 */
export function createFrameOrder(port: () => SessionPort): (frame: ClientFrame, text: string) => void {
  let seq = 0;
  const unanswered = new Set<number>();
  const pings: { seq: number; frame: ClientFrame }[] = [];
  const answered = (done: number) => {
    unanswered.delete(done);
    if (pings.length === 0) return;
    let oldest = Number.POSITIVE_INFINITY;
    for (const pending of unanswered) if (pending < oldest) oldest = pending;
    while (pings.length > 0 && (pings[0] as { seq: number }).seq < oldest) {
      const { frame } = pings.shift() as { frame: ClientFrame };
      void handleClientFrame(frame, '', port());
    }
  };
  return (frame, text) => {
    const n = ++seq;
    if (frame.op === 'ping' && unanswered.size > 0) {
      if (pings.length >= MAX_WAITING_PINGS) {
        port().refuse(
          new LimitReachedError(`at most ${MAX_WAITING_PINGS} pings may wait for earlier frames`),
          frame.ref,
        );
        return;
      }
      pings.push({ seq: n, frame });
      return;
    }
    const done = handleClientFrame(frame, text, port());
    if (done instanceof Promise) {
      unanswered.add(n);
      const settle = () => answered(n);
      void done.then(settle, settle);
    }
  };
}

/**
 * One raw frame off a socket: read (size, binary, shape: `readClientFrame`), then handled. A
 * frame that cannot be read gets its `err` with whatever ref could be found in it.
 */
export function receiveClientFrame(
  message: string | ArrayBuffer | Uint8Array,
  maxFrameBytes: number,
  port: SessionPort,
): void | Promise<void> {
  const read = readClientFrame(message, maxFrameBytes);
  if (!read.ok) return port.refuse(read.error, read.ref);
  return handleClientFrame(read.frame, read.text, port);
}

/**
 * Calls `onExpired` once, when the token's `exp` (seconds) has passed, however far ahead it is
 * (never synchronously, even for an `exp` already past). A wait beyond setTimeout's limit is taken
 * in steps, and a timer that fires before `exp` (a step, or a clock that moved) waits again.
 * Returns the cancel; with no `exp`, nothing is armed.
 */
export function atTokenExpiry(exp: number | undefined, onExpired: () => void): () => void {
  if (exp === undefined) return () => {};
  const arm = (): ReturnType<typeof setTimeout> => {
    const wait = Math.min(Math.max(0, exp * 1000 - Date.now()), MAX_TIMER_MS);
    return setTimeout(() => (exp * 1000 <= Date.now() ? onExpired() : (timer = arm())), wait);
  };
  let timer = arm();
  return () => clearTimeout(timer);
}
