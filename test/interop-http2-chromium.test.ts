/**
 * WebSockets over HTTP/2 (RFC 8441) with a real browser: Debian's headless Chromium (driven by playwright-core)
 * loads a page over HTTPS + HTTP/2 and opens several WebSockets back to the same origin. The server side records
 * every HTTP/2 session and stream, and proves that each WebSocket arrived as an extended CONNECT stream
 * (`:method` CONNECT, `:protocol` websocket) on the one session that served the page, with no HTTP/1.1 upgrade.
 *
 * What this Chromium does (checked by experiment, and asserted below so a change shows up):
 * - It needs no flag: WebSockets over HTTP/2 are on by default (the binary knows no feature for it, only
 *   `kEnableWebsocketsOverHttp3` for HTTP/3). `--ignore-certificate-errors` is enough; a certificate trusted through
 *   `--ignore-certificate-errors-spki-list=<sha256 of its key>` works the same.
 * - It uses an HTTP/2 connection only when one is already open to the origin (the page came from it) and that
 *   connection's server sent SETTINGS_ENABLE_CONNECT_PROTOCOL. It never opens an HTTP/2 connection for a WebSocket:
 *   from a page of another origin it opens one TLS connection per WebSocket with ALPN http/1.1 and upgrades.
 * - Without the setting it falls back to the HTTP/1.1 upgrade on new connections, on the same port (allowHTTP1).
 * (`--disable-quic` keeps HTTP/3 out of it.)
 */
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createSecureServer, type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import type { BrowserContext } from 'playwright-core';
import { createServer, type WebSocketConnection, type WebSocketServer } from '../lib/index.js';
import { API_KEY, serviceArgs, startService, tokenFor } from './helpers/service.js';
import { testCertificate, type TestCertificate } from './helpers/tls.js';
import { connect as h2connect } from 'node:http2';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const inCI = Boolean(process.env.CI) && process.env.CI !== 'false' && process.env.CI !== '0';
let chromiumFound = true;
try {
  accessSync(CHROMIUM, constants.X_OK);
} catch {
  chromiumFound = false;
}

/** How many WebSockets the page opens. */
const SOCKETS = 4;

const PAGE = '<!doctype html><html><head><meta charset="utf-8"><title>wsengine h2</title></head><body><p>wsengine over HTTP/2</p></body></html>';

interface Recorded {
  /** Every HTTP/2 session, in order, with its streams' method, `:protocol` and path. */
  sessions: Array<{ streams: Array<{ method: string; protocol: string | undefined; path: string }> }>;
  /** HTTP/1.1 upgrade requests (the fallback) that reached the server's `upgrade` listener (without attachHttp2). */
  upgrades: string[];
  /** TLS connections and the protocol ALPN chose. */
  alpn: string[];
  /** Accepted WebSockets and their transport. */
  connections: WebSocketConnection[];
}

/**
 * An HTTPS server with HTTP/2 and HTTP/1.1 on one port (allowHTTP1): the page over HTTP/2, the WebSocket server
 * attached for HTTP/2 streams (`attachHttp2`, unless `connectProtocol` is false) and for HTTP/1.1 upgrades, every
 * session and stream recorded. WebSockets echo.
 */
async function startH2(t: Test, tls: TestCertificate, connectProtocol: boolean): Promise<{ origin: string; recorded: Recorded; wss: WebSocketServer; server: Http2SecureServer }> {
  const recorded: Recorded = { sessions: [], upgrades: [], alpn: [], connections: [] };
  const server = createSecureServer({ key: tls.key, cert: tls.cert, allowHTTP1: true });
  const wss = createServer({ noServer: true, heartbeat: false });
  wss.on('connection', (conn) => {
    recorded.connections.push(conn);
    conn.on('message', (data, isBinary) => conn.send(data, { binary: isBinary }));
  });
  if (connectProtocol) wss.attachHttp2(server);
  server.on('secureConnection', (socket) => recorded.alpn.push(String(socket.alpnProtocol)));
  server.on('session', (session: ServerHttp2Session) => {
    const entry = { streams: [] as Recorded['sessions'][number]['streams'] };
    recorded.sessions.push(entry);
    session.on('stream', (_stream, headers) => entry.streams.push({ method: String(headers[':method']), protocol: headers[':protocol'] as string | undefined, path: String(headers[':path']) }));
  });
  server.on('stream', (stream, headers) => {
    if (headers[':method'] === 'CONNECT') return; // the WebSocket server's (attachHttp2)
    stream.respond({ ':status': headers[':path'] === '/' ? 200 : 404, 'content-type': 'text/html; charset=utf-8' });
    stream.end(headers[':path'] === '/' ? PAGE : '');
  });
  server.on('upgrade', (req, socket, head) => {
    recorded.upgrades.push(String(req.url));
    wss.handleUpgrade(req, socket, head);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    await wss.close();
    server.close();
    for (const conn of recorded.connections) conn.terminate();
  });
  return { origin: `https://localhost:${(server.address() as AddressInfo).port}`, recorded, wss, server };
}

