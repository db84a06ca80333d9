/**
 * What `reader` yields, if it comes to at most `maxBytes` in all; undefined as soon as it passes
 * them. Reading stops there, and the reader is left to the caller: to cancel it (an upstream
 * answer) or to leave it unread (a request body refused with its connection closed).
 */
export async function readAtMost(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  maxBytes: number,
): Promise<Buffer<ArrayBuffer> | undefined> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(chunks);
    total += value.byteLength;
    if (total > maxBytes) return undefined;
    chunks.push(value);
  }
}
