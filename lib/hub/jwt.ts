/**
 * A JSON Web Token verifier and signer (RFC 7519, JWS compact serialization RFC 7515, algorithms RFC 7518 and
 * RFC 8037) built on `node:crypto` alone.
 *
 * What it accepts, and why:
 * - Algorithms `HS256/384/512`, `RS256/384/512`, `PS256/384/512`, `ES256/384/512` and `EdDSA` (Ed25519, Ed448).
 *   The algorithm named in the token's header must be one the configured key can honestly serve: an HMAC secret
 *   serves only `HS*`, an RSA key `RS*`/`PS*`, an RSA-PSS key `PS*`, an EC key only the `ES*` of its curve
 *   (P-256 → ES256, P-384 → ES384, P-521 → ES512), an Ed25519/Ed448 key only `EdDSA`. This is what defeats
 *   algorithm confusion (an `HS256` token "signed" with the server's public RSA key as HMAC secret), and a public
 *   key in PEM form passed as an HMAC secret is refused outright.
 * - `alg: none` is refused in any spelling; so is any `crit` header (no JWS extension is implemented) and JWE
 *   (five-part) tokens. Header parameters that point at keys (`jwk`, `jku`, `x5u`, `x5c`, `kid`) are ignored:
 *   keys come from the options only, never from the token.
 * - Strict decoding: each part must be canonical unpadded base64url (RFC 7515 §2), header and payload JSON
 *   objects, the whole token at most {@link JWT_DEFAULTS.maxLength} characters.
 * - HMAC signatures are compared in constant time.
 * - Claims: `exp`, `nbf`, `iat` (a token issued in the future is refused), `aud`, `iss`, with a leeway. As
 *   RFC 7519 §4.1.3 requires, a token that carries `aud` is refused unless the verifier names an audience it
 *   contains.
 *
 * Errors are {@link JwtError}s carrying a machine-readable `reason`; their messages never contain the token or
 * any value taken from it, so they can be logged.
 *
 * @module
 */

import {
  constants,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  KeyObject,
  sign as cryptoSign,
  timingSafeEqual,
  verify as cryptoVerify,
  type SignKeyObjectInput,
  type VerifyKeyObjectInput,
} from 'node:crypto';
import type { Principal } from './auth.js';

/** The JWS algorithms supported (RFC 7518 §3.1, RFC 8037 §3.1). */
export type JwtAlgorithm =
  | 'HS256' | 'HS384' | 'HS512'
  | 'RS256' | 'RS384' | 'RS512'
  | 'PS256' | 'PS384' | 'PS512'
  | 'ES256' | 'ES384' | 'ES512'
  | 'EdDSA';

/** Every supported algorithm, in a stable order. */
export const JWT_ALGORITHMS: readonly JwtAlgorithm[] = Object.freeze([
  'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
] as const);

/** Defaults of {@link JwtVerifyOptions}. */
export const JWT_DEFAULTS = Object.freeze({
  /** Seconds of clock skew tolerated on `exp`, `nbf` and `iat`: 0, as in PyJWT, jose and jsonwebtoken. */
  leeway: 0,
  /** Whether a token without `exp` is refused: false (a token without `exp` never expires, as in Centrifugo). */
  requireExp: false,
  /**
   * Longest token accepted, in characters: 8,192 (8 KiB). Real access tokens are well under 2 KiB; the limit keeps
   * a peer from making the hub decode and hash megabytes per handshake.
   */
  maxLength: 8192,
});

/** Smallest RSA modulus accepted, in bits (RFC 7518 §3.3 and §3.5: "2048 bits or larger MUST be used"). */
const MIN_RSA_BITS = 2048;

