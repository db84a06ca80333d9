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

// The last topic found valid: a publisher usually sends to the same topic frame after frame.
let lastValidTopic = '';

export function assertTopic(value: unknown): asserts value is string {
  if (value === lastValidTopic && value !== '') return;
  for (const segment of segmentsOf(value, 'topic')) {
    if (!SEGMENT.test(segment)) {
      throw new BadTopicError(`bad topic segment ${JSON.stringify(segment)}: use [A-Za-z0-9_-]{1,64}`);
    }
  }
  lastValidTopic = value as string;
}

export function assertPattern(value: unknown): asserts value is string {
  const segments = segmentsOf(value, 'pattern');
  segments.forEach((segment, index) => {
    if (segment === '*' || SEGMENT.test(segment)) return;
    if (segment === '>' && index === segments.length - 1) return;
    throw new BadTopicError(
      segment === '>'
        ? '`>` may only be the last segment of a pattern'
        : `bad pattern segment ${JSON.stringify(segment)}: use [A-Za-z0-9_-]{1,64}, * for exactly one segment, or > as the last for one or more`,
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

interface TrieNode<T> {
  /** Children by literal segment. */
  readonly literal: Map<string, TrieNode<T>>;
  /** The `*` child. */
  star: TrieNode<T> | undefined;
  /** Values whose key ends here. */
  readonly here: Set<T>;
  /** Values whose key ends here with `>` (one or more further segments). */
  readonly rest: Set<T>;
}

const newNode = <T>(): TrieNode<T> => ({ literal: new Map(), star: undefined, here: new Set(), rest: new Set() });

const isEmptyNode = <T>(node: TrieNode<T>): boolean =>
  node.literal.size === 0 && node.star === undefined && node.here.size === 0 && node.rest.size === 0;

/**
 * A compiled set of subscriptions for fan-out: a level trie (one node per segment, as in
 * nats-server's sublist), so a publish walks at most the topic's depth times the `*` branches
 * instead of testing every pattern. Scanning every pattern per publish made one client with
 * thousands of pattern subscriptions slow every publish on the node.
 */
export class TopicIndex<T> {
  readonly #root: TrieNode<T> = newNode();
  /** Values per key, for `size` and `counts`. */
  readonly #byKey = new Map<string, Set<T>>();
  #size = 0;

  add(topicOrPattern: string, value: T): void {
    let set = this.#byKey.get(topicOrPattern);
    if (!set) this.#byKey.set(topicOrPattern, (set = new Set()));
    if (set.has(value)) return;
    set.add(value);
    this.#size += 1;
    const segments = topicOrPattern.split('.');
    let node = this.#root;
    for (const [i, segment] of segments.entries()) {
      if (segment === '>' && i === segments.length - 1) {
        node.rest.add(value);
        return;
      }
      if (segment === '*') node = node.star ??= newNode();
      else {
        let next = node.literal.get(segment);
        if (!next) node.literal.set(segment, (next = newNode()));
        node = next;
      }
    }
    node.here.add(value);
  }

  delete(topicOrPattern: string, value: T): void {
    const set = this.#byKey.get(topicOrPattern);
    if (!set?.delete(value)) return;
    this.#size -= 1;
    if (set.size === 0) this.#byKey.delete(topicOrPattern);
    const segments = topicOrPattern.split('.');
    const path: { parent: TrieNode<T>; segment: string }[] = [];
    let node = this.#root;
    for (const [i, segment] of segments.entries()) {
      if (segment === '>' && i === segments.length - 1) {
        node.rest.delete(value);
        break;
      }
      const next = segment === '*' ? node.star : node.literal.get(segment);
      if (!next) return;
      path.push({ parent: node, segment });
      node = next;
      if (i === segments.length - 1) node.here.delete(value);
    }
    // Prune the branch back to the last node still in use, so churn does not grow the trie.
    for (let i = path.length - 1; i >= 0; i--) {
      const { parent, segment } = path[i] as { parent: TrieNode<T>; segment: string };
      const child = segment === '*' ? parent.star : parent.literal.get(segment);
      if (!child || !isEmptyNode(child)) break;
      if (segment === '*') parent.star = undefined;
      else parent.literal.delete(segment);
    }
  }

  /** Every value subscribed to `topic`, each once. */
  lookup(topic: string): Set<T> {
    const found = new Set<T>();
    const segments = topic.split('.');
    const walk = (node: TrieNode<T>, depth: number): void => {
      if (depth === segments.length) {
        for (const value of node.here) found.add(value);
        return;
      }
      for (const value of node.rest) found.add(value);
      const literal = node.literal.get(segments[depth] as string);
      if (literal) walk(literal, depth + 1);
      if (node.star) walk(node.star, depth + 1);
    };
    walk(this.#root, 0);
    return found;
  }

  get size(): number {
    return this.#size;
  }

  /** Topics and patterns with at least one subscriber, with their counts. */
  counts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [k, s] of this.#byKey) out.set(k, s.size);
    return out;
  }
}
