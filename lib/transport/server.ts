/**
 * The WebSocket server: standalone on `node:net` (or `node:tls` for wss), reading the upgrade head itself with no
 * `node:http`, or attached to an existing `node:http`/`node:https` server through {@link WebSocketServer.handleUpgrade}.
 *
 * The handshake runs in this order, each step answering with its own status: head limits (431), request validation
 * (400/405/426), path (404), origin allow-list (403), connection limit (503), the application's `authenticate` hook
 * (its status, 401 by default), subprotocol selection, then the 101. A handshake not complete within
 * `handshakeTimeout` is dropped.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type TlsOptions } from 'node:tls';
import {
  acceptResponse,
  checkUpgradeRequest,
  httpResponse,
  isRefusal,
  plainAcceptResponse,
  type HttpRefusal,
  type UpgradeRequest,
} from '../core/handshake.js';
import { HeadError, HeadParser, type HttpHead, type HeadLimits } from '../core/http1.js';
import type { ExtensionOffer } from '../core/tokens.js';
import { type ConnectionInternals, type ConnectionOptions, WebSocketConnection } from './connection.js';
import { CONNECTION_OPTION_NAMES } from './options.js';
import { checkOptionNames, type OptionHints, withTlsHints, WS_OPTION_HINTS } from '../core/options.js';
import { Heartbeat, type HeartbeatOptions } from './heartbeat.js';
import { DeflateCodec, Limiter } from '../deflate/codec.js';
import { type DeflateOptions, negotiateServer, resolveDeflateOptions } from '../deflate/negotiate.js';
import { PROTOCOL_DEFAULTS } from '../core/protocol.js';
import type { Http2SecureServer, Http2Server, IncomingHttpHeaders as Http2Headers, ServerHttp2Stream } from 'node:http2';
import { acceptStream, attachHttp2, type Http2ServerOptions, OwnHttp2, resolveHttp2Option } from './http2.js';
import { readDirectly } from './reads.js';
import { acceptHandles } from './handle-socket.js';
import { kParser, kServer } from './slots.js';

/** Defaults of {@link ServerOptions}. */
export const SERVER_DEFAULTS = {
  /** 10 s for the whole opening handshake, authentication included. */
  handshakeTimeout: 10_000,
  /** 5 s for connections to finish their closing handshake on `close()` before they are destroyed. */
  shutdownTimeout: 5_000,
} as const;

/** An upgrade request as the application's hooks see it. */
export interface IncomingUpgrade {
  /** The request target: path and query (`/chat?room=1`). */
  url: string;
  /** The path alone (`/chat`). */
  path: string;
  /** The parsed query string. */
  query: URLSearchParams;
  /**
   * Request headers as `node:http` (and ws) shows them: lower-case names on an object without a prototype, a
   * header sent twice joined as node:http joins it (`, `, or `; ` for `cookie`; only the first kept for
   * single-value headers such as `authorization`, `host`, `user-agent`), and `set-cookie` always an array. Built
   * on first use. Every value, unjoined, is in {@link headerMap}.
   */
  readonly headers: IncomingHttpHeaders;
  /** Request headers by lower-case name, each with every value sent, in order. */
  headerMap: Map<string, string[]>;
  /** The first value of a header (name in any case), or undefined. */
  header(name: string): string | undefined;
  /** Offered subprotocols, in the client's order. */
  protocols: string[];
  /** Offered extensions. */
  extensions: ExtensionOffer[];
  /** `Origin`, when sent. */
  origin: string | undefined;
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  /** Whether the connection is TLS (wss). */
  secure: boolean;
  /**
   * The connection's addresses in the shape of node:http's `req.socket`, so ws-style code such as
   * `req.socket.remoteAddress` runs unchanged: a small frozen object read from the socket on first use, not the
   * socket itself (the connection owns that; with `handleUpgrade`, the node:http request has it as `req.socket`).
   * Read it while the connection is open (in the `connection` handler, say): a closed socket no longer tells its
   * addresses, as with node:http.
   */
  readonly socket: UpgradeSocket;
}

/** The socket facts of an upgrade request ({@link IncomingUpgrade.socket}); undefined when the socket cannot tell. */
export interface UpgradeSocket {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** `'IPv4'` or `'IPv6'`. */
  readonly remoteFamily: string | undefined;
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  /** True on a TLS (wss) connection. */
  readonly encrypted: boolean;
}

/** What `authenticate` returns to refuse: an HTTP status (default 401), headers and a message body. */
export interface AuthRejection {
  reject: true;
  status?: number;
  headers?: Record<string, string>;
  message?: string;
}

/**
 * What `authenticate` returns to accept: the principal attached to the connection (`conn.principal`, typed by the
 * server's `Principal` parameter), and extra 101 headers.
 */
export interface AuthAcceptance<Principal = unknown> {
  principal?: Principal;
  headers?: Record<string, string>;
}

/** A plain HTTP response for a non-upgrade request on the standalone server. */
export interface HttpAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

/**
 * Options of {@link createServer} / {@link WebSocketServer}. `Data` and `Principal` type the connections' `data` and
 * `principal` (see {@link WebSocketConnection}).
 */
