import type { MetricsSample, SourceStatus, StatusEvent } from '../../src/dashboard/status-schema.ts';
import {
  type CassandraNode,
  type EdgeObjectView,
  type Health,
  type RelayView,
  relaysOf,
  storeHealth,
} from './relays.ts';

/**
 * What the page shows, derived from the stream's events: the relays of the mesh (this one and
 * every peer the server reports or remembers), chart series from the server's history ring,
 * topic rates from counter deltas, source sparklines, and the list of problems. Pure data: no DOM.
 */
export const SERIES_POINTS = 300;
const SPARK_POINTS = 40;

export type { Health };

export interface TopicView {
  topic: string;
  published: number;
  delivered: number;
  /** Subscribers of the topic itself plus those of every pattern that matches it. */
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
  /** The topics the page renders (visibleTopics). */
  shownTopics: TopicView[];
  relays: RelayView[];
  edgeObjects: EdgeObjectView[];
  cassandra: CassandraNode[];
  sources: SourceView[];
  series: Series;
  problems: string[];
}

export function emptyModel(): DashboardModel {
  return {
    event: undefined,
    topics: [],
    shownTopics: [],
    relays: [],
    edgeObjects: [],
    cassandra: [],
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

// Code-unit order: localeCompare costs a collator call per comparison, too much for 10,000 topics a second.
const byTopic = (a: { topic: string }, b: { topic: string }) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0);

/** Topic rows the page renders at most: re-rendering thousands of rows every second froze it. */
export const MAX_TOPIC_ROWS = 200;

/** The topics to show: all of them, or the `max` most recently published ones, in name order. */
export function visibleTopics(topics: TopicView[], max = MAX_TOPIC_ROWS): TopicView[] {
  if (topics.length <= max) return topics;
  const recent = [...topics].sort((a, b) => (b.last_published_at ?? 0) - (a.last_published_at ?? 0));
  return recent.slice(0, max).sort(byTopic);
}

/** Fold one stream event into the model (returns a new model; the old one is not changed). */
export function applyEvent(model: DashboardModel, event: StatusEvent): DashboardModel {
  const previous = model.event;
  const seconds = previous ? Math.max(0.001, (event.at - previous.at) / 1000) : 1;
  const series = model.series;
  for (const sample of event.samples ?? []) recordSample(series, sample);

  const before = new Map(previous?.status.topics.map((t) => [t.topic, t]) ?? []);
  const topics = event.status.topics
    .map((t) => {
      const old = before.get(t.topic);
      return {
        topic: t.topic,
        published: t.published,
        delivered: t.delivered,
        // Counted by the relay from its subscription index (hub.ts); matching every pattern
        // against every topic here froze the page with thousands of each.
        subscribers: t.matching_subscribers ?? t.subscribers,
        publish_rate: old ? perSecond(t.published, old.published, seconds) : 0,
        delivery_rate: old ? perSecond(t.delivered, old.delivered, seconds) : 0,
        last_published_at: t.last_published_at,
      };
    })
    .sort(byTopic);

  const sparks = new Map(model.sources.map((s) => [s.source.name, s.spark]));
  const sources = (event.status.sources ?? []).map((raw) => {
    const source = normalizeSource(raw);
    const spark = [...(sparks.get(source.name) ?? [])];
    push(spark, source.rate ?? source.lag_ms ?? 0, SPARK_POINTS);
    return { source, health: sourceHealth(source), error: errorText(source.last_error), spark };
  });

  const { relays, edgeObjects, cassandra } = relaysOf(event.status);
  const next: DashboardModel = {
    event,
    topics,
    shownTopics: visibleTopics(topics),
    relays,
    edgeObjects,
    cassandra,
    sources,
    series,
    problems: [],
  };
  next.problems = problemsOf(next);
  return next;
}

function recordSample(series: Series, sample: MetricsSample) {
  const at = sample.at / 1000;
  if (series.time.length > 0 && at <= (series.time.at(-1) as number)) return; // already have it
  push(series.time, at, SERIES_POINTS);
  push(series.published, sample.published_per_s, SERIES_POINTS);
  push(series.delivered, sample.delivered_per_s, SERIES_POINTS);
  push(series.publish_latency_ms, sample.publish_latency_ms, SERIES_POINTS);
  push(series.store_append_ms, sample.store_append_ms, SERIES_POINTS);
}

/**
 * The store's write latency as of the latest sample: that sample's average (`current`), or, when
 * nothing was written in it, the last average seen and when. A quiet store is not shown as if it
 * were writing at the latency it had minutes ago.
 */
export function latestWriteLatency(series: Series): { ms: number | null; at: number | null; current: boolean } {
  const { store_append_ms: values, time } = series;
  for (let i = values.length - 1; i >= 0; i--) {
    const ms = values[i];
    if (ms != null) return { ms, at: (time[i] as number) * 1000, current: i === values.length - 1 };
  }
  return { ms: null, at: null, current: false };
}

/**
 * How long a bootstrap address may be unconnected, after the start or a loss, before it is a
 * problem: a normal start (dial, handshake) and a redial after a blip take a few seconds.
 */
export const BOOTSTRAP_GRACE_MS = 15_000;

function problemsOf(model: DashboardModel): string[] {
  const event = model.event;
  if (!event) return [];
  const { status } = event;
  const problems: string[] = [];
  const store = status.store;
  const health = storeHealth(store);
  // The store's own reason when it gives one (another relay holds this node id's lease…).
  const why = typeof store.detail === 'string' ? store.detail : store.state;
  if (health === 'error') problems.push(`Storage (${store.kind}) is not healthy${why ? `: ${why}` : ''}`);
  if (health === 'warn')
    problems.push(`Storage (${store.kind}) is spooling: ${store.spool_depth ?? 0} messages waiting`);
  for (const node of model.cassandra) if (!node.up) problems.push(`Cassandra node ${node.address} is down`);
  // Relays in the mesh that announce this relay's node id (mesh.twins): a copied data folder.
  const twins = (status.mesh as { twins?: unknown } | undefined)?.twins;
  for (const peer of Array.isArray(twins) ? twins : []) {
    problems.push(
      `Another relay (peer ${short(String(peer))}) uses this relay's node id: a copied data folder? ` +
        'Give the copy its own node-id, peer-key and clock-lease files',
    );
  }
  for (const bootstrap of status.mesh?.bootstrap ?? []) {
    if (bootstrap.connected || event.at - Date.parse(bootstrap.since) < BOOTSTRAP_GRACE_MS) continue;
    problems.push(`Bootstrap peer ${bootstrap.address} unreachable: ${bootstrap.error ?? 'no answer yet'}`);
  }
  for (const relay of model.relays) if (!relay.up) problems.push(`Relay ${relay.name} is down`);
  for (const relay of model.relays) {
    if (relay.self || !relay.up || !relay.store) continue;
    if (relay.store_health === 'error') problems.push(`Relay ${relay.name}: storage not healthy`);
    if (relay.store_health === 'warn') {
      problems.push(`Relay ${relay.name}: storage is spooling: ${relay.store.spool_depth ?? 0} messages waiting`);
    }
  }
  for (const object of model.edgeObjects) {
    if (object.error) problems.push(`Edge object ${object.topic}: ${object.error}`);
  }
  for (const s of model.sources) {
    if (s.health === 'error') problems.push(`Source ${s.source.name} is failing${s.error ? `: ${s.error}` : ''}`);
  }
  return problems;
}

export const short = (id: string) => (id.length > 16 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id);
