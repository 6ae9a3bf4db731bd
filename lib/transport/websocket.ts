/**
 * A WHATWG-compatible `WebSocket` for Node (https://websockets.spec.whatwg.org/): the browser's API on top of
 * {@link connect}, so browser-style code runs unchanged. `binaryType` also accepts `'nodebuffer'` (Buffers), an
 * extension for Node code; the default is `'blob'` as in browsers.
 *
 * @module
 */
import { isValidCloseCode } from '../core/errors.js';
import { type Data, toBytes } from '../core/bytes.js';
import { checkClientOptions, type ClientOptions, connect } from './client.js';
import type { WebSocketConnection } from './connection.js';

/** The `close` event of {@link WebSocket}. */
export class CloseEvent extends Event {
  /** The close code: the peer's, 1005 when its close frame had none, 1006 when the connection dropped. */
  readonly code: number;
  /** The close reason ('' when none). */
  readonly reason: string;
  /** Whether the closing handshake completed. */
  readonly wasClean: boolean;
  constructor(type: string, init: { code?: number; reason?: string; wasClean?: boolean } = {}) {
    super(type);
    this.code = init.code ?? 0;
    this.reason = init.reason ?? '';
    this.wasClean = init.wasClean ?? false;
  }
}

type BinaryType = 'blob' | 'arraybuffer' | 'nodebuffer';
type Handler<E extends Event> = ((this: WebSocket, event: E) => unknown) | null;

/** Browser-compatible WebSocket client. */
export class WebSocket extends EventTarget {
  /** readyState: connecting. */
  static readonly CONNECTING = 0;
  /** readyState: open. */
  static readonly OPEN = 1;
  /** readyState: closing handshake in progress. */
  static readonly CLOSING = 2;
  /** readyState: closed. */
  static readonly CLOSED = 3;
  /** readyState: connecting. */
  readonly CONNECTING = 0;
  /** readyState: open. */
  readonly OPEN = 1;
  /** readyState: closing. */
  readonly CLOSING = 2;
  /** readyState: closed. */
  readonly CLOSED = 3;

  /** The URL as resolved. */
  readonly url: string;
  private state = 0;
  private connection: WebSocketConnection | null = null;
  private type: BinaryType = 'blob';
  private readonly handlers = new Map<string, (event: Event) => void>();
  /** Payload bytes passed to `send` and not yet written (see {@link bufferedAmount}). */
  private buffered = 0;
  /**
   * Messages sent while a Blob is being read, in order, each with its payload size: they wait for it, so the peer
   * gets them in the order of the `send` calls. Null when no Blob is being read.
   */
  private waiting: Array<{ data: Data | Blob; size: number }> | null = null;
  /** A `close()` made while a Blob was being read: it follows the messages sent before it. */
  private closeAfter: { code: number | undefined; reason: string } | null = null;

  /**
   * Connects at once, like the browser's constructor. `options` (not in the browser API) takes the
   * {@link ClientOptions} of `connect`: headers, TLS, limits; an unknown option name (ws's `maxPayload`, say) is a
   * TypeError naming the equivalent. Its `signal` aborts the handshake as `close()` does while connecting.
   */
  constructor(url: string | URL, protocols?: string | string[], options: ClientOptions = {}) {
    super();
    checkClientOptions('new WebSocket', options);
    const resolved = new URL(String(url));
    if (resolved.protocol === 'http:') resolved.protocol = 'ws:';
    if (resolved.protocol === 'https:') resolved.protocol = 'wss:';
    if (resolved.protocol !== 'ws:' && resolved.protocol !== 'wss:') throw new DOMException(`invalid URL scheme ${resolved.protocol}`, 'SyntaxError');
    if (resolved.hash) throw new DOMException('WebSocket URLs cannot have a fragment', 'SyntaxError');
    this.url = resolved.href;
    const abort = new AbortController();
    const signal = options.signal ? AbortSignal.any([abort.signal, options.signal]) : abort.signal;
    connect(resolved, { ...options, protocols: protocols ?? options.protocols, signal }).then(
      (connection) => this.opened(connection),
      () => {
        this.state = 3;
        this.dispatchEvent(new Event('error'));
        this.dispatchEvent(new CloseEvent('close', { code: 1006, reason: '', wasClean: false }));
      },
    );
    this.abort = abort;
  }