export interface ServerOptions<Data = unknown, Principal = unknown> extends ConnectionOptions, HeadLimits {
  /** Port to listen on at once; omit it to call `listen()` yourself, or with `noServer`. */
  port?: number;
  /** Host to listen on. Default: all interfaces (as `net.Server.listen`). */
  host?: string;
  /** TLS options (key, cert, …): the server speaks wss. Default: none (ws). */
  tls?: TlsOptions;
  /** Only handle `handleUpgrade` calls, never listen (attach to an existing HTTP server). Default: false. */
  noServer?: boolean;
  /** Accept upgrades only on this path (others get 404). Default: any path. */
  path?: string;
  /** Allowed `Origin` values; others, and a missing or `null` origin, get 403. Default: any origin. */
  origins?: readonly string[];
  /** Most open connections; further upgrades get 503. Default: unlimited. */
  maxConnections?: number;
  /**
   * Milliseconds for the opening handshake, authentication included. Default: 10,000. Read when the server is
   * created (one shared deadline timer serves every handshake).
   */
  handshakeTimeout?: number;
  /**
   * Chooses the subprotocol among those offered (in the client's order). Return one of them, or undefined for none.
   * Returning a value the client did not offer is an error (500): the server never echoes an unoffered value.
   * Default: none selected.
   */
  selectProtocol?: (offered: string[], request: IncomingUpgrade) => string | undefined;
  /**
   * Decides, before the 101, whether the request may connect: return (or resolve) an {@link AuthAcceptance} to accept,
   * with the principal to attach, or an {@link AuthRejection} (or `false`, a 401) to refuse. A throw is a 500.
   */
  authenticate?: (
    request: IncomingUpgrade,
  ) => AuthAcceptance<Principal> | AuthRejection | false | Promise<AuthAcceptance<Principal> | AuthRejection | false>;
  /**
   * Answers non-upgrade HTTP requests on the standalone server (health checks, a page). Default: 426 Upgrade
   * Required.
   */
  httpHandler?: (request: IncomingUpgrade & { method: string }) => HttpAnswer | Promise<HttpAnswer>;
  /**
   * Pings and dead-peer detection, with hooks for an application-level ping and the close code of a timeout (see
   * {@link HeartbeatOptions}); `false` to disable. Default: a protocol ping every 30 s, 30 s to answer, then
   * `terminate()`.
   */
  heartbeat?: HeartbeatOptions<Data, Principal> | false;
  /**
   * Listen with HTTP/2 as well (RFC 8441: WebSockets as streams of one HTTP/2 connection), HTTP/1.1 upgrades still
   * served on the same port: `true`, or {@link Http2ServerOptions} (`cleartext`, `allowHTTP1`, `settings`, and the
   * TLS key and certificate when they are not in `tls`). Over TLS, ALPN picks HTTP/2 or HTTP/1.1; without TLS it is
   * h2c with prior knowledge. Ignored with `noServer` (use {@link WebSocketServer.attachHttp2}). Default: off.
   */
  http2?: boolean | Http2ServerOptions;
}

/** @internal The names of {@link ServerOptions} (the compiler keeps the list complete). */
export const SERVER_OPTION_NAMES: ReadonlySet<string> = new Set(
  Object.keys({
    ...CONNECTION_OPTION_NAMES,
    maxHeadSize: true,
    maxHeaders: true,
    port: true,
    host: true,
    tls: true,
    noServer: true,
    path: true,
    origins: true,
    maxConnections: true,
    handshakeTimeout: true,
    selectProtocol: true,
    authenticate: true,
    httpHandler: true,
    heartbeat: true,
    http2: true,
  } as const satisfies Record<keyof ServerOptions, true>),
);

/** @internal What to say about a name that is not a server option. */
export const SERVER_OPTION_HINTS: OptionHints = withTlsHints({
  ...WS_OPTION_HINTS,
  protocol: "use selectProtocol: (offered: string[], request) => string | undefined",
  protocols: "use selectProtocol: (offered: string[], request) => string | undefined",
  origin: 'use origins (an allow-list of Origin values)',
  timeout: 'use handshakeTimeout (milliseconds for the opening handshake)',
});

/** Events of {@link WebSocketServer}. */
export interface ServerEvents<Data = unknown, Principal = unknown> {
  /** A connection completed its handshake. */
  connection: (connection: WebSocketConnection<Data, Principal>, request: IncomingUpgrade) => void;
  /** The server is listening. */
  listening: (address: AddressInfo) => void;
  /** A handshake was refused (for logs and metrics): status and why. */
  rejected: (status: number, message: string, remoteAddress: string | undefined) => void;
  /** A server-level error (listen failure). Never emitted without a listener, except listen errors via `listen()`. */
  error: (error: Error) => void;
  /** `close()` finished: every connection is closed. */
  close: () => void;
}

/** Options of {@link WebSocketServer.close}. */
export interface ShutdownOptions {
  /** Close code sent to every connection: 1001 going away, or 1012 service restart. Default: 1001. */
  code?: number;
  /** Close reason. Default: ''. */
  reason?: string;
  /** Milliseconds to wait for closing handshakes before destroying what is left. Default: 5,000. */
  timeout?: number;
}

const SHUTDOWN_OPTION_NAMES: ReadonlySet<string> = new Set(Object.keys({ code: true, reason: true, timeout: true } as const satisfies Record<keyof ShutdownOptions, true>));
const NO_HINTS: OptionHints = {};

