import { Counter, Gauge, type Registry } from 'prom-client';
import type { GiveUpStage } from './publish-gate.ts';
import type { SourceRuntime } from './source-runtime.ts';

/**
 * Prometheus metrics of the sources. Per-source gauges are filled at scrape time from the
 * runtimes (nothing to keep in step), so a deleted source simply disappears; its counters are
 * removed by `forget` when it is deleted.
 */
export function createSourceMetrics(
  registry: Registry,
  view: () => { runtimes: Iterable<SourceRuntime>; inFlight: number; waiting: number },
) {
  const gauge = (name: string, help: string, read: (r: SourceRuntime) => number | undefined) =>
    new Gauge({
      name,
      help,
      labelNames: ['source'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const runtime of view().runtimes) {
          const value = read(runtime);
          if (value !== undefined) this.set({ source: runtime.definition.name }, value);
        }
      },
    });
  const seconds = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);
  gauge('anode_source_up', '1 when the source last succeeded (or is connected), 0 when failing', (r) =>
    r.state === 'ok' || r.state === 'connected' ? 1 : r.state === 'failing' ? 0 : undefined,
  );
  gauge('anode_source_last_success_timestamp_seconds', 'When the source last succeeded', (r) =>
    seconds(r.health.lastSuccessAt),
  );
  gauge('anode_source_lag_seconds', 'How late the last attempt started after it was due', (r) =>
    seconds(r.health.lagMs),
  );
  gauge('anode_source_messages_per_second', 'Messages ingested per second (10 s moving average)', (r) =>
    r.rate.perSecond(),
  );
  gauge('anode_source_consecutive_failures', 'Failed attempts since the last success', (r) => r.health.failures);
  gauge('anode_source_next_attempt_timestamp_seconds', 'When the next attempt is due', (r) =>
    r.status().next_attempt_at === null ? undefined : seconds(Date.parse(r.status().next_attempt_at as string)),
  );
  new Gauge({
    name: 'anode_sources',
    help: 'Sources by state',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const counts = new Map<string, number>();
      for (const r of view().runtimes) counts.set(r.state, (counts.get(r.state) ?? 0) + 1);
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'anode_source_attempts_in_flight',
    help: 'Polls and connects running now',
    registers: [registry],
    collect() {
      this.set(view().inFlight);
    },
  });
  new Gauge({
    name: 'anode_source_attempts_waiting',
    help: 'Attempts due and waiting for a free slot (source_concurrency)',
    registers: [registry],
    collect() {
      this.set(view().waiting);
    },
  });
  const counter = (name: string, help: string) =>
    new Counter({ name, help, labelNames: ['source'] as const, registers: [registry] });
  return {
    items: counter('anode_source_items_total', 'Items ingested, by source'),
    errors: counter('anode_source_errors_total', 'Failed attempts and bad payloads, by source'),
    deadLetters: counter('anode_source_dead_letters_total', 'Messages sent to the dead-letter topic, by source'),
    /**
     * `stage` is `running` (pending in the store, which may still take it), `queued` (never sent:
     * lost; also a full queue's and a dropped stream's queued frames) or `rejected` (abandoned,
     * then refused by the store: lost).
     */
    abandonedPublishes: new Counter({
      name: 'anode_source_abandoned_publishes_total',
      help: 'Publishes given up on, by source and stage (running: left pending in the store at 10 × timeout_ms; queued: never sent, lost; rejected: given up on, then refused by the store, lost)',
      labelNames: ['source', 'stage'] as const,
      registers: [registry],
    }),
    /** Drop a deleted source's counter series (else every source ever run stays in /metrics). */
    forget(source: string) {
      for (const c of [this.items, this.errors, this.deadLetters]) c.remove({ source });
      for (const stage of STAGES) this.abandonedPublishes.remove({ source, stage });
    },
  };
}

const STAGES: readonly GiveUpStage[] = ['running', 'queued', 'rejected'];