async function launch(extraArgs: readonly string[]): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const { chromium } = await import('playwright-core');
  const profile = await mkdtemp(join(tmpdir(), 'wsengine-h2-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-quic', ...extraArgs],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    },
  };
}

/**
 * In the page at `pageUrl`: opens {@link SOCKETS} WebSockets to `wsUrl`, sends one message on each and waits for its
 * echo. Returns what each socket saw.
 */
async function openSockets(context: BrowserContext, pageUrl: string, wsUrl: string): Promise<string[]> {
  const page = await context.newPage();
  await page.goto(pageUrl);
  // A string, not a function: tsx would compile a function with helpers (__name) the page does not have.
  const script = `(async () => {
    const one = (i) => new Promise((resolve) => {
      const ws = new WebSocket(${JSON.stringify(wsUrl)} + '?n=' + i);
      const timer = setTimeout(() => resolve('timeout ' + i), 15000);
      ws.onopen = () => ws.send('hello ' + i);
      ws.onmessage = (e) => { clearTimeout(timer); resolve('echo ' + String(e.data)); };
      ws.onerror = () => { clearTimeout(timer); resolve('error ' + i); };
    });
    return Promise.all(Array.from({ length: ${SOCKETS} }, (_, i) => one(i + 1)));
  })()`;
  return page.evaluate(script) as Promise<string[]>;
}

const expectedEchoes = Array.from({ length: SOCKETS }, (_, i) => `echo hello ${i + 1}`);

