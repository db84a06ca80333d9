import type { MetricsSnapshot, PeerStatus, SourceStatus, StatusEvent } from '../../src/dashboard/status-schema.ts';

/**
 * What the page shows, derived from the stream's events: rates from counter deltas, chart
 * series over the last minutes, peers remembered after they drop (shown as down), source
 * sparklines, and the list of problems. Pure data: no DOM.
 */
export const SERIES_POINTS = 300;
const SPARK_POINTS = 40;

export type Health = 'ok' | 'warn' | 'error';

export interface PeerView {
  id: string;
  addrs: string[];
  connection: string;
  latency_ms: number | null;
  up_since: string | null;
  up: boolean;
  last_seen: number;
}

export interface TopicView {
  topic: string;
  published: number;
  delivered: number;
  subscribers: number;
  publish_rate: number;
  delivery_rate: number;
  last_published_at: number | null;
}

export interface SourceView {
  source: SourceStatus;
  health: Health;
  error: string | null;
  spark: number[];
}

export interface Series {
  time: number[];
  published: number[];
  delivered: number[];
  publish_latency_ms: (number | null)[];
  store_append_ms: (number | null)[];
}

export interface DashboardModel {
  event: StatusEvent | undefined;
  topics: TopicView[];
  peers: PeerView[];
  sources: SourceView[];
  series: Series;
  problems: string[];
}

export function emptyModel(): DashboardModel {
  return {
    event: undefined,
    topics: [],
    peers: [],
    sources: [],
    series: { time: [], published: [], delivered: [], publish_latency_ms: [], store_append_ms: [] },
    problems: [],
  };
}

const push = <T>(list: T[], value: T, max: number) => {
  list.push(value);
  if (list.length > max) list.splice(0, list.length - max);
};

const perSecond = (now: number, before: number, seconds: number) => Math.max(0, (now - before) / seconds);

const averageMs = (now: { sum_s: number; count: number }, before: { sum_s: number; count: number }) => {
  const count = now.count - before.count;
  return count > 0 ? ((now.sum_s - before.sum_s) / count) * 1000 : null;
};

function normalizePeer(peer: PeerStatus): Omit<PeerView, 'last_seen'> {
  const raw = peer as PeerStatus & { connections?: { addr?: string }[] };
  const addrs = peer.addrs ?? raw.connections?.flatMap((c) => (c.addr ? [c.addr] : [])) ?? [];
  const state = peer.state?.toLowerCase();
  return {
    id: peer.id ?? peer.peer_id ?? '?',
    addrs,
    connection: peer.connection ?? 'unknown',
    latency_ms: peer.latency_ms ?? null,
    up_since: peer.up_since ?? null,
    up: state === undefined || state === 'up' || state === 'connected',
  };
}

const ERROR_STATES = new Set(['error', 'failing', 'failed', 'down', 'unreachable']);
const WARN_STATES = new Set(['backoff', 'paused', 'stopped', 'degraded', 'spooling', 'retrying']);

export function sourceHealth(source: SourceStatus): Health {
  const state = source.state.toLowerCase();
  if (ERROR_STATES.has(state) || (source.consecutive_failures ?? 0) > 0) return 'error';
  if (WARN_STATES.has(state)) return 'warn';
  return 'ok';
}

/** The status may use the long names (`last_success_at`…); the page reads the short ones. */
const normalizeSource = (s: SourceStatus): SourceStatus => ({
  ...s,
  last_success: s.last_success ?? s.last_success_at ?? null,
  rate: s.rate ?? s.messages_per_second ?? null,
  next_attempt: s.next_attempt ?? s.next_attempt_at ?? null,
});

const errorText = (value: SourceStatus['last_error']) =>
  value == null ? null : typeof value === 'string' ? value : value.message;

