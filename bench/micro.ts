/**
 * Microbenchmarks of the protocol core side by side with ws, in one run.
 *
 * Four engines, each measured in its own child process, one after another, so that the JIT state (inline
 * caches, optimized code, GC pressure) of one never affects another:
 *
 * - `ours`: this package's core (`Protocol`, `encodeFrame`/`encodeTextFrame`, `xorMask`/`xorMaskCopy`, `isValidUtf8`).
 * - `ws-native`: ws's own modules as ws loads them by default when bufferutil and utf-8-validate are installed.
 * - `ws-js`: ws in pure-JS mode: `WS_NO_BUFFER_UTIL=1 WS_NO_UTF_8_VALIDATE=1` (read by ws at module load, hence
 *   the separate process), and with `buffer.isUtf8` / `http.websocketMask` hidden while ws loads so that its
 *   JavaScript fallbacks are what gets measured (on Node ≥ 18.14 ws otherwise prefers `buffer.isUtf8` for
 *   UTF-8 of 24 bytes and more, even with `WS_NO_UTF_8_VALIDATE`).
 * - `addons`: the native addons called directly: bufferutil's `mask`/`unmask` and utf-8-validate.
 *
 * The sequence of four processes runs `passes` times (engines alternating), and the batches are merged; see
 * `bench/README.md` for the timing method and how to read the tables.
 *
 * The same file is the worker: `node --import tsx bench/micro.ts --worker ENGINE [--quick] [--only PATTERN]`
 * prints one JSON object on stdout (progress goes to stderr).
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { engineEnv, pseudoRandom } from './e2e/common.js';

// ───────────────────────────── scenarios ─────────────────────────────

export type Group = 'parse' | 'serialize' | 'mask' | 'unmask' | 'utf8';
export type EngineName = 'ours' | 'ws-native' | 'ws-js' | 'addons';

export const GROUPS: readonly Group[] = ['parse', 'serialize', 'mask', 'unmask', 'utf8'];
export const ENGINE_NAMES: readonly EngineName[] = ['ours', 'ws-native', 'ws-js', 'addons'];

/** Which groups each engine takes part in. */
const ENGINE_GROUPS: Record<EngineName, readonly Group[]> = {
  ours: GROUPS,
  'ws-native': GROUPS,
  'ws-js': GROUPS,
  addons: ['mask', 'unmask', 'utf8'],
};

interface Scenario {
  /** `group/name`, stable across runs (used in the JSON and by `--only`). */
  id: string;
  group: Group;
  /** Shown in the tables. */
  label: string;
  /** Payload size in bytes. */
  size: number;
  /** Payload bytes processed by one operation (for MB/s). */
  bytes: number;
  /** parse: text frame (else binary). serialize: payload given as a string. */
  text?: boolean;
  /** parse: bytes per read (a frame is split into reads of this size; default: the whole frame in one read). */
  readSize?: number;
  /** parse: drive ws's Receiver through `_write` (its parser alone) instead of `write` (what ws's socket handler calls). */
  wsDirect?: boolean;
  /** serialize: `client` masks (as a client must), `server` does not. */
  role?: 'server' | 'client';
  /** utf8: multibyte content (else ASCII). */
  multibyte?: boolean;
}

const KiB = 1024;
const MiB = 1024 * 1024;

function sizeName(n: number): string {
  return n >= MiB ? `${n / MiB} MiB` : n >= KiB ? `${n / KiB} KiB` : `${n} B`;
}

function sizeId(n: number): string {
  return n >= MiB ? `${n / MiB}m` : n >= KiB ? `${n / KiB}k` : `${n}`;
}

function buildScenarios(): Scenario[] {
  const list: Scenario[] = [];
  const add = (s: Omit<Scenario, 'bytes'> & { bytes?: number }): void => {
    list.push({ ...s, bytes: s.bytes ?? s.size });
  };
  // parse: one op = one masked message, received by a server.
  add({ id: 'parse/text-20', group: 'parse', label: '20 B masked text', size: 20, text: true });
  add({ id: 'parse/text-20-direct', group: 'parse', label: '20 B masked text, ws via _write', size: 20, text: true, wsDirect: true });
  for (const size of [125, 64 * KiB, MiB]) {
    add({ id: `parse/bin-${sizeId(size)}`, group: 'parse', label: `${sizeName(size)} masked binary`, size });
  }
  add({ id: 'parse/bin-1m-reads-64k', group: 'parse', label: '1 MiB masked binary, 64 KiB reads', size: MiB, readSize: 64 * KiB });
  // serialize: one op = one frame built from the payload.
  for (const role of ['server', 'client'] as const) {
    const how = role === 'server' ? 'unmasked' : 'masked';
    add({ id: `serialize/text-20-${role}`, group: 'serialize', label: `20 B text string, ${role} (${how})`, size: 20, text: true, role });
    for (const size of [125, 64 * KiB, MiB]) {
      add({ id: `serialize/bin-${sizeId(size)}-${role}`, group: 'serialize', label: `${sizeName(size)} binary, ${role} (${how})`, size, role });
    }
  }
  for (const group of ['mask', 'unmask'] as const) {
    for (const size of [16, 125, 64 * KiB, MiB]) add({ id: `${group}/${sizeId(size)}`, group, label: sizeName(size), size });
  }
  for (const multibyte of [false, true]) {
    for (const size of [20, 125, 64 * KiB]) {
      const kind = multibyte ? 'multibyte' : 'ascii';
      add({ id: `utf8/${kind}-${sizeId(size)}`, group: 'utf8', label: `${sizeName(size)} ${kind}`, size, multibyte });
    }
  }
  return list;
}

