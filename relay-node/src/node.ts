import { readFile } from 'node:fs/promises';
import {
  createServer,
  type IncomingMessage,
  maxHeaderSize,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createHybridClock, createTokenVerifier, type MessageStore, PROTOCOL_VERSION } from '@anode/shared';
import { getRequestListener, RequestError } from '@hono/node-server';
import type { Hono } from 'hono';
import { createCluster } from './cluster.ts';
import type { Component, ComponentFactory } from './component.ts';
import type { RelayConfig } from './config.ts';
import { createHub } from './hub/hub.ts';
import { type Logger, throttledWarning } from './logger.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { type ClockLease, leaseClock } from './clock-lease.ts';
import { loadNodeId } from './node-id.ts';
import { securePrivateDir } from './private-files.ts';
import { createCounts } from './server/connection-caps.ts';
import { createHttpApp } from './server/http-app.ts';
import { attachWebSockets } from './server/ws-server.ts';
import { createStore } from './storage/create-store.ts';
import { createHeldStore, type HeldStore, HOLD_BYTES, HOLD_MS } from './storage/held-store.ts';
import { VERSION } from './version.ts';
import { createMeshComponent } from './mesh/mesh-component.ts';
import { listenFailure } from './mesh/host.ts';
import { meshEnabled } from './mesh/mesh-config.ts';
import { createDashboardComponent } from './dashboard/dashboard-component.ts';
import { createWatchers } from './dashboard/watchers.ts';
import { createSourcesComponent } from './sources/sources-component.ts';
import { createEdgeComponent } from './edge/edge-component.ts';
import { sweepSchedule } from './retention-schedule.ts';
import { lockDataDir } from './data-dir-lock.ts';

/** Optional parts, started in this order after the store and hub, stopped in reverse. */
const COMPONENTS: ComponentFactory[] = [
  createMeshComponent,
  createSourcesComponent,
  createEdgeComponent,
  createDashboardComponent,
];

/**
 * A relay node: store, hub, HTTP and WebSocket server, wired together. `start` listens and
 * resolves with the URL; `stop` stops accepting, flushes pending publishes (their acks go out),
 * closes every socket with the shutdown code, then closes the store: the reverse of start.
 */
export interface RelayNode {
  readonly id: string;
  start(): Promise<{ url: string }>;
  stop(): Promise<void>;
}

export interface RelayNodeOverrides {
  /** Wrap the configured store (tests use this to inject storage faults). */
  wrapStore?: (store: MessageStore) => MessageStore;
  /** Wrap each optional component (tests use this to inject faults in its start or stop). */
  wrapComponent?: (component: Component) => Component;
}

export async function createRelayNode(
  config: RelayConfig,
  log: Logger,
  overrides: RelayNodeOverrides = {},
): Promise<RelayNode> {
  securePrivateDir(config.data_dir);
  // Before anything else reads the folder: a second relay on it stops here (data-dir-lock.ts).
  const lock = lockDataDir(config.data_dir);
  let node: RelayNode;
  try {
    node = await assembleRelayNode(config, log, overrides);
  } catch (error) {
    lock.release();
    throw error;
  }
  let stopped: Promise<void> | undefined;
  return {
    id: node.id,
    start: () => node.start(),
    // The folder is given up once, after everything in it is closed.
    stop: () => (stopped ??= node.stop().finally(() => lock.release())),
  };
}

