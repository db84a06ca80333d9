import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  AnodeError,
  assertCanSubscribe,
  assertTopic,
  BadFrameError,
  type Claims,
  CLOSE_MESSAGE_TOO_BIG,
  isCursor,
  type TokenVerifier,
  toAnodeError,
  tokenFrom,
  UnavailableError,
} from '@anode/shared';
import { type WebSocket, WebSocketServer } from 'ws';
import { type Logger, throttledLog } from '../logger.ts';
import { ClientConnection, type CloseReason, type ConnectionDeps, sendBufferLimit } from './connection.ts';
import { createConnectionCaps } from './connection-caps.ts';
import { watchUnfinishedFrames } from './frame-watch.ts';

/**
 * WebSocket endpoints: `/v1/ws` (many topics) and `/v1/topics/{topic}/ws?after=` (one topic,
 * subscribed on open). The handshake is authenticated before upgrading, so a refused client gets
 * an HTTP status with the protocol's JSON error instead of an opened-then-closed socket.
 */
export interface WsDeps extends Omit<ConnectionDeps, 'closing'> {
  verify: TokenVerifier;
  accepting: () => boolean;
  /** True when auth is on: connections are then also counted per token. */
  verifiesTokens: boolean;
  /** Upgrades that components take over (checked first); each returns true when it handled one. */
  upgradeHooks?: ((request: IncomingMessage, socket: Duplex, head: Buffer) => boolean)[];
}

const TOPIC_WS = /^\/v1\/topics\/([^/]+)\/ws$/;

/** How long a refused upgrade's answer may take to leave before its socket is destroyed. */
const REFUSED_LINGER_MS = 5_000;

