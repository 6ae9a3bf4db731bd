/**
 * ws's `WebSocket` class on the engine: an EventEmitter with ws 8's constructor, events, properties, constants and
 * callback semantics. Frames, limits, compression and the closing handshake are the engine's
 * ({@link WebSocketConnection}); this class only translates. The client's opening handshake goes through
 * `http.request`/`https.request`, as in ws, so `agent`, `lookup`, `createConnection`, TLS options, the `upgrade`,
 * `unexpected-response` and `redirect` events and `finishRequest` behave as ws users expect.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import { type ClientRequest, type IncomingMessage, request as httpRequest, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import net, { type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import tls, { type ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { acceptKey, generateKey } from '../core/handshake.js';
import { validateClose } from '../core/protocol.js';
import { ProtocolError } from '../core/errors.js';
import { parseExtensions } from '../core/tokens.js';
import { DeflateCodec, Limiter } from '../deflate/codec.js';
import { acceptServerResponse, clientOffer, type DeflateOptions } from '../deflate/negotiate.js';
import { type SendCallback, WebSocketConnection } from '../transport/connection.js';
import { prepare, type PreparedMessage } from '../transport/prepared.js';
import { addEventListener, attributeListener, type EventListenerLike, removeEventListener, setAttributeListener } from './events.js';
import { checkBufferedChunks, checkFunction, checkSharedOptions, closeTimeout, deflateOptions, fragmentOverhead, maxMessageSize, type PerMessageDeflateOptions } from './options.js';

/** Ready states. */
const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;
const STATE_NAMES = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'] as const;

const EMPTY = Buffer.alloc(0);

/** What a `message` event carries as binary data, per `binaryType`. */
export type RawData = Buffer | ArrayBuffer | Buffer[];
export type BinaryType = 'nodebuffer' | 'arraybuffer' | 'fragments' | 'blob';
const BINARY_TYPES = new Set<string>(['nodebuffer', 'arraybuffer', 'fragments', 'blob']);

/** What `send`, `ping` and `pong` take (as ws: numbers are sent as their decimal text; arrays go through `Buffer.from`). */
export type Sendable = string | Buffer | ArrayBuffer | SharedArrayBuffer | ArrayBufferView | Blob | number | readonly number[] | { valueOf(): unknown };

/** Options of ws's `send`. */
export interface WsSendOptions {
  /** Binary (true) or text (false). Default: false for strings, true otherwise. */
  binary?: boolean;
  /** Compress when permessage-deflate was negotiated. Default: true. */
  compress?: boolean;
  /** false: a fragment of a message, continued by the following sends until one with `fin: true`. Default: true. */
  fin?: boolean;
  /** Only what the role implies: true on a client (RFC 6455 masks every client frame), false on a server; else a RangeError. */
  mask?: boolean;
}

/** Options of `new WebSocket(url, protocols, options)`: ws's, plus any option of `http.request`/`https.request`. */
export interface ClientOptions extends RequestOptions, Pick<TlsConnectionOptions, 'ca' | 'cert' | 'key' | 'pfx' | 'passphrase' | 'rejectUnauthorized' | 'servername' | 'checkServerIdentity' | 'ciphers' | 'ALPNProtocols'> {
  /** Emit `message`, `ping` and `pong` several times in one tick. Default: true. */
  allowSynchronousEvents?: boolean;
  /** Answer pings automatically. Default: true. */
  autoPong?: boolean;
  /** Milliseconds for the closing handshake after `close()` before the socket is destroyed. Default: 30,000. */
  closeTimeout?: number;
  /** Called with each handshake request (and the WebSocket) instead of `request.end()`: it must end the request. */
  finishRequest?: (request: ClientRequest, websocket: WebSocket) => void;
  /** Follow redirects. Default: false. */
  followRedirects?: boolean;
  /** Fills the 4-byte masking key of each frame. Default: cryptographically strong random bytes. */
  generateMask?: (mask: Buffer) => void;
  /** Milliseconds of socket inactivity allowed during the opening handshake. */
  handshakeTimeout?: number;
  /** Largest message accepted, in bytes (1009 above it). Default: 100 MiB; 0: no limit. */
  maxPayload?: number;
  /** Most fragments in a message (see the server's option of the same name). */
  maxFragments?: number;
  /** Accepted and met by design (see the server's option of the same name). */
  maxBufferedChunks?: number;
  /** Redirects followed at most. Default: 10. */
  maxRedirects?: number;
  /** `Origin` header (`Sec-WebSocket-Origin` with `protocolVersion: 8`). */
  origin?: string;
  /** permessage-deflate: `true` (the default for clients), `false`, or ws's options object. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /** `Sec-WebSocket-Version`: 13 (default) or 8. */
  protocolVersion?: number;
  /** Accepted for compatibility; UTF-8 is always validated (see the README). Only `false` or omitted. */
  skipUTF8Validation?: boolean;
}

/** What the browser-style listeners receive (see {@link Event} and its subclasses in wsengine/ws). */
export interface OpenEventLike {
  type: string;
  target: any;
}
export interface MessageEventLike extends OpenEventLike {
  data: any;
}
export interface ErrorEventLike extends OpenEventLike {
  error: any;
  message: string;
}
export interface CloseEventLike extends OpenEventLike {
  code: number;
  reason: string;
  wasClean: boolean;
}

/** @internal What a server (or the client's handshake) hands to {@link WebSocket._attach}. */
export interface AttachOptions {
  role: 'server' | 'client';
  allowSynchronousEvents: boolean;
  autoPong: boolean;
  closeTimeout: number;
  maxMessageSize: number;
  /** The engine's per-fragment charge (ws's `maxFragments`); undefined: its default. */
  fragmentOverhead: number | undefined;
  protocol: string;
  /** The negotiated `Sec-WebSocket-Extensions` value ('' when none). */
  extensions: string;
  codec: DeflateCodec | null;
  threshold: number | undefined;
  maskSource?: (target: Uint8Array, offset: number) => void;
}