async function assembleRelayNode(config: RelayConfig, log: Logger, overrides: RelayNodeOverrides): Promise<RelayNode> {
  const id = await loadNodeId(config.data_dir);
  const metrics = createMetrics();
  const configured = createStore(config, log, metrics, id);
  const wrapped = overrides.wrapStore ? overrides.wrapStore(configured) : configured;
  // Persist mode `origin` on a shared store (Cassandra): what other relays accepted is held for
  // history reads until the shared store has it (a message in its relay's spool can take minutes
  // to arrive there). On an embedded store nothing is shared, and nothing is held.
  const held =
    meshEnabled(config) && config.mesh_persist === 'origin' && config.store === 'cassandra'
      ? createHeldStore(wrapped, { holdMs: HOLD_MS, maxBytes: HOLD_BYTES })
      : undefined;
  const store = held ?? wrapped;
  let lease: ClockLease | undefined;
  try {
    lease = leaseClock(config.data_dir, createHybridClock(id), log);
    return await wireRelayNode({ config, log, id, metrics, store, held, lease, overrides });
  } catch (error) {
    // Nothing else is started yet: the lease's renewals and the open store are all that would
    // outlive the failure (a lease written on in a folder whose lock is released).
    await lease?.stop();
    await store.close().catch((closing: unknown) => log.warn({ err: closing }, 'store not closed'));
    throw error;
  }
}

interface RelayParts {
  config: RelayConfig;
  log: Logger;
  id: string;
  metrics: Metrics;
  store: MessageStore;
  held: HeldStore | undefined;
  lease: ClockLease;
  overrides: RelayNodeOverrides;
}