export const SCENARIOS: readonly Scenario[] = buildScenarios();

// ───────────────────────────── shared inputs ─────────────────────────────

/** Limit given to both parsers (ours: maxMessageSize, ws: maxPayload). */
const MAX_MESSAGE = 64 * MiB;
/** Masking key used by the parse frames and the mask/unmask group (RFC 6455 §5.7's example key). */
const KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
/** Bytes of pre-built frames per parse pool (plus as much again for the pristine copy). */
const POOL_BYTES = 4 * MiB;
const POOL_MAX_FRAMES = 8192;


function asciiText(size: number): string {
  const alphabet = 'The quick brown fox jumps over the lazy dog 0123456789. ';
  let s = '';
  for (let i = 0; i < size; i++) s += alphabet[i % alphabet.length];
  return s;
}

/** Exactly `size` bytes of UTF-8 mixing 2-, 3- and 4-byte sequences (padded with ASCII). */
function multibyteText(size: number): string {
  const pieces = ['é', 'ß', 'ж', '€', '中', '文', '😀', '🚀', 'a'];
  let s = '';
  let bytes = 0;
  for (let i = 0; ; i++) {
    const piece = pieces[i % pieces.length];
    const n = Buffer.byteLength(piece);
    if (bytes + n > size) break;
    s += piece;
    bytes += n;
  }
  return s + 'a'.repeat(size - bytes);
}

function payloadFor(s: Scenario): Buffer {
  if (s.text) return Buffer.from(asciiText(s.size));
  if (s.group === 'utf8') return Buffer.from(s.multibyte ? multibyteText(s.size) : asciiText(s.size));
  return pseudoRandom(s.size);
}

/** Header size of a masked frame (the offset at which a payload starts in a client frame). */
function maskedHeaderSize(length: number): number {
  return (length < 126 ? 2 : length < 65536 ? 4 : 10) + 4;
}

/** A masked frame built by the benchmark itself (neither engine's code), so both parse identical bytes. */
function maskedFrame(opcode: number, payload: Uint8Array, key: Uint8Array): Buffer {
  const length = payload.length;
  const hs = maskedHeaderSize(length);
  const out = Buffer.alloc(hs + length);
  out[0] = 0x80 | opcode;
  if (length < 126) {
    out[1] = 0x80 | length;
  } else if (length < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(length, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(length), 2);
  }
  out.set(key, hs - 4);
  for (let i = 0; i < length; i++) out[hs + i] = payload[i] ^ key[i & 3];
  return out;
}

interface FramePool {
  /** Every read of every copy, in order; each read is its own ArrayBuffer, as a socket read is. */
  reads: Buffer[];
  readsPerFrame: number;
  frames: number;
  /** Restores the masked bytes of the first `n` frames (receivers unmask in place). Not timed. */
  refill(n: number): void;
}

/**
 * N pre-built copies of a masked frame, each split into reads. The parsers unmask in place, so `refill`
 * (outside the timed region) restores the first n copies before every timed round: both engines get fresh
 * masked bytes at identical, untimed cost.
 */
function framePool(s: Scenario): FramePool {
  const frame = maskedFrame(s.text ? 0x1 : 0x2, payloadFor(s), KEY);
  const readSize = s.readSize ?? frame.length;
  const slices: Buffer[] = [];
  for (let at = 0; at < frame.length; at += readSize) slices.push(frame.subarray(at, Math.min(frame.length, at + readSize)));
  const frames = Math.max(2, Math.min(POOL_MAX_FRAMES, Math.floor(POOL_BYTES / frame.length)));
  const reads: Buffer[] = [];
  for (let f = 0; f < frames; f++) {
    for (const slice of slices) {
      const read = Buffer.allocUnsafeSlow(slice.length);
      read.set(slice);
      reads.push(read);
    }
  }
  const readsPerFrame = slices.length;
  return {
    reads,
    readsPerFrame,
    frames,
    refill(n) {
      const end = n * readsPerFrame;
      for (let i = 0; i < end; i++) reads[i].set(slices[i % readsPerFrame]);
    },
  };
}

/**
 * The checksum `run(1)` must return, checked once per engine before timing: parse → length + last payload
 * byte (so unmasking is checked), serialize → frame length, mask/unmask → first + last output byte, utf8 → 1.
 */
