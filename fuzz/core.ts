/**
 * Fuzzing the sans-I/O protocol core: a seeded PRNG, generators of frame streams (valid and invalid), a byte
 * mutator, a random re-chunker, and two checkers.
 *
 * - {@link checkInput} feeds one byte stream to a {@link Protocol} of a given role and options in several
 *   chunkings and returns every violated invariant (an empty list means all is well):
 *   1. `receive` never throws, and never writes outside the chunk it was given.
 *   2. The events (messages with their bytes, pings, pongs, close code and reason, error code and close code,
 *      written bytes, end) are identical for the whole buffer at once, 1-byte chunks and random chunkings,
 *      whatever memory the chunks live in (exact-size ArrayBuffers as Node's sockets deliver, pooled slabs,
 *      views inside a larger arena).
 *   3. Memory stays bounded: `bufferedMessageBytes` never exceeds `maxMessageSize`, no message is larger, and
 *      with small limits the memory actually retained (backing stores of held pieces plus the cost of each held
 *      Buffer object) stays within the bound the design allows (4 × the limit plus two 16 KiB blocks). A
 *      small-limit pass is added when the options' limit is large.
 *   4. After an error or a close event nothing more is delivered: only `end` may follow, at most one close
 *      frame is written and nothing after it, at most one error; each error and close event comes right after
 *      the close frame that reports it, and a delivered message is not changed by later input.
 * - {@link checkRoundTrip} sends random messages with one role and parses them with the other
 *   (serialize → parse identity) and runs the closing handshake both ways.
 *
 * Everything is deterministic for a given seed. The test helpers (`rawFrame`, `recorder`, `feedSplit`) are
 * reused from `test/helpers/core.ts`.
 *
 * @module
 */
import { CloseCode, Opcode, Protocol, PROTOCOL_DEFAULTS, type ProtocolHandler, type ProtocolOptions, type MaskSource } from '../lib/core/index.js';
import { closeHex, feedSplit, fixedMask, MASK, rawFrame, recorder, type Event, type RawFrame } from '../test/helpers/core.js';

// ───────────────────────────── PRNG ─────────────────────────────

/**
 * A small, fast, seeded pseudo-random generator (sfc32, seeded through splitmix32). Same seed, same sequence,
 * on every platform. Not for cryptography.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** @param seed Any number; only its low 32 bits are used. */
  constructor(seed: number) {
    let s = seed >>> 0;
    const splitmix = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = splitmix();
    this.b = splitmix();
    this.c = splitmix();
    this.d = splitmix();
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** A uniform float in [0, 1). */
  float(): number {
    return this.u32() / 0x100000000;
  }

  /** A uniform integer in [0, n); 0 when n ≤ 0. */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor(this.float() * n);
  }

  /** A uniform integer in [lo, hi], both included. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** One value, chosen with probability proportional to its weight (weights ≤ 0 are never chosen). */
  weighted<T>(entries: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [w] of entries) if (w > 0) total += w;
    let x = this.float() * total;
    for (const [w, v] of entries) {
      if (w <= 0) continue;
      if (x < w) return v;
      x -= w;
    }
    return entries[entries.length - 1][1];
  }

  /** `n` random bytes. */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) out.writeUInt32LE(this.u32(), i);
    for (; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

/** Creates a {@link Rng}: the same seed always gives the same sequence. */
export function createRng(seed: number): Rng {
  return new Rng(seed);
}

/** A 32-bit seed from a command-line value: a decimal or 0x-hex integer as is, any other text hashed (FNV-1a). */
export function parseSeed(text: string): number {
  if (/^(0x[0-9a-f]+|\d+)$/i.test(text)) return Number(text) >>> 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// ───────────────────────────── text and sizes ─────────────────────────────

/** Code points at the edges of the UTF-8 length classes and around the surrogate gap. */
const EDGE_CODE_POINTS = [0x0, 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfeff, 0xfffd, 0xffff, 0x10000, 0x1f600, 0x10ffff];

/** UTF-8 length of a code point. */
function utf8Length(cp: number): number {
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

/** A random Unicode scalar value (never a surrogate): ASCII, 2-, 3- and 4-byte (astral) ones, and edge values. */
export function randomCodePoint(rng: Rng): number {
  // Hot (once per character): plain thresholds rather than Rng.weighted. 45% ASCII, 15% 2-byte, 20% 3-byte,
  // 12% astral, 8% edge values.
  const x = rng.float();
  if (x < 0.45) return rng.int(0x80);
  if (x < 0.6) return rng.range(0x80, 0x7ff);
  if (x < 0.8) {
    const cp = rng.range(0x800, 0xffff - 0x800);
    return cp >= 0xd800 ? cp + 0x800 : cp; // skip the surrogates D800–DFFF
  }
  if (x < 0.92) return rng.range(0x10000, 0x10ffff);
  return rng.pick(EDGE_CODE_POINTS);
}

/** A random well-formed string whose UTF-8 encoding is exactly `byteLength` bytes. */
export function randomText(rng: Rng, byteLength: number): string {
  const out: string[] = [];
  const points: number[] = [];
  let left = byteLength;
  while (left > 0) {
    let cp = randomCodePoint(rng);
    if (utf8Length(cp) > left) cp = 0x20 + rng.int(0x5f);
    points.push(cp);
    left -= utf8Length(cp);
    if (points.length === 4096) {
      out.push(String.fromCodePoint(...points));
      points.length = 0;
    }
  }
  out.push(String.fromCodePoint(...points));
  return out.join('');
}

/**
 * Byte sequences that are never valid UTF-8 where they stand: stray continuation bytes, overlong forms,
 * surrogates, code points above U+10FFFF, bytes that never occur, and sequences cut short.
 */
export const INVALID_UTF8: readonly (readonly number[])[] = [
  [0x80],
  [0xbf],
  [0xc0, 0x80],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0x80],
  [0xe0, 0x9f, 0xbf],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf0, 0x80, 0x80, 0x80],
  [0xf0, 0x8f, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf5, 0x80, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xfe],
  [0xff],
  [0xc2, 0x41],
  [0xe2, 0x41, 0x82],
  [0xf0, 0x9f, 0x41],
];

/** Sequences valid except that they end too early: invalid at the end of a message. */
const TRUNCATED_UTF8: readonly (readonly number[])[] = [[0xc2], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xf4, 0x8f, 0xbf]];

/** A text payload of about `size` bytes: valid UTF-8, or, with probability `invalid`, with a broken sequence in it. */
export function textPayload(rng: Rng, size: number, invalid: number): Buffer {
  const text = Buffer.from(randomText(rng, size));
  if (!rng.chance(invalid)) return text;
  if (rng.chance(0.3)) return Buffer.concat([text, Buffer.from(rng.pick(TRUNCATED_UTF8))]);
  // Insert at a code point boundary, so that the sequence itself is what breaks the text.
  let at = rng.int(text.length + 1);
  while (at < text.length && (text[at] & 0xc0) === 0x80) at++;
  return Buffer.concat([text.subarray(0, at), Buffer.from(rng.pick(INVALID_UTF8)), text.subarray(at)]);
}

