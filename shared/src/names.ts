/** Message ids and source names (PROTOCOL.md "Envelope"), apart from the envelope so frames can use them. */
const ID = /^[A-Za-z0-9_-]{1,128}$/;
export const MAX_SOURCE_LENGTH = 128;
const SOURCE_SEGMENT = /^[A-Za-z0-9_@:|-]+$/;
// Names that are properties of every plain object: a source of that name would be lost or
// corrupt where names key an object (source definitions, `latest` answers), so the grammar
// refuses them.
const PROTOTYPE_NAMES = new Set(Object.getOwnPropertyNames(Object.prototype));

// With the `u` flag a surrogate pair is one code point, so this matches only a lone surrogate: the
// test is String.prototype.isWellFormed (ES2024, past the ES2023 lib this code is typed against).
const LONE_SURROGATE = /\p{Surrogate}/u;

/**
 * Whether a string is well-formed UTF-16 (no lone surrogate). One that is not has no UTF-8 form:
 * encoding it turns each lone surrogate into U+FFFD, so `x\ud800`, `x\udfff` and `x\ufffd` would
 * hash to one content id and two different messages dedup as one.
 */
export function isWellFormedText(value: string): boolean {
  return !LONE_SURROGATE.test(value);
}

/** How a refusal of a string that is not well-formed says why. */
export const WELL_FORMED_RULE = 'must be well-formed Unicode (a lone surrogate such as U+D800 has no UTF-8 form)';

export function isMessageId(value: unknown): value is string {
  return typeof value === 'string' && ID.test(value);
}

/** The source name grammar as messages state it (isSourceName). */
export const SOURCE_NAME_RULE = '1-128 of A-Z a-z 0-9 _ - @ : | and dots';

/**
 * A source name (PROTOCOL.md "Envelope"): 1 to 128 characters, segments joined by `.`, each of
 * `A-Z a-z 0-9 _ - @ : |`; not a property name of JavaScript's Object.prototype (`__proto__`,
 * `constructor`, ...).
 */
export function isSourceName(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length >= 1 &&
    value.length <= MAX_SOURCE_LENGTH &&
    !PROTOTYPE_NAMES.has(value) &&
    value.split('.').every((segment) => SOURCE_SEGMENT.test(segment))
  );
}

/** A pattern of source names (`anode.src`): segments of the source grammar, `*`, or a last `>`. */
export function isSourcePattern(value: unknown): value is string {
  if (typeof value !== 'string' || value.length < 1 || value.length > MAX_SOURCE_LENGTH) return false;
  const segments = value.split('.');
  return segments.every(
    (s, i) =>
      s === '*' || (s === '>' && i === segments.length - 1) || (SOURCE_SEGMENT.test(s) && !PROTOTYPE_NAMES.has(s)),
  );
}
