import { importSPKI, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import { z } from 'zod';
import { isSourceName, isSourcePattern, SOURCE_NAME_RULE } from './names.ts';
import { BadFrameError, ForbiddenError, UnauthorizedError } from './errors.ts';
import { assertPattern, covers, matches } from './topics.ts';

/**
 * Auth claims (PROTOCOL.md "Auth"). Registered JWT claims keep their meaning: `sub` is the
 * subject (who holds the token), `exp` ends the grant, `aud` names the services it is for (RFC
 * 7519 4.1.3: a recipient not named refuses it). aNode's grants live under one namespaced
 * claim, `anode`: `pub` and `sub` are topic patterns the holder may publish to and subscribe to,
 * `src` source-name patterns it may publish as (absent: only its subject). Verified with HS256
 * (shared secret) or EdDSA/ES256 (public keys) by `jose`, which runs unchanged in Node, Workers
 * and browsers. Tokens of the old shape (grants at the top level) are refused, not guessed at.
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
const sourcePatternList = z.array(z.string().refine(isSourcePattern, 'not a source pattern'));

export const claimsSchema = z
  .object({
    sub: z.string().optional(),
    exp: z.number().optional(),
    anode: z
      .object({ pub: patternList.default([]), sub: patternList.default([]), src: sourcePatternList.optional() })
      .default({ pub: [], sub: [] }),
  })
  .transform(({ sub, exp, anode }) => ({
    pub: anode.pub,
    sub: anode.sub,
    ...(anode.src === undefined ? {} : { src: anode.src }),
    ...(sub === undefined ? {} : { subject: sub }),
    ...(exp === undefined ? {} : { exp }),
  }));
/**
 * Verified claims, flattened: `pub`/`sub` are the `anode` grants (topic patterns), `src` the
 * source patterns, `subject` the JWT `sub`.
 */
export interface Claims {
  pub: string[];
  sub: string[];
  src?: string[];
  subject?: string;
  exp?: number;
}

/** What a node with auth off grants everyone (any source name that is not reserved). */
export const OPEN_CLAIMS: Claims = { pub: ['>'], sub: ['>'], src: ['>'] };

/** The source of a publish that names none and whose token has no subject. */
export const ANONYMOUS_SOURCE = 'anonymous';

export interface AuthOptions {
  /** HS256 shared secret (at least 32 bytes). */
  hs256Secret?: string;
  /** PEM (SPKI) public keys for EdDSA (Ed25519) or ES256 tokens. */
  publicKeys?: string[];
  /**
   * This node's audiences: a token must carry an `aud` naming one of them. None: a token that
   * carries an `aud` is refused (it names a recipient, and this node cannot tell it is one).
   */
  audience?: string[];
}

export type TokenVerifier = (token: string | undefined) => Promise<Claims>;

/**
 * How far ahead of this node's clock a token's `nbf` may be (seconds): an issuer whose clock runs
 * a little ahead mints tokens not yet valid here for a moment, and the client allows the same 5 s
 * for drift on `exp`. `exp` itself is held exactly: every later check (isExpired, a socket's close
 * at expiry) reads it by this node's clock, and a token let in past it would be refused at once.
 */
export const CLOCK_TOLERANCE_S = 5;

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
  const audience = options.audience?.length ? options.audience : undefined;

  return async (token) => {
    if (!token) throw new UnauthorizedError('a bearer token is required');
    let lastError: unknown;
    for (const { key, algorithms } of keys) {
      try {
        const { payload } = await jwtVerify(token, key, {
          algorithms,
          clockTolerance: CLOCK_TOLERANCE_S,
          ...(audience ? { audience } : {}),
        });
        if (!audience && payload.aud !== undefined) {
          throw new UnauthorizedError(
            `the token names an audience (aud ${JSON.stringify(payload.aud)}) and this node has none configured: set jwt_audience (JWT_AUDIENCE on an edge) to the audience your issuer puts in its tokens`,
          );
        }
        const claims = claimsSchema.safeParse(payload);
        // Grants at the top level and none under `anode`: an old-shape token, which would otherwise
        // pass with no grants and be `forbidden` everywhere without saying why. (Both shapes at once,
        // as tokens made for a mixed fleet during an upgrade carry, are read from `anode`.)
        const oldShape =
          payload.anode === undefined &&
          (Array.isArray(payload.pub) || Array.isArray(payload.sub) || Array.isArray(payload.src));
        if (!claims.success || oldShape) {
          const old = oldShape || Array.isArray(payload.pub) || Array.isArray(payload.sub);
          throw new UnauthorizedError(
            old
              ? 'token grants must be under the `anode` claim ({"sub": subject, "anode": {"pub", "sub", "src"}})'
              : 'token claims: `sub` must be a string and `anode.pub`/`anode.sub` topic pattern arrays',
          );
        }
        if (isExpired(claims.data)) throw new UnauthorizedError('token expired');
        return claims.data;
      } catch (error) {
        lastError = error;
        if (error instanceof UnauthorizedError) throw error;
        const { code, claim, reason } = error as { code?: string; claim?: string; reason?: string };
        if (code === 'ERR_JWT_EXPIRED') throw new UnauthorizedError('token expired');
        if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim === 'aud') {
          const why = reason === 'missing' ? 'it has no aud' : 'its aud names none of them';
          throw new UnauthorizedError(
            `the token's audience does not match: this node takes tokens for ${(audience ?? []).join(', ')}, and ${why}`,
          );
        }
        // The signature held with this key: a claim is what is off, and saying which lets the
        // issuer fix it (a bare "invalid token" reads as a wrong key or secret).
        if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim === 'nbf' && reason === 'check_failed') {
          const { nbf } = (error as { payload?: { nbf?: number } }).payload ?? {};
          const ahead =
            typeof nbf === 'number'
              ? ` (nbf is ${nbf - Math.floor(Date.now() / 1000)} s ahead of this node's clock)`
              : '';
          throw new UnauthorizedError(
            `token not yet valid${ahead}: its nbf may be at most ${CLOCK_TOLERANCE_S} s ahead; check the issuer's clock`,
          );
        }
        if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') {
          const which = claim && claim !== 'unspecified' ? `token claim \`${claim}\`` : 'token claims';
          throw new UnauthorizedError(`${which} not accepted: ${(error as Error).message}`);
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

/**
 * The source a publish is stored under (PROTOCOL.md "Auth"): the one it names, if the token's
 * `anode.src` patterns (absent: only its subject) allow it, else `forbidden`; without one, the
 * token's subject, which must then be a valid source name. Reserved names are the node's to check.
 */
export function sourceFor(claims: Pick<Claims, 'subject' | 'src'>, requested: string | undefined): string {
  if (requested === undefined) {
    if (claims.subject === undefined) return ANONYMOUS_SOURCE;
    if (!isSourceName(claims.subject)) {
      throw new ForbiddenError(
        `the token subject is not a valid source name (${SOURCE_NAME_RULE}); publish with a \`source\` the token grants`,
      );
    }
    return claims.subject;
  }
  if (!isSourceName(requested)) throw new BadFrameError('source: not a source name');
  const allowed = claims.src ?? (claims.subject === undefined ? [] : [claims.subject]);
  if (!allowed.some((pattern) => pattern === requested || matches(pattern, requested))) {
    throw new ForbiddenError(`not allowed to publish as source ${requested}`);
  }
  return requested;
}

export interface TokenGrants {
  /** JWT `sub`: who holds the token; the source of its publishes that name none. */
  subject?: string;
  pub?: string[];
  sub?: string[];
  src?: string[];
  /** JWT `aud`: the services the token is for (a node with an audience configured takes only those naming it). */
  audience?: string | string[];
}

/** Mint an HS256 token (development and tests; production tokens come from your issuer). */
export async function signToken(
  secret: string,
  grants: TokenGrants,
  expiresIn: string | number = '1h',
): Promise<string> {
  const anode = { pub: grants.pub ?? [], sub: grants.sub ?? [], ...(grants.src ? { src: grants.src } : {}) };
  const payload: JWTPayload = {
    ...(grants.subject === undefined ? {} : { sub: grants.subject }),
    ...(grants.audience === undefined ? {} : { aud: grants.audience }),
    anode,
  };
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(secret));
}

/**
 * The token from `Authorization: Bearer …` or, for a WebSocket handshake (`upgrade`), the `token`
 * query parameter (browsers cannot set headers on one). A plain HTTP request with `?token=` and
 * no bearer is refused: PROTOCOL.md allows it on WebSocket URLs only, and a token in a request URL
 * ends up in proxies' access logs and Referer headers.
 */
export function tokenFrom(authorization: string | null | undefined, url: URL, upgrade: boolean): string | undefined {
  const bearer = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
  if (bearer?.[1]) return bearer[1];
  const query = url.searchParams.get('token') ?? undefined;
  if (query !== undefined && !upgrade) {
    throw new UnauthorizedError(
      '?token= is taken on WebSocket URLs only (a URL ends up in access logs): send Authorization: Bearer <token>',
    );
  }
  return query;
}