/** Options of {@link createJwtVerifier} and {@link verifyJwt}. Exactly one of `secret` and `publicKey` is required. */
export interface JwtVerifyOptions {
  /**
   * The HMAC key for `HS*` tokens: a string (its UTF-8 bytes), bytes, or a secret `KeyObject`. A PEM block is
   * refused (that is the algorithm-confusion attack). Use at least 32 random bytes for HS256 (RFC 7518 §3.2).
   */
  secret?: string | Uint8Array | KeyObject;
  /**
   * The public key for `RS*`, `PS*`, `ES*` and `EdDSA` tokens: PEM text (SPKI `PUBLIC KEY`, PKCS#1 `RSA PUBLIC KEY`
   * or an X.509 certificate), DER SPKI bytes, or a `KeyObject` (a private key is reduced to its public half).
   * RSA keys must have at least 2,048 bits.
   */
  publicKey?: string | Uint8Array | KeyObject;
  /**
   * Algorithms accepted. Default: every algorithm the key type allows (see the module notes). Naming an
   * algorithm the key cannot serve is a `TypeError` when the verifier is created.
   */
  algorithms?: readonly JwtAlgorithm[];
  /** Accepted audiences: the token's `aud` (a string or an array) must contain one. Default: none configured. */
  audience?: string | readonly string[];
  /** Accepted issuers: the token's `iss` must be one of them. Default: `iss` is not checked. */
  issuer?: string | readonly string[];
  /** Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds. Default: 0. */
  leeway?: number;
  /** Refuse tokens without an `exp` claim. Default: false. Recommended in production. */
  requireExp?: boolean;
  /** Longest token accepted, in characters. Default: 8,192. */
  maxLength?: number;
  /** The clock, in milliseconds since the epoch. Default: `Date.now`. For tests. */
  now?: () => number;
}

/** Why a token was refused. */
export type JwtErrorReason =
  | 'malformed'
  | 'algorithm'
  | 'signature'
  | 'expired'
  | 'not_yet_valid'
  | 'audience'
  | 'issuer'
  | 'claims';

/** A refused token. The message never contains the token nor any value read from it. */
export class JwtError extends Error {
  /** Why: `malformed` (encoding, JSON, size, `crit`), `algorithm` (`none`, not allowed, wrong for the key),
   *  `signature`, `expired`, `not_yet_valid` (`nbf` or `iat` in the future), `audience`, `issuer`, `claims`
   *  (a registered claim with the wrong type, or a required claim missing). */
  readonly reason: JwtErrorReason;

  constructor(reason: JwtErrorReason, message: string) {
    super(message);
    this.name = 'JwtError';
    this.reason = reason;
  }
}

/** The claims of a verified token. Registered claims are type-checked; the rest are returned as sent. */
export interface JwtPayload {
  sub?: string;
  /** Expiry, seconds since the epoch. */
  exp?: number;
  /** Not before, seconds since the epoch. */
  nbf?: number;
  /** Issued at, seconds since the epoch. */
  iat?: number;
  aud?: string | string[];
  iss?: string;
  [claim: string]: unknown;
}

/** Options of {@link signJwt}. */
export interface JwtSignOptions {
  /** Algorithm. Default: from the key — HS256 for a secret, RS256 (RSA), PS256 (RSA-PSS), ES256/384/512 by curve, EdDSA. */
  algorithm?: JwtAlgorithm;
  /** Sets `exp` to `iat` + this many seconds. Default: no `exp` (unless the payload has one). */
  expiresIn?: number;
  /** A `kid` header parameter. Default: none. */
  kid?: string;
  /** The clock for `iat`, in milliseconds since the epoch. Default: `Date.now`. */
  now?: () => number;
}

/** Options of {@link jwtResolver}. */
export interface JwtResolverOptions extends JwtVerifyOptions {
  /** Called with each refusal (for metrics and logs; the error never contains the token). Default: none. */
  onReject?: (error: JwtError) => void;
}

type Family = 'HS' | 'RS' | 'PS' | 'ES' | 'EdDSA';