function expectedOnce(s: Scenario): number {
  const payload = payloadFor(s);
  const last = payload.length - 1;
  switch (s.group) {
    case 'parse':
      return payload.length + payload[last];
    case 'serialize':
      return (s.role === 'client' ? maskedHeaderSize(s.size) : maskedHeaderSize(s.size) - 4) + s.size;
    case 'mask':
    case 'unmask':
      return (payload[0] ^ KEY[0]) + (payload[last] ^ KEY[last & 3]);
    case 'utf8':
      return 1;
  }
}

// ───────────────────────────── engines ─────────────────────────────

/** One scenario ready to time: `run(n)` performs n operations and returns a checksum that keeps results alive. */
interface Case {
  run(n: number): number;
  /** Untimed preparation before each timed round of n operations. */
  prepare?(n: number): void;
  /** Largest n `run` accepts (the size of a pre-built pool). */
  maxRound?: number;
}

interface Engine {
  meta: Record<string, unknown>;
  build(s: Scenario): Case | null;
}

type Core = typeof import('../lib/core/index.js');

async function loadOurs(): Promise<Engine> {
  const core: Core = await import('../lib/core/index.js');
  const { Protocol, encodeFrame, encodeTextFrame, xorMask, xorMaskCopy, isValidUtf8, randomMask, Opcode } = core;
  const noop = (): void => {};
  return {
    meta: { simdAvailable: core.simdAvailable, WSENGINE_NO_SIMD: process.env.WSENGINE_NO_SIMD ?? null },
    build(s) {
      switch (s.group) {
        case 'parse': {
          let got = 0;
          const protocol = new Protocol(
            { role: 'server', maxMessageSize: MAX_MESSAGE },
            {
              onMessage(data) {
                got += data.length + data[data.length - 1];
              },
              onPing: noop,
              onPong: noop,
              onClose: noop,
              onError(error) {
                throw error;
              },
              onWrite: noop,
              onEnd: noop,
            },
          );
          const pool = framePool(s);
          return {
            maxRound: pool.frames,
            prepare: pool.refill,
            run(n) {
              const reads = pool.reads;
              const end = n * pool.readsPerFrame;
              for (let i = 0; i < end; i++) protocol.receive(reads[i]);
              const sum = got;
              got = 0;
              return sum;
            },
          };
        }
        case 'serialize': {
          const mask = s.role === 'client' ? randomMask : null;
          if (s.text) {
            const text = asciiText(s.size);
            return {
              run(n) {
                let sum = 0;
                for (let i = 0; i < n; i++) sum += encodeTextFrame(text, true, false, mask).length;
                return sum;
              },
            };
          }
          const payload = payloadFor(s);
          return {
            run(n) {
              let sum = 0;
              for (let i = 0; i < n; i++) {
                const frame = encodeFrame(Opcode.BINARY, payload, true, false, mask);
                sum += Array.isArray(frame) ? frame[0].length + frame[1].length : frame.length;
              }
              return sum;
            },
          };
        }
        case 'mask': {
          const src = payloadFor(s);
          const at = maskedHeaderSize(s.size);
          const dst = Buffer.allocUnsafeSlow(at + s.size);
          const [k0, k1, k2, k3] = KEY;
          const last = at + s.size - 1;
          return {
            run(n) {
              for (let i = 0; i < n; i++) xorMaskCopy(src, dst, at, k0, k1, k2, k3);
              return dst[at] + dst[last];
            },
          };
        }
        case 'unmask': {
          const at = maskedHeaderSize(s.size);
          const buf = Buffer.allocUnsafeSlow(at + s.size);
          buf.set(payloadFor(s), at);
          const end = at + s.size;
          const [k0, k1, k2, k3] = KEY;
          return {
            // Unmasking twice restores the input, so no refill is needed (the checksum alternates).
            run(n) {
              for (let i = 0; i < n; i++) xorMask(buf, at, end, k0, k1, k2, k3);
              return buf[at] + buf[end - 1];
            },
          };
        }
        case 'utf8': {
          const data = payloadFor(s);
          return {
            run(n) {
              let ok = 0;
              for (let i = 0; i < n; i++) if (isValidUtf8(data)) ok++;
              return ok === n ? 1 : 0;
            },
          };
        }
      }
    },
  };
}

interface WsReceiver {
  write(chunk: Buffer): boolean;
  _write(chunk: Buffer, encoding: string, callback: (error?: Error | null) => void): void;
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
}
type WsReceiverClass = new (options: { isServer: boolean; maxPayload: number; skipUTF8Validation: boolean }) => WsReceiver;
/** The options object ws's `Sender#send` builds (less its private `kByteLength` symbol, see the serialize note). */
interface WsFrameOptions {
  fin: boolean;
  generateMask: undefined;
  mask: boolean;
  maskBuffer: undefined;
  opcode: number;
  readOnly: boolean;
  rsv1: boolean;
}
interface WsSenderClass {
  frame(data: Buffer | string, options: WsFrameOptions): Buffer[];
}
interface WsBufferUtil {
  mask(source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number): void;
  unmask(buffer: Buffer, mask: Buffer): void;
}
interface WsValidation {
  isValidUTF8(buf: Buffer): boolean;
}

function isNative(fn: unknown): boolean {
  return typeof fn === 'function' && Function.prototype.toString.call(fn).includes('[native code]');
}

