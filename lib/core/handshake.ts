/**
 * The opening handshake (RFC 6455 §4), sans-I/O: validating an upgrade request and building the answer on the
 * server; building the request and checking the 101 response on the client.
 *
 * Refusals are values, not exceptions: {@link checkUpgradeRequest} returns either the accepted parameters or an
 * {@link HttpRefusal} (status, headers, message) that the transport writes as the HTTP response.
 *
 * @module
 */
import * as crypto from 'node:crypto';
import { hasToken, type HttpHead, listHeader, singleHeader } from './http1.js';
import { type ExtensionOffer, parseExtensions, parseProtocols } from './tokens.js';

/** RFC 6455 §1.3: the GUID appended to the key. */
export const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

type OneShotHash = (algorithm: string, data: string, outputEncoding: 'base64') => string;

/**
 * @internal SHA-1 of a string, base64, with a `Hash` object (`createHash`): the path for Node versions without
 * `crypto.hash`.
 */
export function sha1Base64Streaming(data: string): string {
  return crypto.createHash('sha1').update(data).digest('base64');
}

/**
 * @internal SHA-1 of a string, base64. `crypto.hash` (public since Node 20.12 and 21.7) hashes in one native call
 * with no `Hash` object (measured on Node 20.20: ~0.6 µs against ~2.4 µs for `createHash().update().digest()`,
 * most of the difference being the objects a handshake no longer leaves to the garbage collector); older Node 20
 * releases lack it and take {@link sha1Base64Streaming}.
 */
export const sha1Base64: (data: string) => string =
  typeof (crypto as { hash?: unknown }).hash === 'function'
    ? (data) => ((crypto as unknown as { hash: OneShotHash }).hash)('sha1', data, 'base64')
    : sha1Base64Streaming;

/** `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2): base64 of the SHA-1 of key + GUID. */
export function acceptKey(key: string): string {
  return sha1Base64(key + WEBSOCKET_GUID);
}

/** Characters of an accept value (base64 of a 20-byte SHA-1). */
const ACCEPT_LENGTH = 28;

/** A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1). */
export function generateKey(): string {
  return crypto.randomBytes(16).toString('base64');
}

/** An HTTP answer that refuses an upgrade. */
export interface HttpRefusal {
  status: number;
  /** Extra response headers (for example `Sec-WebSocket-Version: 13` with a 426). */
  headers: Record<string, string>;
  /** Human-readable reason, sent as the body. */
  message: string;
}

/** What a valid upgrade request asks for. */
export interface UpgradeRequest {
  /** The request head. */
  head: HttpHead;
  /** Path and query of the request target (`/chat?room=1`). */
  target: string;
  /** `Sec-WebSocket-Key`. */
  key: string;
  /** Offered subprotocols, in the client's order (empty when none). */
  protocols: string[];
  /** Offered extensions, in the client's order. */
  extensions: ExtensionOffer[];
  /** `Origin`, when sent. */
  origin: string | undefined;
}

/** Options of {@link checkUpgradeRequest}. */
export interface UpgradeCheckOptions {
  /**
   * Origins allowed to connect (exact `scheme://host[:port]` strings, compared case-insensitively). When set, a
   * request whose `Origin` is missing, `null` or not listed is refused with 403. Default: undefined (any origin,
   * including none).
   */
  origins?: readonly string[];
  /**
   * Whether the server negotiates extensions. When false (a server with compression off), a malformed or oversized
   * `Sec-WebSocket-Extensions` header (over 32 offers, say) is ignored rather than refused with 400: the server
   * accepts no extension anyway (RFC 6455 §9.1). Offers that parse are still reported. Default: true.
   */
  negotiatesExtensions?: boolean;
}

function refuse(status: number, message: string, headers: Record<string, string> = {}): HttpRefusal {
  return { status, message, headers };
}

/** Whether `key` is base64 of exactly 16 bytes (RFC 6455 §4.1): 22 base64 characters then `==`. */
export function isValidKey(key: string): boolean {
  if (key.length !== 24 || key[22] !== '=' || key[23] !== '=') return false;
  for (let i = 0; i < 22; i++) {
    const c = key.charCodeAt(i);
    const ok = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 47;
    if (!ok) return false;
  }
  // Non-canonical trailing bits are tolerated: the key still decodes to 16 bytes.
  return true;
}

/**
 * Validates a WebSocket upgrade request (RFC 6455 §4.2.1). Answers: 405 for a method other than GET, 400 for a
 * missing, duplicated or malformed `Host`, `Upgrade`, `Connection`, `Sec-WebSocket-Key` or protocol/extension header,
 * 426 (with `Sec-WebSocket-Version: 13`) for another version, 403 for an origin outside the allow-list.
 */