interface AlgorithmInfo {
  family: Family;
  /** Hash for HMAC, RSA and ECDSA; null for EdDSA. */
  hash: 'sha256' | 'sha384' | 'sha512' | null;
  /** For ES*: the curve and the length of the raw R||S signature. */
  curve?: string;
  signatureLength?: number;
}

const ALGORITHMS: Record<JwtAlgorithm, AlgorithmInfo> = {
  HS256: { family: 'HS', hash: 'sha256' },
  HS384: { family: 'HS', hash: 'sha384' },
  HS512: { family: 'HS', hash: 'sha512' },
  RS256: { family: 'RS', hash: 'sha256' },
  RS384: { family: 'RS', hash: 'sha384' },
  RS512: { family: 'RS', hash: 'sha512' },
  PS256: { family: 'PS', hash: 'sha256' },
  PS384: { family: 'PS', hash: 'sha384' },
  PS512: { family: 'PS', hash: 'sha512' },
  ES256: { family: 'ES', hash: 'sha256', curve: 'prime256v1', signatureLength: 64 },
  ES384: { family: 'ES', hash: 'sha384', curve: 'secp384r1', signatureLength: 96 },
  ES512: { family: 'ES', hash: 'sha512', curve: 'secp521r1', signatureLength: 132 },
  EdDSA: { family: 'EdDSA', hash: null },
};

function isAlgorithm(name: unknown): name is JwtAlgorithm {
  return typeof name === 'string' && Object.hasOwn(ALGORITHMS, name);
}

const PEM_BLOCK = /-----BEGIN [A-Z0-9 ]+-----/;

/** Algorithms a key can serve, given its type (and curve). */
function algorithmsForKey(key: KeyObject): JwtAlgorithm[] {
  if (key.type === 'secret') return ['HS256', 'HS384', 'HS512'];
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return (['ES256', 'ES384', 'ES512'] as const).filter((alg) => ALGORITHMS[alg].curve === curve);
    }
    case 'ed25519':
    case 'ed448':
      return ['EdDSA'];
    default:
      return [];
  }
}

function describeKey(key: KeyObject): string {
  if (key.type === 'secret') return 'an HMAC secret';
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return `a ${key.type} ${key.asymmetricKeyType}${curve ? ` (${curve})` : ''} key`;
}

function checkRsaSize(key: KeyObject): void {
  if (key.asymmetricKeyType !== 'rsa' && key.asymmetricKeyType !== 'rsa-pss') return;
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) {
    throw new TypeError(`RSA keys must have at least ${MIN_RSA_BITS} bits (RFC 7518 §3.3); this one has ${bits}`);
  }
}

/** An HMAC secret as a KeyObject; refuses empty secrets and PEM blocks (algorithm confusion). */
function toSecretKey(secret: unknown, what: string): KeyObject {
  if (secret instanceof KeyObject) {
    if (secret.type !== 'secret') {
      throw new TypeError(`${what} must be a secret KeyObject, got ${describeKey(secret)}; pass asymmetric keys as publicKey`);
    }
    if (secret.symmetricKeySize === 0) throw new TypeError(`${what} must not be empty`);
    if (PEM_BLOCK.test(secret.export().toString('latin1'))) {
      throw new TypeError(`${what} holds a PEM key; an asymmetric key must be passed as publicKey, never as an HMAC secret`);
    }
    return secret;
  }
  let bytes: Buffer;
  if (typeof secret === 'string') bytes = Buffer.from(secret, 'utf8');
  else if (secret instanceof Uint8Array) bytes = Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength);
  else throw new TypeError(`${what} must be a string, a Uint8Array or a secret KeyObject`);
  if (bytes.length === 0) throw new TypeError(`${what} must not be empty`);
  if (PEM_BLOCK.test(bytes.toString('latin1'))) {
    throw new TypeError(`${what} looks like a PEM key; an asymmetric key must be passed as publicKey, never as an HMAC secret`);
  }
  return createSecretKey(Buffer.from(bytes));
}

