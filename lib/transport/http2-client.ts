/**
 * The client half of WebSockets over HTTP/2 (RFC 8441; the server half and how a stream maps onto a WebSocket are in
 * http2.ts): `connect(url, { http2: true })` shares one `node:http2` session per origin (and TLS options object)
 * between WebSockets, opens each with an extended CONNECT once the server's SETTINGS advertise
 * SETTINGS_ENABLE_CONNECT_PROTOCOL, and falls back to an HTTP/1.1 upgrade when they do not.
 *
 * @module
 */
import * as http2 from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { type ExtensionOffer, formatExtensions, parseExtensions } from '../core/tokens.js';
import { DeflateCodec } from '../deflate/codec.js';
import { acceptServerResponse, clientOffer, type DeflateOptions, type DeflateParams } from '../deflate/negotiate.js';
import { WebSocketConnection } from './connection.js';
import type { Heartbeat } from './heartbeat.js';
import { type ClientOptions, HandshakeError } from './client.js';
import { HTTP2_DEFAULTS, markStream, one, peerOf, track, type TrackedSession } from './http2.js';

const { NGHTTP2_REFUSED_STREAM } = http2.constants;


/** A client session shared by the WebSockets to one origin (with the same TLS options). */
interface Pooled {
  key: string;
  session: http2.ClientHttp2Session | null;
  /** Resolves true once the server's SETTINGS advertise RFC 8441, false when HTTP/1.1 is to be used instead. */
  ready: Promise<boolean>;
  /** WebSockets open or opening on the session. */
  users: number;
  idle: NodeJS.Timeout | null;
  dead: boolean;
}

const pool = new Map<string, Pooled>();
/** Origins known not to offer RFC 8441, until when (`performance.now()` ms). */
const noWebSocketsOverH2 = new Map<string, number>();
const tlsIds = new WeakMap<object, number>();
let nextTlsId = 1;

function poolKey(url: URL, tls: object | undefined): string {
  let id = 0;
  if (tls !== undefined) {
    id = tlsIds.get(tls) ?? 0;
    if (id === 0) tlsIds.set(tls, (id = nextTlsId++));
  }
  return `${url.protocol}//${url.host}#${id}`;
}

/** @internal For tests and the bench: open client sessions by origin key. */
export function clientSessionCount(): number {
  let n = 0;
  for (const p of pool.values()) if (p.session !== null && !p.session.destroyed) n++;
  return n;
}

function release(entry: Pooled): void {
  entry.users--;
  if (entry.users > 0 || entry.dead) return;
  entry.session?.unref();
  if (entry.idle !== null) clearTimeout(entry.idle);
  entry.idle = setTimeout(() => {
    entry.idle = null;
    if (entry.users === 0) retire(entry, true);
  }, HTTP2_DEFAULTS.sessionIdleTimeout);
  entry.idle.unref();
}

/** Takes a session out of the pool (the next connect opens a new one), closing it gracefully when asked. */
function retire(entry: Pooled, close: boolean): void {
  entry.dead = true;
  if (pool.get(entry.key) === entry) pool.delete(entry.key);
  if (entry.idle !== null) clearTimeout(entry.idle);
  entry.idle = null;
  if (close && entry.session !== null && !entry.session.closed) entry.session.close();
}

