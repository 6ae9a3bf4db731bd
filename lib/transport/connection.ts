/**
 * A WebSocket connection over a `node:net`/`node:tls` socket: the sans-I/O {@link Protocol} wired to the socket,
 * with backpressure, corked writes, close timers and async iteration. Both the server and the client hand these
 * out.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type Data as Payload, toBytes } from '../core/bytes.js';
import { CloseCode } from '../core/errors.js';
import { checkOptionNames } from '../core/options.js';
import type { MaskSource } from '../core/mask.js';
import { encodeFrame, encodeTextFrame } from '../core/frame.js';
import { Protocol, type ProtocolError, type ProtocolHandler, ReadyState, validateClose } from '../core/protocol.js';
import type { DeflateCodec } from '../deflate/codec.js';
import type { DeflateOptions } from '../deflate/negotiate.js';
import { type CompressJob, DeflatePipeline, type HeldJob, jobBytes, type PipelineHost, type WholeJob } from '../deflate/pipeline.js';
import type { PreparedMessage } from './prepared.js';
import { readDirectly, readsDirectly } from './reads.js';
import { type DirectWriter, directWriter, writeDirect } from './writes.js';

/** Defaults of {@link ConnectionOptions}, in milliseconds and bytes. */
export const CONNECTION_DEFAULTS = {
  /** 10 s to wait for the peer's close frame (or its TCP close) before destroying the socket. */
  closeTimeout: 10_000,
  /** 1 MiB of unsent data above which a peer's ping, instead of a pong, cuts the connection. */
  maxPongBacklog: 1024 * 1024,
  /** Messages queued for a `for await` loop before the socket is paused. */
  iteratorHighWaterMark: 64,
} as const;

/** Options shared by every connection, server or client side. */
export interface ConnectionOptions {
  /** Largest message accepted, in bytes (1009 above it). Default: 64 MiB. */
  maxMessageSize?: number;
  /** Largest frame accepted, in bytes (1009 above it). Default: `maxMessageSize`. */
  maxFrameSize?: number;
  /** Bytes charged per fragment after the first toward `maxMessageSize`. Default: 16. */
  fragmentOverhead?: number;
  /** Answer pings automatically. Default: true. */
  autoPong?: boolean;
  /** Reject non-minimal frame length encodings with 1002. Default: false. */
  strictLengths?: boolean;
  /**
   * Milliseconds to wait for the closing handshake to finish before destroying the socket; after the peer ended TCP
   * without one (FIN alone), for what is still to be written to leave. Default: 10,000.
   */
  closeTimeout?: number;
  /**
   * Bytes of unsent data above which an incoming ping cuts the connection instead of queueing a pong: a peer that
   * floods pings and never reads cannot make the server buffer without bound. Default: 1 MiB.
   */
  maxPongBacklog?: number;
  /** Messages queued for async iteration before reading pauses (backpressure to the peer). Default: 64. */
  iteratorHighWaterMark?: number;
  /**
   * permessage-deflate (RFC 7692): `true` for the defaults, or options. Default: false (off). See the README for
   * when it pays and what it costs in memory.
   */
  perMessageDeflate?: boolean | DeflateOptions;
}

/** @internal The names of {@link ConnectionOptions} (the compiler keeps the list complete). */
export const CONNECTION_OPTION_NAMES = {
  maxMessageSize: true,
  maxFrameSize: true,
  fragmentOverhead: true,
  autoPong: true,
  strictLengths: true,
  closeTimeout: true,
  maxPongBacklog: true,
  iteratorHighWaterMark: true,
  perMessageDeflate: true,
} as const satisfies Record<keyof ConnectionOptions, true>;

/**
 * Called once a message's bytes were handed to the socket (flushed with the batch of its tick), with no argument;
 * or with an Error when they could not be: the connection was not open, closed first, or the socket failed.
 */
export type SendCallback = (error?: Error) => void;

/** Options of one `send`. */
export interface SendOptions {
  /** Send as binary (true) or text (false). Default: false for strings, true for bytes. */
  binary?: boolean;
  /** Compress when permessage-deflate is negotiated. Default: true (subject to the threshold). */
  compress?: boolean;
}

/** A received message, as yielded by async iteration. */
export interface Message {
  data: Buffer;
  isBinary: boolean;
}

/** Events of a {@link WebSocketConnection}. */
export interface ConnectionEvents {
  /** A complete message: text arrives as its UTF-8 bytes (already validated; `data.toString()` decodes it). */
  message: (data: Buffer, isBinary: boolean) => void;
  ping: (data: Buffer) => void;
  pong: (data: Buffer) => void;
  /**
   * Always fires once, last: the peer's close code (1005 without one, 1006 with no close frame) and reason. A peer
   * that ends TCP without a close frame (FIN alone) is not left half-open, even on a socket made with `allowHalfOpen`
   * (`node:http`'s): what was already sent is written, our side ended, the socket closed, then `close` reports 1006
   * (or the peer's code, when its close frame came before).
   */
  close: (code: number, reason: string) => void;
  /** A protocol violation by the peer or a socket error. Never emitted without a listener. */
  error: (error: Error) => void;
  /**
   * The socket's write buffer has drained below its high-water mark. Called with no argument; the optional `void`
   * parameter only lets a Promise's `resolve` be the listener: `new Promise((resolve) => conn.once('drain', resolve))`.
   */
  drain: (nothing?: void) => void;
}

/** Internal hooks for the layers above (server registry, heartbeat, deflate). */
export interface ConnectionInternals {
  onClosed?: (connection: WebSocketConnection<any, any>) => void;
}

type Waiter = { resolve: (r: IteratorResult<Message>) => void; reject: (e: Error) => void };

/**
 * What the core and the deflate pipeline report or ask for, forwarded to the connection: their handler is this
 * private object, not the public class, so the connection's API stays its own (and its published type does not
 * claim members that `stripInternal` removes).
 */
