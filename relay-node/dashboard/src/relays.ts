import { ownsSource } from '../../src/dashboard/source-owner.ts';
import type { MetricsSample, RelayStatus } from '../../src/dashboard/status-schema.ts';

/**
 * The cluster view's rows: this relay (from its own status) and every mesh peer the relay
 * reports, connected or remembered, with the status card the peer last sent over the mesh
 * (relay-node/src/dashboard/relay-card.ts). Also every edge Durable Object and every Cassandra
 * node any of them sees.
 */
export type Health = 'ok' | 'warn' | 'error';

export interface CassandraNode {
  address: string;
  datacenter: string | null;
  up: boolean;
  /** The relay (name) that sees it so. */
  seenBy: string;
}

export interface EdgeObjectView {
  topic: string;
  clients: number | null;
  link: string | null;
  error: string | null;
  /** The relay (name) whose link reaches it. */
  via: string;
}

export interface RelayView {
  /** Node id, else peer id. */
  key: string;
  name: string;
  node_id: string | null;
  peer_id: string | null;
  self: boolean;
  up: boolean;
  up_since: string | null;
  down_since: string | null;
  last_seen: string | number | null;
  version: string | null;
  store: {
    kind: string | null;
    ok: boolean;
    state: string | null;
    spool_depth: number | null;
    nodes: { up: boolean }[];
  } | null;
  store_health: Health | null;
  throughput: MetricsSample | null;
  connection: string | null;
  latency_ms: number | null;
  connections: number | null;
  sources_owned: string[] | null;
  sources_total: number | null;
  edge_links: { topic: string | null; state: string | null }[] | null;
  status_error: string | null;
  /** When the card shown was received (a down relay shows its last one). */
  card_at: string | null;
}

type Obj = Record<string, unknown>;
const obj = (value: unknown): Obj => (typeof value === 'object' && value !== null ? (value as Obj) : {});
const list = (value: unknown): Obj[] => (Array.isArray(value) ? value.map(obj) : []);
const str = (value: unknown) => (typeof value === 'string' ? value : null);
const num = (value: unknown) => (typeof value === 'number' ? value : null);

function storeOf(value: unknown): RelayView['store'] {
  const store = obj(value);
  if (store.kind === undefined) return null;
  return {
    kind: str(store.kind),
    ok: store.ok === true,
    state: str(store.state),
    spool_depth: num(store.spool_depth),
    nodes: list(store.nodes).map((n) => ({ up: n.up === true })),
  };
}

/** Unhealthy or unreachable is an error; spooling (or anything waiting in the spool) a warning. */
export function storeHealth(store: { ok: boolean; state?: string | null; spool_depth?: number | null }): Health {
  if (!store.ok || store.state === 'unreachable') return 'error';
  if (store.state === 'spooling' || (store.spool_depth ?? 0) > 0) return 'warn';
  return 'ok';
}

const healthOf = (store: RelayView['store']): Health | null => (store ? storeHealth(store) : null);

const sampleOf = (value: unknown) =>
  typeof (value as MetricsSample | null)?.published_per_s === 'number' ? (value as MetricsSample) : null;

function selfRelay(status: RelayStatus): RelayView {
  const node = status.node;
  const store = storeOf(status.store);
  const sources = status.sources ?? null;
  const links = list(obj(status.edge).links);
  return {
    key: node.id,
    name: node.id,
    node_id: node.id,
    peer_id: node.peer_id ?? null,
    self: true,
    up: true,
    up_since: node.started_at,
    down_since: null,
    last_seen: null,
    version: node.version,
    store,
    store_health: healthOf(store),
    throughput: sampleOf(status.throughput),
    connection: null,
    latency_ms: null,
    connections: status.connections,
    // As the status card counts them (relay-card.ts).
    sources_owned: sources ? sources.filter((s) => ownsSource(s, node.id)).map((s) => s.name) : null,
    sources_total: sources ? sources.length : null,
    edge_links: status.edge ? links.map((l) => ({ topic: str(l.topic), state: str(l.state) })) : null,
    status_error: null,
    card_at: null,
  };
}

function peerRelay(peer: Obj): RelayView {
  const up = (str(peer.state) ?? 'up') === 'up';
  // A down relay keeps its last card for who it was (version, storage kind); what it was doing
  // then (throughput, clients, sources, links, health) is not shown as if it were now.
  const card = peer.card ? obj(peer.card) : null;
  const live = up ? card : null;
  const node = obj(card?.node);
  const peerId = str(peer.peer_id ?? peer.id) ?? '?';
  const nodeId = str(node.id);
  const store = card ? storeOf(card.store) : null;
  if (store && !up) store.nodes = [];
  const sources = live ? obj(live.sources) : null;
  return {
    key: nodeId ?? peerId,
    name: nodeId ?? peerId,
    node_id: nodeId,
    peer_id: peerId,
    self: false,
    up,
    up_since: str(peer.up_since),
    down_since: str(peer.down_since),
    last_seen: str(peer.last_seen),
    version: str(node.version),
    store,
    store_health: healthOf(store),
    throughput: live ? sampleOf(live.throughput) : null,
    connection: up ? str(peer.connection) : null,
    latency_ms: up ? num(peer.latency_ms) : null,
    connections: live ? num(live.connections) : null,
    sources_owned: sources && Array.isArray(sources.owned) ? (sources.owned as string[]) : null,
    sources_total: sources ? num(sources.total) : null,
    edge_links: live ? list(live.edge_links).map((l) => ({ topic: str(l.topic), state: str(l.state) })) : null,
    status_error: str(peer.status_error),
    card_at: str(peer.card_at),
  };
}

export function relaysOf(status: RelayStatus) {
  const self = selfRelay(status);
  const all = [...(status.peers ?? []), ...(status.peers_down ?? [])] as Obj[];
  const peers = all.map((p) => peerRelay(p));
  // Down first (what needs attention), then by name; this relay leads.
  peers.sort((a, b) => Number(a.up) - Number(b.up) || a.name.localeCompare(b.name));
  const relays = [self, ...peers];

  const edgeObjects: EdgeObjectView[] = [];
  const add = (objects: unknown, via: string) => {
    for (const o of list(objects)) {
      edgeObjects.push({
        topic: str(o.topic) ?? '?',
        clients: num(o.clients),
        link: str(o.link),
        error: str(o.error),
        via,
      });
    }
  };
  add(obj(status).edge_objects, self.name);
  for (const peer of status.peers ?? []) {
    const card = obj((peer as Obj).card);
    add(card.edge_objects, str(obj(card.node).id) ?? '?');
  }

  const cassandra: CassandraNode[] = [];
  const seen = new Set<string>();
  const addNodes = (nodes: unknown, seenBy: string) => {
    for (const n of list(nodes)) {
      const address = str(n.address) ?? '?';
      if (seen.has(address)) continue;
      seen.add(address);
      cassandra.push({ address, datacenter: str(n.datacenter), up: n.up === true, seenBy });
    }
  };
  // This relay's own view first: it is the freshest.
  addNodes(obj(status.store).nodes, self.name);
  for (const peer of status.peers ?? []) {
    const card = obj((peer as Obj).card);
    addNodes(obj(card.store).nodes, str(obj(card.node).id) ?? '?');
  }
  return { relays, edgeObjects, cassandra };
}
