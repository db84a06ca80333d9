import { createHash, timingSafeEqual } from 'node:crypto';
import { UnauthorizedError } from '@anode/shared';

const digest = (s: string) => createHash('sha256').update(s).digest();
const same = (given: string, expected: string | undefined) =>
  expected !== undefined && timingSafeEqual(digest(given), digest(expected));

export type StatusReader = 'admin' | 'reader';

/**
 * Who may read `/v1/status` and `/metrics`. With auth on, only the holder of `admin_token` or
 * `metrics_token`: they show topics, subscriber patterns and source health, which a node that
 * checks tokens should not hand to anyone. With auth off they stay open, as the rest of the node
 * is. Only the admin sees upstream answer bytes; see redact.ts.
 */
export function createStatusAccess(options: {
  authOn: boolean;
  adminToken: string | undefined;
  metricsToken: string | undefined;
}) {
  return (authorization: string | undefined): StatusReader => {
    const given = /^Bearer\s+(.+)$/i.exec(authorization ?? '')?.[1];
    if (given !== undefined && same(given, options.adminToken)) return 'admin';
    if (given !== undefined && same(given, options.metricsToken)) return 'reader';
    if (!options.authOn) return options.adminToken ? 'reader' : 'admin';
    throw new UnauthorizedError('auth is on: /v1/status and /metrics need the admin token or the metrics token');
  };
}