/**
 * ws's WebSocket: the client (`new WebSocket(url, protocols?, options?)`) and what a {@link WebSocketServer} hands to
 * its `connection` listeners. Events: `open`, `message(data, isBinary)`, `close(code, reason: Buffer)`, `error`,
 * `ping(data)`, `pong(data)`, and on clients `upgrade(response)`, `unexpected-response(request, response)`,
 * `redirect(url, request)`.
 */
export class WebSocket extends EventEmitter {
  declare static readonly CONNECTING: 0;
  declare static readonly OPEN: 1;
  declare static readonly CLOSING: 2;
  declare static readonly CLOSED: 3;
  declare readonly CONNECTING: 0;
  declare readonly OPEN: 1;
  declare readonly CLOSING: 2;
  declare readonly CLOSED: 3;

  /** @internal The engine's connection, once open. */
  _conn: WebSocketConnection<WebSocket> | null = null;
  /** The socket, once open (ws exposes it under this name; many applications read `ws._socket.remoteAddress`). */
  _socket: Duplex | null = null;
  /** @internal */
  _state: number = CONNECTING;
  /** @internal */
  _isServer: boolean;
  /** @internal */
  _binaryType: BinaryType = 'nodebuffer';
  /** @internal */
  _protocol = '';
  /** @internal Extension names as ws lists them (`permessage-deflate`). */
  _extensions = '';
  /** @internal */
  _url: string | undefined = undefined;
  /** @internal */
  _paused = false;
  /** @internal Bytes "sent" while closing or closed (ws counts them in `bufferedAmount`). */
  _bufferedAmount = 0;
  /** @internal Emit message/ping/pong synchronously (ws's `allowSynchronousEvents`). */
  _sync = true;
  /** @internal Events waiting for the next turn (`allowSynchronousEvents: false`), or null when none is pending. */
  _deferred: Array<[string, unknown, unknown]> | null = null;
  /** @internal A fragmented message (`fin: false`) is open. */
  _fragmenting = false;
  /** @internal Sends waiting behind a Blob being read (ws keeps their order). */
  _blobQueue: Queued[] | null = null;
  /** @internal The close event's code. */
  _closeCode = 1006;
  /** @internal */
  _errorEmitted = false;
  /** @internal The client's handshake request, while in progress. */
  _req: ClientRequest | null = null;
  /** @internal Redirects followed so far. */
  _redirects = 0;
  /** @internal */
  _closeTimeout = 30_000;
  /** @internal */
  _autoPong = true;

  /**
   * Opens a connection to `address` (`ws:`, `wss:`, `http:`, `https:` or `ws+unix:` URL). `protocols` (a string or an
   * array) may be left out: `new WebSocket(url, options)`.
   */
  constructor(address: string | URL | null, protocols?: string | string[] | ClientOptions, options?: ClientOptions) {
    super();
    if (address === null) {
      this._isServer = true;
      return;
    }
    this._isServer = false;
    let list: unknown[];
    if (protocols === undefined) list = [];
    else if (Array.isArray(protocols)) list = protocols;
    else if (typeof protocols === 'object' && protocols !== null) {
      options = protocols as ClientOptions;
      list = [];
    } else list = [protocols];
    startClient(this, address, list, options ?? {});
  }

  /** 0 CONNECTING, 1 OPEN, 2 CLOSING, 3 CLOSED. */
  get readyState(): 0 | 1 | 2 | 3 {
    const conn = this._conn;
    if (conn === null || this._state !== OPEN) return this._state as 0 | 1 | 2 | 3;
    return conn.readyState as 1 | 2 | 3;
  }

  /** `nodebuffer` (default), `arraybuffer`, `fragments` (an array of Buffers) or `blob`: how binary messages arrive. */
  get binaryType(): 'nodebuffer' | 'arraybuffer' | 'fragments' {
    return this._binaryType as 'nodebuffer';
  }
  set binaryType(type: BinaryType) {
    if (BINARY_TYPES.has(type)) this._binaryType = type;
  }

  /** Bytes accepted by `send` and not yet handed to the kernel (plus, as in ws, what was sent after closing). */
  get bufferedAmount(): number {
    const conn = this._conn;
    let n = this._bufferedAmount;
    if (conn !== null && this._state !== CLOSED) n += conn.bufferedAmount;
    return n;
  }

  /** The negotiated extension names (`'permessage-deflate'` or ''). */
  get extensions(): string {
    return this._extensions;
  }

  /** Whether `pause()` is in effect. */
  get isPaused(): boolean {
    return this._paused;
  }

  /** The subprotocol the server selected ('' when none). */
  get protocol(): string {
    return this._protocol;
  }

  /** The URL connected to (clients only: undefined on a server's connections, as in ws). */
  get url(): string {
    return this._url as string;
  }

  /** @internal Whether both close frames were exchanged (the browser-style events' `wasClean`). */
  get cleanClose(): boolean {
    return this._closeCode !== 1006 && !this._errorEmitted;
  }

  /**
   * Sends a message. `data`: a string (text), binary data (Buffer, ArrayBuffer, views, Blob), a number (sent as
   * text) or what `Buffer.from` takes. `callback(error?)` once it is written out. Throws while CONNECTING; once
   * closing, the data is not sent and `callback` gets an Error.
   */
  send(data: Sendable, callback?: SendCallback): void;
  send(data: Sendable, options: WsSendOptions, callback?: SendCallback): void;
  send(data: Sendable, options?: WsSendOptions | SendCallback, callback?: SendCallback): void {
    if (typeof options === 'function') {
      callback = options;
      options = undefined;
    }
    const conn = this._conn;
    if (conn === null && this._state === CONNECTING) throw notYetOpen();
    let payload: string | Uint8Array | Blob;
    if (typeof data === 'string' || data instanceof Uint8Array) payload = data;
    else if (typeof data === 'number') payload = String(data);
    else if (data instanceof Blob) payload = data;
    else payload = toBinary(data);
    if (conn === null || this._state !== OPEN || conn.readyState !== OPEN) {
      notSent(this, payload, callback);
      return;
    }
    if (this._blobQueue === null && (typeof payload === 'string' || payload instanceof Uint8Array)) {
      // The common case: straight to the engine.
      if (this._fragmenting || (options !== undefined && (options.fin === false || options.mask !== undefined))) this.sendSpecial(conn, payload, options ?? {}, callback);
      else if (this._isServer && this._extensions === '') {
        // ws's broadcast loop sends the same data to every client: from the second send in a tick on, the frame
        // made once is sent as it is (the engine's `prepare`), rather than framed again for each client.
        const binary = options?.binary ?? typeof payload !== 'string';
        const prepared = sameAsLast(payload, binary);
        if (prepared === null) conn.send(payload, options, callback);
        else conn.sendPrepared(prepared, callback);
      } else conn.send(payload, options, callback);
      return;
    }
    this._write('send', payload, options, callback);
  }

