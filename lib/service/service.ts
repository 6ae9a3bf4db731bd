/**
 * The hub service: one server carrying the WebSocket endpoints (`/` and `/ws`), the demo page (`GET /`),
 * the HTTP API (`/api/*`, with the API key), `GET /health` (503 while shutting down, or while the hub's backplane
 * is not up: see `Hub.health`) and `GET /metrics`. Without TLS it is a `node:http` server (HTTP/1.1); with
 * `--tls-cert`/`--tls-key` a `node:http2` secure server with `allowHTTP1`: HTTP/2 and HTTP/1.1 on the one port
 * (chosen by ALPN), the same routes over both (the HTTP/2 requests through `node:http2`'s compatibility API), and
 * WebSockets over both — HTTP/2 extended CONNECT streams (RFC 8441, `SETTINGS_ENABLE_CONNECT_PROTOCOL` advertised)
 * and HTTP/1.1 upgrades — handed to the one hub.
 *
 * @module
 */
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createSecureServer, Http2ServerRequest, type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { signJwt } from '../hub/jwt.js';
import { createApi, type Api } from './api.js';
import { createBackplane } from './broker.js';
import { ConfigError, configSummary, type ServiceConfig } from './config.js';
import { DEMO_HTML, DEMO_SCRIPT } from './demo-page.js';
import { devCredentials, type DevCredentials } from './dev-credentials.js';
import { checkBearer, HttpError, readJsonObject, sendError, sendJson, type ServiceRequest, type ServiceResponse } from './http.js';
import type { Logger } from './log.js';
import { LabelledCounter, type MetricFamily, renderMetrics } from './metrics.js';
import { createServiceHub, type ServiceHub } from './hub-adapter.js';

/** Milliseconds between the liveness check's event-loop ticks. */
const LOOP_TICK_MS = 1000;
/** Event-loop lag (ms) beyond which `/health/live` answers 503: the loop is stuck, a restart may help. */
const LIVENESS_MAX_LAG_MS = 10_000;

/** Paths that accept WebSocket upgrades. */
export const WEBSOCKET_PATHS: readonly string[] = Object.freeze(['/', '/ws']);

/** Lifetime of the tokens minted in development mode (the banner's token and the demo page's), in seconds: 24 h. */
export const DEV_TOKEN_TTL = 24 * 3600;

/** What {@link startService} returns. */
export interface RunningService {
  /**
   * `http://host:port/` (`https://` with TLS): the demo page (in dev mode) and the WebSocket endpoint.
   */
  readonly url: string;
  /** `'h1'`: plain HTTP/1.1. `'h2+h1'`: TLS with HTTP/2 and HTTP/1.1 (ALPN), WebSockets over both. */
  readonly protocols: 'h1' | 'h2+h1';
  readonly port: number;
  /** The hub behind the service. */
  readonly hub: ServiceHub;
  /** The configuration in effect (dev mode: generated secret and key filled in). */
  readonly config: ServiceConfig;
  /** Dev mode: the text to print (URL, secret, API key, a token). Otherwise undefined. */
  readonly banner: string | undefined;
  /**
   * Graceful shutdown: stops accepting, closes every socket with `code` (1001 going away by default, or 1012
   * restart), waits up to `--shutdown-timeout` for closing handshakes, then destroys what is left.
   */
  close(options?: { code?: 1001 | 1012 }): Promise<void>;
}

/** Options of {@link startService}. */
export interface StartOptions {
  /** Where log lines go. */
  log: Logger;
  /** Dev mode: the folder of `.wsengine-dev.json`, the stored secret and API key. Default: the working directory. */
  devDir?: string;
}

const CLIENT_DIR = new URL('../hub-client/', import.meta.url);

/** The demo page's script may only come from this origin, and it may only connect back to it. */
const DEMO_CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const DEMO_PAGE = { body: Buffer.from(DEMO_HTML), headers: { 'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': DEMO_CSP, 'X-Content-Type-Options': 'nosniff' } };
const DEMO_JS = { body: Buffer.from(DEMO_SCRIPT), headers: { 'Content-Type': 'text/javascript; charset=utf-8', 'X-Content-Type-Options': 'nosniff' } };

