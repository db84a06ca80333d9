import { z } from 'zod';
import { positiveInt, timerMs } from '../../config-fields.ts';
import { requestHeaders } from '../definition.ts';
import { MAX_RETRY_AFTER_MS, type SourceKind } from '../source-kind.ts';
import { redactUrls } from '../../redact.ts';
import { readCapped } from './read-capped.ts';

const shape = {
  url: z.url({ protocol: /^https?$/ }),
  interval_ms: timerMs.default(5_000),
  // No HEAD: its answer has no body, and every answer is read as JSON.
  method: z
    .enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'], 'one of GET, POST, PUT, PATCH, DELETE (HEAD answers have no JSON)')
    .default('GET'),
  headers: requestHeaders,
  /** A string is sent as is; anything else as JSON. Not with GET (fetch refuses it). */
  body: z.unknown().optional(),
  /** Largest answer taken; past it the read is aborted and the attempt fails (`too_large`). */
  max_bytes: positiveInt.default(8 * 1024 * 1024),
};
type HttpDefinition = z.infer<z.ZodObject<typeof shape>>;

export class HttpStatusError extends Error {
  override name = 'HttpStatusError';
  /** When upstream allows the next request (epoch ms): a 429's or 503's `Retry-After` (see source-kind.ts). */
  retryAt?: number;
}

/**
 * A `Retry-After` (delay in seconds, or an HTTP-date) as the time of the next request, at most
 * MAX_RETRY_AFTER_MS from now; undefined when absent or unreadable (the usual back-off applies).
 */
export function retryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  const at = /^\d+$/.test(text) ? now + Number(text) * 1000 : Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(at, now), now + MAX_RETRY_AFTER_MS);
}

/** An answer that is not JSON; its first bytes are kept apart, for the admin's eyes only. */
export class InvalidJsonError extends SyntaxError {
  override name = 'InvalidJsonError';
  readonly sample: string;
  constructor(message: string, sample: string) {
    super(message);
    this.sample = sample;
  }
}

/** Redirects followed within the source's origin, at most. */
const MAX_REDIRECTS = 5;

/**
 * fetch() whose failure (the upstream unreachable, or closing without an answer) says why.
 * fetch's own error is "fetch failed", with the reason ("connect ECONNREFUSED 127.0.0.1:9",
 * "getaddrinfo ENOTFOUND ...") only in its `cause`, which the status page and the logs never showed. The URL is named without its
 * credentials (redact.ts), and so is anything the reason quotes.
 */
async function fetchExplained(url: URL, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (error) {
    const reason = causeText((error as Error).cause);
    if (!(error instanceof TypeError) || reason === undefined) throw error;
    // Not "cannot reach": an upstream that answered and closed, or answered other than HTTP, fails
    // here too. The URL is followed by a word, so a secret last in its query is masked alone.
    throw new TypeError(redactUrls(`request to ${url.href} failed: ${reason}`), { cause: error });
  }
}

/** A request whose connection was reset or closed before any answer (fetchExplained's error). */
function closedBeforeAnswer(error: unknown): boolean {
  const socketError = ((error as Error).cause as Error | undefined)?.cause as NodeJS.ErrnoException | undefined;
  return socketError?.code === 'ECONNRESET' || socketError?.code === 'UND_ERR_SOCKET';
}

/** The words of an error's cause (those of each attempt when several addresses were tried). */
function causeText(cause: unknown): string | undefined {
  if (!(cause instanceof Error)) return undefined;
  if (cause.message !== '') return cause.message;
  const attempts = (cause as Partial<AggregateError>).errors;
  if (!Array.isArray(attempts)) return (cause as NodeJS.ErrnoException).code;
  const texts = attempts.map((attempt) => (attempt instanceof Error ? attempt.message : String(attempt)));
  return texts.filter(Boolean).join('; ') || undefined;
}

/**
 * fetch() that follows a redirect only within the URL's origin (scheme, host and port). fetch's
 * own `follow` takes any redirect and drops only `authorization` and `cookie` on the way: a
 * source's other headers (an `x-api-key`) went to whatever host the upstream named, and an
 * upstream could point the relay at an address only it reaches and have the answer published.
 * A redirect elsewhere fails the attempt, naming where it led (without credentials).
 */
