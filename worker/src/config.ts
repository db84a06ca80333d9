import { DEFAULT_MAX_MESSAGE_BYTES, ENVELOPE_OVERHEAD_BYTES, MAX_LINK_BATCH } from '@anode/shared';
import { z } from 'zod';
import type { TopicHubApi } from './hub/hub-api.ts';

/**
 * The edge's settings, from Worker vars and secrets (wrangler.toml `[vars]`, `wrangler secret
 * put`, or `.dev.vars` locally). Parsed once per isolate; numbers arrive as strings or numbers.
 * Limits use the relay's key names and defaults, so a client sees the same rules everywhere.
 */
export interface Env {
  TOPIC_HUB: DurableObjectNamespace<TopicHubApi>;
  RELAY_URLS?: string;
  LINK_SECRET?: string;
  JWT_SECRET?: string;
  JWT_PUBLIC_KEYS?: string;
  JWT_AUDIENCE?: string;
  EDGE_URL?: string;
  [key: string]: unknown;
}

const int = (fallback: number, min = 1) => z.coerce.number().int().min(min).default(fallback);
/** Comma-separated values, trimmed, blanks dropped. */
const list = z
  .string()
  .default('')
  .transform((value) =>
    value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  );
const urlList = z
  .string()
  .default('')
  .transform((value) =>
    value
      .split(',')
      .map((s) => s.trim().replace(/\/+$/, ''))
      .filter(Boolean),
  )
  .pipe(z.array(z.url({ protocol: /^https?$/ })));

const schema = z.object({
  RELAY_URLS: urlList,
  LINK_SECRET: z.string().min(16, 'LINK_SECRET must be at least 16 characters').optional(),
  JWT_SECRET: z.string().min(32, 'JWT_SECRET must be at least 32 characters').optional(),
  JWT_PUBLIC_KEYS: z.string().optional(),
  /**
   * Audiences, as the relay's jwt_audience: a token's `aud` must name one of them; unset, a token
   * that carries an `aud` is refused.
   */
  JWT_AUDIENCE: list,
  EDGE_URL: z.url({ protocol: /^https?$/ }).optional(),
  /** With auth on, /v1/status and /metrics answer only this bearer token (as a relay's metrics_token). */
  METRICS_TOKEN: z.string().min(16, 'METRICS_TOKEN must be at least 16 characters').optional(),
  RING_SIZE: int(1000),
  /** Keyed messages per topic whose id and cursor are kept for dedup after they leave the ring. */
  KEYED_MEMORY: int(100_000),
  /** Late arrivals per topic kept past the ring for the resumes that replay them (10 minutes at most). */
  LATE_MEMORY: int(10_000),
  /** Subscriptions (topics and patterns) per client connection, as the relay's max_subscriptions. */
  MAX_SUBSCRIPTIONS: int(100),
  /** Origins allowed to call the HTTP API from a browser (comma-separated; `*` for any). None by default. */
  CORS_ORIGINS: list,
  /** The largest message (its data, serialized), as the relay's max_message_bytes. */
  MAX_MESSAGE_BYTES: int(DEFAULT_MAX_MESSAGE_BYTES),
  /** Unset: MAX_MESSAGE_BYTES + 64 KiB (frames), 4 MiB or that (bodies); never below it + 4 KiB. */
  MAX_FRAME_BYTES: z.coerce.number().int().min(1).optional(),
  MAX_BODY_BYTES: z.coerce.number().int().min(1).optional(),
  /** Most a resume may send in one go; past it the socket closes 4001 and the client resumes on. */
  MAX_SEND_BUFFER_BYTES: int(8 * 1024 * 1024),
  PUBLISH_RATE: int(1000),
  PUBLISH_BURST: int(2000),
  /** How long a Durable Object keeps its relay link after its last client left. */
  LINK_IDLE_MS: int(30_000, 0),
  /** How long to wait for a relay to dial back (a resume waits this long for old history). */
  LINK_WAIT_MS: int(5_000),
  /** Longest pause between dial attempts while no relay answers. */
  LINK_RETRY_MAX_MS: int(30_000),
  /** Messages per link `pub` frame when forwarding stored publishes (a relay takes MAX_LINK_BATCH at most). */
  LINK_BATCH: z.coerce
    .number()
    .int()
    .min(1)
    .max(MAX_LINK_BATCH, `must be at most ${MAX_LINK_BATCH} (MAX_LINK_BATCH: a relay refuses a larger pub frame)`)
    .default(100),
});

export type EdgeConfig = Omit<z.infer<typeof schema>, 'JWT_PUBLIC_KEYS' | 'MAX_FRAME_BYTES' | 'MAX_BODY_BYTES'> & {
  JWT_PUBLIC_KEYS: string[];
  MAX_FRAME_BYTES: number;
  MAX_BODY_BYTES: number;
};

/** Frame and body limits carry any message the edge accepts (PROTOCOL.md "Limits"), as on a relay. */
function messageLimits(parsed: z.infer<typeof schema>) {
  const max = parsed.MAX_MESSAGE_BYTES;
  const derived = max + 64 * 1024;
  const limits = {
    MAX_FRAME_BYTES: parsed.MAX_FRAME_BYTES ?? derived,
    MAX_BODY_BYTES: parsed.MAX_BODY_BYTES ?? Math.max(4 * 1024 * 1024, derived),
  };
  for (const [key, value] of Object.entries(limits)) {
    if (value < max + ENVELOPE_OVERHEAD_BYTES) {
      throw new Error(`invalid edge config: ${key} (${value}) is below MAX_MESSAGE_BYTES (${max}) plus the envelope`);
    }
  }
  return limits;
}

const PEM = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/g;

let cached: { env: Env; config: EdgeConfig } | undefined;

/** The parsed config (cached per env object); throws a readable error naming the bad var. */
export function edgeConfig(env: Env): EdgeConfig {
  if (cached?.env === env) return cached.config;
  const blanksRemoved = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== '' && v !== undefined));
  const result = schema.safeParse(blanksRemoved);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new Error(`invalid edge config: ${String(issue?.path[0] ?? '')}: ${issue?.message ?? 'invalid'}`);
  }
  const config = {
    ...result.data,
    ...messageLimits(result.data),
    JWT_PUBLIC_KEYS: env.JWT_PUBLIC_KEYS?.match(PEM) ?? [],
  };
  if (linksOffReason(config)) console.warn(`edge: relay links are off: ${linksOffReason(config)}`);
  cached = { env, config };
  return config;
}

/**
 * Why this edge does not link to relays, or undefined when it does. EDGE_URL is required: the
 * origin relays dial back (and present LINK_SECRET to) must never come from a request's Host.
 */
export function linksOffReason(config: EdgeConfig): string | undefined {
  if (config.RELAY_URLS.length === 0 || !config.LINK_SECRET) return 'RELAY_URLS and LINK_SECRET are not both set';
  if (!config.EDGE_URL) {
    return 'EDGE_URL is not set (the public origin relays dial back; it is never taken from a request)';
  }
  return undefined;
}
