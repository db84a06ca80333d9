import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, Next } from 'hono';

const digest = (s: string) => createHash('sha256').update(s).digest();

export interface GuardOptions {
  /** The relay's `admin_token`, if set. */
  adminToken: string | undefined;
  /** True when the relay verifies JWTs (auth on). */
  authOn: boolean;
}

/**
 * The dashboard's data (status stream, topic tail) is open when auth is off and no admin token is
 * set; otherwise it needs `Authorization: Bearer <admin_token>`. Auth on with no admin token
 * closes it (403) rather than leaving it open.
 */
export function adminGuard({ adminToken, authOn }: GuardOptions) {
  return async (c: Context, next: Next) => {
    if (!adminToken && !authOn) return next();
    if (!adminToken) {
      return c.json(
        { error: { code: 'forbidden', message: 'auth is on: set admin_token to open the dashboard' } },
        403,
      );
    }
    const given = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '')?.[1] ?? '';
    if (!timingSafeEqual(digest(given), digest(adminToken))) {
      return c.json({ error: { code: 'unauthorized', message: 'the admin token is required' } }, 401);
    }
    return next();
  };
}