/** A WebSocket server. Create it with {@link createServer}. */
export class WebSocketServer<Data = unknown, Principal = unknown> extends EventEmitter {
  /** Open connections. */
  readonly clients = new Set<WebSocketConnection<Data, Principal>>();
  readonly options: ServerOptions<Data, Principal>;
  /**
   * The heartbeat watching every connection (null with `heartbeat: false`): call `server.heartbeat.alive(conn)`
   * when an application-level pong arrives.
   */
  readonly heartbeat: Heartbeat<Data, Principal> | null;
  private readonly net: NetServer | null;
  /**
   * Sockets whose opening handshake is in progress, with their deadlines (`performance.now()` ms: monotonic, so a
   * step of the wall clock moves no deadline). Every handshake gets the same timeout, so insertion order is
   * deadline order: one shared timer, armed for the oldest deadline, drops what is due and re-arms for the next
   * (no timer per handshake).
   */
  private readonly handshaking = new Map<Duplex, number>();
  /** The shared handshake-deadline timer (null when not armed). */
  private handshakeTimer: NodeJS.Timeout | null = null;
  /** `options.handshakeTimeout`, read when the server is created. */
  private readonly handshakeTimeout: number;
  /** What every connection of this server reports its close to (one object per server, no closure per connection). */
  /** @internal (also read by http2.ts) */
  readonly internals: ConnectionInternals;
  /** @internal (also read by http2.ts) */
  closing = false;
  private closedPromise: Promise<void> | null = null;
  /** @internal (also read by http2.ts) */
  readonly deflate: { options: Required<DeflateOptions>; limiter: Limiter } | null;
  /** The own HTTP/2 server (`http2` option), or null. */
  private readonly h2: OwnHttp2 | null = null;