function refuse(socket: Duplex, error: AnodeError): void {
  const body = JSON.stringify({ error: error.toJSON() });
  // Destroyed once the answer is written: the server hands an upgrade's socket over half-open,
  // with no timeout left on it, so an ended one stayed open until the client closed its side,
  // counted against the per-address caps (a review: 66 refused upgrades held for 100 s shut
  // that address out of the relay). A client that never reads gets REFUSED_LINGER_MS.
  socket.end(
    `HTTP/1.1 ${error.status} ${error.code}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  );
  const linger = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS).unref();
  socket.once('close', () => clearTimeout(linger));
}

/**
 * The `closing connection` line: a client that opens bad sockets by the thousand (frames left
 * unfinished, never read) made one line each. Per reason, the first is logged at once, then at
 * most one per 10 s with how many closed since (`connections`) and the latest's id; the counts
 * left at stop are logged by `flush`. Every close is also counted, by reason, in
 * anode_server_disconnects_total.
 */
function closingLog(log: Logger) {
  const byReason = new Map<CloseReason, ReturnType<typeof throttledLog>>();
  const note = (conn: string, reason: CloseReason) => {
    let line = byReason.get(reason);
    if (!line) {
      line = throttledLog(log, 'info', 'closing connection', { countField: 'connections' });
      byReason.set(reason, line);
    }
    line({ conn, reason });
  };
  note.flush = () => {
    for (const line of byReason.values()) line.flush();
  };
  return note;
}

/**
 * ws closes a frame past its maxPayload with 1009 and an empty reason (it calls the socket's own
 * `close`): the reason says which limit refused it, so the client's close event names the setting.
 */
function explainTooBig(ws: WebSocket, reason: string): void {
  const close = ws.close.bind(ws);
  ws.close = (code?: number, data?: string | Buffer) =>
    close(code, code === CLOSE_MESSAGE_TOO_BIG && data === undefined ? reason : data);
}

export function attachWebSockets(server: Server, wsDeps: WsDeps) {
  const closing = closingLog(wsDeps.log);
  const sendLimit = sendBufferLimit(wsDeps.config);
  if (sendLimit > wsDeps.config.max_send_buffer_bytes) {
    wsDeps.log.warn(
      {
        max_send_buffer_bytes: wsDeps.config.max_send_buffer_bytes,
        max_message_bytes: wsDeps.config.max_message_bytes,
      },
      `max_send_buffer_bytes is below two of the largest messages: a client WebSocket is cut off as too slow past ${sendLimit} unsent bytes instead, or those messages could never be delivered`,
    );
  }
  const deps: WsDeps & ConnectionDeps = { ...wsDeps, closing };
  // Frames up to the configured limit are handled; larger ones get a `too_large` error frame,
  // and beyond twice the limit (at least the limit plus 64 KiB) the library closes the socket with
  // 1009 before buffering them, so a connection never holds more than that of one unfinished frame
  // (and only for `frame_timeout_ms`). UTF-8 is checked by the connection, so invalid text gets
  // `bad_frame` rather than a 1007 close.
  const hardCap = deps.config.max_frame_bytes + Math.max(deps.config.max_frame_bytes, 64 * 1024);
  const tooBigReason = `frame over ${hardCap} bytes, far past max_frame_bytes (${deps.config.max_frame_bytes}): not read`;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: hardCap,
    perMessageDeflate: false,
    skipUTF8Validation: true,
  });
  const connections = new Set<ClientConnection>();
  // Liveness: every client_ping_ms each socket is pinged, and one that did not answer the
  // previous ping is dropped. A client gone without a close (a NAT or load balancer that forgot
  // it, a phone that changed networks) would otherwise hold its subscriptions and its slots
  // under the connection caps forever.
  const answered = new Map<WebSocket, boolean>();
  const pingMs = deps.config.client_ping_ms;
  const pinger =
    pingMs > 0
      ? setInterval(() => {
          for (const [ws, ok] of answered) {
            if (!ok) {
              deps.metrics.disconnects.inc({ reason: 'ping_timeout' });
              deps.log.debug({ ms: pingMs }, 'client did not answer a ping: connection dropped');
              answered.delete(ws);
              ws.terminate();
              continue;
            }
            // ping() throws on a socket already closing (its close has its own deadline).
            if (ws.readyState !== ws.OPEN) continue;
            answered.set(ws, false);
            ws.ping();
          }
        }, pingMs)
      : undefined;
  pinger?.unref();
  const caps = createConnectionCaps({
    perToken: deps.config.max_connections_per_token,
    perAddress: deps.config.max_connections_per_address,
  });

  const authorize = async (request: IncomingMessage, url: URL) => {
    if (!deps.accepting()) throw new UnavailableError('node is shutting down');
    const match = TOPIC_WS.exec(url.pathname);
    if (url.pathname !== '/v1/ws' && !match) {
      throw new AnodeError('bad_frame', `no WebSocket endpoint at ${url.pathname}`);
    }
    // The topic before the token, as over HTTP and at the edge: a bad topic is 400 with or
    // without a token (it was 401 here when the token was missing). `after` after the rights to
    // the topic, as there too.
    let topic: string | undefined;
    if (match) {
      // A malformed escape is left as it is, as the HTTP routes (and the edge) do, so the
      // topic grammar refuses it with the same code (bad_topic; it was bad_frame here).
      try {
        topic = decodeURIComponent(match[1] ?? '');
      } catch {
        topic = match[1] ?? '';
      }
      assertTopic(topic);
    }
    const claims: Claims = await deps.verify(tokenFrom(request.headers.authorization, url, true));
    // Counted once authorized (an unauthenticated client is refused before taking a slot), per
    // subject: minting more tokens for one subject does not buy more sockets. A token without a
    // subject counts on its own.
    const credential = !deps.verifiesTokens
      ? undefined
      : claims.subject !== undefined
        ? `subject:${claims.subject}`
        : `token:${tokenFrom(request.headers.authorization, url, true) ?? ''}`;
    const release = caps.admit(credential, request.socket.remoteAddress ?? 'unknown');
    if (topic === undefined) return { claims, topic: undefined, after: undefined, release };
    const after = url.searchParams.get('after') ?? undefined;
    try {
      assertCanSubscribe(claims, topic);
      if (after !== undefined && !isCursor(after)) throw new BadFrameError('after: not a cursor');
    } catch (error) {
      release();
      throw error;
    }
    return { claims, topic, after, release };
  };

  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {}); // a client vanishing mid-handshake is not our error
    if (deps.upgradeHooks?.some((hook) => hook(request, socket, head))) return;
    // A request target URL cannot parse (`//[`) is refused like any bad request: thrown here,
    // outside the promise below, it would take the whole relay down.
    const target = (): URL => {
      try {
        return new URL(request.url ?? '/', 'http://relay');
      } catch {
        throw new BadFrameError('malformed request target');
      }
    };
    Promise.resolve()
      .then(() => authorize(request, target()))
      .then(
        ({ claims, topic, after, release }) => {
          socket.once('close', release);
          if (socket.destroyed) release(); // the client left while its token was being checked
          wss.handleUpgrade(request, socket, head, (ws) => {
            explainTooBig(ws, tooBigReason);
            const connection = new ClientConnection(ws, claims, deps, socket);
            connections.add(connection);
            if (pinger) {
              answered.set(ws, true);
              ws.on('pong', () => answered.has(ws) && answered.set(ws, true));
            }
            const unwatch = watchUnfinishedFrames(ws, socket, deps.config.frame_timeout_ms, () =>
              connection.close('frame_timeout', `a frame was left unfinished for ${deps.config.frame_timeout_ms} ms`),
            );
            ws.on('close', () => {
              answered.delete(ws);
              unwatch();
              release();
              connections.delete(connection);
            });
            if (topic) connection.subscribeOnOpen(topic, after);
          });
        },
        (error) => {
          const anode = toAnodeError(error);
          deps.metrics.errors.inc({ code: anode.code });
          refuse(socket, anode);
        },
      );
  });

  return {
    get size() {
      return connections.size;
    },
    /** Close every connection with the shutdown code; resolves when they are gone. */
    async closeAll(): Promise<void> {
      clearInterval(pinger);
      // One line for all of them (each close logged its own: 10,000 lines at every restart).
      if (connections.size > 0) deps.log.info({ connections: connections.size }, 'closing every client connection');
      for (const connection of connections) connection.close('shutdown', 'node is shutting down');
      const deadline = Date.now() + 3_000;
      while (connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      wss.close();
      closing.flush();
    },
  };
}