async function fetchFollowingSameOrigin(url: string, init: RequestInit & { method: string }): Promise<Response> {
  let current = new URL(url);
  let { method, body, headers } = init;
  for (let hops = 0; ; hops++) {
    const request = { ...init, method, body, headers, redirect: 'manual' } as const;
    const response = await fetchExplained(current, request).catch((error: unknown) => {
      // A kept-alive connection the upstream closed as it was reused (its idle timeout) ends the
      // request before any byte of an answer: a GET asks again once, on a new connection, rather
      // than failing the poll (about 1 in 40 polls of an idle upstream). Anything else still fails.
      if (method !== 'GET' || init.signal?.aborted || !closedBeforeAnswer(error)) throw error;
      return fetchExplained(current, request);
    });
    const location = response.headers.get('location');
    if (response.status < 300 || response.status > 399 || response.status === 304 || location === null) return response;
    await response.body?.cancel();
    const next = new URL(location, current);
    if (next.origin !== current.origin) {
      throw new HttpStatusError(
        `HTTP ${response.status} from ${redactUrls(current.href)} redirects to another origin ` +
          `(${redactUrls(next.origin)}), not followed: set the source's url to the address it should read`,
      );
    }
    if (hops >= MAX_REDIRECTS)
      throw new HttpStatusError(`more than ${MAX_REDIRECTS} redirects from ${redactUrls(url)}`);
    // As fetch does: a 303, or a 301/302 after a POST, is followed with a GET and no body.
    if (response.status === 303 || ((response.status === 301 || response.status === 302) && method === 'POST')) {
      method = 'GET';
      body = undefined;
      // As fetch does: the body's own headers go with it.
      headers = Object.fromEntries(
        Object.entries(headers as Record<string, string>).filter(
          ([name]) =>
            !['content-type', 'content-length', 'content-encoding', 'content-language'].includes(name.toLowerCase()),
        ),
      );
    }
    current = next;
  }
}

/**
 * A URL's `user:password@` as a Basic authorization header, and the URL without it: fetch refuses
 * to construct a request from a URL that holds credentials, so such a source failed every poll.
 */
function credentialsApart(href: string): { url: string; authorization?: string } {
  const url = new URL(href);
  if (url.username === '' && url.password === '') return { url: href };
  const decoded = (part: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part; // a stray % the URL parser let through: sent as written
    }
  };
  const pair = `${decoded(url.username)}:${decoded(url.password)}`;
  url.username = '';
  url.password = '';
  return { url: url.href, authorization: `Basic ${Buffer.from(pair).toString('base64')}` };
}

/**
 * Polls a URL at an interval. Conditional requests: the last `ETag` and `Last-Modified` are
 * sent back as `If-None-Match` / `If-Modified-Since`, and a 304 is a success with no payload (as
 * are a 204 and a 205: no content).
 */
export const httpKind: SourceKind = {
  kind: 'http',
  shape,
  check(definition) {
    const def = definition as unknown as HttpDefinition;
    if (def.method === 'GET' && def.body !== undefined) {
      return { field: 'body', message: 'a GET request has no body: use POST (or another method), or drop body' };
    }
    return undefined;
  },
  create(definition, io) {
    const def = definition as unknown as HttpDefinition;
    let etag: string | undefined;
    let lastModified: string | undefined;
    // Errors name the URL without its credentials: they reach the status page and the logs.
    const shownUrl = redactUrls(def.url);
    const body =
      def.body === undefined ? undefined : typeof def.body === 'string' ? def.body : JSON.stringify(def.body);
    const { url, authorization } = credentialsApart(def.url);
    // The URL's credentials, unless the source's own headers carry an authorization.
    const urlAuthorization = Object.keys(def.headers).some((name) => name.toLowerCase() === 'authorization')
      ? undefined
      : authorization;
    return {
      mode: 'poll',
      intervalMs: def.interval_ms,
      async run(signal) {
        const headers: Record<string, string> = { accept: 'application/json', ...def.headers };
        if (urlAuthorization !== undefined) headers.authorization = urlAuthorization;
        if (body !== undefined && typeof def.body !== 'string') headers['content-type'] ??= 'application/json';
        if (etag) headers['if-none-match'] = etag;
        if (lastModified) headers['if-modified-since'] = lastModified;
        const response = await fetchFollowingSameOrigin(url, { method: def.method, headers, body, signal });
        // Nothing new: not modified, or no content (an API's answer when nothing happened since).
        if (response.status === 304 || response.status === 204 || response.status === 205) {
          await response.body?.cancel();
          return;
        }
        if (!response.ok) {
          await response.body?.cancel();
          // Too many requests, or unavailable for a while: upstream says when to come back, and
          // polling before then is what gets a client throttled harder or banned.
          const at =
            response.status === 429 || response.status === 503
              ? retryAfter(response.headers.get('retry-after'))
              : undefined;
          // "Not before": the core polls at this time or at the end of its back-off, whichever is
          // later (source-runtime.ts), and the back-off is not known here.
          const error = new HttpStatusError(
            `HTTP ${response.status} from ${shownUrl}` +
              (at === undefined ? '' : ` (Retry-After: next poll not before ${new Date(at).toISOString()})`),
          );
          if (at !== undefined) error.retryAt = at;
          throw error;
        }
        const text = await readCapped(response, def.max_bytes, shownUrl);
        let payload: unknown;
        try {
          payload = JSON.parse(text);
        } catch {
          throw new InvalidJsonError(`invalid JSON from ${shownUrl} (${text.length} characters)`, text.slice(0, 80));
        }
        await io.emit(payload);
        // Remember validators only once the payload is durable, so a failed publish is retried.
        etag = response.headers.get('etag') ?? undefined;
        lastModified = response.headers.get('last-modified') ?? undefined;
      },
      close() {},
    };
  },
};