  constructor(options: ServerOptions<Data, Principal> = {}, onConnection?: (connection: WebSocketConnection<Data, Principal>, request: IncomingUpgrade) => void) {
    super();
    if (typeof options !== 'object' || options === null) throw new TypeError('server options must be an object');
    checkOptionNames('createServer', options, SERVER_OPTION_NAMES, SERVER_OPTION_HINTS);
    for (const name of ['handshakeTimeout', 'maxConnections', 'closeTimeout'] as const) {
      const v = options[name];
      if (v !== undefined && (typeof v !== 'number' || !(v >= 0))) throw new RangeError(`options.${name} must be a non-negative number, got ${String(v)}`);
    }
    for (const name of ['selectProtocol', 'authenticate', 'httpHandler'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'function') throw new TypeError(`options.${name} must be a function`);
    }
    this.options = options;
    this.handshakeTimeout = options.handshakeTimeout ?? SERVER_DEFAULTS.handshakeTimeout;
    this.internals = {
      onClosed: (c) => {
        this.clients.delete(c as WebSocketConnection<Data, Principal>);
        this.heartbeat?.delete(c as WebSocketConnection<Data, Principal>);
      },
    };
    if (options.perMessageDeflate) {
      const resolved = resolveDeflateOptions(options.perMessageDeflate);
      this.deflate = { options: resolved, limiter: new Limiter(resolved.concurrency) };
    } else {
      this.deflate = null;
    }
    this.heartbeat = options.heartbeat === false ? null : new Heartbeat<Data, Principal>(options.heartbeat ?? {});
    if (onConnection) this.on('connection', onConnection);
    // Checked with noServer too (where it is ignored): a wrong value is a TypeError either way.
    const h2 = options.http2 !== undefined && options.http2 !== false ? resolveHttp2Option(options.http2, options.tls) : null;
    if (options.noServer) {
      this.net = null;
    } else {
      const tls = h2 !== null ? h2.tls : options.tls;
      if (h2 !== null) this.h2 = new OwnHttp2(this, h2, (socket, first) => this.accept(socket, first));
      // TCP_NODELAY set at accept time by the server, not with a system call per socket afterwards.
      this.net = tls
        ? createTlsServer({ noDelay: true, ...tls, ...(h2 !== null ? { ALPNProtocols: h2.allowHTTP1 ? ['h2', 'http/1.1'] : ['h2'] } : {}) })
        : createNetServer({ noDelay: true });
      this.net.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => this.accept(socket));
      if (tls) this.net.on('tlsClientError', (_e: Error, socket: Duplex) => socket.destroy());
      if (options.port !== undefined) {
        this.listen(options.port, options.host).catch((error: Error) => {
          if (this.listenerCount('error') > 0) this.emit('error', error);
          else throw error;
        });
      }
    }
  }

  /** Starts listening; resolves with the bound address. */
  listen(port = 0, host?: string): Promise<AddressInfo> {
    const net = this.net;
    if (net === null) return Promise.reject(new Error('a noServer WebSocketServer does not listen: attach handleUpgrade to your HTTP server'));
    return new Promise((resolve, reject) => {
      net.once('error', reject);
      net.listen(port, host, () => {
        net.off('error', reject);
        // Plain TCP: connections are accepted as handle sockets, without a net.Socket each (see handle-socket.ts).
        if (this.options.tls === undefined && this.h2 === null) acceptHandles(net as NetServer, (socket) => this.accept(socket as unknown as Duplex));
        const address = net.address() as AddressInfo;
        this.emit('listening', address);
        resolve(address);
      });
    });
  }

  /** The bound address, once listening. */
  address(): AddressInfo | null {
    return (this.net?.address() as AddressInfo | null) ?? null;
  }

  /** A new connection (`first`: bytes already read from it, by the HTTP/2 preface check). */
  private accept(socket: Duplex, first?: Buffer): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (first === undefined && this.h2 !== null && this.h2.route(socket)) return;
    (socket as HandshakeSocket)[kParser] = new HeadParser('request', this.options);
    this.beginHandshake(socket);
    // The head is read as the connection reads its frames, straight from the socket's handle where Node allows it
    // (see reads.ts): no flowing mode, `data` event and read-ahead tick for it; the connection then takes the
    // reads over. Elsewhere (TLS, WSENGINE_READ_PATH=stream, and a socket whose first bytes the HTTP/2 router
    // already read from its stream), `data` events. A module-level callback with a back-reference (kServer,
    // kParser): no closure per socket.
    if (first !== undefined) {
      socket.on('data', onHandshakeData);
      this.handshakeData(socket as HandshakeSocket, first);
    } else if (!readDirectly(socket, onHandshakeRead)) socket.on('data', onHandshakeData);
  }

  /** @internal Bytes of a standalone handshake: the head so far; once complete, the upgrade (or the HTTP answer). */
  handshakeData(socket: HandshakeSocket, chunk: Buffer): void {
    const parser = socket[kParser];
    if (parser === undefined) return; // refused already: what follows is ignored
    let head: HttpHead | null;
    try {
      head = parser.push(chunk);
    } catch (error) {
      socket[kParser] = undefined;
      const status = error instanceof HeadError ? error.status : 400;
      this.refuse(socket, { status, message: (error as Error).message, headers: {} });
      return;
    }
    if (head === null) return;
    socket[kParser] = undefined;
    socket.off('data', onHandshakeData);
    // Still flowing: an upgrade that completes at once hands the socket to the connection in this call, which takes
    // over its 'data' events with no pause/resume (and no nextTick); a path that waits (authenticate's promise, the
    // HTTP handler) pauses the socket first, so nothing is read, and lost, meanwhile.
    this.upgrade(socket, head, parser.rest, false);
  }

  /** @internal Arms the handshake deadline and the listeners that clean up if the socket (or HTTP/2 stream) dies first. */
  beginHandshake(socket: Duplex): void {
    this.handshaking.set(socket, performance.now() + this.handshakeTimeout);
    if (this.handshakeTimer === null) this.armHandshakeTimer(this.handshakeTimeout);
    (socket as HandshakeSocket)[kServer] = this;
    socket.on('error', onHandshakeError);
    socket.on('close', onHandshakeClose);
  }

  private armHandshakeTimer(delay: number): void {
    this.handshakeTimer = setTimeout(sweepHandshakes, delay, this);
    this.handshakeTimer.unref();
  }

  /** @internal The shared deadline timer fired: drop the handshakes that are due, re-arm for the oldest left. */
  sweepHandshakes(): void {
    this.handshakeTimer = null;
    const now = performance.now();
    for (const [socket, deadline] of this.handshaking) {
      if (deadline > now) {
        this.armHandshakeTimer(deadline - now);
        return;
      }
      this.endHandshake(socket);
      this.emit('rejected', 408, 'handshake timeout', remote(socket).address);
      socket.destroy();
    }
  }

  /** @internal The handshake is over (upgraded, refused or the socket closed): drop its deadline and listeners. */
  endHandshake(socket: Duplex): void {
    this.handshaking.delete(socket);
    socket.off('error', onHandshakeError);
    socket.off('close', onHandshakeClose);
    (socket as HandshakeSocket)[kServer] = undefined; // not `delete`: that would turn the socket into a slow dictionary-mode object
  }

  /**
   * Completes an upgrade received by a `node:http`/`node:https` server: call it from the server's `'upgrade'` event
   * (`httpServer.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head))`). Refusals are written
   * as HTTP responses on the socket.
   *
   * Without `callback`, the server emits `connection`. With `callback`, as in ws, the connection goes to the
   * callback only and the server emits nothing itself: ws's usual line
   * `wss.handleUpgrade(req, socket, head, (conn) => wss.emit('connection', conn, req))` then fires `connection` once.
   * (The callback's second argument is the parsed {@link IncomingUpgrade}.)
   */
  handleUpgrade(
    request: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    callback?: (connection: WebSocketConnection<Data, Principal>, request: IncomingUpgrade) => void,
  ): void {
    if (callback !== undefined && typeof callback !== 'function') throw new TypeError('handleUpgrade callback must be a function');
    const headers = new Map<string, string[]>();
    const raw = request.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i].toLowerCase();
      const list = headers.get(name);
      if (list) list.push(raw[i + 1]);
      else headers.set(name, [raw[i + 1]]);
    }
    const parsed: HttpHead = {
      method: request.method ?? '',
      target: request.url ?? '/',
      version: `HTTP/${request.httpVersion}`,
      status: 0,
      statusText: '',
      headers,
    };
    if (this.closing) {
      this.refuse(socket, { status: 503, message: 'server shutting down', headers: {} });
      return;
    }
    this.beginHandshake(socket);
    // Nothing may be read (and lost) while the handshake is checked; the connection resumes reading.
    socket.pause();
    this.upgrade(socket, parsed, head, true, callback);
  }

  /**
   * Completes a WebSocket opened over HTTP/2 (RFC 8441): call it with an extended CONNECT stream (`:method`
   * CONNECT, `:protocol` websocket) and its headers from a `node:http2` server's `stream` event, or let
   * {@link attachHttp2} route them. The handshake runs as over HTTP/1.1 (origins, `path`, `maxConnections`,
   * `authenticate`, `selectProtocol`, permessage-deflate, `handshakeTimeout`), answered with `:status 200` and
   * lower-case headers (no `sec-websocket-accept`: RFC 8441 §5), then `connection` is emitted with a connection
   * whose {@link WebSocketConnection.transport} is `'h2'`. Refusals answer with a status and END_STREAM: 400 for a
   * malformed request (a missing or wrong `sec-websocket-version` included, with `sec-websocket-version: 13`), 405
   * for a method other than CONNECT, 501 for a `:protocol` other than websocket, 404/403/503 and `authenticate`'s
   * status as over HTTP/1.1. DATA sent before the 200 resets the stream with PROTOCOL_ERROR. The server's
   * SETTINGS must advertise `enableConnectProtocol` (attachHttp2 and the `http2` option do).
   */
  handleStream(stream: ServerHttp2Stream, headers: Http2Headers): void {
    acceptStream(this, stream, headers);
  }

  /**
   * Makes an existing `http2.createServer()`/`http2.createSecureServer()` accept WebSockets: advertises
   * SETTINGS_ENABLE_CONNECT_PROTOCOL to new sessions (`updateSettings`) and takes its WebSocket CONNECT streams
   * (to {@link handleStream}) and, on an `allowHTTP1` server, its HTTP/1.1 WebSocket upgrades (to
   * {@link handleUpgrade}) before the server emits them: they reach none of its `stream`, `request` or `upgrade`
   * listeners. Every other stream and request is the application's, as before (an HTTP/1.1 upgrade to another
   * protocol goes to the server's own `upgrade` listeners; with none, it gets a 400, where node would have emitted
   * it as a `request`). Create this server with `noServer: true`. Returns a function that detaches (and stops
   * advertising the setting to new sessions).
   */
  attachHttp2(server: Http2Server | Http2SecureServer): () => void {
    return attachHttp2(this, server);
  }

  /**
   * Checks an upgrade and completes it. Synchronous unless `authenticate` returns a promise: then the socket is
   * paused (`paused` says whether it already is) until the verdict, and `complete` resumes it.
   */
  private upgrade(
    socket: Duplex,
    head: HttpHead,
    rest: Buffer,
    paused: boolean,
    callback?: (connection: WebSocketConnection<Data, Principal>, request: IncomingUpgrade) => void,
  ): void {
    const options = this.options;
    const secure = 'encrypted' in socket && (socket as { encrypted?: boolean }).encrypted === true;
    const isUpgrade = head.headers.has('upgrade');
    if (!isUpgrade && this.net !== null) {
      if (!paused) socket.pause();
      void this.answerHttp(socket, head, secure);
      return;
    }
    const checked = checkUpgradeRequest(head, { origins: options.origins, negotiatesExtensions: this.deflate !== null });
    if (isRefusal(checked)) return this.refuse(socket, checked);
    const request = new Upgrade(checked, socket, secure);
    const refused = this.admission(request);
    if (refused !== null) return this.refuse(socket, refused);
    if (!options.authenticate) return this.complete(socket, checked.key, request, rest, paused, undefined, undefined, callback);
    let verdict: ReturnType<NonNullable<ServerOptions<Data, Principal>['authenticate']>>;
    try {
      verdict = options.authenticate(request);
    } catch (error) {
      return this.refuse(socket, AUTH_FAILED, error as Error);
    }
    if (!isThenable(verdict)) return this.authenticated(socket, checked.key, request, rest, paused, verdict, callback);
    if (!paused) socket.pause();
    verdict.then(
      (v) => this.authenticated(socket, checked.key, request, rest, true, v, callback),
      (error: unknown) => this.refuse(socket, AUTH_FAILED, error as Error),
    );
  }

  /** The `authenticate` verdict: refuse, or complete with its principal and extra headers. */
  private authenticated(
    socket: Duplex,
    key: string,
    request: Upgrade,
    rest: Buffer,
    paused: boolean,
    verdict: AuthAcceptance<Principal> | AuthRejection | false,
    callback?: (connection: WebSocketConnection<Data, Principal>, request: IncomingUpgrade) => void,
  ): void {
    if (socket.destroyed) return;
    const refused = verdictRefusal(verdict);
    if (refused !== null) return this.refuse(socket, refused);
    const accepted = verdict as AuthAcceptance<Principal>;
    this.complete(socket, key, request, rest, paused, accepted.principal, accepted.headers, callback);
  }

  /** Subprotocol, last checks, the 101 and the connection. */
  private complete(
    socket: Duplex,
    key: string,
    request: Upgrade,
    rest: Buffer,
    paused: boolean,
    principal: Principal | undefined,
    extraHeaders: Record<string, string> | undefined,
    callback?: (connection: WebSocketConnection<Data, Principal>, request: IncomingUpgrade) => void,
  ): void {
    const agreed = this.negotiate(request);
    if ('status' in agreed) return this.refuse(socket, agreed, agreed.cause);
    this.endHandshake(socket);
    const { protocol, codec, extensionHeader } = agreed;
    let response: string | Buffer;
    if (protocol === undefined && extensionHeader === undefined && extraHeaders === undefined) {
      response = plainAcceptResponse(key);
    } else {
      try {
        response = acceptResponse(key, protocol, extensionHeader, extraHeaders);
      } catch (error) {
        return this.refuse(socket, { status: 500, message: 'invalid response headers', headers: {} }, error as Error);
      }
    }
    socket.write(response);
    const connection = new WebSocketConnection<Data, Principal>(
      socket,
      'server',
      connectionOptions(this.options, protocol, codec, extensionHeader, this.deflate?.options.threshold, this.net === null),
      this.internals,
    );
    this.admit(connection, principal);
    if (callback !== undefined) callback(connection, request);
    else this.emit('connection', connection, request);
    // Frames sent right behind the request are read once the application's listeners are in place.
    if (rest.length > 0) connection.receive(Buffer.from(rest));
    if (paused) connection.updateFlow();
  }

  private async answerHttp(socket: Duplex, head: HttpHead, secure: boolean): Promise<void> {
    const handler = this.options.httpHandler;
    if (!handler) {
      return this.refuse(socket, { status: 426, message: 'this endpoint speaks WebSocket', headers: { Upgrade: 'websocket', 'Sec-WebSocket-Version': '13' } }, undefined, false);
    }
    const request = {
      ...new Upgrade({ head, target: head.target, key: '', protocols: [], extensions: [], origin: head.headers.get('origin')?.[0] }, socket, secure).toJSON(),
      method: head.method,
    };
    let answer: HttpAnswer;
    try {
      answer = await handler(request);
    } catch {
      answer = { status: 500, body: 'internal error' };
    }
    let response: Buffer;
    try {
      response = httpResponse(answer.status, answer.body ?? '', answer.headers ?? {});
    } catch {
      response = httpResponse(500, 'invalid response headers');
    }
    socket.end(response);
  }

  /**
   * @internal The refusals before `authenticate`, the same over HTTP/1.1 and HTTP/2 (http2.ts): no endpoint at the
   * path (404), the connection limit reached (503); null to go on.
   */
  admission(request: Upgrade): HttpRefusal | null {
    const options = this.options;
    if (options.path !== undefined && request.path !== options.path) return NO_ENDPOINT;
    if (options.maxConnections !== undefined && this.clients.size >= options.maxConnections) return TOO_MANY;
    return null;
  }

  /**
   * @internal What an accepted handshake settles, the same over HTTP/1.1 and HTTP/2: the subprotocol
   * (`selectProtocol`), the last checks (shutting down, the connection limit again: other handshakes may have
   * completed while this one was authenticating) and permessage-deflate. A refusal carries the error that caused it.
   */
  negotiate(request: Upgrade): Negotiated | (HttpRefusal & { cause?: Error }) {
    const options = this.options;
    let protocol: string | undefined;
    if (options.selectProtocol && request.protocols.length > 0) {
      try {
        protocol = options.selectProtocol(request.protocols, request);
      } catch (error) {
        return { status: 500, message: 'subprotocol selection failed', headers: {}, cause: error as Error };
      }
      if (protocol !== undefined && !request.protocols.includes(protocol)) return FOREIGN_PROTOCOL;
    }
    if (this.closing) return SHUTTING_DOWN;
    if (options.maxConnections !== undefined && this.clients.size >= options.maxConnections) return TOO_MANY;
    let codec: DeflateCodec | null = null;
    let extensionHeader: string | undefined;
    if (this.deflate !== null) {
      const agreed = negotiateServer(request.extensions, this.deflate.options);
      if (agreed !== null) {
        extensionHeader = agreed.header;
        codec = new DeflateCodec('server', agreed.params, this.deflate.options, this.deflate.limiter, options.maxMessageSize ?? PROTOCOL_DEFAULTS.maxMessageSize);
      }
    }
    return { protocol, codec, extensionHeader };
  }

  /** @internal A connection joins the server: its principal, `clients`, the heartbeat (both transports). */
  admit(connection: WebSocketConnection<Data, Principal>, principal: Principal | undefined): void {
    connection.principal = principal as Principal;
    this.clients.add(connection);
    this.heartbeat?.add(connection);
  }

  private refuse(socket: Duplex, refusal: HttpRefusal, cause?: Error, report = true): void {
    if (report) this.emit('rejected', refusal.status, cause ? `${refusal.message}: ${cause.message}` : refusal.message, remote(socket).address);
    if (socket.destroyed) return;
    socket.end(httpResponse(refusal.status, refusal.message, refusal.headers));
    // Do not wait on a peer that never reads its answer.
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  /**
   * Graceful shutdown: stops accepting, drops handshakes in progress, sends every connection a close frame (1001
   * by default, or 1012 for a restart), waits up to `timeout` ms for the closing handshakes, then destroys what is
   * left. Resolves when every connection's `close` event has fired. Calling it again returns the same promise.
   * An unknown option name, or a callback (ws's `close(cb)`: use `close().then(cb)`), is a TypeError.
   */
  close(options: ShutdownOptions = {}): Promise<void> {
    if (typeof options === 'function') {
      throw new TypeError('server.close() takes options ({ code, reason, timeout }), not a callback: it returns a promise, so use server.close().then(callback)');
    }
    if (typeof options !== 'object' || options === null) throw new TypeError('server.close() options must be an object ({ code, reason, timeout })');
    checkOptionNames('server.close', options, SHUTDOWN_OPTION_NAMES, NO_HINTS);
    if (this.closedPromise) return this.closedPromise;
    this.closing = true;
    const code = options.code ?? 1001;
    const timeout = options.timeout ?? SERVER_DEFAULTS.shutdownTimeout;
    this.closedPromise = new Promise<void>((resolve) => {
      this.net?.close();
      this.h2?.close();
      if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
      for (const socket of this.handshaking.keys()) socket.destroy();
      const pending = [...this.clients].map(
        (c) =>
          new Promise<void>((done) => {
            if (c.readyState === 3) return done();
            c.once('close', () => done());
            c.close(code, options.reason ?? '');
          }),
      );
      const killer = setTimeout(() => {
        for (const c of this.clients) c.terminate();
        this.h2?.destroy();
      }, timeout);
      killer.unref();
      void Promise.all(pending).then(() => {
        clearTimeout(killer);
        this.heartbeat?.stop();
        this.emit('close');
        resolve();
      });
    });
    return this.closedPromise;
  }

  /**
   * A snapshot of the open connections: how many, and which read and write path each uses (see {@link ServerStats}).
   * Counted when called (a pass over `clients`, nothing kept per connection): meant for metrics, not for every message.
   */
  stats(): ServerStats {
    const stats: ServerStats = {
      connections: this.clients.size,
      acceptPath: { handle: 0, socket: 0 },
      readPath: { direct: 0, stream: 0 },
      writePath: { direct: 0, stream: 0 },
    };
    for (const c of this.clients) {
      const paths = c.paths;
      stats.acceptPath[paths.accept]++;
      stats.readPath[paths.read]++;
      stats.writePath[paths.write]++;
    }
    return stats;
  }
}

