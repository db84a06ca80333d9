import { CLOSE_CODES, CLOSE_MESSAGE_TOO_BIG } from '../../shared/src/close-codes.ts';
import { AnodeError, type ErrorCode, isErrorCode } from '../../shared/src/errors.ts';
import { compareCursors, randomId } from '../../shared/src/ids.ts';
import { RecentMap } from '../../shared/src/seen-ids.ts';
import { matches } from '../../shared/src/topics.ts';
import { MAX_TIMER_MS } from '../../shared/src/timers.ts';
import { type BackoffOptions, backoffDelay } from './backoff.ts';
import { callSafely, Emitter } from './emitter.ts';
import { endpointUrl, shownUrl } from './endpoint.ts';
import { afterSilence, answerWithin, KEEPALIVE_MS, keepaliveInterval, numberOption, watchSocket } from './liveness.ts';
import type { Envelope, ServerFrame } from './wire.ts';

/** Backoff for a resume or a publish the node refused for now (`unavailable`, `rate_limited`), when reconnects are off. */
const RETRY: BackoffOptions = { initialDelayMs: 250, maxDelayMs: 10_000 };

/**
 * The aNode client for browsers, Workers and Node (any standard `WebSocket`). It keeps one
 * connection to `/v1/ws`, reconnects with backoff and jitter, resubscribes each subscription
 * from the last cursor it delivered, drops duplicate ids, and resends unacked publishes with
 * their idempotency key so a retry can never publish twice.
 *
 * A node it cannot reach is said, not retried in silence: every attempt that fails to open emits
 * `error`, and `ready` rejects if the first one fails. Subscriptions and publishes wait for a
 * connection meanwhile (with `reconnect: false` they reject with the failed attempt; a
 * subscription waits up to `connectTimeoutMs` when given).
 * `close()` stops everything, so a script can end.
 */
export interface ClientOptions {
  /** A relay's or an edge's base URL (`http://localhost:8080`, `wss://edge.example.com`) or its `/v1/ws` URL. */
  url: string;
  /** A token, or a function that returns a fresh one before each connect. */
  token?: string | (() => string | Promise<string>);
  /** A WebSocket class: the runtime's by default; on Node 20, `ws`'s (or run Node with --experimental-websocket). */
  WebSocket?: new (url: string) => WebSocket;
  /** Reconnect backoff (250 ms growing to 10 s; a field left out or undefined keeps that); `false` for none. */
  reconnect?: Partial<BackoffOptions> | false;
  /** How many recent message ids to remember for dropping duplicates. */
  dedupWindow?: number;
  /**
   * Reject a publish not acked within this time (it may still have been stored); until then, one
   * the node refused as `unavailable` or `rate_limited` is resent. 30 s by default.
   */
  publishTimeoutMs?: number;
  /**
   * At most this many publishes wait for their ack (10,000 by default); a publish past it rejects
   * at once with `limit_reached`, so a publisher cut off from the node cannot fill the memory.
   */
  maxPendingPublishes?: number;
  /**
   * Keepalive: ping the node this often; a connection that brought nothing (not even a `pong`)
   * for a whole interval after a ping is dropped and reconnected, and an attempt to connect whose
   * upgrade (or token function) gives no answer within an interval fails. 30 s by default;
   * `false` for none.
   */
  pingIntervalMs?: number | false;
  /**
   * A subscription not live yet that waits this long for a connection, with none opening
   * meanwhile, is dropped: its `ready` rejects with `unavailable`, saying what to check (a wrong
   * URL or a refused token looks like a node that is down to a WebSocket), and an `error` event
   * (the same error) names its topic. The client goes on reconnecting for later calls. No limit
   * by default (`undefined`, 0, `Infinity`, or a value other numeric options would not take).
   * Publishes keep `publishTimeoutMs`; a subscription that was live when a connection dropped
   * resumes on reconnect, however long that takes.
   */
  connectTimeoutMs?: number;
}

export interface PublishOptions {
  /**
   * The source to publish as: the token's subject (the default) or a name its `anode.src` grants.
   * A key is scoped to topic and source: without it, a resend under a refreshed token with another
   * subject is a new message, stored twice. Give it to keep resends idempotent across such a token.
   */
  source?: string;
  ts?: number;
  /** Idempotency key; one is generated when absent so that resends stay idempotent. */
  key?: string;
}

export interface Ack {
  id: string;
  cursor: string;
}

export type ClientEvents = {
  open: undefined;
  close: { code: number; reason: string };
  reconnecting: { attempt: number; delayMs: number };
  message: Envelope;
  subscribed: { topic: string; cursor: string };
  error: AnodeError;
};

