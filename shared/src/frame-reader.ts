import { AnodeError, BadFrameError, TooLargeError } from './errors.ts';
import { type ClientFrame, parseClientFrame, refOf } from './frames.ts';

/**
 * One WebSocket message from a client, checked in the order every node checks it: size (in
 * UTF-8 bytes), binary, UTF-8, then shape (parseClientFrame). A refused message carries the
 * `ref` it holds when that can be read, so the `err` answers the frame it refuses.
 */
export type ReadFrame =
  { ok: true; frame: ClientFrame; text: string } | { ok: false; error: AnodeError; ref: string | undefined };

const encoder = new TextEncoder();
const lenient = new TextDecoder('utf-8');

/** UTF-8 byte length of a string, without encoding it when it is clearly under `limit`. */
function utf8Bytes(text: string, limit: number): number {
  return text.length * 3 <= limit ? text.length : encoder.encode(text).byteLength;
}

export function readClientFrame(message: string | ArrayBuffer | Uint8Array, maxFrameBytes: number): ReadFrame {
  const isText = typeof message === 'string';
  const size = isText ? utf8Bytes(message, maxFrameBytes) : message.byteLength;
  if (size > maxFrameBytes) {
    return { ok: false, error: new TooLargeError(`frame of ${size} bytes exceeds ${maxFrameBytes}`), ref: undefined };
  }
  if (!isText) {
    const text = lenient.decode(message);
    return { ok: false, error: new BadFrameError('binary frames are not supported'), ref: refOf(text) };
  }
  try {
    return { ok: true, frame: parseClientFrame(message), text: message };
  } catch (error) {
    const anode = error instanceof AnodeError ? error : new BadFrameError('invalid frame');
    return { ok: false, error: anode, ref: refOf(message) };
  }
}
