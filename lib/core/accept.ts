/**
 * `Sec-WebSocket-Accept` (RFC 6455 §4.2.2) computed in JavaScript for a valid key: SHA-1 (FIPS 180-4 §6.1) of the
 * key followed by the protocol's GUID, then base64 (RFC 4648 §4), written as ASCII bytes.
 *
 * Why not `node:crypto`: a key is always 24 base64 characters, so the hashed message is always 60 bytes, two SHA-1
 * blocks of which only the first six words of the first block vary (the key); the second block (the GUID's end is in
 * the first, then padding and the length) is the same for every key, so its message schedule is computed once here.
 * Through OpenSSL each accept value cost a native call, an EVP context and the string's UTF-8 conversion (about
 * 2.8 µs of a handshake's server CPU in a profile of the standalone server, against well under 1 µs here), and
 * the value then went through a string into the response.
 *
 * @module
 */

/** RFC 6455 §1.3. */
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** The length of a valid key (base64 of 16 bytes). */
export const KEY_LENGTH = 24;
/** The length of an accept value (base64 of 20 bytes). */
export const ACCEPT_LENGTH = 28;

const B64 = Uint8Array.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', (c) => c.charCodeAt(0));

/** The message schedule of a block (80 words), reused. */
const w = new Int32Array(80);
/** Words 6–15 of the first block: after the 24 key bytes, the 36 GUID bytes, then 0x80 and three zero bytes. */
const FIRST_TAIL = new Int32Array(10);
/** The complete schedule of the second block: zeros, then the message length in bits (480). */
const SECOND = new Int32Array(80);
/** The hash state after the first block, reused. */
const h = new Int32Array(5);

{
  const bytes = new Uint8Array(64);
  for (let i = 0; i < GUID.length; i++) bytes[KEY_LENGTH + i] = GUID.charCodeAt(i);
  bytes[KEY_LENGTH + GUID.length] = 0x80;
  for (let i = 0; i < 10; i++) {
    const o = 24 + 4 * i;
    FIRST_TAIL[i] = (bytes[o] << 24) | (bytes[o + 1] << 16) | (bytes[o + 2] << 8) | bytes[o + 3];
  }
  SECOND[15] = (KEY_LENGTH + GUID.length) * 8;
  for (let t = 16; t < 80; t++) {
    const x = SECOND[t - 3] ^ SECOND[t - 8] ^ SECOND[t - 14] ^ SECOND[t - 16];
    SECOND[t] = (x << 1) | (x >>> 31);
  }
}

/** SHA-1's compression function (FIPS 180-4 §6.1.2 steps 3–4) of the schedule `s` into `h`: four loops of 20 rounds. */
function compress(s: Int32Array): void {
  let a = h[0];
  let b = h[1];
  let c = h[2];
  let d = h[3];
  let e = h[4];
  let t = 0;
  for (; t < 20; t++) {
    const temp = (((a << 5) | (a >>> 27)) + ((b & c) | (~b & d)) + e + 0x5a827999 + s[t]) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = temp;
  }
  for (; t < 40; t++) {
    const temp = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + 0x6ed9eba1 + s[t]) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = temp;
  }
  for (; t < 60; t++) {
    const temp = (((a << 5) | (a >>> 27)) + ((b & c) | (b & d) | (c & d)) + e - 0x70e44324 + s[t]) | 0; // K = 0x8f1bbcdc
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = temp;
  }
  for (; t < 80; t++) {
    const temp = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e - 0x359d3e2a + s[t]) | 0; // K = 0xca62c1d6
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = temp;
  }
  h[0] = (h[0] + a) | 0;
  h[1] = (h[1] + b) | 0;
  h[2] = (h[2] + c) | 0;
  h[3] = (h[3] + d) | 0;
  h[4] = (h[4] + e) | 0;
}

/**
 * Writes the accept value of `key` as 28 ASCII bytes into `out` at `at`. `key` must be 24 ASCII characters
 * (every valid key is: base64 of 16 bytes; see {@link fitsAcceptKey}), which the caller checks.
 */
export function writeAcceptKey(key: string, out: Uint8Array, at: number): void {
  for (let i = 0; i < 6; i++) {
    const o = 4 * i;
    w[i] = (key.charCodeAt(o) << 24) | (key.charCodeAt(o + 1) << 16) | (key.charCodeAt(o + 2) << 8) | key.charCodeAt(o + 3);
  }
  for (let i = 0; i < 10; i++) w[6 + i] = FIRST_TAIL[i];
  for (let t = 16; t < 80; t++) {
    const x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16];
    w[t] = (x << 1) | (x >>> 31);
  }
  h[0] = 0x67452301;
  h[1] = 0xefcdab89 | 0;
  h[2] = 0x98badcfe | 0;
  h[3] = 0x10325476;
  h[4] = 0xc3d2e1f0 | 0;
  compress(w);
  compress(SECOND);
  // Base64 of the 20 digest bytes (big-endian words): 3 bytes make 4 characters; the last 2 bytes make 3 and '='.
  let o = at;
  for (let i = 0; i < 18; i += 3) {
    const v = (digestByte(i) << 16) | (digestByte(i + 1) << 8) | digestByte(i + 2);
    out[o] = B64[v >>> 18];
    out[o + 1] = B64[(v >>> 12) & 63];
    out[o + 2] = B64[(v >>> 6) & 63];
    out[o + 3] = B64[v & 63];
    o += 4;
  }
  const v = (digestByte(18) << 8) | digestByte(19);
  out[o] = B64[v >>> 10];
  out[o + 1] = B64[(v >>> 4) & 63];
  out[o + 2] = B64[(v << 2) & 63];
  out[o + 3] = 61; // '='
}

/** Byte `i` (0–19) of the digest in `h`. */
function digestByte(i: number): number {
  return (h[i >>> 2] >>> (24 - 8 * (i & 3))) & 255;
}

/**
 * Whether {@link writeAcceptKey} takes `key`: 24 ASCII characters (what a hash of the key's UTF-8 bytes, as
 * `node:crypto` computes it for a string, also sees as 24 bytes).
 */
export function fitsAcceptKey(key: string): boolean {
  if (key.length !== KEY_LENGTH) return false;
  for (let i = 0; i < KEY_LENGTH; i++) if (key.charCodeAt(i) > 0x7f) return false;
  return true;
}
