/**
 * Close frames' arguments: the checks on what an application asks to send, and the truncation of a failure's
 * message to fit a close reason.
 *
 * @module
 */
import { Buffer } from 'node:buffer';
import { isValidCloseCode } from './errors.js';
import { MAX_CLOSE_REASON } from './frame.js';

/**
 * Checks the arguments of a close the application asks for: `code` 1000, 3000–4999 or a registered code that may be
 * sent (1001–1003, 1007–1014), `reason` a string of at most 123 UTF-8 bytes and only with a code. RangeError or
 * TypeError otherwise.
 */
export function validateClose(code: number | undefined, reason = ''): void {
  if (code !== undefined && (typeof code !== 'number' || !Number.isInteger(code) || !isValidCloseCode(code))) {
    throw new RangeError(`close code ${String(code)} cannot be sent: use 1000, 3000–4999, or 1001–1003/1007–1014`);
  }
  if (typeof reason !== 'string') throw new TypeError('close reason must be a string');
  if (Buffer.byteLength(reason) > MAX_CLOSE_REASON) {
    throw new RangeError(`close reason is ${Buffer.byteLength(reason)} bytes; at most 123 are allowed (RFC 6455 §5.5)`);
  }
  if (code === undefined && reason !== '') throw new TypeError('a close reason needs a close code');
}

/** A failure's message as a close reason: as is when it fits in 123 UTF-8 bytes, else its first 100 characters. */
export function truncateReason(message: string): string {
  if (Buffer.byteLength(message) <= MAX_CLOSE_REASON) return message;
  return message.slice(0, 100);
}
