import { createHash } from 'node:crypto';
import { setImmediate as immediate, setTimeout as sleep } from 'node:timers/promises';
import { cursorTime, type Envelope, RecentMap } from '@anode/shared';
import { type GossipSub, type GossipsubOpts, type Message, TopicValidatorResult } from '@libp2p/gossipsub';
import { peerIdFromString } from '@libp2p/peer-id';
import type { Logger } from '../logger.ts';
import {
  BATCH_OVERHEAD_BYTES,
  BATCH_TARGET_BYTES,
  type Batch,
  batchBytes,
  batchId,
  cursorNode,
  type DecodedBatch,
  decodeBatch,
  encodeBatch,
  envelopeJson,
  MAX_BATCH_ENVELOPES,
} from './gossip-codec.ts';
import { canGossipTo, sentAll } from './gossip-links.ts';
import type { MeshPubsub } from './host.ts';
import type { MeshMetrics } from './mesh-metrics.ts';
import { SCORE_THRESHOLDS } from './scoring.ts';
import type { Shards } from './shards.ts';

/**
 * Envelopes over gossipsub, in batches (gossip-codec.ts has the format).
 *
 * Publishing: envelopes this node accepted queue up, and a drain publishes them as one batch
 * per shard, in the order they were accepted, at most once per `batchMs` (a tick): a quiet node
 * publishes each envelope at once, alone, and a busy one waits up to a tick and pays gossipsub's
 * per-message costs (signing, verification by every receiver, framing, the validator) once per
 * batch rather than once per envelope. One drain at a time keeps this node's envelopes in cursor
 * order on every link.
 *
 * Nothing is lost silently: a batch that gossipsub did not hand to a subscribed peer, or handed
 * to a stream the peer closed (say on a message larger than it accepts), or that failed to publish
 * is counted in `anode_mesh_gossip_dropped_total`, and repaired at once: the peer is reported to
 * `onUndelivered` with the time since which it may have missed gossip (the mesh cuts the link and
 * tells the peer to catch up from this node from then), a failed publish is retried, before
 * anything newer goes out (see retryLater), and a batch that fails every retry is reported to
 * `onLost` (the mesh tells the shard's peers to catch up from this node from its oldest envelope).
 *
 * Receiving: the validator decodes a batch once and checks every envelope (an invalid one
 * rejects the batch, which scores its sender down), and that the publisher does not pass off
 * another relay's envelopes: the first publisher seen with a cursor node id owns it, and a batch
 * naming, or holding envelopes minted under, a node id another peer owns is rejected.
 */
export interface GossipOptions {
  shards: Shards;
  /** The largest envelope (its JSON) this node gossips; batches may be BATCH_OVERHEAD_BYTES larger. */
  maxMessageBytes: number;
  /** This node's cursor node id. */
  nodeId: string;
  /** At most one batch per shard this often; a node quieter than that publishes at once. */
  batchMs: number;
  /** Whether gossipsub publishes to every peer of a shard (else to its mesh peers only). */
  floodPublish: boolean;
  log: Logger;
  metrics: Pick<
    MeshMetrics,
    'gossipIn' | 'gossipOut' | 'gossipCopies' | 'gossipBatches' | 'gossipHops' | 'rejected' | 'dropped' | 'queued'
  >;
  /**
   * A subscribed peer did not get a batch (gossipsub had no stream to it): it may have missed
   * this node's gossip since `since` (ms): the oldest envelope written since its stream last had
   * nothing unsent.
   */
  onUndelivered?(peer: string, since: number): void;
  /** A batch failed every retry: the shard's subscribed `peers` miss what was minted from `since` (ms). */
  onLost?(peers: string[], since: number): void;
}

const encoder = new TextEncoder();
/** A message as it arrives, before gossipsub checks its signature. */
type RpcMessage = Parameters<GossipsubOpts['fastMsgIdFn']>[0];
const hex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
const MAX_OWNERS = 100_000;
const RECENT_BATCHES = 20_000;
const PUBLISH_RETRIES = 3;
/** Peers whose last fully sent time is kept (see backlogSince), at most. */
const MAX_TRACKED_PEERS = 10_000;