class CoreEvents implements ProtocolHandler, PipelineHost {
  constructor(private readonly c: WebSocketConnection<any, any>) {}
  sendCompressed(payload: Buffer | null, job: CompressJob): boolean {
    return this.c.sendCompressed(payload, job);
  }
  runHeld(job: HeldJob): void {
    this.c.runHeld(job);
  }
  get gone(): boolean {
    return this.c.gone;
  }
  pauseInput(): void {
    this.c.pauseInput();
  }
  resumeInput(): void {
    this.c.resumeInput();
  }
  deliver(data: Buffer, isBinary: boolean): void {
    this.c.deliver(data, isBinary);
  }
  fail(error: ProtocolError): void {
    this.c.fail(error);
  }
  onMessage(data: Buffer, isBinary: boolean, compressed: boolean): void {
    this.c.onMessage(data, isBinary, compressed);
  }
  onPing(data: Buffer): void {
    this.c.onPing(data);
  }
  onPong(data: Buffer): void {
    this.c.emit('pong', data);
  }
  onClose(code: number, reason: string): void {
    this.c.onClose(code, reason);
  }
  onError(error: ProtocolError): void {
    this.c.onError(error);
  }
  onWrite(data: Buffer | [Buffer, Uint8Array]): void {
    this.c.onWrite(data);
  }
  onEnd(): void {
    this.c.onEnd();
  }
}

/**
 * One WebSocket connection, server or client side. Obtained from a server's `connection` event or from
 * `connect()`; not constructed by applications. `Data` types {@link WebSocketConnection.data} (the application's
 * own per-connection state), `Principal` types {@link WebSocketConnection.principal} (what the server's
 * `authenticate` accepted); both default to `unknown`.
 */
export class WebSocketConnection<Data = unknown, Principal = unknown> extends EventEmitter {
  /** readyState: connecting (never seen on a connection: it is made once the handshake is done). */
  static readonly CONNECTING = ReadyState.CONNECTING;
  /** readyState: open. */
  static readonly OPEN = ReadyState.OPEN;
  /** readyState: the closing handshake is in progress. */
  static readonly CLOSING = ReadyState.CLOSING;
  /** readyState: closed. */
  static readonly CLOSED = ReadyState.CLOSED;
  /** The negotiated subprotocol ('' when none). */
  readonly protocol: string;
  /** The negotiated `Sec-WebSocket-Extensions` value ('' when none). */
  readonly extensions: string;
  /**
   * What carries the connection: `'h2'` for a stream of an HTTP/2 connection (RFC 8441, see `handleStream` and
   * `connect(url, { http2: true })`), else `'http/1.1'` (a TCP or TLS connection of its own).
   */
  get transport(): 'http/1.1' | 'h2' {
    return (this.socket as Duplex & { [kTransport]?: 'h2' })[kTransport] ?? 'http/1.1';
  }
  /** Remote IP address, when known. */
  get remoteAddress(): string | undefined {
    return (this.socket as Partial<Socket>).remoteAddress;
  }
  /**
   * What the server's `authenticate` hook accepted (`{ principal }`); undefined on the client or without the hook.
   * Typed by the server's `Principal` parameter, inferred from `authenticate`.
   */
  principal: Principal = undefined as Principal;
  /** A free slot for the application's own per-connection state (undefined until set). Typed by `Data`. */
  data: Data = undefined as Data;

  private readonly socket: Duplex;
  private readonly core: Protocol;
  /** The option values (timeouts, limits): one object shared by every connection made with the same values. */
  private readonly settings: Settings;
  private readonly internals: ConnectionInternals;
  private closeTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private writeOk = true;
  private receiving = false;
  /**
   * Frames written since the last flush, in `out[0, outCount)`: handed to the socket together, at the end of a read
   * or of the tick. A flush clears the slots it used rather than the array's length (a store to `length` goes
   * through V8's runtime), so the array keeps its size between batches; one that grew past {@link OUT_KEPT} is let go.
   */
  private out: Array<Buffer | Uint8Array | undefined> = NO_BYTES;
  private outCount = 0;
  private outBytes = 0;
  private flushScheduled = false;
  private queue: Message[] | null = null;
  private waiters: Waiter[] = NO_WAITERS;
  /** permessage-deflate's job queue and inflate stage (null without compression). */
  private readonly pipeline: DeflatePipeline | null;
  /** Reading paused by the application (`pause()`) or by a full iterator queue. */
  private userPaused = false;
  private iteratorPaused = false;
  private closeRequested = false;
  /** Our side of TCP is ended (`socket.end()` called): nothing more is written. */
  private ending = false;
  /** An application's fragmented message is open (its final fragment not yet accepted). */
  private streaming = false;
  /** Whole messages sent while a fragmented one is open: they follow its final fragment, in order. */
  private held: WholeJob[] = NO_HELD;
  private heldBytes = 0;
  /** The callback of the frame being written now (picked up by `onWrite`). */
  private cb: SendCallback | null = null;
  /** Callbacks of the frames gathered in `out`: they run once that batch is flushed. */
  private cbs: SendCallback[] = NO_CBS;
  /** The socket closed while a message was being inflated: `close` waits until what was read is delivered. */
  private finishDeferred = false;
  /** The core's close frame waits in the deflate pipeline behind messages accepted before it (see `sendBeforeClose`). */
  private closeQueued = false;
  /** Set by a send that queued or held its message (for `sendAsync`). */
  private lastJob: WholeJob | null = null;
  /**
   * The one `message` listener, called directly by {@link deliver} (see {@link messageListenerOf}); null: emit
   * (zero or several listeners); undefined: not looked up since the listeners last changed; false: always emit
   * (`captureRejections` was on when the connection was made: `emit` then watches what listeners return).
   */
  private messageListener: MessageListener | null | undefined | false = undefined;
  /** Writes through the socket's handle (see writes.ts); null: through `socket.write`. */
  private readonly writer: DirectWriter | null;

