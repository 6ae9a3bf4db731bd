/**
 * The hub service with `--tls-cert`/`--tls-key` (the bin, a real port): HTTP/2 and HTTP/1.1 on the one port, the
 * HTTP API, health and metrics over both, and the hub's WebSocket over both — RFC 8441 extended CONNECT streams and
 * HTTP/1.1 upgrades — with the hub client library in Node over this package's `WebSocket` (`{ http2: true }`).
 * The server side's own count (`wsengine_websocket_transport_total{transport}`, `wsengine_http2_sessions`) says
 * which transport each socket used. Also: the TLS flags' errors (exit 2, naming the flag and the file).
 */
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { HubClient, type HubMessage, type WebSocketConstructor } from '../lib/hub-client/index.js';
import { connect, WebSocket } from '../lib/index.js';
import { API_KEY, runBin, serviceArgs, startService, tokenFor, type ServiceProcess } from './helpers/service.js';
import { testCertificate } from './helpers/tls.js';

const tls = testCertificate();
t.teardown(() => tls.remove());

/** TLS options shared by every client: HTTP/2 sessions are shared per origin and per `tls` object. */
const clientTls = { ca: tls.cert };

/** This package's WebSocket, over HTTP/2 (one session per origin) and trusting the test certificate. */
class H2WebSocket extends WebSocket {
  constructor(url: string | URL, protocols?: string | string[]) {
    super(url, protocols, { http2: true, tls: clientTls });
  }
}
/** The same over HTTP/1.1. */
class H1WebSocket extends WebSocket {
  constructor(url: string | URL, protocols?: string | string[]) {
    super(url, protocols, { tls: clientTls });
  }
}

function waitFor(what: string, check: () => boolean, timeout = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const end = Date.now() + timeout;
    const poll = (): void => {
      if (check()) resolve();
      else if (Date.now() > end) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 25);
    };
    poll();
  });
}