  /**
   * @internal A send, ping or pong once accepted (the state was checked): behind a Blob being read if there is one,
   * else to the engine now.
   */
  _write(kind: Queued['kind'], payload: string | Uint8Array | Blob, options: WsSendOptions | undefined, callback: SendCallback | undefined): void {
    if (this._blobQueue !== null) {
      this._blobQueue.push({ kind, data: payload, options, callback });
      return;
    }
    if (payload instanceof Blob) {
      this.sendBlob(kind, payload, options, callback);
      return;
    }
    const conn = this._conn!;
    if (kind === 'send') {
      if (this._fragmenting || (options !== undefined && (options.fin === false || options.mask !== undefined))) this.sendSpecial(conn, payload, options ?? {}, callback);
      else conn.send(payload, options, callback);
    } else if (kind === 'ping') conn.ping(payload, callback as SendCallback);
    else if (kind === 'pong') conn.pong(payload, callback as SendCallback);
    else this.closeNow(conn, options as CloseArgs);
  }

  /** `fin: false` fragments and explicit `mask`: the slow path of {@link send}. */
  private sendSpecial(conn: WebSocketConnection, data: string | Uint8Array, options: WsSendOptions, callback: SendCallback | undefined): void {
    if (options.mask !== undefined && Boolean(options.mask) === this._isServer) throw maskError('send', this._isServer);
    const fin = options.fin !== false;
    if (!fin || this._fragmenting) {
      const binary = options.binary ?? typeof data !== 'string';
      this._fragmenting = !fin;
      conn.sendFragment(data, fin, { binary }, callback);
      return;
    }
    conn.send(data, { binary: options.binary, compress: options.compress }, callback);
  }

  /**
   * A Blob is read first; what is sent meanwhile (messages, pings, pongs, the close frame) waits behind it, so the
   * order is kept. If the socket closes while it is read, its callback and those of the waiting sends get an Error.
   */
  private sendBlob(kind: Queued['kind'], blob: Blob, options: WsSendOptions | undefined, callback: SendCallback | undefined): void {
    this._blobQueue = [];
    blob.arrayBuffer().then(
      (bytes) => {
        const waiting = this._blobQueue!;
        this._blobQueue = null;
        const conn = this._conn;
        if (conn === null || conn.readyState !== OPEN || this._socket!.destroyed) {
          failQueued(callback, waiting, new Error('The socket was closed while the blob was being read'));
          return;
        }
        const data = Buffer.from(bytes);
        this._write(kind, data, kind === 'send' ? { binary: true, ...options } : undefined, callback);
        for (const q of waiting) this._write(q.kind, q.data, q.options, q.callback);
      },
      (error: unknown) => {
        const waiting = this._blobQueue!;
        this._blobQueue = null;
        const err = error instanceof Error ? error : new Error(String(error));
        failQueued(callback, waiting, err);
        if (this._state === CLOSED) return;
        if (!this._errorEmitted) {
          this._errorEmitted = true;
          this.emit('error', err);
        }
        this._state = CLOSING;
        this._conn?.terminate();
      },
    );
  }

  /** Sends a ping (at most 125 bytes). Throws while CONNECTING. `mask` may only say what the role implies. */
  ping(data?: Sendable | SendCallback, mask?: boolean | SendCallback, callback?: SendCallback): void {
    this.control(true, data, mask, callback);
  }

  /** Sends a pong (at most 125 bytes). Arguments as {@link ping}. */
  pong(data?: Sendable | SendCallback, mask?: boolean | SendCallback, callback?: SendCallback): void {
    this.control(false, data, mask, callback);
  }

  private control(isPing: boolean, data: Sendable | SendCallback | undefined, mask: boolean | SendCallback | undefined, callback: SendCallback | undefined): void {
    if (this._state === CONNECTING) throw notYetOpen();
    if (typeof data === 'function') {
      callback = data as SendCallback;
      data = mask = undefined;
    } else if (typeof mask === 'function') {
      callback = mask;
      mask = undefined;
    }
    let payload: string | Uint8Array | Blob;
    if (data === undefined || data === null || data === '') payload = EMPTY;
    else if (typeof data === 'string' || data instanceof Uint8Array || data instanceof Blob) payload = data;
    else if (typeof data === 'number') payload = String(data);
    else payload = toBinary(data);
    const length = payload instanceof Blob ? payload.size : typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
    if (length > 125) throw new RangeError('The data size must not be greater than 125 bytes');
    const conn = this._conn;
    if (conn === null || this._state !== OPEN || conn.readyState !== OPEN) {
      notSent(this, payload, callback);
      return;
    }
    if (mask !== undefined && mask !== null && Boolean(mask) === this._isServer) throw maskError(isPing ? 'ping' : 'pong', this._isServer);
    this._write(isPing ? 'ping' : 'pong', payload, undefined, callback);
  }

  /**
   * Starts the closing handshake (`code`: 1000, 1001–1003, 1007–1014 or 3000–4999; `reason`: a string or Buffer of
   * at most 123 bytes, only with a code). While CONNECTING, the handshake is aborted (`error` then `close`).
   */
  close(code?: number, reason?: string | Buffer): void {
    const state = this._state;
    if (state === CLOSED) return;
    if (state === CONNECTING) {
      abortHandshake(this, 'WebSocket was closed before the connection was established');
      return;
    }
    const conn = this._conn!;
    if (state === CLOSING || conn.readyState !== OPEN) {
      // Closing already: the engine finishes the handshake (or its timer ends it).
      return;
    }
    let text = '';
    if (code !== undefined && reason !== undefined && reason !== null) text = typeof reason === 'string' ? reason : Buffer.from(reason as Uint8Array).toString();
    const args: CloseArgs = { code, reason: code === undefined ? undefined : text };
    if (this._blobQueue !== null) {
      // Behind the Blob being read, as the messages sent before it; checked now all the same.
      validateClose(args.code, args.reason);
      this._blobQueue.push({ kind: 'close', data: EMPTY, options: args as WsSendOptions, callback: undefined });
    } else this.closeNow(conn, args);
    this._state = CLOSING;
  }

