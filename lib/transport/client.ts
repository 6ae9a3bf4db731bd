/**
 * The WebSocket client on `node:net` / `node:tls`: `connect(url)` resolves with an open {@link WebSocketConnection}.
 *
 * Redirects are not followed unless `followRedirects` is set; when they are, `Authorization`, `Cookie` and
 * `Proxy-Authorization` headers are dropped whenever a redirect changes origin or goes from wss to ws, so
 * credentials never leak to another host or onto an unencrypted connection.
 *
 * @module
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { checkUpgradeResponse, generateKey, upgradeRequest } from '../core/handshake.js';
import { HeadParser, type HeadLimits, singleHeader } from '../core/http1.js';
import { formatExtensions } from '../core/tokens.js';
import { type ConnectionOptions, WebSocketConnection } from './connection.js';
import { CONNECTION_OPTION_NAMES } from './options.js';
import { checkOptionNames, withTlsHints, WS_OPTION_HINTS } from '../core/options.js';
import { Heartbeat, type HeartbeatOptions } from './heartbeat.js';
import { DeflateCodec, Limiter } from '../deflate/codec.js';
import { acceptServerResponse, clientOffer, type DeflateOptions, type DeflateParams, resolveDeflateOptions } from '../deflate/negotiate.js';
import { PROTOCOL_DEFAULTS } from '../core/protocol.js';
import { attemptHttp2 } from './http2-client.js';

/** One limiter per options object, so all connections made with the same options share the zlib bound. */
const limiters = new WeakMap<object, Limiter>();

/** Defaults of {@link ClientOptions}. */
export const CLIENT_DEFAULTS = {
  /** 10 s for TCP, TLS and the HTTP upgrade together. */
  handshakeTimeout: 10_000,
  /** 5 redirects at most, when following them. */
  maxRedirects: 5,
} as const;

/** Options of {@link connect}. */
export interface ClientOptions extends ConnectionOptions, HeadLimits {
  /** Subprotocols to offer, in preference order. Default: none. */
  protocols?: string | readonly string[];
  /** Extra request headers (`Authorization`, `Cookie`, …). */
  headers?: Record<string, string | readonly string[]>;
  /** `Origin` header. Default: none (browsers always send one; servers with an allow-list require it). */
  origin?: string;
  /** Milliseconds for TCP connect, TLS and the upgrade response together. Default: 10,000. */
  handshakeTimeout?: number;
  /** Options for `tls.connect` on wss (ca, cert, key, rejectUnauthorized, servername, …). */
  tls?: TlsConnectionOptions;
  /** Follow 301/302/303/307/308 redirects. Default: false. */
  followRedirects?: boolean;
  /** Most redirects followed. Default: 5. */
  maxRedirects?: number;
  /** Aborts the handshake. */
  signal?: AbortSignal;
  /**
   * Pings from the client and dead-server detection (no answer within `timeout` terminates the connection, or
   * closes it with `closeCode`; see {@link HeartbeatOptions} for the hooks). Connections with the same plain timing
   * share two timers; connections made with the same options object share its heartbeat. Default: off.
   */
  heartbeat?: HeartbeatOptions | false;
  /**
   * Open the WebSocket as a stream of an HTTP/2 connection (RFC 8441) when the server offers it: one session per
   * origin (and `tls` options object) is shared by every WebSocket opened with this option, and closed 1 s after
   * its last WebSocket closed (an idle session never keeps the process alive). `wss:` negotiates HTTP/2 with ALPN;
   * `ws:` speaks h2c with prior knowledge. When the server does not offer it (ALPN picks HTTP/1.1, its SETTINGS lack
   * ENABLE_CONNECT_PROTOCOL, or it does not understand the h2c preface), the WebSocket is opened with an HTTP/1.1
   * upgrade instead, and that origin goes straight to HTTP/1.1 for the next 60 s. `conn.transport` tells which.
   * Default: false.
   */
  http2?: boolean;
}

/** The names of {@link ClientOptions} (the compiler keeps the list complete). */
const CLIENT_OPTION_NAMES: ReadonlySet<string> = new Set(
  Object.keys({
    ...CONNECTION_OPTION_NAMES,
    maxHeadSize: true,
    maxHeaders: true,
    protocols: true,
    headers: true,
    origin: true,
    handshakeTimeout: true,
    tls: true,
    followRedirects: true,
    maxRedirects: true,
    signal: true,
    heartbeat: true,
    http2: true,
  } as const satisfies Record<keyof ClientOptions, true>),
);

const CLIENT_OPTION_HINTS = withTlsHints({
  ...WS_OPTION_HINTS,
  host: 'give the host in the URL',
  port: 'give the port in the URL',
  path: 'give the path in the URL',
});

/**
 * @internal Throws a TypeError for an option name {@link connect} does not know (`what` names the caller in the
 * message), naming the equivalent where there is one.
 */