export interface Subscription {
  readonly topic: string;
  /**
   * The resume point: the cursor of the last message delivered to this subscription, or the
   * node's position when it went live (`subscribed`), whichever is newer.
   */
  readonly cursor: string | undefined;
  /**
   * Resolves on the first `subscribed`; rejects if the node refuses the subscription, when the
   * client stops (`close()`, a drop or failed attempt with `reconnect: false`, an expired fixed
   * token), or at once for one made after that. A failed attempt to connect does not reject it
   * while the client reconnects: it is subscribed once a connection opens, unless none opened
   * within `connectTimeoutMs` (then it rejects with `unavailable`, emitted as an `error` event too,
   * and the subscription is dropped).
   */
  readonly ready: Promise<void>;
  unsubscribe(): void;
}

type Pending = { resolve: (frame: ServerFrame) => void; reject: (error: AnodeError) => void };

interface SubState {
  topic: string;
  cursor: string | undefined;
  handler: ((message: Envelope) => void) | undefined;
  readyResolve: () => void;
  readyReject: (error: AnodeError) => void;
  settled: boolean;
  active: boolean;
  /** Consecutive `unavailable` refusals of this subscription, and the timer of its next try. */
  refusals: number;
  retry: ReturnType<typeof setTimeout> | undefined;
  /** Runs while this subscription, not live yet, waits for a connection (`connectTimeoutMs`). */
  waitTimer: ReturnType<typeof setTimeout> | undefined;
  /** The ref of this subscription's `sub` still waiting for the node's answer on this connection. */
  ref: string | undefined;
  /**
   * Where this subscription's unanswered resume started, and how many resumes in a row were cut
   * (their connection closed before the answer) without its cursor moving past that start.
   */
  resumedFrom: string | undefined;
  stalls: number;
  /**
   * Who this subscription is for duplicates (#handed): its own, or that of the subscription of its
   * topic it replaced, which it goes on from.
   */
  dedup: object;
}

/** How long `close()` waits for the node to answer its closing handshake before it lets go. */
const CLOSE_GRACE_MS = 2_000;
/** A fixed token is taken as expired this long past its `exp` by this clock (clocks drift). */
const EXP_LEEWAY_MS = 5_000;

/**
 * Resumes that may start from the same cursor in a row (each cut before its answer) while the
 * overlap rule in #onMessage holds the cursor still; the next one moves it on every message.
 */
const CAREFUL_RESUMES = 2;

interface PubState {
  /** The `pub` frame as sent, serialized once (data that cannot be is refused at publish). */
  text: string;
  /** The connection it was last sent on (#connection), to tell which publish a 1009 close was for. */
  sentOn: number;
  resolve: (ack: Ack) => void;
  reject: (error: AnodeError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The node's last refusal for now, how many in a row, and the timer of the next resend. */
  refused: AnodeError | undefined;
  refusals: number;
  retry: ReturnType<typeof setTimeout> | undefined;
}

export class AnodeClient extends Emitter<ClientEvents> {
  /** Resolves when the first connection opens; rejects if it cannot, or on `close()` before. */
  readonly ready: Promise<void>;
  readonly #options: ClientOptions;
  readonly #url: URL;
  readonly #WebSocket: new (url: string) => WebSocket;
  #settleReady: ((error?: AnodeError) => void) | undefined;
  #socketClosed: Promise<void> = Promise.resolve();
  readonly #backoff: BackoffOptions | false;
  /**
   * The last `dedupWindow` ids, each with the subscriptions (SubState.dedup) its handlers were
   * given it: one window for the client, a short list per id (usually one entry).
   */
  readonly #handed: RecentMap<object[]>;
  readonly #subs = new Map<string, SubState>();
  readonly #pubs = new Map<string, PubState>();
  readonly #pending = new Map<string, Pending>();
  #socket: WebSocket | undefined;
  /** Counts connection attempts: the one a publish was sent on (PubState.sentOn). */
  #connection = 0;
  /** Lets go of the current socket at once, without waiting for its close event (see close()). */
  #abandon: ((why: string) => void) | undefined;
  #closeGrace: ReturnType<typeof setTimeout> | undefined;
  #attempt = 0;
  #refs = 0;
  /** When the current connection last brought a frame (Date.now()). */
  #heardAt = 0;
  /** Why the client stopped: `close()`, or a drop it will not reconnect after. */
  #stopped: AnodeError | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Aborted by close(): ends a wait for the token function (and its timer) at once. */
  readonly #stopping = new AbortController();
  /** How long a subscription not live yet waits for a connection; `undefined` for no limit. */
  readonly #connectTimeoutMs: number | undefined;
  /** Why the last attempt to connect failed, while no connection opened since: for that timeout's message. */
  #lastFailure: string | undefined;

