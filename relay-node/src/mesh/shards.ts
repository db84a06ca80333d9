/**
 * How aNode topics map onto gossipsub topics. Every topic belongs to one of `count` shards,
 * chosen by its first segment (its namespace): `shard = fnv1a32(first segment) mod count`, and
 * a shard's gossip topic is `/anode/2/shard/<count>/<shard>`. Keying on the first segment keeps
 * all of `prices.*` in one shard, so a pattern with a concrete first segment (`prices.>`,
 * `prices.*.usd`) needs one shard and only a pattern starting with a wildcard needs them all.
 * The count is in the name so that nodes configured with different counts never mix.
 */
export const GOSSIP_PREFIX = '/anode/2/shard/';
export const DISCOVERY_TOPIC = '/anode/1/discovery';

const encoder = new TextEncoder();

/**
 * 32-bit FNV-1a over the UTF-8 bytes of `text` (topic segments are ASCII). An ASCII character is
 * its own UTF-8 byte, so those are hashed from the string as they are: encoding every topic for
 * its shard (each envelope received and sent, twice where a relay forwards) was ~2% of a
 * receiving relay's CPU at 500 msg/s. Anything else is encoded first; the hash is the same.
 */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) return fnv1a32Bytes(encoder.encode(text));
    hash ^= code;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

function fnv1a32Bytes(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (const byte of bytes) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

export interface Shards {
  readonly count: number;
  /** Every shard's gossip topic, by shard number. */
  readonly topics: readonly string[];
  /** The shard number of an aNode topic. */
  of(topic: string): number;
  /** The gossip topic that carries an aNode topic. */
  gossipTopic(topic: string): string;
  /** The shard number of a gossip topic of this count, or undefined for any other topic. */
  parse(gossipTopic: string): number | undefined;
  /** The shards a topic or pattern can match messages in. */
  forPattern(pattern: string): number[];
}

export function createShards(count: number): Shards {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`shard count must be a positive integer: ${count}`);
  const prefix = `${GOSSIP_PREFIX}${count}/`;
  const topics = Array.from({ length: count }, (_, shard) => `${prefix}${shard}`);
  const byTopic = new Map(topics.map((topic, shard) => [topic, shard]));
  const all = topics.map((_, shard) => shard);
  const of = (topic: string) => fnv1a32(topic.split('.', 1)[0] ?? '') % count;
  return {
    count,
    topics,
    of,
    gossipTopic: (topic) => topics[of(topic)] as string,
    // Exactly the topics above (a shard number in canonical decimal, below count), looked up: gossip
    // asks for every message it takes in (message id, validator, delivery), so not by a regex.
    parse: (gossipTopic) => byTopic.get(gossipTopic),
    forPattern(pattern) {
      const first = pattern.split('.', 1)[0] ?? '';
      return first === '*' || first === '>' ? all : [of(first)];
    },
  };
}
