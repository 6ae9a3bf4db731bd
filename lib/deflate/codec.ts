/**
 * permessage-deflate compression and decompression (RFC 7692 §7.2) on `node:zlib` raw deflate.
 *
 * - **Bombs**: inflated output is counted as zlib produces it (16 KiB at a time); past `maxMessageSize` the inflater is
 *   destroyed and the message fails with 1009, so a 1 KB → 1 GB bomb never allocates the gigabyte.
 * - **Errors**: every zlib stream keeps an error listener for its whole life; malformed data fails the message with
 *   1007, and an error arriving after a limit already fired is ignored, not thrown.
 * - **Memory**: contexts are created on first use, not per connection. With context takeover a context must live as
 *   long as the connection (its window is the state both ends share). A side without context takeover resets its
 *   stream after every message (zlib's `deflateReset`/`inflateReset` through Node's `reset()`: the window and the
 *   dictionary start empty again, so each message is compressed and inflated standalone) and reuses it for the
 *   next one; once that side has been idle for {@link IDLE_RELEASE_MS} to 2 × {@link IDLE_RELEASE_MS}, the stream
 *   is released, so an idle connection holds no zlib memory. See the README for figures.
 * - **Concurrency**: zlib work runs on libuv's thread pool; a per-configuration {@link Limiter} bounds operations in
 *   flight, queueing the rest in order.
 *
 * @module
 */
import { constants, createDeflateRaw, createInflateRaw, deflateRawSync, type DeflateRaw, type InflateRaw } from 'node:zlib';
import { protocolError, type ProtocolError } from '../core/errors.js';
import type { DeflateOptions, DeflateParams } from './negotiate.js';

/**
 * Idle time after which a side without context takeover releases its zlib stream, in milliseconds (default 100):
 * one shared timer (unreferenced, running only while some stream is kept) sweeps every `IDLE_RELEASE_MS` and
 * releases the streams not used since the sweep before, so a stream is released 100–200 ms after its last message.
 * A connection whose messages come closer together than that keeps one stream per direction and resets it after
 * each message, instead of building a new one (~20–30 µs and ~300 KiB of allocations at 15 bits) every time.
 */
export const IDLE_RELEASE_MS = 100;

let idleMs: number = IDLE_RELEASE_MS;

/** Internal, for tests: sets the sweep period (ms), restarting the sweep timer if it runs. Returns the previous value. */
export function setIdleRelease(ms: number): number {
  if (!Number.isInteger(ms) || ms < 1) throw new RangeError(`setIdleRelease: expected a whole number of milliseconds ≥ 1, got ${ms}`);
  const previous = idleMs;
  idleMs = ms;
  if (idle.timer !== null) {
    stopSweep();
    startSweep();
  }
  return previous;
}

/**
 * zlib streams of all codecs in this process (internal, for tests and diagnostics): `open` now (kept between
 * messages or working), `created` since the process started.
 */
export function zlibStreamStats(): { open: number; created: number } {
  return { open: openStreams, created: createdStreams };
}

let openStreams = 0;
let createdStreams = 0;

/** The codecs keeping a stream of a side without context takeover, and the sweep that releases idle ones. */
const idle = {
  codecs: new Set<DeflateCodec>(),
  /** Sweeps so far: a stream stamped with a tick older than the previous one has been idle a whole period. */
  tick: 0,
  timer: null as ReturnType<typeof setInterval> | null,
};

function keepUntilIdle(codec: DeflateCodec): void {
  idle.codecs.add(codec);
  if (idle.timer === null) startSweep();
}

/** A codec closed: it keeps nothing any more. */
function forget(codec: DeflateCodec): void {
  if (idle.codecs.delete(codec) && idle.codecs.size === 0) stopSweep();
}

function startSweep(): void {
  idle.timer = setInterval(sweep, idleMs);
  idle.timer.unref();
}

function stopSweep(): void {
  if (idle.timer !== null) clearInterval(idle.timer);
  idle.timer = null;
}

function sweep(): void {
  const tick = ++idle.tick;
  for (const codec of idle.codecs) if (codec.releaseIdle(tick)) idle.codecs.delete(codec);
  if (idle.codecs.size === 0) stopSweep();
}

/** The 4 bytes a sync flush ends with; removed from each compressed message and put back before inflating. */
const TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/** Runs at most `limit` jobs at once, the rest in arrival order. */
export class Limiter {
  private running = 0;
  private readonly queue: Array<() => void> = [];
  constructor(readonly limit: number) {}

  /** Runs `job` when a slot is free; `job` calls `done` when finished. */
  run(job: (done: () => void) => void): void {
    if (this.running < this.limit) {
      this.running++;
      job(() => this.release());
    } else {
      this.queue.push(() => job(() => this.release()));
    }
  }

