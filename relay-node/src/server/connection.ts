import {
  assertCanPublish,
  BadFrameError,
  assertCanSubscribe,
  CLOSE_CODES,
  createTokenBucket,
  encodeServerFrame,
  type Claims,
  type ClientFrame,
  createFrameOrder,
  ENVELOPE_OVERHEAD_BYTES,
  isExpired,
  atTokenExpiry,
  readClientFrame,
  refFound,
  type ServerFrame,
  type SessionPort,
  randomId,
  toAnodeError,
} from '@anode/shared';
import { isUtf8 } from 'node:buffer';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { RelayConfig } from '../config.ts';
import type { Hub, PublishContext, Subscriber } from '../hub/hub.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';

/**
 * One client WebSocket: parses and checks every frame (size, shape, auth, limits), answers with
 * `ack`/`subscribed`/`pong` or a coded `err`, and receives fan-out from the hub. A bad frame
 * never closes the connection; the server closes only for its own reasons (4000–4999).
 */
/** How often a paced resume looks whether the peer has taken its backlog (see backlog). */
const RESUME_POLL_MS = 10;

/**
 * The unsent bytes past which a subscriber is cut off as too slow (4001): max_send_buffer_bytes,
 * but at least two of the largest frames the node sends (a message of max_message_bytes and its
 * envelope). A message may be larger than the configured buffer (max_message_bytes goes up to
 * 16 MiB, the buffer is 8 MiB by default): a reader that kept up was cut off by that one message,
 * and again at every resume over it, so no subscriber could ever get it. Two, because a resume
 * sends its next frame once the peer is back below half the limit (backlog).
 */
export function sendBufferLimit(config: Pick<RelayConfig, 'max_send_buffer_bytes' | 'max_message_bytes'>): number {
  return Math.max(config.max_send_buffer_bytes, 2 * (config.max_message_bytes + ENVELOPE_OVERHEAD_BYTES));
}

export interface ConnectionDeps {
  hub: Hub;
  config: RelayConfig;
  metrics: Metrics;
  log: Logger;
  /** Logs that the server closes a connection (one line per close let a flood of bad sockets flood the log). */
  closing: (conn: string, reason: CloseReason) => void;
}

export type CloseReason = keyof typeof CLOSE_CODES;

