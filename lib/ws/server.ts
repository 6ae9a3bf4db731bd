/**
 * ws's `WebSocketServer` on the engine: ws 8's options, events and methods. With `port`, it runs its own
 * `node:http` server (plain requests get 426), as ws does; with `server`, it listens to that server's `upgrade`
 * event; with `noServer`, the application calls {@link WebSocketServer.handleUpgrade}. The opening handshake is
 * checked here with ws's statuses; what follows the 101 is the engine's connection, wrapped in the ws-style
 * {@link WebSocket} (or the class given as the `WebSocket` option).
 *
 * As in ws, `close()` stops accepting and leaves the open connections alone (the engine's own server closes them).
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type OutgoingHttpHeaders, type Server as HttpServer, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { acceptKey, isValidKey } from '../core/handshake.js';
import { parseExtensions, parseProtocols } from '../core/tokens.js';
import { DeflateCodec, Limiter } from '../deflate/codec.js';
import { type DeflateOptions, negotiateServer } from '../deflate/negotiate.js';
import {
  checkSharedOptions,
  checkBufferedChunks,
  checkFunction,
  checkNames,
  closeTimeout,
  deflateOptions,
  fragmentOverhead,
  maxMessageSize,
  type PerMessageDeflateOptions,
} from './options.js';
import { WebSocket } from './websocket.js';

/** `verifyClient`'s first argument. */
export interface VerifyClientInfo {
  /** The `Origin` header (`Sec-WebSocket-Origin` for protocol version 8). */
  origin: string;
  /** Whether the connection is TLS. */
  secure: boolean;
  /** The upgrade request. */
  req: IncomingMessage;
}

/** `verifyClient`'s callback (its two-argument form): `(result, code?, name?, headers?)`. */
export type VerifyClientCallback = (result: boolean, code?: number, name?: string, headers?: OutgoingHttpHeaders) => void;

/** Options of {@link WebSocketServer}: ws 8's. Exactly one of `port`, `server` and `noServer`. */
export interface ServerOptions<T extends typeof WebSocket = typeof WebSocket> {
  /** Emit `message`, `ping` and `pong` several times in one tick. Default: true. */
  allowSynchronousEvents?: boolean;
  /** Answer pings automatically. Default: true. */
  autoPong?: boolean;
  /** Pending-connection queue length of the server's `listen` (with `port`). */
  backlog?: number;
  /** Keep the open connections in `clients`. Default: true. */
  clientTracking?: boolean;
  /** Milliseconds for a closing handshake after `close()` before the socket is destroyed. Default: 30,000. */
  closeTimeout?: number;
  /** Chooses the subprotocol: return one of `protocols`, or false for none. Default: the client's first. */
  handleProtocols?: (protocols: Set<string>, request: IncomingMessage) => string | false;
  /** Host to listen on (with `port`). */
  host?: string;
  /** Largest message accepted, in bytes (1009 above it). Default: 100 MiB; 0: no limit. */
  maxPayload?: number;
  /**
   * Most fragments in a message: each fragment after the first is charged `maxPayload / maxFragments` bytes toward
   * `maxPayload`, so more fragments exceed it (1009). Default: the engine's charge of 16 bytes per fragment.
   */
  maxFragments?: number;
  /**
   * Accepted and met by design: the engine copies small reads into 16 KiB blocks and counts what it keeps toward
   * `maxPayload`, so a message's buffered chunks are bounded by `maxPayload` alone.
   */
  maxBufferedChunks?: number;
  /** Only handle `handleUpgrade` calls. */
  noServer?: boolean;
  /** Accept only this path (others get 400). */
  path?: string;
  /** permessage-deflate: `false` (default), `true`, or ws's options object. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /** Listen on this port, with an HTTP server of its own. */
  port?: number;
  /** Attach to this HTTP(S) server's `upgrade` event. */
  server?: HttpServer | HttpsServer;
  /** Accepted for compatibility; UTF-8 is always validated (see the README). Only `false` or omitted. */
  skipUTF8Validation?: boolean;
  /**
   * Accepts or refuses a client: `(info) => boolean`, or `(info, callback) => void` calling
   * `callback(result, code?, name?, headers?)`.
   */
  verifyClient?: (info: VerifyClientInfo, callback: VerifyClientCallback) => boolean | void;
  /** The class of the connections: {@link WebSocket} or a subclass. */
  WebSocket?: T;
}

