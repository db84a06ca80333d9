import { readAtMost } from '../../read-at-most.ts';

/** An upstream answer over the source's `max_bytes`: the read was aborted, nothing was kept. */
export class AnswerTooLargeError extends Error {
  override name = 'AnswerTooLargeError';
}

/** An answer whose connection closed before all of it came. */
export class AnswerCutError extends Error {
  override name = 'AnswerCutError';
}

/** An answer whose bytes are not text in its charset; its first characters are kept apart, for the admin's eyes only. */
export class AnswerEncodingError extends Error {
  override name = 'AnswerEncodingError';
  readonly sample: string;
  constructor(message: string, sample: string) {
    super(message);
    this.sample = sample;
  }
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
  let bytes: Uint8Array | undefined;
  try {
    bytes = await readAtMost(reader, maxBytes);
  } catch (error) {
    // fetch's whole word for a body cut mid-way is `terminated` (its socket error, "other side
    // closed", kept apart in `cause`), which was all the status page and the log said.
    if (!(error instanceof TypeError) || error.message !== 'terminated') throw error;
    const cause = (error.cause as Error | undefined)?.message;
    throw new AnswerCutError(
      `answer from ${shownUrl} cut: the connection closed before the answer was complete` +
        (cause ? ` (${cause})` : ''),
      { cause: error },
    );
  }
  if (!bytes) {
    await reader.cancel();
    throw tooLarge();
  }
  return decodeAnswer(bytes, response.headers.get('content-type'), shownUrl);
}

/**
 * An answer's bytes as text: UTF-8 (JSON's encoding; a leading byte order mark dropped, as a
 * client's publish body's is), else the charset its `Content-Type` names (a legacy API's
 * `iso-8859-1`), else refused. Bytes are never repaired: read with U+FFFD in place of what does not
 * decode, a Latin-1 `é` would be published changed, with no error anywhere.
 */
export function decodeAnswer(bytes: Uint8Array, contentType: string | null, shownUrl: string): string {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? '')?.[1];
  const decoder = charset === undefined ? undefined : decoderOf(charset);
  // UTF-16 is not ASCII-compatible: its ASCII text is valid UTF-8 too (NUL bytes between the
  // letters), so trying UTF-8 first read an all-ASCII answer as `{\0"\0…` and failed the poll,
  // while the same source worked once one character was not ASCII (a review's repro).
  const utf16 = decoder?.encoding === 'utf-16le' || decoder?.encoding === 'utf-16be';
  if (!utf16) {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      // not UTF-8: the charset named, if any
    }
  }
  if (decoder && decoder.encoding !== 'utf-8') {
    try {
      return decoder.decode(bytes);
    } catch {
      // not that charset either
    }
  }
  const sample = new TextDecoder().decode(bytes.subarray(0, 80));
  const named = decoder ? decoder.encoding : `a charset known here (${charset})`;
  throw new AnswerEncodingError(
    utf16
      ? `answer from ${shownUrl} is not valid ${named}`
      : `answer from ${shownUrl} is not valid UTF-8` +
          (charset === undefined || decoder?.encoding === 'utf-8' ? '' : ` nor ${named}`),
    sample,
  );
}

/** A strict decoder of `charset`, or undefined for one this runtime does not know. */
function decoderOf(charset: string) {
  try {
    return new TextDecoder(charset, { fatal: true });
  } catch {
    return undefined;
  }
}