/** Payload sizes around the length-encoding boundaries (7-bit, 16-bit, 64-bit) and the control frame limit. */
export const SIZE_BOUNDARIES = [0, 1, 2, 3, 4, 5, 124, 125, 126, 127, 128, 255, 256, 4095, 4096, 4097, 65535, 65536, 65537] as const;

/** A payload size: mostly small, sometimes on a boundary, near `limit`, or up to ~200 KB. */
export function randomSize(rng: Rng, limit?: number): number {
  // Sizes near a small limit are cheap and common; near a large one (up to 200 KB) rare, as they are slow to check.
  const near = limit !== undefined && limit <= 200_000 ? limit : undefined;
  const nearWeight = near === undefined ? 0 : near <= 20_000 ? 5 : 0.2;
  const kind = rng.weighted([[55, 0], [25, 1], [9, 2], [4, 3], [nearWeight, 4], [0.4, 5], [0.1, 6]] as const);
  switch (kind) {
    case 0:
      return rng.int(16);
    case 1:
      return rng.int(400);
    case 2:
      return rng.pick(SIZE_BOUNDARIES.filter((s) => s < 5000));
    case 3:
      return rng.int(5000);
    case 4:
      return Math.max(0, near! + rng.range(-20, 3));
    case 5:
      return rng.pick([65535, 65536, 65537]);
    default:
      return rng.int(200_000);
  }
}

/** Splits `data` into `count` consecutive pieces at random points (empty and 1-byte pieces included). */
export function splitBytes(rng: Rng, data: Uint8Array, count: number): Buffer[] {
  const cuts: number[] = [];
  for (let i = 1; i < count; i++) {
    cuts.push(rng.weighted([[6, () => rng.int(data.length + 1)], [1, () => 0], [1, () => Math.min(data.length, rng.int(3))]] as const)());
  }
  cuts.sort((x, y) => x - y);
  const out: Buffer[] = [];
  let at = 0;
  for (const cut of [...cuts, data.length]) {
    out.push(Buffer.from(data.subarray(at, cut)));
    at = cut;
  }
  return out;
}

// ───────────────────────────── options ─────────────────────────────

/** Protocol options a fuzz case varies: everything but the role and the mask source (which must be JSON). */
export type FuzzOptions = Omit<ProtocolOptions, 'role' | 'maskSource'>;

/** Random protocol options: limits from 0 bytes to the defaults, extensions, auto-pong and strict lengths. */
export function randomOptions(rng: Rng): FuzzOptions {
  const options: FuzzOptions = {};
  if (rng.chance(0.55)) options.maxMessageSize = rng.pick([0, 1, 2, 16, 125, 126, 300, 1000, 1024, 4096, 16384, 65535, 65536, 70000, rng.int(300_000)]);
  if (rng.chance(0.2)) options.maxFrameSize = rng.pick([0, 1, 125, 126, 1000, 65536, rng.int(100_000)]);
  if (rng.chance(0.3)) options.fragmentOverhead = rng.pick([0, 1, 16, 64, rng.int(1000)]);
  if (rng.chance(0.3)) options.rsv1 = true;
  if (rng.chance(0.15)) options.autoPong = false;
  if (rng.chance(0.3)) options.strictLengths = true;
  return options;
}

// ───────────────────────────── frame streams ─────────────────────────────

/** Close codes a peer may send. */
export const VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] as const;
/** Close codes no peer may send (1005 and 1006 are local-only; 1004 and 1015 reserved). */
export const INVALID_CLOSE_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] as const;
/** Opcodes RFC 6455 reserves: 0x3–0x7 (data) and 0xB–0xF (control). */
export const RESERVED_OPCODES = [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] as const;

/** Declared lengths that lie: at every encoding boundary, around 2^31/2^32/2^53, the 64-bit MSB, all ones. */
const LYING_LENGTHS = [126n, 127n, 65535n, 65536n, 1n << 31n, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, 1n << 62n, 1n << 63n, (1n << 64n) - 1n] as const;

/** State of {@link generateFrames} while it builds one stream. */
interface StreamContext {
  role: 'server' | 'client';
  rng: Rng;
  /** Probability of each fault decision (0 for a clean stream). */
  fault: number;
  options: FuzzOptions;
  out: Buffer[];
}

/** A masking key: random, or sometimes all zeros (masking that changes nothing). */
function maskKey(rng: Rng): number[] {
  return rng.chance(0.1) ? [0, 0, 0, 0] : [...rng.bytes(4)];
}

/**
 * Serializes one frame as the peer of `ctx.role` would (masked toward a server), then perhaps breaks it:
 * wrong mask bit, reserved bits, non-minimal or lying length.
 */
function emitFrame(ctx: StreamContext, frame: RawFrame & { payload: Buffer }): void {
  const { rng, fault } = ctx;
  const spec: RawFrame = { ...frame };
  let masked = ctx.role === 'server';
  if (rng.chance(fault * 0.1)) masked = !masked;
  spec.mask = masked ? maskKey(rng) : null;
  const n = frame.payload.length;
  const minimal = n < 126 ? 7 : n < 65536 ? 16 : 64;
  // Non-minimal length encodings: valid by default, a 1002 with strictLengths (rarer then, to get past them).
  if (rng.chance(ctx.options.strictLengths ? 0.02 : 0.1)) spec.lengthBits = minimal === 7 ? rng.pick([16, 64] as const) : 64;
  if (rng.chance(fault * 0.2)) {
    // A length that lies: a little off, or far off.
    const declared = rng.chance(0.6) ? BigInt(Math.max(0, n + rng.range(-4, 4))) : rng.pick(LYING_LENGTHS);
    spec.declaredLength = declared;
    spec.lengthBits = declared < 126n && rng.chance(0.7) ? 7 : declared < 65536n && rng.chance(0.7) ? 16 : 64;
  }
  if (rng.chance(fault * 0.08)) spec.rsv1 = !spec.rsv1;
  if (rng.chance(fault * 0.05)) spec.rsv2 = true;
  if (rng.chance(fault * 0.05)) spec.rsv3 = true;
  ctx.out.push(rawFrame(spec));
}

/** A ping or pong between or inside messages: valid, or too long, fragmented or reserved when faulty. */
function controlFrame(ctx: StreamContext): void {
  const { rng, fault } = ctx;
  const opcode = rng.weighted([[5, Opcode.PING], [4, Opcode.PONG], [fault * 4, rng.pick([0xb, 0xc, 0xd, 0xe, 0xf])]] as const);
  let size = rng.chance(0.2) ? rng.pick([0, 1, 124, 125]) : rng.int(40);
  if (rng.chance(fault * 0.3)) size = rng.range(126, 300);
  const payload = rng.chance(0.5) ? rng.bytes(size) : Buffer.from(randomText(rng, size));
  emitFrame(ctx, { opcode, fin: !rng.chance(fault * 0.2), payload });
}