export function checkUpgradeRequest(head: HttpHead, options: UpgradeCheckOptions = {}): UpgradeRequest | HttpRefusal {
  if (head.method !== 'GET') return refuse(405, 'WebSocket upgrades use GET', { Allow: 'GET' });
  if (head.version !== 'HTTP/1.1') return refuse(400, 'WebSocket upgrades need HTTP/1.1');
  const host = singleHeader(head, 'host');
  if (host === undefined || host === null || host === '') return refuse(400, 'exactly one Host header is required');
  const upgrade = singleHeader(head, 'upgrade');
  if (upgrade === null) return refuse(400, 'duplicated Upgrade header');
  if (!hasToken(upgrade, 'websocket')) return refuse(400, 'Upgrade: websocket is required');
  const connection = listHeader(head, 'connection');
  if (!hasToken(connection, 'upgrade')) return refuse(400, 'Connection: Upgrade is required');
  const version = singleHeader(head, 'sec-websocket-version');
  if (version === null) return refuse(400, 'duplicated Sec-WebSocket-Version header');
  if (version !== '13') {
    return refuse(version === undefined ? 400 : 426, 'Sec-WebSocket-Version 13 is required', { 'Sec-WebSocket-Version': '13' });
  }
  const key = singleHeader(head, 'sec-websocket-key');
  if (key === undefined || key === null || !isValidKey(key)) return refuse(400, 'Sec-WebSocket-Key must be base64 of 16 bytes, sent once');
  const origin = singleHeader(head, 'origin') ?? singleHeader(head, 'sec-websocket-origin');
  if (origin === null) return refuse(400, 'duplicated Origin header');
  if (options.origins !== undefined) {
    const o = origin?.toLowerCase();
    if (o === undefined || o === 'null' || !options.origins.some((allowed) => allowed.toLowerCase() === o)) {
      return refuse(403, 'origin not allowed');
    }
  }
  let protocols: string[] = [];
  const protocolHeader = listHeader(head, 'sec-websocket-protocol');
  if (protocolHeader !== undefined && protocolHeader.trim() !== '') {
    const parsed = parseProtocols(protocolHeader);
    if (parsed === null) return refuse(400, 'malformed Sec-WebSocket-Protocol');
    protocols = parsed;
  }
  let extensions: ExtensionOffer[] = [];
  const extensionHeader = listHeader(head, 'sec-websocket-extensions');
  if (extensionHeader !== undefined) {
    const parsed = parseExtensions(extensionHeader);
    if (parsed === null && options.negotiatesExtensions !== false) return refuse(400, 'malformed Sec-WebSocket-Extensions');
    extensions = parsed ?? [];
  }
  return { head, target: head.target, key, protocols, extensions, origin };
}

/** Whether a {@link checkUpgradeRequest} result is a refusal. */
export function isRefusal(x: UpgradeRequest | HttpRefusal): x is HttpRefusal {
  return (x as HttpRefusal).status !== undefined;
}

const STATUS_TEXT: Record<number, string> = {
  101: 'Switching Protocols',
  200: 'OK',
  204: 'No Content',
  301: 'Moved Permanently',
  302: 'Found',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** The reason phrase for a status code (`'Unknown'` when not known). */
export function statusText(status: number): string {
  return STATUS_TEXT[status] ?? 'Unknown';
}

function headerLines(headers: Record<string, string | readonly string[]>): string {
  let out = '';
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    for (const v of typeof value === 'string' ? [value] : value) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(v)) throw new TypeError(`header ${JSON.stringify(name)} contains CR or LF`);
      out += `${name}: ${v}\r\n`;
    }
  }
  return out;
}

/**
 * The 101 response (RFC 6455 §4.2.2). `protocol` must be one the client offered; `extensions` is the negotiated
 * `Sec-WebSocket-Extensions` value.
 */