  private release(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.running--;
  }

  /** Jobs waiting for a slot. */
  get waiting(): number {
    return this.queue.length;
  }
}

/**
 * A zlib stream with its output gathered: `primed` when created with a dictionary (Node's `reset()` would put that
 * dictionary back, so such a stream is never reused), `released` once closed.
 */
type Stream = (DeflateRaw | InflateRaw) & { chunks: Buffer[]; total: number; primed: boolean; released: boolean };

function once<T extends unknown[]>(fn: (...args: T) => void): (...args: T) => void {
  let called = false;
  return (...args: T) => {
    if (called) return;
    called = true;
    fn(...args);
  };
}

/**
 * One connection's compressor and decompressor, for its role and the negotiated parameters. Calls for one direction
 * must not overlap (the pipeline runs one compression and one inflation at a time): a stream is reset when its
 * message is done.
 */
export class DeflateCodec {
  private deflater: Stream | null = null;
  private inflater: Stream | null = null;
  /** A compression (an inflation) is in flight: its stream is not released by the idle sweep. */
  private deflating = false;
  private inflating = false;
  /** The idle sweep's tick when each stream was last used (sides without context takeover only). */
  private deflateUsed = 0;
  private inflateUsed = 0;
  private readonly deflateBits: number;
  private readonly inflateBits: number;
  private readonly deflateReset: boolean;
  private readonly inflateReset: boolean;
  private closed = false;
  /** The last 2^windowBits bytes inflated (context takeover only): the dictionary of a stream restarted after a final block. */
  private window: Window | null = null;
  /**
   * Whether this side compresses at all: not when bound to an 8-bit window, which zlib cannot honour (it would use
   * 9 bits); messages then go uncompressed, as RFC 7692 allows.
   */
  readonly compresses: boolean;

  constructor(
    role: 'server' | 'client',
    readonly params: DeflateParams,
    private readonly options: Required<DeflateOptions>,
    private readonly limiter: Limiter,
    private readonly maxMessageSize: number,
  ) {
    const server = role === 'server';
    this.deflateBits = server ? params.serverMaxWindowBits : params.clientMaxWindowBits;
    this.deflateReset = server ? params.serverNoContextTakeover : params.clientNoContextTakeover;
    // zlib compresses with 9 bits when told 8: inflate with at least 9 so such a peer is still understood.
    this.inflateBits = Math.max(9, server ? params.clientMaxWindowBits : params.serverMaxWindowBits);
    this.inflateReset = server ? params.clientNoContextTakeover : params.serverNoContextTakeover;
    this.compresses = this.deflateBits >= 9;
  }

  /** Bytes of zlib state this codec holds now (estimate from zlib's documented formulas), for memory reports. */
  get memory(): number {
    let bytes = 0;
    if (this.deflater) bytes += (1 << (this.deflateBits + 2)) + (1 << (this.options.memLevel + 9));
    if (this.inflater) bytes += (1 << this.inflateBits) + 7168;
    if (this.window) bytes += this.window.size;
    return bytes;
  }

  /** Compresses one whole message; `callback(error, payload)` with the trailer removed (RFC 7692 §7.2.1). */
  compress(data: Uint8Array, callback: (error: Error | null, payload?: Buffer) => void): void {
    this.limiter.run((done) => {
      if (this.closed) {
        done();
        return callback(new Error('connection closed'));
      }
      const z = (this.deflater ??= this.stream(createDeflateRaw({ level: this.options.level, memLevel: this.options.memLevel, windowBits: this.deflateBits, flush: constants.Z_SYNC_FLUSH })));
      this.deflating = true;
      const finish = once((error: Error | null) => {
        this.deflating = false;
        // The stream is settled (reset, kept or released) before the limiter starts another job.
        if (error) {
          if (this.deflater === z) this.dropDeflater();
          done();
          return callback(error);
        }
        const out = stripTrailer(take(z));
        if (this.deflateReset && this.deflater === z) {
          // Standalone messages: the same stream, reset, for the next one (released when idle).
          if (reset(z)) {
            this.deflateUsed = idle.tick;
            keepUntilIdle(this);
          } else this.dropDeflater();
        }
        done();
        // An empty message compresses to a lone 00 (RFC 7692 §7.2.3.6).
        callback(null, out.length === 0 ? Buffer.from([0]) : out);
      });
      z.once('error', finish);
      // The stream's flush mode is Z_SYNC_FLUSH: one write is one trip to the thread pool (a write then a flush is two).
      z.write(data, (error?: Error | null) => {
        z.off('error', finish);
        finish(error ?? null);
      });
    });
  }