/** A close frame: empty, code only, or code and reason; invalid codes, 1-byte, long or non-UTF-8 payloads when faulty. */
function closeFrame(ctx: StreamContext): void {
  const { rng, fault } = ctx;
  let payload: Buffer;
  const kind = rng.weighted([[3, 'empty'], [5, 'code'], [10, 'reason'], [fault * 4, 'one'], [fault * 6, 'badCode'], [fault * 4, 'badReason'], [fault * 2, 'long']] as const);
  const code = kind === 'badCode' ? rng.pick(INVALID_CLOSE_CODES) : rng.chance(0.8) ? rng.pick(VALID_CLOSE_CODES) : rng.range(3000, 4999);
  const head = Buffer.from([code >> 8, code & 0xff]);
  switch (kind) {
    case 'empty':
      payload = Buffer.alloc(0);
      break;
    case 'one':
      payload = rng.bytes(1);
      break;
    case 'code':
    case 'badCode':
      payload = head;
      break;
    case 'badReason':
      payload = Buffer.concat([head, textPayload(rng, rng.int(60), 1)]);
      break;
    case 'long':
      payload = Buffer.concat([head, Buffer.from(randomText(rng, rng.range(124, 200)))]);
      break;
    default:
      payload = Buffer.concat([head, Buffer.from(randomText(rng, rng.chance(0.2) ? 123 : rng.int(124)))]);
  }
  emitFrame(ctx, { opcode: Opcode.CLOSE, payload, fin: !rng.chance(fault * 0.2) });
}

/**
 * A data message, perhaps fragmented (up to 64 fragments, empty and 1-byte ones included, text split inside
 * code points), with control frames between fragments; when faulty, invalid UTF-8, a new message started
 * inside it, or left unfinished.
 */
function dataMessage(ctx: StreamContext): void {
  const { rng, fault } = ctx;
  const text = rng.chance(0.55);
  const size = randomSize(rng, ctx.options.maxMessageSize);
  const payload = text ? textPayload(rng, size, Math.min(0.6, fault * 2)) : rng.bytes(size);
  const compressed = ctx.options.rsv1 === true && rng.chance(0.3);
  const count = rng.weighted([[50, 1], [30, rng.range(2, 4)], [15, rng.range(5, 16)], [5, rng.range(17, 64)]] as const);
  const pieces = splitBytes(rng, payload, count);
  for (let k = 0; k < count; k++) {
    const last = k === count - 1;
    emitFrame(ctx, { opcode: k === 0 ? (text ? Opcode.TEXT : Opcode.BINARY) : Opcode.CONTINUATION, fin: last, rsv1: k === 0 && compressed, payload: pieces[k] });
    if (last) break;
    while (rng.chance(0.25)) {
      if (rng.chance(0.05)) closeFrame(ctx);
      else controlFrame(ctx);
    }
    if (rng.chance(fault * 0.15)) emitFrame(ctx, { opcode: rng.pick([Opcode.TEXT, Opcode.BINARY]), payload: rng.bytes(rng.int(8)) });
    if (rng.chance(fault * 0.1)) return;
  }
}

/**
 * Builds a random stream of frames as a peer of `role` might send it. About 40% of streams are clean (every
 * frame valid, masked correctly, so the state machine gets deep); the rest carry faults at a random rate:
 * reserved opcodes and bits, wrong masking, lying lengths, continuation frames out of place, invalid UTF-8 and
 * close payloads, garbage bytes. `options` steers sizes toward the limits and RSV1 toward a negotiated extension.
 */
export function generateStream(role: 'server' | 'client', rng: Rng, options: FuzzOptions = {}): Buffer {
  const fault = rng.chance(0.4) ? 0 : rng.pick([0.01, 0.05, 0.15, 0.4]);
  const ctx: StreamContext = { role, rng, fault, options, out: [] };
  const count = rng.range(1, 8);
  for (let i = 0; i < count; i++) {
    const kind = rng.weighted([[50, 'message'], [20, 'control'], [2, 'close'], [fault * 10, 'reserved'], [fault * 5, 'continuation'], [fault * 5, 'garbage']] as const);
    if (kind === 'message') dataMessage(ctx);
    else if (kind === 'control') controlFrame(ctx);
    else if (kind === 'close') closeFrame(ctx);
    else if (kind === 'reserved') emitFrame(ctx, { opcode: rng.pick(RESERVED_OPCODES), fin: rng.chance(0.8), payload: rng.bytes(rng.int(10)) });
    else if (kind === 'continuation') emitFrame(ctx, { opcode: Opcode.CONTINUATION, fin: rng.chance(0.5), payload: rng.bytes(rng.int(10)) });
    else ctx.out.push(rng.bytes(rng.range(1, 16)));
  }
  if (rng.chance(0.3)) closeFrame(ctx);
  if (rng.chance(0.1)) dataMessage(ctx); // after the close: must be ignored
  return Buffer.concat(ctx.out);
}

// ───────────────────────────── mutator ─────────────────────────────

/** Byte values that matter in headers: length markers 126/127, FIN+opcode combinations, mask bit, extremes. */
const INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x7d, 0x7e, 0x7f, 0x80, 0x81, 0x82, 0x88, 0x89, 0x8a, 0xfe, 0xff] as const;

/**
 * Mutates `input` (never in place) with 1 to ~6 random operations: bit flips, byte replacement (random or
 * interesting values), insertion and deletion of short runs, duplication of a range, splicing with `donor`
 * (a prefix of one stream, a suffix of the other) and truncation.
 */
export function mutate(input: Uint8Array, rng: Rng, donor?: Uint8Array): Buffer {
  let b = Buffer.from(input);
  let ops = 1;
  while (ops < 6 && rng.chance(0.45)) ops++;
  for (let i = 0; i < ops; i++) {
    const op = rng.weighted([[4, 'flip'], [4, 'set'], [2, 'insert'], [2, 'delete'], [1, 'duplicate'], [donor ? 1.5 : 0, 'splice'], [1, 'truncate']] as const);
    const at = rng.int(b.length + 1);
    switch (op) {
      case 'flip':
        if (b.length > 0) b[Math.min(at, b.length - 1)] ^= 1 << rng.int(8);
        break;
      case 'set':
        if (b.length > 0) b[Math.min(at, b.length - 1)] = rng.chance(0.5) ? rng.pick(INTERESTING_BYTES) : rng.int(256);
        break;
      case 'insert': {
        const run = rng.chance(0.5) ? rng.bytes(rng.range(1, 8)) : Buffer.from([rng.pick(INTERESTING_BYTES)]);
        b = Buffer.concat([b.subarray(0, at), run, b.subarray(at)]);
        break;
      }
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + rng.range(1, 8)))]);
        break;
      case 'duplicate': {
        const end = Math.min(b.length, at + rng.range(1, 32));
        if (b.length < 100_000) b = Buffer.concat([b.subarray(0, end), b.subarray(at, end), b.subarray(end)]);
        break;
      }
      case 'splice':
        b = Buffer.concat([b.subarray(0, at), donor!.subarray(rng.int(donor!.length + 1))]);
        break;
      default:
        b = b.subarray(0, rng.int(b.length + 1));
    }
  }
  return Buffer.from(b);
}