/** A snapshot of a server's connections ({@link WebSocketServer.stats}). */
export interface ServerStats {
  /** Open connections (`server.clients.size`). */
  connections: number;
  /**
   * What the open connections' sockets are: `handle`, Node's TCP handle owned by the engine, with no `net.Socket`
   * (the server's own plain-TCP listener on the Node versions the project tests; see "Handle sockets" in the README),
   * or `socket`, a `net.Socket`, TLS socket, HTTP/2 stream or other Duplex (`handleUpgrade`, TLS, HTTP/2,
   * `WSENGINE_ACCEPT_PATH=socket`, or after the `WSENGINE_ACCEPT_PATH_FALLBACK` warning). The two add up to
   * `connections`.
   */
  acceptPath: { handle: number; socket: number };
  /**
   * How the open connections read from their sockets: `direct` through Node's socket handle into the engine (plain
   * TCP on the Node versions the project tests), `stream` through the socket's Readable stream (TLS, other Duplexes,
   * `WSENGINE_READ_PATH=stream`, or after the `WSENGINE_READ_PATH_FALLBACK` warning). The two add up to `connections`.
   */
  readPath: { direct: number; stream: number };
  /**
   * How the open connections write to their sockets: `direct` through the socket handle's `writeBuffer`/`writev`
   * (plain TCP), `stream` through `socket.write` (TLS, HTTP/2 streams and other Duplexes, `WSENGINE_WRITE_PATH=stream`,
   * or after the `WSENGINE_WRITE_PATH_FALLBACK` warning). The two add up to `connections`.
   */
  writePath: { direct: number; stream: number };
}

