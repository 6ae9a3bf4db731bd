/**
 * Masking (RFC 6455 §5.3): XOR of the payload with a 4-byte key, in three strategies chosen by size.
 *
 * - Below {@link WORD_LOOP_MIN} bytes a plain byte loop: no setup cost, which is what small frames need.
 * - Up to {@link SIMD_MIN} bytes a loop over a `Uint32Array` view of the aligned middle.
 * - From {@link SIMD_MIN} bytes a 150-byte WebAssembly SIMD module (`v128.xor`, 64 bytes per iteration) that is
 *   built from bytes below at load time: WebAssembly is part of the runtime, so this is no dependency. The
 *   data is copied into the module's 64 KiB memory, XORed in place and copied back, one 64 KiB block at a
 *   time. When the runtime refuses SIMD the word loop is used for every size.
 *
 * Every function takes the key as four byte values `k0..k3`, where `k0` applies to the byte at `start`: a caller
 * resuming in the middle of a frame rotates the key by the payload offset modulo 4.
 *
 * @module
 */
import { randomFillSync } from 'node:crypto';

/**
 * Size (bytes) from which the `Uint32Array` loop replaces the byte loop: below it, creating the view costs more
 * than it saves (measured: the byte loop wins up to ~150 bytes).
 */
export const WORD_LOOP_MIN = 160;
/** Size (bytes) from which the WebAssembly SIMD kernel is used, when available. */
export const SIMD_MIN = 1024;

const BLOCK = 65536;

interface SimdKernel {
  memory: Uint8Array;
  xor: (ptr: number, len: number, key: number) => void;
}

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function section(id: number, body: number[]): number[] {
  return [id, ...leb(body.length), ...body];
}

/** Builds `(func (export "x") (param ptr len key))`: XOR `len` bytes (a multiple of 64) at `ptr` with the key. */
function buildSimdModule(): Uint8Array {
  const lane = (op: number, offset: number): number[] => [0xfd, op, 0x00, offset];
  const block: number[] = [];
  for (const off of [0, 16, 32, 48]) {
    // local.get ptr; local.get ptr; v128.load off; local.get v; v128.xor; v128.store off
    block.push(0x20, 0x00, 0x20, 0x00, ...lane(0x00, off), 0x20, 0x03, 0xfd, 0x51, ...lane(0x0b, off));
  }
  const code = [
    0x02, 0x01, 0x7b, 0x01, 0x7f, // locals: 1 × v128 (v), 1 × i32 (end)
    0x20, 0x02, 0xfd, 0x11, 0x21, 0x03, // v = i32x4.splat(key)
    0x20, 0x00, 0x20, 0x01, 0x6a, 0x21, 0x04, // end = ptr + len
    0x02, 0x40, 0x03, 0x40, // block, loop
    0x20, 0x00, 0x20, 0x04, 0x4f, 0x0d, 0x01, // br_if out when ptr >= end
    ...block,
    0x20, 0x00, 0x41, 0xc0, 0x00, 0x6a, 0x21, 0x00, // ptr += 64
    0x0c, 0x00, 0x0b, 0x0b, 0x0b, // br loop; end loop; end block; end func
  ];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00]),
    ...section(3, [0x01, 0x00]),
    ...section(5, [0x01, 0x00, 0x01]),
    ...section(7, [0x02, 0x01, 0x6d, 0x02, 0x00, 0x01, 0x78, 0x00, 0x00]),
    ...section(10, [0x01, ...leb(code.length), ...code]),
  ]);
}

/** The slice of the WebAssembly JS API used here (its global types come with the DOM lib, which this package avoids). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: { m: { buffer: ArrayBuffer }; x: SimdKernel['xor'] } };
}

function loadSimd(): SimdKernel | null {
  if (process.env.WSENGINE_NO_SIMD === '1') return null;
  try {
    const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
    const instance = new wasm.Instance(new wasm.Module(buildSimdModule()));
    const memory = new Uint8Array(instance.exports.m.buffer);
    const xor = instance.exports.x;
    // Self-test once: a runtime that mis-executes SIMD must not corrupt payloads.
    memory.fill(0x5a, 0, 64);
    xor(0, 64, 0x04030201);
    if (memory[0] !== 0x5b || memory[1] !== 0x58 || memory[2] !== 0x59 || memory[63] !== 0x5e) return null;
    return { memory, xor };
  } catch {
    return null;
  }
}

const simd = loadSimd();

/** Whether the WebAssembly SIMD kernel is active (false on runtimes without SIMD, or with `WSENGINE_NO_SIMD=1`). */
export const simdAvailable = simd !== null;

const keyWord = new Uint32Array(1);
const keyBytes = new Uint8Array(keyWord.buffer);

function word(k0: number, k1: number, k2: number, k3: number): number {
  keyBytes[0] = k0;
  keyBytes[1] = k1;
  keyBytes[2] = k2;
  keyBytes[3] = k3;
  return keyWord[0];
}

function byteLoop(data: Uint8Array, start: number, end: number, k0: number, k1: number, k2: number, k3: number): void {
  let i = start;
  const stop = end - 3;
  for (; i < stop; i += 4) {
    data[i] ^= k0;
    data[i + 1] ^= k1;
    data[i + 2] ^= k2;
    data[i + 3] ^= k3;
  }
  if (i < end) data[i++] ^= k0;
  if (i < end) data[i++] ^= k1;
  if (i < end) data[i] ^= k2;
}

