import { readAtMost } from '../../read-at-most.ts';

/** An upstream answer over the source's `max_bytes`: the read was aborted, nothing was kept. */
export class AnswerTooLargeError extends Error {
  override name = 'AnswerTooLargeError';
}

/**
 * The body of `response` as text, read as a stream and abandoned as soon as it passes
 * `maxBytes` (a `Content-Length` above it is refused before reading), so an upstream that answers
 * with gigabytes costs at most `maxBytes` of memory.
 */
export async function readCapped(response: Response, maxBytes: number, shownUrl: string): Promise<string> {
  const tooLarge = () => new AnswerTooLargeError(`answer from ${shownUrl} exceeds max_bytes (${maxBytes} bytes)`);
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (declared > maxBytes) {
    await response.body?.cancel();
    throw tooLarge();
  }
  if (!response.body) return '';
  const reader = response.body.getReader();
  const bytes = await readAtMost(reader, maxBytes);
  if (!bytes) {
    await reader.cancel();
    throw tooLarge();
  }
  return bytes.toString('utf8');
}
