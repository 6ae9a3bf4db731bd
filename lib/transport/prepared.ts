/**
 * Prepared messages: frame a message once, send the same bytes to many connections (broadcast, the hub's fan-out).
 *
 * @module
 */
import { type Data, toBytes } from '../core/bytes.js';
import { encodeFrame, encodeTextFrame, Opcode } from '../core/frame.js';
import { compressOnce } from '../deflate/codec.js';
import { checkOptionNames } from '../core/options.js';

/** A message framed once for every server-side connection. Immutable; share it freely. */
export interface PreparedMessage {
  /** The unmasked frame (header and payload, or the two apart for a large payload). */
  readonly frame: Buffer | [Buffer, Uint8Array];
  /** The payload, for connections that must frame it themselves (clients mask every frame). */
  readonly payload: string | Uint8Array;
  readonly isBinary: boolean;
  /**
   * With `compress: true`: the same message deflated once without context, for connections that negotiated
   * permessage-deflate with `server_no_context_takeover` and a window of at least `windowBits`.
   */
  readonly compressed?: { readonly frame: Buffer | [Buffer, Uint8Array]; readonly windowBits: number };
}

/** Options of {@link prepare}. */
export interface PrepareOptions {
  /** Frame as binary (true) or text (false). Default: false for strings, true for bytes. */
  binary?: boolean;
  /** Also deflate the message once (synchronously) for compressing connections. Default: false. */
  compress?: boolean;
  /** Window (log2 bytes) of that compression, 9–15; connections that negotiated a smaller one get it uncompressed. Default: 15. */
  windowBits?: number;
  /** zlib level of that compression, 0–9. Default: 6. */
  level?: number;
}

const PREPARE_OPTION_NAMES: ReadonlySet<string> = new Set(
  Object.keys({ binary: true, compress: true, windowBits: true, level: true } as const satisfies Record<keyof PrepareOptions, true>),
);

/**
 * Frames `data` once: a string as text, bytes as binary (or as text with `{ binary: false }`). Send the result with
 * `connection.sendPrepared(message)` to as many connections as needed; the bytes are never copied per recipient.
 * The payload is referenced, not copied: do not modify it afterwards.
 */
export function prepare(data: Data, options?: PrepareOptions): PreparedMessage {
  if (options !== undefined) {
    if (typeof options !== 'object' || options === null) throw new TypeError('prepare options must be an object ({ binary, compress, windowBits, level })');
    checkOptionNames('prepare', options, PREPARE_OPTION_NAMES);
  }
  const isBinary = options?.binary ?? typeof data !== 'string';
  const opcode = isBinary ? Opcode.BINARY : Opcode.TEXT;
  const payload = typeof data === 'string' ? data : toBytes(data);
  const frame = typeof payload === 'string' ? encodeTextFrame(payload, true, false, null, opcode) : encodeFrame(opcode, payload);
  if (!options?.compress) return { frame, payload, isBinary };
  const windowBits = options.windowBits ?? 15;
  if (!Number.isInteger(windowBits) || windowBits < 9 || windowBits > 15) throw new RangeError(`windowBits must be an integer from 9 to 15, got ${String(windowBits)}`);
  const deflated = compressOnce(typeof payload === 'string' ? Buffer.from(payload) : payload, windowBits, options.level ?? 6);
  return { frame, payload, isBinary, compressed: { frame: encodeFrame(opcode, deflated, true, true), windowBits } };
}