/** A public key as a KeyObject (private keys are reduced to their public half). */
function toPublicKey(key: unknown): KeyObject {
  let result: KeyObject;
  if (key instanceof KeyObject) {
    if (key.type === 'secret') throw new TypeError('publicKey must be an asymmetric key; pass HMAC keys as secret');
    result = key.type === 'private' ? createPublicKey(key) : key;
  } else if (typeof key === 'string' || key instanceof Uint8Array) {
    const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key.buffer, key.byteOffset, key.byteLength);
    const pem = PEM_BLOCK.test(bytes.toString('latin1'));
    if (!pem && typeof key === 'string') {
      throw new TypeError('publicKey must be PEM text (SPKI, PKCS#1 or a certificate), DER SPKI bytes or a KeyObject; HMAC keys go in secret');
    }
    try {
      result = pem ? createPublicKey(bytes) : createPublicKey({ key: bytes, format: 'der', type: 'spki' });
    } catch (error) {
      throw new TypeError(`publicKey could not be read: ${(error as Error).message}`);
    }
  } else {
    throw new TypeError('publicKey must be a PEM string, DER SPKI bytes or a KeyObject');
  }
  checkRsaSize(result);
  return result;
}

function checkStringList(value: unknown, name: string): readonly string[] | undefined {
  if (value === undefined) return undefined;
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0 || !list.every((item) => typeof item === 'string' && item.length > 0)) {
    throw new TypeError(`${name} must be a non-empty string or a non-empty array of non-empty strings`);
  }
  return list;
}

function checkNonNegative(value: unknown, name: string, fallback: number, integer = false): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw new TypeError(`${name} must be a finite number >= 0${integer ? ' (an integer)' : ''}`);
  }
  return value;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** Decodes one part; canonical unpadded base64url only (so a token has exactly one valid spelling). */
function decodePart(part: string, name: string): Buffer {
  if (!BASE64URL.test(part)) throw new JwtError('malformed', `the ${name} is not base64url (RFC 7515 §2)`);
  const bytes = Buffer.from(part, 'base64url');
  if (bytes.toString('base64url') !== part) throw new JwtError('malformed', `the ${name} is not canonical base64url`);
  return bytes;
}

function parseObject(bytes: Buffer, name: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new JwtError('malformed', `the ${name} is not UTF-8 JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new JwtError('malformed', `the ${name} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function hmac(hash: string, key: KeyObject, data: string): Buffer {
  return createHmac(hash, key).update(data).digest();
}

function signatureKey(info: AlgorithmInfo, key: KeyObject): SignKeyObjectInput & VerifyKeyObjectInput {
  if (info.family === 'PS') {
    return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST };
  }
  if (info.family === 'ES') return { key, dsaEncoding: 'ieee-p1363' };
  return { key };
}

function checkSignature(alg: JwtAlgorithm, key: KeyObject, input: string, signature: Buffer): boolean {
  const info = ALGORITHMS[alg];
  if (info.family === 'HS') {
    const expected = hmac(info.hash!, key, input);
    // The length is public (it follows from the algorithm); the bytes are compared in constant time.
    return signature.length === expected.length && timingSafeEqual(signature, expected);
  }
  if (info.signatureLength !== undefined && signature.length !== info.signatureLength) return false;
  try {
    return cryptoVerify(info.hash, Buffer.from(input, 'latin1'), signatureKey(info, key), signature);
  } catch {
    return false;
  }
}

function checkNumericDate(payload: Record<string, unknown>, claim: 'exp' | 'nbf' | 'iat'): number | undefined {
  const value = payload[claim];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new JwtError('claims', `the ${claim} claim is not a NumericDate (RFC 7519 §2)`);
  }
  return value;
}

/**
 * Creates a verifier bound to one key and one set of rules; the key is parsed once. Misuse (no key, both keys, an
 * algorithm the key cannot serve, bad option types) throws a `TypeError` here; the returned function throws only
 * {@link JwtError}.
 *
 * @returns `(token) => payload`, throwing a {@link JwtError} when the token is refused.
 */