/** Starts the service and resolves once it listens. Throws on a listen failure (port in use, …). */
export async function startService(input: ServiceConfig, { log, devDir }: StartOptions): Promise<RunningService> {
  const config: ServiceConfig = { ...input };
  let devToken: string | undefined;
  let dev: DevCredentials | undefined;
  if (config.dev) {
    // Kept in .wsengine-dev.json so that tokens and the API key survive a restart.
    dev = devCredentials(devDir ?? process.cwd(), { jwtSecret: config.jwtSecret, apiKey: config.apiKey });
    config.jwtSecret = dev.jwtSecret;
    config.apiKey = dev.apiKey;
    if (dev.state === 'unsaved') log('warn', 'dev_credentials_unsaved', { file: dev.path, error: dev.note });
    else if (dev.state !== 'flags') log('info', 'dev_credentials', { file: dev.path, state: dev.state, note: dev.note });
  }
  const backplane = await createBackplane(config, log);
  const hub = createServiceHub(config, backplane, log);
  const api: Api = createApi(hub, config, log);
  const started = Date.now();
  let closing = false;
  // The event loop's heartbeat for liveness: a tick that comes late says the loop was blocked that long.
  let loopTick = performance.now();
  const loopTimer = setInterval(() => {
    loopTick = performance.now();
  }, LOOP_TICK_MS);
  loopTimer.unref();

  /** With TLS: the open HTTP/2 sessions and TLS sockets, ended at the end of a shutdown (no closeAllConnections). */
  const sessions = new Set<ServerHttp2Session>();
  const tlsSockets = new Set<Duplex>();
  // WebSockets by transport (HTTP/1.1 upgrade or HTTP/2 stream), and the open HTTP/2 sessions, for /metrics.
  const opened = new LabelledCounter(4);
  hub.hub.server.on('connection', (connection) => opened.inc(connection.transport));
  const transportMetrics = (): MetricFamily[] => [
    { name: 'wsengine_websocket_transport_total', type: 'counter', help: 'WebSocket handshakes completed, by transport: http/1.1 (upgrade) or h2 (RFC 8441 extended CONNECT stream)', samples: ['http/1.1', 'h2'].map((t) => ({ labels: { transport: t }, value: opened.get(t) })) },
    { name: 'wsengine_http2_sessions', type: 'gauge', help: 'Open HTTP/2 sessions (TLS connections that chose h2); 0 without --tls-cert', samples: [{ value: sessions.size }] },
  ];

  const mintDevToken = (user: string): string => signJwt({ sub: user }, config.jwtSecret!, { expiresIn: DEV_TOKEN_TTL });

  /**
   * Liveness (`GET /health/live`): the process answers and its event loop is not stuck. It never depends on the
   * broker — a hub waiting for its broker is alive, and restarting it would not help.
   */
  const liveness = (): { ok: boolean; body: Record<string, unknown> } => {
    const lagMs = Math.max(0, performance.now() - loopTick - LOOP_TICK_MS);
    const loopOk = lagMs < LIVENESS_MAX_LAG_MS;
    return { ok: loopOk, body: { status: loopOk ? 'ok' : 'stuck', uptime_ms: Date.now() - started, checks: { event_loop: { status: loopOk ? 'ok' : 'stuck', lag_ms: Math.round(lagMs) } } } };
  };
  /**
   * Readiness (`GET /health/ready`): send traffic here only while the backplane is attached and its broker
   * reachable, the hub accepts connections, and the service is not shutting down. Each check's state is in the body.
   */
  const readiness = (): { ok: boolean; body: Record<string, unknown> } => {
    const h = hub.hub.health();
    const checks = {
      backplane: { status: h.backplane, reachable: h.reachable, attempts: h.attempts, retry_in_ms: h.retryIn, error: h.error, since: new Date(h.since).toISOString() },
      accepting: { status: h.accepting ? 'ok' : 'no' },
      shutdown: { status: closing ? 'draining' : 'no' },
    };
    const ok = h.backplane === 'up' && h.accepting && !closing;
    return { ok, body: { status: ok ? 'ready' : 'not_ready', connections: hub.connections(), checks } };
  };

  const handle = async (req: ServiceRequest, res: ServiceResponse): Promise<void> => {
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q === -1 ? target : target.slice(0, q);
    const query = new URLSearchParams(q === -1 ? '' : target.slice(q + 1));
    const method = req.method ?? 'GET';
    if (path === '/health/live' || path === '/health/ready') {
      if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'method_not_allowed', `use GET ${path}`);
      const report = path === '/health/live' ? liveness() : readiness();
      sendJson(res, report.ok ? 200 : 503, report.body);
      return;
    }
    if (path === '/health') {
      if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'method_not_allowed', 'use GET /health');
      // 503 while the backplane is not up (attaching, or its broker unreachable): this hub cannot serve then.
      const backplane = hub.hub.health().backplane;
      const status = closing ? 'shutting_down' : backplane !== 'up' ? 'unavailable' : 'ok';
      sendJson(res, status === 'ok' ? 200 : 503, { status, uptime_ms: Date.now() - started, connections: hub.connections(), backplane });
      return;
    }
    if (path === '/metrics') {
      if (method !== 'GET') throw new HttpError(405, 'method_not_allowed', 'use GET /metrics');
      requireKey(req, config);
      const body = api.metricsText() + renderMetrics(transportMetrics());
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': String(Buffer.byteLength(body)), 'Cache-Control': 'no-store' });
      res.end(body);
      return;
    }
    if (path.startsWith('/api/')) {
      requireKey(req, config);
      await api.handle(req, res, method, path, query);
      return;
    }
    const page = path === '/' ? DEMO_PAGE : path === '/demo.js' ? DEMO_JS : undefined;
    if (page && (method === 'GET' || method === 'HEAD')) {
      res.writeHead(200, { ...page.headers, 'Cache-Control': 'no-store', 'Content-Length': String(page.body.length) });
      if (method === 'HEAD') res.end();
      else res.end(page.body);
      return;
    }
    const client = /^\/hub-client\/([a-z0-9-]+\.js)$/.exec(path);
    if (client && (method === 'GET' || method === 'HEAD')) {
      let body: Buffer;
      try {
        body = await readFile(new URL(client[1], CLIENT_DIR));
      } catch {
        throw new HttpError(404, 'not_found', `${path} is not built: run npm run build`);
      }
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-cache', 'Content-Length': String(body.length) });
      if (method === 'HEAD') res.end();
      else res.end(body);
      return;
    }
    if (path === '/dev/token' && config.dev) {
      if (method !== 'POST') throw new HttpError(405, 'method_not_allowed', 'use POST /dev/token {"name"}');
      const name = (await readJsonObject(req, 4096)).name;
      if (typeof name !== 'string' || !/^[\w.-]{1,32}$/.test(name)) throw new HttpError(400, 'bad_request', 'name: 1 to 32 letters, digits, "_", "." or "-"');
      sendJson(res, 200, { token: mintDevToken(name), user: name, expires_in: DEV_TOKEN_TTL });
      return;
    }
    throw new HttpError(404, 'not_found', `no route for ${method} ${path}`);
  };

  const onRequest = (req: ServiceRequest, res: ServiceResponse): void => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (error instanceof HttpError) {
        sendError(res, error, error.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : {});
        if (error.status === 413) res.once('finish', () => req.destroy());
        return;
      }
      log('error', 'http_error', { path: (req.url ?? '').split('?')[0], error: (error as Error).message });
      sendError(res, new HttpError(500, 'internal_error', 'internal error'));
    });
  };
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (closing || !WEBSOCKET_PATHS.includes(path)) {
      const status = closing ? '503 Service Unavailable' : '404 Not Found';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    hub.hub.handleUpgrade(req, socket, head);
  };
  const onClientError = (_error: Error, socket: Duplex): void => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  };

  const tls = config.tlsCert !== undefined && config.tlsKey !== undefined;
  let server: Server | Http2SecureServer;
  if (tls) {
    let secure: Http2SecureServer;
    try {
      secure = createSecureServer(
        { cert: config.tlsCert!, key: config.tlsKey!, allowHTTP1: true, settings: { enableConnectProtocol: true, maxHeaderListSize: 16 * 1024 } },
        onRequest,
      );
    } catch (error) {
      throw new ConfigError(`--tls-cert/--tls-key: ${(error as Error).message}`);
    }
    // node:http2's compatibility layer answers every CONNECT stream 405 unless 'connect' has a listener. Over
    // HTTP/2 this is (req, res); on an HTTP/1.1 connection of the same server (allowHTTP1) it is (req, socket, head).
    (secure as unknown as NodeJS.EventEmitter).on('connect', (req: ServiceRequest, second: ServiceResponse | Duplex) => {
      if (!(req instanceof Http2ServerRequest)) {
        const socket = second as Duplex;
        socket.end('HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const { stream, headers } = req;
      const path = (headers[':path'] ?? '/').split('?')[0];
      if (headers[':protocol'] === undefined) {
        // A plain CONNECT asks for a tunnel: this is not a proxy.
        if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': 405 }, { endStream: true });
        return;
      }
      if (closing || !WEBSOCKET_PATHS.includes(path)) {
        if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': closing ? 503 : 404 }, { endStream: true });
        return;
      }
      // The engine checks the rest (`:protocol` websocket, version, origin, authentication) as for an upgrade.
      hub.hub.handleStream(stream, headers);
    });
    // The HTTP/1.1 side (allowHTTP1) has node:http's request and header deadlines: the same as without TLS.
    // (node sets them on an allowHTTP1 server, 300 s and 60 s by default; @types/node does not declare them.)
    Object.assign(secure, { requestTimeout: 30_000, headersTimeout: 10_000 });
    secure.on('upgrade', onUpgrade);
    secure.on('session', (session: ServerHttp2Session) => {
      sessions.add(session);
      session.once('close', () => sessions.delete(session));
    });
    secure.on('secureConnection', (socket: Duplex) => {
      tlsSockets.add(socket);
      socket.once('close', () => tlsSockets.delete(socket));
    });
    (secure as unknown as NodeJS.EventEmitter).on('clientError', onClientError);
    server = secure;
  } else {
    const plain = createServer({ maxHeaderSize: 16 * 1024 }, onRequest);
    plain.requestTimeout = 30_000;
    plain.headersTimeout = 10_000;
    plain.on('upgrade', onUpgrade);
    plain.on('clientError', onClientError);
    server = plain;
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const hostText = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `${tls ? 'https' : 'http'}://${hostText}:${address.port}/`;
  log('info', 'start', { url, pid: process.pid, dev: config.dev || undefined });
  log('info', 'config', { summary: configSummary(config) });

  let banner: string | undefined;
  if (config.dev) {
    devToken = mintDevToken('alice');
    banner = [
      '',
      'wsengine hub — development mode (do not use these credentials in production)',
      `  demo page    ${url}`,
      `  WebSocket    ${url.replace(/^http/, 'ws')}ws`,
      `  JWT secret   ${config.jwtSecret}   (HS256)`,
      `  API key      ${config.apiKey}`,
      `  token        ${devToken}   (user "alice", valid 24 h)`,
      ...devFileLines(dev!),
      '',
      '  try:',
      `    curl -H 'Authorization: Bearer ${config.apiKey}' -H 'Content-Type: application/json' \\`,
      `      -d '{"topic":"chat.lobby","type":"chat","data":{"text":"hello from curl"}}' ${url}api/publish`,
      '',
      '',
    ].join('\n');
  }

  let closed: Promise<void> | undefined;
  return {
    url,
    protocols: tls ? 'h2+h1' : 'h1',
    port: address.port,
    hub,
    config,
    banner,
    close(options = {}) {
      closed ??= (async () => {
        closing = true;
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await hub.close({ code: options.code ?? 1001, timeout: config.shutdownTimeout });
        if (!tls) (server as Server).closeAllConnections();
        for (const session of sessions) session.destroy();
        for (const socket of tlsSockets) socket.destroy();
        await serverClosed;
      })();
      return closed;
    },
  };
}

/** The banner's lines about where the development credentials are kept. */
function devFileLines(dev: DevCredentials): string[] {
  switch (dev.state) {
    case 'created':
      return [`  stored in    ${dev.path}   (new; kept across restarts, delete it for new credentials)`];
    case 'loaded':
      return [`  stored in    ${dev.path}   (reused, so earlier tokens still work; delete it for new credentials)`];
    case 'unsaved':
      return [`  not stored   ${dev.note}   (new credentials at every start)`];
    default:
      return ['  (secret and API key given by flags or environment: nothing stored)'];
  }
}

function requireKey(req: ServiceRequest, config: ServiceConfig): void {
  if (config.apiKey === undefined) throw new HttpError(401, 'unauthorized', 'the HTTP API is disabled: start the service with --api-key');
  if (!checkBearer(req.headers.authorization, config.apiKey)) throw new HttpError(401, 'unauthorized', 'missing or wrong API key (Authorization: Bearer <key>)');
}
