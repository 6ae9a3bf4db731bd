import t from 'tap';
import {
  constants,
  createHmac,
  createSecretKey,
  generateKeyPairSync,
  sign as cryptoSign,
  type KeyObject,
} from 'node:crypto';
import {
  createJwtVerifier,
  JWT_ALGORITHMS,
  JWT_DEFAULTS,
  JwtError,
  jwtResolver,
  signJwt,
  verifyJwt,
  type JwtAlgorithm,
  type JwtErrorReason,
  type JwtVerifyOptions,
} from '../lib/hub/jwt.js';

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const pem = (key: KeyObject): string => key.export({ type: 'spki', format: 'pem' }) as string;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const NOW = 1_700_000_000_000; // ms
const clock = (ms = NOW) => () => ms;

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaPss = generateKeyPairSync('rsa-pss', { modulusLength: 2048 });
const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' });
const ed25519 = generateKeyPairSync('ed25519');
const ed448 = generateKeyPairSync('ed448');
const SECRET = 'a-test-secret-that-is-32-bytes!!';

/** The private and public key for each algorithm. */
const KEYS: Record<JwtAlgorithm, { sign: string | KeyObject; verify: JwtVerifyOptions }> = {
  HS256: { sign: SECRET, verify: { secret: SECRET } },
  HS384: { sign: SECRET, verify: { secret: SECRET } },
  HS512: { sign: SECRET, verify: { secret: SECRET } },
  RS256: { sign: rsa.privateKey, verify: { publicKey: pem(rsa.publicKey) } },
  RS384: { sign: rsa.privateKey, verify: { publicKey: pem(rsa.publicKey) } },
  RS512: { sign: rsa.privateKey, verify: { publicKey: pem(rsa.publicKey) } },
  PS256: { sign: rsa.privateKey, verify: { publicKey: pem(rsa.publicKey) } },
  PS384: { sign: rsaPss.privateKey, verify: { publicKey: pem(rsaPss.publicKey) } },
  PS512: { sign: rsa.privateKey, verify: { publicKey: rsa.publicKey } },
  ES256: { sign: p256.privateKey, verify: { publicKey: pem(p256.publicKey) } },
  ES384: { sign: p384.privateKey, verify: { publicKey: pem(p384.publicKey) } },
  ES512: { sign: p521.privateKey, verify: { publicKey: p521.publicKey } },
  EdDSA: { sign: ed25519.privateKey, verify: { publicKey: pem(ed25519.publicKey) } },
};

function reasonOf(fn: () => unknown): JwtErrorReason | 'no error' | string {
  try {
    fn();
    return 'no error';
  } catch (error) {
    return error instanceof JwtError ? error.reason : `not a JwtError: ${String(error)}`;
  }
}

t.test('every algorithm: sign, verify, header shape; tampering is caught', async (t) => {
  for (const alg of JWT_ALGORITHMS) {
    const { sign, verify } = KEYS[alg];
    const token = signJwt({ sub: 'u1', n: 1 }, sign, { algorithm: alg, now: clock(), expiresIn: 60 });
    const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
    t.same(header, { alg, typ: 'JWT' }, `${alg} header`);
    const payload = verifyJwt(token, { ...verify, now: clock() });
    t.same(payload, { sub: 'u1', n: 1, iat: NOW / 1000, exp: NOW / 1000 + 60 }, `${alg} round trip`);

    const [h, p, s] = token.split('.');
    const forged = `${h}.${b64({ sub: 'admin', n: 1, iat: NOW / 1000, exp: NOW / 1000 + 60 })}.${s}`;
    t.equal(reasonOf(() => verifyJwt(forged, { ...verify, now: clock() })), 'signature', `${alg} tampered payload`);
    const sig = Buffer.from(s, 'base64url');
    sig[sig.length >> 1] ^= 0x01;
    t.equal(reasonOf(() => verifyJwt(`${h}.${p}.${sig.toString('base64url')}`, { ...verify, now: clock() })), 'signature', `${alg} tampered signature`);
    t.equal(reasonOf(() => verifyJwt(`${h}.${p}.${sig.subarray(1).toString('base64url')}`, { ...verify, now: clock() })), 'signature', `${alg} short signature`);
  }
  // Ed448 is EdDSA too (RFC 8037).
  const token = signJwt({ sub: 'u' }, ed448.privateKey, { now: clock() });
  t.equal(verifyJwt(token, { publicKey: ed448.publicKey, now: clock() }).sub, 'u', 'Ed448');
  // A signature by another key of the same type fails.
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  t.equal(reasonOf(() => verifyJwt(signJwt({}, other.privateKey), { publicKey: p256.publicKey })), 'signature', 'other key');
  t.equal(reasonOf(() => verifyJwt(signJwt({}, 'another secret'), { secret: SECRET })), 'signature', 'other secret');
});

