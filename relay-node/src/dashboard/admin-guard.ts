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
      // No token typed into the page can open it: say what the operator has to change.
      const message =
        'auth is on and this relay has no admin_token, so the dashboard is closed: restart it with ' +
        '--admin-token <at least 16 characters> (or ANODE_ADMIN_TOKEN), then give that token';
      return c.json({ error: { code: 'forbidden', message } }, 403);
    }
    const given = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '')?.[1] ?? '';
    if (!timingSafeEqual(digest(given), digest(adminToken))) {
      const message = given
        ? 'that is not this relay’s admin token: give the admin_token it was started with'
        : 'the admin token is required (Authorization: Bearer <admin_token>)';
      return c.json({ error: { code: 'unauthorized', message } }, 401);
    }
    return next();
  };
}