// ───────────────────────────── re-chunker ─────────────────────────────

/**
 * Where chunk bytes live. `exact`: each chunk its own ArrayBuffer of its size (what Node's sockets deliver);
 * `pooled`: `Buffer.from`, small chunks sharing 8 KiB slabs; `arena`: a view in the middle of a larger buffer
 * whose other bytes hold a guard pattern (the protocol must not touch them).
 */
export type Allocation = 'exact' | 'pooled' | 'arena';

/** How one run cuts the input. */
export interface Chunking {
  /** Label for reports, e.g. `"1-byte/exact"`. */
  name: string;
  /** Increasing cut points strictly inside the input (none = the whole buffer at once). */
  cuts: number[];
  allocation: Allocation;
}

/** At most this many chunks per random chunking, so that large inputs stay fast. */
const MAX_RANDOM_CHUNKS = 4000;

/**
 * Random cut points for an input of `length` bytes: a few uniform cuts, many uniform cuts, a fixed small step,
 * or runs of 1–3 byte chunks around random points (where headers get split).
 */
export function randomCuts(rng: Rng, length: number): number[] {
  if (length < 2) return [];
  const set = new Set<number>();
  const strategy = rng.weighted([[3, 'few'], [2, 'many'], [2, 'step'], [2, 'tiny']] as const);
  if (strategy === 'few' || strategy === 'many') {
    const n = strategy === 'few' ? rng.range(1, 4) : rng.range(5, Math.min(MAX_RANDOM_CHUNKS, Math.max(5, length >> 1)));
    for (let i = 0; i < n; i++) set.add(rng.range(1, length - 1));
  } else if (strategy === 'step') {
    const step = Math.max(rng.range(1, 64), Math.ceil(length / MAX_RANDOM_CHUNKS));
    for (let at = rng.range(1, step); at < length; at += step) set.add(at);
  } else {
    for (let burst = rng.range(1, 6); burst > 0; burst--) {
      let at = rng.range(1, length - 1);
      for (let k = rng.range(2, 24); k > 0 && at < length; k--, at += rng.range(1, 3)) set.add(at);
    }
  }
  return [...set].sort((x, y) => x - y);
}

/** Cut points for 1-byte chunks. */
export function oneByteCuts(length: number): number[] {
  return Array.from({ length: Math.max(0, length - 1) }, (_, i) => i + 1);
}

/** Guard pattern written around `arena` chunks. */
const GUARD = 0xa5;

/** One chunk to feed, and, for an arena chunk, the larger buffer around it. */
interface Chunk {
  chunk: Buffer;
  arena?: Buffer;
  start?: number;
}

/** Copies `input[start, end)` into a fresh chunk in the given kind of memory. */
function makeChunk(input: Uint8Array, start: number, end: number, allocation: Allocation, rng: Rng): Chunk {
  const n = end - start;
  if (allocation === 'pooled') return { chunk: Buffer.from(input.subarray(start, end)) };
  if (allocation === 'exact') {
    const chunk = Buffer.alloc(n); // never from the pool: its ArrayBuffer is exactly n bytes
    chunk.set(input.subarray(start, end));
    return { chunk };
  }
  const before = rng.int(2 * n + 8);
  const arena = Buffer.alloc(before + n + rng.int(2 * n + 8), GUARD);
  arena.set(input.subarray(start, end), before);
  return { chunk: arena.subarray(before, before + n), arena, start: before };
}

// ───────────────────────────── checking one input ─────────────────────────────

/** What {@link checkInput} runs a protocol through: a recorder from the test helpers, or an instrumented one. */
export type Recording = ReturnType<typeof recorder>;

/** Builds the protocol under test and its event recording. The default is the test helpers' `recorder`. */
export type Harness = (options: ProtocolOptions) => Recording;

/** Private fields of {@link Protocol} the checker reads to measure memory and to watch delivered data. */
interface ProtocolInternals {
  parts?: Buffer[];
  block?: Buffer | null;
  handler?: ProtocolHandler;
}

/** Test-only view of a protocol's private fields (absent fields read as undefined). */
function internals(protocol: Protocol): ProtocolInternals {
  return protocol as unknown as ProtocolInternals;
}

/**
 * Heap cost charged per held Buffer view when estimating retained memory. A conservative figure: on Node 20 a
 * retained 1-byte view of its own ArrayBuffer measures about 195 bytes of V8 heap (and more in RSS).
 */
export const PART_COST = 128;

/** The 16 KiB copy blocks of the protocol (lib/core/protocol.ts). */
const BLOCK_SIZE = 16 * 1024;

/** The most memory a message being assembled may retain by design: 4 × the limit (views) plus two blocks. */
export function retainedBound(maxMessageSize: number): number {
  return 4 * maxMessageSize + 2 * BLOCK_SIZE;
}

/**
 * Incremental estimate of what a protocol retains for the message being assembled: the backing stores of its
 * held pieces and copy block, each counted once, plus {@link PART_COST} per held piece.
 */
class RetainedMeter {
  private parts: Buffer[] | undefined;
  private counted = 0;
  private readonly seen = new Set<ArrayBufferLike>();
  private backing = 0;

  /** Current estimate, or undefined when the protocol's internals are not visible. */
  measure(protocol: Protocol): { total: number; backing: number; pieces: number } | undefined {
    const { parts, block } = internals(protocol);
    if (!Array.isArray(parts)) return undefined;
    if (parts !== this.parts || parts.length < this.counted) {
      this.parts = parts;
      this.counted = 0;
      this.seen.clear();
      this.backing = 0;
    }
    for (; this.counted < parts.length; this.counted++) {
      const buffer = parts[this.counted].buffer;
      if (!this.seen.has(buffer)) {
        this.seen.add(buffer);
        this.backing += buffer.byteLength;
      }
    }
    const backing = this.backing + (block && !this.seen.has(block.buffer) ? block.buffer.byteLength : 0);
    return { total: backing + PART_COST * parts.length, backing, pieces: parts.length };
  }
}

/** A decoded outgoing frame (the checker parses what the protocol writes). */
interface WrittenFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
  /** Why the bytes are not exactly one frame, if they are not. */
  malformed?: string;
}

