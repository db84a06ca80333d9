import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { base64url, type CryptoKey, exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import {
  assertCanPublish,
  assertCanSubscribe,
  type Claims,
  CLOCK_TOLERANCE_S,
  createTokenVerifier,
  isExpired,
  OPEN_CLAIMS,
  ANONYMOUS_SOURCE,
  signToken,
  sourceFor,
  tokenFrom,
} from './auth.ts';
import { AnodeError, type ErrorCode } from './errors.ts';

const SECRET = 'a-development-secret-of-32-bytes!';
const nowSeconds = () => Math.floor(Date.now() / 1000);

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (error: unknown) => error instanceof AnodeError && error.code === code);
}

function throwsCode(fn: () => void, code: ErrorCode): void {
  assert.throws(fn, (error: unknown) => error instanceof AnodeError && error.code === code);
}

const b64 = (value: unknown) => base64url.encode(JSON.stringify(value));

async function keyPair(alg: 'EdDSA' | 'ES256'): Promise<{ privateKey: CryptoKey; pem: string }> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  return { privateKey, pem: await exportSPKI(publicKey) };
}

function signWith(privateKey: CryptoKey, alg: string, payload: Record<string, unknown>): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg }).setIssuedAt().setExpirationTime('1h').sign(privateKey);
}

