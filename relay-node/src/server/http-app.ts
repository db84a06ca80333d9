import {
  AnodeError,
  assertCanPublish,
  assertCanSubscribe,
  assertTopic,
  type Claims,
  createKeyedBuckets,
  historyQuerySchema,
  latestQuerySchema,
  parsePublishBody,
  parseWith,
  RateLimitedError,
  readJsonBody,
  type TokenVerifier,
  toAnodeError,
  tokenFrom,
} from '@anode/shared';
import { getConnInfo } from '@hono/node-server/conninfo';
import { Hono } from 'hono';
import { cors } from 'hono/cors';
import type { RelayConfig } from '../config.ts';
import type { Hub } from '../hub/hub.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { redactStatus } from '../redact.ts';
import { createStatusAccess } from './status-access.ts';
import { limitBody } from './body-limit.ts';

/** Status fields only the admin sees: the first bytes of an upstream's answer. */
const ADMIN_ONLY = new Set(['sample']);

/**
 * The HTTP half of PROTOCOL.md. Routes authenticate, validate and hand over to the hub; one
 * error handler turns every failure into `{"error":{"code","message"}}` with its status.
 */
export interface HttpDeps {
  hub: Hub;
  config: RelayConfig;
  metrics: Metrics;
  log: Logger;
  verify: TokenVerifier;
  status: () => Promise<Record<string, unknown>>;
  healthy: () => Promise<boolean>;
  /** Brings gauges that follow a check (the store's health) up to date before a scrape. */
  beforeScrape?: () => Promise<void>;
  /** Components' own routes, mounted after the protocol's. */
  extraRoutes?: ((app: Hono) => void)[];
}

type Env = { Variables: { claims: Claims } };

export function createHttpApp(deps: HttpDeps): Hono<Env> {
  const { hub, config, metrics } = deps;
  const app = new Hono<Env>();
  // Per client address and subject, pruned when idle (shared with the edge).
  const publishBuckets = createKeyedBuckets(config.publish_rate, config.publish_burst);

  app.onError((error, c) => {
    if (!(error instanceof AnodeError) && clientLeft(error)) {
      // The client went away mid-body: its doing, not the node's (an internal error raised alarms).
      deps.log.debug({ err: error, path: c.req.path }, 'client left during the request');
      metrics.errors.inc({ code: 'bad_frame' });
      return c.json({ error: { code: 'bad_frame', message: 'the request ended before its body did' } }, 400);
    }
    const anode = error instanceof AnodeError ? error : toAnodeError(error);
    if (anode.code === 'internal') deps.log.error({ err: error, path: c.req.path }, 'internal error');
    metrics.errors.inc({ code: anode.code });
    return c.json({ error: anode.toJSON() }, anode.status as 400);
  });
  app.notFound((c) => {
    // Counted by its code, as every other refusal: the path stays out of the labels (a client
    // could mint a series per request).
    metrics.errors.inc({ code: 'bad_frame' });
    return c.json({ error: { code: 'bad_frame', message: `no route for ${c.req.method} ${c.req.path}` } }, 404);
  });

  // Browsers on the configured origins may call the HTTP API (WebSockets need no CORS).
  if (config.cors_origins.length > 0) {
    app.use(
      '/v1/*',
      cors({
        origin: config.cors_origins.includes('*') ? '*' : [...config.cors_origins],
        allowMethods: ['GET', 'POST', 'OPTIONS'],
        allowHeaders: ['authorization', 'content-type', 'idempotency-key'],
        maxAge: 600,
      }),
    );
  }

  const authenticate = async (c: { req: { header(name: string): string | undefined; url: string } }) =>
    deps.verify(tokenFrom(c.req.header('authorization'), new URL(c.req.url), false));

  app.use('/v1/topics/:topic/*', async (c, next) => {
    assertTopic(c.req.param('topic'));
    c.set('claims', await authenticate(c));
    await next();
  });

  app.post('/v1/topics/:topic/messages', limitBody(config.max_body_bytes), async (c) => {
    const topic = c.req.param('topic');
    const claims = c.get('claims');
    assertCanPublish(claims, topic);
    // The edge's reader (UTF-8 refused, not repaired; depth scanned before parsing; a leading
    // byte order mark dropped): the relay's own copy refused a BOM the edge took.
    const body = readJsonBody(await c.req.arrayBuffer());
    const items = parsePublishBody(body, c.req.header('idempotency-key'));
    const address = getConnInfo(c).remote.address ?? 'unknown';
    if (!publishBuckets.take(`${address}|${claims.subject ?? ''}`, items.length)) {
      throw new RateLimitedError(`publish rate limit of ${config.publish_rate}/s exceeded`);
    }
    const acks = await hub.publish(topic, items, { via: 'http', claims });
    return c.json({ messages: acks }, 202);
  });

  app.get('/v1/topics/:topic/messages', async (c) => {
    const topic = c.req.param('topic');
    assertCanSubscribe(c.get('claims'), topic);
    const query = parseWith(historyQuerySchema, c.req.query());
    return c.json(await hub.history(topic, query.after, query.limit));
  });

  app.get('/v1/topics/:topic/latest', async (c) => {
    const topic = c.req.param('topic');
    assertCanSubscribe(c.get('claims'), topic);
    // Paged as history is: `next` (the last source) while more follow, taken back as `after_source`.
    const query = parseWith(latestQuerySchema, c.req.query());
    return c.json(await hub.latest(topic, query.after_source, query.limit));
  });

  const statusReader = createStatusAccess({
    authOn: Boolean(config.jwt_secret) || config.jwt_public_keys.length > 0,
    adminToken: config.admin_token,
    metricsToken: config.metrics_token,
  });
  app.get('/v1/status', async (c) => {
    const admin = statusReader(c.req.header('authorization')) === 'admin';
    return c.json(redactStatus(await deps.status(), { admin, adminOnly: ADMIN_ONLY }) as Record<string, unknown>);
  });
  app.get('/healthz', async (c) => ((await deps.healthy()) ? c.json({ ok: true }) : c.json({ ok: false }, 503)));
  app.get('/metrics', async (c) => {
    statusReader(c.req.header('authorization'));
    await deps.beforeScrape?.();
    return c.text(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType });
  });

  for (const mount of deps.extraRoutes ?? []) mount(app as unknown as Hono);
  return app;
}

/** A request body cut off by the client (its connection reset or closed mid-body). */
function clientLeft(error: unknown): boolean {
  const { code, message } = error as { code?: unknown; message?: unknown };
  return code === 'ECONNRESET' || message === 'aborted';
}
