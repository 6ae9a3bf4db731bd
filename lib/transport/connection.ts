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
import { type Data, toBytes } from '../core/bytes.js';
import { CloseCode } from '../core/errors.js';
import { Protocol, type ProtocolError, type ProtocolHandler, ReadyState, validateClose } from '../core/protocol.js';
import { isValidUtf8 } from '../core/utf8.js';
import type { DeflateCodec } from '../deflate/codec.js';
import type { DeflateOptions } from '../deflate/negotiate.js';
import { protocolError } from '../core/errors.js';
import type { PreparedMessage } from './prepared.js';

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
  /** Milliseconds to wait for the closing handshake to finish before destroying the socket. Default: 10,000. */
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
  /** Always fires once, last: the peer's close code (1005 without one, 1006 with no close frame) and reason. */
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
  onClosed?: (connection: WebSocketConnection) => void;
}

type Waiter = { resolve: (r: IteratorResult<Message>) => void; reject: (e: Error) => void };

/** Outgoing work held behind a compression in progress, to keep frames in order. */
type Job =
  | { kind: 'compress'; data: Uint8Array; binary: boolean; started: boolean; done?: (ok: boolean) => void }
  | { kind: 'send'; data: Data; binary: boolean; done?: (ok: boolean) => void }
  | { kind: 'fragment'; data: Data; binary: boolean; fin: boolean }
  | { kind: 'write'; data: Buffer | [Buffer, Uint8Array] }
  | { kind: 'close'; code?: number; reason?: string }
  | { kind: 'end' };

/**
 * One WebSocket connection, server or client side. Obtained from a server's `connection` event or from
 * `connect()`; not constructed by applications.
 */
export class WebSocketConnection extends EventEmitter {
  /** The negotiated subprotocol ('' when none). */
  readonly protocol: string;
  /** The negotiated `Sec-WebSocket-Extensions` value ('' when none). */
  readonly extensions: string;
  /** Remote IP address, when known. */
  get remoteAddress(): string | undefined {
    return (this.socket as Partial<Socket>).remoteAddress;
  }
  /** What the server's `authenticate` hook attached (undefined on the client or without the hook). */
  principal: unknown;
  /** A free slot for the application's own per-connection state. */
  data: unknown;

  /** @internal heartbeat: a ping was sent and no pong has come since. */
  pingPending = false;

  private readonly socket: Duplex;
  private readonly core: Protocol;
  private readonly closeTimeout: number;
  private readonly maxPongBacklog: number;
  private readonly autoPong: boolean;
  private readonly iteratorHighWaterMark: number;
  private readonly internals: ConnectionInternals;
  private closeTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private writeOk = true;
  private receiving = false;
  /** Frames written since the last flush: handed to the socket together, at the end of a read or of the tick. */
  private out: Array<Buffer | Uint8Array> = NO_BYTES;
  private outBytes = 0;
  private flushScheduled = false;
  private queue: Message[] | null = null;
  private waiters: Waiter[] = NO_WAITERS;
  private readonly codec: DeflateCodec | null;
  private readonly threshold: number;
  private jobs: Job[] = NO_JOBS;
  private queuedBytes = 0;
  /** Writes go straight to the socket while a queued job runs. */
  private direct = false;
  private closeRequested = false;

  /** @internal Use a server or `connect()`. */
  constructor(
    socket: Duplex,
    role: 'server' | 'client',
    options: ConnectionOptions & { protocol?: string; extensions?: string; codec?: DeflateCodec | null; threshold?: number; noDelay?: boolean },
    internals: ConnectionInternals = {},
  ) {
    super();
    this.socket = socket;
    this.protocol = options.protocol ?? '';
    this.extensions = options.extensions ?? '';
    this.closeTimeout = options.closeTimeout ?? CONNECTION_DEFAULTS.closeTimeout;
    this.maxPongBacklog = options.maxPongBacklog ?? CONNECTION_DEFAULTS.maxPongBacklog;
    this.autoPong = options.autoPong !== false;
    this.iteratorHighWaterMark = options.iteratorHighWaterMark ?? CONNECTION_DEFAULTS.iteratorHighWaterMark;
    this.internals = internals;
    this.codec = options.codec ?? null;
    this.threshold = options.threshold ?? 0;
    this.core = new Protocol(
      {
        role,
        maxMessageSize: options.maxMessageSize,
        maxFrameSize: options.maxFrameSize,
        fragmentOverhead: options.fragmentOverhead,
        strictLengths: options.strictLengths,
        rsv1: this.codec !== null,
        autoPong: false,
      },
      this,
    );
    // Module-level listeners with a back-reference: no closures per connection.
    (socket as SocketWithConnection)[kConnection] = this;
    socket.on('data', onSocketData);
    socket.on('drain', onSocketDrain);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    // Small frames leave at once (no Nagle delay); a server that set it at accept time says so.
    if (options.noDelay !== false && 'setNoDelay' in socket && typeof socket.setNoDelay === 'function') socket.setNoDelay(true);
  }

