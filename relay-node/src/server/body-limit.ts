import { TooLargeError } from '@anode/shared';
import type { MiddlewareHandler } from 'hono';
import { readAtMost } from '../read-at-most.ts';

/**
 * A request body's size limit. A body with a Content-Length is judged by that header alone,
 * without touching the body: one refused unread is then drained by the server and its connection
 * kept. (Hono's bodyLimit reads `req.raw.body` to decide, which wires the request into a web
 * stream that nobody reads once the answer is 413. The server could then not drain the body, and
 * closed the connection ~500 ms later, under whatever request the client had sent on it since:
 * a publish could be stored with its answer lost. The fuzz run saw it as "other side closed".)
 *
 * A chunked body is counted as it is read. One over the limit is refused with `Connection:
 * close`, since the rest of it is never read and cannot be left on a kept-alive connection.
 */
export function limitBody(maxBytes: number): MiddlewareHandler {
  const tooLarge = () => new TooLargeError(`body exceeds max_body_bytes (${maxBytes} bytes)`);
  return async (c, next) => {
    const length = c.req.header('content-length');
    if (c.req.header('transfer-encoding') === undefined) {
      // Node's parser has already refused a malformed length (and a length beside a chunked body).
      if (length !== undefined && Number(length) > maxBytes) throw tooLarge();
      return next();
    }
    const body = c.req.raw.body;
    if (!body) return next();
    const bytes = await readAtMost(body.getReader(), maxBytes);
    if (!bytes) {
      c.header('connection', 'close');
      throw tooLarge();
    }
    c.req.raw = new Request(c.req.raw, { body: bytes });
    return next();
  };
}
