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
