import { BadFrameError } from './errors.ts';

/**
 * How deeply a message's `data` may nest. JSON.parse takes any depth, but serializing it again
 * (for the store, for fan-out) recurses and fails near 4,400 levels in V8; refusing deeper data
 * when a frame is parsed, on every node (relay and edge), keeps one such message from failing
 * the storage batch it shares with other publishers' messages.
 */
export const MAX_DATA_DEPTH = 1_000;

/** Throws `bad_frame` when `data` nests deeper than MAX_DATA_DEPTH (iteratively: no recursion). */
export function assertDataDepth(data: unknown): void {
  const stack: [object, number][] = typeof data === 'object' && data !== null ? [[data, 1]] : [];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const [value, depth] = next;
    if (depth > MAX_DATA_DEPTH) throw new BadFrameError(`data: nested deeper than ${MAX_DATA_DEPTH} levels`);
    for (const child of Object.values(value)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
}