export function createJwtVerifier(options: JwtVerifyOptions): (token: string) => JwtPayload {
  if (typeof options !== 'object' || options === null) throw new TypeError('createJwtVerifier needs an options object');
  const hasSecret = options.secret !== undefined;
  const hasPublic = options.publicKey !== undefined;
  if (hasSecret === hasPublic) throw new TypeError('pass exactly one of secret (HMAC) and publicKey (RSA, EC, Ed25519)');
  const key = hasSecret ? toSecretKey(options.secret, 'secret') : toPublicKey(options.publicKey);
  const keyAlgorithms = algorithmsForKey(key);
  if (keyAlgorithms.length === 0) throw new TypeError(`${describeKey(key)} serves no supported JWT algorithm`);
  let allowed: readonly JwtAlgorithm[] = keyAlgorithms;
  if (options.algorithms !== undefined) {
    if (!Array.isArray(options.algorithms) || options.algorithms.length === 0) {
      throw new TypeError('algorithms must be a non-empty array');
    }
    for (const alg of options.algorithms) {
      if (!isAlgorithm(alg)) throw new TypeError(`unknown JWT algorithm ${JSON.stringify(alg)}; supported: ${JWT_ALGORITHMS.join(', ')}`);
      if (!keyAlgorithms.includes(alg)) throw new TypeError(`${alg} cannot be verified with ${describeKey(key)}`);
    }
    allowed = [...options.algorithms];
  }
  const audience = checkStringList(options.audience, 'audience');
  const issuer = checkStringList(options.issuer, 'issuer');
  const leeway = checkNonNegative(options.leeway, 'leeway', JWT_DEFAULTS.leeway);
  const maxLength = checkNonNegative(options.maxLength, 'maxLength', JWT_DEFAULTS.maxLength, true);
  if (options.requireExp !== undefined && typeof options.requireExp !== 'boolean') throw new TypeError('requireExp must be a boolean');
  const requireExp = options.requireExp ?? JWT_DEFAULTS.requireExp;
  if (options.now !== undefined && typeof options.now !== 'function') throw new TypeError('now must be a function returning milliseconds');
  const now = options.now ?? Date.now;

  return (token: string): JwtPayload => {
    if (typeof token !== 'string') throw new JwtError('malformed', 'the token is not a string');
    if (token.length > maxLength) throw new JwtError('malformed', `the token is longer than ${maxLength} characters`);
    const parts = token.split('.');
    if (parts.length === 5) throw new JwtError('malformed', 'encrypted tokens (JWE) are not supported');
    if (parts.length !== 3) throw new JwtError('malformed', 'a JWT has three dot-separated parts');
    const header = parseObject(decodePart(parts[0], 'header'), 'header');

    const alg = header.alg;
    if (typeof alg !== 'string') throw new JwtError('malformed', 'the header has no alg string');
    if (alg.toLowerCase() === 'none') throw new JwtError('algorithm', 'unsigned tokens (alg none) are refused');
    if (!isAlgorithm(alg) || !allowed.includes(alg)) throw new JwtError('algorithm', 'the token\'s algorithm is not allowed for this key');
    if (header.crit !== undefined) throw new JwtError('malformed', 'the token has critical header parameters this verifier does not implement');
    if (header.typ !== undefined && typeof header.typ !== 'string') throw new JwtError('malformed', 'the typ header is not a string');

    const payloadBytes = decodePart(parts[1], 'payload');
    const signature = decodePart(parts[2], 'signature');
    if (!checkSignature(alg, key, `${parts[0]}.${parts[1]}`, signature)) {
      throw new JwtError('signature', 'the signature does not verify');
    }
    // The payload is parsed only once its signature holds.
    const payload = parseObject(payloadBytes, 'payload');

    for (const claim of ['sub', 'iss'] as const) {
      if (payload[claim] !== undefined && typeof payload[claim] !== 'string') {
        throw new JwtError('claims', `the ${claim} claim is not a string`);
      }
    }
    const aud = payload.aud;
    if (aud !== undefined && typeof aud !== 'string' && !(Array.isArray(aud) && aud.every((item) => typeof item === 'string'))) {
      throw new JwtError('claims', 'the aud claim is neither a string nor an array of strings');
    }
    const exp = checkNumericDate(payload, 'exp');
    const nbf = checkNumericDate(payload, 'nbf');
    const iat = checkNumericDate(payload, 'iat');

    const seconds = now() / 1000;
    if (exp === undefined && requireExp) throw new JwtError('claims', 'the token has no exp claim');
    if (exp !== undefined && seconds >= exp + leeway) throw new JwtError('expired', 'the token has expired');
    if (nbf !== undefined && seconds + leeway < nbf) throw new JwtError('not_yet_valid', 'the token is not valid yet (nbf)');
    if (iat !== undefined && seconds + leeway < iat) throw new JwtError('not_yet_valid', 'the token was issued in the future (iat)');

    if (audience !== undefined) {
      const offered = aud === undefined ? [] : typeof aud === 'string' ? [aud] : aud;
      if (!offered.some((item) => audience.includes(item))) throw new JwtError('audience', 'the token is not meant for this audience');
    } else if (aud !== undefined) {
      throw new JwtError('audience', 'the token names an audience (aud) but the verifier has none configured (RFC 7519 §4.1.3)');
    }
    if (issuer !== undefined && (typeof payload.iss !== 'string' || !issuer.includes(payload.iss))) {
      throw new JwtError('issuer', 'the token\'s issuer is not accepted');
    }
    return payload as JwtPayload;
  };
}