  constructor(options: ClientOptions) {
    super();
    this.#options = options;
    this.#url = endpointUrl(options.url);
    const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: new (url: string) => WebSocket }).WebSocket;
    if (!Ctor) {
      throw new TypeError(
        'no WebSocket in this runtime: on Node 20 run node with --experimental-websocket, or pass { WebSocket } from the ws package',
      );
    }
    this.#WebSocket = Ctor;
    this.ready = new Promise<void>((resolve, reject) => {
      this.#settleReady = (error) => {
        this.#settleReady = undefined;
        if (error) reject(error);
        else resolve();
      };
    });
    this.ready.catch(() => {}); // surfaced through `error` events too; avoid unhandled rejections
    // Each default kept unless the option is a number of 0 or more: an option given as `undefined`,
    // `null` or NaN (a setting passed through, not set: JSON's null, Number() of an unset variable)
    // or below 0 overrode its default, and such a `maxDelayMs` redialled without a pause.
    const given = options.reconnect || {};
    this.#backoff =
      options.reconnect === false
        ? false
        : {
            initialDelayMs: numberOption(given.initialDelayMs, 250),
            maxDelayMs: numberOption(given.maxDelayMs, 10_000),
          };
    // A window of NaN forgot no id (the memory grew by one per message) and held one list of who
    // had each id for all of them: a replay handed a new subscription only its first message.
    this.#handed = new RecentMap(numberOption(options.dedupWindow, 10_000));
    // Read as the other numeric options are; 0 is no limit (as pingIntervalMs's 0 is off): a
    // subscription made right after createClient always waits for the first connection, so a
    // limit of 0 would drop every one of them. Past what a timer keeps (Infinity too) is none.
    const connectMs = numberOption(options.connectTimeoutMs, 0);
    this.#connectTimeoutMs = connectMs > 0 && connectMs < MAX_TIMER_MS ? connectMs : undefined;
    // After the caller's first turn, so an `error` the first attempt emits at once (a URL the
    // runtime refuses, an expired fixed token) reaches the listeners it adds right after this.
    queueMicrotask(() => void this.#connect());
  }

  get connected(): boolean {
    return this.#socket?.readyState === 1;
  }

  /** Frames (`sub`s going live, pings) still waiting for the node's answer: a diagnostic. */
  get pendingAnswers(): number {
    return this.#pending.size;
  }

  subscribe(topic: string, handler?: (message: Envelope) => void, options: { after?: string } = {}): Subscription {
    const replaced = this.#subs.get(topic);
    if (replaced) {
      this.#forget(replaced);
      replaced.readyReject(new AnodeError('bad_frame', 'replaced by a new subscription'));
    }
    let readyResolve!: () => void;
    let readyReject!: (error: AnodeError) => void;
    const ready = new Promise<void>((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    ready.catch(() => {}); // surfaced through `error` events too; avoid unhandled rejections
    const state: SubState = {
      topic,
      cursor: options.after,
      handler,
      readyResolve,
      readyReject,
      settled: false,
      active: true,
      refusals: 0,
      retry: undefined,
      waitTimer: undefined,
      ref: undefined,
      resumedFrom: undefined,
      stalls: 0,
      // A subscription replacing one of its topic goes on where that one was: what it had is a
      // duplicate here too (a resubscribe from an older cursor replays only what is new to it).
      dedup: replaced?.dedup ?? {},
    };
    if (this.#stopped) {
      state.active = false;
      readyReject(this.#stopped);
    } else {
      this.#subs.set(topic, state);
      this.#sendSub(state);
    }
    return {
      topic,
      ready,
      get cursor() {
        return state.cursor;
      },
      unsubscribe: () => {
        this.#forget(state);
        // Unsubscribed before the node answered: `ready` would otherwise never settle.
        if (!state.settled)
          state.readyReject(new AnodeError('unavailable', `unsubscribed from ${topic} before it went live`));
        // A handle replaced by a later subscribe() of its topic owns nothing at the node: its
        // `unsub` ended the replacement there while the client went on waiting for its messages.
        if (this.#subs.get(topic) !== state) return;
        this.#subs.delete(topic);
        this.#send({ op: 'unsub', topic });
      },
    };
  }

  publish(topic: string, data: unknown, options: PublishOptions = {}): Promise<Ack> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    const most = numberOption(this.#options.maxPendingPublishes, 10_000);
    if (this.#pubs.size >= most) {
      return Promise.reject(
        new AnodeError('limit_reached', `${this.#pubs.size} publishes wait for an ack (maxPendingPublishes ${most})`),
      );
    }
    const ref = this.#nextRef();
    // `ref` ahead of `data`: a node refusing a frame too large to parse finds it in the frame's
    // first bytes, and answers this publish rather than leave it to time out.
    const frame: Record<string, unknown> = { op: 'pub', ref, topic, key: options.key ?? randomId() };
    if (options.source !== undefined) frame.source = options.source;
    if (options.ts !== undefined) frame.ts = options.ts;
    frame.data = data;
    // Serialized once, here: data JSON cannot carry (a BigInt, a cycle) threw later from inside
    // a reconnect's `open` listener, an uncaught exception in Node, and held every resend behind it.
    let text: string;
    try {
      text = JSON.stringify(frame);
    } catch (error) {
      return Promise.reject(new AnodeError('bad_frame', `data cannot be sent as JSON: ${(error as Error).message}`));
    }
    return new Promise<Ack>((resolve, reject) => {
      const timeoutMs = numberOption(this.#options.publishTimeoutMs, 30_000);
      const state: PubState = {
        text,
        sentOn: 0,
        resolve,
        reject,
        timer: undefined,
        refused: undefined,
        refusals: 0,
        retry: undefined,
      };
      // A timeout a timer cannot keep (Infinity, or past ~24.8 days) means none: setTimeout would
      // fire it after 1 ms.
      if (timeoutMs < MAX_TIMER_MS) {
        state.timer = setTimeout(() => {
          this.#endPub(ref);
          const last = state.refused ? `; the node last refused it: ${state.refused.message}` : '';
          reject(new AnodeError('unavailable', `publish not acked within ${timeoutMs} ms${last}`));
        }, timeoutMs);
      }
      this.#pubs.set(ref, state);
      this.#sendPub(state);
    });
  }

  /**
   * Round trip to the node; resolves with the time it took in ms. The node answers it once every
   * frame sent before it was answered (acks included): a fence, and a plain round trip when idle.
   * Rejects with `unavailable` if the connection closes first or, with keepalive off, once it
   * brought nothing for 30 s.
   */
  ping(): Promise<number> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    const started = Date.now();
    const ref = this.#nextRef();
    return new Promise((resolve, reject) => {
      let stopWaiting = () => {};
      this.#pending.set(ref, {
        resolve: () => {
          stopWaiting();
          resolve(Date.now() - started);
        },
        reject: (error) => {
          stopWaiting();
          reject(error);
        },
      });
      if (!this.#send({ op: 'ping', ref })) {
        this.#pending.delete(ref);
        return reject(new AnodeError('unavailable', 'not connected'));
      }
      // The keepalive drops a connection that went silent, which rejects this. With it off,
      // nothing did: a ping to a node gone without a word (no FIN: a sleeping laptop, a NAT that
      // forgot the flow) waited for ever. The connection is left open, as keepalive off asks.
      if (keepaliveInterval(this.#options.pingIntervalMs) !== undefined) return;
      stopWaiting = afterSilence(
        KEEPALIVE_MS,
        () => this.#heardAt,
        () => {
          this.#pending.delete(ref);
          reject(
            new AnodeError(
              'unavailable',
              `no answer to the ping: the connection brought nothing for ${KEEPALIVE_MS} ms (keepalive is off)`,
            ),
          );
        },
      );
    });
  }

  /**
   * Stops for good: no reconnect, unacked publishes and unsettled `ready`s reject, the socket
   * closes, and nothing more is handed on (a frame still arriving is dropped). Later calls reject
   * with the reason, a subscription's `ready` too. Resolves once the socket closed, leaving nothing
   * that keeps a Node process alive.
   */
  close(): Promise<void> {
    if (!this.#stopped) this.#stop(new AnodeError('unavailable', 'client is closed'));
    return this.#socketClosed;
  }

  /** Ends the client for good: what waits on it rejects with `error`, as do later calls. */
  #stop(error: AnodeError): void {
    this.#stopped = error;
    this.#stopping.abort();
    clearTimeout(this.#timer);
    for (const [ref, pub] of this.#pubs) {
      this.#endPub(ref);
      pub.reject(error);
    }
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    for (const state of this.#subs.values()) clearTimeout(state.retry);
    this.#failUnsettled(error);
    this.#socket?.close(1000, 'client closed');
    const abandon = this.#abandon;
    if (this.#socket && abandon) {
      // A node that stopped answering never completes the closing handshake, and a standard
      // WebSocket (Node's built-in one too) waits for it without end: close() hung.
      this.#closeGrace = setTimeout(
        () => abandon(`the node did not answer the close within ${CLOSE_GRACE_MS} ms`),
        CLOSE_GRACE_MS,
      );
    }
  }

  /** Rejects the client's and every subscription's `ready` not settled yet. */
  #failUnsettled(error: AnodeError): void {
    this.#settleReady?.(error);
    for (const state of [...this.#subs.values()]) {
      if (state.settled) continue;
      state.active = false;
      clearTimeout(state.waitTimer);
      this.#subs.delete(state.topic);
      state.readyReject(error);
    }
  }

  /**
   * Starts the `connectTimeoutMs` clock of a subscription not live yet that waits for a
   * connection (made before one opened, or its `sub` cut by a drop before the answer); the next
   * connection to open stops it (#onOpen). Without it, a wrong URL or a refused token left
   * `sub.ready` waiting until `close()`: a WebSocket cannot tell either from a node that is down.
   */
  #awaitConnection(state: SubState): void {
    const ms = this.#connectTimeoutMs;
    if (ms === undefined || state.settled || state.waitTimer !== undefined || this.#stopped) return;
    state.waitTimer = setTimeout(() => {
      state.waitTimer = undefined;
      if (state.settled || !state.active || this.#subs.get(state.topic) !== state || this.connected) return;
      const last = this.#lastFailure ? ` (the last attempt: ${this.#lastFailure})` : '';
      this.#forget(state);
      this.#subs.delete(state.topic);
      const dropped = new AnodeError(
        'unavailable',
        `no connection opened within ${ms} ms to ${shownUrl(this.#url)}${last}, so the subscription to ` +
          `${state.topic} is dropped: check the URL (a relay's or an edge's base URL), the token (to a ` +
          'WebSocket a refused one looks like a node that is down), and that the node is up',
      );
      state.readyReject(dropped);
      // As a subscription the node refuses (`forbidden`) ends: its `ready` rejects and an `error`
      // event names the topic. The failed attempts' own events said only that the node is away.
      this.emit('error', dropped);
    }, ms);
  }

  /**
   * Ends a subscription on the client's side: no retry, and no wait for the answer to its `sub`.
   * The node never answers a resume unsubscribed or replaced before it went live, so that entry
   * stayed until the connection closed, one per such subscription (an answer that does come
   * later finds no entry and is ignored).
   */
  #forget(state: SubState): void {
    state.active = false;
    clearTimeout(state.retry);
    clearTimeout(state.waitTimer);
    state.waitTimer = undefined;
    if (state.ref !== undefined) this.#pending.delete(state.ref);
    state.ref = undefined;
  }

  #nextRef(): string {
    this.#refs += 1;
    return `c${this.#refs}`;
  }

  #send(frame: Record<string, unknown>): boolean {
    if (!this.connected) return false;
    this.#socket?.send(JSON.stringify(frame));
    return true;
  }

  #sendPub(pub: PubState): void {
    if (!this.connected) return;
    pub.sentOn = this.#connection;
    this.#socket?.send(pub.text);
  }

  #sendSub(state: SubState): void {
    clearTimeout(state.retry);
    state.retry = undefined;
    const ref = this.#nextRef();
    const frame: Record<string, unknown> = { op: 'sub', topic: state.topic, ref };
    if (state.cursor !== undefined) frame.after = state.cursor;
    if (state.ref !== undefined) this.#pending.delete(state.ref);
    state.ref = undefined;
    if (!this.#send(frame)) return this.#awaitConnection(state);
    state.ref = ref;
    state.resumedFrom = state.cursor;
    this.#pending.set(ref, {
      resolve: (answer) => {
        state.ref = undefined;
        state.resumedFrom = undefined;
        state.stalls = 0;
        // A subscription that has had no message yet resumes from where it went live: without
        // `after`, a reconnect subscribed live only and lost what was published while away.
        if (
          answer.op === 'subscribed' &&
          (state.cursor === undefined || compareCursors(answer.cursor, state.cursor) > 0)
        ) {
          state.cursor = answer.cursor;
        }
        state.settled = true;
        state.refusals = 0;
        state.readyResolve();
      },
      reject: (error) => {
        state.ref = undefined;
        const current = state.active && this.#subs.get(state.topic) === state && !this.#stopped;
        // Dropping the subscription here lost every later message: a connection that closed
        // before `subscribed` (the next one subscribes again, from the cursor), and a resume the
        // node refused with `unavailable` because its storage was down (the Cassandra chaos run:
        // the subscriber of a relay restarted meanwhile never heard from it again). A first
        // subscription the node refuses still rejects `ready`: the caller learns at once.
        if (current && !this.connected) {
          // A resume cut before its answer without getting past where it started (see #onMessage).
          // Only a cut counts: a refusal, or a send that never went out, is no stalled replay.
          if (state.cursor !== undefined && state.cursor === state.resumedFrom) state.stalls += 1;
          else state.stalls = 0;
          // Cut before it went live: waits for the next connection as one made before any did.
          this.#awaitConnection(state);
          return;
        }
        if (current && error.code === 'unavailable' && state.settled) {
          const delayMs = backoffDelay(state.refusals++, this.#backoff || RETRY);
          state.retry = setTimeout(() => {
            state.retry = undefined;
            if (state.active && this.#subs.get(state.topic) === state) this.#sendSub(state);
          }, delayMs);
          return;
        }
        // A resume from before what the node keeps (a client away longer than its retention, or
        // than an edge's ring) cannot be served; ending the subscription left its handler silent
        // for good. It goes on live from the node's position; the refusal, an `error` event
        // naming the topic, says that what was published meanwhile is lost.
        if (current && error.code === 'cursor_expired' && state.settled) {
          state.cursor = undefined;
          this.#sendSub(state);
          return;
        }
        state.active = false;
        if (this.#subs.get(state.topic) === state) this.#subs.delete(state.topic);
        state.readyReject(error);
      },
    });
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    const url = new URL(this.#url);
    const intervalMs = keepaliveInterval(this.#options.pingIntervalMs);
    let token: string | undefined;
    try {
      const { token: option } = this.#options;
      token = typeof option === 'function' ? await answerWithin(option(), intervalMs, this.#stopping.signal) : option;
    } catch (error) {
      if (this.#stopped) return;
      this.#onClose(1006, '', `the token function failed: ${(error as Error).message}`);
      return;
    }
    if (this.#stopped) return;
    if (typeof this.#options.token === 'string' && token && expiredToken(token)) {
      // The node refuses the upgrade (401), which a WebSocket does not tell apart from a node
      // that is down: it reconnected for ever, saying the node could not be reached.
      const expired = new AnodeError(
        'unauthorized',
        'the token expired and a fixed token cannot be renewed: pass `token` as a function that returns a fresh one',
      );
      this.emit('error', expired);
      return this.#stop(expired);
    }
    if (token) url.searchParams.set('token', token);
    let socket: WebSocket;
    try {
      socket = new this.#WebSocket(url.toString());
    } catch (error) {
      // The runtime refused the URL itself, as it will every time: a page served over https asking
      // for ws: (a browser's SecurityError), a ws+unix: URL without the ws package. Thrown from
      // here it was an unhandled rejection (fatal in Node) and `ready` never settled.
      let why = String((error as Error).message ?? error);
      // The token as given, and as the URL carries it (percent-encoded): a runtime may quote either.
      if (token) {
        for (const form of [
          token,
          new URLSearchParams({ token }).toString().slice('token='.length),
          encodeURIComponent(token),
        ]) {
          why = why.split(form).join('…');
        }
      }
      const refused = new AnodeError(
        'unavailable',
        `this runtime's WebSocket refused ${shownUrl(url)}: ${why} ` +
          '(a page served over https needs wss:; a ws+unix: URL needs { WebSocket } from the ws package)',
      );
      this.emit('error', refused);
      return this.#stop(refused);
    }
    this.#socket = socket;
    this.#connection += 1;
    let opened = false;
    let heardAny = false;
    let ended = false;
    let failure: string | undefined;
    let socketClosed!: () => void;
    this.#socketClosed = new Promise((resolve) => (socketClosed = resolve));
    const end = (code: number, reason: string) => {
      if (ended) return;
      ended = true;
      if (this.#abandon === abandon) this.#abandon = undefined;
      clearTimeout(this.#closeGrace);
      watch.stop();
      socketClosed();
      this.#onClose(code, reason, opened ? undefined : (failure ?? `closed with ${code} before it opened`));
    };
    /** Drops this socket now, without waiting for its close event. */
    const abandon = (why: string) => {
      if (!opened) failure = why;
      // `ws` can drop the connection at once; a standard WebSocket only starts a closing
      // handshake, which a frozen node never answers (Node's keeps its TCP connection open).
      const terminate = (socket as { terminate?: unknown }).terminate;
      if (typeof terminate === 'function') terminate.call(socket);
      else if (socket.readyState < 2) socket.close(1000, why);
      end(1006, opened ? why : '');
    };
    this.#abandon = abandon;
    const watch = watchSocket(intervalMs, () => this.#send({ op: 'ping' }), abandon);
    socket.addEventListener('open', () => {
      opened = true;
      watch.opened();
      this.#onOpen();
    });
    socket.addEventListener('message', (event) => {
      watch.heard();
      if (!ended) this.#heardAt = Date.now();
      // The backoff starts over once a connection has answered something, not when it opens: a
      // node that accepts and closes at once (a proxy, a refusal sent as a close) was otherwise
      // redialled every 125–250 ms for ever.
      if (!heardAny) {
        heardAny = true;
        this.#attempt = 0;
      }
      // A dropped socket's late frames belong to a connection already given up on, and so do a
      // closing one's after close(): a standard WebSocket drops them itself, but `ws`'s handed
      // them on while the node answered the close, to handlers the caller had closed.
      if (!ended && !this.#stopped) this.#onFrame(String(event.data));
    });
    socket.addEventListener('close', (event) => end(event.code, event.reason));
    socket.addEventListener('error', (event) => {
      // Browsers say nothing about why; Node's `ws` does ("Unexpected server response: 404").
      const message = (event as { message?: unknown }).message;
      failure ??= typeof message === 'string' && message ? message : 'no answer or the upgrade was refused';
      // After an error, a close event follows, except in Node 20's WebSocket after a refused
      // upgrade: one that never opened ends here (a later close is then ignored).
      if (!opened) end(1006, '');
    });
  }

  #onOpen(): void {
    this.#settleReady?.();
    this.#lastFailure = undefined;
    for (const state of this.#subs.values()) {
      clearTimeout(state.waitTimer);
      state.waitTimer = undefined;
    }
    // What waited for this connection, taken before the listeners run: a subscribe or publish an
    // `open` listener makes is sent by that call, and sending it again here doubled it.
    const subs = [...this.#subs.values()];
    const pubs = [...this.#pubs];
    this.emit('open', undefined);
    for (const state of subs) if (state.active && this.#subs.get(state.topic) === state) this.#sendSub(state);
    for (const [ref, pub] of pubs) {
      if (this.#pubs.get(ref) !== pub) continue;
      clearTimeout(pub.retry);
      pub.retry = undefined;
      this.#sendPub(pub);
    }
  }

  /** `failure` is set when the socket never opened: the node could not be reached at all. */
  #onClose(code: number, reason: string, failure?: string): void {
    this.#socket = undefined;
    if (code === CLOSE_MESSAGE_TOO_BIG) this.#refuseLargest(reason);
    const error = new AnodeError('unavailable', `connection closed (${code})`);
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    this.emit('close', { code, reason });
    if (failure !== undefined && !this.#stopped) {
      this.#lastFailure = failure;
      const cannot = new AnodeError(
        'unavailable',
        `cannot open a WebSocket to ${shownUrl(this.#url)} (${failure}): is the node up, and is this its base URL? ` +
          'Relays and edges serve /v1/ws; an edge older than that protocol does not. With auth on, a missing or ' +
          "refused token looks the same to a WebSocket: pass `token`. To see the node's answer to it: curl -H " +
          `'Authorization: Bearer <token>' ${historyUrl(this.#url)} (401 or 403 says what is wrong with it).`,
      );
      this.emit('error', cannot);
      // `ready` says a node that cannot be reached at first. What waits for a connection goes on
      // waiting while the client reconnects: an app started before its node is served once the
      // node is up. Failing its subscriptions at the first attempt left them dropped for good.
      this.#settleReady?.(cannot);
      if (this.#backoff === false) this.#failUnsettled(cannot);
    }
    if (this.#stopped) return;
    // Not reconnecting: what waits for a connection would otherwise hang until its timeout, and
    // each later publish too.
    if (this.#backoff === false) {
      return this.#stop(new AnodeError('unavailable', `connection closed (${code}) and reconnect is off`));
    }
    if (code === CLOSE_CODES.auth_expired && typeof this.#options.token !== 'function') {
      const expired = new AnodeError(
        'unauthorized',
        'the token expired (close 4002) and a fixed token cannot be renewed: pass `token` as a function that returns a fresh one',
      );
      this.emit('error', expired);
      return this.#stop(expired);
    }
    const delayMs = backoffDelay(this.#attempt, this.#backoff);
    this.#attempt += 1;
    this.emit('reconnecting', { attempt: this.#attempt, delayMs });
    this.#timer = setTimeout(() => void this.#connect(), delayMs);
  }

  /**
   * The node closed with 1009: a frame was too big to read at all (past twice its frame limit).
   * The largest publish sent on that connection is refused with `too_large`; resent, it closed
   * every connection again, taking the publishes behind it down too.
   */
  #refuseLargest(reason: string): void {
    let largest: [string, PubState] | undefined;
    for (const entry of this.#pubs) {
      if (entry[1].sentOn === this.#connection && entry[1].text.length > (largest?.[1].text.length ?? 0)) {
        largest = entry;
      }
    }
    if (!largest) return;
    const [ref, pub] = largest;
    const why = reason ? `: ${reason}` : '';
    this.#endPub(ref);
    pub.reject(
      new AnodeError(
        'too_large',
        `the node closed the connection (1009) on a frame of ${pub.text.length} characters${why}`,
      ),
    );
  }

  #onFrame(text: string): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      return;
    }
    switch (frame.op) {
      case 'msg':
        this.#onMessage(frame);
        break;
      case 'ack':
        this.#onAck(frame);
        break;
      case 'subscribed':
        this.#settle(frame.ref, frame);
        this.emit('subscribed', { topic: frame.topic, cursor: frame.cursor });
        break;
      case 'pong':
        this.#settle(frame.ref, frame);
        break;
      case 'err':
        this.#onError(frame);
        break;
    }
  }

  #settle(ref: string | undefined, frame: ServerFrame): void {
    if (ref === undefined) return;
    const pending = this.#pending.get(ref);
    this.#pending.delete(ref);
    pending?.resolve(frame);
  }

  #onMessage(frame: Extract<ServerFrame, { op: 'msg' }>): void {
    const { op: _op, ...message } = frame;
    const targets = [...this.#subs.values()].filter((s) => s.active && matches(s.topic, message.topic));
    // None: a message that was on its way when its subscriptions were unsubscribed. Handed to no
    // one, the `message` event included (it was emitted, to listeners that had asked for none).
    if (targets.length === 0) return;
    // Those subscribed at the node: one waiting to try its resume again (refused for now) is not.
    const subscribed = targets.filter((s) => s.retry === undefined);
    for (const state of targets) {
      // A waiting subscription is handed what another subscription brings (an edge passes a
      // message on once per connection, so it may never come again), but its cursor stays put:
      // moved ahead of the messages it missed, the retry skipped them (a gap). Its resume, when
      // served, brings everything after its cursor.
      if (state.retry !== undefined) continue;
      // A `msg` does not say which subscription it is for. One that another subscription matches
      // too, arriving while this one replays (its `sub` unanswered), may be the other's live or
      // replayed message, newer than what this replay has sent yet: moving the cursor to it left a
      // gap after a drop (a topic's live message resumed its overlapping pattern past the rest of
      // the pattern's replay). The answer, `subscribed`, carries the newest cursor the replay sent.
      // Held still, a replay that is cut before its answer every time (a long one under live load:
      // close 4001) would start from the same cursor for ever; after CAREFUL_RESUMES such starts
      // the cursor moves on every message again, so the replay ends (a drop then may skip).
      if (state.ref !== undefined && subscribed.length > 1 && state.stalls < CAREFUL_RESUMES) continue;
      if (state.cursor === undefined || compareCursors(message.cursor, state.cursor) > 0) {
        state.cursor = message.cursor;
      }
    }
    // Duplicates are dropped per subscription: a new subscription's replay of a message another
    // one already had is its own first copy (one `message` event per id for the client).
    let handed = this.#handed.get(message.id);
    if (!handed) {
      this.#handed.set(message.id, (handed = []));
      this.emit('message', message);
    }
    for (const state of targets) {
      if (!state.handler || handed.includes(state.dedup)) continue;
      handed.push(state.dedup);
      callSafely(state.handler, message);
    }
  }

  #onAck(frame: Extract<ServerFrame, { op: 'ack' }>): void {
    if (frame.ref === undefined) return;
    const pub = this.#endPub(frame.ref);
    pub?.resolve({ id: frame.id, cursor: frame.cursor });
  }

  /** Forgets a publish and its timers; the caller settles it. */
  #endPub(ref: string): PubState | undefined {
    const pub = this.#pubs.get(ref);
    if (!pub) return undefined;
    this.#pubs.delete(ref);
    clearTimeout(pub.timer);
    clearTimeout(pub.retry);
    return pub;
  }

  /**
   * A publish the node refused for now is sent again with backoff, and at once on the next
   * connection, until acked or `publishTimeoutMs` passes: `unavailable` (a relay stopping for a
   * restart, its storage down, an edge not linked yet) and `rate_limited` (the connection's token
   * bucket is empty; it refills at the node's rate, and a refused publish takes no token). Safe
   * because every publish carries an idempotency key (the caller's or one generated here): a copy
   * the node did store is not stored twice.
   */
  #retryPub(pub: PubState, ref: string, error: AnodeError): void {
    pub.refused = error;
    clearTimeout(pub.retry);
    pub.retry = setTimeout(
      () => {
        pub.retry = undefined;
        if (this.#pubs.get(ref) === pub) this.#sendPub(pub);
      },
      backoffDelay(pub.refusals++, this.#backoff || RETRY),
    );
  }

  #onError(frame: Extract<ServerFrame, { op: 'err' }>): void {
    const code: ErrorCode = isErrorCode(frame.code) ? frame.code : 'internal';
    const error = new AnodeError(code, frame.message);
    const ref = frame.ref;
    const pub = ref === undefined ? undefined : this.#pubs.get(ref);
    if (pub && ref !== undefined) {
      if ((code === 'unavailable' || code === 'rate_limited') && !this.#stopped) this.#retryPub(pub, ref, error);
      else this.#endPub(ref)?.reject(error);
    }
    const pending = ref === undefined ? undefined : this.#pending.get(ref);
    if (pending && ref !== undefined) {
      this.#pending.delete(ref);
      pending.reject(error);
    }
    this.emit('error', error);
  }
}

export function createClient(options: ClientOptions): AnodeClient {
  return new AnodeClient(options);
}

/** Whether a JWT's `exp` has passed by this clock (beyond EXP_LEEWAY_MS); false if it has none or is no JWT. */
function expiredToken(token: string): boolean {
  try {
    const part = token.split('.')[1];
    if (part === undefined) return false;
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const { exp } = JSON.parse(json) as { exp?: unknown };
    return typeof exp === 'number' && exp * 1000 + EXP_LEEWAY_MS < Date.now();
  } catch {
    return false;
  }
}

/**
 * A topic's history over HTTP on the node of a WebSocket URL: it checks a token as the upgrade
 * does and says in words why it refuses one (401, 403), where a WebSocket sees only a failure.
 */
function historyUrl(ws: URL): string {
  const scheme = ws.protocol === 'wss:' ? 'https:' : 'http:';
  const base = ws.pathname.replace(/\/v1\/(ws|topics\/[^/]+\/ws)$/, '');
  return `${scheme}//${ws.host}${base}/v1/topics/<topic>/messages`;
}