  private readonly abort: AbortController;

  private opened(connection: WebSocketConnection): void {
    this.connection = connection;
    connection.on('message', (data, isBinary) => {
      let value: unknown;
      if (!isBinary) value = data.toString('utf8');
      else if (this.type === 'arraybuffer') value = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
      else if (this.type === 'nodebuffer') value = data;
      else value = new Blob([data]);
      this.dispatchEvent(new MessageEvent('message', { data: value, origin: new URL(this.url).origin }));
    });
    connection.on('error', () => {
      // Reported through the close event; the spec fires 'error' before a close that was not clean.
    });
    connection.on('close', (code, reason) => {
      const wasClean = code !== 1006;
      this.state = 3;
      if (!wasClean) this.dispatchEvent(new Event('error'));
      this.dispatchEvent(new CloseEvent('close', { code, reason, wasClean }));
    });
    if (this.state === 2) {
      // close() was called while connecting and the handshake finished before the abort could stop it: the
      // connection is failed all the same (close event with 1006, after an error event).
      connection.terminate();
      return;
    }
    this.state = 1;
    this.dispatchEvent(new Event('open'));
  }

  /** 0 CONNECTING, 1 OPEN, 2 CLOSING, 3 CLOSED. */
  get readyState(): number {
    if (this.connection && this.state !== 3) return this.connection.readyState === 3 ? 2 : Math.max(this.state, this.connection.readyState);
    return this.state;
  }

  /** The subprotocol the server selected ('' before open or when none). */
  get protocol(): string {
    return this.connection?.protocol ?? '';
  }

  /** The negotiated extensions. */
  get extensions(): string {
    return this.connection?.extensions ?? '';
  }

  /**
   * Bytes of application data passed to `send` and not yet written to the network, as the WHATWG spec counts them:
   * UTF-8 bytes of text, bytes of binary data, a Blob's size — not frame headers, masks or compression (the
   * engine's own {@link WebSocketConnection.bufferedAmount} counts frame bytes). A message leaves the count once the
   * socket has written it. As the spec says, data passed to `send` while closing or closed is counted and never
   * sent.
   */
  get bufferedAmount(): number {
    return this.buffered;
  }

  /** `'blob'` (default), `'arraybuffer'`, or `'nodebuffer'`. Other values are ignored, as in browsers. */
  get binaryType(): BinaryType {
    return this.type;
  }
  set binaryType(value: BinaryType) {
    if (value === 'blob' || value === 'arraybuffer' || value === 'nodebuffer') this.type = value;
  }

  /**
   * Sends binary data (ArrayBuffer, views, Blob) or text. As in browsers (WebIDL), any other value is converted to
   * a string: `send(42)` sends the text "42". InvalidStateError while connecting; a TypeError without an argument.
   * A Blob is read before it is sent; what is sent after it waits for it, so messages always leave in the order
   * of the calls (a Blob that cannot be read fails the connection: `error`, then `close` with 1006).
   */
  send(data: Data | Blob | number | boolean | object | null | undefined): void {
    if (arguments.length === 0) throw new TypeError("Failed to execute 'send' on 'WebSocket': 1 argument required, but only 0 present.");
    // WebIDL (BufferSource or Blob or USVString): buffers and Blobs as they are, everything else through ToString
    // (a template literal throws a TypeError for a Symbol, as ToString does). Lone surrogates become U+FFFD when
    // the string is encoded.
    const value: Data | Blob = data instanceof Blob || data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? data : `${data as string}`;
    if (this.state === 0) throw new DOMException('WebSocket is still connecting', 'InvalidStateError');
    const size = value instanceof Blob ? value.size : typeof value === 'string' ? Buffer.byteLength(value) : value.byteLength;
    this.buffered += size;
    const connection = this.connection;
    if (connection === null || this.readyState !== 1) return;
    if (this.waiting !== null) {
      // Behind a Blob being read: binary data is copied now, as the browser takes it at the call.
      this.waiting.push({ data: typeof value === 'string' || value instanceof Blob ? value : Buffer.from(toBytes(value)), size });
      return;
    }
    if (value instanceof Blob) this.readBlob(connection, value);
    else this.write(connection, value, size);
  }