/** Typed event methods of {@link WebSocketServer} (see {@link ServerEvents}). */
export interface WebSocketServer<Data = unknown, Principal = unknown> {
  on<K extends keyof ServerEvents>(event: K, listener: ServerEvents<Data, Principal>[K]): this;
  once<K extends keyof ServerEvents>(event: K, listener: ServerEvents<Data, Principal>[K]): this;
  off<K extends keyof ServerEvents>(event: K, listener: ServerEvents<Data, Principal>[K]): this;
  emit<K extends keyof ServerEvents>(event: K, ...args: Parameters<ServerEvents<Data, Principal>[K]>): boolean;
}

/**
 * Creates a WebSocket server. With `port` it listens at once; otherwise call `listen()`, or use `noServer: true`
 * and `handleUpgrade` with an existing HTTP server. `onConnection` is added as a `connection` listener.
 *
 * `Principal` is inferred from what `authenticate` accepts (`{ principal: user }` types `conn.principal` as the
 * user's type); `Data` types `conn.data` — give both explicitly (`createServer<Session, User>(…)`) to set `Data`.
 */
export function createServer<Data = unknown, Principal = unknown>(
  options: ServerOptions<Data, Principal> = {},
  onConnection?: (connection: WebSocketConnection<Data, Principal>, request: IncomingUpgrade) => void,
): WebSocketServer<Data, Principal> {
  return new WebSocketServer<Data, Principal>(options, onConnection);
}

