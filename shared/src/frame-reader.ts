import { AnodeError, BadFrameError, TooLargeError } from './errors.ts';
import { type ClientFrame, parseClientFrame, refOf } from './frames.ts';
import { assertJsonDepth, nestsDeeperThan, topLevelRef } from './nesting.ts';
import { MAX_DATA_DEPTH } from './data-depth.ts';

/**
 * One WebSocket message from a client, checked in the order every node checks it: size (in
 * UTF-8 bytes), binary, UTF-8, depth (scanned, before the parser sees it), then shape
 * (parseClientFrame). A refused message carries the `ref` it holds when that can be read, so the
 * `err` answers the frame it refuses.
 */
export type ReadFrame =
  { ok: true; frame: ClientFrame; text: string } | { ok: false; error: AnodeError; ref: string | undefined };

const encoder = new TextEncoder();
const lenient = new TextDecoder('utf-8');
const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** A client frame's `data` sits one level deep (`{"op":"pub","data":…}`). */
const FRAME_AROUND_DATA = 1;
/**
 * An HTTP body's `data` sits one level deep in one item (`{"data":…}`), as in a frame, and two in
 * an array of them (`[{"data":…}]`). Scanned at two for both, a lone item's other members (the
 * scan counts every one, unknown ones too) were taken one level deeper than a frame's.
 */
const bodyAroundData = (text: string) => (/^[\t\n\r ]*\[/.test(text) ? 2 : 1);

/**
 * How much of a frame too large to parse is searched for its `ref` (PROTOCOL.md "Limits"): a
 * client puts `ref` ahead of `data`, and the `too_large` answer then settles its publish.
 */
export const REF_SCAN_BYTES = 4096;

/** The top-level `ref` within the first REF_SCAN_BYTES of a frame not parsed (too large). */
export function leadingRef(message: string | ArrayBuffer | Uint8Array): string | undefined {
  if (typeof message === 'string') return topLevelRef(message.slice(0, REF_SCAN_BYTES));
  const bytes = message instanceof Uint8Array ? message : new Uint8Array(message);
  return topLevelRef(lenient.decode(bytes.subarray(0, REF_SCAN_BYTES)));
}

/** UTF-8 byte length of a string, without encoding it when it is clearly under `limit`. */
function utf8Bytes(text: string, limit: number): number {
  return text.length * 3 <= limit ? text.length : encoder.encode(text).byteLength;
}

/** The ref of a refused frame, read without handing deeply nested text to the parser. */
export function refFound(text: string): string | undefined {
  return nestsDeeperThan(text, MAX_DATA_DEPTH + FRAME_AROUND_DATA) ? topLevelRef(text) : refOf(text);
}

/**
 * A text frame arrives as a string: the runtime has decoded it. (workerd replaces invalid UTF-8 in
 * a text frame with U+FFFD before a Worker sees it, so the edge cannot refuse it; a relay checks
 * the bytes itself.)
 */
export function readClientFrame(message: string | ArrayBuffer | Uint8Array, maxFrameBytes: number): ReadFrame {
  const isText = typeof message === 'string';
  const size = isText ? utf8Bytes(message, maxFrameBytes) : message.byteLength;
  if (size > maxFrameBytes) {
    return {
      ok: false,
      error: new TooLargeError(
        `frame of ${size} bytes exceeds max_frame_bytes (${maxFrameBytes}); a message's data is limited by max_message_bytes`,
      ),
      ref: leadingRef(message),
    };
  }
  if (!isText) {
    const text = lenient.decode(message);
    return { ok: false, error: new BadFrameError('binary frames are not supported'), ref: refFound(text) };
  }
  try {
    // Refused before parsing: a deeply nested frame costs the parser far more than this scan.
    assertJsonDepth(message, FRAME_AROUND_DATA);
  } catch (error) {
    return { ok: false, error: error as AnodeError, ref: topLevelRef(message) };
  }
  try {
    return { ok: true, frame: parseClientFrame(message), text: message };
  } catch (error) {
    const anode = error instanceof AnodeError ? error : new BadFrameError('invalid frame');
    return { ok: false, error: anode, ref: refOf(message) };
  }
}

/**
 * An HTTP publish body as JSON, checked as a text frame is: UTF-8 (refused, not repaired with
 * U+FFFD as `Request.json()` does), depth (scanned before parsing), then JSON syntax. Throws
 * `bad_frame`; the shape is parsePublishBody's to check.
 */
export function readJsonBody(bytes: ArrayBuffer | Uint8Array): unknown {
  let text: string;
  try {
    text = strict.decode(bytes);
  } catch {
    throw new BadFrameError('body is not valid UTF-8');
  }
  assertJsonDepth(text, bodyAroundData(text));
  try {
    return JSON.parse(text);
  } catch {
    throw new BadFrameError('body is not valid JSON');
  }
}
