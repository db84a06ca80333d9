import { createHash } from 'node:crypto';
import type { Envelope } from '@anode/shared';
import { type GossipSub, type Message, TopicValidatorResult } from '@libp2p/gossipsub';
import type { Logger } from '../logger.ts';
import { type Decoded, decodeEnvelope, encodeEnvelope, gossipMessageId } from './gossip-codec.ts';
import type { MeshMetrics } from './mesh-metrics.ts';
import type { Shards } from './shards.ts';

/**
 * Envelopes over gossipsub: the message-id function (built before the host, which needs it),
 * then, once attached to the host's pubsub, validation of every shard message (invalid ones are
 * rejected, which scores their sender down), delivery of valid ones, and publishing.
 */
export interface GossipOptions {
  shards: Shards;
  maxMessageBytes: number;
  log: Logger;
  metrics: Pick<MeshMetrics, 'gossipIn' | 'gossipOut' | 'gossipCopies' | 'rejected'>;
}

const encoder = new TextEncoder();

export function createGossip(options: GossipOptions) {
  const { shards, log, metrics } = options;
  // msgIdFn, the validator and the message event see the same data: decode it once.
  const cache = new WeakMap<Uint8Array, Decoded>();
  // The data of this node's own publishes: gossipsub hands msgIdFn the very array we passed it.
  const own = new WeakSet<Uint8Array>();
  let rejected = 0;
  let pubsub: GossipSub | undefined;

  const decode = (message: Message): Decoded => {
    let decoded = cache.get(message.data);
    if (!decoded) {
      const shard = shards.parse(message.topic);
      decoded =
        shard === undefined
          ? { ok: false, reason: 'not a shard topic' }
          : decodeEnvelope(message.data, { maxBytes: options.maxMessageBytes, shardOf: shards.of, shard });
      cache.set(message.data, decoded);
    }
    return decoded;
  };

  const msgIdFn = (message: Message): Uint8Array => {
    if (shards.parse(message.topic) !== undefined) {
      // gossipsub (no fastMsgIdFn) ids every signature-checked copy from a peer before its
      // seen-cache check, so this counts each copy on the wire, duplicates included.
      if (!own.has(message.data)) metrics.gossipCopies.inc();
      return encoder.encode(gossipMessageId(decode(message), message.data));
    }
    // Other topics (peer discovery): the sender and its sequence number, as gossipsub does.
    if (message.type === 'signed') return encoder.encode(`${message.from.toString()}/${message.sequenceNumber}`);
    return createHash('sha256').update(message.data).digest();
  };

  return {
    msgIdFn,

    /** Validate and receive shard messages from the host's pubsub. */
    attach(host: GossipSub, onEnvelope: (envelope: Envelope) => void): void {
      pubsub = host;
      for (const topic of shards.topics) {
        host.topicValidators.set(topic, (peer, message) => {
          const decoded = decode(message);
          if (decoded.ok) return TopicValidatorResult.Accept;
          rejected += 1;
          metrics.rejected.inc();
          log.debug({ peer: peer.toString(), topic, reason: decoded.reason }, 'gossip message rejected');
          return TopicValidatorResult.Reject;
        });
      }
      host.addEventListener('message', (event) => {
        if (shards.parse(event.detail.topic) === undefined) return;
        const decoded = decode(event.detail);
        if (!decoded.ok) return;
        metrics.gossipIn.inc();
        onEnvelope(decoded.envelope);
      });
    },

    /** Gossip an envelope this node accepted (also when no peer is there to hear it). */
    async publish(envelope: Envelope): Promise<void> {
      if (!pubsub) return;
      try {
        const data = encodeEnvelope(envelope);
        own.add(data);
        await pubsub.publish(shards.gossipTopic(envelope.topic), data);
        metrics.gossipOut.inc();
      } catch (error) {
        log.warn({ err: error, id: envelope.id }, 'gossip publish failed; peers will get it by catch-up');
      }
    },

    /** Carry exactly these shards (subscribe to their gossip topics, leave the others). */
    carry(wanted: ReadonlySet<number>): void {
      if (!pubsub) return;
      const current = new Set(pubsub.getTopics());
      shards.topics.forEach((topic, shard) => {
        if (wanted.has(shard) && !current.has(topic)) pubsub?.subscribe(topic);
        if (!wanted.has(shard) && current.has(topic)) pubsub?.unsubscribe(topic);
      });
    },

    get rejected(): number {
      return rejected;
    },
  };
}

export type Gossip = ReturnType<typeof createGossip>;