/** Parses bytes the protocol wrote, which must be exactly one frame. */
function decodeWritten(hex: string): WrittenFrame {
  const b = Buffer.from(hex, 'hex');
  if (b.length < 2) return { fin: false, rsv: 0, opcode: -1, masked: false, payload: Buffer.alloc(0), malformed: 'shorter than a header' };
  const masked = (b[1] & 0x80) !== 0;
  let length = b[1] & 0x7f;
  let p = 2;
  if (length === 126) {
    length = b.readUInt16BE(2);
    p = 4;
  } else if (length === 127) {
    length = Number(b.readBigUInt64BE(2));
    p = 10;
  }
  const payload = Buffer.from(b.subarray(p + (masked ? 4 : 0)));
  if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= b[p + (i & 3)];
  const frame: WrittenFrame = { fin: (b[0] & 0x80) !== 0, rsv: b[0] & 0x70, opcode: b[0] & 0x0f, masked, payload };
  if (p + (masked ? 4 : 0) + length !== b.length) frame.malformed = `declares ${length} payload bytes but carries ${payload.length}`;
  return frame;
}

/** An event, shortened for a report. */
function show(event: Event | undefined): string {
  if (event === undefined) return '(nothing)';
  const text = JSON.stringify(event);
  return text.length > 140 ? `${text.slice(0, 137)}...` : text;
}

/** The result of one run of {@link checkInput}. */
interface RunResult {
  chunking: Chunking;
  events: Event[];
  messages: Buffer[];
  /** Events and message bytes, for comparing runs. */
  signature: string;
  violations: string[];
}

/** Feeds `input` to a fresh protocol in the given chunking and checks invariants 1, 3 and 4 on the way. */
function runOnce(options: ProtocolOptions, input: Uint8Array, chunking: Chunking, rng: Rng, harness: Harness): RunResult {
  const violations: string[] = [];
  const where = `[${chunking.name}]`;
  const limit = options.maxMessageSize ?? PROTOCOL_DEFAULTS.maxMessageSize;
  const rec = harness(options);
  const protocol = rec.protocol;

  // Watch delivered messages: the receiver owns them, later input must not change them.
  const delivered: Buffer[] = [];
  const handler = internals(protocol).handler;
  if (handler) {
    const onMessage = handler.onMessage;
    handler.onMessage = (data, isBinary, compressed) => {
      delivered.push(data);
      onMessage.call(handler, data, isBinary, compressed);
    };
  }

  const meter = new RetainedMeter();
  const bound = retainedBound(limit);
  let reportedMemory = false;
  const arenas: Chunk[] = [];
  let at = 0;
  for (const cut of [...chunking.cuts, input.length]) {
    if (cut <= at) continue;
    const piece = makeChunk(input, at, cut, chunking.allocation, rng);
    if (piece.arena) arenas.push(piece);
    try {
      protocol.receive(piece.chunk);
    } catch (error) {
      violations.push(`[1 no-throw] ${where} receive threw on bytes ${at}..${cut}: ${error instanceof Error ? (error.stack ?? error.message).split('\n').slice(0, 3).join(' | ') : String(error)}`);
      break;
    }
    at = cut;
    if (!reportedMemory) {
      const buffered = protocol.bufferedMessageBytes;
      if (buffered > limit) {
        violations.push(`[3 memory] ${where} bufferedMessageBytes = ${buffered} > maxMessageSize ${limit} after byte ${at}`);
        reportedMemory = true;
      }
      const retained = meter.measure(protocol);
      if (retained !== undefined && retained.total > bound) {
        violations.push(
          `[3 memory] ${where} the message being assembled retains ~${retained.total} bytes (backing stores ${retained.backing} + ${retained.pieces} held pieces × ${PART_COST}) for ${buffered} payload bytes after byte ${at}, over ${bound} = 4 × maxMessageSize ${limit} + 2 blocks`,
        );
        reportedMemory = true;
      }
    }
  }

  // Invariant 1: nothing outside the chunk was written.
  for (const { arena, start, chunk } of arenas) {
    for (let i = 0; i < arena!.length; i++) {
      if (i === start) i += chunk.length;
      if (i < arena!.length && arena![i] !== GUARD) {
        violations.push(`[1 no-throw] ${where} receive wrote outside its chunk (arena byte ${i}, chunk at ${start}..${start! + chunk.length})`);
        break;
      }
    }
  }

  // Invariant 3: no message over the limit; nothing held once the connection is done.
  for (const m of rec.messages) {
    if (m.length > limit) violations.push(`[3 memory] ${where} a ${m.length}-byte message was delivered with maxMessageSize ${limit}`);
  }

  // Invariant 4: the shape of the event sequence.
  const events = rec.events;
  let terminal: Event | undefined;
  let ends = 0;
  let errors = 0;
  let closeWritten = -1;
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    const previous = events[i - 1];
    if (terminal !== undefined && e[0] !== 'end') {
      violations.push(`[4 after-close] ${where} event #${i} ${show(e)} after ${show(terminal)}`);
    }
    switch (e[0]) {
      case 'end':
        if (++ends > 1) violations.push(`[4 after-close] ${where} end reported ${ends} times`);
        if (terminal === undefined) violations.push(`[4 after-close] ${where} end (#${i}) before any close or error`);
        break;
      case 'write': {
        const frame = decodeWritten(e[1]);
        if (closeWritten >= 0) violations.push(`[4 after-close] ${where} bytes written (#${i}, ${show(e)}) after the close frame (#${closeWritten})`);
        if (frame.malformed) violations.push(`[4 after-close] ${where} written bytes #${i} are not one frame: ${frame.malformed}`);
        if (frame.masked !== (options.role === 'client')) violations.push(`[4 after-close] ${where} written frame #${i} is ${frame.masked ? '' : 'not '}masked by a ${options.role}`);
        if (frame.opcode === Opcode.CLOSE) closeWritten = i;
        break;
      }
      case 'error': {
        if (++errors > 1) violations.push(`[4 after-close] ${where} ${errors} errors reported`);
        const frame = previous?.[0] === 'write' ? decodeWritten(previous[1]) : undefined;
        if (frame?.opcode !== Opcode.CLOSE || frame.payload.length < 2 || frame.payload.readUInt16BE(0) !== e[2]) {
          violations.push(`[4 after-close] ${where} error ${show(e)} is not right after a close frame carrying ${e[2]} (before it: ${show(previous)})`);
        }
        if (events[i + 1]?.[0] !== 'end') violations.push(`[4 after-close] ${where} error ${show(e)} is not followed by end`);
        terminal ??= e;
        break;
      }
      case 'close': {
        const frame = previous?.[0] === 'write' ? decodeWritten(previous[1]) : undefined;
        const echoed = frame?.opcode === Opcode.CLOSE ? (frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : CloseCode.NO_STATUS) : undefined;
        if (echoed !== e[1] || (frame !== undefined && frame.payload.length > 2)) {
          violations.push(`[4 after-close] ${where} close ${show(e)} is not right after the close frame echoing its code (before it: ${show(previous)})`);
        }
        if (options.role === 'server' && events[i + 1]?.[0] !== 'end') violations.push(`[4 after-close] ${where} the server did not end after the closing handshake`);
        terminal ??= e;
        break;
      }
      case 'ping':
        if (options.autoPong !== false) {
          const frame = previous?.[0] === 'write' ? decodeWritten(previous[1]) : undefined;
          if (frame?.opcode !== Opcode.PONG || frame.payload.toString('hex') !== e[1]) {
            violations.push(`[4 after-close] ${where} ping ${show(e)} is not right after the pong answering it (before it: ${show(previous)})`);
          }
        }
        break;
      default:
        break;
    }
  }
  if (terminal !== undefined && protocol.bufferedMessageBytes !== 0) {
    violations.push(`[3 memory] ${where} ${protocol.bufferedMessageBytes} bytes still held after ${show(terminal)}`);
  }
  for (let i = 0; i < delivered.length && i < rec.messages.length; i++) {
    if (!delivered[i].equals(rec.messages[i])) {
      violations.push(`[4 after-close] ${where} message #${i} was changed after delivery by later input (delivered data is the receiver's)`);
      break;
    }
  }

  const signature = JSON.stringify([events, rec.messages.map((m) => m.toString('hex'))]);
  return { chunking, events, messages: rec.messages, signature, violations };
}