export function createGossip(options: GossipOptions) {
  const { shards, log, metrics } = options;
  const maxBatchBytes = options.maxMessageBytes + BATCH_OVERHEAD_BYTES;
  // The validator and the message event see the same data: decode it once.
  const cache = new WeakMap<Uint8Array, DecodedBatch>();
  // Envelopes per recent batch id, to count duplicate copies (which are never decoded).
  const recent = new RecentMap<number>(RECENT_BATCHES);
  // The same, by the fast id (fastMsgIdFn), which duplicate copies stop at.
  const recentFast = new RecentMap<number>(RECENT_BATCHES);
  let selfHex = '';
  // Cursor node id -> the peer that publishes it.
  const owners = new Map<string, string>();
  let self = '';
  let rejected = 0;
  let pubsub: MeshPubsub | undefined;

  const decode = (message: Message): DecodedBatch => {
    let decoded = cache.get(message.data);
    if (!decoded) {
      const shard = shards.parse(message.topic);
      decoded =
        shard === undefined
          ? { ok: false, reason: 'not a shard topic' }
          : decodeBatch(message.data, { maxBytes: maxBatchBytes, shardOf: shards.of, shard });
      cache.set(message.data, decoded);
    }
    return decoded;
  };

  /** Why `from` may not publish this batch, or undefined when it may. */
  const impostor = (batch: Batch, from: string): string | undefined => {
    const owner = owners.get(batch.node);
    if (owner !== undefined && owner !== from) return `node ${batch.node} is another peer's`;
    for (const envelope of batch.envelopes) {
      const minter = owners.get(cursorNode(envelope.cursor));
      if (minter !== undefined && minter !== from) return `envelope ${envelope.id} was minted by another peer`;
    }
    if (owner === undefined && owners.size < MAX_OWNERS) owners.set(batch.node, from);
    return undefined;
  };

  /** The id fastMsgIdFn gives a copy of `message`: the sender's key bytes and the sequence number. */
  const fastId = (fromHex: string, seqno: bigint) => `${fromHex}/${seqno.toString(16).padStart(16, '0')}`;

  const remember = (message: Message & { type: 'signed' }, count: number) => {
    const id = batchId(message.from.toString(), message.sequenceNumber);
    recent.set(id, count);
    recentFast.set(fastId(hex(message.from.toMultihash().bytes), message.sequenceNumber), count);
  };

  // The batches being published (see publishBatch; one per shard may be in flight), and
  // gossipsub's cache of fast ids (see ownFastId).
  const publishing = new Set<Uint8Array>();
  let fastIds: { get(key: string): unknown; put(key: string, value: string): unknown } | undefined;
  let idString: ((id: Uint8Array) => string) | undefined;

  /**
   * gossipsub fills its fast id cache only from copies it received and verified, not from what it
   * publishes: so the first copy of each of this node's batches that a peer forwards back was
   * verified (Ed25519, ~120 µs) only to be dropped as seen; a publishing relay spent 4% of its
   * busy time there. Here a batch this node publishes has its fast id put there at once, as
   * gossipsub puts a received one's: a copy carrying it is a duplicate, dropped unverified (so is a
   * forged one, as a forged copy of any message already seen is; see fastMsgIdFn).
   */
  const ownFastId = (message: Message & { type: 'signed' }, id: Uint8Array) => {
    if (!fastIds || !idString || !publishing.has(message.data)) return;
    const fast = fastId(selfHex, message.sequenceNumber);
    if (fastIds.get(fast) === undefined) fastIds.put(fast, idString(id));
  };

  const msgIdFn = (message: Message): Uint8Array => {
    if (message.type === 'signed') {
      // Other topics (peer discovery, members): the sender and its sequence number, as gossipsub does.
      if (shards.parse(message.topic) === undefined)
        return encoder.encode(`${message.from.toString()}/${message.sequenceNumber}`);
      const from = message.from.toString();
      const id = batchId(from, message.sequenceNumber);
      // A copy that raced the first one past the fast id cache (fastMsgIdFn) is still a duplicate:
      // counted here (a new one is counted once decoded).
      const known = recent.get(id);
      if (known !== undefined && from !== self) metrics.gossipCopies.inc(known);
      const bytes = encoder.encode(id);
      if (from === self) ownFastId(message, bytes);
      return bytes;
    }
    return createHash('sha256').update(message.data).digest();
  };

  /**
   * The id gossipsub checks before it verifies a copy's signature: the sender's key bytes and the
   * sequence number, the same pair `msgIdFn` names once the signature is checked. Without it every
   * duplicate copy (one per mesh peer but the first, so up to D − 1 per message) paid an Ed25519
   * verification before being dropped as seen; the profile of an idle 9-relay mesh had a third of
   * its busy time there. Safe: gossipsub puts a fast id in its cache only after the copy carrying it
   * passed verification, so a forged copy cannot shadow a genuine message; a forged copy of a
   * message already seen is dropped unverified, as its genuine twin would have been.
   */
  const fastMsgIdFn = (message: RpcMessage): string => {
    if (message.from === undefined || message.seqno === undefined) return 'unsigned';
    const id = `${hex(message.from)}/${hex(message.seqno)}`;
    const known = recentFast.get(id);
    if (known !== undefined && id.slice(0, id.indexOf('/')) !== selfHex) metrics.gossipCopies.inc(known);
    return id;
  };

  // --- publishing ---
  // Peer -> when the oldest envelope of the first batch written after its stream last had nothing
  // unsent was minted: a stream reset or lost later may have dropped anything from then on (a peer
  // that stops reading keeps gossip in the buffer long after it was published).
  // Only a usable stream with an empty buffer counts (see sentAll): one reset on an overflow has its
  // buffer emptied, and the batches in it were lost.
  const flowing = new Map<string, number>();
  // Peers whose stream still held unsent gossip when the last batch was written to them.
  const backlogged = new Set<string>();
  const backlogSince = (peer: string) => flowing.get(peer) ?? Date.now();
  const noteFlowing = (host: MeshPubsub, peers: readonly string[], at: number) => {
    if (flowing.size > MAX_TRACKED_PEERS) flowing.clear();
    if (backlogged.size > MAX_TRACKED_PEERS) backlogged.clear();
    for (const id of peers) {
      if (sentAll(host, id)) {
        flowing.set(id, at);
        backlogged.delete(id);
      } else backlogged.add(id);
    }
  };
  const queue: { envelope: Envelope; attempts: number }[] = [];
  let draining: Promise<void> | undefined;
  // Ends a wait before a retry when the node stops.
  const stopping = new AbortController();

  /** Publish one batch; false when gossipsub failed to (the caller retries it). */
  const publishBatch = async (shard: number, items: typeof queue, jsons: string[]): Promise<boolean> => {
    const topic = shards.topics[shard] as string;
    const host = pubsub as MeshPubsub;
    const oldest = Math.min(...items.map((item) => cursorTime(item.envelope.cursor)));
    noteFlowing(host, host.getSubscribers(topic).map(String), oldest);
    let batch: Uint8Array | undefined;
    try {
      batch = encodeBatch(options.nodeId, jsons);
      publishing.add(batch);
      const { recipients } = await host.publish(topic, batch);
      metrics.gossipOut.inc(items.length);
      metrics.gossipBatches.inc({ direction: 'out' });
      const sent = new Set(recipients.map(String));
      // The peers gossipsub should have sent it to: all of the shard's, or its mesh.
      const expected = options.floodPublish ? host.getSubscribers(topic).map(String) : host.getMeshPeers(topic);
      for (const id of expected) {
        if ((sent.has(id) && canGossipTo(host, id)) || host.getScore(id) < SCORE_THRESHOLDS.publishThreshold) continue;
        metrics.dropped.inc({ reason: 'no_stream' }, items.length);
        log.debug({ peer: id, topic, envelopes: items.length }, 'gossip had no stream to a subscribed peer');
        options.onUndelivered?.(id, backlogSince(id));
        flowing.delete(id);
        backlogged.delete(id);
      }
      return true;
    } catch (error) {
      metrics.dropped.inc({ reason: 'publish_error' }, items.length);
      const retrying = items.filter((item) => item.attempts + 1 <= PUBLISH_RETRIES).length;
      log.warn({ err: error, topic, envelopes: items.length, retrying }, 'gossip publish failed');
      return false;
    } finally {
      if (batch) publishing.delete(batch);
    }
  };

  /**
   * A publish failed: put the failed batch (its envelopes with retries left) and everything not
   * yet published back at the head of the queue, in the order accepted, and wait before the next
   * round. Nothing newer goes out meanwhile: a retried batch overtaken by a later one would reach
   * receivers after it, and they deliver as things arrive (deduplicating by id, not sorting by
   * cursor), so subscribers would see this node's messages out of cursor order.
   */
  const retryLater = async (
    shard: number,
    taken: typeof queue,
    done: ReadonlySet<(typeof queue)[number]>,
    failed: typeof queue,
  ) => {
    for (const item of failed) item.attempts += 1;
    const lost = failed.filter((item) => item.attempts > PUBLISH_RETRIES);
    const topic = shards.topics[shard] as string;
    if (lost.length > 0 && pubsub) {
      const since = Math.min(...lost.map((item) => cursorTime(item.envelope.cursor)));
      log.warn({ topic, envelopes: lost.length }, 'gossip publish failed for good; the shard peers catch up');
      options.onLost?.(pubsub.getSubscribers(topic).map(String), since);
    }
    const back = taken.filter((item) => !done.has(item) && item.attempts <= PUBLISH_RETRIES);
    queue.unshift(...back);
    metrics.queued.set(queue.length);
    await sleep(100 * 2 ** (failed[0]?.attempts ?? 1), undefined, { signal: stopping.signal }).catch(() => {});
  };

  let lastRound = Number.NEGATIVE_INFINITY;
  const drain = async () => {
    while (queue.length > 0 && pubsub) {
      // Gather everything accepted in this turn, and for the rest of the tick after the last round.
      const wait = lastRound + options.batchMs - performance.now();
      await (wait >= 1 ? sleep(wait) : immediate());
      if (!pubsub) break;
      lastRound = performance.now();
      const taken = queue.splice(0);
      metrics.queued.set(queue.length);
      const byShard = new Map<number, typeof queue>();
      for (const item of taken) {
        const shard = shards.of(item.envelope.topic);
        let list = byShard.get(shard);
        if (!list) byShard.set(shard, (list = []));
        list.push(item);
      }
      // Published or dropped for good, this round.
      const done = new Set<(typeof queue)[number]>();
      const publish = async (shard: number, items: typeof queue, jsons: string[]) => {
        if (!(await publishBatch(shard, items, jsons))) return false;
        for (const item of items) done.add(item);
        return true;
      };
      round: for (const [shard, list] of byShard) {
        let items: typeof queue = [];
        let jsons: string[] = [];
        let bytes = 0;
        for (const item of list) {
          const json = envelopeJson(item.envelope);
          const size = Buffer.byteLength(json);
          if (size > options.maxMessageBytes) {
            done.add(item);
            metrics.dropped.inc({ reason: 'too_large' });
            log.warn(
              { id: item.envelope.id, bytes: size },
              'envelope larger than the gossip limit; peers get it by catch-up',
            );
            continue;
          }
          const full =
            jsons.length >= MAX_BATCH_ENVELOPES ||
            batchBytes(options.nodeId, bytes + size, jsons.length + 1) > BATCH_TARGET_BYTES;
          if (jsons.length > 0 && full) {
            if (!(await publish(shard, items, jsons))) {
              await retryLater(shard, taken, done, items);
              break round;
            }
            items = [];
            jsons = [];
            bytes = 0;
          }
          items.push(item);
          jsons.push(json);
          bytes += size;
        }
        if (jsons.length > 0 && !(await publish(shard, items, jsons))) {
          await retryLater(shard, taken, done, items);
          break;
        }
      }
    }
    // Stopped (see stop): a retry put back after the queue was cleared is not kept.
    if (!pubsub) queue.length = 0;
    draining = undefined;
  };

  const send = (envelopes: readonly Envelope[]) => {
    if (!pubsub) return;
    for (const envelope of envelopes) queue.push({ envelope, attempts: 0 });
    metrics.queued.set(queue.length);
    draining ??= drain();
  };

  return {
    msgIdFn,
    fastMsgIdFn,

    /** Validate and receive shard batches from the host's pubsub. */
    attach(host: GossipSub, peerId: string, onEnvelopes: (envelopes: Envelope[]) => void): void {
      pubsub = host as MeshPubsub;
      self = peerId;
      selfHex = hex(peerIdFromString(peerId).toMultihash().bytes);
      owners.set(options.nodeId, self);
      // gossipsub internals (see ownFastId); without them, nothing is put there.
      const internals = host as unknown as {
        fastMsgIdCache?: Partial<NonNullable<typeof fastIds>>;
        msgIdToStrFn?: unknown;
      };
      const cache = internals.fastMsgIdCache;
      if (
        typeof cache?.get === 'function' &&
        typeof cache.put === 'function' &&
        typeof internals.msgIdToStrFn === 'function'
      ) {
        fastIds = cache as NonNullable<typeof fastIds>;
        idString = internals.msgIdToStrFn as (id: Uint8Array) => string;
      }
      for (const topic of shards.topics) {
        host.topicValidators.set(topic, (peer, message) => {
          const decoded = decode(message);
          const reason = !decoded.ok
            ? decoded.reason
            : message.type !== 'signed'
              ? 'not signed'
              : impostor(decoded.batch, message.from.toString());
          const count = decoded.ok ? decoded.batch.envelopes.length : 1;
          metrics.gossipCopies.inc(count);
          if (message.type === 'signed') remember(message, count);
          if (reason === undefined) return TopicValidatorResult.Accept;
          rejected += 1;
          metrics.rejected.inc();
          log.debug({ peer: peer.toString(), topic, reason }, 'gossip batch rejected');
          return TopicValidatorResult.Reject;
        });
      }
      host.addEventListener('gossipsub:message', (event) => {
        const { msg, propagationSource } = event.detail;
        if (shards.parse(msg.topic) === undefined) return;
        const decoded = decode(msg);
        if (!decoded.ok) return;
        metrics.gossipIn.inc(decoded.batch.envelopes.length);
        metrics.gossipBatches.inc({ direction: 'in' });
        // The first copy came straight from its publisher (1 hop) or was forwarded (2 or more).
        const direct = msg.type === 'signed' && propagationSource.equals(msg.from);
        metrics.gossipHops.inc({ hops: direct ? '1' : '2+' }, decoded.batch.envelopes.length);
        onEnvelopes(decoded.batch.envelopes);
      });
    },

    /** Gossip envelopes this node accepted (also when no peer is there to hear them). */
    send: (envelopes: readonly Envelope[]) => send(envelopes),

    /** Resolves once everything queued so far was published (or failed its retries). */
    async flush(): Promise<void> {
      while (draining) await draining;
    },

    /** Publish nothing more: what is queued or waits for a retry is left to catch-up. */
    async stop(): Promise<void> {
      pubsub = undefined;
      stopping.abort();
      queue.length = 0;
      metrics.queued.set(0);
      while (draining) await draining;
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

    /** Since when `peer` may have missed gossip, if its stream turns out to be broken now. */
    backlogSince,

    /**
     * `peer` disconnected: forget it, and return since when it may have missed gossip when its
     * stream still held unsent gossip (then or at the last batch written to it), else undefined.
     */
    peerDown(peer: string): number | undefined {
      const stuck =
        backlogged.has(peer) || (pubsub !== undefined && !sentAll(pubsub, peer) && canGossipTo(pubsub, peer));
      const since = stuck ? backlogSince(peer) : undefined;
      flowing.delete(peer);
      backlogged.delete(peer);
      return since;
    },

    get rejected(): number {
      return rejected;
    },
  };
}

export type Gossip = ReturnType<typeof createGossip>;