/** @internal What {@link WebSocketServer.negotiate} settles for an accepted handshake. */
export interface Negotiated {
  protocol: string | undefined;
  codec: DeflateCodec | null;
  extensionHeader: string | undefined;
}

// The refusals both transports give (HTTP/2 lower-cases the header names as it answers).
const NO_ENDPOINT: HttpRefusal = Object.freeze({ status: 404, message: 'no WebSocket endpoint at this path', headers: {} });
const TOO_MANY: HttpRefusal = Object.freeze({ status: 503, message: 'too many connections', headers: { 'Retry-After': '5' } });
const SHUTTING_DOWN: HttpRefusal = Object.freeze({ status: 503, message: 'server shutting down', headers: {} });
const FOREIGN_PROTOCOL: HttpRefusal = Object.freeze({ status: 500, message: 'selectProtocol returned a subprotocol the client did not offer', headers: {} });
/** @internal `authenticate` threw or its promise rejected. */
export const AUTH_FAILED: HttpRefusal = Object.freeze({ status: 500, message: 'authentication failed', headers: {} });

/** @internal An `authenticate` verdict as a refusal (`false`: 401; `{ reject: true, … }`: its status), or null when it accepts. */
export function verdictRefusal(verdict: AuthAcceptance<unknown> | AuthRejection | false): HttpRefusal | null {
  if (verdict === false) return { status: 401, message: 'unauthorized', headers: {} };
  if ((verdict as AuthRejection).reject !== true) return null;
  const r = verdict as AuthRejection;
  return { status: r.status ?? 401, message: r.message ?? 'unauthorized', headers: r.headers ?? {} };
}

type HandshakeSocket = Duplex & { [kServer]?: WebSocketServer<any, any>; [kParser]?: HeadParser };

function onHandshakeData(this: HandshakeSocket, chunk: Buffer): void {
  this[kServer]?.handshakeData(this, chunk);
}

function onHandshakeRead(this: HandshakeSocket, chunk: Buffer, borrowed: boolean): void {
  // A lent read (over 4 KiB) is only valid for this call: the parser may keep a view of it (the bytes after the head).
  this[kServer]?.handshakeData(this, borrowed ? Buffer.from(chunk) : chunk);
}

function onHandshakeError(this: Duplex): void {
  this.destroy();
}

function onHandshakeClose(this: HandshakeSocket): void {
  this[kServer]?.endHandshake(this);
}

function sweepHandshakes(server: WebSocketServer<any, any>): void {
  server.sweepHandshakes();
}

