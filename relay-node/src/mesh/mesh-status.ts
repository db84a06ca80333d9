import type { Connection } from '@libp2p/interface';
import { type Host, pubsubOf } from './host.ts';
import type { PeerMemory } from './peer-memory.ts';
import { type BootstrapState, type ConnectionKind, connectionKind } from './peers.ts';

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

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * `peers`: the connected peers (as before), now each with `state: 'up'`, since when, and its
 * last status card; `peers_down`: the mesh peers remembered from before (peer-memory.ts) that
 * are not connected, with since when they are down and when they were last seen. Kept apart so
 * `peers` still lists exactly the connected peers. A connected peer that does not speak the mesh
 * protocols (not remembered) shows with no card.
 */
export function clusterPeersStatus(host: Host, memory: PeerMemory, errorOf: (peer: string) => string | undefined) {
  const connected = new Map(peersStatus(host).map((p) => [p.peer_id, p]));
  const out: Record<string, unknown>[] = [];
  const down: Record<string, unknown>[] = [];
  for (const remembered of memory.list()) {
    const live = connected.get(remembered.peer_id);
    connected.delete(remembered.peer_id);
    const up = live !== undefined;
    (up ? out : down).push({
      ...(live ?? { peer_id: remembered.peer_id, connection: null, latency_ms: null }),
      state: up ? 'up' : 'down',
      up_since: up ? iso(remembered.up_since ?? remembered.first_seen) : null,
      down_since: up ? null : iso(remembered.down_since ?? remembered.last_seen),
      last_seen: iso(up ? Date.now() : remembered.last_seen),
      first_seen: iso(remembered.first_seen),
      card: remembered.card,
      card_at: iso(remembered.card_at),
      ...(up && errorOf(remembered.peer_id) ? { status_error: errorOf(remembered.peer_id) } : {}),
    });
  }
  for (const live of connected.values()) out.push({ ...live, state: 'up', last_seen: iso(Date.now()), card: null });
  return { peers: out, peers_down: down };
}

/**
 * `mesh.bootstrap`: every configured bootstrap address (this node's own left out), whether it is
 * connected, since when (connected, or not connected: since the start or since it was lost) and,
 * when not, the last failure. A relay that cannot reach its bootstrap peer is otherwise alone
 * with nothing in its status saying so.
 */
export function bootstrapStatus(states: readonly BootstrapState[]) {
  return states.map(({ address, connected, since, error }) => ({ address, connected, since: iso(since), error }));
}

/** Gossip mesh peers of every topic this node carries. */
export function gossipMeshStatus(host: Host): Record<string, string[]> {
  const pubsub = pubsubOf(host);
  return Object.fromEntries(pubsub.getTopics().map((topic) => [topic, pubsub.getMeshPeers(topic)]));
}
