import { join } from 'node:path';
import { isSourceName } from '@anode/shared';
import type { Component, ComponentContext, ComponentFactory } from '../component.ts';
import { createIngest } from './ingest.ts';
import { BUILTIN_KINDS } from './kinds/builtin-kinds.ts';
import { parseDefinition } from './definition.ts';
import { clusterOwnership, type Ownership } from './ownership.ts';
import { loadSteps } from './pipeline.ts';
import { createScheduler } from './scheduler.ts';
import { createSourceMetrics } from './source-metrics.ts';
import { createSourceStore, mergeSources, shadowedByAdmin, versionTime } from './source-store.ts';
import { createSourcesManager } from './sources-manager.ts';
import { mountAdminRoutes } from './admin-routes.ts';
import { createReservedNames } from './reserved-names.ts';
import type { SourceKind } from './source-kind.ts';
import type { SourceRuntime } from './source-runtime.ts';

export interface SourcesComponentOptions {
  /** Who pulls which source (default: rendezvous hashing over the cluster's live members). */
  ownership?: (context: ComponentContext) => Ownership;
  /** Extra source kinds besides `http` and `websocket`. */
  kinds?: readonly SourceKind[];
}

/**
 * Pulled sources as a relay component: the sources of the config file plus the admin API's
 * changes (persisted in `data_dir/sources.json`), their middleware from `plugins_dir`, one
 * scheduler with `source_concurrency` slots, status under `sources` in `/v1/status`, and
 * per-source metrics. Always present, so the admin API can add the first source at run time.
 */
