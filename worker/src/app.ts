import {
  AnodeError,
  assertCanPublish,
  assertCanSubscribe,
  assertTopic,
  BadFrameError,
  type Claims,
  historyQuerySchema,
  latestQuerySchema,
  isCursor,
  parsePublishBody,
  parseWith,
  PROTOCOL_VERSION,
  readJsonBody,
  TooLargeError,
  toAnodeError,
  tokenFrom,
} from '@anode/shared';
import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import { assertLinkSecret, assertStatusReader, authEnabled, verifierFor } from './auth.ts';
import { type EdgeConfig, type Env, edgeConfig, linksOffReason } from './config.ts';
import type { Result } from './hub/hub-api.ts';
import { hubFor } from './hub-stub.ts';
import { acceptConnection } from './sockets/connection.ts';

/**
 * The edge's HTTP surface: PROTOCOL.md's routes plus the relay link endpoint. Routes only
 * authenticate, validate and forward to the topic's Durable Object; one error handler turns
 * every failure into `{"error":{"code","message"}}` with its status, as on a relay.
 */
type App = { Bindings: Env; Variables: { config: EdgeConfig; claims: Claims; topic: string } };

const VERSION = '0.1.0';

function unwrap<T>(result: Result<T>): T {
  if (!result.ok) throw new AnodeError(result.error.code, result.error.message);
  return result.value;
}

/** A WebSocket handshake: the only request that may carry its token in `?token=`. */
const upgrade = (c: { req: { header(name: string): string | undefined } }) =>
  c.req.header('upgrade')?.toLowerCase() === 'websocket';

/**
 * The paths a WebSocket handshake may open: the protocol's two and the relay link's. An upgrade
 * anywhere else is refused before it is routed, as on a relay: routed, a history, latest, status
 * or health URL answered its JSON with 200, and the client's socket failed to open with no error.
 */
const SOCKET_PATHS = /^\/v1\/(?:ws|topics\/[^/]+\/ws|edge\/link\/[^/]+)$/;

const origin = (c: { req: { url: string }; var: { config: EdgeConfig } }) =>
  c.var.config.EDGE_URL ?? new URL(c.req.url).origin;

/**
 * Reads and drops a request body the route did not read (refused before it: a token, a topic, a
 * rate limit, a length over the limit). workerd keeps a connection for the next request only once
 * its request body was read: otherwise it drops it without `Connection: close`, and the client's
 * next request on it fails ("socket hang up", ECONNRESET) though nothing was wrong with it. A body
 * that announces more than DRAIN_FACTOR × `MAX_BODY_BYTES`, or none (chunked), is left: its
 * connection ends, as for a chunked body over the limit on a relay.
 */
async function drainUnread(request: Request, maxBodyBytes: number): Promise<void> {
  const body = request.body;
  if (!body || request.bodyUsed || body.locked) return;
  // No Content-Length (a chunked body): Number(null) would be 0, and the body read to its end.
  const declared = request.headers.get('content-length');
  if (declared === null || !/^\d+$/.test(declared) || request.headers.has('transfer-encoding')) return;
  const length = Number(declared);
  if (!Number.isSafeInteger(length) || length > DRAIN_FACTOR * maxBodyBytes) return;
  const reader = body.getReader();
  try {
    while (!(await reader.read()).done);
  } catch {
    // The client went away mid-body: nothing left to keep.
  }
}

/** A refused body is read and dropped when it declares at most this many times `MAX_BODY_BYTES`. */
const DRAIN_FACTOR = 2;

