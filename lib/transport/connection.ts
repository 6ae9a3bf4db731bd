/**
 * A WebSocket connection over a `node:net`/`node:tls` socket: the sans-I/O {@link Protocol}, driven pull-style, wired
 * to the socket, with backpressure, batched writes, close timers and async iteration. Both the server and the
 * client hand these out.
 *
 * Each read is fed to the core (`receiveData`), then what it produced is drained: events first (messages to the
 * application, pings, the close), then the output, in one write at the end of the read. The core never calls back
 * into the connection. The parts live in their own modules: the socket adapter (socket.ts), write batching and the
 * outbound queue (outbound.ts), async iteration (iterator.ts), options and settings (options.ts).
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type Data as Payload, toBytes } from '../core/bytes.js';
import { CloseCode, protocolError } from '../core/errors.js';
import type { MaskSource } from '../core/mask.js';
import { encodeFrame, encodeTextFrame } from '../core/frame.js';
import { Protocol, type ProtocolError, ProtocolEventType, ReadyState, validateClose } from '../core/protocol.js';
import { isValidUtf8 } from '../core/utf8.js';
import type { DeflateCodec } from '../deflate/codec.js';
import { MessageIterator } from './iterator.js';
import {
  CONNECTION_DEFAULTS,
  type ConnectionEvents,
  type ConnectionInternals,
  type ConnectionOptions,
  controlArgs,
  type Message,
  type SendCallback,
  sendArgs,
  type SendOptions,
  type Settings,
  settingsOf,
} from './options.js';
import { batchDone, type CompressJob, failAll, failLater, flushAtEndOfTick, flushOut, type Job, OutQueue, type WholeJob } from './outbound.js';
import type { PreparedMessage } from './prepared.js';
import { attachSocket } from './socket.js';

export {
  CONNECTION_DEFAULTS,
  CONNECTION_OPTION_NAMES,
  type ConnectionEvents,
  type ConnectionInternals,
  type ConnectionOptions,
  type Message,
  type SendCallback,
  type SendOptions,
} from './options.js';

// Bits of `WebSocketConnection.flags` (one small integer rather than a field per boolean).
/** The `close` event has fired. */
const CLOSED = 1;
/** The socket's buffer is over its high-water mark (a send returns false until `drain`). */
const WRITE_BLOCKED = 2;
/** The output leaves soon without being asked: at the end of the read being handled, or of the tick. */
const FLUSH_SCHEDULED = 4;
/** Reading paused by the application (`pause()`). */
const USER_PAUSED = 8;
/** `close()` was called while the queue held work: the close frame waits in it. */
const CLOSE_REQUESTED = 16;
/** Our side of TCP is ended (`socket.end()` called): nothing more is written. */
const ENDING = 32;
/** An application's fragmented message is open (its final fragment not yet accepted). */
const STREAMING = 64;
/** The socket closed while a message was being inflated: `close` waits until what was read is delivered. */
const FINISH_DEFERRED = 128;
/** The core's close frame waits in the queue behind messages accepted before it (see `sendBeforeClose`). */
const CLOSE_QUEUED = 256;
/** A message from the peer is being inflated: input is held until it is delivered. */
const INFLATING = 512;

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
  /** permessage-deflate's codec (null without compression). */
  private readonly codec: DeflateCodec | null;
  /** Booleans, as bits (CLOSED, WRITE_BLOCKED, … above). */
  private flags = 0;
  /** Created when the closing handshake starts. */
  private closeTimer: NodeJS.Timeout | null = null;
  /** Callbacks of the messages in the core's output: they run once that batch is flushed. */
  private cbs: SendCallback[] = NO_CBS;
  /** Work waiting to be sent in order (created the first time something has to wait). */
  private queue: OutQueue | null = null;
  /** Input not fed to the core yet, in order, while input is held (a message inflating); null otherwise. */
  private input: Buffer[] | null = null;
  /** Async iteration's state (created by the first `[Symbol.asyncIterator]()`). */
  private iterator: MessageIterator | null = null;
  /**
   * The one `message` listener, called directly by {@link deliver} (see {@link messageListenerOf}); null: emit
   * (zero or several listeners); undefined: not looked up since the listeners last changed; false: always emit
   * (`captureRejections` was on when the connection was made: `emit` then watches what listeners return).
   */
  private messageListener: MessageListener | null | undefined | false = undefined;

  /** @internal Use a server or `connect()`. */
  constructor(
    socket: Duplex,
    role: 'server' | 'client',
    options: ConnectionOptions & { protocol?: string; extensions?: string; codec?: DeflateCodec | null; threshold?: number; noDelay?: boolean; maskSource?: MaskSource },
    internals: ConnectionInternals = NO_INTERNALS,
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
    this.codec = options.codec ?? null;
    this.core = new Protocol({
      role,
      maxMessageSize: options.maxMessageSize,
      maxFrameSize: options.maxFrameSize,
      fragmentOverhead: options.fragmentOverhead,
      strictLengths: options.strictLengths,
      rsv1: this.codec !== null,
      autoPong: false,
      maskSource: options.maskSource,
    });
    attachSocket(socket, this);
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
    if ((this.flags & CLOSED) !== 0) return ReadyState.CLOSED;
    if (this.core.readyState === ReadyState.CLOSED || (this.flags & (CLOSE_REQUESTED | ENDING)) !== 0) return ReadyState.CLOSING;
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
    return this.socket.writableLength + this.core.outputBytes + (this.queue?.queuedBytes ?? 0);
  }

  // ───────────────────────────── receiving ─────────────────────────────

  /**
   * @internal Feeds bytes from the peer (the socket's reads, and bytes that arrived with the handshake); `borrowed`:
   * they are only lent for this call (the direct read path's shared buffer). Returns the payload bytes of the
   * current frame still to come (a hint for the direct read path, see reads.ts).
   */
  receive(chunk: Buffer, borrowed?: boolean): number {
    const input = this.input;
    if (input !== null) {
      // Input is held (a message is being inflated): this read waits behind what is held already.
      input.push(borrowed === true ? Buffer.from(chunk) : chunk);
      return 0;
    }
    const core = this.core;
    const scheduled = this.flags & FLUSH_SCHEDULED;
    // Whatever handling this read produces (echoes, pongs) leaves at its end, in one write.
    this.flags |= FLUSH_SCHEDULED;
    const n = core.receiveData(chunk, borrowed === true);
    // Parsing stopped after a compressed message: the rest waits until it is inflated (a lent read is copied).
    if (n < chunk.length) this.input = [borrowed === true ? Buffer.from(chunk.subarray(n)) : chunk.subarray(n)];
    this.drain();
    if (scheduled === 0) this.flags &= ~FLUSH_SCHEDULED;
    if (core.outputCount > 0) this.flush();
    return core.payloadPending;
  }

  /** Takes what the core produced: each event in order (a message may add output, e.g. the application's echo). */
  private drain(): void {
    const core = this.core;
    for (;;) {
      const mark = core.outputCount;
      const type = core.nextEvent();
      if (type === ProtocolEventType.BINARY || type === ProtocolEventType.TEXT) {
        this.deliver(core.eventData, type === ProtocolEventType.BINARY);
        continue;
      }
      if (type === 0) return;
      // Taking a close or an error wrote the core's close frame: it goes out in order with the rest.
      if (core.outputCount !== mark) this.wrote(mark, undefined);
      if (type === ProtocolEventType.PING) this.onPing(core.eventData);
      else if (type === ProtocolEventType.PONG) this.emit('pong', core.eventData);
      else if (type === ProtocolEventType.CLOSE) this.onClose();
      else if (type === ProtocolEventType.ERROR) this.onError(core.eventError!);
      else if (type === ProtocolEventType.END) this.onEnd();
      else this.inflate(core.eventData, type === ProtocolEventType.BINARY_COMPRESSED);
    }
  }

  /** A message for the application (and for the async iterator, when one runs). */
  private deliver(data: Buffer, isBinary: boolean): void {
    this.iterator?.push(data, isBinary);
    let listener = this.messageListener;
    if (listener === undefined) listener = this.messageListener = messageListenerOf(this);
    if (listener) listener.call(this, data, isBinary);
    else this.emit('message', data, isBinary);
  }

  /** @internal The `message` listeners changed: look the single one up again at the next message. */
  listenersChanged(): void {
    if (this.messageListener !== false) this.messageListener = undefined;
  }

  /**
   * A compressed message: input is held (core and socket) while it inflates, the result is checked (UTF-8 for text)
   * and delivered, then input resumes — the next message, or the close frame, is handled only after. What one
   * connection holds is one read of input, one message being inflated (at most `maxMessageSize`) and the queue.
   */
  private inflate(data: Buffer, isBinary: boolean): void {
    this.flags |= INFLATING;
    this.input ??= [];
    this.updateFlow();
    this.codec!.decompress(data, (error, out) => {
      this.flags &= ~INFLATING;
      if (this.gone) return;
      if (error) return this.fail(error);
      if (!isBinary && !isValidUtf8(out!)) return this.fail(protocolError('INVALID_UTF8', 'invalid UTF-8 in a compressed text message'));
      this.deliver(out!, isBinary);
      this.resumeInput();
    });
  }

  /** Whether input is held: a message inflating, or the compression backlog over its limit. */
  private get inputHeld(): boolean {
    return (this.flags & INFLATING) !== 0 || (this.queue?.pausesInput ?? false);
  }

  /** Feeds the input held meanwhile, then reads again — unless input is held again. */
  private resumeInput(): void {
    if ((this.flags & CLOSED) !== 0 || this.inputHeld) return;
    const input = this.input;
    if (input !== null) {
      const core = this.core;
      const scheduled = this.flags & FLUSH_SCHEDULED;
      this.flags |= FLUSH_SCHEDULED;
      while (input.length > 0 && !this.inputHeld) {
        const chunk = input[0];
        const n = core.receiveData(chunk);
        if (n < chunk.length) input[0] = chunk.subarray(n);
        else input.shift();
        this.drain();
      }
      if (scheduled === 0) this.flags &= ~FLUSH_SCHEDULED;
      if (input.length === 0 && !this.inputHeld) this.input = null;
    }
    if ((this.flags & FINISH_DEFERRED) !== 0 && (this.flags & INFLATING) === 0) return this.finish();
    if (this.core.outputCount > 0) this.flush();
    this.updateFlow();
  }

  /** The message could not be inflated: fail the connection with the error's close code. */
  private fail(error: ProtocolError): void {
    this.core.failWith(error);
    this.drain();
    if ((this.flags & FINISH_DEFERRED) !== 0) this.finish();
  }

  private onPing(data: Buffer): void {
    if (this.settings.autoPong && !this.core.closeSent) {
      // RFC 6455 §5.5.3 lets an endpoint answer only the latest ping; a peer that floods pings while not reading
      // our data gets cut off rather than buffered without bound.
      if (this.socket.writableLength > this.settings.maxPongBacklog) {
        if (this.listenerCount('error') > 0) this.emit('error', new Error('ping flood while the peer is not reading: connection cut'));
        this.socket.destroy();
        return;
      }
      const mark = this.core.outputCount;
      this.core.pong(data);
      this.wrote(mark, undefined);
    }
    this.emit('ping', data);
  }

  /** The peer's close frame (the reply is already written). */
  private onClose(): void {
    // The server's core asks to end TCP itself. A client waits for the server to close: it reads on even if
    // paused, to see that.
    if (this.closeTimer === null) this.armCloseTimer();
    this.updateFlow();
  }

  private onError(error: ProtocolError): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  /**
   * @internal Ends our side of TCP once written data is out: asked by the core (closing handshake done, or failed),
   * or the peer ended its side (FIN; the `close` event then reports 1006 unless its close frame came first).
   */
  onEnd(): void {
    if ((this.flags & ENDING) !== 0) return;
    if (this.queue?.blocking) return this.queue.insert(END_JOB);
    this.flush();
    this.flags |= ENDING;
    this.socket.end();
    if (this.closeTimer === null) this.armCloseTimer();
    this.updateFlow();
  }

  /** @internal The socket closed. */
  finish(): void {
    if ((this.flags & CLOSED) !== 0) return;
    if ((this.flags & (FINISH_DEFERRED | INFLATING)) === INFLATING) {
      // What was read before the socket closed is still delivered: the message being inflated, then whatever input
      // is held behind it (the close frame included). `close` follows (see `resumeInput`, `fail`).
      this.flags |= FINISH_DEFERRED;
      return;
    }
    this.flags |= CLOSED;
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    const code = this.core.transportClosed();
    const reason = code === CloseCode.ABNORMAL ? '' : this.core.closeReason;
    this.codec?.close();
    // Whatever was still waiting is told once; a connection with nothing pending (the common close) allocates nothing.
    const dropped = this.queue?.close();
    if ((dropped !== undefined && dropped.length > 0) || this.cbs.length > 0) {
      const gone = new Error('WebSocket closed before the data was written');
      for (const job of dropped ?? NO_JOBS) {
        if ('done' in job) job.done?.(false);
        if ('cb' in job && job.cb) failLater(job.cb, gone);
      }
      failAll(this.cbs, gone);
    }
    this.input = null;
    this.core.clearOutput();
    this.cbs = NO_CBS;
    this.internals.onClosed?.(this);
    this.iterator?.end();
    this.emit('close', code, reason);
  }

  // ───────────────────────────── flow ─────────────────────────────

  /**
   * @internal Reads from the socket only when nothing holds input back: the application, the iterator, a message
   * inflating, the compression backlog. Also how the server and the client start reading a connection they made
   * paused (a `pause()` by the application in the meantime holds).
   */
  updateFlow(): void {
    if ((this.flags & CLOSED) !== 0) return;
    // Once the core is done (close received, or failed) input is ignored: read on regardless, so the peer's end of
    // the TCP connection is seen (a paused socket reads only up to its stream's high-water mark: no EOF behind that).
    const done = this.core.readyState === ReadyState.CLOSED;
    if (!done && ((this.flags & USER_PAUSED) !== 0 || this.input !== null || (this.iterator?.isFull ?? false))) this.socket.pause();
    else this.socket.resume();
  }

  /**
   * Pauses reading from the peer (TCP backpressure): no `message` until {@link resume}. The socket reads ahead up to
   * its stream's high-water mark, as Node's streams do, so a peer that leaves with FIN alone is still seen (1006).
   */
  pause(): void {
    this.flags |= USER_PAUSED;
    this.updateFlow();
  }

  /** Resumes reading (unless a compressed message is still being inflated: reading then resumes after it). */
  resume(): void {
    this.flags &= ~USER_PAUSED;
    this.updateFlow();
  }

  /** @internal */
  onDrain(): void {
    this.flags &= ~WRITE_BLOCKED;
    this.emit('drain');
  }

  /** @internal */
  onSocketError(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  // ───────────────────────────── output ─────────────────────────────

  /**
   * The core put output in its slots from `from` on (a send, a control frame, the close frame): it waits in the
   * queue when work is queued ahead of it, else it joins the batch that leaves at the end of the read or the tick —
   * or now, past the socket's high-water mark. `cb` is the callback of the message it carries.
   */
  private wrote(from: number, cb: SendCallback | undefined): void {
    const core = this.core;
    const queue = this.queue;
    if (queue !== null && queue.blocking) {
      const data = core.output.slice(from, core.outputCount) as Array<Buffer | Uint8Array>;
      core.clearOutput(from);
      // After a close frame the core writes nothing: the first write it makes with `closeSent` holds that frame.
      const close = core.closeSent && (this.flags & CLOSE_QUEUED) === 0;
      if (close) this.flags |= CLOSE_QUEUED;
      return queue.insert({ kind: 'write', data, cb, close });
    }
    const socket = this.socket;
    if ((this.flags & ENDING) !== 0 || socket.destroyed) {
      core.clearOutput(from);
      if (cb !== undefined) failLater(cb, new Error('WebSocket closed before the data was written'));
      return;
    }
    if (cb !== undefined) {
      if (this.cbs === NO_CBS) this.cbs = [];
      this.cbs.push(cb);
    }
    if (core.outputBytes + socket.writableLength >= socket.writableHighWaterMark) return this.flush();
    if ((this.flags & FLUSH_SCHEDULED) === 0) {
      // Output made outside a read (a burst of sends, a broadcast) leaves at the end of the tick.
      this.flags |= FLUSH_SCHEDULED;
      flushAtEndOfTick(this);
    }
  }

  /** @internal The end of the tick in which output was gathered outside a read. */
  flushTick(): void {
    this.flags &= ~FLUSH_SCHEDULED;
    this.flush();
  }

  /** @internal Hands the core's output to the socket now: one write, or one corked batch, whose callbacks run together. */
  flush(): void {
    const core = this.core;
    const n = core.outputCount;
    if (n === 0) return;
    const socket = this.socket;
    const cbs = this.cbs;
    if (cbs.length > 0) this.cbs = NO_CBS;
    if (socket.destroyed) {
      core.clearOutput();
      failAll(cbs, new Error('WebSocket closed before the data was written'));
      return;
    }
    const ok = flushOut(socket, core.output, n, cbs.length === 0 ? undefined : batchDone(cbs));
    this.flags = ok ? this.flags & ~WRITE_BLOCKED : this.flags | WRITE_BLOCKED;
    core.clearOutput();
  }

  /** Whether no more may be sent: closing, closed, or a close frame went out. */
  private get sendsRefused(): boolean {
    return (this.flags & (CLOSE_REQUESTED | ENDING | CLOSED)) !== 0 || this.core.closeSent;
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
    if (this.sendsRefused) {
      if (typeof data !== 'string') toBytes(data);
      if (callback !== undefined) failLater(callback, this.notOpen());
      return false;
    }
    return this.sendMessage(data, options as SendOptions | undefined, callback, undefined);
  }

  /**
   * Sends a whole message now, or queues it (for compression, behind queued work, or behind an open fragmented
   * message). `done` (for `sendAsync`) is told whether it was written: at once when it went now.
   */
  private sendMessage(data: Payload, options: SendOptions | undefined, callback: SendCallback | undefined, done: ((ok: boolean) => void) | undefined): boolean {
    const binary = options?.binary ?? typeof data !== 'string';
    const codec = this.codec;
    if (codec !== null && codec.compresses && options?.compress !== false) {
      const bytes = typeof data === 'string' ? Buffer.from(data) : toBytes(data);
      if (bytes.length >= this.settings.threshold) return this.enqueue({ kind: 'compress', data: bytes, binary, started: false, cb: callback, done });
      data = bytes;
    }
    if ((this.flags & STREAMING) !== 0 || (this.queue?.blocking ?? false)) {
      return this.enqueue({ kind: 'send', data: typeof data === 'string' ? data : toBytes(data), binary, cb: callback, done });
    }
    const core = this.core;
    const mark = core.outputCount;
    core.send(data, binary);
    this.wrote(mark, callback);
    done?.(true);
    return (this.flags & WRITE_BLOCKED) === 0;
  }

  /** Queues a whole message: behind queued work, or held behind an open fragmented message. */
  private enqueue(job: WholeJob): boolean {
    const queue = (this.queue ??= new OutQueue(this, this.codec));
    if ((this.flags & STREAMING) !== 0) queue.hold(job);
    else queue.push(job);
    return (this.flags & WRITE_BLOCKED) === 0 && queue.queuedBytes < this.socket.writableHighWaterMark;
  }

  private notOpen(): Error {
    return new Error(`WebSocket is not open (readyState ${this.readyState}): the data was not sent`);
  }

  /**
   * Sends a message and resolves once the socket can take more (at once when its buffer is below the high-water
   * mark, else on `drain`). Rejects when the connection is not open or closes first.
   */
  sendAsync(data: Payload, options?: SendOptions): Promise<void> {
    if (options !== undefined) sendArgs(options, undefined, 'sendAsync');
    if (this.sendsRefused) {
      if (typeof data !== 'string') toBytes(data);
      return Promise.reject(new Error(`WebSocket is not open (readyState ${this.readyState})`));
    }
    let settled: boolean | undefined;
    let resolve: () => void = noop;
    let reject: (error: Error) => void = noop;
    const done = (sent: boolean): void => {
      if (!sent) return reject(new Error('WebSocket closed before the message was sent'));
      if ((this.flags & WRITE_BLOCKED) === 0) return resolve();
      this.drained().then(resolve, reject);
    };
    this.sendMessage(data, options, undefined, (sent) => {
      if (settled === undefined) settled = sent; // written at once: settled below
      else done(sent);
    });
    if (settled !== undefined) return settled ? ((this.flags & WRITE_BLOCKED) === 0 ? Promise.resolve() : this.drained()) : Promise.reject(new Error('WebSocket closed before the message was sent'));
    settled = false;
    return new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
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
    if (this.sendsRefused) {
      if (callback !== undefined) failLater(callback, this.notOpen());
      return false;
    }
    const queue = this.queue;
    if (queue !== null && queue.blocking) {
      queue.insert({ kind: 'fragment', data: typeof data === 'string' ? data : toBytes(data), binary, fin, cb: callback });
    } else {
      this.sendFragmentNow(data, fin, binary, callback);
    }
    this.flags = fin ? this.flags & ~STREAMING : this.flags | STREAMING;
    if (fin) queue?.release();
    return (this.flags & WRITE_BLOCKED) === 0;
  }

  private sendFragmentNow(data: Payload, fin: boolean, binary: boolean, cb: SendCallback | undefined): void {
    const mark = this.core.outputCount;
    if (this.core.sendFragment(data, fin, binary)) this.wrote(mark, cb);
    else if (cb !== undefined) failLater(cb, this.notOpen());
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
    if (this.sendsRefused) {
      if (callback !== undefined) failLater(callback, this.notOpen());
      return false;
    }
    const core = this.core;
    if (core.role === 'client') return this.send(message.payload, { binary: message.isBinary, compress: false }, callback);
    const c = this.codec;
    const frame =
      message.compressed && c !== null && c.compresses && c.params.serverNoContextTakeover && c.params.serverMaxWindowBits >= message.compressed.windowBits
        ? message.compressed.frame
        : message.frame;
    if (frame === undefined) throw new TypeError('sendPrepared takes a message made by prepare()');
    if ((this.flags & STREAMING) !== 0 || (this.queue?.blocking ?? false)) return this.enqueue({ kind: 'prepared', frame, cb: callback });
    const mark = core.outputCount;
    core.sendFrame(frame);
    this.wrote(mark, callback);
    return (this.flags & WRITE_BLOCKED) === 0;
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
    if ((this.flags & CLOSED) !== 0) {
      if (cb !== undefined) failLater(cb, this.notOpen());
      return false;
    }
    const mark = this.core.outputCount;
    const ok = isPing ? this.core.ping(payload) : this.core.pong(payload);
    if (ok) this.wrote(mark, cb);
    else if (cb !== undefined) failLater(cb, this.notOpen());
    return ok && (this.flags & WRITE_BLOCKED) === 0;
  }

  /**
   * Starts the closing handshake: sends a close frame (`code` 1000, 3000–4999 or 1001–1003/1007–1014; `reason` at
   * most 123 UTF-8 bytes) and destroys the socket if the peer has not finished the handshake within
   * `closeTimeout`. RangeError/TypeError for an invalid code or reason. Does nothing when already closing.
   */
  close(code?: number, reason?: string): void {
    const queue = this.queue;
    if (queue !== null && queue.blocking && (this.flags & CLOSE_REQUESTED) === 0 && !this.core.closeSent) {
      // Validate now, send once the messages queued before it are out.
      validateClose(code, reason);
      this.flags |= CLOSE_REQUESTED;
      queue.insert({ kind: 'close', code, reason });
    } else {
      const mark = this.core.outputCount;
      this.core.close(code, reason);
      if (this.core.outputCount !== mark) this.wrote(mark, undefined);
    }
    if ((this.flags & CLOSED) === 0 && this.closeTimer === null) this.armCloseTimer();
  }

  /** Destroys the socket at once, without a closing handshake. The `close` event reports 1006. */
  terminate(): void {
    this.socket.destroy();
  }

  private armCloseTimer(): void {
    this.closeTimer = setTimeout(destroySocket, this.settings.closeTimeout, this.socket);
    this.closeTimer.unref?.();
  }

  // ─────────────────── the outbound queue's host (see outbound.ts) ───────────────────

  /** @internal A compressed message written now (RSV1 set) with its callback; `payload` null: not sent. */
  sendCompressed(payload: Buffer | null, job: CompressJob): boolean {
    const mark = this.core.outputCount;
    const sent = payload !== null && (this.core.send(payload, job.binary, true) || this.sendBeforeClose(payload, job.binary, true));
    if (sent) this.wrote(mark, job.cb);
    else if (job.cb !== undefined) failLater(job.cb, this.notOpen());
    return sent;
  }

  /**
   * A message accepted by `send` before a close frame, written once the compressions ahead of it are done: when the
   * peer's close frame arrived meanwhile, the core answered it at once (it now refuses data), but that answer waits
   * in the queue behind this message, so the message still goes first, as it was accepted. `data` is a payload to
   * frame, or a prepared frame. False when no close frame waits (the message was refused for another reason).
   */
  private sendBeforeClose(data: Payload | Buffer | [Buffer, Uint8Array], binary?: boolean, rsv1?: boolean): boolean {
    if ((this.flags & CLOSE_QUEUED) === 0 || (this.flags & ENDING) !== 0 || this.socket.destroyed) return false;
    if (binary === undefined) this.core.pushOutput(data as Buffer | [Buffer, Uint8Array]);
    else {
      const opcode = binary ? 0x2 : 0x1;
      const mask = this.core.mask;
      this.core.pushOutput(typeof data === 'string' ? encodeTextFrame(data, true, rsv1, mask, opcode) : encodeFrame(opcode, toBytes(data as Payload), true, rsv1, mask));
    }
    return true;
  }

  /** @internal Work that waited in the queue, in order (its writes go straight to the batch). */
  runJob(job: Exclude<Job, CompressJob>): void {
    const core = this.core;
    if (job.kind === 'send' || job.kind === 'prepared') {
      const mark = core.outputCount;
      const sent =
        job.kind === 'send'
          ? core.send(job.data, job.binary) || this.sendBeforeClose(job.data, job.binary, false)
          : core.sendFrame(job.frame) || this.sendBeforeClose(job.frame);
      if (sent) this.wrote(mark, job.cb);
      else if (job.cb !== undefined) failLater(job.cb, this.notOpen());
      job.done?.(sent);
    } else if (job.kind === 'fragment') {
      this.sendFragmentNow(job.data, job.fin, job.binary, job.cb);
    } else if (job.kind === 'write') {
      if (job.close) this.flags &= ~CLOSE_QUEUED;
      const mark = core.outputCount;
      for (let i = 0; i < job.data.length; i++) core.pushOutput(job.data[i]);
      this.wrote(mark, job.cb);
    } else if (job.kind === 'close') {
      const mark = core.outputCount;
      core.close(job.code, job.reason);
      if (core.outputCount !== mark) this.wrote(mark, undefined);
    } else {
      this.onEnd();
    }
  }

  /** @internal Whether the connection is gone (closed, or its socket destroyed with nothing left to deliver). */
  get gone(): boolean {
    return (this.flags & CLOSED) !== 0 || (this.socket.destroyed && (this.flags & FINISH_DEFERRED) === 0);
  }

  /** @internal The compression backlog crossed its limit (input is held) or fell below it (input resumes). */
  backlog(over: boolean): void {
    if (over) {
      this.input ??= [];
      this.updateFlow();
    } else {
      this.resumeInput();
    }
  }

  // ───────────────────────────── async iteration ─────────────────────────────

  /**
   * Async iteration over incoming messages: `for await (const { data, isBinary } of connection)`. Ends when the
   * connection closes. Reading pauses while `iteratorHighWaterMark` messages wait, so a slow loop slows the peer.
   */
  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return (this.iterator ??= new MessageIterator(this));
  }

  /** @internal {@link IteratorHost} */
  get closed(): boolean {
    return (this.flags & CLOSED) !== 0;
  }

  /** @internal {@link IteratorHost} */
  get iteratorHighWaterMark(): number {
    return this.settings.iteratorHighWaterMark;
  }

  /** @internal {@link IteratorHost}: the iterator's queue filled up (reading pauses) or has room again. */
  iteratorFull(_full: boolean): void {
    this.updateFlow();
  }

  /** @internal {@link IteratorHost}: the loop ended early; messages are no longer queued. */
  iteratorEnded(): void {
    this.iterator = null;
    this.updateFlow();
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

/** Shared empty values: a connection allocates its own only once it needs one. */
const NO_CBS: SendCallback[] = [];
const NO_JOBS: Job[] = [];
const NO_INTERNALS: ConnectionInternals = {};
const END_JOB: Job = { kind: 'end' };

function noop(): void {}

function destroySocket(socket: Duplex): void {
  socket.destroy();
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
