import type { Connection } from '@libp2p/interface';
import { type Host, pubsubOf } from './host.ts';
import { type ConnectionKind, connectionKind } from './peers.ts';

/**
 * The mesh's part of `GET /v1/status`: this node's peer id and addresses, every connected peer
 * with its connection type (direct, relayed, webrtc), round-trip latency and gossip score, and
 * the gossip mesh of every carried shard topic.
 */
const PREFERENCE: ConnectionKind[] = ['direct', 'webrtc', 'relayed'];

function describePeer(host: Host, peer: string, connections: Connection[]) {
  const kinds = connections.map(connectionKind);
  const best = PREFERENCE.find((kind) => kinds.includes(kind)) ?? 'relayed';
  const rtts = connections.map((c) => c.rtt).filter((rtt): rtt is number => typeof rtt === 'number');
  return {
    peer_id: peer,
    connection: best,
    latency_ms: rtts.length > 0 ? Math.min(...rtts) : null,
    score: Math.round(pubsubOf(host).getScore(peer) * 100) / 100,
    connections: connections.map((c) => ({
      type: connectionKind(c),
      addr: c.remoteAddr.toString(),
      direction: c.direction,
      limited: c.limits !== undefined,
    })),
  };
}

export function peersStatus(host: Host) {
  const byPeer = new Map<string, Connection[]>();
  for (const connection of host.getConnections()) {
    if (connection.status !== 'open') continue;
    const peer = connection.remotePeer.toString();
    byPeer.set(peer, [...(byPeer.get(peer) ?? []), connection]);
  }
  return [...byPeer].map(([peer, connections]) => describePeer(host, peer, connections));
}

/** Gossip mesh peers of every topic this node carries. */
export function gossipMeshStatus(host: Host): Record<string, string[]> {
  const pubsub = pubsubOf(host);
  return Object.fromEntries(pubsub.getTopics().map((topic) => [topic, pubsub.getMeshPeers(topic)]));
}