export function checkClientOptions(what: string, options: ClientOptions): void {
  if (typeof options !== 'object' || options === null) throw new TypeError(`${what} options must be an object`);
  checkOptionNames(what, options, CLIENT_OPTION_NAMES, CLIENT_OPTION_HINTS);
  if (options.http2 !== undefined && typeof options.http2 !== 'boolean') throw new TypeError(`${what}: options.http2 must be a boolean, got ${typeof options.http2}`);
}

/** Heartbeats shared by client connections: by timing when no hook is set, else by options object. */
const heartbeats = new Map<string, Heartbeat>();
const hookedHeartbeats = new WeakMap<HeartbeatOptions, Heartbeat>();

function heartbeatFor(options: HeartbeatOptions): Heartbeat {
  const shared = hookedHeartbeats.get(options);
  if (shared) return shared;
  const probe = new Heartbeat(options);
  const plain = Object.keys(options).every((k) => k === 'interval' || k === 'timeout' || (k === 'protocolPing' && options.protocolPing !== false));
  if (!plain) {
    hookedHeartbeats.set(options, probe);
    return probe;
  }
  const key = `${probe.interval}/${probe.timeout}`;
  let byTiming = heartbeats.get(key);
  if (!byTiming) heartbeats.set(key, (byTiming = probe));
  return byTiming;
}

/**
 * A handshake failure, with the HTTP status when the server answered one. When a system error caused it (nobody
 * listening, DNS, TLS, reset), `cause` is that error and `code` its code (`'ECONNREFUSED'`, `'ENOTFOUND'`, …), so
 * "nobody listening" can be told from "handshake refused" (`status` ≥ 400).
 */
export class HandshakeError extends Error {
  /** HTTP status of the refusal, or 0 when the failure came before or outside one. */
  readonly status: number;
  /** The system error's code when one caused the failure (`'ECONNREFUSED'`, `'ECONNRESET'`, `'ENOTFOUND'`, …), else undefined. */
  readonly code: string | undefined;
  constructor(message: string, status = 0, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HandshakeError';
    this.status = status;
    const code = (options?.cause as { code?: unknown } | undefined)?.code;
    this.code = typeof code === 'string' ? code : undefined;
  }
}

const CREDENTIAL_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization']);

/**
 * The request headers to send after a redirect from `from` to `to`: all of them within one origin, none of the
 * credentials (`Authorization`, `Cookie`, `Proxy-Authorization`) when the origin changes or wss becomes ws.
 */
export function redirectHeaders(from: URL, to: URL, headers: Record<string, string | readonly string[]>): Record<string, string | readonly string[]> {
  const secureOf = (u: URL): boolean => u.protocol === 'wss:' || u.protocol === 'https:';
  const sameOrigin = from.hostname === to.hostname && effectivePort(from) === effectivePort(to) && secureOf(from) === secureOf(to);
  if (sameOrigin) return headers;
  return Object.fromEntries(Object.entries(headers).filter(([k]) => !CREDENTIAL_HEADERS.has(k.toLowerCase())));
}

function effectivePort(u: URL): string {
  return u.port || (u.protocol === 'wss:' || u.protocol === 'https:' ? '443' : '80');
}