t.test('default algorithm follows the key; the verifier allows what the key allows', async (t) => {
  const algOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()).alg;
  t.equal(algOf(signJwt({}, SECRET)), 'HS256');
  t.equal(algOf(signJwt({}, rsa.privateKey)), 'RS256');
  t.equal(algOf(signJwt({}, rsaPss.privateKey)), 'PS256');
  t.equal(algOf(signJwt({}, p384.privateKey)), 'ES384');
  t.equal(algOf(signJwt({}, p521.privateKey)), 'ES512');
  t.equal(algOf(signJwt({}, ed25519.privateKey)), 'EdDSA');
  t.equal(algOf(signJwt({}, rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)), 'RS256', 'PEM private key');
  // Restricting algorithms.
  const only256 = createJwtVerifier({ publicKey: rsa.publicKey, algorithms: ['RS256'] });
  t.ok(only256(signJwt({}, rsa.privateKey, { algorithm: 'RS256' })));
  t.equal(reasonOf(() => only256(signJwt({}, rsa.privateKey, { algorithm: 'PS256' }))), 'algorithm');
  t.equal(reasonOf(() => only256(signJwt({}, rsa.privateKey, { algorithm: 'RS512' }))), 'algorithm');
  // An RSA-PSS key serves PS* only.
  t.throws(() => signJwt({}, rsaPss.privateKey, { algorithm: 'RS256' }), TypeError);
  t.throws(() => createJwtVerifier({ publicKey: rsaPss.publicKey, algorithms: ['RS256'] }), TypeError);
  // Certificates and PKCS#1 public keys are accepted as publicKey.
  const pkcs1 = rsa.publicKey.export({ type: 'pkcs1', format: 'pem' }) as string;
  t.ok(verifyJwt(signJwt({ sub: 'x' }, rsa.privateKey), { publicKey: pkcs1 }));
  const der = rsa.publicKey.export({ type: 'spki', format: 'der' });
  t.ok(verifyJwt(signJwt({ sub: 'x' }, rsa.privateKey), { publicKey: new Uint8Array(der) }), 'DER SPKI bytes');
  t.ok(verifyJwt(signJwt({ sub: 'x' }, rsa.privateKey), { publicKey: rsa.privateKey }), 'private KeyObject reduced to public');
  t.ok(verifyJwt(signJwt({ sub: 'x' }, Buffer.from(SECRET)), { secret: createSecretKey(Buffer.from(SECRET)) }), 'bytes and KeyObject secrets');
});