function openSession(url: URL, key: string, options: ClientOptions): Pooled {
  const secure = url.protocol === 'wss:';
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = Number(url.port) || (secure ? 443 : 80);
  const entry: Pooled = { key, session: null, ready: Promise.resolve(false), users: 0, idle: null, dead: false };
  entry.ready = new Promise<boolean>((resolve) => {
    const isIp = /^[\d.]+$/.test(host) || host.includes(':');
    const socket: Socket = secure
      ? tlsConnect({ servername: isIp ? undefined : host, ...options.tls, ALPNProtocols: ['h2', 'http/1.1'], host, port })
      : netConnect({ host, port });
    socket.setNoDelay(true);
    /** `remember`: the server was reached and does not offer RFC 8441 (not a network error, which HTTP/1.1 reports itself). */
    const settle = (ok: boolean, remember = true): void => {
      if (!ok) {
        if (remember && !entry.dead) noWebSocketsOverH2.set(key, performance.now() + HTTP2_DEFAULTS.fallbackMemory);
        retire(entry, false);
        entry.session?.destroy();
        socket.destroy();
      }
      resolve(ok);
    };
    const failEarly = (): void => settle(false, false);
    socket.once('error', failEarly);
    socket.once('close', failEarly);
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      socket.off('error', failEarly);
      socket.off('close', failEarly);
      if (secure && (socket as TLSSocket).alpnProtocol !== 'h2') return settle(false);
      const session = http2.connect(`${secure ? 'https' : 'http'}://${url.host}`, { createConnection: () => socket });
      entry.session = session;
      session.unref();
      let settled = false;
      session.on('error', () => {
        if (!settled) {
          settled = true;
          settle(false);
        } else retire(entry, false);
      });
      session.once('close', () => {
        if (!settled) {
          settled = true;
          settle(false);
        } else retire(entry, false);
      });
      // No new streams on it: out of the pool, closed once its WebSockets are done (they get 1001, see `track`).
      session.on('goaway', () => retire(entry, true));
      session.once('remoteSettings', (settings: http2.Settings) => {
        if (settled) return;
        settled = true;
        if (settings.enableConnectProtocol === true) resolve(true);
        else settle(false);
      });
    });
  });
  return entry;
}

/** @internal What client.ts's `connect` resolves a redirect to. */
export interface Redirect {
  status: number;
  location: string;
}

/**
 * @internal One attempt of `connect(url, { http2: true })`: a WebSocket on the origin's shared session, or a
 * redirect, or null when the origin does not offer RFC 8441 (ALPN chose HTTP/1.1, the server's SETTINGS lack
 * ENABLE_CONNECT_PROTOCOL, or an h2c preface was not understood): the caller then upgrades over HTTP/1.1.
 */
