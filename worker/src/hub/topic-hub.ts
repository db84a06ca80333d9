import {
  createKeyedBuckets,
  type KeyedBuckets,
  LATEST_PAGE_SOURCES,
  type PublishItem,
  RateLimitedError,
  toAnodeError,
} from '@anode/shared';
import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../config.ts';
import { LINK_TAG } from '../link/relay-link.ts';
import { createClientFrames } from './client-frames.ts';
import { createHistory } from './history.ts';
import type { Ack, ClientGrant, PublishWho, Result, TopicHubApi } from './hub-api.ts';
import { createHubCore, type HubCore } from './hub-core.ts';
import { createSubscriptions } from './subscriptions.ts';

/**
 * One Durable Object per topic: it owns the platform handlers (fetch for WebSocket upgrades, RPC
 * methods for the HTTP routes, the hibernation handlers, the alarm) and hands each to the part
 * that does the work. The Worker authenticates and validates before anything reaches it, and
 * passes what it learned in one internal header (`x-anode-client` / `x-anode-link`) that it always
 * sets itself.
 */
interface Parts {
  core: HubCore;
  subscriptions: ReturnType<typeof createSubscriptions>;
  frames: ReturnType<typeof createClientFrames>;
  history: ReturnType<typeof createHistory>;
}

const PING = '{"op":"ping"}';
const PONG = '{"op":"pong"}';

export class TopicHub extends DurableObject<Env> implements TopicHubApi {
  #parts: Parts | undefined;
  /** HTTP publish buckets per client address and subject (pruned when idle, as on a relay). */
  #httpBuckets: KeyedBuckets | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    // Answered by the runtime without waking the object, so not after earlier frames: only a ping
    // without a ref, which the edge connection never forwards (its fences carry refs).
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING, PONG));
  }

  /** The parts of this instance, built on first use after each wake. */
  #hub(topic?: string, origin?: string): Parts {
    if (!this.#parts) {
      const known = topic ?? this.#storedTopic();
      if (!known) throw new Error('TopicHub woke without knowing its topic');
      const core = createHubCore(this.ctx, this.env, known);
      const subscriptions = createSubscriptions(core);
      this.#parts = {
        core,
        subscriptions,
        frames: createClientFrames(core, subscriptions),
        history: createHistory(core),
      };
    }
    this.#parts.core.seen(origin);
    return this.#parts;
  }

  #storedTopic(): string | undefined {
    try {
      return this.ctx.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'topic'").toArray()[0]
        ?.value;
    } catch {
      return undefined; // never initialised
    }
  }

  override async fetch(request: Request): Promise<Response> {
    const link = request.headers.get('x-anode-link');
    if (link !== null) {
      const { topic } = JSON.parse(link) as { topic: string };
      return this.#hub(topic).core.link.accept();
    }
    const grant = JSON.parse(request.headers.get('x-anode-client') ?? 'null') as ClientGrant | null;
    if (!grant) return new Response('not found', { status: 404 });
    const { core, subscriptions } = this.#hub(grant.topic, grant.origin);
    const { pub, subject, src, exp } = grant;
    const { client, server } = core.clients.accept({ pub, subject, src, exp, tokens: core.config.PUBLISH_BURST });
    core.link.ensure();
    if (grant.subscribe !== false) void subscriptions.subscribe(server, grant.after, undefined);
    await core.reschedule();
    return new Response(null, { status: 101, webSocket: client });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const { core, frames } = this.#hub();
    if (!this.ctx.getTags(ws).includes(LINK_TAG)) return frames(ws, message);
    if (typeof message === 'string') core.link.onFrame(message);
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    const { core } = this.#hub();
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, 'closed'); // complete the close handshake
    } catch {
      // already closed
    }
    if (this.ctx.getTags(ws).includes(LINK_TAG)) core.link.onClose(ws);
    await core.reschedule();
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    await this.webSocketClose(ws, 1006);
  }

  override async alarm(): Promise<void> {
    await this.#hub().core.alarm();
  }

  // RPC for the HTTP routes (errors travel as values: RPC keeps only an error's message).

  async publish(topic: string, items: PublishItem[], who: PublishWho): Promise<Result<Ack[]>> {
    return this.#result(async () => {
      const hub = this.#hub(topic, who.origin).core;
      const { PUBLISH_RATE: rate, PUBLISH_BURST: burst } = hub.config;
      this.#httpBuckets ??= createKeyedBuckets(rate, burst);
      if (!this.#httpBuckets.take(`${who.address}|${who.claims.subject ?? ''}`, items.length)) {
        throw new RateLimitedError(`publish rate limit of ${rate}/s exceeded`);
      }
      await hub.ready();
      return hub.accept(items, who.claims);
    });
  }

  async history(topic: string, after: string | undefined, limit: number, origin: string) {
    return this.#result(() => this.#hub(topic, origin).history.page(after, limit));
  }

  /**
   * `page` is last and optional: during a deploy a Worker of the code before paging (which calls
   * latest(topic, origin)) can reach an object of this code, and the reverse; each then gets the
   * first page (or, from an older object, the whole answer), never a page read from a wrong place.
   */
  async latest(topic: string, origin: string, page: { after?: string; limit?: number } = {}) {
    return this.#result(() => this.#hub(topic, origin).history.latest(page.after, page.limit ?? LATEST_PAGE_SOURCES));
  }

  async status(topic: string) {
    return this.#hub(topic).core.status();
  }

  async #result<T>(work: () => Promise<T> | T): Promise<Result<T>> {
    try {
      return { ok: true, value: await work() };
    } catch (error) {
      const anode = toAnodeError(error);
      if (anode.code === 'internal') console.error('edge: internal error', error);
      return { ok: false, error: anode.toJSON() };
    }
  }
}
