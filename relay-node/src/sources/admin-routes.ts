import { createHash, timingSafeEqual } from 'node:crypto';
import { assertDataDepth, ForbiddenError, UnauthorizedError } from '@anode/shared';
import type { Context, Hono, Next } from 'hono';
import { SourceDefinitionError } from './definition.ts';
import { SourceExistsError, SourceNotFoundError, type SourcesManager } from './sources-manager.ts';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * `/v1/admin/sources`: list, create, read, replace (PUT), patch (PATCH), delete, pause, resume.
 * Every request needs `Authorization: Bearer <admin_token>`; with no admin token configured
 * the admin API refuses everything (403).
 */
export function mountAdminRoutes(app: Hono, manager: SourcesManager, adminToken: string | undefined) {
  const guard = async (c: Context, next: Next) => {
    if (!adminToken) throw new ForbiddenError('the admin API is disabled: set admin_token (--admin-token)');
    const header = c.req.header('authorization') ?? '';
    const given = /^Bearer\s+(.+)$/i.exec(header)?.[1] ?? '';
    if (!timingSafeEqual(digest(given), digest(adminToken))) {
      throw new UnauthorizedError('a valid admin token is required (Authorization: Bearer …)');
    }
    await next();
  };

  const answer = async (c: Context, run: () => Promise<unknown> | unknown, status: 200 | 201 = 200) => {
    try {
      return c.json((await run()) ?? { ok: true }, status);
    } catch (error) {
      const message = (error as Error).message;
      if (error instanceof SourceNotFoundError) return c.json({ error: { code: 'bad_frame', message } }, 404);
      if (error instanceof SourceExistsError) return c.json({ error: { code: 'bad_frame', message } }, 409);
      if (error instanceof SourceDefinitionError) return c.json({ error: { code: 'bad_frame', message } }, 400);
      throw error;
    }
  };

  const body = async (c: Context): Promise<Record<string, unknown>> => {
    const value: unknown = await c.req.json().catch(() => undefined);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new SourceDefinitionError('the body must be a JSON object');
    }
    // A definition is serialized again and again (the mesh's shared state, its digest every beat,
    // sources.json): no deeper than message data may be. Checked here, on what is new, not where
    // definitions are loaded: one held from before the check still loads and replicates (the
    // mesh takes snapshots up to twice this depth).
    try {
      assertDataDepth(value);
    } catch (error) {
      throw new SourceDefinitionError((error as Error).message.replace(/^data: /, 'the definition: '), {
        cause: error,
      });
    }
    return value as Record<string, unknown>;
  };

  const base = '/v1/admin/sources';
  app.use(`${base}`, guard);
  app.use(`${base}/*`, guard);
  app.get(base, (c) => answer(c, () => ({ sources: manager.list() })));
  app.post(base, (c) => answer(c, async () => manager.create(await body(c)), 201));
  app.get(`${base}/:name`, (c) => answer(c, () => manager.get(c.req.param('name'))));
  app.put(`${base}/:name`, (c) => answer(c, async () => manager.update(c.req.param('name'), await body(c), false)));
  app.patch(`${base}/:name`, (c) => answer(c, async () => manager.update(c.req.param('name'), await body(c), true)));
  app.delete(`${base}/:name`, (c) =>
    answer(c, async () => {
      await manager.remove(c.req.param('name'));
      return { deleted: c.req.param('name') };
    }),
  );
  app.post(`${base}/:name/pause`, (c) => answer(c, () => manager.setPaused(c.req.param('name'), true)));
  app.post(`${base}/:name/resume`, (c) => answer(c, () => manager.setPaused(c.req.param('name'), false)));
}
