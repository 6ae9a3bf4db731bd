/**
 * UTF-8 validation (RFC 3629, as RFC 6455 §8.1 requires for text messages and close reasons).
 *
 * Whole buffers go to `buffer.isUtf8`, Node's SIMD validator (tens of GB/s). A message that arrives in pieces —
 * fragments, or one frame spread over several reads — goes through {@link Utf8Validator}, which validates the
 * bulk of each piece with `isUtf8` and carries at most three bytes of an unfinished code point to the next
 * piece in a small state machine, so an invalid byte fails the connection as soon as it arrives (Autobahn
 * 6.4.x "fail fast").
 *
 * @module
 */
import { isUtf8 as nativeIsUtf8 } from 'node:buffer';

/** Below this length a JavaScript ASCII scan is cheaper than the native call. */
const SHORT = 24;

/** Whether `data[start, end)` is valid UTF-8. */
export function isValidUtf8(data: Uint8Array, start = 0, end = data.length): boolean {
  if (end - start < SHORT) return shortUtf8(data, start, end);
  if (start === 0 && end === data.length) return nativeIsUtf8(data);
  return nativeIsUtf8(data.subarray(start, end));
}

/** Number of continuation bytes a lead byte announces, or -1 for a byte that cannot start a sequence. */
function continuationCount(lead: number): number {
  if (lead < 0x80) return 0;
  if (lead < 0xc2) return -1; // continuation byte, or overlong 2-byte lead C0/C1
  if (lead < 0xe0) return 1;
  if (lead < 0xf0) return 2;
  if (lead < 0xf5) return 3;
  return -1; // F5..FF: beyond U+10FFFF
}

/** Validates a short range in JavaScript: cheaper than crossing into native code for a few bytes. */
function shortUtf8(data: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end) {
    const c = data[i++];
    if (c < 0x80) continue;
    const count = continuationCount(c);
    if (count < 0 || i + count > end) return false;
    // The first continuation byte's range is narrowed after E0, ED, F0 and F4 (overlongs, surrogates, > U+10FFFF).
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80;
    const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
    const c1 = data[i++];
    if (c1 < lo || c1 > hi) return false;
    for (let k = 1; k < count; k++) if ((data[i++] & 0xc0) !== 0x80) return false;
  }
  return true;
}

/**
 * Incremental UTF-8 validator for a message received in pieces. `push` each piece in order, then `end()` at the
 * end of the message; either returns false at the first invalid byte. Reusable after `reset()`.
 */
export class Utf8Validator {
  /** Continuation bytes still expected by the sequence in progress. */
  private need = 0;
  /** Allowed range of the next continuation byte (narrowed after E0, ED, F0 and F4). */
  private lo = 0x80;
  private hi = 0xbf;

  /** Forgets any partial code point. */
  reset(): void {
    this.need = 0;
    this.lo = 0x80;
    this.hi = 0xbf;
  }

  /** Whether the message may end here (no unfinished code point). */
  end(): boolean {
    const ok = this.need === 0;
    this.reset();
    return ok;
  }

  /** Validates `data[start, end)` as the continuation of the text so far. */
  push(data: Uint8Array, start = 0, end = data.length): boolean {
    let i = start;
    while (this.need > 0 && i < end) {
      const c = data[i++];
      if (c < this.lo || c > this.hi) return false;
      this.need--;
      this.lo = 0x80;
      this.hi = 0xbf;
    }
    if (i >= end) return true;
    // Find where the last (possibly unfinished) sequence starts: at most three continuation bytes back.
    let k = end - 1;
    while (k > i && end - k <= 3 && (data[k] & 0xc0) === 0x80) k--;
    const count = continuationCount(data[k]);
    let split = end;
    if (count > 0 && end - k <= count) split = k; // unfinished: validate the head, carry the rest
    if (split > i && !isValidUtf8(data, i, split)) return false;
    for (let p = split; p < end; p++) if (!this.step(data[p])) return false;
    return true;
  }

  private step(c: number): boolean {
    if (this.need > 0) {
      if (c < this.lo || c > this.hi) return false;
      this.need--;
      this.lo = 0x80;
      this.hi = 0xbf;
      return true;
    }
    const count = continuationCount(c);
    if (count < 0) return false;
    this.need = count;
    if (c === 0xe0) this.lo = 0xa0; // overlong 3-byte forms
    else if (c === 0xed) this.hi = 0x9f; // UTF-16 surrogates
    else if (c === 0xf0) this.lo = 0x90; // overlong 4-byte forms
    else if (c === 0xf4) this.hi = 0x8f; // above U+10FFFF
    return true;
  }
}