  private closeNow(conn: WebSocketConnection, args: CloseArgs): void {
    conn.close(args.code, args.reason);
    // The close frame leaves now rather than with the tick's batch (ws writes it at once; `bufferedAmount` then
    // shows only what the socket holds).
    conn.flush();
  }

  /** Destroys the socket at once (`close` reports 1006). While CONNECTING, the handshake is aborted. */
  terminate(): void {
    const state = this._state;
    if (state === CLOSED) return;
    if (state === CONNECTING) {
      abortHandshake(this, 'WebSocket was closed before the connection was established');
      return;
    }
    this._state = CLOSING;
    this._conn?.terminate();
  }

  /** Stops reading from the peer (no `message` until {@link resume}). Does nothing while CONNECTING or once CLOSED. */
  pause(): void {
    if (this._state === CONNECTING || this._state === CLOSED) return;
    this._paused = true;
    this._conn!.pause();
  }

  /** Reads again after {@link pause}. Does nothing while CONNECTING or once CLOSED. */
  resume(): void {
    if (this._state === CONNECTING || this._state === CLOSED) return;
    this._paused = false;
    if (this._deferred === null) this._conn!.resume();
  }

  /** Browser-style listener for `open`, `message`, `error` or `close` (others are ignored, as in ws). */
  addEventListener(type: string, listener: EventListenerLike, options?: { once?: boolean }): void {
    addEventListener(this, type, listener, options);
  }

  /** Removes a listener added with {@link addEventListener}. */
  removeEventListener(type: string, listener: EventListenerLike): void {
    removeEventListener(this, type, listener);
  }

  /** The `open` attribute listener (null when unset); anything but a function unsets it. */
  get onopen(): ((event: OpenEventLike) => void) | null {
    return attributeListener(this, 'open') as ((event: OpenEventLike) => void) | null;
  }
  set onopen(listener: ((event: OpenEventLike) => void) | null) {
    setAttributeListener(this, 'open', listener);
  }
  /** The `message` attribute listener: `event.data` is a string for text, binary data per `binaryType`. */
  get onmessage(): ((event: MessageEventLike) => void) | null {
    return attributeListener(this, 'message') as ((event: MessageEventLike) => void) | null;
  }
  set onmessage(listener: ((event: MessageEventLike) => void) | null) {
    setAttributeListener(this, 'message', listener);
  }
  /** The `error` attribute listener. */
  get onerror(): ((event: ErrorEventLike) => void) | null {
    return attributeListener(this, 'error') as ((event: ErrorEventLike) => void) | null;
  }
  set onerror(listener: ((event: ErrorEventLike) => void) | null) {
    setAttributeListener(this, 'error', listener);
  }
  /** The `close` attribute listener. */
  get onclose(): ((event: CloseEventLike) => void) | null {
    return attributeListener(this, 'close') as ((event: CloseEventLike) => void) | null;
  }
  set onclose(listener: ((event: CloseEventLike) => void) | null) {
    setAttributeListener(this, 'close', listener);
  }

  /**
   * @internal Takes over an upgraded socket: wraps it in the engine's connection. Reading starts with
   * {@link _start}, once the application had its chance to add listeners. `head`: bytes that came with the upgrade.
   */
  _attach(socket: Duplex, head: Buffer, o: AttachOptions): void {
    // Bytes that came with the upgrade go back into the socket's stream: they are read, in order, once the
    // connection's listener takes the socket's data (never before the caller returns: stream events are async).
    if (head.length > 0) socket.unshift(head);
    const conn = new WebSocketConnection<WebSocket>(socket, o.role, {
      maxMessageSize: o.maxMessageSize,
      fragmentOverhead: o.fragmentOverhead,
      autoPong: o.autoPong,
      closeTimeout: o.closeTimeout,
      protocol: o.protocol,
      extensions: o.extensions,
      codec: o.codec,
      threshold: o.threshold,
      maskSource: o.maskSource,
    });
    conn.data = this;
    conn.on('message', onConnMessage);
    conn.on('ping', onConnPing);
    conn.on('pong', onConnPong);
    conn.on('error', onConnError);
    conn.on('close', onConnClose);
    this._conn = conn;
    this._socket = socket;
    this._sync = o.allowSynchronousEvents;
    this._protocol = o.protocol;
    this._extensions = o.extensions === '' ? '' : extensionNames(o.extensions);
    this._state = OPEN;
  }

  /** @internal Starts reading (see {@link _attach}). */
  _start(): void {
    this._conn?.updateFlow();
  }
}

for (const [name, value] of [
  ['CONNECTING', CONNECTING],
  ['OPEN', OPEN],
  ['CLOSING', CLOSING],
  ['CLOSED', CLOSED],
] as const) {
  Object.defineProperty(WebSocket, name, { value, enumerable: true, writable: false, configurable: false });
  Object.defineProperty(WebSocket.prototype, name, { value, enumerable: true, writable: false, configurable: false });
}
// ws's accessors are enumerable (class accessors are not by default).
for (const name of ['binaryType', 'bufferedAmount', 'extensions', 'isPaused', 'protocol', 'readyState', 'url', 'onopen', 'onmessage', 'onerror', 'onclose']) {
  Object.defineProperty(WebSocket.prototype, name, { enumerable: true });
}

