/**
 * Prepared messages: frame a message once, send the same bytes to many connections (broadcast, the hub's fan-out).
 *
 * @module
 */
import { type Data, toBytes } from '../core/bytes.js';
import { encodeFrame, encodeTextFrame, Opcode } from '../core/frame.js';

/** A message framed once for every server-side connection. Immutable; share it freely. */
export interface PreparedMessage {
  /** The unmasked frame (header and payload, or the two apart for a large payload). */
  readonly frame: Buffer | [Buffer, Uint8Array];
  /** The payload, for connections that must frame it themselves (clients mask every frame). */
  readonly payload: string | Uint8Array;
  readonly isBinary: boolean;
}

/**
 * Frames `data` once: a string as text, bytes as binary (or as text with `{ binary: false }`). Send the result with
 * `connection.sendPrepared(message)` to as many connections as needed; the bytes are never copied per recipient.
 * The payload is referenced, not copied: do not modify it afterwards.
 */
export function prepare(data: Data, options?: { binary?: boolean }): PreparedMessage {
  const isBinary = options?.binary ?? typeof data !== 'string';
  const opcode = isBinary ? Opcode.BINARY : Opcode.TEXT;
  if (typeof data === 'string') {
    const frame = encodeTextFrame(data, true, false, null, opcode);
    return { frame, payload: data, isBinary };
  }
  const payload = toBytes(data);
  return { frame: encodeFrame(opcode, payload), payload, isBinary };
}
