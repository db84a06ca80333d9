import { createTokenVerifier, type TokenVerifier, UnauthorizedError } from '@anode/shared';
import type { EdgeConfig } from './config.ts';

/**
 * Auth at the edge: client JWTs are verified by the same verifier a relay uses (jose runs on
 * workerd, held to JWT_AUDIENCE as a relay to jwt_audience), and relay links present the shared
 * link secret. Verifiers are built once per key set and audience.
 */
const verifiers = new Map<string, Promise<TokenVerifier>>();

export function authEnabled(config: EdgeConfig): boolean {
  return Boolean(config.JWT_SECRET) || config.JWT_PUBLIC_KEYS.length > 0;
}

export function verifierFor(config: EdgeConfig): Promise<TokenVerifier> {
  const { JWT_SECRET: hs256Secret, JWT_PUBLIC_KEYS: publicKeys, JWT_AUDIENCE: audience } = config;
  const cacheKey = JSON.stringify([hs256Secret ?? '', publicKeys, audience]);
  let verifier = verifiers.get(cacheKey);
  if (!verifier) {
    verifier = createTokenVerifier(authEnabled(config) ? { hs256Secret, publicKeys, audience } : undefined);
    verifiers.set(cacheKey, verifier);
  }
  return verifier;
}

/** Compares in time independent of where the strings differ (the secret guards the mesh). */
export function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/**
 * Who may read `/v1/status` and `/metrics`: with auth on, only the holder of METRICS_TOKEN (they
 * show topics and links, which a node that checks tokens should not hand to anyone), as on a
 * relay; with auth off, everyone.
 */
export function assertStatusReader(config: EdgeConfig, authorization: string | null | undefined): void {
  if (!authEnabled(config)) return;
  const given = /^Bearer\s+(.+)$/i.exec(authorization ?? '')?.[1];
  if (given !== undefined && config.METRICS_TOKEN && sameSecret(given, config.METRICS_TOKEN)) return;
  throw new UnauthorizedError('auth is on: /v1/status and /metrics need the metrics token');
}

/** Throws `unauthorized` unless `authorization` is `Bearer <LINK_SECRET>`. */
export function assertLinkSecret(config: EdgeConfig, authorization: string | null | undefined): void {
  if (!config.LINK_SECRET) throw new UnauthorizedError('relay links are off here: LINK_SECRET is not set');
  const given = /^Bearer\s+(.+)$/i.exec(authorization ?? '')?.[1] ?? '';
  if (!sameSecret(given, config.LINK_SECRET)) throw new UnauthorizedError('bad link secret');
}