  /** @internal Use a server or `connect()`. */
  constructor(
    socket: Duplex,
    role: 'server' | 'client',
    options: ConnectionOptions & { protocol?: string; extensions?: string; codec?: DeflateCodec | null; threshold?: number; noDelay?: boolean; maskSource?: MaskSource },
    internals: ConnectionInternals = {},
  ) {
    super();
    if (EventEmitter.captureRejections) this.messageListener = false;
    this.socket = socket;
    this.protocol = options.protocol ?? '';
    this.extensions = options.extensions ?? '';
    this.settings = settingsOf(
      options.closeTimeout ?? CONNECTION_DEFAULTS.closeTimeout,
      options.maxPongBacklog ?? CONNECTION_DEFAULTS.maxPongBacklog,
      options.autoPong !== false,
      options.iteratorHighWaterMark ?? CONNECTION_DEFAULTS.iteratorHighWaterMark,
      options.threshold ?? 0,
    );
    this.internals = internals;
    const events = new CoreEvents(this);
    this.pipeline = options.codec ? new DeflatePipeline(options.codec, events) : null;
    this.core = new Protocol(
      {
        role,
        maxMessageSize: options.maxMessageSize,
        maxFrameSize: options.maxFrameSize,
        fragmentOverhead: options.fragmentOverhead,
        strictLengths: options.strictLengths,
        rsv1: this.pipeline !== null,
        autoPong: false,
        maskSource: options.maskSource,
      },
      events,
    );
    // Module-level listeners with a back-reference: no closures per connection.
    (socket as SocketWithConnection)[kConnection] = this;
    // Reads go straight from the socket's handle to `receive` where Node allows it (see reads.ts); `data` events
    // then carry only what the stream had buffered before. Elsewhere (TLS, other Duplexes) they carry everything.
    socket.on('data', onSocketData);
    readDirectly(socket, onSocketData);
    this.writer = directWriter(socket, this);
    socket.on('drain', onSocketDrain);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    // The peer's FIN: a socket made with `allowHalfOpen` (node:http's, so `handleUpgrade`'s) would stay half-open.
    socket.on('end', onSocketEnd);
    if (socket.readableEnded) this.onEnd(); // it came while the handshake was checked
    // Small frames leave at once (no Nagle delay); a server that set it at accept time says so.
    if (options.noDelay !== false && 'setNoDelay' in socket && typeof socket.setNoDelay === 'function') socket.setNoDelay(true);
  }

  /**
   * 1 `OPEN`, 2 `CLOSING` (a close frame sent or received, or TCP ending), 3 `CLOSED` (the `close` event has
   * fired); never 0 `CONNECTING`, as a connection exists only once its handshake is done. The values are the
   * {@link ReadyState} numbers, also on the class and every instance: `conn.readyState === conn.OPEN`.
   */
  get readyState(): number {
    if (this.closed) return ReadyState.CLOSED;
    if (this.core.readyState === ReadyState.CLOSED || this.closeRequested || this.ending) return ReadyState.CLOSING;
    return this.core.readyState;
  }

  /**
   * Bytes accepted by `send` (and the other sends) and not yet handed to the kernel, counted as frame bytes: frame
   * headers and a client's masking keys included, a compressed message at its compressed size (one queued for
   * compression at its uncompressed size), pings, pongs and the close frame too. It measures what the connection
   * holds in memory, which is what a send budget needs (the hub's slow-consumer limit reads it); it is not the
   * WHATWG figure: the browser-style {@link WebSocket.bufferedAmount} counts application payload bytes only. An
   * 8 MiB message sent by a client adds 8,388,622 here (14 bytes of header and mask), 8,388,608 there.
   */
  get bufferedAmount(): number {
    return this.unsent + this.outBytes + (this.pipeline?.queuedBytes ?? 0) + this.heldBytes;
  }

  /** Bytes handed to the socket and not yet written: its Writable's, and those of direct writes in progress. */
  private get unsent(): number {
    return this.writer === null ? this.socket.writableLength : this.writer.unsent;
  }

  /** @internal Which read and write path this connection's socket uses (`server.stats()`). */
  get paths(): { read: 'direct' | 'stream'; write: 'direct' | 'stream' } {
    return { read: readsDirectly(this.socket) ? 'direct' : 'stream', write: this.writer?.direct === true ? 'direct' : 'stream' };
  }

  /**
   * @internal Feeds bytes from the peer (the socket's reads, and bytes that arrived with the handshake); `borrowed`:
   * they are only lent for this call (the direct read path's shared buffer). Returns the payload bytes of the
   * current frame still to come (a hint for the direct read path, see reads.ts).
   */
  receive(chunk: Buffer, borrowed?: boolean): number {
    this.receiving = true;
    try {
      if (borrowed === true) this.core.receiveBorrowed(chunk);
      else this.core.receive(chunk);
    } finally {
      this.receiving = false;
    }
    // Whatever handling this read produced (echoes, pongs) leaves now, in one write.
    if (this.outBytes > 0) this.flush();
    return this.core.payloadPending;
  }

  /** @internal The core's output. */
  onWrite(data: Buffer | [Buffer, Uint8Array]): void {
    const cb = this.cb;
    if (cb !== null) this.cb = null;
    if (this.pipeline?.holding) {
      // After a close frame the core writes nothing: the first write it makes with `closeSent` is that frame.
      if (this.core.closeSent && !this.closeQueued) this.closeQueued = true;
      this.pipeline.enqueue({ kind: 'write', data, cb });
      return;
    }
    if (this.ending || this.socket.destroyed) {
      if (cb !== null) failLater(cb, new Error('WebSocket closed before the data was written'));
      return;
    }
    if (cb !== null) {
      if (this.cbs === NO_CBS) this.cbs = [];
      this.cbs.push(cb);
    }
    let out = this.out;
    if (out === NO_BYTES) out = this.out = [];
    if (Array.isArray(data)) {
      out[this.outCount++] = data[0];
      out[this.outCount++] = data[1];
      this.outBytes += data[0].length + data[1].length;
    } else {
      out[this.outCount++] = data;
      this.outBytes += data.length;
    }
    // At the high-water mark, write now: the socket then reports the backpressure itself and `drain` follows.
    if (this.outBytes + this.unsent >= this.socket.writableHighWaterMark) return this.flush();
    if (!this.receiving && !this.flushScheduled) {
      // Writes outside a read (a burst of sends, a broadcast) leave at the end of the tick; every connection with
      // output is flushed by one shared callback, not one per connection.
      this.flushScheduled = true;
      toFlush.push(this);
      if (toFlush.length === 1) process.nextTick(flushAll);
    }
  }

  /** @internal The end of the tick in which output was gathered outside a read. */
  flushTick(): void {
    this.flushScheduled = false;
    this.flush();
  }

  /** @internal Hands the gathered frames to the socket: one write, or one corked batch. */
  flush(): void {
    const out = this.out;
    const n = this.outCount;
    if (n === 0) return;
    const bytes = this.outBytes;
    this.outBytes = 0;
    const socket = this.socket;
    const cbs = this.cbs;
    if (cbs.length > 0) this.cbs = NO_CBS;
    if (socket.destroyed) {
      this.clearOut();
      failAll(cbs, new Error('WebSocket closed before the data was written'));
      return;
    }
    // The batch leaves in one write(v): its callbacks run together once it is flushed.
    const done = cbs.length === 0 ? undefined : (error?: Error | null): void => callAll(cbs, error ?? undefined);
    const writer = this.writer;
    if (writer !== null && writeDirect(writer, out, n, bytes, done)) {
      // Through the socket's handle (writes.ts): `drain` is owed once a batch left us over the high-water mark.
      this.writeOk = writer.unsent < socket.writableHighWaterMark;
      if (!this.writeOk) writer.waiting = true;
    } else if (n === 1) {
      this.writeOk = socket.write(out[0]!, done);
    } else {
      socket.cork();
      for (let i = 0; i < n - 1; i++) socket.write(out[i]!);
      socket.write(out[n - 1]!, done);
      socket.uncork();
      // Judge by what is left once the batch went out (a corked write reports the whole batch as pending).
      this.writeOk = socket.writableLength < socket.writableHighWaterMark;
    }
    this.clearOut();
  }