/** Typed events of {@link WebSocket}. */
export interface WebSocket {
  on(event: 'open', listener: (this: WebSocket) => void): this;
  on(event: 'message', listener: (this: WebSocket, data: RawData, isBinary: boolean) => void): this;
  on(event: 'close', listener: (this: WebSocket, code: number, reason: Buffer) => void): this;
  on(event: 'error', listener: (this: WebSocket, error: Error) => void): this;
  on(event: 'ping' | 'pong', listener: (this: WebSocket, data: Buffer) => void): this;
  on(event: 'upgrade', listener: (this: WebSocket, response: IncomingMessage) => void): this;
  on(event: 'unexpected-response', listener: (this: WebSocket, request: ClientRequest, response: IncomingMessage) => void): this;
  on(event: 'redirect', listener: (this: WebSocket, url: string, request: ClientRequest) => void): this;
  on(event: string | symbol, listener: (this: WebSocket, ...args: any[]) => void): this;
  once(event: 'open', listener: (this: WebSocket) => void): this;
  once(event: 'message', listener: (this: WebSocket, data: RawData, isBinary: boolean) => void): this;
  once(event: 'close', listener: (this: WebSocket, code: number, reason: Buffer) => void): this;
  once(event: 'error', listener: (this: WebSocket, error: Error) => void): this;
  once(event: 'ping' | 'pong', listener: (this: WebSocket, data: Buffer) => void): this;
  once(event: 'upgrade', listener: (this: WebSocket, response: IncomingMessage) => void): this;
  once(event: 'unexpected-response', listener: (this: WebSocket, request: ClientRequest, response: IncomingMessage) => void): this;
  once(event: 'redirect', listener: (this: WebSocket, url: string, request: ClientRequest) => void): this;
  once(event: string | symbol, listener: (this: WebSocket, ...args: any[]) => void): this;
  off(event: string | symbol, listener: (this: WebSocket, ...args: any[]) => void): this;
  addListener(event: string | symbol, listener: (this: WebSocket, ...args: any[]) => void): this;
  removeListener(event: string | symbol, listener: (this: WebSocket, ...args: any[]) => void): this;
}

// ───────────────────────────── events from the engine ─────────────────────────────

function onConnMessage(this: WebSocketConnection<WebSocket>, data: Buffer, isBinary: boolean): void {
  const ws = this.data;
  if (ws._sync && ws._deferred === null) {
    if (isBinary && ws._binaryType !== 'nodebuffer') ws.emit('message', convert(data, ws._binaryType), true);
    else ws.emit('message', data, isBinary);
    return;
  }
  defer(ws, 'message', data, isBinary);
}

function onConnPing(this: WebSocketConnection<WebSocket>, data: Buffer): void {
  const ws = this.data;
  if (ws._sync && ws._deferred === null) ws.emit('ping', data);
  else defer(ws, 'ping', data, undefined);
}

function onConnPong(this: WebSocketConnection<WebSocket>, data: Buffer): void {
  const ws = this.data;
  if (ws._sync && ws._deferred === null) ws.emit('pong', data);
  else defer(ws, 'pong', data, undefined);
}

/**
 * Protocol errors become ws's errors (a `code` from ws's `WS_ERR_*` list); socket errors are not re-emitted, as in ws
 * (the connection closes with 1006).
 */
function onConnError(this: WebSocketConnection<WebSocket>, error: Error): void {
  if (!(error instanceof ProtocolError)) return;
  const ws = this.data;
  if (ws._errorEmitted) return;
  ws._errorEmitted = true;
  try {
    ws.emit('error', wsError(error));
  } catch (thrown) {
    // No listener (or a throwing one): as in ws, the error is thrown at the process, but only once the engine has
    // finished failing the connection (its close frame and the end of TCP come right after this report).
    process.nextTick(rethrow, thrown);
  }
}

function rethrow(error: unknown): never {
  throw error;
}

function onConnClose(this: WebSocketConnection<WebSocket>, code: number, reason: string): void {
  const ws = this.data;
  if (ws._deferred !== null && ws._deferred.length > 0) {
    // Events still waiting for their turn come first, then `close`.
    ws._deferred.push(['close', code, reason]);
    return;
  }
  emitClose(ws, code, reason);
}

function emitClose(ws: WebSocket, code: number, reason: string): void {
  ws._state = CLOSED;
  ws._closeCode = code;
  ws.emit('close', code, reason === '' ? EMPTY : Buffer.from(reason));
}

/** `allowSynchronousEvents: false`: one event per turn of the event loop; reading waits meanwhile. */
function defer(ws: WebSocket, event: string, a: unknown, b: unknown): void {
  if (ws._deferred === null) {
    ws._deferred = [];
    emitDeferred(ws, event, a, b);
    setImmediate(nextDeferred, ws);
    return;
  }
  ws._deferred.push([event, a, b]);
  if (ws._deferred.length === 1) ws._conn?.pause();
}

function nextDeferred(ws: WebSocket): void {
  const queue = ws._deferred!;
  const next = queue.shift();
  if (next === undefined) {
    ws._deferred = null;
    if (!ws._paused && ws._state !== CLOSED) ws._conn?.resume();
    return;
  }
  if (next[0] === 'close') {
    ws._deferred = null;
    emitClose(ws, next[1] as number, next[2] as string);
    return;
  }
  emitDeferred(ws, next[0], next[1], next[2]);
  setImmediate(nextDeferred, ws);
}

function emitDeferred(ws: WebSocket, event: string, a: unknown, b: unknown): void {
  if (event === 'message') {
    const isBinary = b as boolean;
    ws.emit('message', isBinary && ws._binaryType !== 'nodebuffer' ? convert(a as Buffer, ws._binaryType) : a, isBinary);
  } else ws.emit(event, a);
}

function convert(data: Buffer, type: BinaryType): RawData | Blob {
  if (type === 'arraybuffer') {
    if (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) return data.buffer as ArrayBuffer;
    return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
  }
  if (type === 'fragments') return [data];
  if (type === 'blob') return new Blob([data]);
  return data;
}