t.test('independent tokens: RFC 7515 A.1 and tokens built by hand with node:crypto', async (t) => {
  // RFC 7515 Appendix A.1 (HS256), key and token as printed in the RFC. Its exp is 1300819380.
  const rfc = 'eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9'
    + '.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ'
    + '.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
  const rfcKey = Buffer.from('AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow', 'base64url');
  t.same(verifyJwt(rfc, { secret: rfcKey, now: () => 1300819379_000 }), { iss: 'joe', exp: 1300819380, 'http://example.com/is_root': true });
  t.equal(reasonOf(() => verifyJwt(rfc, { secret: rfcKey, now: () => 1300819380_000 })), 'expired', 'expires exactly at exp');

  const input = `${b64({ alg: 'HS384', typ: 'JWT' })}.${b64({ sub: 'hand', iat: 1 })}`;
  const hs = `${input}.${createHmac('sha384', SECRET).update(input).digest('base64url')}`;
  t.equal(verifyJwt(hs, { secret: SECRET }).sub, 'hand', 'HS384 by hand');

  const cases: [JwtAlgorithm, string | null, KeyObject, object?][] = [
    ['RS256', 'sha256', rsa.privateKey],
    ['PS512', 'sha512', rsa.privateKey, { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 64 }],
    ['ES256', 'sha256', p256.privateKey, { dsaEncoding: 'ieee-p1363' }],
    ['ES512', 'sha512', p521.privateKey, { dsaEncoding: 'ieee-p1363' }],
    ['EdDSA', null, ed25519.privateKey],
  ];
  for (const [alg, hash, key, extra] of cases) {
    const data = `${b64({ alg })}.${b64({ sub: alg })}`;
    const sig = cryptoSign(hash, Buffer.from(data), { key, ...extra });
    const pub = KEYS[alg].verify;
    t.equal(verifyJwt(`${data}.${sig.toString('base64url')}`, pub).sub, alg, `${alg} by hand`);
  }
  // ES with a DER signature (not JWA's raw R||S) is refused.
  const data = `${b64({ alg: 'ES256' })}.${b64({ sub: 'der' })}`;
  const der = cryptoSign('sha256', Buffer.from(data), p256.privateKey);
  t.equal(reasonOf(() => verifyJwt(`${data}.${der.toString('base64url')}`, { publicKey: p256.publicKey })), 'signature', 'DER ECDSA signature');
});

t.test('exp, nbf, iat and leeway', async (t) => {
  const s = NOW / 1000;
  const check = (claims: Record<string, unknown>, options: Partial<JwtVerifyOptions> = {}, now = NOW) =>
    reasonOf(() => verifyJwt(signJwt({ iat: undefined, ...claims }, SECRET), { secret: SECRET, now: clock(now), ...options }));
  t.equal(check({ exp: s + 1 }), 'no error', 'exp in the future');
  t.equal(check({ exp: s }), 'expired', 'exp now');
  t.equal(check({ exp: s - 1 }), 'expired', 'exp past');
  t.equal(check({ exp: s - 1 }, { leeway: 2 }), 'no error', 'exp past within leeway');
  t.equal(check({ exp: s - 3 }, { leeway: 2 }), 'expired', 'exp past beyond leeway');
  t.equal(check({ nbf: s }), 'no error', 'nbf now');
  t.equal(check({ nbf: s + 1 }), 'not_yet_valid', 'nbf in the future');
  t.equal(check({ nbf: s + 1 }, { leeway: 1 }), 'no error', 'nbf within leeway');
  t.equal(check({ iat: s }), 'no error', 'iat now');
  t.equal(check({ iat: s + 10 }), 'not_yet_valid', 'iat in the future');
  t.equal(check({ iat: s + 10 }, { leeway: 10 }), 'no error', 'iat within leeway');
  t.equal(check({ iat: s + 11 }, { leeway: 10 }), 'not_yet_valid', 'iat beyond leeway');
  t.equal(check({}, { requireExp: true }), 'claims', 'requireExp without exp');
  t.equal(check({ exp: s + 5 }, { requireExp: true }), 'no error', 'requireExp with exp');
  t.equal(check({ exp: String(s + 5) }), 'claims', 'exp as a string');
  t.equal(check({ nbf: null }), 'claims', 'nbf null');
  t.equal(check({ sub: 42 }), 'claims', 'sub as a number');
  t.equal(check({ iss: ['a'] }), 'claims', 'iss as an array');
  t.equal(JWT_DEFAULTS.leeway, 0);
  t.equal(JWT_DEFAULTS.requireExp, false);
  // Date.now is the default clock.
  t.equal(reasonOf(() => verifyJwt(signJwt({}, SECRET, { expiresIn: -1 }), { secret: SECRET })), 'expired', 'real clock');
  t.equal(reasonOf(() => verifyJwt(signJwt({}, SECRET, { expiresIn: 60 }), { secret: SECRET })), 'no error', 'real clock, valid');
});