function loadWs(pureJs: boolean): Engine {
  const require = createRequire(import.meta.url);
  const wsDir = dirname(require.resolve('ws'));
  const bufferModule = require('node:buffer') as { isUtf8?: unknown };
  const httpModule = require('node:http') as { websocketMask?: unknown; websocketUnmask?: unknown };
  const saved = { isUtf8: bufferModule.isUtf8, websocketMask: httpModule.websocketMask, websocketUnmask: httpModule.websocketUnmask };
  if (pureJs) {
    // ws picks its implementations once, at load: hide the runtime's native helpers while it loads.
    bufferModule.isUtf8 = undefined;
    if (saved.websocketMask !== undefined) httpModule.websocketMask = undefined;
    if (saved.websocketUnmask !== undefined) httpModule.websocketUnmask = undefined;
  }
  let Receiver: WsReceiverClass;
  let Sender: WsSenderClass;
  let bufferUtil: WsBufferUtil;
  let validation: WsValidation;
  try {
    Receiver = require(join(wsDir, 'lib/receiver.js')) as WsReceiverClass;
    Sender = require(join(wsDir, 'lib/sender.js')) as WsSenderClass;
    bufferUtil = require(join(wsDir, 'lib/buffer-util.js')) as WsBufferUtil;
    validation = require(join(wsDir, 'lib/validation.js')) as WsValidation;
  } finally {
    bufferModule.isUtf8 = saved.isUtf8;
    if (saved.websocketMask !== undefined) httpModule.websocketMask = saved.websocketMask;
    if (saved.websocketUnmask !== undefined) httpModule.websocketUnmask = saved.websocketUnmask;
  }
  const version = (require(join(wsDir, 'package.json')) as { version: string }).version;
  const { mask, unmask } = bufferUtil;
  const { isValidUTF8 } = validation;
  const noop = (): void => {};
  // What ws ended up with: its JS functions keep their names (`_mask`, `_isValidUTF8`); the wrappers that
  // dispatch to an addon or to a runtime helper by size are anonymous.
  const impl = (fn: { name: string }, js: string): string => (fn.name === js ? `pure JS (${js})` : 'size-dispatching wrapper');
  let bufferutilLoaded = false;
  let utf8ValidateLoaded = false;
  for (const id of Object.keys(require.cache)) {
    if (id.includes('/node_modules/bufferutil/')) bufferutilLoaded = true;
    if (id.includes('/node_modules/utf-8-validate/')) utf8ValidateLoaded = true;
  }
  return {
    meta: {
      ws: version,
      WS_NO_BUFFER_UTIL: process.env.WS_NO_BUFFER_UTIL ?? null,
      WS_NO_UTF_8_VALIDATE: process.env.WS_NO_UTF_8_VALIDATE ?? null,
      mask: impl(mask, '_mask'),
      unmask: impl(unmask, '_unmask'),
      isValidUTF8: impl(isValidUTF8, '_isValidUTF8'),
      bufferutilLoaded,
      utf8ValidateLoaded,
      runtimeIsUtf8: !pureJs && typeof saved.isUtf8 === 'function',
      runtimeWebsocketMask: !pureJs && typeof saved.websocketMask === 'function',
    },
    build(s) {
      switch (s.group) {
        case 'parse': {
          // As ws's WebSocket builds it for a server connection (allowSynchronousEvents defaults to true).
          const receiver = new Receiver({ isServer: true, maxPayload: MAX_MESSAGE, skipUTF8Validation: false });
          let got = 0;
          receiver.on('message', (data) => {
            got += data.length + data[data.length - 1];
          });
          receiver.on('error', (error) => {
            throw error;
          });
          const pool = framePool(s);
          const done = (): number => {
            const sum = got;
            got = 0;
            return sum;
          };
          if (s.wsDirect) {
            return {
              maxRound: pool.frames,
              prepare: pool.refill,
              run(n) {
                const reads = pool.reads;
                const end = n * pool.readsPerFrame;
                for (let i = 0; i < end; i++) receiver._write(reads[i], 'buffer', noop);
                return done();
              },
            };
          }
          return {
            maxRound: pool.frames,
            prepare: pool.refill,
            // ws's socket 'data' handler calls `receiver.write(chunk)` (a Writable) for every read.
            run(n) {
              const reads = pool.reads;
              const end = n * pool.readsPerFrame;
              for (let i = 0; i < end; i++) receiver.write(reads[i]);
              return done();
            },
          };
        }
        case 'serialize': {
          const masked = s.role === 'client';
          if (s.text) {
            const text = asciiText(s.size);
            return {
              // ws's `send(string)`: Buffer.byteLength, then `Sender.frame`. Masked, frame converts the string with
              // Buffer.from and masks it in place. Unmasked, ws hands the string to the socket, which encodes it;
              // the Buffer.from that `frame` does here (its private kByteLength option is out of reach) stands in
              // for that encoding, so both sides produce the frame's bytes.
              run(n) {
                let sum = 0;
                for (let i = 0; i < n; i++) {
                  const byteLength = Buffer.byteLength(text);
                  const list = Sender.frame(text, {
                    fin: true,
                    generateMask: undefined,
                    mask: masked,
                    maskBuffer: undefined,
                    opcode: 0x1,
                    readOnly: false,
                    rsv1: false,
                  });
                  sum += list[0].length + byteLength;
                }
                return sum;
              },
            };
          }
          const payload = payloadFor(s);
          return {
            // ws's `send(buffer)`: toBuffer marks a Buffer readOnly, so a masked frame is copied while masked
            // (the caller's buffer is left intact), as ours does.
            run(n) {
              let sum = 0;
              for (let i = 0; i < n; i++) {
                const list = Sender.frame(payload, {
                  fin: true,
                  generateMask: undefined,
                  mask: masked,
                  maskBuffer: undefined,
                  opcode: 0x2,
                  readOnly: true,
                  rsv1: false,
                });
                sum += list.length === 1 ? list[0].length : list[0].length + list[1].length;
              }
              return sum;
            },
          };
        }
        case 'mask':
          return maskCase(s, mask);
        case 'unmask':
          return unmaskCase(s, unmask);
        case 'utf8': {
          const data = payloadFor(s);
          return {
            run(n) {
              let ok = 0;
              for (let i = 0; i < n; i++) if (isValidUTF8(data)) ok++;
              return ok === n ? 1 : 0;
            },
          };
        }
      }
    },
  };
}