describe('HS256 tokens', () => {
  test('a token from signToken verifies to its claims', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const token = await signToken(SECRET, { pub: ['prices.>'], sub: ['prices.*', 'news.>'], subject: 'feed' });
    const claims = await verify(token);
    assert.deepEqual(claims.pub, ['prices.>']);
    assert.deepEqual(claims.sub, ['prices.*', 'news.>']);
    assert.equal(claims.subject, 'feed');
    assert.equal(claims.src, undefined);
    assert.ok(claims.exp !== undefined && claims.exp > nowSeconds());
  });

  test('missing pub and sub claims grant nothing', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const claims = await verify(await signToken(SECRET, {}));
    assert.deepEqual([claims.pub, claims.sub], [[], []]);
  });

  test('a token signed with another secret is unauthorized', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    await rejectsWith(verify(await signToken(`${SECRET}-other`, { pub: ['>'] })), 'unauthorized');
  });

  test('missing, empty and garbage tokens are unauthorized', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    for (const token of [undefined, '', 'garbage', 'a.b.c', `${b64({ alg: 'HS256' })}.${b64({ pub: ['>'] })}.`]) {
      await rejectsWith(verify(token), 'unauthorized');
    }
  });

  test('an expired token is unauthorized', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const token = await signToken(SECRET, { pub: ['>'] }, nowSeconds() - 60);
    await assert.rejects(
      verify(token),
      (error: unknown) => error instanceof AnodeError && error.code === 'unauthorized' && /expired/.test(error.message),
    );
  });

  test('nbf and iat up to CLOCK_TOLERANCE_S ahead (an issuer clock slightly ahead) are accepted', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const ahead = nowSeconds() + 2;
    const token = await new SignJWT({ sub: 'tester', anode: { pub: ['t.>'], sub: [] } })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuedAt(ahead)
      .setNotBefore(ahead)
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(SECRET));
    assert.deepEqual((await verify(token)).pub, ['t.>']);
  });

  test('an nbf past the tolerance is unauthorized and says the token is not yet valid', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const token = await new SignJWT({ anode: { pub: ['>'], sub: [] } })
      .setProtectedHeader({ alg: 'HS256' })
      .setNotBefore(nowSeconds() + CLOCK_TOLERANCE_S + 60)
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(SECRET));
    await assert.rejects(verify(token), (error: unknown) => {
      assert.ok(error instanceof AnodeError && error.code === 'unauthorized');
      assert.match(error.message, /not yet valid \(nbf is 6\d s ahead.*at most 5 s ahead/);
      return true;
    });
  });

  test('exp gets no tolerance: a token a second past it is expired, as the later checks read it', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const token = await signToken(SECRET, { pub: ['>'] }, nowSeconds() - 1);
    await assert.rejects(
      verify(token),
      (error: unknown) => error instanceof AnodeError && error.code === 'unauthorized' && /expired/.test(error.message),
    );
  });

  test('other claim failures name the claim instead of a bare "invalid token"', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const token = await new SignJWT({ anode: { pub: ['>'], sub: [] }, iat: 'yesterday' } as unknown as JWTPayload)
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(SECRET));
    await assert.rejects(
      verify(token),
      (error: unknown) =>
        error instanceof AnodeError && error.code === 'unauthorized' && /claim `iat` not accepted/.test(error.message),
    );
  });

  test('an unsigned (alg none) token is unauthorized', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ anode: { pub: ['>'], sub: ['>'] }, exp: nowSeconds() + 3600 })}.`;
    await rejectsWith(verify(token), 'unauthorized');
  });

  test('claims whose pub or sub are not pattern arrays are unauthorized', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const key = new TextEncoder().encode(SECRET);
    const payloads: Record<string, unknown>[] = [
      { anode: { pub: 'prices.>' } },
      { anode: { sub: ['a..b'] } },
      { anode: { pub: [1] } },
      { anode: { sub: ['>.a'] } },
      { sub: ['>'] },
      { sub: 42 },
      { anode: 'all' },
    ];
    for (const payload of payloads) {
      const token = await new SignJWT(payload as Record<string, unknown>)
        .setProtectedHeader({ alg: 'HS256' })
        .setExpirationTime('1h')
        .sign(key);
      await rejectsWith(verify(token), 'unauthorized');
    }
  });

  test('sub is only the JWT subject; the grants are read from the anode claim', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const key = new TextEncoder().encode(SECRET);
    const token = await new SignJWT({ sub: 'user-42', anode: { pub: ['chat.>'], src: ['user-42.*'] } })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('1h')
      .sign(key);
    const claims = await verify(token);
    assert.deepEqual(claims.sub, []);
    assert.deepEqual(claims.pub, ['chat.>']);
    assert.deepEqual(claims.src, ['user-42.*']);
    assert.equal(claims.subject, 'user-42');
  });

  test('a token of the old shape (grants at the top level) is unauthorized and says where grants go', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const key = new TextEncoder().encode(SECRET);
    const token = await new SignJWT({ pub: ['>'], sub: ['>'] } as Record<string, unknown>)
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('1h')
      .sign(key);
    await assert.rejects(
      verify(token),
      (error: unknown) => error instanceof AnodeError && /`anode` claim/.test(error.message),
    );
  });

  test('old-shape grants beside a string subject are refused too, not read as no grants', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const key = new TextEncoder().encode(SECRET);
    const sign = (payload: Record<string, unknown>) =>
      new SignJWT(payload).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(key);
    for (const payload of [{ sub: 'ticker-42', pub: ['prices.>'] }, { pub: ['prices.>'] }, { src: ['ticker-42'] }]) {
      await assert.rejects(
        verify(await sign(payload)),
        (error: unknown) => error instanceof AnodeError && /`anode` claim/.test(error.message),
        JSON.stringify(payload),
      );
    }
    // Both shapes at once (a token for a fleet mid-upgrade): the grants under `anode` hold.
    const both = await verify(await sign({ sub: 'ticker-42', pub: ['>'], anode: { pub: ['prices.>'] } }));
    assert.deepEqual(both.pub, ['prices.>']);
  });

  test('anode.src entries must be source patterns', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    for (const src of [[''], ['a b'], ['>.a'], ['__proto__']]) {
      await rejectsWith(verify(await signToken(SECRET, { src })), 'unauthorized');
    }
  });
});

/** RFC 7519 4.1.3: a token whose `aud` does not name the recipient is refused. */
describe('token audience (aud)', () => {
  const refusedWith = (message: RegExp) => (error: unknown) =>
    error instanceof AnodeError && error.code === 'unauthorized' && message.test(error.message);

  test('with audiences configured, a token whose aud names one of them is accepted', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET, audience: ['anode', 'anode-staging'] });
    for (const audience of ['anode', 'anode-staging', ['billing', 'anode']]) {
      const claims = await verify(await signToken(SECRET, { pub: ['a.>'], audience }));
      assert.deepEqual(claims.pub, ['a.>'], JSON.stringify(audience));
    }
  });

  test('with audiences configured, a token for another service is refused: the audience does not match', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET, audience: ['anode'] });
    for (const audience of ['billing', ['billing', 'search'], '']) {
      await assert.rejects(
        verify(await signToken(SECRET, { pub: ['>'], audience })),
        refusedWith(/audience does not match.*names none/),
        JSON.stringify(audience),
      );
    }
  });

  test('with audiences configured, a token without aud is refused: the audience does not match', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET, audience: ['anode'] });
    await assert.rejects(
      verify(await signToken(SECRET, { pub: ['>'] })),
      refusedWith(/audience does not match.*no aud/),
    );
  });

  test('with no audience configured, a token that carries an aud is refused and the message names jwt_audience', async () => {
    for (const audience of [undefined, []]) {
      const verify = await createTokenVerifier({ hs256Secret: SECRET, audience });
      await assert.rejects(
        verify(await signToken(SECRET, { pub: ['>'], audience: 'billing' })),
        refusedWith(/"billing".*set jwt_audience/),
      );
    }
  });

  test('with no audience configured, a token without aud is accepted', async () => {
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    assert.deepEqual((await verify(await signToken(SECRET, { pub: ['>'] }))).pub, ['>']);
  });

  test('public-key tokens are held to the audience too', async () => {
    const { privateKey, pem } = await keyPair('EdDSA');
    const verify = await createTokenVerifier({ publicKeys: [pem], audience: ['anode'] });
    const forBilling = await signWith(privateKey, 'EdDSA', { aud: 'billing', anode: { pub: ['>'] } });
    await assert.rejects(verify(forBilling), refusedWith(/audience does not match/));
    const forUs = await signWith(privateKey, 'EdDSA', { aud: 'anode', anode: { pub: ['>'] } });
    assert.deepEqual((await verify(forUs)).pub, ['>']);
  });
});

describe('public-key tokens', () => {
  for (const alg of ['EdDSA', 'ES256'] as const) {
    test(`${alg} tokens verify against the configured public key`, async () => {
      const { privateKey, pem } = await keyPair(alg);
      const verify = await createTokenVerifier({ publicKeys: [pem] });
      const claims = await verify(await signWith(privateKey, alg, { anode: { pub: ['a.>'], sub: ['*'] } }));
      assert.deepEqual([claims.pub, claims.sub], [['a.>'], ['*']]);
    });

    test(`${alg} tokens signed by an unknown key are unauthorized`, async () => {
      const trusted = await keyPair(alg);
      const stranger = await keyPair(alg);
      const verify = await createTokenVerifier({ publicKeys: [trusted.pem] });
      await rejectsWith(verify(await signWith(stranger.privateKey, alg, { anode: { pub: ['>'] } })), 'unauthorized');
    });
  }

  test('a verifier with a secret and both key types accepts each kind of token', async () => {
    const ed = await keyPair('EdDSA');
    const es = await keyPair('ES256');
    const verify = await createTokenVerifier({ hs256Secret: SECRET, publicKeys: [ed.pem, es.pem] });
    assert.deepEqual((await verify(await signToken(SECRET, { pub: ['h'] }))).pub, ['h']);
    assert.deepEqual((await verify(await signWith(ed.privateKey, 'EdDSA', { anode: { pub: ['e'] } }))).pub, ['e']);
    assert.deepEqual((await verify(await signWith(es.privateKey, 'ES256', { anode: { pub: ['s'] } }))).pub, ['s']);
  });

  test('an HS256 token is refused by a verifier that only trusts public keys', async () => {
    const { pem } = await keyPair('EdDSA');
    const verify = await createTokenVerifier({ publicKeys: [pem] });
    await rejectsWith(verify(await signToken(SECRET, { pub: ['>'] })), 'unauthorized');
    // Nor may the public key itself be used as an HMAC secret (algorithm confusion).
    await rejectsWith(verify(await signToken(pem, { pub: ['>'] })), 'unauthorized');
  });

  test('an ES256 token is refused by a verifier that only trusts an Ed25519 key', async () => {
    const ed = await keyPair('EdDSA');
    const es = await keyPair('ES256');
    const verify = await createTokenVerifier({ publicKeys: [ed.pem] });
    await rejectsWith(verify(await signWith(es.privateKey, 'ES256', { anode: { pub: ['>'] } })), 'unauthorized');
  });

  test('a key that is not Ed25519 or P-256 PEM is refused at start', async () => {
    await assert.rejects(createTokenVerifier({ publicKeys: ['not a key'] }), TypeError);
  });
});

describe('auth off', () => {
  test('with no options, or no keys, the verifier grants everything to anyone', async () => {
    for (const options of [undefined, {}, { publicKeys: [] }, { hs256Secret: '' }]) {
      const verify = await createTokenVerifier(options);
      assert.equal(await verify(undefined), OPEN_CLAIMS);
      assert.equal(await verify('garbage'), OPEN_CLAIMS);
    }
  });

  test('OPEN_CLAIMS may publish to any topic and subscribe to any pattern', () => {
    const segment = fc.constantFrom('a', 'b', 'prices', '*');
    const pattern = fc
      .tuple(fc.array(segment, { minLength: 0, maxLength: 7 }), fc.constantFrom('a', '*', '>'))
      .map(([head, last]) => [...head, last].join('.'));
    fc.assert(
      fc.property(pattern, (p) => {
        assertCanSubscribe(OPEN_CLAIMS, p);
        if (!p.includes('*') && !p.includes('>')) assertCanPublish(OPEN_CLAIMS, p);
      }),
    );
  });
});

describe('permissions', () => {
  const claims: Claims = { pub: ['prices.>', 'chat.*'], sub: ['prices.>', 'news.*'] };

  test('publishing is allowed to topics a pub pattern matches and forbidden elsewhere', () => {
    assertCanPublish(claims, 'prices.btc');
    assertCanPublish(claims, 'prices.btc.usd');
    assertCanPublish(claims, 'chat.room1');
    for (const topic of ['prices', 'news.today', 'chat.room1.thread', 'chat']) {
      throwsCode(() => assertCanPublish(claims, topic), 'forbidden');
    }
  });

  test('subscribing is allowed only to patterns a sub pattern covers', () => {
    for (const pattern of ['prices.btc', 'prices.*', 'prices.*.usd', 'prices.>', 'news.today', 'news.*']) {
      assertCanSubscribe(claims, pattern);
    }
    for (const pattern of ['news.>', 'news.today.late', '>', '*.btc', 'prices', 'chat.room1']) {
      throwsCode(() => assertCanSubscribe(claims, pattern), 'forbidden');
    }
  });

  test('no grants forbid everything', () => {
    throwsCode(() => assertCanPublish({ pub: [], sub: [] }, 'a'), 'forbidden');
    throwsCode(() => assertCanSubscribe({ pub: [], sub: [] }, 'a'), 'forbidden');
  });

  test('claims past their exp are unauthorized even where the patterns allow', () => {
    const expired: Claims = { pub: ['>'], sub: ['>'], exp: nowSeconds() - 1 };
    throwsCode(() => assertCanPublish(expired, 'a'), 'unauthorized');
    throwsCode(() => assertCanSubscribe(expired, 'a'), 'unauthorized');
  });

  test('isExpired treats exp as seconds and the exp second itself as expired', () => {
    assert.equal(isExpired({ pub: [], sub: [] }), false);
    assert.equal(isExpired({ pub: [], sub: [], exp: 100 }, 99_999), false);
    assert.equal(isExpired({ pub: [], sub: [], exp: 100 }, 100_000), true);
  });
});

describe('sourceFor: the source a publish is stored under', () => {
  const token = (extra: Partial<Claims>): Claims => ({ pub: ['>'], sub: [], ...extra });

  test('a publish naming no source is stamped with the subject, or anonymous without one', () => {
    assert.equal(sourceFor(token({ subject: 'ticker-42' }), undefined), 'ticker-42');
    assert.equal(sourceFor(token({}), undefined), ANONYMOUS_SOURCE);
  });

  test('without anode.src a token may name only its subject', () => {
    assert.equal(sourceFor(token({ subject: 'ticker-42' }), 'ticker-42'), 'ticker-42');
    throwsCode(() => sourceFor(token({ subject: 'ticker-42' }), 'ticker-43'), 'forbidden');
    throwsCode(() => sourceFor(token({}), 'anyone'), 'forbidden');
  });

  test('anode.src patterns grant source names segment by segment', () => {
    const claims = token({ subject: 'svc', src: ['feeds.*', 'bots.>'] });
    for (const name of ['feeds.a', 'bots.x', 'bots.x.y']) assert.equal(sourceFor(claims, name), name);
    for (const name of ['svc', 'feeds', 'feeds.a.b', 'bots']) throwsCode(() => sourceFor(claims, name), 'forbidden');
  });

  test('a subject that is not a source name (empty, 5,000 characters) cannot become a source', () => {
    for (const subject of ['', 'x'.repeat(5_000), 'has space', '__proto__']) {
      throwsCode(() => sourceFor(token({ subject }), undefined), 'forbidden');
      throwsCode(() => sourceFor(token({ subject }), subject), 'bad_frame');
    }
  });

  test('auth off (OPEN_CLAIMS) may name any source', () => {
    assert.equal(sourceFor(OPEN_CLAIMS, 'any.name'), 'any.name');
    assert.equal(sourceFor(OPEN_CLAIMS, undefined), ANONYMOUS_SOURCE);
  });
});

describe('tokenFrom', () => {
  const url = (query = '') => new URL(`https://node.example/v1/ws${query}`);

  test('reads a bearer header, in any case, before the token query parameter', () => {
    assert.equal(tokenFrom('Bearer abc', url('?token=xyz'), true), 'abc');
    assert.equal(tokenFrom('bearer  abc', url(), true), 'abc');
    assert.equal(tokenFrom('Bearer abc', url(), false), 'abc');
  });

  test('falls back to the token query parameter on a WebSocket handshake, and to nothing', () => {
    assert.equal(tokenFrom(null, url('?token=xyz'), true), 'xyz');
    assert.equal(tokenFrom('Basic dXNlcg==', url('?token=xyz'), true), 'xyz');
    assert.equal(tokenFrom(undefined, url(), true), undefined);
    assert.equal(tokenFrom(undefined, url(), false), undefined);
  });

  test('refuses the token query parameter on a plain HTTP request', () => {
    assert.throws(
      () => tokenFrom(null, url('?token=xyz'), false),
      (error: Error & { code?: string }) => error.code === 'unauthorized' && /WebSocket URLs only/.test(error.message),
    );
  });
});
