/**
 * WebSockets over HTTP/2 (RFC 8441): the own server (h2 over TLS and h2c, HTTP/1.1 on the same port), attaching to
 * node:http2 servers (with allowHTTP1), the client's shared sessions and its fallback to HTTP/1.1, negotiation
 * (subprotocol, permessage-deflate, authenticate) over a stream, and many WebSockets on one session.
 */
import t, { type Test } from 'tap';
import http2 from 'node:http2';
import https from 'node:https';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { connect, createServer, HandshakeError, WebSocket, type AuthAcceptance, type AuthRejection, type ServerOptions, type WebSocketConnection, type WebSocketServer } from '../lib/index.js';
import { clientSessionCount } from '../lib/transport/http2-client.js';
import { CLIENT_TLS, connectHeaders, h2session, outcome, TLS } from './helpers/h2.js';
import { once, until } from './helpers/net.js';

type Mode = 'h2' | 'h2c';

async function echoServer(t: Test, mode: Mode, options: ServerOptions = {}): Promise<{ server: WebSocketServer; port: number; url: string; sessions: () => number; openSessions: () => number }> {
  const server = createServer({ heartbeat: false, http2: mode === 'h2' ? { ...TLS } : { cleartext: true }, ...options }, (conn) => {
    conn.on('message', (data, isBinary) => conn.send(data, { binary: isBinary }));
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const own = (server as unknown as { h2: { sessions: Set<unknown>; server: http2.Http2Server } }).h2;
  let sessions = 0;
  own.server.on('session', () => sessions++);
  return { server, port, url: `${mode === 'h2' ? 'wss' : 'ws'}://localhost:${port}`, sessions: () => sessions, openSessions: () => own.sessions.size };
}

function nextMessage(conn: WebSocketConnection): Promise<[Buffer, boolean]> {
  return once<[Buffer, boolean]>(conn, 'message');
}

for (const mode of ['h2', 'h2c'] as const) {
  t.test(`${mode}: echo over a stream, close with END_STREAM both ways, conn.transport says h2`, async (t) => {
    const seen: WebSocketConnection[] = [];
    const { server, url } = await echoServer(t, mode);
    server.on('connection', (c) => seen.push(c));
    const c = await connect(`${url}/chat?room=1`, { http2: true, tls: CLIENT_TLS });
    t.equal(c.transport, 'h2', 'client side is a stream');
    c.send('héllo 🌍');
    t.same((await nextMessage(c)).map(String), ['héllo 🌍', 'false']);
    const big = Buffer.alloc(1024 * 1024, 7);
    c.send(big);
    const [echoed, isBinary] = await nextMessage(c);
    t.ok(echoed.equals(big) && isBinary, '1 MiB echoed through the stream windows');
    t.equal(seen[0].transport, 'h2', 'server side is a stream');
    t.equal(seen[0].remoteAddress, '127.0.0.1', "remoteAddress is the session's peer");
    c.close(4000, 'done');
    const [code] = await once<[number, string]>(c, 'close');
    t.equal(code, 4000, 'closing handshake completed: the server echoed our code');
    await until(() => seen[0].readyState === 3, 5000, 'server side closed');
  });

  t.test(`${mode}: HTTP/1.1 upgrades and plain requests on the same port`, async (t) => {
    const { url } = await echoServer(t, mode, { httpHandler: (req) => ({ status: 200, body: `${req.method} ${req.path}` }) });
    const h1 = await connect(url, { tls: CLIENT_TLS });
    t.equal(h1.transport, 'http/1.1');
    h1.send('over h1');
    t.equal(String((await nextMessage(h1))[0]), 'over h1');
    h1.close();
    // A plain HTTP/2 request goes to httpHandler.
    const session = await h2session(url.replace(/^ws/, 'http'));
    t.teardown(() => session.destroy());
    const r = await outcome(session.request({ ':path': '/health' }));
    t.ok('status' in r && r.status === 200, 'HTTP/2 GET answered by httpHandler');
    if ('status' in r) t.equal(await r.body, 'GET /health');
  });
}

t.test('h2 without allowHTTP1: HTTP/1.1 clients are refused, h2 works', async (t) => {
  const { url } = await echoServer(t, 'h2', { http2: { ...TLS, allowHTTP1: false } });
  await t.rejects(connect(url, { tls: CLIENT_TLS, handshakeTimeout: 3000 }), HandshakeError);
  const c = await connect(url, { http2: true, tls: CLIENT_TLS });
  t.equal(c.transport, 'h2');
  c.close();
});

t.test('the http2 option is validated like every server option', async (t) => {
  t.throws(() => createServer({ http2: { cleartext: 'yes' as unknown as boolean } }), TypeError);
  t.throws(() => createServer({ http2: { enableConnectProtocol: true } as never }), /always on/);
  t.throws(() => createServer({ http2: { allowHttp1: true } as never }), /allowHTTP1/);
  t.throws(() => createServer({ http2: 'h2' as never }), /options.http2 must be true or an object/);
  t.throws(() => createServer({ http2: { cleartext: true, ...TLS } }), /cleartext/);
  t.throws(() => createServer({ http2: { ...TLS }, tls: TLS }), /once/);
  t.throws(() => createServer({ http2: { cleartext: false } }), /needs a key/);
  await t.rejects(connect('ws://127.0.0.1:1', { http2: 'yes' as never }), TypeError);
  t.throws(() => new WebSocket('ws://127.0.0.1:1', [], { http2: 1 as never }), TypeError);
  const s = createServer({ http2: true, noServer: true });
  t.equal(s.address(), null, 'ignored with noServer');
});

t.test('attachHttp2: an existing Http2SecureServer with allowHTTP1 serves both, its own handlers keep the rest', async (t) => {
  const h2server = http2.createSecureServer({ ...TLS, allowHTTP1: true });
  const wss = createServer({ noServer: true, heartbeat: false }, (conn) => conn.on('message', (d, b) => conn.send(d, { binary: b })));
  const requests: string[] = [];
  const appStreams: string[] = [];
  h2server.on('request', (req, res) => {
    requests.push(`${req.httpVersion} ${req.method} ${req.url}`);
    res.end('app');
  });
  h2server.on('stream', (_s, headers) => appStreams.push(String(headers[':method'])));
  const detach = wss.attachHttp2(h2server);
  await new Promise<void>((r) => h2server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    h2server.close();
    return wss.close({ timeout: 200 });
  });
  const port = (h2server.address() as { port: number }).port;
  const session = await h2session(`https://localhost:${port}`);
  t.teardown(() => session.destroy());
  t.equal(session.remoteSettings.enableConnectProtocol, true, 'SETTINGS_ENABLE_CONNECT_PROTOCOL advertised to new sessions');
  const c2 = await connect(`wss://localhost:${port}/ws`, { http2: true, tls: CLIENT_TLS });
  t.equal(c2.transport, 'h2');
  c2.send('h2');
  t.equal(String((await nextMessage(c2))[0]), 'h2');
  const c1 = await connect(`wss://localhost:${port}/ws`, { tls: CLIENT_TLS });
  t.equal(c1.transport, 'http/1.1', 'HTTP/1.1 upgrade on the same port');
  c1.send('h1');
  t.equal(String((await nextMessage(c1))[0]), 'h1');
  const r = await outcome(session.request({ ':path': '/page' }));
  t.ok('status' in r && r.status === 200, 'a plain h2 request reaches the application');
  const h1 = await new Promise<string>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path: '/h1page', ca: TLS.cert, servername: 'localhost', agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
  t.equal(h1, 'app', 'a plain HTTP/1.1 request reaches the application');
  const other = await new Promise<number>((resolve, reject) => {
    https
      .request({ host: '127.0.0.1', port, path: '/', ca: TLS.cert, servername: 'localhost', agent: false, headers: { Connection: 'Upgrade', Upgrade: 'foo' } })
      .on('response', (res) => resolve(res.statusCode ?? 0))
      .on('upgrade', () => reject(new Error('upgraded')))
      .on('error', reject)
      .end();
  });
  t.equal(other, 400, 'an upgrade to another protocol, with no upgrade listener of the application: 400, not a hang');
  t.same(requests.sort(), ['1.1 GET /h1page', '2.0 GET /page']);
  t.notOk(appStreams.includes('CONNECT'), 'the WebSocket streams never reached the application');
  c1.close();
  c2.close();
  await once(c2, 'close');
  detach();
  const later = await h2session(`https://localhost:${port}`);
  t.teardown(() => later.destroy());
  t.equal(later.remoteSettings.enableConnectProtocol, false, 'detached: new sessions are not offered RFC 8441');
  const fallback = await connect(`wss://localhost:${port}/ws`, { http2: true, tls: { ...CLIENT_TLS } , handshakeTimeout: 3000 }).catch((e: Error) => e);
  t.ok(fallback instanceof HandshakeError, 'detached: the client fell back to HTTP/1.1, which nobody serves now');
});

t.test('handleStream from an http2.createServer (h2c) stream listener', async (t) => {
  const h2server = http2.createServer({ settings: { enableConnectProtocol: true } });
  const wss = createServer({ noServer: true, heartbeat: false }, (conn) => conn.on('message', (d) => conn.send(`got ${d}`)));
  h2server.on('stream', (stream, headers) => {
    if (headers[':method'] === 'CONNECT') wss.handleStream(stream, headers);
    else stream.respond({ ':status': 404 }, { endStream: true });
  });
  await new Promise<void>((r) => h2server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    h2server.close();
    return wss.close({ timeout: 200 });
  });
  const port = (h2server.address() as { port: number }).port;
  const c = await connect(`ws://127.0.0.1:${port}/`, { http2: true });
  c.send('x');
  t.equal(String((await nextMessage(c))[0]), 'got x');
  c.close();
  t.throws(() => wss.handleStream({} as never, {}), TypeError);
  t.throws(() => wss.attachHttp2({} as never), TypeError);
});

