import type { GossipsubOpts } from '@libp2p/gossipsub';

/**
 * Gossipsub peer scoring for a relay mesh: a few, mostly trusted, long-lived peers whose traffic
 * per topic is uneven. So:
 * - Invalid messages (malformed, oversized, badly signed, wrong shard) weigh heavily and decay
 *   slowly: one puts a peer below the gossip threshold (-10), two below the graylist (-80), where
 *   everything it sends is ignored, for minutes.
 * - Mesh-delivery-rate penalties (P3, P3b) are off: a quiet shard is normal here, not a sign of a
 *   lazy peer, and they would prune honest peers of low-traffic meshes.
 * - Peers sharing an IP are not penalised on loopback (several relays on one host in tests and
 *   local set-ups); elsewhere more than 10 peers on one IP start to cost.
 * - First deliveries and time in mesh earn a little, capped, so a good peer outranks a new one.
 */
export const SCORE_THRESHOLDS = {
  gossipThreshold: -10,
  publishThreshold: -50,
  graylistThreshold: -80,
  acceptPXThreshold: 100,
  opportunisticGraftThreshold: 5,
};

const TOPIC_PARAMS = {
  topicWeight: 1,
  timeInMeshWeight: 0.01,
  timeInMeshQuantum: 1_000,
  timeInMeshCap: 300,
  firstMessageDeliveriesWeight: 0.5,
  firstMessageDeliveriesDecay: 0.9,
  firstMessageDeliveriesCap: 20,
  meshMessageDeliveriesWeight: 0,
  meshMessageDeliveriesDecay: 0.5,
  meshMessageDeliveriesCap: 100,
  meshMessageDeliveriesThreshold: 1,
  meshMessageDeliveriesWindow: 10,
  meshMessageDeliveriesActivation: 5_000,
  meshFailurePenaltyWeight: 0,
  meshFailurePenaltyDecay: 0.5,
  invalidMessageDeliveriesWeight: -20,
  invalidMessageDeliveriesDecay: 0.99,
};

export function scoreParams(topics: readonly string[]): GossipsubOpts['scoreParams'] {
  return {
    topics: Object.fromEntries(topics.map((topic) => [topic, { ...TOPIC_PARAMS }])),
    topicScoreCap: 20,
    appSpecificScore: () => 0,
    appSpecificWeight: 1,
    IPColocationFactorWeight: -5,
    IPColocationFactorThreshold: 10,
    IPColocationFactorWhitelist: new Set(['127.0.0.1', '::1']),
    behaviourPenaltyWeight: -10,
    behaviourPenaltyThreshold: 6,
    behaviourPenaltyDecay: 0.9,
    decayInterval: 1_000,
    decayToZero: 0.01,
    retainScore: 10 * 60_000,
  };
}