/** bufferutil-style `mask(source, mask, output, offset, length)`: into a frame buffer behind its header. */
function maskCase(s: Scenario, mask: WsBufferUtil['mask']): Case {
  const src = payloadFor(s);
  const at = maskedHeaderSize(s.size);
  const dst = Buffer.allocUnsafeSlow(at + s.size);
  const last = at + s.size - 1;
  return {
    run(n) {
      for (let i = 0; i < n; i++) mask(src, KEY, dst, at, s.size);
      return dst[at] + dst[last];
    },
  };
}

/** bufferutil-style `unmask(buffer, mask)` of a payload that sits behind its header in a read, as a view. */
function unmaskCase(s: Scenario, unmask: WsBufferUtil['unmask']): Case {
  const at = maskedHeaderSize(s.size);
  const buf = Buffer.allocUnsafeSlow(at + s.size);
  buf.set(payloadFor(s), at);
  const view = buf.subarray(at, at + s.size);
  const end = at + s.size;
  return {
    run(n) {
      for (let i = 0; i < n; i++) unmask(view, KEY);
      return buf[at] + buf[end - 1];
    },
  };
}

function loadAddons(): Engine {
  const require = createRequire(import.meta.url);
  const bufferutil = require('bufferutil') as WsBufferUtil;
  const utf8Validate = require('utf-8-validate') as (buf: Buffer) => boolean;
  const version = (name: string): string => (require(`${name}/package.json`) as { version: string }).version;
  return {
    meta: {
      bufferutil: version('bufferutil'),
      'utf-8-validate': version('utf-8-validate'),
      bufferutilNative: isNative(bufferutil.mask),
      utf8ValidateNative: isNative(utf8Validate),
    },
    build(s) {
      switch (s.group) {
        case 'mask':
          return maskCase(s, bufferutil.mask);
        case 'unmask':
          return unmaskCase(s, bufferutil.unmask);
        case 'utf8': {
          const data = payloadFor(s);
          return {
            run(n) {
              let ok = 0;
              for (let i = 0; i < n; i++) if (utf8Validate(data)) ok++;
              return ok === n ? 1 : 0;
            },
          };
        }
        default:
          return null;
      }
    },
  };
}

// ───────────────────────────── timing (worker side) ─────────────────────────────

interface Config {
  /** Whole sequences of engine processes (ours, ws-native, ws-js, addons, then again), merged batch by batch. */
  passes: number;
  warmupMs: number;
  /** Timed batches per scenario in each pass. */
  batches: number;
  /** Timed duration of one batch (clock time inside the timed rounds only). */
  batchMs: number;
  /** Target duration of one timed round (the span between two clock reads). */
  roundMs: number;
  /** A batch during which the process had less than this share of a CPU was disturbed, and is run again (kept apart). */
  minCpuShare: number;
  /** Extra batches allowed per scenario and pass to replace disturbed ones. */
  maxRetries: number;
}

const FULL: Config = { passes: 2, warmupMs: 150, batches: 4, batchMs: 125, roundMs: 1, minCpuShare: 0.9, maxRetries: 4 };
const QUICK: Config = { passes: 1, warmupMs: 15, batches: 3, batchMs: 12, roundMs: 0.25, minCpuShare: 0.9, maxRetries: 1 };

export interface Measurement {
  /** ops/s: median, min and max over the batches used. */
  median: number;
  min: number;
  max: number;
  /** ops/s of each undisturbed batch. */
  batches: number[];
  /** ops/s of each disturbed batch: the process had less than `minCpuShare` of a CPU (another process ran). */
  disturbedBatches: number[];
  /** True when too few batches were undisturbed and the figures include disturbed ones. */
  noisy: boolean;
  /** Operations per timed round. */
  round: number;
}

