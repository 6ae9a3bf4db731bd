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
import { CloseCode, protocolError } from '../core/errors.js';
import type { MaskSource } from '../core/mask.js';
import { Protocol, type ProtocolError, ProtocolEventType, ReadyState } from '../core/protocol.js';
import { isValidUtf8 } from '../core/utf8.js';
import type { DeflateCodec } from '../deflate/codec.js';
import { MessageIterator } from './iterator.js';
import { CONNECTION_DEFAULTS, type ConnectionEvents, type ConnectionInternals, type ConnectionOptions, type Message, settingsOf } from './options.js';
import { failAll, failLater, type Job } from './outbound.js';
import { CLOSED, ConnectionBase, FINISH_DEFERRED, FLUSH_SCHEDULED, INFLATING, NO_CBS, USER_PAUSED, WRITE_BLOCKED } from './sending.js';
import { attachSocket } from './socket.js';
import { directWriter, type WriteHost } from './writes.js';

export {
  CONNECTION_DEFAULTS,
  type ConnectionEvents,
  type ConnectionInternals,
  type ConnectionOptions,
  type Message,
  type SendCallback,
  type SendOptions,
} from './options.js';

/**
 * One WebSocket connection, server or client side. Obtained from a server's `connection` event or from
 * `connect()`; not constructed by applications. `Data` types {@link WebSocketConnection.data} (the application's
 * own per-connection state), `Principal` types {@link WebSocketConnection.principal} (what the server's
 * `authenticate` accepted); both default to `unknown`.
 */
export class WebSocketConnection<Data = unknown, Principal = unknown> extends ConnectionBase {
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

  private readonly internals: ConnectionInternals;
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
    const codec = options.codec ?? null;
    super(
      socket,
      new Protocol({
        role,
        maxMessageSize: options.maxMessageSize,
        maxFrameSize: options.maxFrameSize,
        fragmentOverhead: options.fragmentOverhead,
        strictLengths: options.strictLengths,
        rsv1: codec !== null,
        autoPong: false,
        maskSource: options.maskSource,
      }),
      settingsOf(
        options.closeTimeout ?? CONNECTION_DEFAULTS.closeTimeout,
        options.maxPongBacklog ?? CONNECTION_DEFAULTS.maxPongBacklog,
        options.autoPong !== false,
        options.iteratorHighWaterMark ?? CONNECTION_DEFAULTS.iteratorHighWaterMark,
        options.threshold ?? 0,
      ),
      codec,
    );
    if (EventEmitter.captureRejections) this.messageListener = false;
    this.protocol = options.protocol ?? '';
    this.extensions = options.extensions ?? '';
    this.internals = internals;
    attachSocket(socket, this);
    this.writer = directWriter(socket, this);
    if (socket.readableEnded) this.onEnd(); // it came while the handshake was checked
    // Small frames leave at once (no Nagle delay); a server that set it at accept time says so.
    if (options.noDelay !== false && 'setNoDelay' in socket && typeof socket.setNoDelay === 'function') socket.setNoDelay(true);
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
  /** @internal */
  backlog(over: boolean): void {
    if (over) {
      this.input ??= [];
      this.updateFlow();
    } else {
      this.resumeInput();
    }
  }

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
      if (this.unsent > this.settings.maxPongBacklog) {
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

  /** @internal The socket's `drain` (its Writable is empty): `drain` here once direct writes are out too. */
  onDrain(): void {
    if (this.writer !== null && this.writer.pending > 0) {
      this.writer.waiting = true;
      return;
    }
    this.flags &= ~WRITE_BLOCKED;
    this.emit('drain');
  }

  /** @internal {@link WriteHost}: every direct write completed after the connection went over its high-water mark. */
  onDirectDrain(): void {
    this.flags &= ~WRITE_BLOCKED;
    this.emit('drain');
  }

  /** @internal */
  onSocketError(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
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
const NO_JOBS: Job[] = [];
const NO_INTERNALS: ConnectionInternals = {};
/** Set to `'h2'` on an HTTP/2 stream that carries a WebSocket (by http2.ts). */
const kTransport = Symbol.for('wsengine.transport');

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