t.test('audience and issuer', async (t) => {
  const check = (claims: Record<string, unknown>, options: Partial<JwtVerifyOptions>) =>
    reasonOf(() => verifyJwt(signJwt(claims, SECRET), { secret: SECRET, ...options }));
  t.equal(check({ aud: 'hub' }, { audience: 'hub' }), 'no error');
  t.equal(check({ aud: ['api', 'hub'] }, { audience: 'hub' }), 'no error', 'aud array');
  t.equal(check({ aud: 'hub' }, { audience: ['other', 'hub'] }), 'no error', 'audience list');
  t.equal(check({ aud: 'api' }, { audience: 'hub' }), 'audience', 'wrong aud');
  t.equal(check({ aud: [] }, { audience: 'hub' }), 'audience', 'empty aud');
  t.equal(check({}, { audience: 'hub' }), 'audience', 'missing aud');
  t.equal(check({ aud: 'hub' }, {}), 'audience', 'aud present, no audience configured (RFC 7519 §4.1.3)');
  t.equal(check({ aud: 7 }, { audience: 'hub' }), 'claims', 'aud as a number');
  t.equal(check({ aud: ['hub', 7] }, { audience: 'hub' }), 'claims', 'aud array with a number');
  t.equal(check({ iss: 'auth' }, { issuer: 'auth' }), 'no error');
  t.equal(check({ iss: 'auth' }, { issuer: ['x', 'auth'] }), 'no error', 'issuer list');
  t.equal(check({ iss: 'evil' }, { issuer: 'auth' }), 'issuer', 'wrong iss');
  t.equal(check({}, { issuer: 'auth' }), 'issuer', 'missing iss');
  t.equal(check({ iss: 'anything' }, {}), 'no error', 'iss unchecked by default');
});

