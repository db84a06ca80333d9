import {
  AnodeError,
  assertCanPublish,
  assertCanSubscribe,
  type Claims,
  CLOSE_CODES,
  type ClientFrame,
  createTokenBucket,
  encodeServerFrame,
  ERROR_CODES,
  type ErrorCode,
  handleClientFrame,
  HTTP_STATUS,
  isExpired,
  isPattern,
  atTokenExpiry,
  matches,
  receiveClientFrame,
  RecentMap,
  type ServerFrame,
  type SessionPort,
  toAnodeError,
  UnavailableError,
} from '@anode/shared';
import type { EdgeConfig, Env } from '../config.ts';
import type { ClientGrant } from '../hub/hub-api.ts';
import { hubFor } from '../hub-stub.ts';
import { createPingFences } from './ping-fences.ts';
import { createUpstream, type Upstream, type UpstreamEvents } from './upstream.ts';

/**
 * A client connection at the edge: the whole of PROTOCOL.md's WebSocket, many topics and
 * patterns over one socket. The Worker holds the client socket and routes each frame: a topic's
 * frames go over one socket to that topic's Durable Object (opened on first use, kept while it is
 * subscribed or recently used), which answers them as it answers any socket (subscribed, ack,
 * err, msg); patterns go over one socket to a relay's `/v1/ws`, presenting the client's own
 * token. Frames come back verbatim. A `ping` is answered once every upstream sent a frame since
 * the last one has answered a ping of its own (a fence each, ping-fences.ts: an upstream answers
 * a ping only after every frame before it), so a pong still means every frame before it was. Checks a relay makes per connection (frame shape, token
 * expiry, rights, the publish rate, the subscription cap) are made here, once.
 * See docs/edge-sockets.md for the design and its costs.
 */
export interface ConnectionOptions {
  env: Env;
  config: EdgeConfig;
  claims: Claims;
  /** The client's token, presented to a relay for pattern subscriptions. */
  token: string | undefined;
  /** The Worker's public origin (the topic objects note it for their relay link). */
  origin: string;
}

const PATTERNS = '*patterns*';
/** A relay refusing a pattern connection: its answer goes to the client as it is, not as unavailable. */
const REFUSALS: Partial<Record<number, ErrorCode>> = { 401: 'unauthorized', 403: 'forbidden', 429: 'limit_reached' };
/** Upstreams kept open beyond the subscribed ones (publish-only, recently unsubscribed). */
const SPARE_UPSTREAMS = 8;
const MSG_ID = /^\{"op":"msg","id":"([^"]+)"/;

export function acceptConnection(options: ConnectionOptions, first?: { topic: string; after?: string }): Response {
  const pair = new WebSocketPair();
  const [client, server] = [pair[0], pair[1]];
  server.accept();
  const connection = createConnection(server, options);
  if (first) connection.handle({ op: 'sub', topic: first.topic, ...(first.after ? { after: first.after } : {}) });
  return new Response(null, { status: 101, webSocket: client });
}