export function acceptResponse(key: string, protocol?: string, extensions?: string, headers: Record<string, string | readonly string[]> = {}): string {
  let out = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n`;
  if (protocol) out += `Sec-WebSocket-Protocol: ${protocol}\r\n`;
  if (extensions) out += `Sec-WebSocket-Extensions: ${extensions}\r\n`;
  return out + headerLines(headers) + '\r\n';
}

const PLAIN_ACCEPT_HEAD = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ';
/** The 101 with no subprotocol, extension or extra header, its accept value left blank. */
const PLAIN_ACCEPT = Buffer.from(`${PLAIN_ACCEPT_HEAD}${' '.repeat(ACCEPT_LENGTH)}\r\n\r\n`, 'latin1');

/**
 * @internal {@link acceptResponse} with no subprotocol, extension or extra header, as bytes: a copy of a template
 * with the accept value written into it (no string built, none encoded by the socket). `key` must have passed
 * {@link isValidKey}.
 */
export function plainAcceptResponse(key: string): Buffer {
  const out = Buffer.allocUnsafe(PLAIN_ACCEPT.length);
  out.set(PLAIN_ACCEPT);
  out.write(acceptKey(key), PLAIN_ACCEPT_HEAD.length, ACCEPT_LENGTH, 'latin1');
  return out;
}

/**
 * A complete HTTP response with `Connection: close` and a body (text by default: a `Content-Type` in `headers`
 * replaces it).
 */
export function httpResponse(status: number, body: string | Uint8Array = statusText(status), headers: Record<string, string | readonly string[]> = {}): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  const hasType = Object.keys(headers).some((k) => k.toLowerCase() === 'content-type');
  const head =
    `HTTP/1.1 ${status} ${statusText(status)}\r\nConnection: close\r\n` +
    (hasType ? '' : 'Content-Type: text/plain; charset=utf-8\r\n') +
    `Content-Length: ${bytes.length}\r\n` +
    headerLines(headers) +
    '\r\n';
  return Buffer.concat([Buffer.from(head, 'latin1'), bytes]);
}

/** Options of {@link upgradeRequest}. */
export interface UpgradeRequestOptions {
  /** Subprotocols to offer, in preference order. */
  protocols?: readonly string[];
  /** `Sec-WebSocket-Extensions` value to offer. */
  extensions?: string;
  /** `Origin` header. */
  origin?: string;
  /** Extra headers (`Authorization`, `Cookie`, …). */
  headers?: Record<string, string | readonly string[]>;
}

/** The client's upgrade request head for `url` (ws:, wss:, http: or https:). */
export function upgradeRequest(url: URL, key: string, options: UpgradeRequestOptions = {}): string {
  const target = (url.pathname || '/') + url.search;
  const defaultPort = url.protocol === 'wss:' || url.protocol === 'https:' ? '443' : '80';
  const host = url.port && url.port !== defaultPort ? `${url.hostname}:${url.port}` : url.hostname;
  let out = `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`;
  if (options.protocols && options.protocols.length > 0) out += `Sec-WebSocket-Protocol: ${options.protocols.join(', ')}\r\n`;
  if (options.extensions) out += `Sec-WebSocket-Extensions: ${options.extensions}\r\n`;
  if (options.origin) out += `Origin: ${options.origin}\r\n`;
  return out + headerLines(options.headers ?? {}) + '\r\n';
}

/** What the server agreed to in its 101 response. */
export interface UpgradeResponse {
  /** The selected subprotocol, or '' when none. */
  protocol: string;
  /** The accepted extensions. */
  extensions: ExtensionOffer[];
  head: HttpHead;
}

/**
 * Checks the server's response (RFC 6455 §4.1, client side): status 101, `Upgrade: websocket`,
 * `Connection: Upgrade`, the right `Sec-WebSocket-Accept`, a subprotocol only if one was offered and it is one of
 * them, extensions only among those offered. Returns a message saying what is wrong, or the agreed parameters.
 */
export function checkUpgradeResponse(
  head: HttpHead,
  key: string,
  offeredProtocols: readonly string[],
  offeredExtensions: readonly string[],
): UpgradeResponse | string {
  if (head.status !== 101) return `server answered ${head.status} ${head.statusText} instead of 101`;
  if (!hasToken(singleHeader(head, 'upgrade'), 'websocket')) return 'response lacks Upgrade: websocket';
  if (!hasToken(listHeader(head, 'connection'), 'upgrade')) return 'response lacks Connection: Upgrade';
  if (singleHeader(head, 'sec-websocket-accept') !== acceptKey(key)) return 'Sec-WebSocket-Accept does not match the key';
  const protocol = singleHeader(head, 'sec-websocket-protocol');
  if (protocol === null) return 'more than one Sec-WebSocket-Protocol in the response';
  if (protocol !== undefined && !offeredProtocols.includes(protocol)) return `server chose subprotocol ${JSON.stringify(protocol)} that was not offered`;
  let extensions: ExtensionOffer[] = [];
  const ext = listHeader(head, 'sec-websocket-extensions');
  if (ext !== undefined) {
    const parsed = parseExtensions(ext);
    if (parsed === null) return 'malformed Sec-WebSocket-Extensions in the response';
    for (const e of parsed) if (!offeredExtensions.includes(e.name)) return `server accepted extension ${JSON.stringify(e.name)} that was not offered`;
    extensions = parsed;
  }
  return { protocol: protocol ?? '', extensions, head };
}