let checksum = 0;

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function median(sorted: number[]): number {
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Median/min/max over the undisturbed batches, or over all of them when fewer than `minClean` were undisturbed. */
function summarize(clean: number[], disturbed: number[], round: number, minClean: number): Measurement {
  const noisy = clean.length < minClean;
  const used = [...(noisy ? [...clean, ...disturbed] : clean)].sort((a, b) => a - b);
  return {
    median: median(used),
    min: used[0],
    max: used[used.length - 1],
    batches: clean,
    disturbedBatches: disturbed,
    noisy,
    round,
  };
}

async function measure(c: Case, config: Config): Promise<Measurement> {
  const now = process.hrtime.bigint;
  const max = c.maxRound ?? 1 << 30;
  const roundNs = config.roundMs * 1e6;
  // Warm-up, doubling the round until it lasts about roundMs.
  let n = 1;
  const warmEnd = now() + BigInt(Math.round(config.warmupMs * 1e6));
  do {
    c.prepare?.(n);
    const t0 = now();
    checksum += c.run(n);
    const dt = Number(now() - t0);
    if (dt < roundNs && n < max) n = Math.min(max, n * 2);
  } while (now() < warmEnd);
  const batchNs = config.batchMs * 1e6;
  const clean: number[] = [];
  const disturbed: number[] = [];
  while (clean.length < config.batches && clean.length + disturbed.length < config.batches + config.maxRetries) {
    await nextTurn(); // let pending ticks (ws's Writable bookkeeping) and timers run between batches
    const cpu0 = process.cpuUsage();
    const wall0 = now();
    let ops = 0;
    let ns = 0;
    while (ns < batchNs) {
      c.prepare?.(n);
      const t0 = now();
      checksum += c.run(n);
      ns += Number(now() - t0);
      ops += n;
    }
    const cpu = process.cpuUsage(cpu0);
    const share = ((cpu.user + cpu.system) * 1e3) / Number(now() - wall0);
    (share < config.minCpuShare ? disturbed : clean).push((ops / ns) * 1e9);
  }
  return summarize(clean, disturbed, n, Math.ceil(config.batches / 2));
}

export function formatRate(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(x >= 1e8 ? 0 : x >= 1e7 ? 1 : 2)} M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(x >= 1e5 ? 0 : x >= 1e4 ? 1 : 2)} k`;
  return x.toFixed(x >= 100 ? 0 : 1);
}

interface WorkerOutput {
  engine: EngineName;
  meta: Record<string, unknown>;
  config: Config;
  results: Record<string, Measurement>;
  checksum: number;
}

function matches(s: Scenario, only: string[] | null): boolean {
  return only === null || only.some((p) => s.id.includes(p));
}

async function workerMain(engine: EngineName, quick: boolean, only: string[] | null): Promise<void> {
  const config = quick ? QUICK : FULL;
  const impl = engine === 'ours' ? await loadOurs() : engine === 'addons' ? loadAddons() : loadWs(engine === 'ws-js');
  const gc = (globalThis as { gc?: () => void }).gc;
  const results: Record<string, Measurement> = {};
  for (const s of SCENARIOS) {
    if (!ENGINE_GROUPS[engine].includes(s.group) || !matches(s, only)) continue;
    const c = impl.build(s);
    if (c === null) continue;
    // Correctness first: one operation must give the expected checksum.
    c.prepare?.(1);
    const once = c.run(1);
    const expected = expectedOnce(s);
    if (once !== expected) throw new Error(`${engine} ${s.id}: checksum ${once}, expected ${expected}`);
    gc?.();
    const m = await measure(c, config);
    results[s.id] = m;
    process.stderr.write(
      `  ${engine.padEnd(9)} ${s.id.padEnd(28)} ${formatRate(m.median).padStart(9)} ops/s  (${formatRate(m.min)}–${formatRate(m.max)})` +
        `${m.disturbedBatches.length > 0 ? `  [${m.disturbedBatches.length} disturbed batch(es) set aside]` : ''}\n`,
    );
  }
  const out: WorkerOutput = { engine, meta: { node: process.version, v8: process.versions.v8, ...impl.meta }, config, results, checksum };
  process.stdout.write(JSON.stringify(out));
}

// ───────────────────────────── orchestration (parent side) ─────────────────────────────

export interface MicroOptions {
  quick: boolean;
  /** Substrings of scenario ids to keep (all when empty). */
  only: string[];
  log: (line: string) => void;
}

const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

function runWorker(engine: EngineName, options: MicroOptions): Promise<WorkerOutput> {
  const env = engineEnv(engine);
  const args = ['--expose-gc', '--import', 'tsx', SELF, '--worker', engine];
  if (options.quick) args.push('--quick');
  if (options.only.length > 0) args.push('--only', options.only.join(','));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code !== 0) return reject(new Error(`worker ${engine} exited with ${signal ?? code}`));
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as WorkerOutput);
      } catch (error) {
        reject(new Error(`worker ${engine} printed no valid JSON: ${String(error)}`));
      }
    });
  });
}

export interface ScenarioReport {
  id: string;
  group: Group;
  label: string;
  bytes: number;
  /** Per engine: median/min/max ops/s and MB/s (10^6 payload bytes per second) at the median. */
  results: Partial<Record<EngineName, Measurement & { mbps: number }>>;
  /** ours' median ops/s divided by each other engine's. */
  ratios: Partial<Record<Exclude<EngineName, 'ours'>, number>>;
}

export interface TargetReport {
  target: string;
  scenario: string;
  versus: EngineName;
  ratio: number | null;
  threshold: number;
  met: boolean | null;
}

export interface MicroReport {
  config: Config;
  engines: Partial<Record<EngineName, Record<string, unknown>>>;
  scenarios: ScenarioReport[];
  targets: TargetReport[];
  wallSeconds: number;
}

/** Project targets: [description, scenario id, engine compared against, minimum ratio ours/engine]. */
const TARGETS: [string, string, EngineName, number][] = [
  ['parse of 20 B masked text ≥ 2× ws+native', 'parse/text-20', 'ws-native', 2],
  ['parse of 20 B masked text ≥ 2× ws+native (ws parser alone, _write)', 'parse/text-20-direct', 'ws-native', 2],
  ['serialize of small frames ≥ 2× ws+native', 'serialize/text-20-server', 'ws-native', 2],
  ['serialize of small frames ≥ 2× ws+native', 'serialize/bin-125-server', 'ws-native', 2],
  ['serialize of small frames ≥ 2× ws+native', 'serialize/text-20-client', 'ws-native', 2],
  ['serialize of small frames ≥ 2× ws+native', 'serialize/bin-125-client', 'ws-native', 2],
  ['unmask of 64 KiB ≥ 0.5× bufferutil native', 'unmask/64k', 'addons', 0.5],
  ['small-frame masking (≤ 125 B) ≥ 1× ws', 'mask/16', 'ws-native', 1],
  ['small-frame masking (≤ 125 B) ≥ 1× ws', 'mask/125', 'ws-native', 1],
  ['small-frame masking (≤ 125 B) ≥ 1× ws', 'unmask/16', 'ws-native', 1],
  ['small-frame masking (≤ 125 B) ≥ 1× ws', 'unmask/125', 'ws-native', 1],
];

const COLUMN: Record<EngineName, string> = { ours: 'ours', 'ws-native': 'ws+native', 'ws-js': 'ws-js', addons: 'addon' };
const ADDON_NAME: Partial<Record<Group, string>> = { mask: 'bufferutil', unmask: 'bufferutil', utf8: 'utf-8-validate' };

const GROUP_TITLE: Record<Group, string> = {
  parse: 'parse — ours: Protocol.receive (server) · ws: Receiver.write; one op = one masked message',
  serialize: 'serialize — ours: encodeFrame / encodeTextFrame · ws: Sender.frame as Sender#send calls it; one op = one frame',
  mask: 'mask (copy) — ours: xorMaskCopy · ws: buffer-util mask · addon: bufferutil.mask; one op = one payload',
  unmask: 'unmask (in place) — ours: xorMask · ws: buffer-util unmask · addon: bufferutil.unmask; one op = one payload',
  utf8: 'utf8 — ours: isValidUtf8 · ws: validation.isValidUTF8 · addon: utf-8-validate; one op = one buffer',
};

function cell(m: Measurement | undefined): string {
  if (m === undefined) return '–';
  return `${formatRate(m.median)} (${formatRate(m.min)}–${formatRate(m.max)})${m.noisy ? ' !' : ''}`;
}

function ratioCell(r: number | undefined): string {
  return r === undefined ? '–' : `${r.toFixed(r >= 10 ? 1 : 2)}×`;
}

function mbCell(x: number | undefined): string {
  if (x === undefined) return '–';
  if (x >= 1e6) return x.toExponential(1); // unmasked large frames: the payload is not touched
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** Markdown tables (aligned, so they read in a terminal too). */
export function formatTables(report: MicroReport): string {
  const out: string[] = [];
  for (const group of GROUPS) {
    const rows = report.scenarios.filter((s) => s.group === group);
    if (rows.length === 0) continue;
    const addon = ADDON_NAME[group];
    const header = ['scenario', 'ours ops/s', 'ws+native ops/s', 'ws-js ops/s'];
    if (addon) header.push(`${addon} ops/s`);
    header.push('ours MB/s', 'ws+native MB/s', 'ours/ws+native', 'ours/ws-js');
    if (addon) header.push(`ours/${addon}`);
    const body = rows.map((s) => {
      const line = [s.label, cell(s.results.ours), cell(s.results['ws-native']), cell(s.results['ws-js'])];
      if (addon) line.push(cell(s.results.addons));
      line.push(mbCell(s.results.ours?.mbps), mbCell(s.results['ws-native']?.mbps));
      line.push(ratioCell(s.ratios['ws-native']), ratioCell(s.ratios['ws-js']));
      if (addon) line.push(ratioCell(s.ratios.addons));
      return line;
    });
    const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
    const row = (cells: string[]): string =>
      `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
    out.push(`### ${GROUP_TITLE[group]}`, '');
    out.push(row(header));
    out.push(`| ${widths.map((w, i) => (i === 0 ? '-'.repeat(w) : '-'.repeat(w - 1) + ':')).join(' | ')} |`);
    for (const r of body) out.push(row(r));
    out.push('');
  }
  if (report.scenarios.some((s) => Object.values(s.results).some((m) => m.noisy))) {
    out.push('`!`: fewer than half of the batches ran with a whole CPU (another process competed); the figure includes disturbed batches.', '');
  }
  return out.join('\n');
}