/** One client socket's connection (exported for tests, which drive it with a stand-in socket). */
export function createConnection(socket: WebSocket, options: ConnectionOptions) {
  const { config, claims } = options;
  const upstreams = new Map<string, Upstream>();
  const subscriptions = new Set<string>();
  const bucket = createTokenBucket(config.PUBLISH_RATE, config.PUBLISH_BURST);
  // The same message can reach a client through a topic's object and a relay pattern: the
  // relay's rule (each live message once per connection) is kept across upstreams, not within one
  // (a resume replays on purpose), nor for what an upstream sends while a resume through it is
  // under way: a new or retried subscription's replay hands it messages another subscription
  // carried already, as on a relay (a review: a pattern resumed at the edge never got a message
  // its topic's object had delivered, and the client's resume point moved past it).
  const deliveredBy = new RecentMap<string>(10_000);
  const fences = createPingFences();
  let closed = false;

  const send = (text: string) => {
    try {
      socket.send(text);
    } catch {
      // closed under us: the close event cleans up
    }
  };
  const error = (cause: unknown, ref: string | undefined) => {
    const anode = toAnodeError(cause);
    if (anode.code === 'internal') console.error('edge: internal error', cause);
    send(
      encodeServerFrame({ op: 'err', code: anode.code, message: anode.message, ...(ref === undefined ? {} : { ref }) }),
    );
  };
  const close = (code: number, reason: string) => {
    if (closed) return;
    closed = true;
    for (const upstream of upstreams.values()) upstream.close();
    fences.close();
    upstreams.clear();
    cancelExpiry();
    try {
      socket.close(code, reason);
    } catch {
      // already closing
    }
  };

  const events: UpstreamEvents = {
    onFrame(text, from) {
      const id = MSG_ID.exec(text)?.[1];
      if (id !== undefined && !from.replaying) {
        const by = deliveredBy.get(id);
        if (by !== undefined && by !== from.key) return;
        deliveredBy.set(id, from.key);
      }
      send(text);
    },
    onLost(code, reason, from) {
      if (upstreams.get(from.key) === from) upstreams.delete(from.key);
      fences.ended(from); // what it had not answered was refused
      if (from.subscriptions.size === 0) return;
      // The client must resume what it held there: its own reasons pass through (slow consumer,
      // token expiry), anything else (an object restarting, a relay leaving) asks it to reconnect.
      if (code >= 4000 && code <= 4999) close(code, reason);
      else close(CLOSE_CODES.shutdown, 'a topic this connection subscribes to moved; reconnect and resume');
    },
    onRefused: (cause, ref) => error(cause, ref),
    onDialFailed(from, cause) {
      console.warn(JSON.stringify({ msg: 'edge: upstream did not open', key: from.key, error: String(cause) }));
      if (upstreams.get(from.key) === from) upstreams.delete(from.key);
      fences.ended(from);
      for (const topic of from.subscriptions) subscriptions.delete(topic);
    },
    onSubRefused(topic, from) {
      // Not held: it no longer counts against MAX_SUBSCRIPTIONS, nor keeps its upstream open, nor
      // makes that upstream's loss close the client.
      from.subscriptions.delete(topic);
      if (upstreams.get(from.key) === from) subscriptions.delete(topic);
    },
  };

  const dialTopic = (topic: string) => async () => {
    const grant: ClientGrant = {
      topic,
      pub: claims.pub.some((pattern) => matches(pattern, topic)),
      origin: options.origin,
      subscribe: false,
      ...(claims.subject === undefined ? {} : { subject: claims.subject }),
      ...(claims.src === undefined ? {} : { src: claims.src }),
      ...(claims.exp === undefined ? {} : { exp: claims.exp }),
    };
    const response = await hubFor(options.env, topic).fetch(
      new Request('https://topic-hub/socket', {
        headers: { upgrade: 'websocket', 'x-anode-client': JSON.stringify(grant) },
      }),
    );
    if (!response.webSocket) throw new Error(`topic object answered ${response.status}`);
    return response.webSocket;
  };

  /** A relay's own refusal of the client (its token, its rights, its connection cap), else undefined. */
  const refusalOf = async (relay: string, response: Response): Promise<AnodeError | undefined> => {
    const fallback = REFUSALS[response.status];
    if (fallback === undefined) return undefined;
    const body = (await response.json().catch(() => undefined)) as { error?: { code?: unknown; message?: unknown } };
    const named = ERROR_CODES.find((c) => c === body?.error?.code && HTTP_STATUS[c] === response.status);
    const code = named ?? fallback;
    const message =
      typeof body?.error?.message === 'string' ? body.error.message : `the relay answered ${response.status}`;
    console.warn(JSON.stringify({ msg: 'edge: a relay refused a pattern connection', relay, status: response.status }));
    return new AnodeError(code, message);
  };

  const dialRelay = async () => {
    let refusal: AnodeError | undefined;
    for (const relay of config.RELAY_URLS) {
      try {
        const response = await fetch(`${relay}/v1/ws`, {
          headers: { upgrade: 'websocket', ...(options.token ? { authorization: `Bearer ${options.token}` } : {}) },
        });
        if (response.webSocket) return response.webSocket;
        refusal = (await refusalOf(relay, response)) ?? refusal;
        await response.body?.cancel().catch(() => undefined);
      } catch {
        // try the next relay
      }
    }
    throw refusal ?? new Error('no relay accepted the connection');
  };

  /** The upstream for a key, opened if need be (retiring idle spares past the cap). */
  const upstreamFor = (key: string): Upstream => {
    let upstream = upstreams.get(key);
    if (upstream) return upstream;
    const spares = [...upstreams.values()].filter((u) => u.subscriptions.size === 0);
    if (spares.length >= SPARE_UPSTREAMS) {
      const oldest = spares.reduce((a, b) => (a.usedAt <= b.usedAt ? a : b));
      upstreams.delete(oldest.key);
      fences.retire(oldest);
    }
    upstream = createUpstream(key, key === PATTERNS ? dialRelay : dialTopic(key), events);
    upstreams.set(key, upstream);
    return upstream;
  };

  /** A client frame to its upstream; `answered` for frames the upstream answers (pub, sub). */
  const forward = (
    upstream: Upstream,
    text: string,
    answered?: { ref: string | undefined; sub?: string },
    drops?: string,
  ) => {
    upstream.send(text, answered, drops);
    fences.sent(upstream);
  };

  /** A client's pong, once every frame before its ping was answered (ping-fences.ts). */
  const pong = (frame: ServerFrame) => {
    const text = encodeServerFrame(frame);
    fences.pong(() => {
      if (!closed) send(text);
    });
  };

  /** This connection as the protocol's session port (shared/src/session.ts): frames are routed on. */
  const port: SessionPort = {
    expired: () => isExpired(claims),
    close: (reason, message) => close(CLOSE_CODES[reason], message),
    assertPublish: (topic) => assertCanPublish(claims, topic),
    assertSubscribe: (topic) => assertCanSubscribe(claims, topic),
    takeToken: () => bucket.take(),
    publishRate: config.PUBLISH_RATE,
    subscriptions: {
      max: config.MAX_SUBSCRIPTIONS,
      has: (topic) => subscriptions.has(topic),
      count: () => subscriptions.size,
    },
    // The topic's object accepts it and answers `ack` (or `err`) with the ref, verbatim.
    publish(frame, text) {
      forward(upstreamFor(frame.topic), text, { ref: frame.ref });
      return undefined;
    },
    subscribe(frame, text) {
      const pattern = isPattern(frame.topic);
      if (pattern && config.RELAY_URLS.length === 0) {
        throw new UnavailableError(
          'pattern subscriptions at the edge are served by a relay, and this edge has none (RELAY_URLS)',
        );
      }
      const upstream = upstreamFor(pattern ? PATTERNS : frame.topic);
      subscriptions.add(frame.topic);
      upstream.subscriptions.add(frame.topic);
      // A resume of this topic still running there is abandoned by this `sub` (never answered).
      forward(upstream, text, { ref: frame.ref, sub: frame.topic }, frame.topic);
    },
    unsubscribe(frame, text) {
      const upstream = upstreams.get(isPattern(frame.topic) ? PATTERNS : frame.topic);
      subscriptions.delete(frame.topic);
      if (!upstream) return;
      upstream.subscriptions.delete(frame.topic);
      forward(upstream, text, undefined, frame.topic);
    },
    send: (frame) => (frame.op === 'pong' ? pong(frame) : send(encodeServerFrame(frame))),
    refuse: (cause, ref) => error(cause, ref),
  };

  const handle = (frame: ClientFrame, text = JSON.stringify(frame)) => void handleClientFrame(frame, text, port);

  const receive = (message: string | ArrayBuffer) => {
    if (closed) return;
    try {
      void receiveClientFrame(message, config.MAX_FRAME_BYTES, port);
    } catch (cause) {
      error(cause, undefined); // a failure here must not take the connection down
    }
  };
  // A Worker receives binary frames as a Blob, read asynchronously; frames after one wait for it,
  // so every frame is still answered in order. Text frames with nothing waiting go straight through.
  let waiting = 0;
  let chain = Promise.resolve();
  socket.addEventListener('message', (event) => {
    const data = event.data as string | ArrayBuffer | Blob;
    if (waiting === 0 && typeof data === 'string') return receive(data);
    waiting += 1;
    chain = chain
      .then(async () => receive(data instanceof Blob ? await data.arrayBuffer() : data))
      .finally(() => (waiting -= 1));
  });
  socket.addEventListener('close', () => close(1000, 'closed'));
  socket.addEventListener('error', () => close(1011, 'error'));

  const cancelExpiry = atTokenExpiry(claims.exp, () => close(CLOSE_CODES.auth_expired, 'token expired'));

  return { handle };
}