function normalizeUrl(input: string | URL): URL {
  let url: URL;
  try {
    url = new URL(String(input));
  } catch {
    throw new SyntaxError(`invalid WebSocket URL: ${String(input)}`);
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new SyntaxError(`WebSocket URLs use ws: or wss:, got ${url.protocol}`);
  if (url.hash) throw new SyntaxError('WebSocket URLs cannot have a fragment');
  return url;
}

function validateProtocols(protocols: string | readonly string[] | undefined): string[] {
  const list = protocols === undefined ? [] : typeof protocols === 'string' ? [protocols] : [...protocols];
  const seen = new Set<string>();
  for (const p of list) {
    if (typeof p !== 'string' || p.length === 0 || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(p)) {
      throw new SyntaxError(`invalid subprotocol ${JSON.stringify(p)}: subprotocols are HTTP tokens`);
    }
    if (seen.has(p)) throw new SyntaxError(`subprotocol ${JSON.stringify(p)} offered twice`);
    seen.add(p);
  }
  return list;
}

/**
 * Opens a WebSocket connection to a `ws://` or `wss://` URL (`http(s)://` is accepted as its ws equivalent).
 * Resolves once the server accepted the upgrade; rejects with a {@link HandshakeError} when it refused or the
 * handshake failed, with a SyntaxError for an invalid URL or subprotocol, and with a TypeError for an unknown option
 * name (ws's `maxPayload`, say: the message names the equivalent, `maxMessageSize`), before any socket opens.
 */
export async function connect<Data = unknown>(url: string | URL, options: ClientOptions = {}): Promise<WebSocketConnection<Data>> {
  checkClientOptions('connect', options);
  let target = normalizeUrl(url);
  const protocols = validateProtocols(options.protocols);
  // Options are checked before any socket opens: a TypeError/RangeError, not a failure inside a socket callback.
  const deflate = options.perMessageDeflate ? resolveDeflateOptions(options.perMessageDeflate) : null;
  const heartbeat = options.heartbeat ? heartbeatFor(options.heartbeat) : null;
  let headers = { ...(options.headers ?? {}) };
  const maxRedirects = options.maxRedirects ?? CLIENT_DEFAULTS.maxRedirects;
  for (let redirects = 0; ; redirects++) {
    const result =
      (options.http2 === true ? await attemptHttp2(target, protocols, headers, options, deflate, heartbeat, (params) => codecFor(options, deflate!, params)) : null) ??
      (await attempt(target, protocols, headers, options, deflate, heartbeat));
    if (result instanceof WebSocketConnection) return result as WebSocketConnection<Data>;
    // A redirect.
    if (!options.followRedirects) throw new HandshakeError(`server redirected (${result.status}) to ${result.location}; set followRedirects to follow`, result.status);
    if (redirects >= maxRedirects) throw new HandshakeError(`more than ${maxRedirects} redirects`, result.status);
    const next = normalizeUrl(new URL(result.location, target.href.replace(/^ws/, 'http')));
    headers = redirectHeaders(target, next, headers);
    target = next;
  }
}

interface Redirect {
  status: number;
  location: string;
}

function attempt(
  url: URL,
  protocols: string[],
  headers: ClientOptions['headers'],
  options: ClientOptions,
  deflate: Required<DeflateOptions> | null,
  heartbeat: Heartbeat | null,
): Promise<WebSocketConnection | Redirect> {
  return new Promise((resolve, reject) => {
    const secure = url.protocol === 'wss:';
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = Number(url.port) || (secure ? 443 : 80);
    const socket: Socket = secure
      ? tlsConnect({ servername: isIp(host) ? undefined : host, ALPNProtocols: ['http/1.1'], ...options.tls, host, port })
      : netConnect({ host, port });
    const key = generateKey();
    const parser = new HeadParser('response', options);
    let settled = false;
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      cleanup();
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(() => fail(new HandshakeError('opening handshake timed out')), options.handshakeTimeout ?? CLIENT_DEFAULTS.handshakeTimeout);
    const onAbort = (): void => fail(new HandshakeError('opening handshake aborted'));
    if (options.signal) {
      if (options.signal.aborted) return onAbort();
      options.signal.addEventListener('abort', onAbort, { once: true });
    }
    const cleanup = (): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const onError = (error: Error): void => fail(new HandshakeError(`connection failed: ${error.message}`, 0, { cause: error }));
    const onClose = (): void => fail(new HandshakeError('connection closed during the opening handshake'));
    const onData = (chunk: Buffer): void => {
      let head;
      try {
        head = parser.push(chunk);
      } catch (error) {
        return fail(new HandshakeError(`invalid upgrade response: ${(error as Error).message}`));
      }
      if (head === null) return;
      if (head.status >= 300 && head.status < 400 && head.status !== 304) {
        const location = singleHeader(head, 'location');
        if (!location) return fail(new HandshakeError(`redirect (${head.status}) without a Location`, head.status));
        settled = true;
        cleanup();
        socket.destroy();
        return resolve({ status: head.status, location });
      }
      const checked = checkUpgradeResponse(head, key, protocols, deflate ? ['permessage-deflate'] : []);
      if (typeof checked === 'string') return fail(new HandshakeError(checked, head.status === 101 ? 0 : head.status));
      let codec: DeflateCodec | null = null;
      if (deflate !== null && checked.extensions.length > 0) {
        if (checked.extensions.length > 1) return fail(new HandshakeError('server accepted permessage-deflate more than once'));
        const params = acceptServerResponse(checked.extensions[0], deflate);
        if (typeof params === 'string') return fail(new HandshakeError(params));
        codec = codecFor(options, deflate, params);
      }
      settled = true;
      cleanup();
      socket.pause();
      const connection = new WebSocketConnection(socket, 'client', {
        ...options,
        protocol: checked.protocol,
        extensions: formatExtensions(checked.extensions),
        codec,
        threshold: deflate?.threshold,
      }, heartbeat ? { onClosed: (c) => heartbeat.delete(c) } : {});
      heartbeat?.add(connection);
      resolve(connection);
      // Frames that came with the response wait until the caller's `await` has run and attached its listeners.
      const rest = parser.rest;
      setImmediate(() => {
        if (rest.length > 0) connection.receive(Buffer.from(rest));
        connection.updateFlow();
      });
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      try {
        socket.write(upgradeRequest(url, key, { protocols, origin: options.origin, headers, extensions: deflate ? clientOffer(deflate) : undefined }));
      } catch (error) {
        fail(error as Error);
      }
    });
  });
}

/** A client codec for the agreed parameters, sharing the zlib bound of connections made with the same options. */
function codecFor(options: ClientOptions, deflate: Required<DeflateOptions>, params: DeflateParams): DeflateCodec {
  const limiterKey = typeof options.perMessageDeflate === 'object' ? options.perMessageDeflate : options;
  let limiter = limiters.get(limiterKey);
  if (!limiter) limiters.set(limiterKey, (limiter = new Limiter(deflate.concurrency)));
  return new DeflateCodec('client', params, deflate, limiter, options.maxMessageSize ?? PROTOCOL_DEFAULTS.maxMessageSize);
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