const KNOWN = new Set([
  'allowSynchronousEvents',
  'autoPong',
  'backlog',
  'clientTracking',
  'closeTimeout',
  'handleProtocols',
  'host',
  'maxBufferedChunks',
  'maxFragments',
  'maxPayload',
  'noServer',
  'path',
  'perMessageDeflate',
  'port',
  'server',
  'skipUTF8Validation',
  'verifyClient',
  'WebSocket',
]);

const RUNNING = 0;
const CLOSING = 1;
const CLOSED = 2;

/** Marks a socket handed to `handleUpgrade`: a second call with it is a misconfiguration. */
const kUpgraded = Symbol('wsengine.ws.upgraded');
type UpgradeSocket = Duplex & { [kUpgraded]?: true };

/** ws's WebSocketServer. */
export class WebSocketServer<T extends typeof WebSocket = typeof WebSocket> extends EventEmitter {
  /** The options as given, with ws's defaults filled in. */
  readonly options: ServerOptions<T> & Required<Pick<ServerOptions<T>, 'allowSynchronousEvents' | 'autoPong' | 'clientTracking' | 'maxPayload' | 'skipUTF8Validation' | 'perMessageDeflate' | 'noServer'>> & { WebSocket: T };
  /** The open connections (undefined with `clientTracking: false`). */
  declare clients: Set<InstanceType<T>>;
  /** The HTTP server in use (ws's name: many applications reach it as `wss._server`); null with `noServer`. */
  _server: HttpServer | HttpsServer | null = null;
  /** @internal 0 running, 1 closing, 2 closed. */
  _state = RUNNING;
  private readonly deflate: { options: Required<DeflateOptions>; limiter: Limiter } | null;
  private readonly maxMessageSize: number;
  private readonly fragmentOverhead: number | undefined;
  private readonly closeTimeout: number;
  private removeListeners: (() => void) | null = null;
  /** Emit `close` once the last client is gone (after `close()` with an external server). */
  private closeWhenEmpty = false;

