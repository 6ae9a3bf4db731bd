/**
 * Frame layout and serialization (RFC 6455 §5.2).
 *
 * Frames are built without concatenating payloads: a small frame (payload up to {@link COPY_LIMIT} bytes, or any
 * masked frame, whose payload has to be copied to be masked anyway) is one buffer; a larger unmasked frame is
 * its header plus the caller's payload untouched, for one vectored write. Text given as a string is encoded
 * straight into the frame buffer, with no intermediate Buffer.
 *
 * @module
 */
// A module binding, not the global: a per-frame `Buffer` read is otherwise a global lookup (LoadGlobalIC).
import { Buffer } from 'node:buffer';
import { type MaskSource, xorMask, xorMaskCopy } from './mask.js';

/** Frame opcodes (RFC 6455 §5.2, §11.8). */
export const Opcode = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;

/** Largest payload of a control frame (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125;

/** Largest close reason in bytes: a control payload less the 2-byte code. */
export const MAX_CLOSE_REASON = 123;

/** Unmasked payloads up to this many bytes are copied behind their header into one buffer (one write, one object). */
export const COPY_LIMIT = 4096;

/** Header size in bytes for a payload of `length` bytes. */
export function headerSize(length: number, masked: boolean): number {
  return (length < 126 ? 2 : length < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

/**
 * Writes a frame header into `target` at `offset` and returns the offset of the payload. When `mask` is given,
 * a fresh key is drawn from it and written after the length; the caller masks the payload with it.
 */
export function writeHeader(
  target: Uint8Array,
  offset: number,
  opcode: number,
  length: number,
  fin: boolean,
  rsv1: boolean,
  mask: MaskSource | null,
): number {
  target[offset] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  const m = mask === null ? 0 : 0x80;
  if (length < 126) {
    target[offset + 1] = m | length;
    offset += 2;
  } else if (length < 65536) {
    target[offset + 1] = m | 126;
    target[offset + 2] = length >>> 8;
    target[offset + 3] = length & 0xff;
    offset += 4;
  } else {
    target[offset + 1] = m | 127;
    // RFC 6455 §5.2: 64-bit length, most significant bit 0. Payloads here are below 2^53.
    const hi = Math.floor(length / 0x100000000);
    const lo = length >>> 0;
    target[offset + 2] = 0;
    target[offset + 3] = 0;
    target[offset + 4] = (hi >>> 8) & 0xff;
    target[offset + 5] = hi & 0xff;
    target[offset + 6] = lo >>> 24;
    target[offset + 7] = (lo >>> 16) & 0xff;
    target[offset + 8] = (lo >>> 8) & 0xff;
    target[offset + 9] = lo & 0xff;
    offset += 10;
  }
  if (mask !== null) {
    mask(target, offset);
    offset += 4;
  }
  return offset;
}

/**
 * Frames a binary payload. Returns one buffer (header and payload together) when the payload is small or
 * masked, else `[header, payload]` with the payload not copied: write both, in order, corked.
 */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array,
  fin = true,
  rsv1 = false,
  mask: MaskSource | null = null,
): Buffer | [Buffer, Uint8Array] {
  const length = payload.length;
  const hs = headerSize(length, mask !== null);
  if (mask === null && length > COPY_LIMIT) {
    const header = Buffer.allocUnsafe(hs);
    writeHeader(header, 0, opcode, length, fin, rsv1, null);
    return [header, payload];
  }
  const out = Buffer.allocUnsafe(hs + length);
  const at = writeHeader(out, 0, opcode, length, fin, rsv1, mask);
  if (mask === null) out.set(payload, at);
  else xorMaskCopy(payload, out, at, out[at - 4], out[at - 3], out[at - 2], out[at - 1]);
  return out;
}

/** Frames a string as UTF-8 text (or `opcode`) in one buffer, encoding the string in place behind the header. */
export function encodeTextFrame(
  text: string,
  fin = true,
  rsv1 = false,
  mask: MaskSource | null = null,
  opcode: number = Opcode.TEXT,
): Buffer {
  if (text.length < 126) {
    // Short ASCII (most chat and JSON traffic): copy the characters as bytes; no encoder call, no length pass.
    const n = text.length;
    const at = mask === null ? 2 : 6;
    const out = Buffer.allocUnsafe(at + n);
    let i = 0;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0x80) break;
      out[at + i] = c;
    }
    if (i === n) {
      writeHeader(out, 0, opcode, n, fin, rsv1, mask);
      if (mask !== null) xorMask(out, 6, 6 + n, out[2], out[3], out[4], out[5]);
      return out;
    }
  }
  const length = Buffer.byteLength(text);
  const hs = headerSize(length, mask !== null);
  const out = Buffer.allocUnsafe(hs + length);
  const at = writeHeader(out, 0, opcode, length, fin, rsv1, mask);
  out.write(text, at);
  if (mask !== null) xorMask(out, at, at + length, out[at - 4], out[at - 3], out[at - 2], out[at - 1]);
  return out;
}

/** The payload of a close frame: the 2-byte code then the UTF-8 reason; empty when `code` is undefined. */
export function closePayload(code?: number, reason = ''): Buffer {
  if (code === undefined) return Buffer.alloc(0);
  const out = Buffer.allocUnsafe(2 + Buffer.byteLength(reason));
  out.writeUInt16BE(code, 0);
  out.write(reason, 2);
  return out;
}