/** One request over an HTTP/2 session: status, headers and body text. */
function h2(session: ClientHttp2Session, method: string, path: string, body?: unknown, key: string | null = API_KEY): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ':method': method, ':path': path };
    if (key !== null) headers.authorization = `Bearer ${key}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const req = session.request(headers, { endStream: body === undefined });
    let text = '';
    let head: Record<string, unknown> = {};
    req.setEncoding('utf8');
    req.on('response', (h) => (head = h));
    req.on('data', (c: string) => (text += c));
    req.on('end', () => resolve({ status: Number(head[':status']), headers: head, text }));
    req.on('error', reject);
    if (body !== undefined) req.end(JSON.stringify(body));
  });
}

/** One request over HTTP/1.1 (ALPN offers only http/1.1). */
function h1(service: ServiceProcess, method: string, path: string, key: string | null = API_KEY): Promise<{ status: number; version: string; text: string }> {
  return new Promise((resolve, reject) => {
    const options = { method, ca: tls.cert, ALPNProtocols: ['http/1.1'], headers: key === null ? {} : { authorization: `Bearer ${key}` }, agent: false };
    const req = httpsRequest(new URL(path, service.url), options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, version: res.httpVersion, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A metric's value from the Prometheus text (0 when absent). */
function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

t.test('--tls-cert/--tls-key: bad paths and half a pair exit 2 naming the flag and the file', async (t) => {
  const missing = join(tls.dir, 'nope.pem');
  let r = await runBin(['hub', ...serviceArgs(['--tls-cert', missing, '--tls-key', tls.keyPath])]);
  t.equal(r.code, 2, 'missing certificate file');
  t.match(r.stderr, '--tls-cert');
  t.match(r.stderr, missing);
  r = await runBin(['hub', ...serviceArgs(['--tls-cert', tls.certPath])], { WSENGINE_TLS_KEY: missing });
  t.equal(r.code, 2, 'missing key file, from the environment');
  t.match(r.stderr, 'WSENGINE_TLS_KEY (--tls-key)');
  t.match(r.stderr, missing);
  const config = join(tls.dir, 'config.json');
  writeFileSync(config, JSON.stringify({ 'tls-cert': missing, 'tls-key': tls.keyPath }));
  r = await runBin(['hub', ...serviceArgs(['--config', config])]);
  t.equal(r.code, 2, 'missing file named in the config file');
  t.match(r.stderr, `"tls-cert" in ${config}`);
  t.match(r.stderr, missing);
  r = await runBin(['hub', ...serviceArgs(['--tls-cert', tls.certPath])]);
  t.equal(r.code, 2, 'a certificate without a key');
  t.match(r.stderr, '--tls-key');
  r = await runBin(['hub', ...serviceArgs(['--tls-cert', tls.keyPath, '--tls-key', tls.keyPath])]);
  t.equal(r.code, 2, 'a key given as the certificate');
  t.match(r.stderr, '--tls-cert');
  const other = testCertificate();
  t.teardown(() => other.remove());
  r = await runBin(['hub', ...serviceArgs(['--tls-cert', tls.certPath, '--tls-key', other.keyPath])]);
  t.equal(r.code, 2, 'a key that does not match the certificate');
  t.match(r.stderr, '--tls-cert/--tls-key');
});

t.test('one TLS port: HTTP API, health and metrics over HTTP/2 and HTTP/1.1; the hub client over both', async (t) => {
  const service = await startService(serviceArgs(['--tls-cert', tls.certPath, '--tls-key', tls.keyPath]), {}, 20_000, { exitWithParent: true });
  t.teardown(() => service.stop('SIGKILL'));
  t.match(service.url, /^https:\/\/127\.0\.0\.1:\d+\/$/, 'the start line says https');

  const session = h2connect(service.url, { ca: tls.cert });
  t.teardown(() => session.destroy());
  const settings = await new Promise<Record<string, unknown>>((resolve) => session.once('remoteSettings', resolve));
  t.equal(settings.enableConnectProtocol, true, 'the server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL');

  const health = await h2(session, 'GET', '/health', undefined, null);
  t.equal(health.status, 200, 'GET /health over HTTP/2');
  t.equal(JSON.parse(health.text).status, 'ok');
  const refused = await h2(session, 'GET', '/api/connections', undefined, null);
  t.equal(refused.status, 401, 'the API key is required over HTTP/2 too');
  t.equal(refused.headers['www-authenticate'], 'Bearer');
  const page = await h2(session, 'GET', '/', undefined, null);
  t.equal(page.status, 200, 'the demo page over HTTP/2');
  t.match(page.headers['content-type'], /^text\/html/);
  t.match(page.headers['content-security-policy'], "connect-src 'self'");
  const library = await h2(session, 'GET', '/hub-client/index.js', undefined, null);
  t.equal(library.status, 200, 'the hub client library over HTTP/2');
  t.match(library.text, 'export class HubClient');
  const head = await h2(session, 'HEAD', '/', undefined, null);
  t.equal(head.status, 200, 'HEAD over HTTP/2');
  t.equal(head.text, '', 'without a body');
  const missing = await h2(session, 'GET', '/nowhere');
  t.equal(missing.status, 404, 'an unknown path is 404 over HTTP/2');
  // CONNECT streams that are not hub WebSockets get the RFC's answers.
  const connectStatus = (headers: Record<string, string>): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = session.request({ ':method': 'CONNECT', ...headers }, { endStream: false });
      req.on('response', (h) => {
        resolve(Number(h[':status']));
        req.close();
      });
      req.on('error', reject);
    });
  const authority = new URL(service.url).host;
  t.equal(await connectStatus({ ':authority': authority }), 405, 'a plain CONNECT (a tunnel): 405, this is not a proxy');
  t.equal(await connectStatus({ ':authority': authority, ':protocol': 'websocket', ':scheme': 'https', ':path': '/elsewhere', 'sec-websocket-version': '13' }), 404, 'a WebSocket CONNECT off / and /ws: 404');
  t.equal(await connectStatus({ ':authority': authority, ':protocol': 'not-websocket', ':scheme': 'https', ':path': '/ws', 'sec-websocket-version': '13' }), 501, 'another :protocol: 501 (from the engine)');
  const health1 = await h1(service, 'GET', '/health', null);
  t.equal(health1.version, '1.1', 'the same port speaks HTTP/1.1');
  t.equal(health1.status, 200, 'GET /health over HTTP/1.1');

  // Hub clients: alice and bob over HTTP/2 (one session: one origin), carol over HTTP/1.1.
  const make = (user: string, WS: WebSocketConstructor): HubClient => new HubClient({ url: service.wsUrl, WebSocket: WS, token: tokenFor(user), backoff: { initialDelay: 100, maxDelay: 500 } });
  const alice = make('alice', H2WebSocket as unknown as WebSocketConstructor);
  const bob = make('bob', H2WebSocket as unknown as WebSocketConstructor);
  const carol = make('carol', H1WebSocket as unknown as WebSocketConstructor);
  t.teardown(() => {
    alice.close();
    bob.close();
    carol.close();
  });
  await Promise.all([alice.connect(), bob.connect(), carol.connect()]);
  const got: Record<string, HubMessage[]> = { alice: [], bob: [], carol: [] };
  for (const [name, c] of [['alice', alice], ['bob', bob], ['carol', carol]] as const) {
    c.on('message', (m) => {
      if (m.topic === 'room.one') got[name].push(m);
    });
    await c.subscribe('room.one');
  }
  await alice.publish({ topic: 'room.one', type: 'chat', data: { text: 'from alice over h2' } });
  await carol.publish({ topic: 'room.one', type: 'chat', data: { text: 'from carol over http/1.1' } });
  const published = await h2(session, 'POST', '/api/publish', { topic: 'room.one', type: 'chat', data: { text: 'from the API over h2' } });
  t.equal(published.status, 200, `POST /api/publish over HTTP/2: ${published.text}`);
  await waitFor('three messages each', () => Object.values(got).every((list) => list.length === 3));
  for (const [name, list] of Object.entries(got)) {
    t.same(list.map((m) => (m.data as { text: string }).text).sort(), ['from alice over h2', 'from carol over http/1.1', 'from the API over h2'], `${name} got every message once`);
  }
  t.same(got.bob.find((m) => (m.data as { text: string }).text === 'from alice over h2')?.from, { user: 'alice' }, 'the sender is the verified user over h2 as over http/1.1');

  const metrics = await h2(session, 'GET', '/metrics');
  t.equal(metrics.status, 200);
  t.equal(metric(metrics.text, 'wsengine_websocket_transport_total{transport="h2"}'), 2, 'the server saw two WebSockets as HTTP/2 streams');
  t.equal(metric(metrics.text, 'wsengine_websocket_transport_total{transport="http/1.1"}'), 1, 'and one as an HTTP/1.1 upgrade');
  // Our own session for the requests, the client's one for alice and bob: two (carol's connection is HTTP/1.1).
  t.equal(metric(metrics.text, 'wsengine_http2_sessions'), 2, 'alice and bob share one HTTP/2 session');
  t.equal(metric(metrics.text, 'wsengine_connections'), 3, 'three hub connections');
});

t.test('over HTTP/2 the hub applies what it applies over HTTP/1.1: bad tokens, the per-user limit, heartbeats, slow consumers, graceful shutdown', async (t) => {
  const service = await startService(
    serviceArgs(['--tls-cert', tls.certPath, '--tls-key', tls.keyPath, '--max-connections-per-user', '1', '--max-buffered', '64k', '--heartbeat-interval', '200ms', '--heartbeat-timeout', '1s']),
    {},
    20_000,
    { exitWithParent: true },
  );
  t.teardown(() => service.stop('SIGKILL'));
  const url = (token: string): string => `${service.wsUrl}?token=${encodeURIComponent(token)}`;

  // A bad token: the same outcome on both transports.
  const outcome = async (http2: boolean): Promise<string> => {
    try {
      const c = await connect(url('not-a-jwt'), { http2, tls: clientTls });
      const code = await new Promise<number>((resolve) => c.once('close', (closeCode: number) => resolve(closeCode)));
      return `close ${code}`;
    } catch (error) {
      return `refused ${(error as Error).message}`;
    }
  };
  const overH1 = await outcome(false);
  const overH2 = await outcome(true);
  t.not(overH1, 'close 1000', 'a bad token is not accepted');
  t.equal(overH2, overH1, `a bad token over HTTP/2 ends as over HTTP/1.1 (${overH1})`);

  // The per-user limit counts HTTP/2 and HTTP/1.1 sockets together: the second evicts the first with 4429.
  const first = await connect(url(tokenFor('dave')), { tls: clientTls });
  t.equal(first.transport, 'http/1.1');
  const evicted = new Promise<number>((resolve) => first.once('close', (code: number) => resolve(code)));
  const second = await connect(url(tokenFor('dave')), { http2: true, tls: clientTls });
  t.equal(second.transport, 'h2', 'the second socket is an HTTP/2 stream');
  t.equal(await evicted, 4429, 'the HTTP/1.1 socket is evicted by the HTTP/2 one');

  // Heartbeats: the engine answers protocol pings and the app pings are answered below; the socket stays open
  // through several heartbeat timeouts.
  second.on('message', (data: Buffer) => {
    const m = JSON.parse(data.toString()) as { type: string };
    if (m.type === 'ping') second.send(JSON.stringify({ type: 'pong' }));
  });
  let closedEarly: number | undefined;
  second.once('close', (code: number) => (closedEarly = code));
  await new Promise((r) => setTimeout(r, 2500));
  t.equal(closedEarly, undefined, 'an HTTP/2 socket that answers heartbeats stays open');

  // A slow consumer over HTTP/2: a subscriber that stops reading is closed 1008 once 64 KiB are buffered, while
  // the other sockets of its session keep flowing.
  const slow = await connect(url(tokenFor('slow')), { http2: true, tls: clientTls });
  const fast = await connect(url(tokenFor('fast')), { http2: true, tls: clientTls });
  const acked = (c: typeof slow): Promise<void> =>
    new Promise((resolve) => {
      const on = (data: Buffer): void => {
        if ((JSON.parse(data.toString()) as { type: string; request_id?: unknown }).request_id === 'sub') {
          c.off('message', on);
          resolve();
        }
      };
      c.on('message', on);
    });
  const slowAck = acked(slow);
  const fastAck = acked(fast);
  slow.send(JSON.stringify({ type: 'subscribe', data: { topic: 'firehose' }, request_id: 'sub' }));
  fast.send(JSON.stringify({ type: 'subscribe', data: { topic: 'firehose' }, request_id: 'sub' }));
  await Promise.all([slowAck, fastAck]);
  let fastGot = 0;
  fast.on('message', (data: Buffer) => {
    const m = JSON.parse(data.toString()) as { type: string; topic?: string };
    if (m.type === 'blob' && m.topic === 'firehose') fastGot++;
  });
  slow.pause();
  const slowClosed = new Promise<number>((resolve) => slow.once('close', (code: number) => resolve(code)));
  const session = h2connect(service.url, { ca: tls.cert });
  t.teardown(() => session.destroy());
  const text = 'x'.repeat(8 * 1024);
  let sent = 0;
  // Publish until the server has closed the slow one for its buffer (its flow-control window is full: it never
  // reads), at most 400 × 8 KiB.
  for (; sent < 400; sent++) {
    const r = await h2(session, 'POST', '/api/publish', { topic: 'firehose', type: 'blob', data: { text } });
    if (r.status !== 200) t.fail(`publish ${r.status}: ${r.text}`);
    if (sent % 10 === 9 && metric((await h2(session, 'GET', '/metrics')).text, 'wsengine_slow_consumer_disconnects_total') >= 1) break;
  }
  t.ok(sent < 400, `the stalled HTTP/2 subscriber was disconnected as a slow consumer after ${sent + 1} messages`);
  await service.waitForOutput(/slow_consumer .*user=slow/);
  t.pass('the service logged the slow consumer by name');
  // Read again, it finds its stream closed: 1008 when the close frame got through, else 1006 (the server resets
  // the stream once the close times out).
  slow.resume();
  const closedAs = await Promise.race([slowClosed, new Promise<string>((r) => setTimeout(() => r('not closed within 10 s'), 10_000))]);
  t.ok(closedAs === 1006 || closedAs === 1008, `the slow subscriber is closed (${closedAs})`);
  await waitFor('the fast subscriber to get every message', () => fastGot === sent + 1);
  t.equal(fastGot, sent + 1, 'the subscriber on the same HTTP/2 session got every message');

  // Graceful shutdown (SIGTERM): HTTP/2 sockets are closed 1001 like the others, and the process exits 0.
  const fastClosed = new Promise<number>((resolve) => fast.once('close', (c: number) => resolve(c)));
  const secondClosed = new Promise<number>((resolve) => second.once('close', (c: number) => resolve(c)));
  session.destroy();
  const exit = await service.stop('SIGTERM');
  t.equal(exit.code, 0, 'the service exits 0 after SIGTERM');
  t.equal(await fastClosed, 1001, 'an HTTP/2 socket is closed 1001 (going away)');
  t.equal(await secondClosed, 1001, 'and the other one on its session');
});