export class ClientConnection implements Subscriber {
  // Frames sent to a connection in one synchronous run (the fan-out of a committed batch of
  // publishes, a page of catch-up) leave in one write: its socket is corked at the first send and
  // every corked socket is uncorked together on the next tick. One writev per subscriber per batch
  // instead of one per message; nothing waits beyond the current tick.
  static #corked: ClientConnection[] = [];
  static #releaseScheduled = false;
  static #release = (): void => {
    ClientConnection.#releaseScheduled = false;
    const corked = ClientConnection.#corked;
    ClientConnection.#corked = [];
    for (const connection of corked) connection.#uncork();
  };

  readonly id = randomId();
  readonly #ws: WebSocket;
  /** The upgraded socket under `#ws`, when known (to cork it). */
  readonly #socket: Duplex | undefined;
  #isCorked = false;
  readonly #corkFlushBytes: number;
  readonly #sendLimit: number;
  readonly #claims: Claims;
  readonly #publishContext: PublishContext;
  readonly #deps: ConnectionDeps;
  readonly #bucket;
  readonly #port: SessionPort;
  #closed = false;
  #allowedTopic: string | undefined;
  readonly #order = createFrameOrder(() => this.#port);
  readonly #cancelExpiry: () => void;

  constructor(ws: WebSocket, claims: Claims, deps: ConnectionDeps, socket?: Duplex) {
    this.#ws = ws;
    this.#socket = socket;
    this.#sendLimit = sendBufferLimit(deps.config);
    this.#corkFlushBytes = Math.min(64 * 1024, this.#sendLimit / 2);
    this.#claims = claims;
    this.#publishContext = { via: 'ws', claims };
    this.#deps = deps;
    this.#bucket = createTokenBucket(deps.config.publish_rate, deps.config.publish_burst);
    this.#port = this.#makePort();
    deps.metrics.connections.inc();
    ws.on('message', (data, isBinary) => this.#onMessage(data as Buffer, isBinary));
    ws.on('close', () => this.#onClose());
    ws.on('error', (error) => deps.log.debug({ err: error, conn: this.id }, 'socket error'));
    this.#cancelExpiry = atTokenExpiry(claims.exp, () => this.close('auth_expired', 'token expired'));
  }

  send(frame: string): boolean {
    if (this.#closed || this.#ws.readyState !== this.#ws.OPEN) return false;
    this.#cork();
    this.#ws.send(frame);
    // Corked bytes count as unsent: hand a large enough run to the kernel now, so only bytes the
    // peer has not taken count against the slow-consumer limit.
    if (this.#isCorked && this.#ws.bufferedAmount >= this.#corkFlushBytes) this.#uncork();
    if (this.#ws.bufferedAmount > this.#sendLimit) {
      this.close('slow_consumer', 'send buffer full: subscriber too slow; resume from your last cursor');
      return false;
    }
    return true;
  }

  /**
   * A resume's pace (Subscriber.backlog): past half the send buffer, wait until the peer has
   * taken it back below that (or the connection ends).
   */
  backlog(): Promise<void> | undefined {
    const limit = this.#sendLimit / 2;
    if (this.#closed || this.#ws.bufferedAmount <= limit) return undefined;
    this.#uncork();
    return new Promise<void>((resolve) => {
      const check = () => {
        if (this.#closed || this.#ws.readyState !== this.#ws.OPEN || this.#ws.bufferedAmount <= limit) resolve();
        else setTimeout(check, RESUME_POLL_MS);
      };
      setTimeout(check, RESUME_POLL_MS);
    });
  }

  #cork(): void {
    if (this.#isCorked || !this.#socket) return;
    this.#isCorked = true;
    this.#socket.cork();
    ClientConnection.#corked.push(this);
    if (!ClientConnection.#releaseScheduled) {
      ClientConnection.#releaseScheduled = true;
      process.nextTick(ClientConnection.#release);
    }
  }

  #uncork(): void {
    if (!this.#isCorked) return;
    this.#isCorked = false;
    this.#socket?.uncork();
  }

  overflow(): void {
    this.close('slow_consumer', 'too many live messages while catching up; resume from your last cursor');
  }

  close(reason: CloseReason, message: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#deps.metrics.disconnects.inc({ reason });
    // At shutdown the server logs one line for all (ws-server.ts closeAll).
    if (reason !== 'shutdown') this.#deps.closing(this.id, reason);
    this.#deps.hub.removeSubscriber(this);
    this.#ws.close(CLOSE_CODES[reason], message);
    // A peer too slow to read its queue will not read the close frame either.
    setTimeout(() => this.#ws.terminate(), 2_000).unref();
  }

  /** Subscribe on open (the one-topic endpoint). */
  subscribeOnOpen(topic: string, after: string | undefined): void {
    void this.#handle({ op: 'sub', topic, after, ref: undefined });
  }

  #frame(frame: ServerFrame): void {
    this.send(encodeServerFrame(frame));
  }

  #error(error: unknown, ref: string | undefined): void {
    const anode = toAnodeError(error);
    if (anode.code === 'internal') this.#deps.log.error({ err: error, conn: this.id }, 'internal error');
    this.#deps.metrics.errors.inc({ code: anode.code });
    this.#frame({ op: 'err', code: anode.code, message: anode.message, ...(ref === undefined ? {} : { ref }) });
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    if (this.#closed) return;
    const max = this.#deps.config.max_frame_bytes;
    // ws is told not to check UTF-8 (it would close the connection): a text frame that is not
    // valid UTF-8 is answered here, with its ref wherever it stands (parsed only when the text
    // is not too deep to parse, as for a binary frame).
    if (!isBinary && data.byteLength <= max && !isUtf8(data)) {
      this.#error(new BadFrameError('text frame is not valid UTF-8'), refFound(data.toString('utf8')));
      return;
    }
    // The reader every node runs (the edge too): size, binary, depth before parsing, then shape.
    // A frame too large or binary stays bytes: never decoded whole.
    const read = readClientFrame(isBinary || data.byteLength > max ? data : data.toString('utf8'), max);
    if (!read.ok) {
      this.#error(read.error, read.ref);
      return;
    }
    void this.#handle(read.frame);
  }

  /** This connection as the protocol's session port (shared/src/session.ts). */
  #makePort(): SessionPort {
    return {
      expired: () => isExpired(this.#claims),
      close: (reason, message) => this.close(reason, message),
      assertPublish: (topic) => {
        // The rights never change on a connection: the last topic allowed is allowed again
        // (expiry is checked per frame before this).
        if (topic === this.#allowedTopic) return;
        assertCanPublish(this.#claims, topic);
        this.#allowedTopic = topic;
      },
      assertSubscribe: (topic) => assertCanSubscribe(this.#claims, topic),
      takeToken: () => this.#bucket.take(),
      publishRate: this.#deps.config.publish_rate,
      subscriptions: {
        max: this.#deps.config.max_subscriptions,
        has: (topic) => this.#deps.hub.isSubscribed(this, topic),
        count: () => this.#deps.hub.subscriptionCount(this),
      },
      publish: (frame) => this.#deps.hub.publishOne(frame.topic, frame, this.#publishContext),
      subscribe: (frame) => this.#deps.hub.subscribe(this, frame.topic, frame.after, frame.ref),
      unsubscribe: (frame) => void this.#deps.hub.unsubscribe(this, frame.topic),
      send: (frame) => this.#frame(frame),
      refuse: (cause, ref) => this.#error(cause, ref),
    };
  }

  /**
   * Frames are answered in order as PROTOCOL.md promises it: a ping only once every frame before
   * it was (createFrameOrder), so a client may use a ping as a fence.
   */
  #handle(frame: ClientFrame): void {
    this.#order(frame, '');
  }

  #onClose(): void {
    this.#cancelExpiry();
    this.#closed = true;
    this.#deps.hub.removeSubscriber(this);
    this.#deps.metrics.connections.dec();
  }
}
