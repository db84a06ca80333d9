import { redactUrls } from '../redact.ts';
import { ownsSource } from './source-owner.ts';

/**
 * A relay's status card: the part of its `/v1/status` that other relays show in their cluster
 * view (sent over the mesh's status protocol). Picked field by field, so nothing else (source
 * URLs and headers, upstream answers, tokens) can leak into it; lists are capped so a card stays
 * small (MAX_CARD_BYTES), and every string has URL credentials redacted.
 */
const MAX_LIST = 50;

type Obj = Record<string, unknown>;
const obj = (value: unknown): Obj => (typeof value === 'object' && value !== null ? (value as Obj) : {});
const list = (value: unknown): Obj[] => (Array.isArray(value) ? value.map(obj) : []);
const str = (value: unknown) => (typeof value === 'string' ? redactUrls(value).slice(0, 300) : null);
const num = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) ? value : null);

export function relayCard(status: Obj): Obj {
  const node = obj(status.node);
  const store = obj(status.store);
  const sources = list(status.sources);
  const owned = sources.filter((s) => ownsSource(s, node.id));
  const links = list(obj(status.edge).links);
  return {
    v: 1,
    node: {
      id: str(node.id),
      peer_id: str(node.peer_id),
      version: str(node.version),
      protocol: node.protocol ?? null,
      started_at: str(node.started_at),
      url: str(node.url),
      auth: str(node.auth),
    },
    store: {
      kind: str(store.kind),
      ok: store.ok === true,
      state: str(store.state),
      spool_depth: num(store.spool_depth),
      queued: num(store.queued),
      nodes: list(store.nodes)
        .slice(0, MAX_LIST)
        .map((n) => ({ address: str(n.address), datacenter: str(n.datacenter), up: n.up === true })),
    },
    connections: num(status.connections),
    subscriptions: num(status.subscriptions),
    throughput: typeof status.throughput === 'object' ? status.throughput : null,
    sources: {
      total: sources.length,
      owned: owned.slice(0, MAX_LIST).map((s) => str(s.name)),
      failing: owned.filter((s) => Number(s.consecutive_failures ?? 0) > 0).length,
    },
    edge_links: links.slice(0, MAX_LIST).map((l) => ({ topic: str(l.topic), state: str(l.state) })),
    edge_objects: list(status.edge_objects)
      .slice(0, MAX_LIST)
      .map((o) => ({
        topic: str(o.topic),
        clients: num(o.clients),
        link: str(o.link),
        error: str(o.error),
      })),
  };
}
