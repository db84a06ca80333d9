import { BadFrameError } from './errors.ts';

/**
 * How deeply a message's `data` may nest. JSON.parse takes any depth, but serializing it again
 * (for the store, for fan-out) recurses and fails near 4,400 levels in V8; refusing deeper data
 * when a frame is parsed, on every node (relay and edge), keeps one such message from failing
 * the storage batch it shares with other publishers' messages.
 */
export const MAX_DATA_DEPTH = 1_000;

const overflow = () => new BadFrameError('data: a number beyond what JSON can hold (±1.8e308)');

/**
 * Throws `bad_frame` when `data` nests deeper than `maxDepth` (MAX_DATA_DEPTH; iteratively: no recursion), or
 * holds a number JSON cannot carry: JSON.parse reads a literal past the double range (`1e999`) as
 * Infinity, which serializing turns into `null`, so the message would be acked and stored with
 * other data than its publisher sent. One walk for both: every message's data goes through it.
 */
export function assertDataDepth(data: unknown, maxDepth: number = MAX_DATA_DEPTH): void {
  if (typeof data === 'number' && !Number.isFinite(data)) throw overflow();
  const stack: [object, number][] = typeof data === 'object' && data !== null ? [[data, 1]] : [];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const [value, depth] = next;
    if (depth > maxDepth) throw new BadFrameError(`data: nested deeper than ${maxDepth} levels`);
    for (const child of Object.values(value)) {
      if (typeof child === 'object') {
        if (child !== null) stack.push([child, depth + 1]);
      } else if (typeof child === 'number' && !Number.isFinite(child)) throw overflow();
    }
  }
}
