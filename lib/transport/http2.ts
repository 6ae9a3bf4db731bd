/**
 * WebSockets over HTTP/2 (RFC 8441): a WebSocket is one stream of an HTTP/2 connection, opened by an extended
 * CONNECT (`:method` CONNECT, `:protocol` websocket) to a server that advertised SETTINGS_ENABLE_CONNECT_PROTOCOL,
 * answered by a 200 (no `Sec-WebSocket-Key`/`Accept`); the stream's DATA frames then carry the WebSocket frames,
 * exactly as TCP does over HTTP/1.1 (RFC 8441 §5). Built on `node:http2`.
 *
 * Server side: {@link WebSocketServer.handleStream} takes such a stream, {@link WebSocketServer.attachHttp2} routes
 * them from an existing `http2.createServer`/`createSecureServer`, and `createServer({ http2: … })` serves h2 (and
 * HTTP/1.1 upgrades on the same port) itself. Client side (http2-client.ts): `connect(url, { http2: true })` shares
 * one session per origin between WebSockets, and falls back to an HTTP/1.1 upgrade when the server does not offer
 * RFC 8441.
 *
 * How the stream maps onto the WebSocket:
 * - HTTP/2 flow control is the backpressure: a WebSocket that is not read (paused) stops granting its stream
 *   window, so its peer's writes pile up in the peer's `bufferedAmount`. Node consumes the connection-level window
 *   as data arrives, whichever stream it is for, so one stalled WebSocket does not stall the others of its session
 *   (measured and tested: test/http2-flow.test.ts). What a paused stream holds is bounded by its stream window
 *   (64 KiB by default) plus its readable buffer (16 KiB).
 * - The closing handshake ends with END_STREAM both ways; an RST_STREAM from the peer is an abnormal closure
 *   (1006); a GOAWAY from the peer closes the session's WebSockets with 1001 (the closing handshake runs while the
 *   session lets the streams finish: GOAWAY with NO_ERROR), or 1006 when the session is destroyed (any other code).
 *
 * What node:http2 (nghttp2) does before any JavaScript runs, found with a raw client (test/http2-refusals.test.ts):
 * a header name in upper case, a `:protocol` sent to a server that did not advertise the setting, and an extended
 * CONNECT without `:scheme` or `:path` are each answered with RST_STREAM PROTOCOL_ERROR (RFC 9113 §8.2.1 and
 * §8.1.1: malformed requests are stream errors), and no `stream` event fires. node's own client, asked for a
 * `:protocol` by a server that did not advertise it, fails the request with a stream reset (PROTOCOL_ERROR, or
 * REFUSED_STREAM) and the server sees no stream.
 *
 * @module
 */
import * as http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { ConnectionOptions as TlsConnectionOptions, TLSSocket } from 'node:tls';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HttpRefusal } from '../core/handshake.js';
import type { HttpHead } from '../core/http1.js';
import { type ExtensionOffer, parseExtensions, parseProtocols } from '../core/tokens.js';
import { checkOptionNames } from '../core/options.js';
import type { DeflateOptions } from '../deflate/negotiate.js';
import { WebSocketConnection } from './connection.js';
import type { Heartbeat } from './heartbeat.js';
import type { AuthAcceptance, AuthRejection, HttpAnswer, IncomingUpgrade, ServerOptions, WebSocketServer } from './server.js';
import { AUTH_FAILED, connectionOptions, type Negotiated, Upgrade, verdictRefusal } from './server.js';

const {
  NGHTTP2_NO_ERROR,
  NGHTTP2_PROTOCOL_ERROR,
} = http2.constants;

/** Defaults of the HTTP/2 transport. */
export const HTTP2_DEFAULTS = {
  /**
   * 1 s: how long a client session (`connect(url, { http2: true })`) stays open after its last WebSocket closed, so
   * that a WebSocket opened soon after reuses it. An idle session never keeps the process alive (it is unref'd).
   */
  sessionIdleTimeout: 1_000,
  /** 60 s: how long a client remembers that an origin does not offer WebSockets over HTTP/2 (it then goes straight to HTTP/1.1). */
  fallbackMemory: 60_000,
} as const;