/**
 * The options of a server's connection as one object literal. Not `{ ...options, protocol, … }`: on Node 20 (V8
 * 11.3) a spread followed by more properties costs about 3.5 µs per added property (measured: 22 µs for this
 * one, the largest single item of a handshake's JavaScript), where a literal costs well under 0.1 µs. The mapped
 * type makes a `ConnectionOptions` field added later a compile error here until it is forwarded.
 */
/** @internal (also used by http2.ts) */
export function connectionOptions(
  o: ConnectionOptions,
  protocol: string | undefined,
  codec: DeflateCodec | null,
  extensions: string | undefined,
  threshold: number | undefined,
  noDelay: boolean,
): { [K in keyof Required<ConnectionOptions>]: ConnectionOptions[K] } & {
  protocol: string | undefined;
  codec: DeflateCodec | null;
  extensions: string | undefined;
  threshold: number | undefined;
  noDelay: boolean;
} {
  return {
    maxMessageSize: o.maxMessageSize,
    maxFrameSize: o.maxFrameSize,
    fragmentOverhead: o.fragmentOverhead,
    autoPong: o.autoPong,
    strictLengths: o.strictLengths,
    closeTimeout: o.closeTimeout,
    maxPongBacklog: o.maxPongBacklog,
    iteratorHighWaterMark: o.iteratorHighWaterMark,
    perMessageDeflate: o.perMessageDeflate,
    protocol,
    codec,
    extensions,
    threshold,
    noDelay,
  };
}

function isThenable<T>(x: T | PromiseLike<T>): x is PromiseLike<T> {
  return typeof x === 'object' && x !== null && typeof (x as PromiseLike<T>).then === 'function';
}

function remote(socket: Duplex): { address: string | undefined; port: number | undefined } {
  const s = socket as Partial<Socket>;
  return { address: s.remoteAddress, port: s.remotePort };
}

/**
 * The {@link IncomingUpgrade} handed to the hooks: one object per request whose lazy parts (query, node:http-shaped
 * headers, peer address) are prototype getters, not closures made per request.
 */
/** @internal (also used by http2.ts) */
export class Upgrade implements IncomingUpgrade {
  url: string;
  path: string;
  headerMap: Map<string, string[]>;
  protocols: string[];
  extensions: ExtensionOffer[];
  origin: string | undefined;
  secure: boolean;
  // ES private fields: not own enumerable properties, so a spread or `Object.keys` shows the interface's fields only.
  readonly #socket: Duplex;
  #query: URLSearchParams | undefined = undefined;
  #headers: IncomingHttpHeaders | undefined = undefined;
  #facts: UpgradeSocket | undefined = undefined;

  constructor(req: UpgradeRequest, socket: Duplex, secure: boolean) {
    const target = req.target;
    const q = target.indexOf('?');
    this.url = target;
    this.path = q === -1 ? target : target.slice(0, q);
    this.headerMap = req.head.headers;
    this.protocols = req.protocols;
    this.extensions = req.extensions;
    this.origin = req.origin;
    this.secure = secure;
    this.#socket = socket;
  }

  /** Parsed on first use: most handshakes never look at the query. */
  get query(): URLSearchParams {
    if (this.#query === undefined) {
      const q = this.url.indexOf('?');
      this.#query = new URLSearchParams(q === -1 ? '' : this.url.slice(q + 1));
    }
    return this.#query;
  }

  get headers(): IncomingHttpHeaders {
    return (this.#headers ??= nodeHeaders(this.headerMap));
  }

  /** Read from the socket on first use (a getpeername system call), not for every handshake. */
  get remoteAddress(): string | undefined {
    return (this.#socket as Partial<Socket>).remoteAddress;
  }

  get remotePort(): number | undefined {
    return (this.#socket as Partial<Socket>).remotePort;
  }

  /** Read on first use (getpeername and getsockname system calls), then kept. */
  get socket(): UpgradeSocket {
    if (this.#facts === undefined) {
      const s = this.#socket as Partial<Socket>;
      this.#facts = Object.freeze({
        remoteAddress: s.remoteAddress,
        remotePort: s.remotePort,
        remoteFamily: s.remoteFamily,
        localAddress: s.localAddress,
        localPort: s.localPort,
        encrypted: this.secure,
      });
    }
    return this.#facts;
  }

  header(name: string): string | undefined {
    return this.headerMap.get(name.toLowerCase())?.[0];
  }

  /**
   * The request as a plain object with every lazy part read (what `JSON.stringify` shows; the HTTP handler's
   * request is this plus `method`).
   */
  toJSON(): IncomingUpgrade {
    return {
      url: this.url,
      path: this.path,
      query: this.query,
      headers: this.headers,
      headerMap: this.headerMap,
      header: (name: string) => this.header(name),
      protocols: this.protocols,
      extensions: this.extensions,
      origin: this.origin,
      remoteAddress: this.remoteAddress,
      remotePort: this.remotePort,
      secure: this.secure,
      socket: this.socket,
    };
  }
}

/** Headers of which node:http keeps only the first value when sent twice. */
const SINGLE_VALUED = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after',
  'server', 'user-agent',
]);

/** The headers as node:http's `IncomingMessage.headers` shows them (see {@link IncomingUpgrade.headers}). */
function nodeHeaders(map: Map<string, string[]>): IncomingHttpHeaders {
  const out = Object.create(null) as Record<string, string | string[]>;
  for (const [name, values] of map) {
    if (name === 'set-cookie') out[name] = [...values];
    else if (values.length === 1 || SINGLE_VALUED.has(name)) out[name] = values[0];
    else out[name] = values.join(name === 'cookie' ? '; ' : ', ');
  }
  return out as IncomingHttpHeaders;
}