/** Compares a run with the reference run and describes the first difference. */
function compareRuns(reference: RunResult, run: RunResult): string | undefined {
  if (run.signature === reference.signature) return undefined;
  const a = reference.events;
  const b = run.events;
  let i = 0;
  while (i < a.length && i < b.length && JSON.stringify(a[i]) === JSON.stringify(b[i])) i++;
  if (i === a.length && i === b.length) {
    const k = reference.messages.findIndex((m, j) => !run.messages[j] || !m.equals(run.messages[j]));
    return `[2 chunking] [${run.chunking.name}] message #${k} bytes differ from [${reference.chunking.name}] (same events)`;
  }
  const x = a[i];
  const y = b[i];
  if (x?.[0] === 'write' && y?.[0] === 'write' && JSON.stringify(a.slice(i + 1)) === JSON.stringify(b.slice(i + 1))) {
    const fx = decodeWritten(x[1]);
    const fy = decodeWritten(y[1]);
    if (fx.opcode === Opcode.CLOSE && fy.opcode === Opcode.CLOSE && fx.payload.length >= 2 && fy.payload.length >= 2 && fx.payload.readUInt16BE(0) === fy.payload.readUInt16BE(0)) {
      return `[2 chunking] [${run.chunking.name}] differs from [${reference.chunking.name}] only in the reason of the close frame written at event #${i} (code ${fx.payload.readUInt16BE(0)} in both): ${JSON.stringify(fy.payload.toString('utf8', 2))} instead of ${JSON.stringify(fx.payload.toString('utf8', 2))}`;
    }
  }
  return `[2 chunking] [${run.chunking.name}] differs from [${reference.chunking.name}] at event #${i}: ${show(y)} instead of ${show(x)} (${b.length} vs ${a.length} events)`;
}

/** Small limits for the extra pass of {@link checkInput} when the case's own limit is large. */
const SMALL_LIMITS = [0, 1, 64, 300, 1000, 4096, 20000] as const;

/** Number of random chunkings {@link checkInput} compares beyond "whole" and "1-byte". */
export const RANDOM_CHUNKINGS = 3;

/**
 * Feeds `bytes` to a protocol of `role` with `options` (the mask source is fixed, for exact written bytes) as a
 * whole, in 1-byte chunks and in {@link RANDOM_CHUNKINGS} random chunkings (chunk memory varied too), and
 * returns the violated invariants, one line each, prefixed `[1 no-throw]`, `[2 chunking]`, `[3 memory]` or
 * `[4 after-close]`. An empty list means all held. When the maximum message size is above 64 KiB, a pass with a
 * small limit is added (whole and 1-byte chunks in exact-size buffers).
 *
 * `harness` builds the protocol and its recorder; tests pass a deliberately broken one to prove the checker
 * catches it. `rng` only chooses chunkings: the same rng state gives the same runs.
 */
export function checkInput(role: 'server' | 'client', options: FuzzOptions, bytes: Uint8Array, rng: Rng, harness: Harness = recorder): string[] {
  const violations: string[] = [];
  const add = (list: string[]): void => {
    for (const v of list) if (!violations.includes(v) && violations.length < 40) violations.push(v);
  };
  const pass = (opts: FuzzOptions, chunkings: Chunking[], label: string): void => {
    const full: ProtocolOptions = { ...opts, role, maskSource: fixedMask };
    const runs: RunResult[] = [];
    for (const chunking of chunkings) {
      let run: RunResult;
      try {
        run = runOnce(full, bytes, { ...chunking, name: label + chunking.name }, rng, harness);
      } catch (error) {
        // A throw from the handler plumbing, not from receive (which runOnce catches): still a failure.
        add([`[1 no-throw] [${label}${chunking.name}] ${error instanceof Error ? error.message : String(error)}`]);
        continue;
      }
      add(run.violations);
      runs.push(run);
    }
    for (const run of runs.slice(1)) {
      const difference = compareRuns(runs[0], run);
      if (difference) add([difference]);
    }
  };

  const alloc = (): Allocation => rng.pick(['exact', 'pooled', 'arena'] as const);
  const chunkings: Chunking[] = [
    { name: 'whole', cuts: [], allocation: rng.pick(['exact', 'pooled'] as const) },
    { name: '1-byte', cuts: oneByteCuts(bytes.length), allocation: rng.chance(0.6) ? 'exact' : 'pooled' },
  ];
  for (let i = 0; i < RANDOM_CHUNKINGS; i++) {
    const cuts = randomCuts(rng, bytes.length);
    chunkings.push({ name: `random#${i + 1}(${cuts.length + 1} chunks)`, cuts, allocation: alloc() });
  }
  for (const c of chunkings) c.name = `${c.name}/${c.allocation}`;
  pass(options, chunkings, '');

  const limit = options.maxMessageSize ?? PROTOCOL_DEFAULTS.maxMessageSize;
  if (limit > 65536) {
    const small = rng.pick(SMALL_LIMITS);
    const label = `maxMessageSize=${small}:`;
    pass(
      { ...options, maxMessageSize: small },
      [
        { name: 'whole/exact', cuts: [], allocation: 'exact' },
        bytes.length <= 20000 ? { name: '1-byte/exact', cuts: oneByteCuts(bytes.length), allocation: 'exact' } : { name: 'random/exact', cuts: randomCuts(rng, bytes.length), allocation: 'exact' },
      ],
      label,
    );
  }
  return violations;
}

/** One generated fuzz case for {@link checkInput}. */
export interface FuzzCase {
  options: FuzzOptions;
  bytes: Buffer;
  /** How the bytes were made: `generated`, `mutated` or `spliced`. */
  origin: string;
}

/**
 * A random case for `role`: random options, and a generated stream, as is (45%) or mutated (55%, sometimes
 * spliced with a second stream).
 */
export function fuzzCase(role: 'server' | 'client', rng: Rng): FuzzCase {
  const options = randomOptions(rng);
  const stream = generateStream(role, rng, options);
  const kind = rng.weighted([[45, 'generated'], [40, 'mutated'], [15, 'spliced']] as const);
  if (kind === 'generated') return { options, bytes: stream, origin: kind };
  const donor = kind === 'spliced' ? generateStream(role, rng, options) : undefined;
  return { options, bytes: mutate(stream, rng, donor), origin: kind };
}