/**
 * Verifies one token. Parses the key on every call: for repeated use, create a verifier once with
 * {@link createJwtVerifier}.
 *
 * @returns the payload; throws a {@link JwtError} when the token is refused, a `TypeError` on bad options.
 */
export function verifyJwt(token: string, options: JwtVerifyOptions): JwtPayload {
  return createJwtVerifier(options)(token);
}

/** A signing key: a secret for HS*, a private key for the rest. */
function toSigningKey(key: unknown): KeyObject {
  if (key instanceof KeyObject) {
    if (key.type === 'public') throw new TypeError('signJwt needs a private key (or an HMAC secret), not a public key');
    if (key.type === 'secret') return toSecretKey(key, 'key');
    checkRsaSize(key);
    return key;
  }
  const text = typeof key === 'string' ? key : key instanceof Uint8Array ? Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1') : null;
  if (text !== null && PEM_BLOCK.test(text)) {
    if (!/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(text)) {
      throw new TypeError('signJwt needs a private key PEM (or an HMAC secret), not a public key or certificate');
    }
    let result: KeyObject;
    try {
      result = createPrivateKey(typeof key === 'string' ? key : Buffer.from(text, 'latin1'));
    } catch (error) {
      throw new TypeError(`the private key could not be read: ${(error as Error).message}`);
    }
    checkRsaSize(result);
    return result;
  }
  return toSecretKey(key, 'key');
}

/**
 * Signs a token, for tests, development and applications that mint their own tokens.
 *
 * The header is `{"alg", "typ": "JWT"}` (plus `kid` when given). `iat` is set to the current second unless the
 * payload has an own `iat` property (set it to `undefined` to omit it); `expiresIn` sets `exp = iat + expiresIn`
 * (or now + expiresIn without `iat`).
 *
 * @param payload - the claims, a plain object.
 * @param key - an HMAC secret (string, bytes or secret KeyObject) or a private key (PEM PKCS#8, PKCS#1, SEC1, or KeyObject).
 * @returns the compact token. Throws a `TypeError` when the algorithm does not fit the key.
 */
