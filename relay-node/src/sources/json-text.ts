/**
 * JSON text of a pulled item without recursion. JSON.parse takes any depth but JSON.stringify
 * overflows the stack near 4,400 levels, so an item that upstream nested deeper could not be
 * hashed or shown, and its exception failed the whole payload it came in.
 */

type Frame = { value: object; keys: string[] | undefined; at: number; written: number };

/** Members JSON.stringify leaves out of an object. */
const omitted = (value: unknown) => value === undefined || typeof value === 'function' || typeof value === 'symbol';

/** A leaf as JSON.stringify writes it; undefined for what it leaves out (undefined, functions). */
const leaf = (value: unknown, lenient: boolean): string | undefined => {
  try {
    return JSON.stringify(value);
  } catch (error) {
    if (!lenient) throw error;
    return JSON.stringify(String(value)); // a BigInt, say: shown, not serialized
  }
};

/**
 * Writes `value` in pieces, exactly as JSON.stringify would (for the values JSON.parse makes),
 * with an explicit stack; stops as soon as `write` returns false. A cycle throws, as
 * JSON.stringify does; `lenient` writes it (and unserializable leaves) as strings instead.
 */
export function writeJson(value: unknown, write: (piece: string) => boolean, lenient = false): void {
  const open = new Set<object>();
  const stack: Frame[] = [];
  /** Writes a value, or opens it; false when the writer wants no more. */
  const enter = (v: unknown, inArray: boolean): boolean => {
    const json = typeof (v as { toJSON?: unknown } | null)?.toJSON === 'function' ? leaf(v, lenient) : undefined;
    if (json !== undefined || v === null || typeof v !== 'object') {
      return write(json ?? leaf(v, lenient) ?? (inArray ? 'null' : 'undefined'));
    }
    if (open.has(v)) {
      if (!lenient) throw new TypeError('Converting circular structure to JSON');
      return write('"[circular]"');
    }
    open.add(v);
    const keys = Array.isArray(v) ? undefined : Object.keys(v);
    stack.push({ value: v, keys, at: 0, written: 0 });
    return write(keys === undefined ? '[' : '{');
  };
  if (!enter(value, false)) return;
  for (let top = stack.at(-1); top; top = stack.at(-1)) {
    const { value: current, keys } = top;
    const members = current as Record<string, unknown>;
    if (keys === undefined) {
      const items = current as unknown[];
      if (top.at >= items.length) {
        stack.pop();
        open.delete(current);
        if (!write(']')) return;
        continue;
      }
      const item = items[top.at];
      if ((top.at++ > 0 && !write(',')) || !enter(item, true)) return;
      continue;
    }
    while (top.at < keys.length && omitted(members[keys[top.at] as string])) top.at++;
    if (top.at >= keys.length) {
      stack.pop();
      open.delete(current);
      if (!write('}')) return;
      continue;
    }
    const key = keys[top.at++] as string;
    if (!write(`${top.written++ > 0 ? ',' : ''}${JSON.stringify(key)}:`) || !enter(members[key], false)) return;
  }
}

/** The start of `value`'s JSON, at most `maxChars` characters (then `…`); never throws. */
export function jsonPreview(value: unknown, maxChars: number): string {
  let text = '';
  try {
    writeJson(
      value,
      (piece) => {
        text += piece;
        return text.length <= maxChars;
      },
      true,
    );
  } catch (error) {
    return `[not shown: ${(error as Error).message}]`.slice(0, maxChars);
  }
  return text.length > maxChars ? `${text.slice(0, maxChars)}…` : text;
}