// ───────────────────────────── round trip ─────────────────────────────

/** A mask source drawing keys from `rng` (all-zero keys sometimes). */
export function rngMaskSource(rng: Rng): MaskSource {
  return (target, offset) => {
    if (rng.chance(0.05)) target.fill(0, offset, offset + 4);
    else target.set(rng.bytes(4), offset);
  };
}

/** Sizes for round-trip messages: 0 to ~200 KB, across the 7/16/64-bit length boundaries. */
function roundTripSize(rng: Rng): number {
  return rng.weighted([[50, () => rng.int(200)], [20, () => rng.pick(SIZE_BOUNDARIES)], [20, () => rng.int(5000)], [5, () => rng.int(70000)], [5, () => rng.int(200_001)]] as const)();
}

/** The bytes as one of the types `send` accepts: Buffer, Uint8Array, ArrayBuffer or DataView. */
function asData(rng: Rng, bytes: Buffer): Buffer | Uint8Array | ArrayBuffer | DataView {
  switch (rng.int(4)) {
    case 0:
      return bytes;
    case 1:
      return new Uint8Array(bytes);
    case 2:
      return new Uint8Array(bytes).buffer;
    default: {
      const copy = new Uint8Array(bytes.length + 8);
      copy.set(bytes, 3);
      return new DataView(copy.buffer, 3, bytes.length);
    }
  }
}

/** Splits a string into `count` pieces at random UTF-16 positions, never inside a surrogate pair. */
function splitString(rng: Rng, text: string, count: number): string[] {
  const cuts: number[] = [];
  for (let i = 1; i < count; i++) {
    let at = rng.int(text.length + 1);
    const c = text.charCodeAt(at - 1);
    if (at > 0 && at < text.length && c >= 0xd800 && c <= 0xdbff) at++;
    cuts.push(at);
  }
  cuts.sort((x, y) => x - y);
  const out: string[] = [];
  let at = 0;
  for (const cut of [...cuts, text.length]) {
    out.push(text.slice(at, cut));
    at = cut;
  }
  return out;
}

/** The outcome of {@link checkRoundTrip}. */
export interface RoundTripReport {
  /** Violations, one line each, prefixed `[roundtrip]`; empty when everything round-tripped. */
  violations: string[];
  senderRole: 'server' | 'client';
  receiverRole: 'server' | 'client';
  /** Everything the sender wrote: the input the receiver parsed. */
  wire: Buffer;
  /** Messages sent. */
  messages: number;
}

/**
 * Sends random messages from one role (client or server, chosen by `rng`; a client masks with keys from `rng`):
 * text (multibyte and astral included) and binary of 0 to ~200 KB, whole or fragmented with `sendFragment`
 * (text split inside code points when sent as bytes), with pings and pongs interleaved, then a close with a
 * random code and reason. The bytes are parsed by the other role in random chunks, and the events must be
 * exactly the messages, pings (each answered) and pongs sent, then the close code and reason. The receiver's
 * close reply is fed back to the sender, which must report the close and send nothing more.
 */
export function checkRoundTrip(rng: Rng): RoundTripReport {
  const senderRole = rng.chance(0.5) ? 'client' : 'server';
  const receiverRole = senderRole === 'client' ? 'server' : 'client';
  const violations: string[] = [];
  const sender = recorder({ role: senderRole, maskSource: rngMaskSource(rng) });
  const p = sender.protocol;
  const expected: Event[] = [];
  const receiverMask = receiverRole === 'client' ? MASK : null;

  const control = (): void => {
    const payload = rng.chance(0.3) ? Buffer.from(randomText(rng, rng.int(126))) : rng.bytes(rng.chance(0.2) ? 125 : rng.int(126));
    if (rng.chance(0.6)) {
      p.ping(rng.chance(0.5) ? payload : asData(rng, payload));
      expected.push(['write', rawFrame({ opcode: Opcode.PONG, payload, mask: receiverMask }).toString('hex')], ['ping', payload.toString('hex')]);
    } else {
      p.pong(payload);
      expected.push(['pong', payload.toString('hex')]);
    }
  };

  const count = rng.range(1, 6);
  for (let m = 0; m < count; m++) {
    const isText = rng.chance(0.5);
    const size = roundTripSize(rng);
    const text = isText ? randomText(rng, size) : '';
    const bytes = isText ? Buffer.from(text) : rng.bytes(size);
    const message: Event = ['message', isText ? text : bytes.toString('hex'), !isText, false];
    if (rng.chance(0.35)) {
      const pieces = rng.range(1, 8);
      const asStrings = isText && rng.chance(0.4);
      const parts: Array<string | Buffer> = asStrings ? splitString(rng, text, pieces) : splitBytes(rng, bytes, pieces);
      parts.forEach((part, k) => {
        const data = typeof part === 'string' ? part : asData(rng, part);
        if (!p.sendFragment(data, k === parts.length - 1, !isText)) violations.push(`[roundtrip] sendFragment returned false before the close`);
        if (k < parts.length - 1) while (rng.chance(0.3)) control();
      });
      expected.push(message); // after the control frames sent between its fragments
    } else {
      expected.push(message);
      const sent = isText ? (rng.chance(0.5) ? p.send(text) : p.send(asData(rng, bytes), false)) : p.send(asData(rng, bytes));
      if (!sent) violations.push(`[roundtrip] send returned false before the close`);
    }
    while (rng.chance(0.2)) control();
  }
  const code = rng.chance(0.85) ? (rng.chance(0.7) ? rng.pick(VALID_CLOSE_CODES) : rng.range(3000, 4999)) : undefined;
  let reason = '';
  if (code !== undefined && rng.chance(0.6)) reason = randomText(rng, rng.chance(0.2) ? 123 : rng.int(124));
  p.close(code, reason);
  const echo = closeHex(receiverRole, code);
  expected.push(['write', echo], ['close', code ?? CloseCode.NO_STATUS, reason]);
  if (receiverRole === 'server') expected.push(['end']);

  const stray = sender.events.find((e) => e[0] !== 'write');
  if (stray) violations.push(`[roundtrip] the ${senderRole} reported ${show(stray)} while only sending`);
  const wire = Buffer.concat(sender.written);
  const cuts = randomCuts(rng, wire.length);
  const got = feedSplit({ role: receiverRole, maskSource: fixedMask }, wire, cuts);
  if (JSON.stringify(got) !== JSON.stringify(expected)) {
    let i = 0;
    while (i < got.length && i < expected.length && JSON.stringify(got[i]) === JSON.stringify(expected[i])) i++;
    violations.push(
      `[roundtrip] ${senderRole} → ${receiverRole} (${wire.length} bytes, ${cuts.length + 1} chunks): event #${i} is ${show(got[i])}, expected ${show(expected[i])} (${got.length} vs ${expected.length} events)`,
    );
  }

  // The closing handshake back: the sender gets the reply, reports the close, and writes nothing more.
  const before = sender.events.length;
  try {
    p.receive(Buffer.from(echo, 'hex'));
  } catch (error) {
    violations.push(`[roundtrip] the ${senderRole} threw on the close reply: ${String(error)}`);
  }
  const after = sender.events.slice(before);
  const wanted: Event[] = [['close', code ?? CloseCode.NO_STATUS, '']];
  if (senderRole === 'server') wanted.push(['end']);
  if (JSON.stringify(after) !== JSON.stringify(wanted)) {
    violations.push(`[roundtrip] the ${senderRole} answered the close reply with ${JSON.stringify(after).slice(0, 200)}, expected ${JSON.stringify(wanted)}`);
  }
  if (p.closeCode !== (code ?? CloseCode.NO_STATUS)) violations.push(`[roundtrip] the ${senderRole}'s closeCode is ${p.closeCode}, expected ${code ?? CloseCode.NO_STATUS}`);
  if (p.send('late') !== false) violations.push(`[roundtrip] send after the close handshake did not return false`);
  return { violations, senderRole, receiverRole, wire, messages: count };
}