export function createApp(): Hono<App> {
  const app = new Hono<App>();

  app.onError((error, c) => {
    const anode = error instanceof AnodeError ? error : toAnodeError(error);
    if (anode.code === 'internal') console.error('edge: internal error', error);
    return c.json({ error: anode.toJSON() }, anode.status as 400);
  });
  app.notFound((c) =>
    c.json({ error: { code: 'bad_frame', message: `no route for ${c.req.method} ${c.req.path}` } }, 404),
  );

  app.use('*', async (c, next) => {
    c.set('config', edgeConfig(c.env));
    if (upgrade(c) && !SOCKET_PATHS.test(c.req.path)) {
      throw new BadFrameError(`no WebSocket endpoint at ${c.req.path}`);
    }
    await next();
    await drainUnread(c.req.raw, c.var.config.MAX_BODY_BYTES);
  });

  // Browsers on the configured origins may call the HTTP API (WebSockets need no CORS).
  app.use('/v1/*', async (c, next) => {
    const allowed = c.var.config.CORS_ORIGINS;
    // Upgrades are left alone: their 101 response carries the socket and must not be rebuilt.
    if (allowed.length === 0 || c.req.header('upgrade') !== undefined) return next();
    return cors({
      origin: allowed.includes('*') ? '*' : allowed,
      allowMethods: ['GET', 'POST', 'OPTIONS'],
      allowHeaders: ['authorization', 'content-type', 'idempotency-key'],
      maxAge: 600,
    })(c, next);
  });

  app.use('/v1/topics/:topic/*', async (c, next) => {
    const topic = c.req.param('topic');
    assertTopic(topic);
    c.set('topic', topic);
    const verify = await verifierFor(c.var.config);
    // ?token= only where the route is a WebSocket's: an Upgrade header on a history or publish
    // URL made it take one (the relay refuses it there).
    const socketRoute = upgrade(c) && c.req.path.endsWith('/ws');
    c.set('claims', await verify(tokenFrom(c.req.header('authorization'), new URL(c.req.url), socketRoute)));
    await next();
  });

  /** A client connection (sockets/connection.ts): every socket speaks the whole protocol. */
  const connection = (c: Context<App>, first?: { topic: string; after?: string }) => {
    if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') {
      throw new BadFrameError('this endpoint takes a WebSocket upgrade');
    }
    const token = tokenFrom(c.req.header('authorization'), new URL(c.req.url), true);
    const { env, var: vars } = c;
    return acceptConnection({ env, config: vars.config, claims: vars.claims, token, origin: origin(c) }, first);
  };

  app.get('/v1/topics/:topic/ws', async (c) => {
    const { topic, claims } = c.var;
    assertCanSubscribe(claims, topic);
    const after = c.req.query('after');
    if (after !== undefined && !isCursor(after)) throw new BadFrameError('after: not a cursor');
    return connection(c, { topic, ...(after === undefined ? {} : { after }) });
  });

  app.get('/v1/ws', async (c) => {
    const verify = await verifierFor(c.var.config);
    c.set('claims', await verify(tokenFrom(c.req.header('authorization'), new URL(c.req.url), upgrade(c))));
    return connection(c);
  });

  app.post(
    '/v1/topics/:topic/messages',
    async (c, next) =>
      bodyLimit({
        maxSize: c.var.config.MAX_BODY_BYTES,
        onError: () => {
          throw new TooLargeError(`body exceeds MAX_BODY_BYTES (${c.var.config.MAX_BODY_BYTES} bytes)`);
        },
      })(c, next),
    async (c) => {
      const { topic, claims } = c.var;
      assertCanPublish(claims, topic);
      // Bytes, not `c.req.json()`: that repairs invalid UTF-8 with U+FFFD and parses any depth.
      const body = readJsonBody(await c.req.arrayBuffer());
      const items = parsePublishBody(body, c.req.header('idempotency-key'));
      const address = c.req.header('cf-connecting-ip') ?? 'unknown';
      const who = { claims: { subject: claims.subject, src: claims.src }, address, origin: origin(c) };
      const acks = unwrap(await hubFor(c.env, topic).publish(topic, items, who));
      return c.json({ messages: acks }, 202);
    },
  );

  app.get('/v1/topics/:topic/messages', async (c) => {
    const { topic, claims } = c.var;
    assertCanSubscribe(claims, topic);
    const query = parseWith(historyQuerySchema, c.req.query());
    return c.json(unwrap(await hubFor(c.env, topic).history(topic, query.after, query.limit, origin(c))));
  });

  app.get('/v1/topics/:topic/latest', async (c) => {
    const { topic, claims } = c.var;
    assertCanSubscribe(claims, topic);
    // Paged as on a relay: `next` (the last source) while more follow, taken back as `after_source`.
    const query = parseWith(latestQuerySchema, c.req.query());
    return c.json(
      unwrap(await hubFor(c.env, topic).latest(topic, origin(c), { after: query.after_source, limit: query.limit })),
    );
  });

  app.get('/v1/edge/link/:topic', async (c) => {
    assertLinkSecret(c.var.config, c.req.header('authorization'));
    const topic = c.req.param('topic');
    assertTopic(topic);
    if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') throw new BadFrameError('a link is a WebSocket');
    const headers = new Headers(c.req.raw.headers);
    headers.set('x-anode-link', JSON.stringify({ topic }));
    headers.delete('x-anode-client');
    return hubFor(c.env, topic).fetch(new Request(c.req.raw, { headers }));
  });

  app.get('/v1/status', async (c) => {
    const config = c.var.config;
    assertStatusReader(config, c.req.header('authorization'));
    const topic = c.req.query('topic');
    const status: Record<string, unknown> = {
      node: {
        id: 'edge',
        kind: 'edge',
        version: VERSION,
        protocol: PROTOCOL_VERSION,
        url: origin(c),
        auth: authEnabled(config) ? 'jwt' : 'none',
        max_message_bytes: config.MAX_MESSAGE_BYTES,
      },
      edge: {
        relays: config.RELAY_URLS,
        links: linksOffReason(config) === undefined,
        ...(config.RELAY_URLS.length > 0 && linksOffReason(config) ? { links_off: linksOffReason(config) } : {}),
        ring_size: config.RING_SIZE,
      },
    };
    if (topic !== undefined) {
      assertTopic(topic);
      status.topic = await hubFor(c.env, topic).status(topic);
    }
    return c.json(status);
  });

  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/metrics', (c) => {
    assertStatusReader(c.var.config, c.req.header('authorization'));
    return c.text(
      '# HELP anode_edge_up 1 while the edge Worker serves (per-request metrics live in Cloudflare analytics)\n' +
        '# TYPE anode_edge_up gauge\nanode_edge_up 1\n',
      200,
      { 'content-type': 'text/plain; version=0.0.4' },
    );
  });

  return app;
}