export function signJwt(payload: JwtPayload, key: string | Uint8Array | KeyObject, options: JwtSignOptions = {}): string {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw new TypeError('the payload must be a plain object');
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const keyObject = toSigningKey(key);
  const keyAlgorithms = algorithmsForKey(keyObject);
  if (keyAlgorithms.length === 0) throw new TypeError(`${describeKey(keyObject)} serves no supported JWT algorithm`);
  const alg = options.algorithm ?? keyAlgorithms[0];
  if (!isAlgorithm(alg)) throw new TypeError(`unknown JWT algorithm ${JSON.stringify(alg)}; supported: ${JWT_ALGORITHMS.join(', ')}`);
  if (!keyAlgorithms.includes(alg)) throw new TypeError(`${alg} cannot be signed with ${describeKey(keyObject)}`);
  if (options.kid !== undefined && typeof options.kid !== 'string') throw new TypeError('kid must be a string');
  if (options.now !== undefined && typeof options.now !== 'function') throw new TypeError('now must be a function returning milliseconds');
  const nowSeconds = Math.floor((options.now ?? Date.now)() / 1000);
  const claims: JwtPayload = { ...payload };
  if (!Object.hasOwn(payload, 'iat')) claims.iat = nowSeconds;
  if (options.expiresIn !== undefined) {
    if (typeof options.expiresIn !== 'number' || !Number.isFinite(options.expiresIn)) throw new TypeError('expiresIn must be a finite number of seconds');
    claims.exp = (typeof claims.iat === 'number' ? claims.iat : nowSeconds) + options.expiresIn;
  }
  const header: Record<string, string> = { alg, typ: 'JWT' };
  if (options.kid !== undefined) header.kid = options.kid;
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const info = ALGORITHMS[alg];
  const signature = info.family === 'HS'
    ? hmac(info.hash!, keyObject, input)
    : cryptoSign(info.hash, Buffer.from(input, 'latin1'), signatureKey(info, keyObject));
  return `${input}.${signature.toString('base64url')}`;
}

/**
 * A hub resolver backed by the JWT verifier: `user` = `sub`, `tenants` = the `tenants` claim, `expiresAt` =
 * (`exp` + leeway) × 1000 (with the default leeway 0, exactly `exp` in milliseconds), `claims` = the whole payload.
 *
 * The returned function never throws: a refused token, a missing or empty `sub`, or a `tenants` claim that is not
 * an array of strings all give `null` (the hub then closes with 4401). A token without `tenants` may use any tenant.
 * Bad options throw a `TypeError` here, when the resolver is created.
 */
export function jwtResolver(options: JwtResolverOptions): (token: string) => Principal | null {
  const verify = createJwtVerifier(options);
  const onReject = options.onReject;
  if (onReject !== undefined && typeof onReject !== 'function') throw new TypeError('onReject must be a function');
  const leeway = options.leeway ?? JWT_DEFAULTS.leeway;
  const refuse = (error: JwtError): null => {
    if (onReject) {
      try {
        onReject(error);
      } catch {
        // A failing observer must not turn a refusal into a crash.
      }
    }
    return null;
  };
  return (token: string): Principal | null => {
    let payload: JwtPayload;
    try {
      payload = verify(token);
    } catch (error) {
      return refuse(error instanceof JwtError ? error : new JwtError('malformed', 'the token could not be verified'));
    }
    if (typeof payload.sub !== 'string' || payload.sub.length === 0) return refuse(new JwtError('claims', 'the token has no sub claim'));
    const tenants = payload.tenants;
    if (tenants !== undefined && !(Array.isArray(tenants) && tenants.every((tenant) => typeof tenant === 'string'))) {
      return refuse(new JwtError('claims', 'the tenants claim is not an array of strings'));
    }
    const principal: Principal = { user: payload.sub, claims: payload };
    if (tenants !== undefined) principal.tenants = Object.freeze([...(tenants as string[])]);
    if (payload.exp !== undefined) principal.expiresAt = (payload.exp + leeway) * 1000;
    return principal;
  };
}
