import { BadTopicError } from './errors.ts';

/**
 * Topic and pattern grammar (PROTOCOL.md "Names"): 1 to 8 segments joined by `.`, each
 * `[A-Za-z0-9_-]{1,64}`. A pattern may use `*` for exactly one segment and, as its last
 * segment, `>` for one or more segments.
 */
export const MAX_SEGMENTS = 8;
export const MAX_SEGMENT_LENGTH = 64;
export const MAX_TOPIC_LENGTH = MAX_SEGMENTS * (MAX_SEGMENT_LENGTH + 1) - 1;

const SEGMENT = /^[A-Za-z0-9_-]{1,64}$/;

function segmentsOf(value: unknown, what: string): string[] {
  if (typeof value !== 'string') throw new BadTopicError(`${what} must be a string`);
  if (value.length === 0 || value.length > MAX_TOPIC_LENGTH) {
    throw new BadTopicError(`${what} must be 1 to ${MAX_TOPIC_LENGTH} characters`);
  }
  const segments = value.split('.');
  if (segments.length > MAX_SEGMENTS) {
    throw new BadTopicError(`${what} has ${segments.length} segments; at most ${MAX_SEGMENTS}`);
  }
  return segments;
}

export function isTopic(value: unknown): value is string {
  try {
    assertTopic(value);
    return true;
  } catch {
    return false;
  }
}

export function assertTopic(value: unknown): asserts value is string {
  for (const segment of segmentsOf(value, 'topic')) {
    if (!SEGMENT.test(segment)) {
      throw new BadTopicError(`bad topic segment ${JSON.stringify(segment)}: use [A-Za-z0-9_-]{1,64}`);
    }
  }
}

export function assertPattern(value: unknown): asserts value is string {
  const segments = segmentsOf(value, 'pattern');
  segments.forEach((segment, index) => {
    if (segment === '*' || SEGMENT.test(segment)) return;
    if (segment === '>' && index === segments.length - 1) return;
    throw new BadTopicError(
      segment === '>'
        ? '`>` may only be the last segment of a pattern'
        : `bad pattern segment ${JSON.stringify(segment)}`,
    );
  });
}

export function isPattern(value: string): boolean {
  return value.split('.').some((s) => s === '*' || s === '>');
}

/** Does `pattern` (or a plain topic) match the concrete `topic`? */
export function matches(pattern: string, topic: string): boolean {
  const p = pattern.split('.');
  const t = topic.split('.');
  for (let i = 0; i < p.length; i++) {
    const segment = p[i];
    if (segment === '>') return t.length > i;
    if (i >= t.length) return false;
    if (segment !== '*' && segment !== t[i]) return false;
  }
  return p.length === t.length;
}

/**
 * Does `granted` cover every topic that `requested` can match? Used for auth: a token allowed
 * `prices.>` may subscribe to `prices.*.usd`, but a token allowed `prices.*` may not subscribe
 * to `prices.>`.
 */
export function covers(granted: string, requested: string): boolean {
  const g = granted.split('.');
  const r = requested.split('.');
  for (let i = 0; i < r.length; i++) {
    const have = g[i];
    const want = r[i];
    if (have === '>') return true;
    if (have === undefined || want === '>') return false;
    if (have === '*') continue;
    if (have !== want) return false;
  }
  return g.length === r.length;
}

/** A compiled set of subscriptions for fast fan-out: exact topics by map, patterns by scan. */
export class TopicIndex<T> {
  readonly #exact = new Map<string, Set<T>>();
  readonly #patterns = new Map<string, Set<T>>();

  add(topicOrPattern: string, value: T): void {
    const map = isPattern(topicOrPattern) ? this.#patterns : this.#exact;
    let set = map.get(topicOrPattern);
    if (!set) map.set(topicOrPattern, (set = new Set()));
    set.add(value);
  }

  delete(topicOrPattern: string, value: T): void {
    const map = isPattern(topicOrPattern) ? this.#patterns : this.#exact;
    const set = map.get(topicOrPattern);
    if (!set) return;
    set.delete(value);
    if (set.size === 0) map.delete(topicOrPattern);
  }

  /** Every value subscribed to `topic`, each once. */
  lookup(topic: string): Set<T> {
    const found = new Set<T>(this.#exact.get(topic));
    for (const [pattern, set] of this.#patterns) {
      if (matches(pattern, topic)) for (const value of set) found.add(value);
    }
    return found;
  }

  get size(): number {
    let n = 0;
    for (const set of this.#exact.values()) n += set.size;
    for (const set of this.#patterns.values()) n += set.size;
    return n;
  }

  /** Topics and patterns with at least one subscriber, with their counts. */
  counts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [k, s] of this.#exact) out.set(k, s.size);
    for (const [k, s] of this.#patterns) out.set(k, s.size);
    return out;
  }
}