  /** Empties `out`: its used slots let go of their frames (the array is kept unless a burst made it large). */
  private clearOut(): void {
    const n = this.outCount;
    this.outCount = 0;
    if (n > OUT_KEPT) {
      this.out = NO_BYTES;
      return;
    }
    const out = this.out;
    for (let i = 0; i < n; i++) out[i] = undefined;
  }

  /** @internal The socket's `drain` (its Writable is empty): `drain` here once direct writes are out too. */
  onDrain(): void {
    if (this.writer !== null && this.writer.pending > 0) {
      this.writer.waiting = true;
      return;
    }
    this.writeOk = true;
    this.emit('drain');
  }

  /** @internal {@link WriteHost}: every direct write completed after the connection went over its high-water mark. */
  onDirectDrain(): void {
    this.writeOk = true;
    this.emit('drain');
  }

  /** @internal */
  onSocketError(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  /**
   * Sends a message: a string as text; a Buffer, ArrayBuffer or any view as binary (or as text with
   * `{ binary: false }` when the bytes are UTF-8). Returns false when the socket's buffer is over its high-water
   * mark (wait for `drain`, or use {@link sendAsync}), or when the connection is closing/closed (the data is
   * dropped, as browsers do). Anything else as `data` throws a TypeError.
   *
   * `callback` (as in ws: `send(data, callback)` or `send(data, options, callback)`) runs once the message was
   * handed to the socket, or with an Error when it could not be (not open, closed first). Options that are not
   * an object, an unknown option name (ws's `fin`, `mask`), or a callback that is not a function, throw a TypeError. A message sent while a fragmented one is
   * being streamed ({@link sendFragment}) follows the stream's final fragment.
   */
  send(data: Payload, callback?: SendCallback): boolean;
  send(data: Payload, options?: SendOptions, callback?: SendCallback): boolean;
  send(data: Payload, options?: SendOptions | SendCallback, callback?: SendCallback): boolean {
    if (options !== undefined || callback !== undefined) {
      callback = sendArgs(options, callback, 'send');
      if (typeof options === 'function') options = undefined;
    }
    const binary = (options as SendOptions | undefined)?.binary ?? typeof data !== 'string';
    if (this.closeRequested || this.ending || this.closed || this.core.closeSent) {
      if (typeof data !== 'string') toBytes(data);
      if (callback !== undefined) failLater(callback, this.notOpen());
      return false;
    }
    const pipeline = this.pipeline;
    let job: WholeJob | null = null;
    if (pipeline !== null && pipeline.codec.compresses && (options as SendOptions | undefined)?.compress !== false) {
      const bytes = typeof data === 'string' ? Buffer.from(data) : toBytes(data);
      if (bytes.length >= this.settings.threshold) job = { kind: 'compress', data: bytes, binary, started: false, cb: callback };
      else data = bytes;
    }
    if (job === null && (pipeline?.holding || this.streaming)) {
      job = { kind: 'send', data: typeof data === 'string' ? data : toBytes(data), binary, cb: callback };
    }
    if (job !== null) return this.enqueueWhole(job);
    if (callback === undefined) this.core.send(data, binary);
    else this.withCallback(callback, () => this.core.send(data, binary));
    return this.writeOk;
  }

  /**
   * Queues a whole message behind the compressions in progress, or holds it behind an open fragmented message.
   * Without an open stream the pipeline exists: a compression, or a queue to wait in, is why a job was made.
   */
  private enqueueWhole(job: WholeJob): boolean {
    this.lastJob = job;
    if (this.streaming) {
      if (this.held === NO_HELD) this.held = [];
      this.held.push(job);
      this.heldBytes += jobBytes(job);
    } else {
      this.pipeline!.enqueue(job);
    }
    return this.writeOk && (this.pipeline?.queuedBytes ?? 0) + this.heldBytes < this.socket.writableHighWaterMark;
  }

  /**
   * The final fragment is accepted: the messages held behind the stream follow it, in order — written now, or
   * queued in the pipeline once a compression (or the final fragment itself) waits there.
   */
  private release(): void {
    const held = this.held;
    this.held = NO_HELD;
    this.heldBytes = 0;
    const pipeline = this.pipeline;
    for (let i = 0; i < held.length; i++) {
      const job = held[i];
      if (job.kind === 'compress' || pipeline?.holding) pipeline!.enqueue(job);
      else this.sendWhole(job);
    }
  }

  /** Writes a plain or prepared message now, with its callback; tells `done` whether it went. */
  private sendWhole(job: Extract<WholeJob, { kind: 'send' | 'prepared' }>): void {
    const sent = this.withCallback(job.cb, () =>
      job.kind === 'send' ? this.core.send(job.data, job.binary) || this.sendBeforeClose(job.data, job.binary, false) : this.core.sendFrame(job.frame) || this.sendBeforeClose(job.frame),
    );
    job.done?.(sent);
  }

  /**
   * Runs a core write that carries `callback` (picked up by `onWrite`); a write that did not happen calls back with
   * an error. Returns whether it happened.
   */
  private withCallback(callback: SendCallback | undefined, write: () => boolean): boolean {
    this.cb = callback ?? null;
    try {
      const ok = write();
      this.settle(ok);
      return ok;
    } finally {
      this.cb = null;
    }
  }

  /** After a write that carried `this.cb`: a callback the write did not take is told the data was not sent. */
  private settle(ok: boolean): void {
    const cb = this.cb;
    if (cb === null) return;
    this.cb = null;
    if (!ok) failLater(cb, this.notOpen());
  }

  private notOpen(): Error {
    return new Error(`WebSocket is not open (readyState ${this.readyState}): the data was not sent`);
  }

  /**
   * Sends a message and resolves once the socket can take more (at once when its buffer is below the high-water
   * mark, else on `drain`). Rejects when the connection is not open or closes first.
   */
  sendAsync(data: Payload, options?: SendOptions): Promise<void> {
    this.lastJob = null;
    const ok = this.send(data, options);
    // (`send` sets it: the cast undoes the narrowing to null from the line above.)
    const job = this.lastJob as WholeJob | null;
    this.lastJob = null;
    if (job !== null) {
      return new Promise((resolve, reject) => {
        job.done = (sent) => (sent ? (this.writeOk ? resolve() : this.drained().then(resolve, reject)) : reject(new Error('WebSocket closed before the message was sent')));
      });
    }
    if (this.readyState !== ReadyState.OPEN) return Promise.reject(new Error(`WebSocket is not open (readyState ${this.readyState})`));
    return ok ? Promise.resolve() : this.drained();
  }

  private drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onDrain = (): void => {
        this.off('close', onClose);
        resolve();
      };
      const onClose = (): void => {
        this.off('drain', onDrain);
        reject(new Error('WebSocket closed before its buffer drained'));
      };
      this.once('drain', onDrain);
      this.once('close', onClose);
    });
  }

  /**
   * Sends one fragment of a message being streamed (RFC 6455 §5.4): the first call fixes the type, `fin` ends
   * it. Pings and pongs may go between fragments; whole messages sent meanwhile (`send`, `sendPrepared`) are held
   * and follow the final fragment, in order. Fragments are never compressed. Returns and calls back as
   * {@link send}.
   */
  sendFragment(data: Payload, fin: boolean, callback?: SendCallback): boolean;
  sendFragment(data: Payload, fin: boolean, options?: SendOptions, callback?: SendCallback): boolean;
  sendFragment(data: Payload, fin: boolean, options?: SendOptions | SendCallback, callback?: SendCallback): boolean {
    if (typeof fin !== 'boolean') throw new TypeError(`sendFragment(data, fin): fin must be a boolean, got ${typeof fin}`);
    callback = sendArgs(options, callback, 'sendFragment');
    const binary = (typeof options === 'object' ? options.binary : undefined) ?? typeof data !== 'string';
    if (this.closeRequested || this.ending || this.closed || this.core.closeSent) {
      if (callback !== undefined) failLater(callback, this.notOpen());
      return false;
    }
    if (this.pipeline?.holding) {
      this.pipeline.enqueue({ kind: 'fragment', data: typeof data === 'string' ? data : toBytes(data), binary, fin, cb: callback });
    } else {
      this.withCallback(callback, () => this.core.sendFragment(data, fin, binary));
    }
    this.streaming = !fin;
    if (fin && this.held.length > 0) this.release();
    return this.writeOk;
  }

  /**
   * Sends a message framed once by `prepare()`: the same bytes go to every connection (broadcast). A compressed
   * prepared message goes compressed to connections whose negotiation allows it (server_no_context_takeover and a
   * large enough window), uncompressed to the others. Client connections mask every frame, so they frame the
   * payload themselves. It goes through the protocol core like any message: in order behind messages waiting for
   * compression, and after the final fragment of a message being streamed. Returns and calls back as
   * {@link send}.
   */
  sendPrepared(message: PreparedMessage, callback?: SendCallback): boolean {
    if (callback !== undefined && typeof callback !== 'function') throw new TypeError(`sendPrepared callback must be a function, got ${typeof callback}`);
    if (this.closeRequested || this.ending || this.closed || this.core.closeSent) {
      if (callback !== undefined) failLater(callback, this.notOpen());
      return false;
    }
    if (this.core.role === 'client') return this.send(message.payload, { binary: message.isBinary, compress: false }, callback);
    const c = this.pipeline?.codec ?? null;
    const frame =
      message.compressed && c !== null && c.compresses && c.params.serverNoContextTakeover && c.params.serverMaxWindowBits >= message.compressed.windowBits
        ? message.compressed.frame
        : message.frame;
    if (frame === undefined) throw new TypeError('sendPrepared takes a message made by prepare()');
    if (this.pipeline?.holding || this.streaming) return this.enqueueWhole({ kind: 'prepared', frame, cb: callback });
    if (callback === undefined) {
      // The broadcast fast path: the core has said no close frame went out (above) and no fragmented message is
      // open, so the frame is the core's next output; anything else goes through `sendFrame`, which enforces it.
      // (Writing here rather than calling back out of the core keeps fan-out at its former speed.)
      if (!this.core.sendingFragments) this.onWrite(frame);
      else this.core.sendFrame(frame);
    } else {
      this.withCallback(callback, () => this.core.sendFrame(frame));
    }
    return this.writeOk;
  }

  /**
   * Sends a ping (at most 125 bytes of payload; RangeError above). Returns false when not open. ws-style
   * arguments: `ping()`, `ping(data)`, `ping(callback)`, `ping(data, callback)`, `ping(data, mask, callback)`;
   * `mask` may only say what the role implies (true on a client, false on a server), else RangeError. `callback`
   * runs as for {@link send}.
   */
  ping(callback: SendCallback): boolean;
  ping(data?: Payload, callback?: SendCallback): boolean;
  ping(data?: Payload, mask?: boolean, callback?: SendCallback): boolean;
  ping(data?: Payload | SendCallback, mask?: boolean | SendCallback, callback?: SendCallback): boolean {
    return this.control(true, data, mask, callback);
  }

  /** Sends a pong (at most 125 bytes). Returns false when not open. Arguments as {@link ping}. */
  pong(callback: SendCallback): boolean;
  pong(data?: Payload, callback?: SendCallback): boolean;
  pong(data?: Payload, mask?: boolean, callback?: SendCallback): boolean;
  pong(data?: Payload | SendCallback, mask?: boolean | SendCallback, callback?: SendCallback): boolean {
    return this.control(false, data, mask, callback);
  }

  private control(isPing: boolean, data: Payload | SendCallback | undefined, mask: boolean | SendCallback | undefined, callback: SendCallback | undefined): boolean {
    const [payload, cb] = controlArgs(isPing ? 'ping' : 'pong', this.core.role, data, mask, callback);
    if (this.closed) {
      if (cb !== undefined) failLater(cb, this.notOpen());
      return false;
    }
    this.cb = cb ?? null;
    try {
      const ok = isPing ? this.core.ping(payload) : this.core.pong(payload);
      this.settle(ok);
      return ok && this.writeOk;
    } finally {
      this.cb = null;
    }
  }

  /**
   * Starts the closing handshake: sends a close frame (`code` 1000, 3000–4999 or 1001–1003/1007–1014; `reason` at
   * most 123 UTF-8 bytes) and destroys the socket if the peer has not finished the handshake within
   * `closeTimeout`. RangeError/TypeError for an invalid code or reason. Does nothing when already closing.
   */
  close(code?: number, reason?: string): void {
    if (this.pipeline?.holding && !this.closeRequested && !this.core.closeSent) {
      // Validate now, send once the messages queued before it are out.
      validateClose(code, reason);
      this.closeRequested = true;
      this.pipeline.enqueue({ kind: 'close', code, reason });
    } else {
      this.core.close(code, reason);
    }
    if (!this.closed && this.closeTimer === null) this.armCloseTimer();
  }

  /** @internal {@link PipelineHost}: a compressed message written now (RSV1 set) with its callback; null: not sent. */
  sendCompressed(payload: Buffer | null, job: CompressJob): boolean {
    return this.withCallback(job.cb, () => payload !== null && (this.core.send(payload, job.binary, true) || this.sendBeforeClose(payload, job.binary, true)));
  }

  /**
   * A message accepted by `send` before a close frame, written once the compressions ahead of it are done: when the
   * peer's close frame arrived meanwhile, the core answered it at once (it now refuses data), but that answer waits
   * in the pipeline behind this message, so the message still goes first, as it was accepted. `data` is a payload
   * to frame, or a prepared frame. False when no close frame waits (the message was refused for another reason).
   */
  private sendBeforeClose(data: Payload | Buffer | [Buffer, Uint8Array], binary?: boolean, rsv1?: boolean): boolean {
    if (!this.closeQueued || this.ending || this.socket.destroyed) return false;
    if (binary === undefined) this.onWrite(data as Buffer | [Buffer, Uint8Array]);
    else {
      const opcode = binary ? 0x2 : 0x1;
      const mask = this.core.mask;
      this.onWrite(typeof data === 'string' ? encodeTextFrame(data, true, rsv1, mask, opcode) : encodeFrame(opcode, toBytes(data), true, rsv1, mask));
    }
    return true;
  }

  /** @internal {@link PipelineHost}: work that waited behind a compression, in order (its writes go straight out). */
  runHeld(job: HeldJob): void {
    if (job.kind === 'send' || job.kind === 'prepared') this.sendWhole(job);
    else if (job.kind === 'fragment') this.withCallback(job.cb, () => this.core.sendFragment(job.data, job.fin, job.binary));
    else if (job.kind === 'write') {
      if (this.closeQueued && isCloseFrame(job.data)) this.closeQueued = false;
      this.cb = job.cb;
      this.onWrite(job.data);
    } else if (job.kind === 'close') this.core.close(job.code, job.reason);
    else this.onEnd();
  }

  /** @internal {@link PipelineHost} */
  get gone(): boolean {
    return this.closed || (this.socket.destroyed && !this.finishDeferred);
  }

  /** @internal {@link PipelineHost}: hold input while a message inflates (or the compressor is behind). */
  pauseInput(): void {
    this.core.pause();
    this.updateFlow();
  }

  /** @internal {@link PipelineHost}: process what the core kept, then read again — unless still held. */
  resumeInput(): void {
    if (this.closed || this.pipeline?.pausesInput) return;
    this.receiving = true;
    try {
      this.core.resume();
    } finally {
      this.receiving = false;
    }
    if (this.finishDeferred && !this.pipeline!.isInflating) return this.finish();
    if (this.outBytes > 0) this.flush();
    this.updateFlow();
  }

  /**
   * @internal Reads from the socket only when nothing holds input back: the application, the iterator, the pipeline.
   * Also how the server and the client start reading a connection they made paused (a `pause()` by the application
   * in the meantime holds).
   */
  updateFlow(): void {
    if (this.closed) return;
    // Once the core is done (close received, or failed) input is ignored: read on regardless, so the peer's end of
    // the TCP connection is seen (a paused socket reads only up to its stream's high-water mark: no EOF behind that).
    const done = this.core.readyState === ReadyState.CLOSED;
    if (!done && (this.userPaused || this.iteratorPaused || this.core.isPaused)) this.socket.pause();
    else this.socket.resume();
  }

  /** @internal {@link PipelineHost}: the message could not be inflated. */
  fail(error: ProtocolError): void {
    this.core.failWith(error);
    if (this.finishDeferred) this.finish();
  }

  /** Destroys the socket at once, without a closing handshake. The `close` event reports 1006. */
  terminate(): void {
    this.socket.destroy();
  }

  /**
   * Pauses reading from the peer (TCP backpressure): no `message` until {@link resume}. The socket reads ahead up to
   * its stream's high-water mark, as Node's streams do, so a peer that leaves with FIN alone is still seen (1006).
   */
  pause(): void {
    this.userPaused = true;
    this.updateFlow();
  }

  /** Resumes reading (unless a compressed message is still being inflated: reading then resumes after it). */
  resume(): void {
    this.userPaused = false;
    this.updateFlow();
  }

  private armCloseTimer(): void {
    this.closeTimer = setTimeout(() => this.socket.destroy(), this.settings.closeTimeout);
    this.closeTimer.unref?.();
  }

  /** @internal A message from the core: compressed ones go through the inflater first. */
  onMessage(data: Buffer, isBinary: boolean, compressed: boolean): void {
    if (compressed) this.pipeline!.inflate(data, isBinary);
    else this.deliver(data, isBinary);
  }

  /** @internal {@link PipelineHost}: a message for the application. */
  deliver(data: Buffer, isBinary: boolean): void {
    if (this.queue !== null) {
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve({ value: { data, isBinary }, done: false });
      else {
        this.queue.push({ data, isBinary });
        if (this.queue.length >= this.settings.iteratorHighWaterMark && !this.iteratorPaused) {
          this.iteratorPaused = true;
          this.updateFlow();
        }
      }
    }
    let listener = this.messageListener;
    if (listener === undefined) listener = this.messageListener = messageListenerOf(this);
    if (listener) listener.call(this, data, isBinary);
    else this.emit('message', data, isBinary);
  }

  /** @internal The `message` listeners changed: look the single one up again at the next message. */
  listenersChanged(): void {
    if (this.messageListener !== false) this.messageListener = undefined;
  }

  /** @internal */
  onPing(data: Buffer): void {
    if (this.settings.autoPong && !this.core.closeSent) {
      // RFC 6455 §5.5.3 lets an endpoint answer only the latest ping; a peer that floods pings while not reading
      // our data gets cut off rather than buffered without bound.
      if (this.unsent > this.settings.maxPongBacklog) {
        if (this.listenerCount('error') > 0) this.emit('error', new Error('ping flood while the peer is not reading: connection cut'));
        this.socket.destroy();
        return;
      }
      this.core.pong(data);
    }
    this.emit('ping', data);
  }

  /** @internal The peer's close frame (the reply is already written). */
  onClose(_code: number, _reason: string): void {
    // The reply is written; the server's core asks to end TCP itself. A client waits for the server to close: it
    // reads on even if paused, to see that.
    if (this.closeTimer === null) this.armCloseTimer();
    this.updateFlow();
  }

  /** @internal */
  onError(error: ProtocolError): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  /**
   * @internal Ends our side of TCP once written data is out: asked by the core (closing handshake done, or failed),
   * or the peer ended its side (FIN; the `close` event then reports 1006 unless its close frame came first).
   */
  onEnd(): void {
    if (this.ending) return;
    if (this.pipeline?.holding) {
      this.pipeline.enqueue({ kind: 'end' });
      return;
    }
    this.flush();
    this.ending = true;
    this.socket.end();
    if (this.closeTimer === null) this.armCloseTimer();
    this.updateFlow();
  }

  /** @internal */
  finish(): void {
    if (this.closed) return;
    if (!this.finishDeferred && this.pipeline !== null && this.pipeline.isInflating) {
      // What was read before the socket closed is still delivered: the message being inflated, then whatever the
      // core holds behind it (the close frame included). `close` follows (see `resumeInput`, `fail`).
      this.finishDeferred = true;
      return;
    }
    this.closed = true;
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    const code = this.core.transportClosed();
    const reason = code === CloseCode.ABNORMAL ? '' : this.core.closeReason;
    // Whatever was still waiting is told once; a connection with nothing pending (the common close) allocates nothing.
    const dropped = this.pipeline?.close();
    if ((dropped !== undefined && dropped.length > 0) || this.held.length > 0 || this.cbs.length > 0) {
      const gone = new Error('WebSocket closed before the data was written');
      for (const job of dropped !== undefined ? [...dropped, ...this.held] : this.held) {
        if ('done' in job) job.done?.(false);
        if ('cb' in job && job.cb) failLater(job.cb, gone);
      }
      failAll(this.cbs, gone);
    }
    this.held = NO_HELD;
    this.heldBytes = 0;
    this.clearOut();
    this.outBytes = 0;
    this.cbs = NO_CBS;
    this.internals.onClosed?.(this);
    if (this.queue !== null) {
      for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
    }
    this.emit('close', code, reason);
  }

  /**
   * Async iteration over incoming messages: `for await (const { data, isBinary } of connection)`. Ends when the
   * connection closes. Reading pauses while `iteratorHighWaterMark` messages wait, so a slow loop slows the peer.
   */
  [Symbol.asyncIterator](): AsyncIterator<Message> {
    if (this.queue === null) this.queue = [];
    if (this.waiters === NO_WAITERS) this.waiters = [];
    const queue = this.queue;
    return {
      next: () => {
        const value = queue.shift();
        if (value !== undefined) {
          if (this.iteratorPaused && queue.length < this.settings.iteratorHighWaterMark / 2) {
            this.iteratorPaused = false;
            this.updateFlow();
          }
          return Promise.resolve({ value, done: false });
        }
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
      },
      return: () => {
        this.queue = null;
        this.iteratorPaused = false;
        this.updateFlow();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

type MessageListener = (this: WebSocketConnection<any, any>, data: Buffer, isBinary: boolean) => void;

/**
 * The listener to call directly for each message: the only `message` listener, or null when there are none or
 * several (then `emit` runs). `emit` with one listener calls it as `listener.apply(emitter, args)`, and a `once`
 * listener's wrapper (what `rawListeners` returns) removes itself before calling the listener, so a direct call
 * behaves exactly as `emit` would: same `this`, arguments, exceptions (thrown to the caller), `once` and removal
 * during the call. What it saves is `emit`'s keyed lookup of the event in the listener table, whose shape differs
 * from one connection to the next (a megamorphic load per message). The cache is dropped by every method that can
 * change listeners (below); listeners added by calling `EventEmitter.prototype` methods on a connection
 * explicitly would bypass that, which is why those methods are overridden on the class's own prototype.
 */
function messageListenerOf(connection: WebSocketConnection<any, any>): MessageListener | null {
  const listeners = connection.rawListeners('message');
  return listeners.length === 1 ? (listeners[0] as MessageListener) : null;
}

// Every EventEmitter method that adds or removes listeners drops the cached `message` listener once it returned
// (`once` and `prependOnceListener` go through `on`/`prependListener`; a `once` wrapper removes itself through
// `removeListener`; `removeAllListeners` through itself and `removeListener`), so the cache never outlives a change.
for (const name of ['addListener', 'on', 'prependListener', 'removeListener', 'off', 'removeAllListeners'] as const) {
  const base = EventEmitter.prototype[name] as (this: EventEmitter, ...args: unknown[]) => EventEmitter;
  Object.defineProperty(WebSocketConnection.prototype, name, {
    value: function listenersMethod(this: WebSocketConnection<any, any>, ...args: unknown[]): EventEmitter {
      const result = base.apply(this, args);
      this.listenersChanged();
      return result;
    },
    writable: true,
    configurable: true,
  });
}

/** A connection's option values, in milliseconds, bytes and messages (see {@link ConnectionOptions}). */
interface Settings {
  readonly closeTimeout: number;
  readonly maxPongBacklog: number;
  readonly autoPong: boolean;
  readonly iteratorHighWaterMark: number;
  /** permessage-deflate: messages below this many bytes are sent uncompressed. */
  readonly threshold: number;
}

/**
 * Settings objects by their values: connections made with the same options (every connection of a server, as a
 * rule) share one object instead of carrying five fields each (40 bytes per connection). At most
 * {@link SETTINGS_KEPT} distinct sets are kept; past that, connections get their own object.
 */
const settingsCache = new Map<string, Settings>();
const SETTINGS_KEPT = 64;

function settingsOf(closeTimeout: number, maxPongBacklog: number, autoPong: boolean, iteratorHighWaterMark: number, threshold: number): Settings {
  const key = `${closeTimeout}/${maxPongBacklog}/${autoPong ? 1 : 0}/${iteratorHighWaterMark}/${threshold}`;
  let settings = settingsCache.get(key);
  if (settings === undefined) {
    settings = Object.freeze({ closeTimeout, maxPongBacklog, autoPong, iteratorHighWaterMark, threshold });
    if (settingsCache.size < SETTINGS_KEPT) settingsCache.set(key, settings);
  }
  return settings;
}

const kConnection = Symbol('wsengine.connection');
/** Set to `'h2'` on an HTTP/2 stream that carries a WebSocket (by http2.ts). */
const kTransport = Symbol.for('wsengine.transport');
type SocketWithConnection = Duplex & { [kConnection]: WebSocketConnection<any, any> };

function onSocketData(this: SocketWithConnection, chunk: Buffer, borrowed?: boolean): number {
  return this[kConnection].receive(chunk, borrowed === true);
}
function onSocketDrain(this: SocketWithConnection): void {
  this[kConnection].onDrain();
}
function onSocketError(this: SocketWithConnection, error: Error): void {
  this[kConnection].onSocketError(error);
}
function onSocketEnd(this: SocketWithConnection): void {
  this[kConnection].onEnd();
}
function onSocketClose(this: SocketWithConnection): void {
  this[kConnection].finish();
}

/** Whether a write is a close frame (FIN and opcode 8, as the core frames it). */
function isCloseFrame(data: Buffer | [Buffer, Uint8Array]): boolean {
  return (Array.isArray(data) ? data[0] : data)[0] === 0x88;
}

/** Connections with output gathered during the current tick, flushed together at its end. */
let toFlush: Array<WebSocketConnection<any, any>> = [];

function flushAll(): void {
  const list = toFlush;
  toFlush = [];
  for (let i = 0; i < list.length; i++) list[i].flushTick();
}

/** Shared empty arrays: a connection allocates its own only once it needs one. */
const NO_BYTES: Array<Buffer | Uint8Array | undefined> = [];
/** Largest `out` array a connection keeps between batches (slots); a longer one is dropped after its flush. */
const OUT_KEPT = 16;
const NO_WAITERS: Waiter[] = [];
const NO_HELD: WholeJob[] = [];
const NO_CBS: SendCallback[] = [];

function callAll(cbs: SendCallback[], error: Error | undefined): void {
  for (let i = 0; i < cbs.length; i++) {
    if (error === undefined) cbs[i]();
    else cbs[i](error);
  }
}

/** Calls back with an error on the next tick (never synchronously from inside a send). */
function failLater(cb: SendCallback, error: Error): void {
  process.nextTick(cb, error);
}

function failAll(cbs: SendCallback[], error: Error): void {
  if (cbs.length > 0) process.nextTick(callAll, cbs.slice(), error);
}

/** Splits `(data?, options?, callback?)` as ws accepts it: the options may be left out before the callback. */
function sendArgs(options: SendOptions | SendCallback | undefined, callback: SendCallback | undefined, what: string): SendCallback | undefined {
  if (typeof options === 'function') {
    if (callback !== undefined) throw new TypeError(`${what}(data, callback) takes nothing after the callback`);
    return options;
  }
  if (options !== undefined) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`${what} options must be an object ({ binary, compress }) or omitted, got ${options === null ? 'null' : typeof options}; a callback goes last: ${what}(data, options, callback)`);
    }
    for (const name in options) if (name !== 'binary' && name !== 'compress') checkOptionNames(what, options, SEND_OPTION_NAMES, SEND_HINTS);
  }
  if (callback !== undefined && typeof callback !== 'function') throw new TypeError(`${what} callback must be a function, got ${typeof callback}`);
  return callback;
}