export function sourcesComponent(options: SourcesComponentOptions = {}): ComponentFactory {
  return async function createSourcesComponent(context) {
    const { config, hub, log } = context;
    const kinds = new Map(BUILTIN_KINDS);
    for (const kind of options.kinds ?? []) kinds.set(kind.kind, kind);
    const steps = await loadSteps(config.plugins_dir, log);
    const scheduler = createScheduler({ concurrency: config.source_concurrency });
    const store = createSourceStore(join(config.data_dir, 'sources.json'));
    const changes = await store.load();
    const configured = config.sources.map((raw) => (raw as { name?: unknown }).name).filter(isSourceName);
    // Stamped with the leased clock, not the wall clock: a list made after a restart whose wall
    // clock stepped back must still replace the last run's on every member. The lease read at
    // start is the last run's stamp again when that run never wrote one (it started on a full
    // disk), and 0 when the file was unreadable: then the wall clock, past both.
    const listedAt = Math.max(Date.now(), context.clock.time + 1);
    const reservedNames = createReservedNames(context.cluster.self, configured, listedAt);
    // A source from config files is drawn among the members whose file has it; one that an admin
    // change defines (even over a config file's) has reached every member.
    const byCluster = options.ownership
      ? undefined
      : clusterOwnership(context.cluster, {
          everywhere: (name) => Object.hasOwn(changes.changes, name) && changes.changes[name] !== null,
          holds: reservedNames.holds,
        });
    const stopRefreshing = byCluster && reservedNames.onChange(byCluster.refresh);
    const ownership = options.ownership?.(context) ?? (byCluster as Ownership);

    // What a runtime's publishes meet once its source was deleted counts nowhere: its series were
    // removed, and a source created anew under the name counts from zero (the epoch check that
    // io.lost and the gate's give-ups make too).
    const counts = (runtime: SourceRuntime) => manager.has(runtime.definition.name) && runtime.counting;
    // Read at scrape time only, after `manager` exists.
    const metrics = createSourceMetrics(context.metrics.registry, () => ({
      runtimes: manager.runtimes(),
      inFlight: scheduler.inFlight,
      waiting: scheduler.waiting,
    }));
    const ingest = createIngest({
      hub,
      steps,
      topicPipelines: config.source_pipelines,
      deadLetterTopic: config.dead_letter_topic,
      stepTimeoutMs: config.source_step_timeout_ms,
      maxMessageBytes: config.max_message_bytes,
      log,
      onDeadLetter(runtime, reason) {
        if (counts(runtime)) metrics.deadLetters.inc({ source: runtime.definition.name });
        log.warn({ source: runtime.definition.name, reason }, 'message sent to dead-letter topic');
      },
    });
    const manager = createSourcesManager({
      kinds,
      steps,
      scheduler,
      ownership,
      store,
      changes,
      configuredNames: new Set(configured),
      // Another member's config-file source deleted through the admin API keeps its tombstone
      // here too (see the manager's expire).
      keepTombstone: (name) => reservedNames.has(name),
      // The leased clock: an admin change after a restart whose wall clock stepped back still
      // wins over this node's earlier ones.
      version: () => context.clock.next(),
      log,
      deps: {
        async ingest(runtime, payload) {
          const before = runtime.health.items;
          try {
            await ingest(runtime, payload);
          } finally {
            // Also when a later chunk failed: the retry finds the earlier chunks' items stored, not
            // new, so they count now or never.
            if (counts(runtime)) {
              metrics.items.inc({ source: runtime.definition.name }, runtime.health.items - before);
            }
          }
        },
        onError(runtime) {
          if (counts(runtime)) metrics.errors.inc({ source: runtime.definition.name });
        },
        // Also a stopped runtime's: the publish is the source's, pending in (or lost to) this node's store.
        onGiveUp(runtime, stage, count) {
          const source = runtime.definition.name;
          if (manager.has(source)) metrics.abandonedPublishes.inc({ source, stage }, count);
        },
      },
      // A deleted source's counters go with it; a restart or an update keeps them.
      onDeleted: (name) => metrics.forget(name),
    });
    manager.load(mergeSources(config.sources, changes));
    for (const { name, fields, version } of shadowedByAdmin(config.sources, changes, (raw) =>
      parseDefinition(raw, kinds),
    )) {
      log.warn(
        { source: name, fields, changed_at: new Date(versionTime(version)).toISOString() },
        'an admin change replaced this config-file source: the file’s values of these fields are not applied (send the definition with PUT to apply them)',
      );
    }
    // In a mesh, the admin API's changes reach every member (config-file sources are each node's
    // own, but their names are shared so that every member reserves them).
    context.cluster.share('sources', manager.shared);
    context.cluster.share('reserved-sources', reservedNames.shared);
    // The names of the sources this node or another member pulls are theirs alone: no client may
    // publish as them.
    hub.reserveSources((name) => manager.has(name) || reservedNames.has(name));
    if (!config.admin_token) log.info('admin API disabled (no admin_token): /v1/admin/* answers 403');

    const component: Component = {
      name: 'sources',
      async start() {
        manager.start();
        log.info({ sources: manager.size(), concurrency: config.source_concurrency }, 'sources started');
      },
      async stop() {
        manager.stop();
        // The drivers emit nothing more, but what they emitted may still be publishing (a frame in
        // a middleware step, a plugin's queued payloads): waited for, so that the node's drain
        // after this stop writes it before the mesh and the store stop (node.ts). Bounded by a
        // quarter of shutdown_grace_ms, which bounds the whole stop: the store's close may take
        // half (a Cassandra store's closeTimeoutMs), the drains and the mesh's last gossip the
        // rest. A source's publish cap would not do: it bounds one publish, not a burst queued
        // behind it on a healthy store.
        const waitMs = config.shutdown_grace_ms / 4;
        const deadline = performance.now() + waitMs;
        if (!(await settlesWithin(manager.idle(), waitMs))) {
          log.warn(
            { waited_ms: waitMs },
            'sources stopped with publishes still running: what the store has not taken when it closes is lost',
          );
        }
        // A rewrite of sources.json nobody awaits (after a change whose write failed was undone)
        // would otherwise go on writing in the data folder after its lock is released.
        // Within the same quarter of the grace.
        if (!(await settlesWithin(store.settled(), Math.max(0, deadline - performance.now())))) {
          log.warn({ waited_ms: waitMs }, 'sources stopped with a write of sources.json still running');
        }
        scheduler.stop();
        stopRefreshing?.();
        byCluster?.close();
      },
      status: () => ({
        sources: [...manager.runtimes()].map((r) => ({
          ...r.status(),
          owner: ownership.ownerOf(r.definition.name) ?? null,
        })),
      }),
      routes: (app) => mountAdminRoutes(app, manager, config.admin_token),
    };
    return component;
  };
}

export const createSourcesComponent: ComponentFactory = sourcesComponent();

/** Whether `promise` settles within `ms` (its timer cleared either way). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([promise.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}
