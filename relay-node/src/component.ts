import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HybridClock, MessageStore } from '@anode/shared';
import type { Hono } from 'hono';
import type { Cluster } from './cluster.ts';
import type { Watchers } from './dashboard/watchers.ts';
import type { RelayConfig } from './config.ts';
import type { Hub } from './hub/hub.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';

/**
 * An optional part of a relay (the mesh, sources, edge links…): built from the shared context,
 * started after the store and hub are ready, stopped in reverse order. Its `status` is merged
 * into `GET /v1/status` (`node` fields are added to the node object; other keys are top-level).
 */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  status?(): Promise<Record<string, unknown>> | Record<string, unknown>;
  /** False makes `/healthz` answer 503. */
  healthy?(): boolean;
  /** Extra HTTP routes (an admin API, an edge-link endpoint…) on the relay's Hono app. */
  routes?(app: Hono): void;
  /** Take over a WebSocket upgrade on a path the component owns; true when it handled it. */
  upgrade?(request: IncomingMessage, socket: Duplex, head: Buffer): boolean;
}

export interface ComponentContext {
  nodeId: string;
  /**
   * This node's cursor clock (leased: it never goes back, across restarts either), for what must
   * order after this node's earlier runs.
   */
  clock: HybridClock;
  config: RelayConfig;
  hub: Hub;
  store: MessageStore;
  metrics: Metrics;
  log: Logger;
  /** The live relays this node shares pulled work with: itself alone unless the mesh drives it. */
  cluster: Cluster;
  /** This node's merged `GET /v1/status` (unredacted: pick from it, never pass it on whole). */
  status: () => Promise<Record<string, unknown>>;
  /** Whether a dashboard is open, here or on a peer (work done only for the page waits for it). */
  watchers: Watchers;
}

export type ComponentFactory = (context: ComponentContext) => Promise<Component | undefined>;