if (!chromiumFound && inCI) {
  t.fail(`${CHROMIUM} is missing: CI must install chromium (apt-get install -y chromium) before the tests`);
} else if (!chromiumFound) {
  t.test('WebSockets over HTTP/2 ↔ headless Chromium', { skip: `chromium is not installed at ${CHROMIUM} (apt-get install -y chromium); skipped outside CI` }, () => undefined);
} else {
  const tls = testCertificate();
  t.teardown(() => tls.remove());

  for (const [name, flag] of [
    ['--ignore-certificate-errors', '--ignore-certificate-errors'],
    ['a trusted key (--ignore-certificate-errors-spki-list)', `--ignore-certificate-errors-spki-list=${tls.spki}`],
  ] as const) {
    t.test(`Chromium (${name}) opens its WebSockets as extended CONNECT streams on the page's HTTP/2 session`, async (t) => {
      const { origin, recorded } = await startH2(t, tls, true);
      const browser = await launch([flag]);
      t.teardown(() => browser.close());
      const seen = await openSockets(browser.context, `${origin}/`, `${origin.replace('https:', 'wss:')}/ws`);
      t.same(seen, expectedEchoes, 'every WebSocket opened and echoed');

      // From the server's side: which session served the page, and what came on it.
      const pageSessions = recorded.sessions.filter((s) => s.streams.some((st) => st.method === 'GET' && st.path === '/'));
      t.equal(pageSessions.length, 1, 'one HTTP/2 session served the page');
      const connects = recorded.sessions.flatMap((s) => s.streams.filter((st) => st.method === 'CONNECT'));
      t.equal(connects.length, SOCKETS, `${SOCKETS} CONNECT streams in all`);
      const onPageSession = pageSessions[0].streams.filter((st) => st.method === 'CONNECT');
      t.equal(onPageSession.length, SOCKETS, `all ${SOCKETS} on the session that served the page`);
      t.ok(onPageSession.every((st) => st.protocol === 'websocket'), 'each with :protocol websocket');
      t.same(onPageSession.map((st) => st.path).sort(), Array.from({ length: SOCKETS }, (_, i) => `/ws?n=${i + 1}`), 'each WebSocket its own stream');
      t.notOk(recorded.alpn.includes('http/1.1'), `no TLS connection chose HTTP/1.1 (ALPN: ${recorded.alpn.join(', ')})`);
      t.same(recorded.connections.map((c) => c.transport), Array(SOCKETS).fill('h2'), "the engine's connections say transport h2");
    });
  }

  t.test('conditions: from a page of another origin, Chromium upgrades over HTTP/1.1, one TLS connection per WebSocket', async (t) => {
    const { origin, recorded } = await startH2(t, tls, true);
    const other = await startH2(t, tls, true);
    const browser = await launch(['--ignore-certificate-errors']);
    t.teardown(() => browser.close());
    // The page comes from `other` (a different port: another origin); its WebSockets go to `origin`, to which no
    // HTTP/2 connection is open.
    const seen = await openSockets(browser.context, `${other.origin}/`, `${origin.replace('https:', 'wss:')}/ws`);
    t.same(seen, expectedEchoes, 'every WebSocket opened and echoed');
    t.equal(recorded.sessions.flatMap((s) => s.streams).filter((st) => st.method === 'CONNECT').length, 0, 'no CONNECT stream');
    t.ok(recorded.alpn.filter((p) => p === 'http/1.1').length >= SOCKETS, `a TLS connection per WebSocket with ALPN http/1.1 (ALPN: ${recorded.alpn.join(', ')})`);
    t.same(recorded.connections.map((c) => c.transport), Array(SOCKETS).fill('http/1.1'), 'each one an HTTP/1.1 upgrade (attachHttp2 took them)');
  });

  t.test('conditions: without SETTINGS_ENABLE_CONNECT_PROTOCOL, Chromium falls back to HTTP/1.1 upgrades on the same port', async (t) => {
    const { origin, recorded } = await startH2(t, tls, false);
    const browser = await launch(['--ignore-certificate-errors']);
    t.teardown(() => browser.close());
    const seen = await openSockets(browser.context, `${origin}/`, `${origin.replace('https:', 'wss:')}/ws`);
    t.same(seen, expectedEchoes, 'every WebSocket opened and echoed');
    t.ok(recorded.sessions.some((s) => s.streams.some((st) => st.method === 'GET' && st.path === '/')), 'the page came over HTTP/2');
    t.equal(recorded.sessions.flatMap((s) => s.streams).filter((st) => st.method === 'CONNECT').length, 0, 'no CONNECT stream');
    t.equal(recorded.upgrades.length, SOCKETS, 'each WebSocket an HTTP/1.1 upgrade');
    t.same(recorded.connections.map((c) => c.transport), Array(SOCKETS).fill('http/1.1'));
  });

  t.test('the hub service over TLS: the hub client library on the demo page in Chromium opens its sockets as HTTP/2 streams', async (t) => {
    const service = await startService(serviceArgs(['--tls-cert', tls.certPath, '--tls-key', tls.keyPath]), {}, 20_000, { exitWithParent: true });
    t.teardown(() => service.stop('SIGKILL'));
    const browser = await launch(['--ignore-certificate-errors']);
    t.teardown(() => browser.close());
    const page = await browser.context.newPage();
    // The demo page (its CSP allows scripts and connections to its own origin only).
    const response = await page.goto(service.url);
    t.equal(response?.status(), 200, 'the demo page loads over HTTPS');
    const tokens = ['ann', 'ben', 'cat'].map((user) => tokenFor(user));
    // The client library as the demo page loads it (plain ESM from /hub-client/), three more clients, one message.
    const script = `(async () => {
      const { HubClient } = await import('/hub-client/index.js');
      const tokens = ${JSON.stringify(tokens)};
      const clients = tokens.map((token) => new HubClient({ url: location.origin.replace('https:', 'wss:') + '/ws', token }));
      const got = clients.map(() => []);
      clients.forEach((c, i) => c.on('message', (m) => { if (m.topic === 'h2.room') got[i].push(m.data.text); }));
      await Promise.all(clients.map((c) => c.connect()));
      await Promise.all(clients.map((c) => c.subscribe('h2.room')));
      await clients[0].publish({ topic: 'h2.room', type: 'chat', data: { text: 'over one connection' } });
      const end = Date.now() + 10000;
      while (got.some((g) => g.length === 0) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      return got;
    })()`;
    const got = (await page.evaluate(script)) as string[][];
    t.same(got, [['over one connection'], ['over one connection'], ['over one connection']], 'every client got the message');
    // The service's own count, read over a separate HTTP/2 session from Node.
    const session = h2connect(service.url, { ca: tls.cert });
    t.teardown(() => session.destroy());
    const text = await new Promise<string>((resolve, reject) => {
      const req = session.request({ ':path': '/metrics', authorization: `Bearer ${API_KEY}` });
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => resolve(body));
      req.on('error', reject);
    });
    const metric = (name: string): number => Number(text.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1] ?? 0);
    t.equal(metric('wsengine_websocket_transport_total{transport="h2"}'), 3, 'the service saw three WebSockets as HTTP/2 streams');
    t.equal(metric('wsengine_websocket_transport_total{transport="http/1.1"}'), 0, 'and no HTTP/1.1 upgrade');
  });
}