async function wireRelayNode(parts: RelayParts): Promise<RelayNode> {
  const { config, log, id, metrics, store, held, lease, overrides } = parts;
  const startedAt = Date.now();
  const { clock } = lease;
  const hub = createHub({
    store,
    clock,
    metrics,
    log: log.child({ component: 'hub' }),
    maxMessageBytes: config.max_message_bytes,
    remoteInputs: meshEnabled(config),
    onUnstored: held && ((envelopes) => held.hold(envelopes)),
    // Any relay pointed at the keyspace writes to it, meshed with this one or not.
    storeShared: config.store === 'cassandra',
  });

  const auth = config.jwt_secret || config.jwt_public_keys.length > 0;
  const publicKeys = await Promise.all(config.jwt_public_keys.map((path) => readPublicKey(path)));
  const verify = await createTokenVerifier(
    auth ? { hs256Secret: config.jwt_secret, publicKeys, audience: config.jwt_audience } : undefined,
  );
  let accepting = true;
  let url = '';

  const status = async () => {
    const merged: Record<string, unknown> = await baseStatus();
    for (const component of components) {
      const extra = (await component.status?.()) ?? {};
      const { node, ...rest } = extra as { node?: Record<string, unknown> };
      Object.assign(merged, rest);
      if (node) Object.assign(merged.node as Record<string, unknown>, node);
    }
    return merged;
  };

  const baseStatus = async () => ({
    node: {
      id,
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      uptime_s: Math.round((Date.now() - startedAt) / 1000),
      started_at: new Date(startedAt).toISOString(),
      url,
      auth: auth ? 'jwt' : 'none',
      max_message_bytes: config.max_message_bytes,
    },
    store: { kind: store.kind, ...(await store.health()), queued: hub.writer.queued },
    connections: sockets.size,
    ...hub.status(),
  });

  const context = {
    nodeId: id,
    clock,
    config,
    hub,
    store,
    metrics,
    log,
    cluster: createCluster(id),
    status,
    watchers: createWatchers(),
  };
  const components: Component[] = [];
  for (const factory of COMPONENTS) {
    const component = await factory({ ...context, log: log.child({ component: factory.name }) });
    if (component) components.push(overrides.wrapComponent?.(component) ?? component);
  }

  const app = createHttpApp({
    hub,
    config,
    metrics,
    log: log.child({ component: 'http' }),
    verify,
    status,
    // A lease write that failed (a full disk) refuses every publish before the store is reached.
    healthy: async () =>
      accepting &&
      lease.problem() === undefined &&
      (await store.health()).ok &&
      components.every((c) => c.healthy?.() ?? true),
    // anode_store_up is "1 when the store is healthy": set by each append's outcome, it said 1
    // all along while a stuck writer thread answered none (health not ok, no append failed),
    // and 0 for good after a failed append on a relay that then published nothing.
    beforeScrape: async () => void metrics.storeUp.set((await store.health()).ok ? 1 : 0),
    extraRoutes: components.flatMap((c) => (c.routes ? [(app: Hono) => c.routes?.(app)] : [])),
  });
  // A client that trickles its request headers (a WebSocket handshake included) is cut off after
  // `frame_timeout_ms`, as is one that trickles a started WebSocket frame (ws-server.ts). An idle
  // kept-alive connection stays `http_keep_alive_ms` (Node's default, 5 s, is below the idle
  // timeout of most proxies and load balancers, which then reuse a connection the relay is
  // closing and answer a publish with 502, not knowing whether it was stored).
  const server: Server = createServer(
    {
      keepAliveTimeout: config.http_keep_alive_ms,
      headersTimeout: config.frame_timeout_ms,
      requestTimeout: Math.max(30_000, config.frame_timeout_ms * 3),
      connectionsCheckingInterval: Math.min(30_000, Math.max(250, config.frame_timeout_ms / 4)),
      // An HTTP/1.1 request without Host is refused in serveHttp, with a JSON body (Node's own
      // refusal has none); an HTTP/1.0 one is served.
      requireHostHeader: false,
    },
    serveHttp(app.fetch, metrics, log.child({ component: 'http' })),
  );
  answerClientErrors(server, config.frame_timeout_ms, metrics);
  capSocketsPerAddress(server, config.max_connections_per_address, log);
  const sockets = attachWebSockets(server, {
    hub,
    config,
    metrics,
    log: log.child({ component: 'ws' }),
    verify,
    accepting: () => accepting,
    verifiesTokens: Boolean(auth),
    upgradeHooks: components.flatMap((c) => (c.upgrade ? [c.upgrade.bind(c)] : [])),
  });

  // Retention runs on a schedule that catches up with a busy topic (retention-schedule.ts). A
  // sweep deletes in steps that let publishes in between, so a large one can outlast a check:
  // the next one then waits instead of running beside it.
  const schedule = sweepSchedule(
    { intervalMs: config.retention_sweep_ms, maxMessages: config.retention_max_messages },
    performance.now(),
  );
  let sweeping = false;
  const sweep = async () => {
    const started = performance.now();
    if (sweeping || !schedule.due(started, hub.writer.stored)) return;
    sweeping = true;
    schedule.started(started, hub.writer.stored);
    try {
      const counts = { latestDeleted: 0 };
      const deleted = await store.sweep(undefined, counts);
      schedule.finished(deleted);
      metrics.retentionDeleted.inc(deleted);
      metrics.retentionLatestDeleted.inc(counts.latestDeleted);
      if (deleted > 0 || counts.latestDeleted > 0) {
        const ms = Math.round(performance.now() - started);
        log.info({ deleted, latest_deleted: counts.latestDeleted, ms }, 'retention sweep');
      }
    } catch (error) {
      log.error({ err: error }, 'retention sweep failed');
    } finally {
      sweeping = false;
    }
  };
  let sweeper: ReturnType<typeof setInterval> | undefined;

  return {
    id,
    async start() {
      // Mesh options with the mesh off are ignored, as every mesh option is; these three are the
      // ones that close a mesh to outsiders, so one set by mistake is worth a line (a key file
      // named here is not even read).
      const unused = (['mesh_key', 'mesh_key_file', 'mesh_allow'] as const).filter((key) =>
        key === 'mesh_allow' ? config.mesh_allow.length > 0 : config[key] !== undefined,
      );
      if (unused.length > 0 && !meshEnabled(config)) {
        log.warn(
          { unused },
          `${unused.join(', ')} ${unused.length > 1 ? 'are' : 'is'} set but the mesh is off, so not used` +
            `${config.mesh_key_file ? ' (the key file is not read)' : ''}: turn the mesh on with --mesh true, --listen or --bootstrap`,
        );
      }
      await store.open?.();
      await new Promise<void>((resolve, reject) => {
        server.once('error', (error) => reject(hostFailure(error, config.host) ?? error));
        server.listen(config.port, config.host, () => resolve());
      });
      // Said once the port is ours: a relay that cannot start (its port in use) says only why.
      if (!auth) {
        log.warn('AUTH IS OFF: anyone who can reach this node may publish and subscribe to every topic');
        if (config.jwt_audience.length > 0) {
          log.warn('jwt_audience is set but auth is off (no jwt_secret or jwt_public_keys): it checks nothing');
        }
      }
      const address = server.address() as AddressInfo;
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      url = `http://${host}:${address.port}`;
      try {
        for (const component of components) await component.start();
      } catch (error) {
        throw listenFailure(error) ?? error;
      }
      sweeper = setInterval(sweep, schedule.checkMs);
      sweeper.unref();
      metrics.storeUp.set((await store.health()).ok ? 1 : 0);
      log.info({ url, node: id, store: store.kind }, `relay ready at ${url}`);
      return { url };
    },
    async stop() {
      if (!accepting) return;
      accepting = false;
      clearInterval(sweeper);
      log.info('shutting down: no new connections or publishes; flushing pending publishes');
      hub.refusePublishes();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // A step that fails (a mesh whose final flush meets a full disk) does not skip the rest:
      // sockets left open and a store left open would outlive the data folder's lock, released
      // next. The clock lease stops last; the first error is rethrown at the end, later ones logged.
      let failure: { error: unknown } | undefined;
      const attempt = async (step: string, run: () => Promise<void>) => {
        try {
          await run();
        } catch (error) {
          if (failure) log.error({ err: error, step }, 'stop step failed');
          else failure = { error };
        }
      };
      // What each component accepted until it stopped (an edge link's messages, a source's
      // items) is written before the next one stops, so the mesh, stopped last, gossips it all.
      for (const component of [...components].reverse()) {
        await attempt('drain', () => hub.writer.drain());
        await attempt(component.name, () => component.stop());
      }
      await attempt('drain', () => hub.writer.drain());
      await attempt('sockets', () => sockets.closeAll());
      server.closeAllConnections();
      await closed;
      await attempt('store', () => store.close());
      await attempt('clock lease', () => lease.stop());
      if (failure) throw failure.error;
      log.info('stopped');
    },
  };
}