/** ws's error codes for the engine's protocol errors. */
const WS_CODES: Record<string, string> = {
  RSV_NOT_NEGOTIATED: 'WS_ERR_UNEXPECTED_RSV_1',
  RSV1_ON_CONTROL: 'WS_ERR_UNEXPECTED_RSV_1',
  RSV1_ON_CONTINUATION: 'WS_ERR_UNEXPECTED_RSV_1',
  RESERVED_OPCODE: 'WS_ERR_INVALID_OPCODE',
  CONTROL_FRAGMENTED: 'WS_ERR_EXPECTED_FIN',
  CONTROL_TOO_LONG: 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH',
  UNEXPECTED_CONTINUATION: 'WS_ERR_INVALID_OPCODE',
  EXPECTED_CONTINUATION: 'WS_ERR_INVALID_OPCODE',
  MASK_EXPECTED: 'WS_ERR_EXPECTED_MASK',
  MASK_UNEXPECTED: 'WS_ERR_UNEXPECTED_MASK',
  LENGTH_64BIT_MSB: 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH',
  LENGTH_NOT_MINIMAL: 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH',
  FRAME_TOO_BIG: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH',
  MESSAGE_TOO_BIG: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH',
  INVALID_UTF8: 'WS_ERR_INVALID_UTF8',
  INVALID_CLOSE_REASON: 'WS_ERR_INVALID_UTF8',
  INVALID_CLOSE_CODE: 'WS_ERR_INVALID_CLOSE_CODE',
  INVALID_CLOSE_PAYLOAD: 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH',
};

/** A ws-style error (RangeError with ws's `code`; the engine's error as `cause`), or the engine's own for zlib. */
function wsError(error: ProtocolError): Error {
  const code = WS_CODES[error.code];
  if (code === undefined) {
    // Compressed data zlib could not inflate: ws reports zlib's own error (`code` Z_DATA_ERROR, `errno`).
    const cause = error.cause as { code?: unknown } | undefined;
    if (error.code === 'EXTENSION_ERROR' && cause instanceof Error && typeof cause.code === 'string' && cause.code.startsWith('Z_')) return cause;
    return error;
  }
  const out = new RangeError(error.message, { cause: error }) as RangeError & { code: string; closeCode: number };
  out.code = code;
  out.closeCode = error.closeCode;
  return out;
}

// ───────────────────────────── helpers ─────────────────────────────

/**
 * The data of the last server-side send of this tick, and its frame once a second send of the same data asked for
 * it. Strings are compared by value (they are immutable); bytes by identity and then content (an application may
 * reuse one buffer for different messages), and only up to {@link SAME_MAX} bytes, where the frame holds a copy to
 * compare with (larger payloads are sent without a copy anyway).
 */
let lastData: string | Uint8Array | null = null;
let lastBinary = false;
let lastPrepared: PreparedMessage | null = null;
let forgetScheduled = false;
const SAME_MAX = 1024;

function sameAsLast(data: string | Uint8Array, binary: boolean): PreparedMessage | null {
  if (data === lastData && binary === lastBinary) {
    if (typeof data === 'string') return (lastPrepared ??= prepare(data, { binary }));
    if (data.byteLength > SAME_MAX) return null;
    if (lastPrepared === null) return (lastPrepared = prepare(Buffer.from(data), { binary }));
    const kept = lastPrepared.payload as Uint8Array;
    if (Buffer.compare(kept, data) === 0) return lastPrepared;
  }
  lastData = data;
  lastBinary = binary;
  lastPrepared = null;
  if (!forgetScheduled) {
    forgetScheduled = true;
    process.nextTick(forgetLast);
  }
  return null;
}

function forgetLast(): void {
  forgetScheduled = false;
  lastData = null;
  lastPrepared = null;
}

function notYetOpen(): Error {
  return new Error('WebSocket is not open: readyState 0 (CONNECTING)');
}

/** ws's behaviour for data given once closing: counted in `bufferedAmount`, never sent, the callback told. */
function notSent(ws: WebSocket, data: string | Uint8Array | Blob, callback: SendCallback | undefined): void {
  ws._bufferedAmount += typeof data === 'string' ? Buffer.byteLength(data) : data instanceof Blob ? data.size : data.byteLength;
  if (callback !== undefined) {
    const state = ws.readyState;
    process.nextTick(callback, new Error(`WebSocket is not open: readyState ${state} (${STATE_NAMES[state]})`));
  }
}

/** Binary data as bytes: ArrayBuffers and views as they are, anything else through `Buffer.from` (as ws). */
function toBinary(data: unknown): Uint8Array {
  if (data === undefined || data === null) return EMPTY;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer || (typeof SharedArrayBuffer === 'function' && data instanceof SharedArrayBuffer)) return new Uint8Array(data);
  return Buffer.from(data as string);
}

/** A send waiting behind a Blob being read. */
interface Queued {
  kind: 'send' | 'ping' | 'pong' | 'close';
  data: string | Uint8Array | Blob;
  options: WsSendOptions | undefined;
  callback: SendCallback | undefined;
}

/** `close()`'s arguments, when the close frame waits behind a Blob. */
interface CloseArgs {
  code: number | undefined;
  reason: string | undefined;
}

function failQueued(callback: SendCallback | undefined, waiting: Queued[], error: Error): void {
  if (callback !== undefined) process.nextTick(callback, error);
  for (const q of waiting) if (q.callback !== undefined) process.nextTick(q.callback, error);
}

function maskError(what: string, isServer: boolean): RangeError {
  return new RangeError(
    isServer
      ? `${what}: a server never masks its frames (RFC 6455 §5.1): mask must be false or omitted`
      : `${what}: a client masks every frame (RFC 6455 §5.1): mask must be true or omitted`,
  );
}

/** `permessage-deflate; client_max_window_bits=10` → `permessage-deflate` (ws lists names only). */
function extensionNames(header: string): string {
  const offers = parseExtensions(header);
  return offers === null ? '' : offers.map((o) => o.name).join(', ');
}

/** A `generateMask` function as the engine's mask source. */
function maskFrom(generateMask: (mask: Buffer) => void): (target: Uint8Array, offset: number) => void {
  const key = Buffer.alloc(4);
  return (target, offset) => {
    generateMask(key);
    target[offset] = key[0];
    target[offset + 1] = key[1];
    target[offset + 2] = key[2];
    target[offset + 3] = key[3];
  };
}


// ───────────────────────────── the client's handshake ─────────────────────────────