/**
 * The `http2` option of `createServer`: the server listens with `node:http2` and accepts WebSockets as HTTP/2
 * streams (RFC 8441), and HTTP/1.1 upgrades on the same port.
 *
 * - Over TLS (the usual case, and the only one browsers use): give the key and certificate here or in the server's
 *   `tls` option. ALPN chooses: `h2` goes to HTTP/2, `http/1.1` (or no ALPN) to the engine's own HTTP/1.1 upgrade path.
 * - Cleartext (h2c, for tests and for proxies that speak HTTP/2 to their backends): `{ cleartext: true }` and no
 *   TLS options. A connection that opens with the HTTP/2 preface (prior knowledge, RFC 9113 §3.3) is HTTP/2; any
 *   other is read as HTTP/1.1.
 *
 * `http2: true` is `{}`: TLS when `tls` is given, else cleartext.
 */
export interface Http2ServerOptions {
  /** HTTP/2 without TLS (h2c with prior knowledge). Default: false, or true when no TLS options are given anywhere. */
  cleartext?: boolean;
  /** Accept HTTP/1.1 connections (upgrades, and `httpHandler`) on the same port. Default: true. */
  allowHTTP1?: boolean;
  /**
   * HTTP/2 SETTINGS to advertise (`node:http2`'s `Settings`: `initialWindowSize`, `maxConcurrentStreams`, …).
   * `enableConnectProtocol` is always on. Default: node's (64 KiB stream windows, unlimited concurrent streams).
   */
  settings?: http2.Settings;
  /** A TLS option (as `tls.createServer` takes it). */
  key?: TlsConnectionOptions['key'];
  /** A TLS option. */
  cert?: TlsConnectionOptions['cert'];
  /** A TLS option. */
  ca?: TlsConnectionOptions['ca'];
  /** A TLS option. */
  pfx?: TlsConnectionOptions['pfx'];
  /** A TLS option. */
  passphrase?: string;
  /** A TLS option. */
  ciphers?: string;
  /** A TLS option. */
  minVersion?: TlsConnectionOptions['minVersion'];
  /** A TLS option. */
  maxVersion?: TlsConnectionOptions['maxVersion'];
  /** A TLS option. */
  secureContext?: TlsConnectionOptions['secureContext'];
  /** A TLS option. */
  requestCert?: boolean;
  /** A TLS option. */
  rejectUnauthorized?: boolean;
  /** A TLS option. */
  SNICallback?: (servername: string, cb: (err: Error | null, ctx?: import('node:tls').SecureContext) => void) => void;
}

const TLS_KEYS = ['key', 'cert', 'ca', 'pfx', 'passphrase', 'ciphers', 'minVersion', 'maxVersion', 'secureContext', 'requestCert', 'rejectUnauthorized', 'SNICallback'] as const;

/** @internal The names of {@link Http2ServerOptions}. */
const HTTP2_OPTION_NAMES: ReadonlySet<string> = new Set(
  Object.keys({
    cleartext: true,
    allowHTTP1: true,
    settings: true,
    key: true,
    cert: true,
    ca: true,
    pfx: true,
    passphrase: true,
    ciphers: true,
    minVersion: true,
    maxVersion: true,
    secureContext: true,
    requestCert: true,
    rejectUnauthorized: true,
    SNICallback: true,
  } as const satisfies Record<keyof Http2ServerOptions, true>),
);

const HTTP2_OPTION_HINTS = {
  enableConnectProtocol: 'always on: the server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3) by itself',
  allowHttp1: 'did you mean allowHTTP1?',
  port: 'give port at the top level of the server options',
};

/** @internal {@link Http2ServerOptions} checked and resolved. */
export interface ResolvedHttp2 {
  cleartext: boolean;
  allowHTTP1: boolean;
  settings: http2.Settings;
  /** TLS options for the listening server (the server's `tls` merged with those given in `http2`); null: h2c. */
  tls: Record<string, unknown> | null;
}

/**
 * @internal Checks the `http2` server option: `true` or an object of known names (TypeError otherwise, naming the
 * option), TLS given once (in `tls` or in `http2`), `cleartext` without TLS.
 */