  /**
   * Inflates one whole message (RFC 7692 §7.2.2); `callback(error, data)`. Errors are {@link ProtocolError}s: 1009
   * when the output passes `maxMessageSize`, 1007 for malformed data.
   *
   * A peer may end a message with a final block (BFINAL = 1, RFC 7692 §7.2.3.4), which ends zlib's stream. The
   * next input then goes to a new raw inflate stream, primed — with context takeover — with the last window of
   * output as its dictionary, so later messages (and data after the final block in the same message) inflate as
   * the peer meant. Should that ever be impossible, the message fails with 1007: never wrong or empty data.
   */
  decompress(data: Uint8Array, callback: (error: ProtocolError | null, data?: Buffer) => void): void {
    this.limiter.run((done) => {
      if (this.closed) {
        done();
        return callback(protocolError('EXTENSION_ERROR', 'connection closed'));
      }
      let z = this.inflaterStream();
      this.inflating = true;
      /** Set once the message is done (or failed): a zlib answer arriving later changes nothing. */
      let settled = false;
      /** Input bytes the stream had consumed before this message's current part. */
      let base = z.bytesWritten;
      /** This part's input: the message (or what followed a final block in it), then the trailer. */
      let input: Uint8Array = data;
      /** Output of earlier streams of this message (after a final block). */
      const before: Buffer[] = [];
      let beforeBytes = 0;
      const finish = once((error: ProtocolError | null) => {
        settled = true;
        this.inflating = false;
        z.off('data', onData);
        z.off('error', onError);
        // The stream is settled (reset, kept or released) before the limiter starts another job.
        if (error) {
          // Also a stream still working (a limit fired mid-write): closing it stops the work and frees it.
          if (this.inflater === z) this.dropInflater();
          if (this.inflateReset) this.window = null;
          done();
          return callback(error);
        }
        const last = take(z);
        const out = beforeBytes > 0 ? Buffer.concat([...before, last], beforeBytes + last.length) : last;
        if (this.inflateReset) {
          this.window = null;
          if (this.inflater === z) {
            // Reused when it can be reset to an empty window: not after a final block ended it, nor when it was
            // primed with a dictionary (after a final block inside this message), which a reset would put back.
            if (!z.primed && !ended(z) && reset(z)) {
              this.inflateUsed = idle.tick;
              keepUntilIdle(this);
            } else this.dropInflater();
          }
        } else {
          this.remember(last);
          if (ended(z)) this.dropInflater();
        }
        done();
        callback(null, out);
      });
      const onData = (): void => {
        if (beforeBytes + z.total > this.maxMessageSize) {
          finish(protocolError('MESSAGE_TOO_BIG', `inflated message over the ${this.maxMessageSize}-byte limit`));
        }
      };
      const onError = (error: Error): void => {
        const failure = protocolError('EXTENSION_ERROR', `invalid compressed data: ${error.message}`);
        failure.cause = error; // zlib's error (its `code`, e.g. Z_DATA_ERROR, and `errno`)
        finish(failure);
      };
      const feed = (): void => {
        z.on('data', onData);
        z.once('error', onError);
        // One write (the trailer appended to a copy) is one trip to the thread pool instead of three.
        z.write(withTrailer(input), (error?: Error | null) => {
          if (settled) return;
          if (error) return onError(error);
          // zlib stops taking input once a final block ended its stream (a sync flush takes it all otherwise).
          const consumed = z.bytesWritten - base;
          if (consumed >= input.length + TRAILER.length && !ended(z)) return finish(null);
          // Bytes after the final block, other than our trailer, start a new stream.
          if (consumed >= input.length) return finish(null);
          const rest = input.subarray(consumed);
          const part = take(z);
          before.push(part);
          beforeBytes += part.length;
          // Within a message the window always carries over (also without context takeover).
          this.remember(part);
          z.off('data', onData);
          z.off('error', onError);
          this.dropInflater();
          z = this.inflaterStream();
          base = 0;
          input = rest;
          feed();
        });
      };
      feed();
    });
  }

  /** The inflater, created on first use: with context takeover after a final block, primed with the last window. */
  private inflaterStream(): Stream {
    if (this.inflater !== null) return this.inflater;
    const window = this.window?.contents();
    const z = this.stream(createInflateRaw(window ? { windowBits: this.inflateBits, flush: constants.Z_SYNC_FLUSH, dictionary: window } : { windowBits: this.inflateBits, flush: constants.Z_SYNC_FLUSH }));
    z.primed = window != null;
    return (this.inflater = z);
  }

  /** Keeps the tail of the output as the LZ77 window a restarted stream needs (context takeover only). */
  private remember(out: Buffer): void {
    if (out.length === 0) return;
    (this.window ??= new Window(1 << this.inflateBits)).push(out);
  }