const CLIENT_OPTION_DEFAULTS = {
  allowSynchronousEvents: true,
  autoPong: true,
  closeTimeout: 30_000,
  protocolVersion: 13,
  maxPayload: 100 * 1024 * 1024,
  skipUTF8Validation: false,
  perMessageDeflate: true as boolean | PerMessageDeflateOptions,
  followRedirects: false,
  maxRedirects: 10,
};

/** One zlib limiter per concurrency value, shared by client connections (ws shares one per process). */
const limiters = new Map<number, Limiter>();

/** Subprotocol names are HTTP tokens. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

interface ClientState {
  key: string;
  protocols: Set<string>;
  deflate: Required<DeflateOptions> | null;
  options: ClientOptions & typeof CLIENT_OPTION_DEFAULTS;
  maxMessageSize: number;
  fragmentOverhead: number | undefined;
  closeTimeout: number;
  maskSource: ((target: Uint8Array, offset: number) => void) | undefined;
}

/** Redirect bookkeeping (for dropping credentials when a redirect leaves the origin). */
interface Origin {
  ipc: boolean;
  secure: boolean;
  hostOrSocketPath: string | undefined;
  /** The first request's Authorization header. */
  authorization: string | undefined;
}
const origins = new WeakMap<WebSocket, Origin>();

function startClient(ws: WebSocket, address: string | URL, protocols: unknown[], given: ClientOptions): void {
  const options = { ...CLIENT_OPTION_DEFAULTS, ...given };
  if (options.protocolVersion !== 8 && options.protocolVersion !== 13) {
    throw new RangeError(`Unsupported protocol version: ${String(options.protocolVersion)} (supported versions: 8, 13)`);
  }
  checkBufferedChunks(options.maxBufferedChunks);
  checkSharedOptions(options);
  checkFunction('finishRequest', options.finishRequest);
  checkFunction('generateMask', options.generateMask);
  const seen = new Set<string>();
  for (const p of protocols) {
    if (typeof p !== 'string' || !TOKEN.test(p) || seen.has(p)) {
      throw new SyntaxError('An invalid or duplicated subprotocol was specified');
    }
    seen.add(p);
  }
  const state: ClientState = {
    key: '',
    protocols: seen,
    deflate: deflateOptions(options.perMessageDeflate, true),
    options,
    maxMessageSize: 0,
    fragmentOverhead: undefined,
    closeTimeout: closeTimeout(options.closeTimeout),
    maskSource: options.generateMask ? maskFrom(options.generateMask) : undefined,
  };
  state.maxMessageSize = maxMessageSize(options.maxPayload);
  state.fragmentOverhead = fragmentOverhead(options.maxFragments, state.maxMessageSize);
  ws._autoPong = options.autoPong;
  ws._closeTimeout = state.closeTimeout;
  request(ws, address, state, true);
}