export function resolveHttp2Option(value: unknown, tls: object | undefined): ResolvedHttp2 {
  if (value === true) value = {};
  if (typeof value !== 'object' || value === null) {
    throw new TypeError(`options.http2 must be true or an object ({ cleartext?, allowHTTP1?, settings?, key?, cert?, … }), got ${value === null ? 'null' : typeof value}`);
  }
  checkOptionNames('createServer: http2', value, HTTP2_OPTION_NAMES, HTTP2_OPTION_HINTS);
  const o = value as Http2ServerOptions;
  for (const name of ['cleartext', 'allowHTTP1'] as const) {
    if (o[name] !== undefined && typeof o[name] !== 'boolean') throw new TypeError(`options.http2.${name} must be a boolean, got ${typeof o[name]}`);
  }
  if (o.settings !== undefined && (typeof o.settings !== 'object' || o.settings === null)) throw new TypeError('options.http2.settings must be an object (node:http2 Settings)');
  const inner: Record<string, unknown> = {};
  for (const k of TLS_KEYS) if (o[k] !== undefined) inner[k] = o[k];
  const hasInner = Object.keys(inner).length > 0;
  if (hasInner && tls !== undefined) throw new TypeError('give the TLS options once: in options.tls or in options.http2, not both');
  const tlsOptions = hasInner ? inner : (tls as Record<string, unknown> | undefined) ?? null;
  if (o.cleartext === true && tlsOptions !== null) throw new TypeError('options.http2.cleartext is HTTP/2 without TLS: remove the TLS options, or cleartext');
  if (o.cleartext === false && tlsOptions === null) throw new TypeError('HTTP/2 over TLS needs a key and certificate (options.tls or options.http2), or http2: { cleartext: true }');
  return {
    cleartext: tlsOptions === null,
    allowHTTP1: o.allowHTTP1 ?? true,
    settings: { ...(o.settings ?? {}), enableConnectProtocol: true },
    tls: tlsOptions,
  };
}

// ───────────────────────────── server ─────────────────────────────

/** @internal The parts of a {@link WebSocketServer} this module uses (server.ts marks them internal). */
interface ServerInternals<Data = unknown, Principal = unknown> {
  readonly options: ServerOptions<Data, Principal>;
  readonly clients: Set<WebSocketConnection<Data, Principal>>;
  readonly heartbeat: Heartbeat<Data, Principal> | null;
  closing: boolean;
  readonly deflate: { options: Required<DeflateOptions>; limiter: import('../deflate/codec.js').Limiter } | null;
  readonly internals: import('./connection.js').ConnectionInternals;
  beginHandshake(socket: Duplex): void;
  admission(request: Upgrade): HttpRefusal | null;
  negotiate(request: Upgrade): Negotiated | (HttpRefusal & { cause?: Error });
  admit(connection: WebSocketConnection<Data, Principal>, principal: Principal | undefined): void;
  endHandshake(socket: Duplex): void;
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void;
  emit(event: 'rejected', status: number, message: string, remoteAddress: string | undefined): boolean;
  emit(event: 'connection', connection: WebSocketConnection<Data, Principal>, request: IncomingUpgrade): boolean;
}

/** Marks a stream that carries a WebSocket: read by `WebSocketConnection.transport`. */
const kTransport = Symbol.for('wsengine.transport');
/** The WebSockets of a session, for its GOAWAY. */
const kSockets = Symbol('wsengine.h2.connections');
/** The peer's addresses, read once per session. */
const kPeer = Symbol('wsengine.h2.peer');

/** @internal */
export type TrackedSession = http2.Http2Session & { [kSockets]?: Set<WebSocketConnection<any, any>>; [kPeer]?: PeerFacts };

interface PeerFacts {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly remoteFamily: string | undefined;
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
}

const NO_PEER: PeerFacts = Object.freeze({ remoteAddress: undefined, remotePort: undefined, remoteFamily: undefined, localAddress: undefined, localPort: undefined });

/** The session's socket facts, read once (node's `session.socket` throws once the session is destroyed). */
/** @internal Shared with http2-client.ts. */
export function peerOf(session: TrackedSession | undefined): PeerFacts {
  if (session === undefined || session.destroyed) return NO_PEER;
  let facts = session[kPeer];
  if (facts === undefined) {
    const s = session.socket as Partial<Socket>;
    facts = session[kPeer] = Object.freeze({
      remoteAddress: s.remoteAddress,
      remotePort: s.remotePort,
      remoteFamily: s.remoteFamily,
      localAddress: s.localAddress,
      localPort: s.localPort,
    });
  }
  return facts;
}

