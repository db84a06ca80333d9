import type { Hono } from 'hono';
import type { Component, ComponentFactory } from '../component.ts';
import { createDashboardRoutes } from './dashboard-routes.ts';
import { createEdgeObjects } from './edge-objects.ts';
import { createMetricsHistory } from './metrics-history.ts';
import { metricsSnapshot } from './metrics-snapshot.ts';

const EDGE_POLL_MS = 3_000;

/**
 * The operator's dashboard at `/`: the built page, a live status stream and a topic tail.
 * The stream reads the merged `/v1/status` through the app itself, so it always shows exactly
 * what the status API shows, every component included. It adds to that status this relay's
 * latest throughput sample (`throughput`, from the history ring behind the charts) and the edge
 * Durable Objects of its edge links (`edge_objects`), read only while a dashboard is open here or
 * on a peer (watchers.ts).
 */
export const createDashboardComponent: ComponentFactory = async ({ config, hub, metrics, status, watchers }) => {
  let app: Hono | undefined;
  const history = createMetricsHistory({ snapshot: () => metricsSnapshot(metrics) });
  const edgeObjects = createEdgeObjects({
    intervalMs: EDGE_POLL_MS,
    // Reading an object's status keeps it awake: only while a dashboard is open somewhere.
    active: () => watchers.any(),
    links: async () => {
      const edge = (await status()).edge as { links?: { topic: string; url: string; state: string }[] } | undefined;
      return (edge?.links ?? []).filter((l) => l.state === 'open');
    },
  });
  const routes = createDashboardRoutes({
    adminToken: config.admin_token,
    authOn: Boolean(config.jwt_secret) || config.jwt_public_keys.length > 0,
    status: async () => {
      // The page is behind the admin token, so its stream reads status as the admin does.
      const headers: Record<string, string> = config.admin_token
        ? { authorization: `Bearer ${config.admin_token}` }
        : {};
      const response = await app!.request('/v1/status', { headers });
      if (!response.ok) throw new Error(`/v1/status answered ${response.status}`);
      return response.text();
    },
    metrics: () => metricsSnapshot(metrics),
    samples: (after) => history.samples(after),
    tail: hub,
    watchers,
  });
  const component: Component = {
    name: 'dashboard',
    async start() {
      history.start();
      if (config.edge_link_secret) edgeObjects.start();
    },
    async stop() {
      history.stop();
      edgeObjects.stop();
      routes.close();
    },
    status() {
      return {
        throughput: history.latest() ?? null,
        ...(config.edge_link_secret ? { edge_objects: edgeObjects.list() } : {}),
      };
    },
    routes(target) {
      app = target;
      routes.mount(target);
    },
  };
  return component;
};