  /** {@link ReadyState}: 1 OPEN, 2 CLOSING, 3 CLOSED. */
  get readyState(): number {
    if (this.closed) return ReadyState.CLOSED;
    if (this.core.readyState === ReadyState.CLOSED || this.closeRequested) return ReadyState.CLOSING;
    return this.core.readyState;
  }

  /** Bytes accepted by `send` and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.socket.writableLength + this.outBytes + this.queuedBytes;
  }

  /** @internal Feeds bytes from the peer (the socket's data events, and bytes that arrived with the handshake). */
  receive(chunk: Buffer): void {
    this.receiving = true;
    try {
      this.core.receive(chunk);
    } finally {
      this.receiving = false;
    }
    // Whatever handling this read produced (echoes, pongs) leaves now, in one write.
    if (this.outBytes > 0) this.flush();
  }

  /** @internal The core's output. */
  onWrite(data: Buffer | [Buffer, Uint8Array]): void {
    if (this.jobs.length > 0 && !this.direct) {
      this.jobs.push({ kind: 'write', data });
      return;
    }
    if (this.socket.destroyed) return;
    if (this.out === NO_BYTES) this.out = [];
    if (Array.isArray(data)) {
      this.out.push(data[0], data[1]);
      this.outBytes += data[0].length + data[1].length;
    } else {
      this.out.push(data);
      this.outBytes += data.length;
    }
    // At the high-water mark, write now: the socket then reports the backpressure itself and `drain` follows.
    if (this.outBytes + this.socket.writableLength >= this.socket.writableHighWaterMark) return this.flush();
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
    const n = out.length;
    if (n === 0) return;
    this.outBytes = 0;
    const socket = this.socket;
    if (socket.destroyed) {
      out.length = 0;
      return;
    }
    if (n === 1) {
      this.writeOk = socket.write(out[0]);
    } else {
      socket.cork();
      for (let i = 0; i < n; i++) socket.write(out[i]);
      socket.uncork();
      // Judge by what is left once the batch went out (a corked write reports the whole batch as pending).
      this.writeOk = socket.writableLength < socket.writableHighWaterMark;
    }
    out.length = 0;
  }

  /** @internal */
  onDrain(): void {
    this.writeOk = true;
    this.emit('drain');
  }