/** Sends one handshake request (the first, or one after a redirect). `first`: errors throw rather than emit. */
function request(ws: WebSocket, address: string | URL, state: ClientState, first: boolean): void {
  let url: URL;
  const fail = (error: Error): void => {
    if (first) throw error;
    emitErrorAndClose(ws, error);
  };
  if (address instanceof URL) url = new URL(address.href);
  else {
    try {
      url = new URL(address);
    } catch {
      return fail(new SyntaxError(`Invalid URL: ${address}`));
    }
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  ws._url = url.href;
  const secure = url.protocol === 'wss:';
  const ipc = url.protocol === 'ws+unix:';
  if (url.protocol !== 'ws:' && !secure && !ipc) return fail(new SyntaxError('The URL\'s protocol must be one of "ws:", "wss:", "http:", "https:", or "ws+unix:"'));
  if (ipc && !url.pathname) return fail(new SyntaxError("The URL's pathname is empty"));
  if (url.hash) return fail(new SyntaxError('The URL contains a fragment identifier'));

  const given = state.options;
  const defaultPort = secure ? 443 : 80;
  state.key = generateKey();
  const opts: ClientOptions & { socketPath?: string } = {
    ...given,
    createConnection: given.createConnection ?? (secure ? tlsCreate : netCreate),
    defaultPort: given.defaultPort ?? defaultPort,
    port: url.port || defaultPort,
    host: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
    headers: {
      ...given.headers,
      'Sec-WebSocket-Version': String(given.protocolVersion),
      'Sec-WebSocket-Key': state.key,
      Connection: 'Upgrade',
      Upgrade: 'websocket',
    },
    path: url.pathname + url.search,
    timeout: given.handshakeTimeout,
    method: 'GET',
    hostname: undefined,
    protocol: undefined,
    socketPath: undefined,
  };
  const headers = opts.headers as Record<string, string | string[] | number>;
  if (state.deflate !== null) headers['Sec-WebSocket-Extensions'] = clientOffer(state.deflate);
  if (state.protocols.size > 0) headers['Sec-WebSocket-Protocol'] = [...state.protocols].join(',');
  if (given.origin) headers[given.protocolVersion < 13 ? 'Sec-WebSocket-Origin' : 'Origin'] = given.origin;
  if (url.username || url.password) opts.auth = `${url.username}:${url.password}`;
  if (ipc) {
    const [socketPath, path] = opts.path!.split(':');
    opts.socketPath = socketPath;
    opts.path = path === undefined || path === '' ? '/' : path;
  }

  if (given.followRedirects) {
    // Header names in lower case, so that credentials can be found (and dropped) on a redirect. The first
    // request's credentials (its URL's userinfo included) are those of every redirect that keeps them.
    const lower: Record<string, string | string[] | number> = {};
    for (const [name, value] of Object.entries(headers)) lower[name.toLowerCase()] = value;
    opts.headers = lower;
    if (ws._redirects === 0) {
      origins.set(ws, { ipc, secure, hostOrSocketPath: ipc ? opts.socketPath : url.host, authorization: undefined });
    } else {
      const start = origins.get(ws)!;
      if (start.authorization !== undefined) {
        lower.authorization = start.authorization;
        opts.auth = undefined;
      }
      if (ws.listenerCount('redirect') === 0) {
        const sameHost = ipc ? start.ipc && opts.socketPath === start.hostOrSocketPath : !start.ipc && url.host === start.hostOrSocketPath;
        if (!sameHost || (start.secure && !secure)) {
          // Credentials never follow a redirect to another host, or from wss to ws.
          delete lower.authorization;
          delete lower.cookie;
          if (!sameHost) delete lower.host;
          opts.auth = undefined;
        }
      }
    }
    if (opts.auth && lower.authorization === undefined) lower.authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`;
    const start = origins.get(ws)!;
    if (ws._redirects === 0 && typeof lower.authorization === 'string') start.authorization = lower.authorization;
  }

  const req = (secure ? httpsRequest : httpRequest)(opts as RequestOptions);
  ws._req = req;
  if (ws._redirects > 0) ws.emit('redirect', ws.url, req);
  if (opts.timeout) req.on('timeout', () => abortHandshake(ws, 'Opening handshake has timed out'));
  req.on('error', (error: Error) => {
    if (ws._req !== req || (req as AbortedRequest)[kAborted]) return;
    ws._req = null;
    emitErrorAndClose(ws, error);
  });
  req.on('response', (res: IncomingMessage) => {
    const location = res.headers.location;
    const status = res.statusCode ?? 0;
    if (location && given.followRedirects && status >= 300 && status < 400) {
      if (++ws._redirects > given.maxRedirects) {
        abortHandshake(ws, 'Maximum redirects exceeded');
        return;
      }
      req.destroy();
      let next: URL;
      try {
        next = new URL(location, address);
      } catch {
        emitErrorAndClose(ws, new SyntaxError(`Invalid URL: ${location}`));
        return;
      }
      request(ws, next, state, false);
    } else if (!ws.emit('unexpected-response', req, res)) {
      abortHandshake(ws, `Unexpected server response: ${status}`);
    }
  });
  req.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
    ws.emit('upgrade', res);
    // A listener of 'upgrade' may have closed or terminated it.
    if (ws._state !== CONNECTING) return;
    ws._req = null;
    const fail = (message: string): void => abortUpgrade(ws, socket, message);
    const upgrade = res.headers.upgrade;
    if (upgrade === undefined || upgrade.toLowerCase() !== 'websocket') return fail('Invalid Upgrade header');
    if (res.headers['sec-websocket-accept'] !== acceptKey(state.key)) return fail('Invalid Sec-WebSocket-Accept header');
    const serverProtocol = res.headers['sec-websocket-protocol'];
    let protocol = '';
    if (serverProtocol !== undefined) {
      if (state.protocols.size === 0) return fail('Server sent a subprotocol but none was requested');
      if (!state.protocols.has(serverProtocol)) return fail('Server sent an invalid subprotocol');
      protocol = serverProtocol;
    } else if (state.protocols.size > 0) return fail('Server sent no subprotocol');
    const extensionHeader = res.headers['sec-websocket-extensions'];
    let codec: DeflateCodec | null = null;
    let extensions = '';
    if (extensionHeader !== undefined) {
      if (state.deflate === null) return fail('Server sent a Sec-WebSocket-Extensions header but no extension was requested');
      const offers = parseExtensions(extensionHeader);
      if (offers === null || offers.length === 0) return fail('Invalid Sec-WebSocket-Extensions header');
      if (offers.length !== 1 || offers[0].name !== 'permessage-deflate') return fail('Server indicated an extension that was not requested');
      const params = acceptServerResponse(offers[0], state.deflate);
      if (typeof params === 'string') return fail('Invalid Sec-WebSocket-Extensions header');
      let limiter = limiters.get(state.deflate.concurrency);
      if (limiter === undefined) limiters.set(state.deflate.concurrency, (limiter = new Limiter(state.deflate.concurrency)));
      codec = new DeflateCodec('client', params, state.deflate, limiter, state.maxMessageSize);
      extensions = extensionHeader;
    }
    ws._attach(socket, head, {
      role: 'client',
      allowSynchronousEvents: given.allowSynchronousEvents,
      autoPong: given.autoPong,
      closeTimeout: state.closeTimeout,
      maxMessageSize: state.maxMessageSize,
      fragmentOverhead: state.fragmentOverhead,
      protocol,
      extensions,
      codec,
      threshold: state.deflate?.threshold,
      maskSource: state.maskSource,
    });
    ws.emit('open');
    ws._start();
  });
  if (given.finishRequest) given.finishRequest(req, ws);
  else req.end();
}

const kAborted = Symbol('wsengine.ws.aborted');
type AbortedRequest = ClientRequest & { [kAborted]?: boolean };

function netCreate(options: RequestOptions): Socket {
  const o = options as RequestOptions & { socketPath?: string };
  return net.connect({ ...(o as object), path: o.socketPath } as unknown as Parameters<typeof net.connect>[0]);
}

function tlsCreate(options: RequestOptions): Socket {
  const o = options as RequestOptions & TlsConnectionOptions;
  const servername = o.servername === undefined || o.servername === null ? (net.isIP(String(o.host)) ? '' : String(o.host)) : o.servername;
  return tls.connect({ ...(o as TlsConnectionOptions), path: undefined, servername } as unknown as TlsConnectionOptions);
}

/** The handshake fails before the upgrade: the request is aborted; `error` then `close` follow. */
function abortHandshake(ws: WebSocket, message: string): void {
  ws._state = CLOSING;
  const error = new Error(message);
  Error.captureStackTrace(error, abortHandshake);
  const req = ws._req as AbortedRequest | null;
  if (req !== null) {
    ws._req = null;
    req[kAborted] = true;
    req.destroy();
    if (req.socket && !req.socket.destroyed) req.socket.destroy();
  }
  process.nextTick(emitErrorAndClose, ws, error);
}

/** The upgrade response was not acceptable: the socket is destroyed; `error` then `close` follow. */
function abortUpgrade(ws: WebSocket, socket: Duplex, message: string): void {
  ws._state = CLOSING;
  const error = new Error(message);
  Error.captureStackTrace(error, abortUpgrade);
  socket.destroy();
  process.nextTick(emitErrorAndClose, ws, error);
}

function emitErrorAndClose(ws: WebSocket, error: Error): void {
  if (ws._state === CLOSED) return;
  ws._state = CLOSING;
  ws._errorEmitted = true;
  ws.emit('error', error);
  emitClose(ws, 1006, '');
}
