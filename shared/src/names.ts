/** Message ids and source names (PROTOCOL.md "Envelope"), apart from the envelope so frames can use them. */
const ID = /^[A-Za-z0-9_-]{1,128}$/;
export const MAX_SOURCE_LENGTH = 128;
const SOURCE_SEGMENT = /^[A-Za-z0-9_@:|-]+$/;
// Names that are properties of every plain object: a source of that name would be lost or
// corrupt where names key an object (source definitions, `latest` answers), so the grammar
// refuses them.
const PROTOTYPE_NAMES = new Set(Object.getOwnPropertyNames(Object.prototype));

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