t.test('alg none in every spelling, and algorithm confusion', async (t) => {
  const payload = b64({ sub: 'admin' });
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    t.equal(reasonOf(() => verifyJwt(`${b64({ alg })}.${payload}.`, { secret: SECRET })), 'algorithm', `${alg}, empty signature`);
    t.equal(reasonOf(() => verifyJwt(`${b64({ alg })}.${payload}.AAAA`, { publicKey: rsa.publicKey })), 'algorithm', `${alg}, with a signature`);
  }
  t.throws(() => signJwt({}, SECRET, { algorithm: 'none' as JwtAlgorithm }), TypeError, 'cannot sign none');

  // The classic attack: HS256 "signed" with the server's RSA public key PEM as the HMAC secret.
  const publicPem = pem(rsa.publicKey);
  const data = `${b64({ alg: 'HS256', typ: 'JWT' })}.${payload}`;
  const confused = `${data}.${createHmac('sha256', publicPem).update(data).digest('base64url')}`;
  t.equal(reasonOf(() => verifyJwt(confused, { publicKey: publicPem })), 'algorithm', 'HS token against an RSA key');
  t.throws(() => verifyJwt(confused, { secret: publicPem }), { name: 'TypeError', message: /PEM/ }, 'PEM as HMAC secret refused');
  t.throws(() => verifyJwt(confused, { secret: Buffer.from(publicPem) }), TypeError, 'PEM bytes as HMAC secret refused');
  t.throws(() => verifyJwt(confused, { secret: rsa.publicKey as unknown as string }), TypeError, 'public KeyObject as secret refused');
  t.throws(() => verifyJwt(confused, { secret: createSecretKey(Buffer.from(publicPem)) }), TypeError, 'PEM in a secret KeyObject refused');
  t.throws(() => signJwt({}, publicPem), TypeError, 'cannot sign with a public PEM');
  t.throws(() => signJwt({}, rsa.publicKey), TypeError, 'cannot sign with a public KeyObject');
  t.throws(() => verifyJwt(confused, { publicKey: SECRET }), TypeError, 'an HMAC secret as publicKey refused');
  t.throws(() => verifyJwt(confused, { publicKey: createSecretKey(Buffer.from(SECRET)) }), TypeError, 'secret KeyObject as publicKey');
  t.throws(() => createJwtVerifier({ publicKey: rsa.publicKey, algorithms: ['HS256'] }), TypeError, 'HS256 allowed for an RSA key');

  // Other family / curve mismatches.
  t.equal(reasonOf(() => verifyJwt(signJwt({}, SECRET), { publicKey: rsa.publicKey })), 'algorithm', 'HS vs RSA');
  t.equal(reasonOf(() => verifyJwt(signJwt({}, rsa.privateKey), { secret: SECRET })), 'algorithm', 'RS vs secret');
  t.equal(reasonOf(() => verifyJwt(signJwt({}, p256.privateKey), { publicKey: p384.publicKey })), 'algorithm', 'ES256 vs P-384');
  t.equal(reasonOf(() => verifyJwt(signJwt({}, p256.privateKey), { publicKey: rsa.publicKey })), 'algorithm', 'ES256 vs RSA');
  t.equal(reasonOf(() => verifyJwt(signJwt({}, ed25519.privateKey), { publicKey: p256.publicKey })), 'algorithm', 'EdDSA vs EC');
  t.equal(reasonOf(() => verifyJwt(signJwt({}, rsa.privateKey), { publicKey: ed25519.publicKey })), 'algorithm', 'RS vs Ed25519');
  t.throws(() => createJwtVerifier({ publicKey: p384.publicKey, algorithms: ['ES256'] }), TypeError, 'ES256 with a P-384 key');
  t.throws(() => signJwt({}, p256.privateKey, { algorithm: 'ES384' }), TypeError, 'sign ES384 with P-256');
  // An ES256 header over a P-256 verifier, but a P-384-sized signature.
  const es = `${b64({ alg: 'ES256' })}.${payload}`;
  const long = cryptoSign('sha256', Buffer.from(es), { key: p384.privateKey, dsaEncoding: 'ieee-p1363' });
  t.equal(reasonOf(() => verifyJwt(`${es}.${long.toString('base64url')}`, { publicKey: p256.publicKey })), 'signature');
  t.equal(reasonOf(() => verifyJwt(`${b64({ alg: 'HS257' })}.${payload}.AAAA`, { secret: SECRET })), 'algorithm', 'unknown alg');
  t.equal(reasonOf(() => verifyJwt(`${b64({ alg: 'hs256' })}.${payload}.AAAA`, { secret: SECRET })), 'algorithm', 'alg is case-sensitive');
});

t.test('malformed tokens are refused as malformed', async (t) => {
  const good = signJwt({ sub: 'u' }, SECRET);
  const [h, p, s] = good.split('.');
  const sig = (data: string) => createHmac('sha256', SECRET).update(data).digest('base64url');
  const signed = (header: string, payload: string) => `${header}.${payload}.${sig(`${header}.${payload}`)}`;
  const cases: [string, unknown][] = [
    ['two parts', `${h}.${p}`],
    ['four parts', `${h}.${p}.${s}.x`],
    ['five parts (JWE)', 'a.b.c.d.e'],
    ['empty', ''],
    ['not a string', 42],
    ['null', null],
    ['standard base64 chars', `${h}.${p.slice(0, -1)}+.${s}`],
    ['padding', `${h}=.${p}.${s}`],
    ['whitespace', ` ${good}`],
    ['empty payload', `${h}..${s}`],
    ['empty signature', `${h}.${p}.`],
    // A 32-byte signature is 43 characters: the last one carries 2 unused bits, which must be zero.
    ['non-canonical base64url (unused bits set)', `${h}.${p}.${s.slice(0, -1)}${ALPHABET[ALPHABET.indexOf(s.at(-1)!) ^ 1]}`],
    ['header not JSON', signed(b64('{alg:HS256}'), p)],
    ['header JSON array', signed(b64(['HS256']), p)],
    ['header JSON string', signed(b64('"HS256"'), p)],
    ['header without alg', signed(b64({ typ: 'JWT' }), p)],
    ['alg not a string', signed(b64({ alg: ['HS256'] }), p)],
    ['typ not a string', signed(b64({ alg: 'HS256', typ: 1 }), p)],
    ['crit header', signed(b64({ alg: 'HS256', crit: ['exp'], exp: 1 }), p)],
    ['crit b64 (RFC 7797)', signed(b64({ alg: 'HS256', b64: false, crit: ['b64'] }), p)],
    ['payload JSON array', signed(h, b64([1, 2]))],
    ['payload JSON null', signed(h, b64('null'))],
    ['payload not JSON', signed(h, b64('sub=u'))],
    ['payload invalid UTF-8', signed(h, Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]).toString('base64url'))],
    ['huge token', signed(h, b64({ sub: 'u', pad: 'x'.repeat(9000) }))],
  ];
  for (const [name, token] of cases) {
    t.equal(reasonOf(() => verifyJwt(token as string, { secret: SECRET })), 'malformed', name);
  }
  t.equal(reasonOf(() => verifyJwt(good, { secret: SECRET, maxLength: 20 })), 'malformed', 'maxLength option');
  t.equal(JWT_DEFAULTS.maxLength, 8192);
  // Just under the limit passes.
  const big = signJwt({ sub: 'u', pad: 'x'.repeat(5000) }, SECRET);
  t.ok(big.length < 8192 && verifyJwt(big, { secret: SECRET }), 'a 7 KB token passes');
  // Prototype keys in the payload stay plain data.
  const proto = verifyJwt(signed(h, b64('{"sub":"u","__proto__":{"polluted":true}}')), { secret: SECRET });
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
  t.equal(proto.sub, 'u');
});