/** Whether a stream's request headers are an extended CONNECT for a WebSocket (RFC 8441 §4). */
export function isWebSocketConnect(headers: http2.IncomingHttpHeaders): boolean {
  return headers[':method'] === 'CONNECT' && headers[':protocol'] === 'websocket';
}

/** Follows a session's WebSockets: a GOAWAY from the peer closes them with 1001. */
/** @internal Shared with http2-client.ts. */
export function track(session: TrackedSession | undefined, connection: WebSocketConnection<any, any>): void {
  if (session === undefined) return;
  let set = session[kSockets];
  if (set === undefined) {
    set = session[kSockets] = new Set();
    session.on('goaway', onGoaway);
  }
  set.add(connection);
  connection.once('close', () => set.delete(connection));
}

function onGoaway(this: TrackedSession): void {
  const set = this[kSockets];
  if (set === undefined) return;
  for (const c of set) if (c.readyState === WebSocketConnection.OPEN) c.close(1001, 'HTTP/2 connection going away');
}

function noop(): void {}

/** One request header as a string: node gives an array for a few names (`set-cookie`), a joined string for the rest. */
/** @internal Shared with http2-client.ts. */
export function one(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** The request's headers as the engine's head keeps them (lower-case name → values), pseudo-headers left out; `host` from `:authority`. */
function headerMapOf(headers: http2.IncomingHttpHeaders): Map<string, string[]> {
  const map = new Map<string, string[]>();
  const authority = headers[':authority'];
  if (typeof authority === 'string' && headers.host === undefined) map.set('host', [authority]);
  for (const name of Object.keys(headers)) {
    if (name.charCodeAt(0) === 58 /* : */) continue;
    const v = headers[name];
    if (v === undefined) continue;
    map.set(name, Array.isArray(v) ? [...v] : [String(v)]);
  }
  return map;
}

interface ConnectRequest {
  head: HttpHead;
  target: string;
  protocols: string[];
  extensions: ExtensionOffer[];
  origin: string | undefined;
}

function refusal(status: number, message: string, headers: Record<string, string> = {}): HttpRefusal {
  return { status, message, headers };
}

/**
 * Validates an extended CONNECT (RFC 8441 §4–5, RFC 6455 §4.2.1 for the WebSocket headers). Answers:
 * - 405 (`allow: CONNECT`) for another method: over HTTP/2 a WebSocket is opened with CONNECT only.
 * - 501 for a CONNECT whose `:protocol` is missing (a plain tunnel) or is not `websocket`. RFC 8441 names no status
 *   for a protocol the server does not speak; the request is well-formed (400 would call it malformed) and asks
 *   for something this server does not implement, which is what 501 says (RFC 9110 §15.6.2). RFC 9220 (the same
 *   mechanism over HTTP/3) adds nothing here.
 * - 400 for a CONNECT that ends its stream with the headers (END_STREAM: no tunnel is possible), for a missing
 *   `:path` or `:authority`, for a missing or other `sec-websocket-version` (with `sec-websocket-version: 13`;
 *   HTTP/1.1's 426 asks for an `Upgrade` that HTTP/2 forbids, RFC 9113 §8.2.2), and for a malformed subprotocol or
 *   extension header.
 * - 403 for an origin outside the allow-list.
 */
function checkConnect(headers: http2.IncomingHttpHeaders, endStream: boolean, origins: readonly string[] | undefined, negotiatesExtensions: boolean): ConnectRequest | HttpRefusal {
  if (headers[':method'] !== 'CONNECT') return refusal(405, 'WebSockets over HTTP/2 are opened with an extended CONNECT (RFC 8441)', { allow: 'CONNECT' });
  if (headers[':protocol'] !== 'websocket') return refusal(501, headers[':protocol'] === undefined ? 'CONNECT tunnels are not served here' : 'only the websocket protocol is served here');
  if (endStream) return refusal(400, 'a WebSocket CONNECT must leave its stream open (no END_STREAM)');
  const path = headers[':path'];
  const authority = headers[':authority'];
  if (typeof path !== 'string' || path === '' || typeof authority !== 'string' || authority === '') return refusal(400, ':path and :authority are required');
  const version = one(headers['sec-websocket-version']);
  if (version !== '13') return refusal(400, 'sec-websocket-version 13 is required', { 'sec-websocket-version': '13' });
  const origin = one(headers.origin);
  if (origins !== undefined) {
    const o = origin?.toLowerCase();
    if (o === undefined || o === 'null' || !origins.some((allowed) => allowed.toLowerCase() === o)) return refusal(403, 'origin not allowed');
  }
  let protocols: string[] = [];
  const protocolHeader = one(headers['sec-websocket-protocol']);
  if (protocolHeader !== undefined && protocolHeader.trim() !== '') {
    const parsed = parseProtocols(protocolHeader);
    if (parsed === null) return refusal(400, 'malformed sec-websocket-protocol');
    protocols = parsed;
  }
  let extensions: ExtensionOffer[] = [];
  const extensionHeader = one(headers['sec-websocket-extensions']);
  if (extensionHeader !== undefined) {
    const parsed = parseExtensions(extensionHeader);
    if (parsed === null && negotiatesExtensions) return refusal(400, 'malformed sec-websocket-extensions');
    extensions = parsed ?? [];
  }
  const head: HttpHead = { method: 'CONNECT', target: path, version: 'HTTP/2', status: 0, statusText: '', headers: headerMapOf(headers) };
  return { head, target: path, protocols, extensions, origin };
}

/** Response headers with lower-case names, as HTTP/2 requires (RFC 9113 §8.2.1). */
function lowerHeaders(headers: Record<string, string> | undefined, into: http2.OutgoingHttpHeaders): http2.OutgoingHttpHeaders {
  if (headers !== undefined) for (const name of Object.keys(headers)) into[name.toLowerCase()] = headers[name];
  return into;
}

/** Answers a refused CONNECT: the status, a text body, END_STREAM; then RST_STREAM NO_ERROR if the client keeps its side open. */
function refuseStream(server: ServerInternals<any, any>, stream: http2.ServerHttp2Stream, r: HttpRefusal, cause?: Error): void {
  server.emit('rejected', r.status, cause ? `${r.message}: ${cause.message}` : r.message, peerOf(stream.session as TrackedSession | undefined).remoteAddress);
  server.endHandshake(stream);
  if (stream.destroyed || stream.closed) return;
  stream.off('data', onEarlyData);
  if (!stream.headersSent) {
    // Headers HTTP/2 refuses (connection-specific ones, say): the status alone; a stream that cannot answer at all
    // (its session going away meanwhile): reset.
    if (!respondSafely(stream, lowerHeaders(r.headers, { ':status': r.status, 'content-type': 'text/plain; charset=utf-8' })) &&
      !respondSafely(stream, { ':status': r.status, 'content-type': 'text/plain; charset=utf-8' })) {
      stream.destroy();
      return;
    }
  }
  stream.end(r.message);
  // RFC 9113 §8.1: once the response is complete, the request's remainder may be refused with NO_ERROR.
  const timer = setTimeout(() => {
    if (!stream.closed) stream.close(NGHTTP2_NO_ERROR);
  }, 1000);
  timer.unref();
  stream.once('close', () => clearTimeout(timer));
}

/** `stream.respond`, false instead of a throw (invalid headers, or a stream or session closed meanwhile). */
function respondSafely(stream: http2.ServerHttp2Stream, headers: http2.OutgoingHttpHeaders): boolean {
  try {
    stream.respond(headers);
    return true;
  } catch {
    return false;
  }
}

/** DATA before the 200: the client sent its WebSocket frames early, a protocol error for the stream. */
function onEarlyData(this: http2.ServerHttp2Stream): void {
  this.off('data', onEarlyData);
  if (!this.closed) this.close(NGHTTP2_PROTOCOL_ERROR);
}

/**
 * @internal {@link WebSocketServer.handleStream}: the opening handshake of a WebSocket over an HTTP/2 stream, in the
 * order of the HTTP/1.1 one (validation, path 404, origin 403, connection limit 503, `authenticate`, subprotocol,
 * then permessage-deflate and the 200), within `handshakeTimeout`.
 */
export function acceptStream<Data, Principal>(wss: WebSocketServer<Data, Principal>, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
  if (typeof stream !== 'object' || stream === null || typeof (stream as Partial<http2.ServerHttp2Stream>).respond !== 'function') {
    throw new TypeError('handleStream(stream, headers) takes a node:http2 server stream (the `stream` event of an Http2Server)');
  }
  if (typeof headers !== 'object' || headers === null) throw new TypeError('handleStream(stream, headers) takes the request headers of the stream event');
  const server = wss as unknown as ServerInternals<Data, Principal>;
  if (stream.destroyed || stream.closed) return;
  stream.on('error', noop); // a reset during the handshake is not an application error
  const options = server.options;
  if (server.closing) return refuseStream(server, stream, refusal(503, 'server shutting down'));
  server.beginHandshake(stream);
  const checked = checkConnect(headers, stream.endAfterHeaders, options.origins, server.deflate !== null);
  if ('status' in checked) return refuseStream(server, stream, checked);
  // RFC 8441 §5: the WebSocket starts after the 200; DATA before it is a protocol error for the stream.
  if (stream.readableLength > 0) return onEarlyData.call(stream);
  stream.on('data', onEarlyData);
  const session = stream.session as TrackedSession | undefined;
  const request = new Upgrade(
    { head: checked.head, target: checked.target, key: '', protocols: checked.protocols, extensions: checked.extensions, origin: checked.origin },
    peerOf(session) as unknown as Duplex,
    session?.encrypted === true,
  );
  const refused = server.admission(request);
  if (refused !== null) return refuseStream(server, stream, refused);
  if (!options.authenticate) return completeStream(server, stream, request, undefined, undefined);
  let verdict: ReturnType<NonNullable<ServerOptions<Data, Principal>['authenticate']>>;
  try {
    verdict = options.authenticate(request);
  } catch (error) {
    return refuseStream(server, stream, AUTH_FAILED, error as Error);
  }
  const decide = (v: AuthAcceptance<Principal> | AuthRejection | false): void => {
    if (stream.destroyed || stream.closed) return server.endHandshake(stream);
    const rejected = verdictRefusal(v);
    if (rejected !== null) return refuseStream(server, stream, rejected);
    const a = v as AuthAcceptance<Principal>;
    completeStream(server, stream, request, a.principal, a.headers);
  };
  if (typeof (verdict as PromiseLike<unknown>)?.then !== 'function') return decide(verdict as AuthAcceptance<Principal> | AuthRejection | false);
  (verdict as PromiseLike<AuthAcceptance<Principal> | AuthRejection | false>).then(decide, (error: unknown) =>
    refuseStream(server, stream, AUTH_FAILED, error as Error),
  );
}

/** Subprotocol, the last checks, permessage-deflate, the 200 and the connection. */
function completeStream<Data, Principal>(
  server: ServerInternals<Data, Principal>,
  stream: http2.ServerHttp2Stream,
  request: Upgrade,
  principal: Principal | undefined,
  extraHeaders: Record<string, string> | undefined,
): void {
  const agreed = server.negotiate(request);
  if ('status' in agreed) return refuseStream(server, stream, agreed, agreed.cause);
  const { protocol, codec, extensionHeader } = agreed;
  const response: http2.OutgoingHttpHeaders = lowerHeaders(extraHeaders, {});
  response[':status'] = 200;
  if (protocol) response['sec-websocket-protocol'] = protocol;
  if (extensionHeader) response['sec-websocket-extensions'] = extensionHeader;
  try {
    stream.respond(response);
  } catch (error) {
    return refuseStream(server, stream, refusal(500, 'invalid response headers'), error as Error);
  }
  server.endHandshake(stream);
  stream.off('data', onEarlyData);
  stream.off('error', noop);
  markStream(stream, peerOf(stream.session as TrackedSession | undefined).remoteAddress);
  const connection = new WebSocketConnection<Data, Principal>(
    stream,
    'server',
    connectionOptions(server.options, protocol, codec, extensionHeader, server.deflate?.options.threshold, false),
    server.internals,
  );
  server.admit(connection, principal);
  track(stream.session as TrackedSession | undefined, connection);
  server.emit('connection', connection, request);
}

/**
 * Marks a stream as a WebSocket's byte pipe: `transport` reads `'h2'`, `remoteAddress` the session's peer. A reset
 * from the peer while our side is open (`aborted`) destroys the stream at once: with NO_ERROR, node would otherwise
 * wait for what is buffered to be read before `close`, which a paused WebSocket never does.
 */
/** @internal Shared with http2-client.ts. */
export function markStream(stream: http2.Http2Stream, remoteAddress: string | undefined): void {
  Object.defineProperty(stream, kTransport, { value: 'h2' });
  Object.defineProperty(stream, 'remoteAddress', { value: remoteAddress, configurable: true });
  stream.once('aborted', onAborted);
}

function onAborted(this: http2.Http2Stream): void {
  // After node has finished closing the stream (destroying it from inside its 'aborted' event loses 'close').
  setImmediate(destroyStream, this);
}

function destroyStream(stream: http2.Http2Stream): void {
  if (!stream.destroyed) stream.destroy();
}

type EmitFn = (event: string | symbol, ...args: any[]) => boolean;
type AnyHttp2Server = http2.Http2Server | http2.Http2SecureServer;

/** Whether a node:http request is a WebSocket upgrade (`Upgrade: websocket`). */
function isWebSocketUpgrade(request: IncomingMessage): boolean {
  const upgrade = request.headers.upgrade;
  return typeof upgrade === 'string' && upgrade.split(',').some((t) => t.trim().toLowerCase() === 'websocket');
}

/**
 * @internal {@link WebSocketServer.attachHttp2}. WebSocket CONNECT streams (and, with `allowHTTP1`, HTTP/1.1
 * WebSocket upgrades) are taken before the server emits them: they reach neither its `stream`/`request` listeners
 * nor its `upgrade` listeners, so an application's request handler never sees (and answers twice) a WebSocket.
 * Everything else is emitted as before.
 */
export function attachHttp2<Data, Principal>(wss: WebSocketServer<Data, Principal>, h2server: AnyHttp2Server): () => void {
  if (typeof h2server !== 'object' || h2server === null || typeof (h2server as { updateSettings?: unknown }).updateSettings !== 'function') {
    throw new TypeError('attachHttp2 takes a server made by http2.createServer or http2.createSecureServer');
  }
  const server = wss as unknown as ServerInternals<Data, Principal>;
  h2server.updateSettings({ enableConnectProtocol: true });
  const target = h2server as unknown as { emit: EmitFn };
  const own = Object.hasOwn(target, 'emit');
  const original = target.emit;
  let attached = true;
  const emit: EmitFn = function (this: unknown, event, ...args) {
    if (attached) {
      if (event === 'stream' && isWebSocketConnect(args[1] as http2.IncomingHttpHeaders)) {
        acceptStream(wss, args[0] as http2.ServerHttp2Stream, args[1] as http2.IncomingHttpHeaders);
        return true;
      }
      if (event === 'upgrade') {
        if (isWebSocketUpgrade(args[0] as IncomingMessage)) {
          server.handleUpgrade(args[0] as IncomingMessage, args[1] as Duplex, args[2] as Buffer);
          return true;
        }
        // Another protocol, and no `upgrade` listener but ours: node would have given it to `request` without
        // ours, but has now handed over the socket: refuse it rather than leave it hanging.
        if (h2server.listenerCount('upgrade') === 1) {
          (args[1] as Duplex).end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
          return true;
        }
      }
    }
    return original.call(this, event, ...args);
  };
  target.emit = emit;
  // node:http emits `upgrade` (for an HTTP/1.1 client of an allowHTTP1 server) only when it has a listener; without
  // one, an upgrade request is emitted as a plain `request` (measured on Node 20).
  h2server.on('upgrade', noop);
  return () => {
    if (!attached) return;
    attached = false;
    h2server.off('upgrade', noop);
    if (target.emit === emit) {
      if (own) target.emit = original;
      else delete (target as { emit?: EmitFn }).emit;
    }
    h2server.updateSettings({ enableConnectProtocol: false });
  };
}

/**
 * @internal The own HTTP/2 server of `createServer({ http2 })`: a `node:http2` server that never listens itself.
 * The engine's net/tls server accepts every connection and hands over those that speak HTTP/2 (ALPN `h2`, or the
 * h2c preface); HTTP/1.1 ones stay on the engine's own upgrade path.
 */
export class OwnHttp2 {
  readonly server: http2.Http2Server;
  readonly sessions = new Set<http2.ServerHttp2Session>();
  constructor(
    private readonly wss: WebSocketServer<any, any>,
    readonly config: ResolvedHttp2,
    private readonly fallback: (socket: Duplex, first: Buffer | undefined) => void,
  ) {
    const o = wss.options;
    // The head limits of the HTTP/1.1 path, as HTTP/2 counts them: header fields, and bytes of the header list.
    this.server = http2.createServer({
      settings: { ...(o.maxHeadSize !== undefined ? { maxHeaderListSize: o.maxHeadSize } : {}), ...config.settings },
      ...(o.maxHeaders !== undefined ? { maxHeaderListPairs: o.maxHeaders } : {}),
    });
    const idleLimit = o.handshakeTimeout ?? 10_000;
    this.server.on('session', (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      // A session that opens no stream within the handshake timeout is dropped (the HTTP/1.1 path drops a
      // connection whose upgrade does not come in that time): an idle connection costs a session otherwise.
      const timer = setTimeout(() => session.destroy(), idleLimit);
      timer.unref();
      session.once('stream', () => clearTimeout(timer));
      session.once('close', () => {
        clearTimeout(timer);
        this.sessions.delete(session);
      });
    });
    this.server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      if (headers[':method'] === 'CONNECT') acceptStream(this.wss, stream, headers);
      else void this.answer(stream, headers);
    });
  }

  /** TLS ALPN result (or the h2c preface) decides: HTTP/2 here, HTTP/1.1 to the engine. Returns true when taken. */
  route(socket: Duplex): boolean {
    if (!this.config.cleartext) {
      const alpn = (socket as TLSSocket).alpnProtocol;
      if (alpn === 'h2') {
        this.server.emit('connection', socket);
        return true;
      }
      if (!this.config.allowHTTP1) {
        socket.destroy();
        return true;
      }
      return false;
    }
    // h2c: the first bytes tell. An HTTP/1.1 request never starts with "PRI " (RFC 9113 §3.4 reserves it).
    const server = this.wss as unknown as ServerInternals;
    server.beginHandshake(socket);
    let seen: Buffer = Buffer.alloc(0);
    const sniff = (chunk: Buffer): void => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PRI.length);
      if (!seen.subarray(0, n).equals(PRI.subarray(0, n))) {
        socket.off('data', sniff);
        server.endHandshake(socket);
        if (!this.config.allowHTTP1) return void socket.destroy();
        return this.fallback(socket, seen);
      }
      if (seen.length < PRI.length) return;
      socket.off('data', sniff);
      server.endHandshake(socket);
      socket.pause();
      socket.unshift(seen);
      this.server.emit('connection', socket);
    };
    socket.on('data', sniff);
    return true;
  }

  /** A request that is not a WebSocket: the `httpHandler`, or 426. */
  private async answer(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    stream.on('error', noop);
    const handler = this.wss.options.httpHandler;
    let answer: HttpAnswer;
    if (!handler) {
      answer = { status: 426, headers: { 'sec-websocket-version': '13' }, body: 'this endpoint speaks WebSocket' };
    } else {
      const session = stream.session as TrackedSession | undefined;
      const path = typeof headers[':path'] === 'string' ? headers[':path'] : '/';
      const head: HttpHead = { method: String(headers[':method']), target: path, version: 'HTTP/2', status: 0, statusText: '', headers: headerMapOf(headers) };
      const request = {
        ...new Upgrade({ head, target: path, key: '', protocols: [], extensions: [], origin: one(headers.origin) }, peerOf(session) as unknown as Duplex, session?.encrypted === true).toJSON(),
        method: head.method,
      };
      try {
        answer = await handler(request);
      } catch {
        answer = { status: 500, body: 'internal error' };
      }
    }
    if (stream.destroyed || stream.closed) return;
    const body = answer.body ?? '';
    const out: http2.OutgoingHttpHeaders = { ':status': answer.status };
    if (!Object.keys(answer.headers ?? {}).some((k) => k.toLowerCase() === 'content-type')) out['content-type'] = 'text/plain; charset=utf-8';
    if (respondSafely(stream, lowerHeaders(answer.headers, out))) stream.end(body);
    else if (respondSafely(stream, { ':status': 500, 'content-type': 'text/plain; charset=utf-8' })) stream.end('invalid response headers');
    else stream.destroy();
  }

  /** Shutdown: GOAWAY to every session (they close once their streams are done). */
  close(): void {
    for (const session of this.sessions) if (!session.closed) session.close();
  }

  /** Sessions still open after the WebSockets closed (by the shutdown timeout): destroyed. */
  destroy(): void {
    for (const session of this.sessions) session.destroy();
  }
}

const PRI = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
