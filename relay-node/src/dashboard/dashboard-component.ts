import type { Hono } from 'hono';
import type { Component, ComponentFactory } from '../component.ts';
import { createDashboardRoutes } from './dashboard-routes.ts';
import { metricsSnapshot } from './metrics-snapshot.ts';

/**
 * The operator's dashboard at `/`: the built page, a live status stream and a topic tail.
 * The stream reads the merged `/v1/status` through the app itself, so it always shows exactly
 * what the status API shows, every component included.
 */
export const createDashboardComponent: ComponentFactory = async ({ config, hub, metrics }) => {
  let app: Hono | undefined;
  const routes = createDashboardRoutes({
    adminToken: config.admin_token,
    authOn: Boolean(config.jwt_secret) || config.jwt_public_keys.length > 0,
    status: async () => {
      // The page is behind the admin token, so its stream reads status as the admin does.
      const headers: Record<string, string> = config.admin_token
        ? { authorization: `Bearer ${config.admin_token}` }
        : {};
      const response = await app!.request('/v1/status', { headers });
      return (await response.json()) as Record<string, unknown>;
    },
    metrics: () => metricsSnapshot(metrics),
    tail: hub,
  });
  const component: Component = {
    name: 'dashboard',
    async start() {},
    async stop() {
      routes.close();
    },
    routes(target) {
      app = target;
      routes.mount(target);
    },
  };
  return component;
};