  /** Creates a server: `callback` listens for `listening` (with `port`). */
  constructor(options: ServerOptions<T>, callback?: () => void) {
    super();
    if (typeof options !== 'object' || options === null) options = {} as ServerOptions<T>;
    checkNames('WebSocketServer', options, KNOWN);
    const given = [options.port != null, options.server != null, Boolean(options.noServer)].filter(Boolean).length;
    if (given !== 1) throw new TypeError('One and only one of the "port", "server", or "noServer" options must be specified');
    checkSharedOptions(options);
    checkFunction('verifyClient', options.verifyClient);
    checkFunction('handleProtocols', options.handleProtocols);
    checkFunction('callback', callback);
    const Ws = (options.WebSocket ?? WebSocket) as T;
    if (typeof Ws !== 'function' || (Ws !== WebSocket && !(Ws.prototype instanceof WebSocket))) {
      throw new TypeError('the WebSocket option must be the WebSocket class of wsengine/ws or a subclass of it');
    }
    this.options = {
      allowSynchronousEvents: true,
      autoPong: true,
      maxPayload: 100 * 1024 * 1024,
      skipUTF8Validation: false,
      perMessageDeflate: false,
      handleProtocols: undefined,
      clientTracking: true,
      verifyClient: undefined,
      noServer: false,
      backlog: undefined,
      server: undefined,
      host: undefined,
      path: undefined,
      port: undefined,
      ...options,
      WebSocket: Ws,
    };
    this.maxMessageSize = maxMessageSize(options.maxPayload);
    this.fragmentOverhead = fragmentOverhead(options.maxFragments, this.maxMessageSize);
    checkBufferedChunks(options.maxBufferedChunks);
    this.closeTimeout = closeTimeout(options.closeTimeout);
    const deflate = deflateOptions(options.perMessageDeflate, false);
    this.deflate = deflate === null ? null : { options: deflate, limiter: new Limiter(deflate.concurrency) };
    if (this.options.clientTracking) this.clients = new Set();
    else this.clients = undefined as unknown as Set<InstanceType<T>>;

    if (options.port != null) {
      const server = createHttpServer(answer426);
      this._server = server;
      server.listen(options.port, options.host, options.backlog, callback);
    } else if (options.server) {
      this._server = options.server;
    }
    if (this._server !== null) {
      const server = this._server;
      const onListening = (): void => {
        this.emit('listening');
      };
      const onError = (error: Error): void => {
        this.emit('error', error);
      };
      const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
        this.handleUpgrade(req, socket, head, (ws) => this.emit('connection', ws, req));
      };
      server.on('listening', onListening);
      server.on('error', onError);
      server.on('upgrade', onUpgrade);
      this.removeListeners = () => {
        server.removeListener('listening', onListening);
        server.removeListener('error', onError);
        server.removeListener('upgrade', onUpgrade);
      };
    }
  }

  /** The `path` option ('' when none): what @types/ws declares, so the class fits where ws's type is expected. */
  get path(): string {
    return this.options.path ?? '';
  }

  /** The bound address (null once closed). Throws in `noServer` mode. */
  address(): AddressInfo | string | null {
    if (this.options.noServer) throw new Error('The server is operating in "noServer" mode');
    if (this._server === null) return null;
    return this._server.address();
  }

  /**
   * Stops accepting connections; closes the HTTP server if it made it (with `port`). Open connections are left
   * alone, as in ws. `close` is emitted (and `callback` called) once the server is closed and, with client
   * tracking, every connection is gone; `callback` gets an Error if the server was closed already.
   */
  close(callback?: (error?: Error) => void): void {
    if (callback !== undefined) {
      checkFunction('callback', callback);
      if (this._state === CLOSED) {
        this.once('close', () => callback(new Error('The server is not running')));
        process.nextTick(emitClose, this);
        return;
      }
      this.once('close', callback);
    }
    if (this._state === CLOSED) {
      process.nextTick(emitClose, this);
      return;
    }
    if (this._state === CLOSING) return;
    this._state = CLOSING;
    const ownServer = this.options.port != null;
    this.removeListeners?.();
    this.removeListeners = null;
    if (ownServer) {
      const server = this._server!;
      this._server = null;
      server.close(() => emitClose(this));
      return;
    }
    this._server = null;
    if (this.clients !== undefined && this.clients.size > 0) this.closeWhenEmpty = true;
    else process.nextTick(emitClose, this);
  }

  /** Whether this server handles the request: by default, whether its path is the `path` option (when set). */
  shouldHandle(req: IncomingMessage): boolean {
    const path = this.options.path;
    if (path === undefined || path === null) return true;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    return (q === -1 ? url : url.slice(0, q)) === path;
  }

  /**
   * Completes an upgrade received by an HTTP server: `callback(ws, req)` once the 101 is written (the server emits
   * nothing itself: call `wss.emit('connection', ws, req)` there, as ws's examples do). Refusals are written to the
   * socket as HTTP responses (or given to `wsClientError` listeners).
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, callback: (ws: InstanceType<T>, req: IncomingMessage) => void): void {
    socket.on('error', onSocketError);
    const headers = req.headers;
    const key = headers['sec-websocket-key'];
    const upgrade = headers.upgrade;
    const version = Number(headers['sec-websocket-version']);
    if (req.method !== 'GET') return this.clientError(req, socket, 405, 'Invalid HTTP method');
    if (upgrade === undefined || upgrade.toLowerCase() !== 'websocket') return this.clientError(req, socket, 400, 'Invalid Upgrade header');
    if (key === undefined || !isValidKey(key)) return this.clientError(req, socket, 400, 'Missing or invalid Sec-WebSocket-Key header');
    if (version !== 13 && version !== 8) {
      return this.clientError(req, socket, 400, 'Missing or invalid Sec-WebSocket-Version header', { 'Sec-WebSocket-Version': '13, 8' });
    }
    if (!this.shouldHandle(req)) return refuse(socket, 400);

    const protocolHeader = headers['sec-websocket-protocol'];
    let protocols = new Set<string>();
    if (protocolHeader !== undefined) {
      const parsed = parseProtocols(protocolHeader);
      if (parsed === null) return this.clientError(req, socket, 400, 'Invalid Sec-WebSocket-Protocol header');
      protocols = new Set(parsed);
    }
    let agreed: ReturnType<typeof negotiateServer> = null;
    const extensionHeader = headers['sec-websocket-extensions'];
    if (this.deflate !== null && extensionHeader !== undefined) {
      const offers = parseExtensions(extensionHeader);
      const invalid = (): void => this.clientError(req, socket, 400, 'Invalid or unacceptable Sec-WebSocket-Extensions header');
      if (offers === null) return invalid();
      agreed = negotiateServer(offers, this.deflate.options);
      if (agreed === null && offers.some((o) => o.name === 'permessage-deflate')) return invalid();
    }

    const verifyClient = this.options.verifyClient;
    if (verifyClient) {
      const info: VerifyClientInfo = {
        origin: headers[version === 8 ? 'sec-websocket-origin' : 'origin'] as string,
        secure: Boolean((req.socket as { authorized?: boolean; encrypted?: boolean }).authorized || (req.socket as { encrypted?: boolean }).encrypted),
        req,
      };
      if (verifyClient.length === 2) {
        socket.pause();
        (verifyClient as (info: VerifyClientInfo, cb: VerifyClientCallback) => void)(info, (result, code, name, extra) => {
          if (!result) return refuse(socket, code || 401, name, extra);
          this.complete(req, socket, head, key, protocols, agreed, callback);
        });
        return;
      }
      if (!(verifyClient as (info: VerifyClientInfo) => boolean)(info)) return refuse(socket, 401);
    }
    this.complete(req, socket, head, key, protocols, agreed, callback);
  }

  /** The 101, then the connection. */
  private complete(
    req: IncomingMessage,
    socket: UpgradeSocket,
    head: Buffer,
    key: string,
    protocols: Set<string>,
    agreed: ReturnType<typeof negotiateServer>,
    callback: (ws: InstanceType<T>, req: IncomingMessage) => void,
  ): void {
    if (!socket.readable || !socket.writable) {
      socket.destroy();
      return;
    }
    if (socket[kUpgraded]) throw new Error('server.handleUpgrade() was called more than once with the same socket, possibly due to a misconfiguration');
    if (this._state > RUNNING) return refuse(socket, 503);
    socket[kUpgraded] = true;
    const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${acceptKey(key)}`];
    const ws = new (this.options.WebSocket as typeof WebSocket)(null, undefined, this.options as never) as InstanceType<T>;
    let protocol = '';
    if (protocols.size > 0) {
      const chosen = this.options.handleProtocols ? this.options.handleProtocols(protocols, req) : protocols.values().next().value;
      if (chosen) {
        protocol = String(chosen);
        lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
      }
    }
    let codec: DeflateCodec | null = null;
    let extensions = '';
    if (agreed !== null && this.deflate !== null) {
      codec = new DeflateCodec('server', agreed.params, this.deflate.options, this.deflate.limiter, this.maxMessageSize);
      extensions = agreed.header;
      lines.push(`Sec-WebSocket-Extensions: ${extensions}`);
    }
    this.emit('headers', lines, req);
    for (const line of lines) {
      if (/[\r\n]/.test(line)) {
        socket.destroy();
        throw new TypeError(`a header line of the 101 contains CR or LF: ${JSON.stringify(line)}`);
      }
    }
    socket.write(lines.concat('\r\n').join('\r\n'));
    socket.removeListener('error', onSocketError);
    ws._attach(socket, head, {
      role: 'server',
      allowSynchronousEvents: this.options.allowSynchronousEvents,
      autoPong: this.options.autoPong,
      closeTimeout: this.closeTimeout,
      maxMessageSize: this.maxMessageSize,
      fragmentOverhead: this.fragmentOverhead,
      protocol,
      extensions,
      codec,
      threshold: this.deflate?.options.threshold,
    });
    const clients = this.clients;
    if (clients !== undefined) {
      clients.add(ws);
      ws.on('close', () => {
        clients.delete(ws);
        if (this.closeWhenEmpty && clients.size === 0) process.nextTick(emitClose, this);
      });
    }
    callback(ws, req);
    ws._start();
  }

  /** A malformed request: to `wsClientError` listeners when there are any, else answered with `status`. */
  private clientError(req: IncomingMessage, socket: Duplex, status: number, message: string, headers?: Record<string, string>): void {
    if (this.listenerCount('wsClientError') > 0) {
      const error = new Error(message);
      Error.captureStackTrace(error, this.clientError);
      this.emit('wsClientError', error, socket, req);
      return;
    }
    refuse(socket, status, message, headers);
  }
}

// ws's name for the class, kept as an alias.
export { WebSocketServer as Server };

/** Typed events of {@link WebSocketServer}. */
export interface WebSocketServer<T extends typeof WebSocket = typeof WebSocket> {
  on(event: 'connection', listener: (this: WebSocketServer<T>, ws: InstanceType<T>, request: IncomingMessage) => void): this;
  on(event: 'error', listener: (this: WebSocketServer<T>, error: Error) => void): this;
  on(event: 'headers', listener: (this: WebSocketServer<T>, headers: string[], request: IncomingMessage) => void): this;
  on(event: 'close' | 'listening', listener: (this: WebSocketServer<T>) => void): this;
  on(event: 'wsClientError', listener: (this: WebSocketServer<T>, error: Error, socket: Duplex, request: IncomingMessage) => void): this;
  on(event: string | symbol, listener: (this: WebSocketServer<T>, ...args: any[]) => void): this;
  once(event: 'connection', listener: (this: WebSocketServer<T>, ws: InstanceType<T>, request: IncomingMessage) => void): this;
  once(event: 'error', listener: (this: WebSocketServer<T>, error: Error) => void): this;
  once(event: 'headers', listener: (this: WebSocketServer<T>, headers: string[], request: IncomingMessage) => void): this;
  once(event: 'close' | 'listening', listener: (this: WebSocketServer<T>) => void): this;
  once(event: 'wsClientError', listener: (this: WebSocketServer<T>, error: Error, socket: Duplex, request: IncomingMessage) => void): this;
  once(event: string | symbol, listener: (this: WebSocketServer<T>, ...args: any[]) => void): this;
  off(event: string | symbol, listener: (this: WebSocketServer<T>, ...args: any[]) => void): this;
}

function emitClose(server: WebSocketServer<any>): void {
  server._state = CLOSED;
  server.emit('close');
}

function answer426(_req: IncomingMessage, res: ServerResponse): void {
  const body = STATUS_CODES[426]!;
  res.writeHead(426, { 'Content-Length': body.length, 'Content-Type': 'text/plain' });
  res.end(body);
}

function onSocketError(this: Duplex): void {
  this.destroy();
}

/** Answers a refused handshake with `status` (and `message` as the body) and closes the socket. */
function refuse(socket: Duplex, status: number, message?: string, headers?: OutgoingHttpHeaders): void {
  const reason = STATUS_CODES[status] ?? 'Unknown';
  const body = message ?? reason;
  const all: OutgoingHttpHeaders = {
    Connection: 'close',
    'Content-Type': 'text/html',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  };
  let head = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (const [name, value] of Object.entries(all)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(String(v))) {
        socket.destroy();
        throw new TypeError(`header ${JSON.stringify(name)} of a refusal contains CR or LF`);
      }
      head += `${name}: ${String(v)}\r\n`;
    }
  }
  socket.once('finish', socket.destroy);
  socket.end(`${head}\r\n${body}`);
}