const SEND_OPTION_NAMES: ReadonlySet<string> = new Set(Object.keys({ binary: true, compress: true } as const satisfies Record<keyof SendOptions, true>));
const SEND_HINTS = {
  fin: 'stream a fragmented message with sendFragment(data, fin)',
  mask: 'clients mask every frame and servers never (RFC 6455 §5.1): remove the option',
};

/**
 * Splits `(data?, mask?, callback?)` as ws accepts it for ping/pong. `mask` may only state what the role implies
 * (clients mask every frame, servers never: RFC 6455 §5.1).
 */
function controlArgs(
  what: string,
  role: 'server' | 'client',
  data: Payload | SendCallback | undefined,
  mask: boolean | SendCallback | undefined,
  callback: SendCallback | undefined,
): [Payload, SendCallback | undefined] {
  if (typeof data === 'function') {
    if (mask !== undefined || callback !== undefined) throw new TypeError(`${what}(callback) takes nothing after the callback`);
    return ['', data];
  }
  if (typeof mask === 'function') {
    if (callback !== undefined) throw new TypeError(`${what}(data, callback) takes nothing after the callback`);
    callback = mask;
    mask = undefined;
  }
  if (mask !== undefined) {
    if (typeof mask !== 'boolean') throw new TypeError(`${what} mask must be a boolean or omitted, got ${mask === null ? 'null' : typeof mask}`);
    if (mask !== (role === 'client')) {
      throw new RangeError(`a ${role} ${role === 'client' ? 'masks every frame' : 'never masks its frames'} (RFC 6455 §5.1): omit mask or pass ${role === 'client'}`);
    }
  }
  if (callback !== undefined && typeof callback !== 'function') throw new TypeError(`${what} callback must be a function, got ${typeof callback}`);
  return [data ?? '', callback];
}

