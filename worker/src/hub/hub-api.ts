import type { AnodeError, Claims, Envelope, PublishItem } from '@anode/shared';

/**
 * What the Worker may ask of a topic's Durable Object, declared apart from the class so that the
 * binding's type (config.ts) does not import the object and everything it imports.
 */
export interface ClientGrant {
  topic: string;
  pub: boolean;
  subject?: string;
  src?: string[];
  exp?: number;
  after?: string;
  origin: string;
  /** Subscribe on open (the default); false for a connection's upstream, which subscribes by frame. */
  subscribe?: boolean;
}

export type Result<T> = { ok: true; value: T } | { ok: false; error: { code: AnodeError['code']; message: string } };

/** What a publish's source is bound to: the token's subject and `anode.src` (kept in socket attachments). */
export type Publisher = Pick<Claims, 'subject' | 'src'>;

export interface Ack {
  id: string;
  cursor: string;
}

export interface PublishWho {
  claims: Publisher;
  address: string;
  origin: string;
}

export interface TopicHubApi extends Rpc.DurableObjectBranded {
  fetch(request: Request): Promise<Response>;
  publish(topic: string, items: PublishItem[], who: PublishWho): Promise<Result<Ack[]>>;
  history(
    topic: string,
    after: string | undefined,
    limit: number,
    origin: string,
  ): Promise<Result<{ messages: Envelope[]; next: string | null }>>;
  latest(
    topic: string,
    origin: string,
    page?: { after?: string; limit?: number },
  ): Promise<Result<{ sources: Record<string, Envelope>; next?: string }>>;
  status(topic: string): Promise<Record<string, unknown>>;
}
