import { MAX_DATA_DEPTH } from './data-depth.ts';
import { BadFrameError } from './errors.ts';

/**
 * Does the JSON text `text` nest arrays and objects deeper than `max`? A linear scan of the raw
 * text (strings skipped), run before `JSON.parse`: parsing a frame of a million `[` costs V8
 * hundreds of milliseconds of CPU, and the frame would be refused for its depth anyway. The scan
 * costs about a millisecond per MiB and does not allocate. Only an upper bound on structure: the
 * text may still be invalid JSON, which the parser then reports.
 */
export function nestsDeeperThan(text: string, max: number): boolean {
  // Cheap exits for the common case: nesting deeper than `max` needs more than `max` opening
  // brackets, counted with native searches before any character-by-character scan.
  if (text.length <= max) return false;
  let openings = 0;
  for (const bracket of ['[', '{']) {
    for (let at = text.indexOf(bracket); at !== -1 && openings <= max; at = text.indexOf(bracket, at + 1)) openings++;
  }
  if (openings <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/**
 * Throws `bad_frame` ("data: nested deeper than 1000 levels", as `assertDataDepth` after parsing)
 * when JSON text whose `data` sits `around` levels deep nests deeper than `data` may: one level
 * for a client frame (`{"op":"pub","data":…}`) and an HTTP body of one item, two for an HTTP body
 * that is an array of items. Every node runs it before `JSON.parse`, so a field the parser would
 * drop (an unknown one) counts too, and refuses at the same depth as `data` does.
 */
export function assertJsonDepth(text: string, around: number): void {
  if (nestsDeeperThan(text, MAX_DATA_DEPTH + around)) {
    throw new BadFrameError(`data: nested deeper than ${MAX_DATA_DEPTH} levels`);
  }
}

/** Index just past the JSON string that starts at `start` (a `"`), or -1 if it never ends. */
function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c) i++;
    else if (c === 0x22) return i + 1;
  }
  return -1;
}

/**
 * The `ref` of a top-level JSON object, found without parsing the rest (for the error answering a
 * frame refused before parsing): only a string `ref` key at depth 1 counts, at most 128 characters
 * and valid JSON. Never throws, whatever the text.
 */
export function topLevelRef(text: string): string | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const end = stringEnd(text, i);
      if (end === -1) return undefined;
      if (depth === 1 && text.slice(i, end) === '"ref"') {
        const value = /^\s*:\s*("(?:[^"\\]|\\.){0,256}")/.exec(text.slice(end, end + 300))?.[1];
        if (value !== undefined) {
          // Never throws: an escape JSON has not (`"\q"`) or a raw control character made the
          // parse throw, outside any handler, and one such frame of 2 KB ended the relay process.
          let ref: unknown;
          try {
            ref = JSON.parse(value);
          } catch {
            return undefined;
          }
          return typeof ref === 'string' && ref.length <= 128 ? ref : undefined;
        }
      }
      i = end - 1;
    } else if (c === 0x5b || c === 0x7b) depth++;
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return undefined;
}