function wordLoop(data: Uint8Array, start: number, end: number, k0: number, k1: number, k2: number, k3: number): void {
  // Bytes up to the first 4-byte aligned address, then whole words, then the tail.
  const head = (4 - ((data.byteOffset + start) & 3)) & 3;
  byteLoop(data, start, start + head, k0, k1, k2, k3);
  const from = start + head;
  const words = (end - from) >>> 2;
  // The key rotated to the phase at `from`.
  const w = head === 0 ? word(k0, k1, k2, k3) : head === 1 ? word(k1, k2, k3, k0) : head === 2 ? word(k2, k3, k0, k1) : word(k3, k0, k1, k2);
  const view = new Uint32Array(data.buffer, data.byteOffset + from, words);
  for (let j = 0; j < words; j++) view[j] ^= w;
  // `tail - from` is a multiple of 4, so the phase at `tail` is the phase at `from`.
  const tail = from + words * 4;
  if (head === 0) byteLoop(data, tail, end, k0, k1, k2, k3);
  else if (head === 1) byteLoop(data, tail, end, k1, k2, k3, k0);
  else if (head === 2) byteLoop(data, tail, end, k2, k3, k0, k1);
  else byteLoop(data, tail, end, k3, k0, k1, k2);
}

/**
 * XORs `data[start, end)` in place with the key, `k0` applying at `start`. Masking and unmasking are the same
 * operation.
 */
export function xorMask(data: Uint8Array, start: number, end: number, k0: number, k1: number, k2: number, k3: number): void {
  const len = end - start;
  if (len < WORD_LOOP_MIN) return byteLoop(data, start, end, k0, k1, k2, k3);
  if (simd === null || len < SIMD_MIN) return wordLoop(data, start, end, k0, k1, k2, k3);
  const key = word(k0, k1, k2, k3);
  const mem = simd.memory;
  let i = start;
  for (; end - i >= 64; ) {
    const n = Math.min(BLOCK, (end - i) & ~63);
    mem.set(data.subarray(i, i + n));
    simd.xor(0, n, key);
    data.set(mem.subarray(0, n), i);
    i += n;
  }
  // 64 is a multiple of 4, so the key phase at `i` is still k0.
  if (i < end) byteLoop(data, i, end, k0, k1, k2, k3);
}

/**
 * Copies `src` into `dst` at `dstOffset` XORed with the key (the client's send path: the application's buffer is
 * never modified).
 */
export function xorMaskCopy(src: Uint8Array, dst: Uint8Array, dstOffset: number, k0: number, k1: number, k2: number, k3: number): void {
  const len = src.length;
  if (len < WORD_LOOP_MIN) {
    let i = 0;
    for (; i + 3 < len; i += 4) {
      dst[dstOffset + i] = src[i] ^ k0;
      dst[dstOffset + i + 1] = src[i + 1] ^ k1;
      dst[dstOffset + i + 2] = src[i + 2] ^ k2;
      dst[dstOffset + i + 3] = src[i + 3] ^ k3;
    }
    if (i < len) dst[dstOffset + i] = src[i] ^ k0, i++;
    if (i < len) dst[dstOffset + i] = src[i] ^ k1, i++;
    if (i < len) dst[dstOffset + i] = src[i] ^ k2;
    return;
  }
  if (simd === null || len < SIMD_MIN) {
    dst.set(src, dstOffset);
    return wordLoop(dst, dstOffset, dstOffset + len, k0, k1, k2, k3);
  }
  const key = word(k0, k1, k2, k3);
  const mem = simd.memory;
  let i = 0;
  for (; len - i >= 64; ) {
    const n = Math.min(BLOCK, (len - i) & ~63);
    mem.set(src.subarray(i, i + n));
    simd.xor(0, n, key);
    dst.set(mem.subarray(0, n), dstOffset + i);
    i += n;
  }
  if (i < len) {
    // Under 64 bytes left, and 64 is a multiple of 4: the key phase at `i` is still k0.
    dst.set(src.subarray(i), dstOffset + i);
    byteLoop(dst, dstOffset + i, dstOffset + len, k0, k1, k2, k3);
  }
}

/**
 * Writes a 4-byte masking key into `target` at `offset`. The default draws from a pool refilled by the
 * operating system's CSPRNG; tests inject a fixed source to assert exact bytes (RFC 6455 §5.3 requires keys an
 * attacker cannot predict, so never ship a fixed source).
 */
export type MaskSource = (target: Uint8Array, offset: number) => void;

const POOL_SIZE = 8192;
let pool = Buffer.allocUnsafe(0);
let poolOffset = 0;

/** The default {@link MaskSource}: 4 bytes at a time from an 8 KiB pool filled by `crypto.randomFillSync`. */
export const randomMask: MaskSource = (target, offset) => {
  if (poolOffset + 4 > pool.length) {
    if (pool.length === 0) pool = Buffer.allocUnsafe(POOL_SIZE);
    randomFillSync(pool);
    poolOffset = 0;
  }
  target[offset] = pool[poolOffset];
  target[offset + 1] = pool[poolOffset + 1];
  target[offset + 2] = pool[poolOffset + 2];
  target[offset + 3] = pool[poolOffset + 3];
  poolOffset += 4;
};