  /** @internal */
  onSocketError(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  /** @internal */
  onPong(data: Buffer): void {
    this.pingPending = false;
    this.emit('pong', data);
  }

  /**
   * Sends a message: a string as text; a Buffer, ArrayBuffer or any view as binary (or as text with
   * `{ binary: false }` when the bytes are UTF-8). Returns false when the socket's buffer is over its high-water
   * mark (wait for `drain`, or use {@link sendAsync}), or when the connection is closing/closed (the data is
   * dropped, as browsers do). Anything else as `data` throws a TypeError.
   */
  send(data: Data, options?: SendOptions): boolean {
    const binary = options?.binary ?? typeof data !== 'string';
    if (this.closeRequested) {
      if (typeof data !== 'string') toBytes(data);
      return false;
    }
    if (this.codec !== null && this.codec.compresses && options?.compress !== false) {
      const bytes = typeof data === 'string' ? Buffer.from(data) : toBytes(data);
      if (bytes.length >= this.threshold) {
        if (this.core.closeSent) return false;
        this.enqueue({ kind: 'compress', data: bytes, binary, started: false });
        return this.writeOk && this.queuedBytes < this.socket.writableHighWaterMark;
      }
      data = bytes;
    }
    if (this.jobs.length > 0) {
      if (typeof data !== 'string') data = toBytes(data);
      this.enqueue({ kind: 'send', data, binary });
      return this.writeOk && this.queuedBytes < this.socket.writableHighWaterMark;
    }
    if (!this.core.send(data, binary)) return false;
    return this.writeOk;
  }

  /**
   * Sends a message and resolves once the socket can take more (at once when its buffer is below the high-water
   * mark, else on `drain`). Rejects when the connection is not open or closes first.
   */
  sendAsync(data: Data, options?: SendOptions): Promise<void> {
    const before = this.jobs.length;
    const ok = this.send(data, options);
    if (this.jobs.length > before) {
      const job = this.jobs[this.jobs.length - 1] as Job & { done?: (ok: boolean) => void };
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
   * it. Pings and pongs may go between fragments; other messages may not. Fragments are never compressed.
   * Returns as {@link send}.
   */
  sendFragment(data: Data, fin: boolean, options?: SendOptions): boolean {
    const binary = options?.binary ?? typeof data !== 'string';
    if (this.closeRequested) return false;
    if (this.jobs.length > 0) {
      this.enqueue({ kind: 'fragment', data: typeof data === 'string' ? data : toBytes(data), binary, fin });
      return this.writeOk;
    }
    if (!this.core.sendFragment(data, fin, binary)) return false;
    return this.writeOk;
  }

  /**
   * Sends a message framed once by `prepare()`: the same bytes go to every connection (broadcast). A compressed
   * prepared message goes compressed to connections whose negotiation allows it (server_no_context_takeover and a
   * large enough window), uncompressed to the others. Client connections mask every frame, so they frame the
   * payload themselves.
   */
  sendPrepared(message: PreparedMessage): boolean {
    if (this.core.closeSent || this.closeRequested) return false;
    if (this.core.role === 'client') return this.send(message.payload, { binary: message.isBinary, compress: false });
    const c = this.codec;
    const frame =
      message.compressed && c !== null && c.compresses && c.params.serverNoContextTakeover && c.params.serverMaxWindowBits >= message.compressed.windowBits
        ? message.compressed.frame
        : message.frame;
    this.onWrite(frame);
    return this.writeOk;
  }

  /** Sends a ping (at most 125 bytes of payload; RangeError above). Returns false when not open. */
  ping(data: Data = ''): boolean {
    return this.core.ping(data) && this.writeOk;
  }

  /** Sends a pong (at most 125 bytes). Returns false when not open. */
  pong(data: Data = ''): boolean {
    return this.core.pong(data) && this.writeOk;
  }

  /**
   * Starts the closing handshake: sends a close frame (`code` 1000, 3000–4999 or 1001–1003/1007–1014; `reason` at
   * most 123 UTF-8 bytes) and destroys the socket if the peer has not finished the handshake within
   * `closeTimeout`. RangeError/TypeError for an invalid code or reason. Does nothing when already closing.
   */
  close(code?: number, reason?: string): void {
    if (this.jobs.length > 0 && !this.closeRequested && !this.core.closeSent) {
      // Validate now, send once the messages queued before it are out.
      validateClose(code, reason);
      this.closeRequested = true;
      this.enqueue({ kind: 'close', code, reason });
    } else {
      this.core.close(code, reason);
    }
    if (!this.closed && this.closeTimer === null) this.armCloseTimer();
  }

  private enqueue(job: Job): void {
    if (job.kind === 'compress' || job.kind === 'send') this.queuedBytes += typeof job.data === 'string' ? job.data.length : (job.data as Uint8Array).byteLength;
    if (this.jobs === NO_JOBS) this.jobs = [];
    this.jobs.push(job);
    if (this.jobs.length === 1) this.runJobs();
  }

  /** Runs queued jobs in order; a compression suspends the queue until zlib answers. */
  private runJobs(): void {
    while (this.jobs.length > 0) {
      const job = this.jobs[0];
      if (job.kind === 'compress') {
        if (job.started) return;
        job.started = true;
        this.codec!.compress(job.data, (error, payload) => {
          this.jobs.shift();
          this.queuedBytes -= job.data.byteLength;
          let ok = false;
          if (error === null && !this.socket.destroyed) {
            this.direct = true;
            ok = this.core.send(payload!, job.binary, true);
            this.direct = false;
          }
          job.done?.(ok);
          this.runJobs();
        });
        return;
      }
      this.jobs.shift();
      this.direct = true;
      try {
        if (job.kind === 'send') {
          this.queuedBytes -= typeof job.data === 'string' ? job.data.length : (job.data as Uint8Array).byteLength;
          const ok = this.core.send(job.data, job.binary);
          job.done?.(ok);
        } else if (job.kind === 'fragment') this.core.sendFragment(job.data, job.fin, job.binary);
        else if (job.kind === 'write') this.onWrite(job.data);
        else if (job.kind === 'close') this.core.close(job.code, job.reason);
        else this.onEnd();
      } finally {
        this.direct = false;
      }
    }
  }

  /** Destroys the socket at once, without a closing handshake. The `close` event reports 1006. */
  terminate(): void {
    this.socket.destroy();
  }

  /** Pauses reading from the peer (TCP backpressure). */
  pause(): void {
    this.socket.pause();
  }

  /** Resumes reading. */
  resume(): void {
    this.socket.resume();
  }

  private armCloseTimer(): void {
    this.closeTimer = setTimeout(() => this.socket.destroy(), this.closeTimeout);
    this.closeTimer.unref?.();
  }

  /** A compressed message: hold further input (so order and the close frame wait), inflate, then deliver. */
  /** @internal */
  inflate(data: Buffer, isBinary: boolean): void {
    const codec = this.codec!;
    this.core.pause();
    codec.decompress(data, (error, out) => {
      if (this.closed) return;
      if (error) return this.core.failWith(error);
      if (!isBinary && !isValidUtf8(out!)) return this.core.failWith(protocolError('INVALID_UTF8', 'invalid UTF-8 in a compressed text message'));
      this.deliver(out!, isBinary);
      this.receiving = true;
      try {
        this.core.resume();
      } finally {
        this.receiving = false;
      }
      if (this.outBytes > 0) this.flush();
    });
  }

  /** @internal A message from the core: compressed ones go through the inflater first. */
  onMessage(data: Buffer, isBinary: boolean, compressed: boolean): void {
    if (compressed) this.inflate(data, isBinary);
    else this.deliver(data, isBinary);
  }

  private deliver(data: Buffer, isBinary: boolean): void {
    if (this.queue !== null) {
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve({ value: { data, isBinary }, done: false });
      else {
        this.queue.push({ data, isBinary });
        if (this.queue.length >= this.iteratorHighWaterMark) this.socket.pause();
      }
    }
    this.emit('message', data, isBinary);
  }

  /** @internal */
  onPing(data: Buffer): void {
    if (this.autoPong && !this.core.closeSent) {
      // RFC 6455 §5.5.3 lets an endpoint answer only the latest ping; a peer that floods pings while not reading
      // our data gets cut off rather than buffered without bound.
      if (this.socket.writableLength > this.maxPongBacklog) {
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
    // The reply is written; the server's core asks to end TCP itself. A client waits for the server to close.
    if (this.closeTimer === null) this.armCloseTimer();
  }

  /** @internal */
  onError(error: ProtocolError): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  /** @internal The core asks for TCP to be closed once written data is out. */
  onEnd(): void {
    if (this.jobs.length > 0 && !this.direct) {
      this.jobs.push({ kind: 'end' });
      return;
    }
    this.flush();
    this.socket.end();
    if (this.closeTimer === null) this.armCloseTimer();
  }

  /** @internal */
  finish(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    const code = this.core.transportClosed();
    const reason = code === CloseCode.ABNORMAL ? '' : this.core.closeReason;
    this.codec?.close();
    for (const job of this.jobs.splice(0)) if ('done' in job) job.done?.(false);
    this.queuedBytes = 0;
    this.out.length = 0;
    this.outBytes = 0;
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
          if (queue.length < this.iteratorHighWaterMark / 2 && !this.closed) this.socket.resume();
          return Promise.resolve({ value, done: false });
        }
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
      },
      return: () => {
        this.queue = null;
        this.socket.resume();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

const kConnection = Symbol('wsengine.connection');
type SocketWithConnection = Duplex & { [kConnection]: WebSocketConnection };

function onSocketData(this: SocketWithConnection, chunk: Buffer): void {
  this[kConnection].receive(chunk);
}
function onSocketDrain(this: SocketWithConnection): void {
  this[kConnection].onDrain();
}
function onSocketError(this: SocketWithConnection, error: Error): void {
  this[kConnection].onSocketError(error);
}
function onSocketClose(this: SocketWithConnection): void {
  this[kConnection].finish();
}

/** Connections with output gathered during the current tick, flushed together at its end. */
let toFlush: WebSocketConnection[] = [];

function flushAll(): void {
  const list = toFlush;
  toFlush = [];
  for (let i = 0; i < list.length; i++) list[i].flushTick();
}

/** Shared empty arrays: a connection allocates its own only once it needs one. */
const NO_BYTES: Array<Buffer | Uint8Array> = [];
const NO_JOBS: Job[] = [];
const NO_WAITERS: Waiter[] = [];

// The class is the core's ProtocolHandler, checked here rather than with `implements`: `stripInternal` removes the
// handler methods from the published class, and an `implements` clause would then fail in a user's project (TS2420).
type IsProtocolHandler<T extends ProtocolHandler> = T;
type _ConnectionIsProtocolHandler = IsProtocolHandler<WebSocketConnection>;

/** Typed event methods of {@link WebSocketConnection} (see {@link ConnectionEvents}). */
export interface WebSocketConnection {
  on<K extends keyof ConnectionEvents>(event: K, listener: ConnectionEvents[K]): this;
  once<K extends keyof ConnectionEvents>(event: K, listener: ConnectionEvents[K]): this;
  off<K extends keyof ConnectionEvents>(event: K, listener: ConnectionEvents[K]): this;
  emit<K extends keyof ConnectionEvents>(event: K, ...args: Parameters<ConnectionEvents[K]>): boolean;
}
