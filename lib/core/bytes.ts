/**
 * Normalising application data to bytes, with the checks that keep misuse off the wire.
 *
 * @module
 */

/** What the engine accepts as message data: a string (text) or any binary container. */
export type Data = string | ArrayBuffer | SharedArrayBuffer | ArrayBufferView;

function isDetached(buffer: ArrayBufferLike): boolean {
  if (buffer.byteLength !== 0) return false;
  try {
    // Constructing a view over a detached buffer throws; over an empty live one it does not.
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

/**
 * The bytes of `data` as a `Uint8Array` view, sharing memory with it (no copy): a Buffer or Uint8Array as it is,
 * any other TypedArray or DataView as a view of the same bytes, an ArrayBuffer whole. Throws a `TypeError` for
 * anything else (numbers, plain objects, null) and for views of a detached ArrayBuffer.
 */
export function toBytes(data: unknown, what = 'data'): Uint8Array {
  let bytes: Uint8Array;
  if (data instanceof Uint8Array) bytes = data;
  else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else if (data instanceof ArrayBuffer || (typeof SharedArrayBuffer === 'function' && data instanceof SharedArrayBuffer)) {
    if (isDetached(data)) throw new TypeError(`${what} is a detached ArrayBuffer: its contents were transferred`);
    return new Uint8Array(data);
  } else {
    const kind = data === null ? 'null' : Array.isArray(data) ? 'an array' : typeof data;
    throw new TypeError(`${what} must be a string, Buffer, ArrayBuffer or ArrayBuffer view, got ${kind}`);
  }
  if (bytes.byteLength === 0 && isDetached(bytes.buffer)) {
    throw new TypeError(`${what} is a view of a detached ArrayBuffer: its contents were transferred`);
  }
  return bytes;
}
