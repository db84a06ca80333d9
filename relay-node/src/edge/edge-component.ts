import { timingSafeEqual } from 'node:crypto';
import { AnodeError, assertTopic, ForbiddenError, LimitReachedError, UnauthorizedError } from '@anode/shared';
import type { Hono } from 'hono';
import type { ComponentFactory } from '../component.ts';
import { throttledWarning } from '../logger.ts';
import { sendBufferLimit } from '../server/connection.ts';
import { EdgeLink } from './edge-link.ts';
import { reservedSourceNames } from './reserved-sources.ts';

/** How often the reserved source names are looked at for a change to pass on to the edge. */
const RESERVED_POLL_MS = 1_000;

/**
 * Edge links as a relay component. A topic's Durable Object that wants a link sends a dial
 * request, `POST /v1/edge/dial?topic=…&edge=<origin>` with `Authorization: Bearer <link secret>`;
 * the relay answers `202` and dials `<origin>/v1/edge/link/<topic>` with the same secret (the
 * Durable Object keeps that socket on the Hibernation API, so it can sleep with its link open).
 * One link per topic: a new dial request replaces an old link, since a Durable Object asks again
 * only when it lost its end.
 */
function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export const createEdgeComponent: ComponentFactory = async ({ config, hub, log, nodeId, metrics, cluster }) => {
  const secret = config.edge_link_secret;
  if (!secret) return undefined;
  const links = new Map<string, EdgeLink>();
  const counts = { dial_requests: 0, refused: 0 };
  const dialRefused = throttledWarning(log, 'edge dial request refused');
  let stopping = false;

  // The edge refuses publishes under reserved names before it acks (what it acked and a relay
  // then refused would be lost): each link is told the names on open and again when they change.
  let reserved: readonly string[] = [];
  let reservedPoll: ReturnType<typeof setInterval> | undefined;
  const pollReserved = () => {
    const now = reservedSourceNames(config.sources, cluster, hub);
    if (now.length === reserved.length && now.every((name, i) => name === reserved[i])) return;
    reserved = now;
    log.info({ reserved: now.length }, 'reserved source names changed: telling the edge links');
    for (const link of links.values()) link.reserve(now);
  };

  const dial = (topic: string, origin: string) => {
    const current = links.get(topic);
    if (current?.state === 'connecting') return;
    current?.close(1000, 'replaced by a new link');
    const link = new EdgeLink({
      topic,
      url: origin,
      nodeId,
      secret,
      hub,
      log,
      // As a client socket's (sendBufferLimit): room for two of the largest messages at least.
      maxBufferBytes: sendBufferLimit(config),
      pingMs: config.edge_ping_ms,
      metrics,
      maxMessageBytes: config.max_message_bytes,
      reserved: () => reserved,
      onClose: (closed) => {
        if (links.get(topic) === closed) links.delete(topic);
      },
    });
    links.set(topic, link);
  };

  /**
   * The origin to dial: one listed in `edge_url`, never one a request chose. A request that names
   * another is refused (the secret would go to it); one that names none gets the only listed one.
   */
  const pinnedOrigin = (asked: string | null): string => {
    const pinned = config.edge_url;
    if (pinned.length === 0) {
      throw new ForbiddenError('this relay has no edge_url: it dials no edge (set edge_url to the Worker origin)');
    }
    if (asked === null || asked === '') {
      if (pinned.length === 1) return pinned[0] as string;
      throw new AnodeError('bad_frame', 'edge: which of the configured edge origins to dial back');
    }
    const origin = asked.replace(/\/+$/, '');
    if (!pinned.includes(origin)) {
      throw new ForbiddenError(`edge origin ${JSON.stringify(origin.slice(0, 200))} is not in this relay's edge_url`);
    }
    return origin;
  };

  const takeDial = (authorization: string | undefined, url: URL): string => {
    if (stopping) throw new AnodeError('unavailable', 'relay is shutting down');
    const bearer = /^Bearer\s+(.+)$/i.exec(authorization ?? '')?.[1] ?? '';
    if (!sameSecret(bearer, secret)) throw new UnauthorizedError('bad edge link secret');
    const topic = url.searchParams.get('topic') ?? '';
    assertTopic(topic);
    const origin = pinnedOrigin(url.searchParams.get('edge'));
    const max = config.edge_max_links;
    if (max > 0 && !links.has(topic) && links.size >= max) {
      throw new LimitReachedError(`edge link limit of ${max} reached (edge_max_links)`);
    }
    dial(topic, origin);
    return topic;
  };

  return {
    name: 'edge',
    async start() {
      reserved = reservedSourceNames(config.sources, cluster, hub);
      reservedPoll = setInterval(pollReserved, RESERVED_POLL_MS);
      reservedPoll.unref();
      if (config.edge_url.length === 0) {
        log.warn(
          'edge links on but edge_url is unset: every dial request is refused; set edge_url to the Worker origin',
        );
      } else log.info({ edge_url: config.edge_url }, 'edge links on: Durable Objects may ask to be dialed');
    },
    async stop() {
      stopping = true;
      clearInterval(reservedPoll);
      dialRefused.flush();
      for (const link of links.values()) link.close(4000, 'relay shutting down');
      links.clear();
    },
    routes(app: Hono) {
      app.post('/v1/edge/dial', (c) => {
        counts.dial_requests += 1;
        try {
          return c.json({ dialing: takeDial(c.req.header('authorization'), new URL(c.req.url)) }, 202);
        } catch (error) {
          counts.refused += 1;
          // A refusal is the caller's doing: its message, not a stack, and not one line each
          // (status counts them all). Anything else is logged by the app as an internal error.
          if (error instanceof AnodeError) dialRefused({ err: error.message, code: error.code });
          throw error;
        }
      });
    },
    status() {
      return {
        edge: {
          ...counts,
          links: [...links.values()].map((link) => ({
            topic: link.topic,
            url: link.url,
            state: link.state,
            connected_since: link.since.toISOString(),
            messages_from_edge: link.counts.in,
            messages_to_edge: link.counts.out,
          })),
        },
      };
    },
  };
};