export async function attemptHttp2(
  url: URL,
  protocols: string[],
  headers: ClientOptions['headers'],
  options: ClientOptions,
  deflate: Required<DeflateOptions> | null,
  heartbeat: Heartbeat | null,
  codecFor: (params: DeflateParams) => DeflateCodec,
  retried = false,
): Promise<WebSocketConnection | Redirect | null> {
  const key = poolKey(url, options.tls);
  const known = noWebSocketsOverH2.get(key);
  if (known !== undefined) {
    if (known > performance.now()) return null;
    noWebSocketsOverH2.delete(key);
  }
  let entry = pool.get(key);
  if (entry === undefined || entry.dead || entry.session?.closed === true || entry.session?.destroyed === true) {
    entry = openSession(url, key, options);
    pool.set(key, entry);
  }
  const e = entry;
  e.users++;
  if (e.idle !== null) {
    clearTimeout(e.idle);
    e.idle = null;
  }
  let handedOver = false;
  try {
    const result = await new Promise<WebSocketConnection | Redirect | null | typeof RETRY>((resolve, reject) => {
      let stream: http2.ClientHttp2Stream | null = null;
      let done = false;
      const finish = (): void => {
        done = true;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      };
      const fail = (error: Error): void => {
        if (done) return;
        finish();
        // destroy(), not close(): a stream closed while what the server sent is unread would wait for that to be read.
        if (stream !== null && !stream.destroyed) stream.destroy();
        reject(error);
      };
      const timer = setTimeout(() => fail(new HandshakeError('opening handshake timed out')), options.handshakeTimeout ?? 10_000);
      const onAbort = (): void => fail(new HandshakeError('opening handshake aborted'));
      if (options.signal) {
        if (options.signal.aborted) return onAbort();
        options.signal.addEventListener('abort', onAbort, { once: true });
      }
      e.ready.then((ok) => {
        if (done) return;
        const session = e.session;
        if (!ok) {
          finish();
          return resolve(null);
        }
        if (session === null || session.closed || session.destroyed) {
          // The session offered RFC 8441 but is going away (a GOAWAY came meanwhile): once more on a new one.
          finish();
          retire(e, true);
          return resolve(RETRY);
        }
        session.ref();
        const h: http2.OutgoingHttpHeaders = {};
        for (const [name, value] of Object.entries(headers ?? {})) h[name.toLowerCase()] = typeof value === 'string' ? value : [...value];
        h[':method'] = 'CONNECT';
        h[':protocol'] = 'websocket';
        h[':scheme'] = url.protocol === 'wss:' ? 'https' : 'http';
        h[':path'] = (url.pathname || '/') + url.search;
        h[':authority'] = typeof h.host === 'string' ? h.host : url.host;
        delete h.host;
        h['sec-websocket-version'] = '13';
        if (protocols.length > 0) h['sec-websocket-protocol'] = protocols.join(', ');
        if (deflate !== null) h['sec-websocket-extensions'] = clientOffer(deflate);
        if (options.origin) h.origin = options.origin;
        try {
          stream = session.request(h, { endStream: false });
        } catch (error) {
          return fail(new HandshakeError(`invalid request: ${(error as Error).message}`, 0, { cause: error }));
        }
        const s = stream;
        const refused = (): boolean => {
          // REFUSED_STREAM (a GOAWAY that came as the request left, say): not processed, safe to retry (RFC 9113 §8.7).
          if (s.rstCode !== NGHTTP2_REFUSED_STREAM || retried || done) return false;
          finish();
          retire(e, true);
          resolve(RETRY);
          return true;
        };
        s.on('error', (error: Error) => refused() || fail(new HandshakeError(`stream failed: ${error.message}`, 0, { cause: error })));
        s.once('close', () => refused() || fail(new HandshakeError('stream closed during the opening handshake')));
        s.once('response', (response: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader) => {
          if (done) return;
          const status = Number(response[':status']);
          if (status >= 300 && status < 400 && status !== 304) {
            const location = one(response.location);
            if (!location) return fail(new HandshakeError(`redirect (${status}) without a location`, status));
            finish();
            s.destroy();
            return resolve({ status, location });
          }
          if (status < 200 || status > 299) return fail(new HandshakeError(`server answered ${status} instead of 200`, status));
          const protocol = one(response['sec-websocket-protocol']);
          if (protocol !== undefined && !protocols.includes(protocol)) return fail(new HandshakeError(`server chose subprotocol ${JSON.stringify(protocol)} that was not offered`));
          let codec: DeflateCodec | null = null;
          let extensions: ExtensionOffer[] = [];
          const ext = one(response['sec-websocket-extensions']);
          if (ext !== undefined) {
            const parsed = parseExtensions(ext);
            if (parsed === null) return fail(new HandshakeError('malformed sec-websocket-extensions in the response'));
            for (const x of parsed) if (deflate === null || x.name !== 'permessage-deflate') return fail(new HandshakeError(`server accepted extension ${JSON.stringify(x.name)} that was not offered`));
            if (parsed.length > 1) return fail(new HandshakeError('server accepted permessage-deflate more than once'));
            if (parsed.length === 1) {
              const params = acceptServerResponse(parsed[0], deflate!);
              if (typeof params === 'string') return fail(new HandshakeError(params));
              codec = codecFor(params);
            }
            extensions = parsed;
          }
          finish();
          s.removeAllListeners('error');
          s.removeAllListeners('close');
          s.pause();
          markStream(s, peerOf(session as TrackedSession).remoteAddress);
          const connection = new WebSocketConnection(
            s,
            'client',
            { ...options, protocol: protocol ?? '', extensions: formatExtensions(extensions), codec, threshold: deflate?.threshold },
            heartbeat ? { onClosed: (c) => heartbeat.delete(c) } : {},
          );
          heartbeat?.add(connection);
          track(session as TrackedSession, connection);
          handedOver = true;
          connection.once('close', () => release(e));
          resolve(connection);
          // Frames that came with the response wait until the caller's `await` has run and attached its listeners.
          setImmediate(() => connection.updateFlow());
        });
      });
    });
    if (result !== RETRY) return result;
  } finally {
    if (!handedOver) release(e);
  }
  if (retried) throw new HandshakeError('the HTTP/2 session closed during the opening handshake, twice');
  return attemptHttp2(url, protocols, headers, options, deflate, heartbeat, codecFor, true);
}

/** What a handshake that found its session going away (or its stream refused) resolves to: once more on a new session. */
const RETRY = Symbol('retry');