// ───────────────────────────── campaign ─────────────────────────────

/** A violation found by {@link runCampaign}, with what is needed to save and replay it. */
export interface Finding {
  /** `server` or `client` (checkInput) or `roundtrip`. */
  target: 'server' | 'client' | 'roundtrip';
  /** The role whose protocol parsed `bytes`. */
  role: 'server' | 'client';
  options: FuzzOptions;
  /** The failing input (for a round trip: the bytes the receiver parsed). */
  bytes: Buffer;
  /** Seed of the iteration: {@link replaySeed} rebuilds the case, {@link checkRoundTrip}(`createRng(seed)`) the round trip. */
  seed: number;
  /** Seed of the rng given to {@link checkInput} (chunkings): {@link checkSeedOf}(`seed`). */
  checkSeed: number;
  iteration: number;
  violations: string[];
}

/** Counters of a {@link runCampaign}. */
export interface CampaignStats {
  iterations: number;
  inputs: { server: number; client: number };
  roundTrips: number;
  /** Input bytes checked (each through several chunkings). */
  bytes: number;
  /** Failing iterations (with at least one violation). */
  findings: number;
  elapsedMs: number;
}

/** Settings of {@link runCampaign}. */
export interface CampaignOptions {
  /** Wall-clock budget (the fuzzer CLI). At least one of `seconds` and `iterations` must be given. */
  seconds?: number;
  /**
   * Run exactly this many iterations (unless `seconds` runs out first): with a fixed seed the run is then fully
   * deterministic, whatever the machine's load (tests use this).
   */
  iterations?: number;
  /** Master seed; iteration seeds are drawn from it. */
  seed: number;
  roles: ReadonlyArray<'server' | 'client'>;
  /** One iteration in this many is a round trip (0: none). Default 12. */
  roundTripEvery?: number;
  /** Called for every failing iteration. */
  onFinding?: (finding: Finding) => void;
  /** Called about every `progressMs` milliseconds. */
  onProgress?: (stats: CampaignStats) => void;
  progressMs?: number;
}

/**
 * Runs fuzz iterations until `seconds` have passed or `iterations` have run: each draws a seed from the master rng
 * and is then fully determined by it, either {@link fuzzCase} + {@link checkInput} for one of `roles` in turn, or a
 * {@link checkRoundTrip}. The same seed gives the same sequence of iterations (with only `seconds`, how many fit in
 * the time varies).
 */
export function runCampaign(options: CampaignOptions): CampaignStats {
  const master = createRng(options.seed);
  const every = options.roundTripEvery ?? 12;
  const started = Date.now();
  const deadline = campaignDeadline(started, options);
  const maxIterations = options.iterations ?? Infinity;
  const progressMs = options.progressMs ?? 5000;
  let nextProgress = started + progressMs;
  const stats: CampaignStats = { iterations: 0, inputs: { server: 0, client: 0 }, roundTrips: 0, bytes: 0, findings: 0, elapsedMs: 0 };
  let turn = 0;
  const report = (finding: Finding): void => {
    stats.findings++;
    options.onFinding?.(finding);
  };
  for (;;) {
    const now = Date.now();
    if (now >= deadline || stats.iterations >= maxIterations) break;
    if (options.onProgress && now >= nextProgress) {
      stats.elapsedMs = now - started;
      options.onProgress({ ...stats, inputs: { ...stats.inputs } });
      nextProgress += progressMs;
    }
    const iteration = stats.iterations++;
    const seed = master.u32();
    if (every > 0 && iteration % every === every - 1) {
      stats.roundTrips++;
      const trip = checkRoundTrip(createRng(seed));
      stats.bytes += trip.wire.length;
      if (trip.violations.length > 0) {
        report({ target: 'roundtrip', role: trip.receiverRole, options: {}, bytes: trip.wire, seed, checkSeed: checkSeedOf(seed), iteration, violations: trip.violations });
      }
      continue;
    }
    const role = options.roles[turn++ % options.roles.length];
    stats.inputs[role]++;
    const { options: fuzzOptions, bytes } = replaySeed(role, seed);
    stats.bytes += bytes.length;
    const checkSeed = checkSeedOf(seed);
    const violations = checkInput(role, fuzzOptions, bytes, createRng(checkSeed));
    if (violations.length > 0) report({ target: role, role, options: fuzzOptions, bytes, seed, checkSeed, iteration, violations });
  }
  stats.elapsedMs = Date.now() - started;
  return stats;
}

/**
 * When a campaign started at `started` must stop by the clock (Infinity without `seconds`); throws a RangeError
 * when neither a positive `seconds` nor a non-negative integer `iterations` bounds it.
 */
export function campaignDeadline(started: number, options: { seconds?: number; iterations?: number }): number {
  const { seconds, iterations } = options;
  if (seconds !== undefined && !(seconds > 0)) throw new RangeError(`seconds must be a positive number, not ${seconds}`);
  if (iterations !== undefined && !(Number.isInteger(iterations) && iterations >= 0)) throw new RangeError(`iterations must be a non-negative integer, not ${iterations}`);
  if (seconds === undefined && iterations === undefined) throw new RangeError('give seconds or iterations (or both) to bound the campaign');
  return seconds === undefined ? Infinity : started + seconds * 1000;
}

/** The seed of the rng a {@link runCampaign} iteration gives {@link checkInput}, derived from the iteration's seed. */
export function checkSeedOf(seed: number): number {
  return (seed ^ 0x5bd1e995) >>> 0;
}

/**
 * The case of a {@link runCampaign} iteration, from its seed: `checkInput(role, options, bytes,
 * createRng(checkSeedOf(seed)))` repeats it exactly.
 */
export function replaySeed(role: 'server' | 'client', seed: number): FuzzCase {
  return fuzzCase(role, createRng(seed));
}
