import { importSPKI, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import { z } from 'zod';
import { ForbiddenError, UnauthorizedError } from './errors.ts';
import { assertPattern, covers, matches } from './topics.ts';

/**
 * Auth claims (PROTOCOL.md "Auth"): `pub` and `sub` are topic patterns the holder may publish to
 * and subscribe to; `exp` ends the grant. Verified with HS256 (shared secret) or EdDSA/ES256
 * (public keys) by `jose`, which runs unchanged in Node, Workers and browsers.
 */
const patternList = z.array(
  z.string().refine((p) => {
    try {
      assertPattern(p);
      return true;
    } catch {
      return false;
    }
  }, 'not a topic pattern'),
);

// JWT's registered `sub` claim is a subject string, and tokens from ordinary identity providers
// always carry one; aNode's `sub` is a pattern list. A string `sub` is read as the subject
// (it grants no subscriptions, and names the publisher when `name` is absent).
export const claimsSchema = z
  .object({
    pub: patternList.default([]),
    sub: z.union([patternList, z.string()]).default([]),
    exp: z.number().optional(),
    name: z.string().optional(),
  })
  .transform(({ sub, name, ...rest }) => ({
    ...rest,
    sub: typeof sub === 'string' ? [] : sub,
    ...(name !== undefined ? { name } : typeof sub === 'string' ? { name: sub } : {}),
  }));
export type Claims = z.output<typeof claimsSchema>;

/** What a node with auth off grants everyone. */
export const OPEN_CLAIMS: Claims = { pub: ['>'], sub: ['>'] };

export interface AuthOptions {
  /** HS256 shared secret (at least 32 bytes). */
  hs256Secret?: string;
  /** PEM (SPKI) public keys for EdDSA (Ed25519) or ES256 tokens. */
  publicKeys?: string[];
}

export type TokenVerifier = (token: string | undefined) => Promise<Claims>;

type Key = { key: Awaited<ReturnType<typeof importSPKI>> | Uint8Array; algorithms: string[] };

async function importPublicKey(pem: string): Promise<Key> {
  for (const alg of ['EdDSA', 'ES256']) {
    try {
      return { key: await importSPKI(pem, alg), algorithms: [alg] };
    } catch {
      // not this algorithm's key: try the next
    }
  }
  throw new TypeError('public key is neither Ed25519 nor P-256 in PEM (SPKI) form');
}

/** A verifier for the configured keys; `undefined` options mean auth is off. */
export async function createTokenVerifier(options: AuthOptions | undefined): Promise<TokenVerifier> {
  if (!options || (!options.hs256Secret && !options.publicKeys?.length)) {
    return async () => OPEN_CLAIMS;
  }
  const keys: Key[] = [];
  if (options.hs256Secret) {
    keys.push({ key: new TextEncoder().encode(options.hs256Secret), algorithms: ['HS256'] });
  }
  for (const pem of options.publicKeys ?? []) keys.push(await importPublicKey(pem));

  return async (token) => {
    if (!token) throw new UnauthorizedError('a bearer token is required');
    let lastError: unknown;
    for (const { key, algorithms } of keys) {
      try {
        const { payload } = await jwtVerify(token, key, { algorithms });
        const claims = claimsSchema.safeParse(payload);
        if (!claims.success) throw new UnauthorizedError('token claims `pub`/`sub` must be pattern arrays');
        return claims.data;
      } catch (error) {
        lastError = error;
        if (error instanceof UnauthorizedError) throw error;
        if ((error as { code?: string }).code === 'ERR_JWT_EXPIRED') {
          throw new UnauthorizedError('token expired');
        }
      }
    }
    throw new UnauthorizedError('invalid token', { cause: lastError });
  };
}

export function isExpired(claims: Claims, nowMs = Date.now()): boolean {
  return claims.exp !== undefined && claims.exp * 1000 <= nowMs;
}

export function assertCanPublish(claims: Claims, topic: string): void {
  if (isExpired(claims)) throw new UnauthorizedError('token expired');
  if (!claims.pub.some((p) => matches(p, topic))) {
    throw new ForbiddenError(`not allowed to publish to ${topic}`);
  }
}

export function assertCanSubscribe(claims: Claims, pattern: string): void {
  if (isExpired(claims)) throw new UnauthorizedError('token expired');
  if (!claims.sub.some((g) => covers(g, pattern))) {
    throw new ForbiddenError(`not allowed to subscribe to ${pattern}`);
  }
}

/** Mint an HS256 token (development and tests; production tokens come from your issuer). */
export async function signToken(
  secret: string,
  claims: { pub?: string[]; sub?: string[]; name?: string },
  expiresIn: string | number = '1h',
): Promise<string> {
  // `sub` here is aNode's subscribe-pattern claim (PROTOCOL.md), not JWT's subject string.
  const payload = { pub: claims.pub ?? [], sub: claims.sub ?? [], ...(claims.name ? { name: claims.name } : {}) };
  return new SignJWT(payload as unknown as JWTPayload)
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(secret));
}

/** The token from `Authorization: Bearer …` or, for WebSockets, the `token` query parameter. */
export function tokenFrom(authorization: string | null | undefined, url: URL): string | undefined {
  const bearer = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
  if (bearer?.[1]) return bearer[1];
  return url.searchParams.get('token') ?? undefined;
}