/** Fold one stream event into the model (returns a new model; the old one is not changed). */
export function applyEvent(model: DashboardModel, event: StatusEvent): DashboardModel {
  const previous = model.event;
  const seconds = previous ? Math.max(0.001, (event.at - previous.at) / 1000) : 1;
  const series = model.series;
  if (previous) recordSeries(series, event.at, event.metrics, previous.metrics, seconds);

  const before = new Map(previous?.status.topics.map((t) => [t.topic, t]) ?? []);
  const topics = event.status.topics
    .map((t) => {
      const old = before.get(t.topic);
      return {
        topic: t.topic,
        published: t.published,
        delivered: t.delivered,
        subscribers: t.subscribers,
        publish_rate: old ? perSecond(t.published, old.published, seconds) : 0,
        delivery_rate: old ? perSecond(t.delivered, old.delivered, seconds) : 0,
        last_published_at: t.last_published_at,
      };
    })
    .sort((a, b) => a.topic.localeCompare(b.topic));

  const peers = foldPeers(model.peers, event);
  const sparks = new Map(model.sources.map((s) => [s.source.name, s.spark]));
  const sources = (event.status.sources ?? []).map((raw) => {
    const source = normalizeSource(raw);
    const spark = [...(sparks.get(source.name) ?? [])];
    push(spark, source.rate ?? source.lag_ms ?? 0, SPARK_POINTS);
    return { source, health: sourceHealth(source), error: errorText(source.last_error), spark };
  });

  const next: DashboardModel = { event, topics, peers, sources, series, problems: [] };
  next.problems = problemsOf(next);
  return next;
}

function recordSeries(series: Series, at: number, now: MetricsSnapshot, before: MetricsSnapshot, seconds: number) {
  push(series.time, at / 1000, SERIES_POINTS);
  push(series.published, perSecond(now.published_total, before.published_total, seconds), SERIES_POINTS);
  push(series.delivered, perSecond(now.delivered_total, before.delivered_total, seconds), SERIES_POINTS);
  push(series.publish_latency_ms, averageMs(now.publish_latency, before.publish_latency), SERIES_POINTS);
  push(series.store_append_ms, averageMs(now.store_append, before.store_append), SERIES_POINTS);
}

/** Peers the node reports now, plus those it reported before and no longer does (down). */
function foldPeers(known: PeerView[], event: StatusEvent): PeerView[] {
  const current = new Map((event.status.peers ?? []).map((p) => [normalizePeer(p).id, normalizePeer(p)]));
  const merged = new Map<string, PeerView>();
  for (const peer of known) {
    if (!current.has(peer.id)) merged.set(peer.id, { ...peer, up: false, latency_ms: null });
  }
  for (const [id, peer] of current) merged.set(id, { ...peer, last_seen: event.at });
  return [...merged.values()].sort((a, b) => Number(a.up) - Number(b.up) || a.id.localeCompare(b.id));
}

export function storeHealth(store: StatusEvent['status']['store']): Health {
  if (!store.ok || store.state === 'unreachable') return 'error';
  if (store.state === 'spooling' || (store.spool_depth ?? 0) > 0) return 'warn';
  return 'ok';
}

function problemsOf(model: DashboardModel): string[] {
  const status = model.event?.status;
  if (!status) return [];
  const problems: string[] = [];
  const store = status.store;
  const health = storeHealth(store);
  if (health === 'error')
    problems.push(`Storage (${store.kind}) is not healthy${store.state ? `: ${store.state}` : ''}`);
  if (health === 'warn')
    problems.push(`Storage (${store.kind}) is spooling: ${store.spool_depth ?? 0} messages waiting`);
  for (const peer of model.peers) if (!peer.up) problems.push(`Peer ${short(peer.id)} is down`);
  for (const s of model.sources) {
    if (s.health === 'error') problems.push(`Source ${s.source.name} is failing${s.error ? `: ${s.error}` : ''}`);
  }
  return problems;
}

export const short = (id: string) => (id.length > 16 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id);