t.test('subprotocol, permessage-deflate and authenticate negotiated over a stream', async (t) => {
  const { url } = await echoServer(t, 'h2', {
    perMessageDeflate: { threshold: 0 },
    selectProtocol: (offered) => (offered.includes('chat.v2') ? 'chat.v2' : undefined),
    authenticate: (req): AuthAcceptance | AuthRejection => {
      if (req.header('authorization') !== 'Bearer good') return { reject: true, status: 403, message: 'no', headers: { 'X-Why': 'token' } };
      return { principal: { user: 'ann' }, headers: { 'X-Session': 'abc' } };
    },
  });
  const c = await connect(url, { http2: true, tls: CLIENT_TLS, protocols: ['chat.v1', 'chat.v2'], perMessageDeflate: true, headers: { Authorization: 'Bearer good' } });
  t.equal(c.transport, 'h2');
  t.equal(c.protocol, 'chat.v2', 'subprotocol selected');
  t.match(c.extensions, /permessage-deflate/, 'permessage-deflate agreed');
  const text = 'compressible '.repeat(2000);
  c.send(text);
  t.equal(String((await nextMessage(c))[0]), text, 'compressed echo');
  c.close();
  const refused = await connect(url, { http2: true, tls: CLIENT_TLS, headers: { Authorization: 'Bearer bad' } }).catch((e: HandshakeError) => e);
  t.ok(refused instanceof HandshakeError && refused.status === 403, 'authenticate refusal: its status over h2');
  // The raw answer carries authenticate's headers, lower-cased.
  const session = await h2session(url.replace(/^wss/, 'https'));
  t.teardown(() => session.destroy());
  const r = await outcome(session.request(connectHeaders('/', { authorization: 'Bearer bad' }, 'https'), { endStream: false }));
  t.ok('status' in r && r.status === 403 && r.headers['x-why'] === 'token', 'status 403 with the hook headers');
  if ('status' in r) t.equal(await r.body, 'no', 'and the message as body, then END_STREAM');
  const ok = await outcome(session.request(connectHeaders('/', { authorization: 'Bearer good' }, 'https'), { endStream: false }));
  t.ok('status' in ok && ok.status === 200 && ok.headers['x-session'] === 'abc' && ok.headers['sec-websocket-accept'] === undefined, '200 with the hook headers, no sec-websocket-accept');
});