/**
 * A `host` the HTTP server cannot listen on, in one line naming the option (Node's own words were
 * a bare `getaddrinfo ENOTFOUND …`). A port in use is left as it is: the relay's start failure
 * says it with what to do.
 */
function hostFailure(error: NodeJS.ErrnoException, host: string): Error | undefined {
  const why: Record<string, string> = {
    ENOTFOUND: 'the name does not resolve',
    EAI_AGAIN: 'the name could not be resolved now (DNS did not answer)',
    EADDRNOTAVAIL: 'no interface of this machine has that address',
  };
  const reason = error.code && why[error.code];
  if (!reason) return undefined;
  return new Error(
    `host ${host} (--host, ANODE_HOST or host in the config file): ${reason} (${error.code}); give an address of this machine (0.0.0.0 for all) or a name that resolves to one`,
    { cause: error },
  );
}

/** A `jwt_public_keys` file's PEM, checked on its own so that an error names the file. */
async function readPublicKey(path: string): Promise<string> {
  try {
    const pem = await readFile(path, 'utf8');
    await createTokenVerifier({ publicKeys: [pem] });
    return pem;
  } catch (error) {
    const why = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new Error(`jwt_public_keys: ${path}: ${why}`, { cause: error });
  }
}

type ErrorCode = 'bad_frame' | 'too_large' | 'internal';
const errorBody = (code: ErrorCode, message: string) => JSON.stringify({ error: { code, message } });

/**
 * The HTTP app behind Node's server. A request without a Host header is HTTP/1.0's way (HAProxy's
 * default `option httpchk` sends one): it is served as if sent to `localhost` (hono needs a host
 * to make its URL; no route reads it). HTTP/1.1 requires Host (RFC 9112): refused with 400
 * bad_frame. A request hono cannot make into a URL (a Host header that is no host) is refused with
 * 400 bad_frame too: without an error handler its answer was an empty 400.
 */