  /** Sends now; the payload leaves {@link bufferedAmount} once the socket has written it. */
  private write(connection: WebSocketConnection, data: Data, size: number): void {
    connection.send(data, (error) => {
      if (error === undefined) this.buffered -= size;
    });
  }

  /** Reads a Blob, then sends it and what was sent after it (until the next Blob), then a close made meanwhile. */
  private readBlob(connection: WebSocketConnection, blob: Blob, waiting: Array<{ data: Data | Blob; size: number }> = []): void {
    this.waiting = waiting;
    blob.arrayBuffer().then(
      (bytes) => {
        this.write(connection, bytes, bytes.byteLength);
        while (waiting.length > 0) {
          const next = waiting.shift()!;
          if (next.data instanceof Blob) return this.readBlob(connection, next.data, waiting);
          this.write(connection, next.data, next.size);
        }
        this.waiting = null;
        const close = this.closeAfter;
        if (close !== null) {
          this.closeAfter = null;
          connection.close(close.code, close.reason);
        }
      },
      () => {
        this.waiting = null;
        this.closeAfter = null;
        connection.terminate();
      },
    );
  }

  /** Closes: `code` 1000 or 3000–4999 (InvalidAccessError otherwise), `reason` at most 123 bytes (SyntaxError). */
  close(code?: number, reason?: string): void {
    if (code !== undefined && (code !== 1000 && (code < 3000 || code > 4999) || !Number.isInteger(code) || !isValidCloseCode(code))) {
      throw new DOMException(`close code must be 1000 or 3000–4999, got ${code}`, 'InvalidAccessError');
    }
    if (reason !== undefined && Buffer.byteLength(reason) > 123) throw new DOMException('close reason over 123 bytes', 'SyntaxError');
    if (this.state === 2 || this.state === 3) return;
    if (this.connection === null) {
      // Still connecting: fail the connection (WHATWG WebSockets §close(), step "CONNECTING"): the handshake is
      // aborted and its socket destroyed; `error` then `close` with 1006 follow.
      this.state = 2;
      this.abort.abort();
      return;
    }
    this.state = 2;
    // Messages sent before close() and still waiting for a Blob to be read go first.
    if (this.waiting !== null) this.closeAfter = { code: code ?? (reason ? 1000 : undefined), reason: reason ?? '' };
    else this.connection.close(code ?? (reason ? 1000 : undefined), reason ?? '');
  }

  private handlerProperty<E extends Event>(type: string): Handler<E> {
    return (this.handlers.get(type) as unknown as { fn: Handler<E> } | undefined)?.fn ?? null;
  }

  private setHandlerProperty<E extends Event>(type: string, fn: Handler<E>): void {
    const old = this.handlers.get(type);
    if (old) this.removeEventListener(type, old);
    if (typeof fn !== 'function') {
      this.handlers.delete(type);
      return;
    }
    const listener = Object.assign((event: Event) => fn.call(this, event as E), { fn });
    this.handlers.set(type, listener);
    this.addEventListener(type, listener);
  }

  /** The `open` handler (the connection is established); null when unset. */
  get onopen(): Handler<Event> {
    return this.handlerProperty('open');
  }
  set onopen(fn: Handler<Event>) {
    this.setHandlerProperty('open', fn);
  }
  /** The `message` handler: `event.data` is a string for text, else per `binaryType`; null when unset. */
  get onmessage(): Handler<MessageEvent> {
    return this.handlerProperty('message');
  }
  set onmessage(fn: Handler<MessageEvent>) {
    this.setHandlerProperty('message', fn);
  }
  /** The `error` handler (fires before a `close` that was not clean); null when unset. */
  get onerror(): Handler<Event> {
    return this.handlerProperty('error');
  }
  set onerror(fn: Handler<Event>) {
    this.setHandlerProperty('error', fn);
  }
  /** The `close` handler: a {@link CloseEvent}; null when unset. */
  get onclose(): Handler<CloseEvent> {
    return this.handlerProperty('close');
  }
  set onclose(fn: Handler<CloseEvent>) {
    this.setHandlerProperty('close', fn);
  }
}