t.test('principal and request facts reach the connection event; maxConnections gives 503', async (t) => {
  const events: Array<{ principal: unknown; host: string | undefined; room: string | null; secure: boolean }> = [];
  const server = createServer({ heartbeat: false, http2: { ...TLS }, maxConnections: 1, authenticate: () => ({ principal: 'p1' }) }, (conn, req) => {
    events.push({ principal: conn.principal, host: req.headers.host, room: req.query.get('room'), secure: req.secure });
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const c = await connect(`wss://localhost:${port}/x?room=7`, { http2: true, tls: CLIENT_TLS });
  t.same(events, [{ principal: 'p1', host: `localhost:${port}`, room: '7', secure: true }]);
  const second = await connect(`wss://localhost:${port}/x`, { http2: true, tls: CLIENT_TLS }).catch((e: HandshakeError) => e);
  t.ok(second instanceof HandshakeError && second.status === 503, 'second WebSocket: 503');
  c.close();
});

t.test('one session per origin for many WebSockets; closed after the idle time', async (t) => {
  const { url, sessions, openSessions, server } = await echoServer(t, 'h2');
  const ports = new Set<number | undefined>();
  server.on('connection', (_c, req) => ports.add(req.socket.remotePort));
  const before = clientSessionCount();
  const conns = await Promise.all(Array.from({ length: 20 }, () => connect(url, { http2: true, tls: CLIENT_TLS })));
  t.equal(sessions(), 1, 'twenty WebSockets, one HTTP/2 session');
  t.equal(ports.size, 1, "the server sees one TCP connection: every request's socket.remotePort is the same");
  t.ok([...ports][0]! > 0, 'a real port');
  t.equal(clientSessionCount(), before + 1, 'the client pooled one session for them');
  await Promise.all(conns.map(async (c, i) => {
    c.send(`m${i}`);
    t.equal(String((await nextMessage(c))[0]), `m${i}`);
  }));
  for (const c of conns) c.close();
  await Promise.all(conns.map((c) => (c.readyState === 3 ? null : once(c, 'close'))));
  await until(() => openSessions() === 0, 5000, 'the idle session closed');
  const again = await connect(url, { http2: true, tls: CLIENT_TLS });
  t.equal(sessions(), 2, 'a new session after the idle one closed');
  again.close();
});

t.test('the browser-style WebSocket takes { http2: true }', async (t) => {
  const { url, server } = await echoServer(t, 'h2c');
  const transports: string[] = [];
  server.on('connection', (c) => transports.push(c.transport));
  const ws = new WebSocket(url, 'p', { http2: true });
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  ws.send('hi');
  const data = await new Promise((resolve) => (ws.onmessage = (e) => resolve(e.data)));
  t.equal(data, 'hi');
  t.same(transports, ['h2']);
  ws.close();
  await new Promise((resolve) => (ws.onclose = resolve));
});

t.test('client falls back to HTTP/1.1: server without the setting, ALPN http/1.1, and an h1-only server for h2c', async (t) => {
  // An h2 server that does not advertise RFC 8441, with HTTP/1.1 upgrades through handleUpgrade.
  const h2server = http2.createSecureServer({ ...TLS, allowHTTP1: true });
  const wss = createServer({ noServer: true, heartbeat: false }, (conn) => conn.on('message', (d) => conn.send(d)));
  h2server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head));
  await new Promise<void>((r) => h2server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    h2server.close();
    return wss.close({ timeout: 200 });
  });
  const port = (h2server.address() as { port: number }).port;
  const a = await connect(`wss://localhost:${port}`, { http2: true, tls: { ...CLIENT_TLS } });
  t.equal(a.transport, 'http/1.1', 'no ENABLE_CONNECT_PROTOCOL in SETTINGS: HTTP/1.1');
  a.close();
  // A TLS server without HTTP/2 (ALPN gives nothing or http/1.1).
  const plain = createServer({ heartbeat: false, tls: TLS }, (conn) => conn.on('message', (d) => conn.send(d)));
  const { port: p2 } = await plain.listen(0, '127.0.0.1');
  t.teardown(() => plain.close({ timeout: 200 }));
  const b = await connect(`wss://localhost:${p2}`, { http2: true, tls: { ...CLIENT_TLS } });
  t.equal(b.transport, 'http/1.1', 'ALPN without h2: HTTP/1.1');
  b.send('x');
  t.equal(String((await nextMessage(b))[0]), 'x');
  b.close();
  // A cleartext server that only speaks HTTP/1.1 answers the h2c preface with an error: HTTP/1.1.
  const h1 = createServer({ heartbeat: false }, (conn) => conn.on('message', (d) => conn.send(d)));
  const { port: p3 } = await h1.listen(0, '127.0.0.1');
  t.teardown(() => h1.close({ timeout: 200 }));
  const c = await connect(`ws://127.0.0.1:${p3}`, { http2: true });
  t.equal(c.transport, 'http/1.1', 'h2c preface not understood: HTTP/1.1');
  c.close();
});