// The ready-state constants on every instance (as browsers and ws have them, `conn.readyState === conn.OPEN`):
// on the prototype, so a connection carries no field for them.
for (const [name, value] of Object.entries(ReadyState)) {
  Object.defineProperty(WebSocketConnection.prototype, name, { value, enumerable: true, writable: false, configurable: false });
}

/**
 * Typed event methods of {@link WebSocketConnection} (see {@link ConnectionEvents}), and the ready-state constants
 * every instance has.
 */
export interface WebSocketConnection<Data = unknown, Principal = unknown> {
  /** readyState: connecting (never seen on a connection). */
  readonly CONNECTING: 0;
  /** readyState: open. */
  readonly OPEN: 1;
  /** readyState: the closing handshake is in progress. */
  readonly CLOSING: 2;
  /** readyState: closed. */
  readonly CLOSED: 3;
  on<K extends keyof ConnectionEvents>(event: K, listener: ConnectionEvents[K]): this;
  once<K extends keyof ConnectionEvents>(event: K, listener: ConnectionEvents[K]): this;
  off<K extends keyof ConnectionEvents>(event: K, listener: ConnectionEvents[K]): this;
  emit<K extends keyof ConnectionEvents>(event: K, ...args: Parameters<ConnectionEvents[K]>): boolean;
}