function serveHttp(fetch: Parameters<typeof getRequestListener>[0], metrics: Metrics, log: Logger) {
  const listener = getRequestListener(fetch, {
    hostname: 'localhost',
    errorHandler: (error) => {
      if (error instanceof RequestError) {
        metrics.errors.inc({ code: 'bad_frame' });
        return jsonError(400, 'bad_frame', `the request cannot be read: ${error.message}`);
      }
      log.error({ err: error }, 'internal error');
      metrics.errors.inc({ code: 'internal' });
      return jsonError(500, 'internal', 'internal error');
    },
  });
  return (request: IncomingMessage, response: ServerResponse) => {
    // A connection answered by answerClientErrors is ended: a request the client finishes on it
    // afterwards (a publish whose headers came after the 408) is not carried out.
    if (!request.socket.writable) {
      request.socket.destroy();
      return;
    }
    if (request.headers.host === undefined && request.httpVersion !== '1.0') {
      metrics.errors.inc({ code: 'bad_frame' });
      const body = errorBody('bad_frame', `an HTTP/${request.httpVersion} request needs a Host header`);
      const headers = {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        connection: 'close',
      };
      response.writeHead(400, headers).end(body);
      return;
    }
    return listener(request, response);
  };
}

const jsonError = (status: number, code: ErrorCode, message: string) =>
  new Response(errorBody(code, message), { status, headers: { 'content-type': 'application/json' } });

/**
 * A request Node's parser refuses before the app sees it answered with PROTOCOL.md's JSON error
 * body (Node's own answers have none), then the connection closed, as Node does: headers over
 * Node's limit (a large JWT) are 431 too_large, a request that did not arrive within
 * frame_timeout_ms (headersTimeout) or the request timeout 408, anything else 400 bad_frame.
 */
function answerClientErrors(server: Server, frameTimeoutMs: number, metrics: Metrics) {
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    // As Node: nothing is written to a connection gone, or in the middle of an answer.
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (error.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const [status, code, message] = clientErrorAnswer(error, frameTimeoutMs);
    metrics.errors.inc({ code });
    const body = errorBody(code, message);
    // Destroyed once the answer is out (as Node's own handler does at once): the parser would go on
    // reading the connection, and a request finished after a 408 would still be carried out.
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      () => socket.destroy(),
    );
    // What the client still sends is not read; a client that never closes is let go.
    setTimeout(() => socket.destroy(), 1_000).unref();
  });
}

function clientErrorAnswer(error: NodeJS.ErrnoException, frameTimeoutMs: number): [number, ErrorCode, string] {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'too_large', `request headers over ${maxHeaderSize} bytes, the relay's header size limit`];
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return [413, 'too_large', 'chunk extensions over the limit'];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, 'bad_frame', `the request was not received in time (headers within ${frameTimeoutMs} ms)`];
    default:
      return [400, 'bad_frame', `not a valid HTTP request (${error.code ?? error.message})`];
  }
}

/** TCP connections one address may open beyond its WebSocket cap: room for HTTP requests and 429s. */
export const SOCKET_HEADROOM = 64;

/**
 * Every TCP connection counts against its client address, plain HTTP ones too (the WebSocket cap,
 * max_connections_per_address, counts upgraded ones only): an idle kept-alive connection is held
 * for http_keep_alive_ms, so one address could otherwise hold every file descriptor the relay
 * has (a review's client held 476 of 512 and the next client's request failed). Past the cap
 * plus SOCKET_HEADROOM a new connection is closed at once, before any byte is read. 0: no cap.
 */
function capSocketsPerAddress(server: Server, perAddress: number, log: Logger) {
  if (perAddress === 0) return;
  const limit = perAddress + SOCKET_HEADROOM;
  const counts = createCounts(limit, () => '');
  const refused = throttledWarning(
    log,
    `connection refused: ${limit} TCP connections open from one client address (max_connections_per_address + ${SOCKET_HEADROOM})`,
  );
  server.on('connection', (socket) => {
    const address = socket.remoteAddress ?? '';
    try {
      counts.take(address);
    } catch {
      refused({ address });
      socket.destroy();
      return;
    }
    socket.once('close', () => counts.give(address));
  });
  server.once('close', refused.flush);
}