/** One line per engine: what was measured (versions, which implementations ws picked). */
export function formatEngines(report: MicroReport): string {
  const out = ['### engines', ''];
  for (const [engine, meta] of Object.entries(report.engines)) {
    const details = Object.entries(meta)
      .filter(([key]) => key !== 'node' && key !== 'v8' && key !== 'checksums')
      .map(([key, value]) => `${key}=${String(value)}`)
      .join(', ');
    out.push(`- ${engine}: ${details}`);
  }
  return out.join('\n') + '\n';
}

/** The project's goals for the microbenchmarks: one line each, the ratio and the goal beside it (no headline). */
export function formatTargets(report: MicroReport): string {
  const out: string[] = [];
  for (const t of report.targets) {
    if (t.met === null) continue; // scenario filtered out with --only
    const ratio = t.ratio === null ? '–' : `${t.ratio.toFixed(2)}×`;
    out.push(`- ${t.met ? 'reached' : 'not yet'.padEnd(7)}  ${t.scenario} ours/${COLUMN[t.versus]} = ${ratio}; goal ≥ ${t.threshold}× (${t.target})`);
  }
  return out.length === 0 ? '' : out.join('\n') + '\n';
}

/** Runs every engine's worker in turn and merges their results. */
export async function runMicro(options: MicroOptions): Promise<MicroReport> {
  const started = process.hrtime.bigint();
  const config = options.quick ? QUICK : FULL;
  // Engines alternate pass after pass, so that a slow spell of the machine does not land on one engine only.
  const outputs: Partial<Record<EngineName, WorkerOutput[]>> = {};
  for (let pass = 1; pass <= config.passes; pass++) {
    for (const engine of ENGINE_NAMES) {
      options.log(`micro: pass ${pass}/${config.passes}: measuring ${engine} in its own process…`);
      (outputs[engine] ??= []).push(await runWorker(engine, options));
    }
  }
  const only = options.only.length > 0 ? options.only : null;
  const scenarios: ScenarioReport[] = [];
  for (const s of SCENARIOS) {
    if (!matches(s, only)) continue;
    const results: ScenarioReport['results'] = {};
    for (const engine of ENGINE_NAMES) {
      const parts = (outputs[engine] ?? []).map((o) => o.results[s.id]).filter((m) => m !== undefined);
      if (parts.length === 0) continue;
      const m = summarize(
        parts.flatMap((p) => p.batches),
        parts.flatMap((p) => p.disturbedBatches),
        Math.max(...parts.map((p) => p.round)),
        Math.ceil((config.passes * config.batches) / 2),
      );
      results[engine] = { ...m, mbps: (m.median * s.bytes) / 1e6 };
    }
    const ratios: ScenarioReport['ratios'] = {};
    const ours = results.ours?.median;
    for (const engine of ['ws-native', 'ws-js', 'addons'] as const) {
      const other = results[engine]?.median;
      if (ours !== undefined && other !== undefined) ratios[engine] = ours / other;
    }
    scenarios.push({ id: s.id, group: s.group, label: s.label, bytes: s.bytes, results, ratios });
  }
  const targets: TargetReport[] = TARGETS.map(([target, scenario, versus, threshold]) => {
    const found = scenarios.find((s) => s.id === scenario);
    const ratio = found?.ratios[versus as Exclude<EngineName, 'ours'>] ?? null;
    return { target, scenario, versus, ratio, threshold, met: ratio === null ? null : ratio >= threshold };
  });
  const engines: MicroReport['engines'] = {};
  for (const engine of ENGINE_NAMES) {
    const first = outputs[engine]?.[0];
    if (first !== undefined) engines[engine] = { ...first.meta, checksums: outputs[engine]!.map((o) => o.checksum) };
  }
  const report: MicroReport = {
    config,
    engines,
    scenarios,
    targets,
    wallSeconds: Number(process.hrtime.bigint() - started) / 1e9,
  };
  return report;
}

// ───────────────────────────── worker entry ─────────────────────────────

function argValue(argv: string[], flag: string): string | null {
  const i = argv.indexOf(flag);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : null;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const argv = process.argv.slice(2);
  const engine = argValue(argv, '--worker');
  if (engine === null || !(ENGINE_NAMES as readonly string[]).includes(engine)) {
    process.stderr.write(`usage: node --import tsx bench/micro.ts --worker ${ENGINE_NAMES.join('|')} [--quick] [--only a,b]\n`);
    process.exit(2);
  }
  const only = argValue(argv, '--only');
  await workerMain(engine as EngineName, argv.includes('--quick'), only === null ? null : only.split(',').filter(Boolean));
}