  /**
   * Called by the idle sweep at each tick: releases the streams of sides without context takeover that are not
   * working and were last used before the previous tick. Returns true when this codec keeps no such stream any more.
   */
  releaseIdle(tick: number): boolean {
    let keeps = false;
    if (this.deflateReset && this.deflater !== null) {
      if (this.deflating || this.deflateUsed >= tick - 1) keeps = true;
      else this.dropDeflater();
    }
    if (this.inflateReset && this.inflater !== null) {
      if (this.inflating || this.inflateUsed >= tick - 1) keeps = true;
      else this.dropInflater();
    }
    return !keeps;
  }

  /** Releases both contexts; later calls fail. */
  close(): void {
    this.closed = true;
    forget(this);
    this.dropDeflater();
    this.dropInflater();
    this.window = null;
  }

  private stream<T extends DeflateRaw | InflateRaw>(z: T): T & Stream {
    const s = z as T & Stream;
    s.chunks = [];
    s.total = 0;
    s.primed = false;
    s.released = false;
    openStreams++;
    createdStreams++;
    s.on('data', (chunk: Buffer) => {
      s.chunks.push(chunk);
      s.total += chunk.length;
    });
    // For the stream's whole life: an error after we stopped listening for one must not crash the process.
    s.on('error', () => {});
    return s;
  }

  private dropDeflater(): void {
    release(this.deflater);
    this.deflater = null;
  }

  private dropInflater(): void {
    release(this.inflater);
    this.inflater = null;
  }
}

/** A ring of the last `size` bytes pushed through it. */
class Window {
  private readonly ring: Buffer;
  private at = 0;
  private filled = 0;
  constructor(readonly size: number) {
    this.ring = Buffer.allocUnsafe(size);
  }

  push(bytes: Buffer): void {
    const size = this.size;
    let src = bytes.length > size ? bytes.subarray(bytes.length - size) : bytes;
    while (src.length > 0) {
      const n = Math.min(src.length, size - this.at);
      src.copy(this.ring, this.at, 0, n);
      this.at = (this.at + n) % size;
      src = src.subarray(n);
      this.filled = Math.min(size, this.filled + n);
    }
  }

  /** The bytes held, oldest first (a copy), or null when empty. */
  contents(): Buffer | null {
    if (this.filled === 0) return null;
    if (this.filled < this.size) return Buffer.from(this.ring.subarray(0, this.filled));
    return Buffer.concat([this.ring.subarray(this.at), this.ring.subarray(0, this.at)], this.size);
  }
}

/** Frees a zlib context (its error listener stays: a late error is ignored, not thrown). */
function release(z: Stream | null): void {
  if (z === null || z.released) return;
  z.released = true;
  openStreams--;
  z.chunks = [];
  z.close();
}

/**
 * Resets a stream whose message is done to zlib's initial state (an empty window, no dictionary): what it produces
 * or inflates next is standalone. False when it cannot be (it is then released by the caller).
 */
function reset(z: Stream): boolean {
  if (z.destroyed || z.total !== 0) return false;
  try {
    z.reset();
    return true;
  } catch {
    return false;
  }
}

/** Whether a final block ended the stream (it takes no more input). */
function ended(z: Stream): boolean {
  return z.readableEnded || (z as unknown as { _readableState?: { ended?: boolean } })._readableState?.ended === true;
}

/** The output gathered since the last call. */
function take(z: Stream): Buffer {
  const out = concat(z.chunks, z.total);
  z.chunks = [];
  z.total = 0;
  return out;
}

/** A copy of a message's compressed data with the 00 00 ff ff trailer put back (RFC 7692 §7.2.2). */
function withTrailer(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(data.byteLength + TRAILER.length);
  out.set(data, 0);
  TRAILER.copy(out, data.byteLength);
  return out;
}

/** Removes the 00 00 ff ff a sync flush ends with (RFC 7692 §7.2.1). */
function stripTrailer(out: Buffer): Buffer {
  const n = out.length;
  return n >= 4 && out[n - 4] === 0 && out[n - 3] === 0 && out[n - 2] === 0xff && out[n - 1] === 0xff ? out.subarray(0, n - 4) : out;
}

function concat(chunks: Buffer[], total: number): Buffer {
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total);
}

/**
 * Compresses a whole message once, synchronously, without context: the payload of a frame any connection that
 * negotiated `server_no_context_takeover` with a window of at least `windowBits` can inflate (a broadcast).
 */
export function compressOnce(data: Uint8Array, windowBits = 15, level = 6): Buffer {
  const out = stripTrailer(deflateRawSync(data, { windowBits, level, finishFlush: constants.Z_SYNC_FLUSH }));
  return out.length === 0 ? Buffer.from([0]) : out;
}