t.test('1,000 WebSockets on one session, each echoing', { timeout: 120_000 }, async (t) => {
  const { url, sessions, server } = await echoServer(t, 'h2c');
  const conns = await Promise.all(Array.from({ length: 1000 }, () => connect(url, { http2: true })));
  t.equal(sessions(), 1, 'one session');
  t.equal(server.clients.size, 1000, 'the server holds 1,000 WebSockets');
  const replies = await Promise.all(
    conns.map((c, i) => {
      const p = nextMessage(c);
      c.send(`#${i}`);
      return p.then(([d]) => String(d) === `#${i}`);
    }),
  );
  t.equal(replies.filter(Boolean).length, 1000, 'every WebSocket got its own echo');
  for (const c of conns) c.close();
  await Promise.all(conns.map((c) => (c.readyState === 3 ? null : once(c, 'close', 30_000))));
  await until(() => server.clients.size === 0, 30_000, 'server side closed');
});

t.test('an idle client session does not keep the process alive', async (t) => {
  const server = createServer({ heartbeat: false, http2: { cleartext: true } });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const script = `
    import { connect } from ${JSON.stringify(path.resolve(import.meta.dirname, '../lib/index.ts'))};
    const c = await connect('ws://127.0.0.1:${port}/', { http2: true });
    console.log(c.transport);
    c.close();
    c.on('close', () => console.log('closed'));
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const [code] = await once<[number]>(child, 'exit', 30_000);
  t.equal(code, 0, out);
  t.match(out, /h2\s+closed/, 'the process exited by itself after the close');
});

t.test('nobody listening: the error is the network one, and it does not mark the origin as HTTP/1.1-only', async (t) => {
  const probe = createServer({ heartbeat: false });
  const { port } = await probe.listen(0, '127.0.0.1');
  await probe.close({ timeout: 100 });
  const e = await connect(`ws://127.0.0.1:${port}/`, { http2: true }).catch((error: HandshakeError) => error);
  t.ok(e instanceof HandshakeError && e.code === 'ECONNREFUSED', `HandshakeError with code ECONNREFUSED (${(e as HandshakeError).code})`);
  const server = createServer({ heartbeat: false, http2: { cleartext: true }, port, host: '127.0.0.1' });
  t.teardown(() => server.close({ timeout: 200 }));
  await once(server, 'listening');
  const c = await connect(`ws://127.0.0.1:${port}/`, { http2: true });
  t.equal(c.transport, 'h2', 'once a server is there, the next connect uses HTTP/2');
  c.close();
});