t.test('error messages never contain the token', async (t) => {
  const secretish = 'SENSITIVEabcdef';
  const tokens = [
    signJwt({ sub: secretish }, 'wrong secret'),
    signJwt({ sub: secretish, exp: 1 }, SECRET),
    signJwt({ sub: secretish, aud: secretish }, SECRET),
    `${b64({ alg: secretish })}.${b64({ sub: secretish })}.${b64(secretish)}`,
    `${b64({ alg: 'none' })}.${b64({ sub: secretish })}.`,
    `${secretish}.${secretish}`,
    `${b64(secretish)}.${b64({})}.${b64('x')}`,
  ];
  let count = 0;
  for (const token of tokens) {
    try {
      verifyJwt(token, { secret: SECRET });
      t.fail('accepted');
    } catch (error) {
      count++;
      const { message, stack } = error as Error;
      t.notOk(message.includes(token) || message.includes(secretish) || message.includes(token.split('.')[0]), message);
      t.notOk(String(stack).includes(secretish), 'stack clean');
    }
  }
  t.equal(count, tokens.length);
});

t.test('misuse is a TypeError at creation', async (t) => {
  t.throws(() => createJwtVerifier({}), TypeError, 'no key');
  t.throws(() => createJwtVerifier({ secret: SECRET, publicKey: rsa.publicKey }), TypeError, 'both keys');
  t.throws(() => createJwtVerifier({ secret: '' }), TypeError, 'empty secret');
  t.throws(() => createJwtVerifier({ secret: SECRET, algorithms: [] }), TypeError, 'empty algorithms');
  t.throws(() => createJwtVerifier({ secret: SECRET, algorithms: ['XX256' as JwtAlgorithm] }), TypeError, 'unknown algorithm');
  t.throws(() => createJwtVerifier({ secret: SECRET, leeway: -1 }), TypeError, 'negative leeway');
  t.throws(() => createJwtVerifier({ secret: SECRET, leeway: Number.NaN }), TypeError, 'NaN leeway');
  t.throws(() => createJwtVerifier({ secret: SECRET, audience: '' }), TypeError, 'empty audience');
  t.throws(() => createJwtVerifier({ secret: SECRET, issuer: [] }), TypeError, 'empty issuer list');
  t.throws(() => createJwtVerifier({ secret: SECRET, requireExp: 'yes' as unknown as boolean }), TypeError, 'requireExp type');
  t.throws(() => createJwtVerifier({ publicKey: 'not a pem' }), TypeError, 'non-PEM string');
  t.throws(() => createJwtVerifier({ publicKey: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' }), TypeError, 'broken PEM');
  const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
  t.throws(() => createJwtVerifier({ publicKey: small.publicKey }), { message: /2048/ }, 'RSA under 2048 bits');
  t.throws(() => signJwt({}, small.privateKey), { message: /2048/ }, 'signing with RSA under 2048 bits');
  t.throws(() => signJwt([] as never, SECRET), TypeError, 'array payload');
  t.throws(() => signJwt({}, SECRET, { expiresIn: Number.POSITIVE_INFINITY }), TypeError, 'infinite expiresIn');
  t.throws(() => signJwt({}, 42 as never), TypeError, 'number key');
  const kid = signJwt({}, SECRET, { kid: 'k1' });
  t.same(JSON.parse(Buffer.from(kid.split('.')[0], 'base64url').toString()), { alg: 'HS256', typ: 'JWT', kid: 'k1' }, 'kid header');
});

t.test('jwtResolver maps claims to a principal and never throws', async (t) => {
  const rejected: JwtErrorReason[] = [];
  const resolve = jwtResolver({ secret: SECRET, now: clock(), onReject: (error) => rejected.push(error.reason) });
  const s = NOW / 1000;
  const principal = resolve(signJwt({ sub: 'alice', tenants: ['prod', 'staging'], exp: s + 60, role: 'admin' }, SECRET, { now: clock() }));
  t.same(principal, {
    user: 'alice',
    tenants: ['prod', 'staging'],
    expiresAt: (s + 60) * 1000,
    claims: { sub: 'alice', tenants: ['prod', 'staging'], exp: s + 60, role: 'admin', iat: s },
  });
  t.ok(Object.isFrozen(principal!.tenants), 'tenants frozen');
  const anyTenant = resolve(signJwt({ sub: 'bob' }, SECRET, { now: clock() }));
  t.equal(anyTenant!.user, 'bob');
  t.equal(anyTenant!.tenants, undefined, 'no tenants claim: any tenant');
  t.equal(anyTenant!.expiresAt, undefined, 'no exp: no expiry');
  t.same(resolve(signJwt({ sub: 'c', tenants: [] }, SECRET, { now: clock() }))!.tenants, [], 'empty tenants: none');

  t.equal(resolve(signJwt({ sub: 'x', tenants: 'prod' }, SECRET, { now: clock() })), null, 'tenants as a string');
  t.equal(resolve(signJwt({ sub: 'x', tenants: ['prod', 1] }, SECRET, { now: clock() })), null, 'tenants with a number');
  t.equal(resolve(signJwt({ sub: 'x', tenants: { prod: true } }, SECRET, { now: clock() })), null, 'tenants as an object');
  t.equal(resolve(signJwt({}, SECRET, { now: clock() })), null, 'no sub');
  t.equal(resolve(signJwt({ sub: '' }, SECRET, { now: clock() })), null, 'empty sub');
  t.equal(resolve(signJwt({ sub: 'x', exp: s - 1 }, SECRET)), null, 'expired');
  t.equal(resolve('garbage'), null, 'garbage');
  t.equal(resolve(undefined as unknown as string), null, 'undefined');
  t.equal(resolve({ toString() { throw new Error('boom'); } } as unknown as string), null, 'hostile object');
  t.same(rejected, ['claims', 'claims', 'claims', 'claims', 'claims', 'expired', 'malformed', 'malformed', 'malformed']);

  // A throwing onReject does not make the resolver throw.
  const noisy = jwtResolver({ secret: SECRET, onReject: () => { throw new Error('observer failed'); } });
  t.equal(noisy('bad'), null);
  // Leeway extends expiresAt so the hub does not close a connection the verifier just accepted.
  const lenient = jwtResolver({ secret: SECRET, leeway: 30, now: clock() });
  t.equal(lenient(signJwt({ sub: 'x', exp: s - 10 }, SECRET, { now: clock() }))!.expiresAt, (s + 20) * 1000);
  t.throws(() => jwtResolver({ secret: SECRET, onReject: 'log' as never }), TypeError);
  t.throws(() => jwtResolver({}), TypeError);
});
