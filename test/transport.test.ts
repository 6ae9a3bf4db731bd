import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  connect,
  createServer,
  HandshakeError,
  prepare,
  WebSocket,
  type AuthAcceptance,
  type AuthRejection,
  type ServerOptions,
  type WebSocketConnection,
  type WebSocketServer,
} from '../lib/index.js';
import { rawFrame, MASK } from './helpers/core.js';
import { decodeFrames, once, rawConnect, rawUpgrade, until, upgradeHead } from './helpers/net.js';

async function echoServer(t: Test, options: ServerOptions = {}): Promise<{ server: WebSocketServer; port: number; url: string }> {
  const server = createServer({ heartbeat: false, ...options }, (conn) => {
    conn.on('message', (data, isBinary) => conn.send(data, { binary: isBinary }));
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  return { server, port, url: `ws://127.0.0.1:${port}` };
}

function nextMessage(conn: WebSocketConnection): Promise<[Buffer, boolean]> {
  return once<[Buffer, boolean]>(conn, 'message');
}

t.test('echo: text, binary, empty, typed arrays; close codes both ways', async (t) => {
  const { url } = await echoServer(t);
  const c = await connect(url);
  c.send('héllo 🌍');
  t.same((await nextMessage(c)).map(String), ['héllo 🌍', 'false']);
  c.send(new Uint8Array([1, 2, 3]));
  const [bin, isBinary] = await nextMessage(c);
  t.same([...bin], [1, 2, 3]);
  t.equal(isBinary, true);
  c.send('');
  t.equal((await nextMessage(c))[0].length, 0);
  c.send(new Float32Array([1.5]).buffer);
  t.equal((await nextMessage(c))[0].readFloatLE(0), 1.5);
  c.close(4000, 'done');
  const [code] = await once<[number, string]>(c, 'close');
  t.equal(code, 4000, 'the server echoed our code');
  t.equal(c.readyState, 3);
});

t.test('server-initiated close reaches the client with code and reason', async (t) => {
  const server = createServer({ heartbeat: false }, (conn) => conn.close(4001, 'bye ✓'));
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const c = await connect(`ws://127.0.0.1:${port}`);
  const [code, reason] = await once<[number, string]>(c, 'close');
  t.same([code, reason], [4001, 'bye ✓']);
});

t.test('subprotocol selection, principal from authenticate, extra 101 headers', async (t) => {
  let seen: unknown;
  const server = createServer(
    {
      heartbeat: false,
      selectProtocol: (offered) => offered.find((p) => p === 'chat.v2'),
      authenticate: async (req): Promise<AuthAcceptance | AuthRejection> => {
        await new Promise((r) => setTimeout(r, 5));
        const token = req.header('authorization');
        if (token !== 'Bearer good') return { reject: true, status: 401, message: 'bad token', headers: { 'WWW-Authenticate': 'Bearer' } };
        return { principal: { user: 'ada', room: req.query.get('room') }, headers: { 'X-Session': 's1' } };
      },
    },
    (conn) => {
      seen = conn.principal;
      conn.send(conn.protocol);
    },
  );
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const c = await connect(`ws://127.0.0.1:${port}/?room=7`, { protocols: ['chat.v1', 'chat.v2'], headers: { Authorization: 'Bearer good' } });
  t.equal(c.protocol, 'chat.v2');
  t.equal(String((await nextMessage(c))[0]), 'chat.v2');
  t.same(seen, { user: 'ada', room: '7' });
  c.close();
  const refused = await connect(`ws://127.0.0.1:${port}/`, { headers: { Authorization: 'Bearer bad' } }).catch((e: unknown) => e);
  t.ok(refused instanceof HandshakeError);
  t.equal((refused as HandshakeError).status, 401);
  const raw = await rawUpgrade(port, '/', ['Authorization: Bearer bad']);
  t.equal(raw.head.status, 401);
  t.same(raw.head.headers.get('www-authenticate'), ['Bearer']);
  const none = await connect(`ws://127.0.0.1:${port}/`, { headers: { Authorization: 'Bearer good' }, protocols: ['other'] });
  t.equal(none.protocol, '', 'no protocol echoed when none acceptable');
  none.close();
});

t.test('plain HTTP requests: 426 by default, or the application handler', async (t) => {
  const { port } = await echoServer(t);
  const raw = await rawConnect(port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
  await raw.closed;
  t.match(raw.all().toString(), /^HTTP\/1\.1 426 Upgrade Required\r\n/);
  t.match(raw.all().toString(), /Sec-WebSocket-Version: 13/);
  const { port: p2 } = await echoServer(t, { httpHandler: (req) => ({ status: 200, body: `ok ${req.method} ${req.path}`, headers: { 'Content-Type': 'text/html' } }) });
  const raw2 = await rawConnect(p2, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
  await raw2.closed;
  t.match(raw2.all().toString(), /^HTTP\/1\.1 200 OK\r\n/);
  t.match(raw2.all().toString(), /Content-Type: text\/html\r\n/);
  t.match(raw2.all().toString(), /\r\n\r\nok GET \/health$/);
});

t.test('path, origin allow-list and connection limit refusals', async (t) => {
  const { port, server } = await echoServer(t, { path: '/ws', origins: ['https://app.example'], maxConnections: 1 });
  t.equal((await rawUpgrade(port, '/other', ['Origin: https://app.example'])).head.status, 404);
  t.equal((await rawUpgrade(port, '/ws')).head.status, 403, 'no origin');
  t.equal((await rawUpgrade(port, '/ws', ['Origin: null'])).head.status, 403, 'null origin');
  t.equal((await rawUpgrade(port, '/ws', ['Origin: https://evil.example'])).head.status, 403);
  const first = await rawUpgrade(port, '/ws', ['Origin: https://app.example']);
  t.equal(first.head.status, 101);
  await until(() => server.clients.size === 1);
  t.equal((await rawUpgrade(port, '/ws', ['Origin: https://app.example'])).head.status, 503, 'over maxConnections');
  first.socket.destroy();
});

t.test('bad handshakes over a real socket (attack cases 16, 21); the server stays up', async (t) => {
  const { port, url } = await echoServer(t);
  const survivor = await connect(url);
  const many = ['GET / HTTP/1.1', 'Host: x', ...Array.from({ length: 2100 }, (_, i) => `X-H${i}: v`), '', ''].join('\r\n');
  const cases: Array<[string, string, number]> = [
    ['2,100 header lines', many, 431],
    ['missing Upgrade', upgradeHead().replace('Upgrade: websocket\r\n', ''), 426],
    ['duplicated Upgrade', upgradeHead('/', ['Upgrade: websocket']), 400],
    ['missing Connection', upgradeHead().replace('Connection: Upgrade\r\n', ''), 400],
    ['duplicated key', upgradeHead('/', ['Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==']), 400],
    ['key of 8 bytes', upgradeHead().replace('dGhlIHNhbXBsZSBub25jZQ==', 'AAAAAAAAAAA='), 400],
    ['version 12', upgradeHead().replace('Version: 13', 'Version: 12'), 426],
    ['duplicated version', upgradeHead('/', ['Sec-WebSocket-Version: 13']), 400],
    ['POST', upgradeHead().replace('GET', 'POST'), 405],
    ['garbage', '\x00\x01\x02 nonsense\r\n\r\n', 400],
  ];
  for (const [name, request, status] of cases) {
    const raw = await rawConnect(port, request);
    await raw.closed;
    t.match(raw.all().toString('latin1'), new RegExp(`^HTTP/1\\.1 ${status} `), name);
  }
  survivor.send('still here');
  t.equal(String((await nextMessage(survivor))[0]), 'still here', 'an open connection is unaffected');
  survivor.close();
});

t.test('a 64 KB Sec-WebSocket-Protocol of hostile characters is refused quickly (attack case 17)', async (t) => {
  // With compression on, so the extension header reaches its parser: a server without compression ignores a
  // malformed Sec-WebSocket-Extensions (it accepts no extension anyway), and an all-space protocol list is empty.
  const { port } = await echoServer(t, { maxHeadSize: 256 * 1024, perMessageDeflate: true });
  for (const filler of [' ', ',', '\\', '"', 'a,']) {
    const value = filler.repeat(65536 / filler.length);
    const raw = await rawConnect(port, upgradeHead('/', [`Sec-WebSocket-Protocol: ${value}`, `Sec-WebSocket-Extensions: x; a="${value}`]));
    await raw.closed;
    t.match(raw.all().toString('latin1'), /^HTTP\/1\.1 400 /, JSON.stringify(filler));
  }
  const big = await rawConnect(port, upgradeHead('/', [`X-Big: ${'a'.repeat(300 * 1024)}`]));
  await big.closed;
  t.match(big.all().toString('latin1'), /^HTTP\/1\.1 431 /, 'head over maxHeadSize');
});

t.test('slowloris and silence hit the handshake timeout (attack cases 19, 20)', async (t) => {
  const { port } = await echoServer(t, { handshakeTimeout: 300 });
  const silent = await rawConnect(port);
  const silentMs = await silent.closed;
  // The upper bounds only tell the configured 300 ms timer from the 10 s default, with room for a loaded machine.
  t.ok(silentMs >= 250 && silentMs < 8000, `silent socket closed after ${silentMs} ms (handshakeTimeout 300, default 10 s)`);
  const slow = await rawConnect(port);
  const head = upgradeHead();
  let i = 0;
  const drip = setInterval(() => {
    if (i < head.length && !slow.socket.destroyed) slow.socket.write(head[i++]);
  }, 20);
  const slowMs = await slow.closed;
  clearInterval(drip);
  t.ok(i < head.length, `dribbled ${i} of ${head.length} bytes before being cut`);
  t.ok(slowMs < 8000, `slowloris cut after ${slowMs} ms (handshakeTimeout 300, default 10 s)`);
});

t.test('handshake deadlines are per socket: one shared timer drops each silent socket at its own deadline only', async (t) => {
  const { server, port } = await echoServer(t, { handshakeTimeout: 400 });
  const timeouts: number[] = [];
  server.on('rejected', (status) => timeouts.push(status));
  const first = await rawConnect(port);
  // Upgraded while the first waits: a completed handshake leaves the deadline queue and is never dropped.
  const upgraded = await rawUpgrade(port);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const second = await rawConnect(port);
  const [firstMs, secondMs] = await Promise.all([first.closed, second.closed]);
  // Lower bounds with 50 ms of slack (the client starts its clock after the server's accept); upper bounds only
  // tell the 400 ms timeout from the 10 s default on a loaded machine.
  t.ok(firstMs >= 350 && firstMs < 8000, `first silent socket dropped after ${firstMs} ms (handshakeTimeout 400)`);
  t.ok(secondMs >= 350 && secondMs < 8000, `second silent socket dropped after ${secondMs} ms of its own, not at the first one's deadline`);
  t.same(timeouts, [408, 408], 'each drop reported once as a 408');
  t.equal(upgraded.socket.destroyed, false, 'the upgraded connection is still open');
  t.equal(server.clients.size, 1, 'and still counted');
  upgraded.socket.destroy();
});

t.test('a peer that ignores our close frame is destroyed after closeTimeout (attack case 25)', async (t) => {
  let conn: WebSocketConnection | undefined;
  const server = createServer({ heartbeat: false, closeTimeout: 200 }, (c) => (conn = c));
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 100 }));
  const raw = await rawUpgrade(port);
  await until(() => conn !== undefined);
  const closeEvent = once<[number, string]>(conn!, 'close');
  conn!.close(1000, 'leaving');
  const ms = await raw.closed;
  const [code] = await closeEvent;
  t.ok(ms < 8000, `destroyed after ${ms} ms (closeTimeout 200; the bound only tells it from the 10 s default)`);
  t.equal(code, 1006, 'no close frame came back: 1006');
  t.same(decodeFrames(raw.received()).map(([op, p]) => [op, p.readUInt16BE(0)]), [[8, 1000]], 'our close frame was sent');
});

t.test('a peer that never answers pings is cut by the heartbeat; a live one stays (attack case 23)', async (t) => {
  const server = createServer({ heartbeat: { interval: 100, timeout: 100 } });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 100 }));
  const live = await connect(`ws://127.0.0.1:${port}`);
  const dead = await rawUpgrade(port);
  const ms = await dead.closed;
  t.ok(ms < 20_000, `silent peer destroyed after ${ms} ms (interval + timeout 200; the bound only tells it from the 30 s default)`);
  t.ok(decodeFrames(dead.received()).some(([op]) => op === 9), 'it was pinged');
  t.equal(live.readyState, 1, 'the peer that answers pongs is still open');
  live.close();
});

t.test('application misuse throws at once (attack case 30)', async (t) => {
  const { url } = await echoServer(t);
  const c = await connect(url);
  t.throws(() => c.send(42 as never), TypeError);
  t.throws(() => c.send({} as never), TypeError);
  t.throws(() => c.ping(Buffer.alloc(200)), RangeError);
  t.throws(() => c.close(1006), RangeError);
  t.throws(() => c.close(1000, 'é'.repeat(62)), RangeError);
  await t.rejects(connect('ftp://x'), SyntaxError);
  await t.rejects(connect(url, { protocols: ['a b'] }), SyntaxError);
  await t.rejects(connect(url, { protocols: ['a', 'a'] }), SyntaxError);
  t.throws(() => createServer({ handshakeTimeout: -1 }), RangeError);
  t.throws(() => createServer({ authenticate: 'yes' as never }), TypeError);
  c.close();
  await once(c, 'close');
  t.equal(c.send('late'), false, 'sending after close is dropped, not thrown');
  await t.rejects(c.sendAsync('late'), /not open/);
});

t.test('graceful shutdown: 1012 to everyone, cooperative and stubborn peers both end (attack case 32)', async (t) => {
  const server = createServer({ heartbeat: false });
  const { port } = await server.listen(0, '127.0.0.1');
  const cooperative = await connect(`ws://127.0.0.1:${port}`);
  const stubborn = await rawUpgrade(port);
  await until(() => server.clients.size === 2);
  const closes: number[] = [];
  for (const c of server.clients) c.on('close', (code) => closes.push(code));
  const clientClose = once<[number, string]>(cooperative, 'close');
  const start = Date.now();
  await server.close({ code: 1012, reason: 'restart', timeout: 300 });
  const elapsed = Date.now() - start;
  t.same(await clientClose, [1012, 'restart']);
  t.equal(closes.length, 2, 'close events fired for both connections');
  t.ok(closes.includes(1006), 'the stubborn one was destroyed');
  // Not before the 300 ms timeout; the upper bound only tells it from the default shutdown timeout.
  t.ok(elapsed >= 250 && elapsed < 8000, `waited ${elapsed} ms for the stubborn peer`);
  await stubborn.closed;
  const after = await new Promise<string>((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve('connected')));
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
  t.equal(after, 'ECONNREFUSED', 'no longer accepting');
});

t.test('backpressure: send reports a full buffer, drain and sendAsync follow', async (t) => {
  let conn: WebSocketConnection | undefined;
  const server = createServer({ heartbeat: false }, (c) => (conn = c));
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 100 }));
  const client = await connect(`ws://127.0.0.1:${port}`);
  await until(() => conn !== undefined);
  client.pause();
  const chunk = Buffer.alloc(256 * 1024);
  let sent = 0;
  while (conn!.send(chunk) && sent < 2000) sent++;
  t.ok(sent < 2000, `send returned false after ${sent} messages`);
  t.ok(conn!.bufferedAmount > 0, `bufferedAmount ${conn!.bufferedAmount}`);
  let received = 0;
  client.on('message', () => received++);
  const drained = conn!.sendAsync(chunk);
  client.resume();
  await drained;
  t.pass('sendAsync resolved after drain');
  await until(() => received === sent + 2, 10000, 'all messages');
  client.close();
});

t.test('pause() right as a connection is made holds: on a handleUpgrade socket and on the client', async (t) => {
  const wss = createServer({ noServer: true, heartbeat: false });
  const http = createHttpServer();
  http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(async () => {
    await wss.close({ timeout: 100 });
    await new Promise((resolve) => http.close(resolve));
  });
  const serverGot: string[] = [];
  let serverConn: WebSocketConnection | undefined;
  wss.on('connection', (c: WebSocketConnection) => {
    serverConn = c;
    c.pause(); // before handleUpgrade resumes the socket it paused for the handshake
    c.on('message', (d) => serverGot.push(String(d)));
  });
  const client = await connect(`ws://127.0.0.1:${(http.address() as { port: number }).port}`);
  client.pause(); // before connect() starts reading, on the next turn of the event loop
  const clientGot: string[] = [];
  client.on('message', (d) => clientGot.push(String(d)));
  client.send('to the server');
  // Once connect() has fed what came with the 101 (the handshake's bytes) and would have started reading.
  await new Promise((resolve) => setImmediate(resolve));
  serverConn!.send('to the client');
  // Nothing may arrive while paused; a short wait can only miss a failure, never cause one.
  await new Promise((resolve) => setTimeout(resolve, 250));
  t.same(serverGot, [], 'the paused server connection read nothing');
  t.same(clientGot, [], 'the paused client read nothing');
  serverConn!.resume();
  client.resume();
  await until(() => serverGot.length === 1 && clientGot.length === 1, 5000, 'both messages after resume');
  t.same([serverGot, clientGot], [['to the server'], ['to the client']]);
  client.close();
});

t.test('async iteration yields messages in order and ends on close', async (t) => {
  const server = createServer({ heartbeat: false }, (c) => {
    for (let i = 0; i < 100; i++) c.send(`m${i}`);
    c.close(1000);
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 100 }));
  const client = await connect(`ws://127.0.0.1:${port}`, { iteratorHighWaterMark: 8 });
  const seen: string[] = [];
  for await (const { data } of client) {
    seen.push(data.toString());
    if (seen.length % 10 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  t.equal(seen.length, 100);
  t.equal(seen[99], 'm99');
});

t.test('handleUpgrade on a node:http server, two endpoints by path', async (t) => {
  const chat = createServer({ noServer: true, heartbeat: false }, (c) => c.send('chat'));
  const feed = createServer({ noServer: true, heartbeat: false }, (c) => c.send('feed'));
  const http = createHttpServer((_req, res) => res.end('plain http'));
  http.on('upgrade', (req, socket, head) => {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/chat') chat.handleUpgrade(req, socket, head);
    else if (path === '/feed') feed.handleUpgrade(req, socket, head);
    else socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const port = (http.address() as { port: number }).port;
  t.teardown(async () => {
    await Promise.all([chat.close({ timeout: 100 }), feed.close({ timeout: 100 })]);
    http.close();
  });
  const a = await connect(`ws://127.0.0.1:${port}/chat`);
  t.equal(String((await nextMessage(a))[0]), 'chat');
  const b = await connect(`ws://127.0.0.1:${port}/feed`);
  t.equal(String((await nextMessage(b))[0]), 'feed');
  await t.rejects(connect(`ws://127.0.0.1:${port}/nope`), HandshakeError);
  a.close();
  b.close();
  await Promise.all([once(a, 'close'), once(b, 'close')]);
});

t.test('a burst of small sends leaves corked, in very few segments', async (t) => {
  let conn: WebSocketConnection | undefined;
  const server = createServer({ heartbeat: false }, (c) => (conn = c));
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 100 }));
  const raw = await rawUpgrade(port);
  await until(() => conn !== undefined);
  let chunks = 0;
  raw.socket.on('data', () => chunks++);
  for (let i = 0; i < 200; i++) conn!.send(`message ${i}`);
  await until(() => decodeFrames(raw.received()).length === 200);
  t.ok(chunks <= 3, `200 frames arrived in ${chunks} reads`);
  raw.socket.destroy();
});

t.test('prepared messages: framed once, the same bytes to every connection', async (t) => {
  const server = createServer({ heartbeat: false });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 100 }));
  const peers = await Promise.all([1, 2, 3].map(() => connect(`ws://127.0.0.1:${port}`)));
  await until(() => server.clients.size === 3);
  const got = Promise.all(peers.map((p) => nextMessage(p)));
  const message = prepare(JSON.stringify({ topic: 'x', n: 1 }));
  for (const c of server.clients) t.equal(c.sendPrepared(message), true);
  t.same((await got).map(([d]) => d.toString()), Array(3).fill('{"topic":"x","n":1}'));
  const big = prepare(Buffer.alloc(100_000, 7));
  t.ok(Array.isArray(big.frame), 'a large prepared payload is referenced, not copied');
  for (const p of peers) p.close();
});

t.test('redirects: refused by default, followed on request with credentials dropped across origins (attack case 31)', async (t) => {
  const seenAuth: Array<string | undefined> = [];
  const target = createServer({ heartbeat: false, authenticate: (req) => (seenAuth.push(req.header('authorization')), {}) });
  const { port: targetPort } = await target.listen(0, '127.0.0.1');
  const http = createHttpServer();
  http.on('upgrade', (req, socket) => {
    const to = req.url === '/same' ? `ws://127.0.0.1:${(http.address() as { port: number }).port}/final` : `ws://127.0.0.1:${targetPort}/`;
    if (req.url === '/final') {
      seenAuth.push(req.headers.authorization);
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    socket.end(`HTTP/1.1 302 Found\r\nLocation: ${to}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const port = (http.address() as { port: number }).port;
  t.teardown(async () => {
    await target.close({ timeout: 100 });
    http.close();
  });
  const headers = { Authorization: 'Bearer secret' };
  const refused = await connect(`ws://127.0.0.1:${port}/away`, { headers }).catch((e: HandshakeError) => e);
  t.equal((refused as HandshakeError).status, 302, 'not followed by default');
  const followed = await connect(`ws://127.0.0.1:${port}/away`, { headers, followRedirects: true });
  t.equal(followed.readyState, 1);
  t.same(seenAuth, [undefined], 'Authorization dropped on the way to another origin');
  await connect(`ws://127.0.0.1:${port}/same`, { headers, followRedirects: true }).catch(() => {});
  t.same(seenAuth, [undefined, 'Bearer secret'], 'kept within the same origin');
  followed.close();
});

t.test('wss: TLS server and client', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsengine-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  } catch (error) {
    t.fail(`openssl is needed to make a test certificate: ${(error as Error).message}`);
    return;
  }
  const key = readFileSync(join(dir, 'key.pem'));
  const cert = readFileSync(join(dir, 'cert.pem'));
  const { port } = await echoServer(t, { tls: { key, cert } });
  const c = await connect(`wss://localhost:${port}/`, { tls: { ca: cert } });
  c.send('over tls');
  t.equal(String((await nextMessage(c))[0]), 'over tls');
  c.close();
  await t.rejects(connect(`wss://localhost:${port}/`), HandshakeError, 'an unknown CA is refused');
});

t.test('WHATWG WebSocket: events, binaryType, readyState, close', async (t) => {
  const { url } = await echoServer(t, { selectProtocol: (p) => p[0] });
  const ws = new WebSocket(url, ['proto.a']);
  t.equal(ws.readyState, WebSocket.CONNECTING);
  t.throws(() => ws.send('early'), { name: 'InvalidStateError' });
  await new Promise((r) => (ws.onopen = r));
  t.equal(ws.protocol, 'proto.a');
  ws.binaryType = 'arraybuffer';
  ws.send('text');
  const text = await new Promise<MessageEvent>((r) => (ws.onmessage = r));
  t.equal(text.data, 'text');
  ws.send(new Uint8Array([9, 8]));
  const bin = await new Promise<MessageEvent>((r) => (ws.onmessage = r));
  t.ok(bin.data instanceof ArrayBuffer);
  t.same([...new Uint8Array(bin.data as ArrayBuffer)], [9, 8]);
  ws.binaryType = 'blob';
  ws.send(new Uint8Array([7]));
  const blob = await new Promise<MessageEvent>((r) => (ws.onmessage = r));
  t.ok(blob.data instanceof Blob);
  t.throws(() => ws.close(1001), { name: 'InvalidAccessError' });
  const closed = new Promise<{ code: number; wasClean: boolean }>((r) => ws.addEventListener('close', (e) => r(e as unknown as { code: number; wasClean: boolean })));
  ws.close(3000, 'bye');
  t.equal(ws.readyState, WebSocket.CLOSING);
  const e = await closed;
  t.equal(e.code, 3000);
  t.equal(e.wasClean, true);
  t.equal(ws.readyState, WebSocket.CLOSED);
  const failed = new WebSocket('ws://127.0.0.1:1/');
  const events: string[] = [];
  failed.onerror = () => events.push('error');
  await new Promise((r) => (failed.onclose = (ev) => (events.push(`close ${ev.code}`), r(null))));
  t.same(events, ['error', 'close 1006']);
});

t.test('frames sent right behind the handshake are not lost (server and client)', async (t) => {
  const server = createServer({ heartbeat: false }, (c) => c.on('message', (d) => c.send(`echo:${d}`)));
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 100 }));
  const raw = await rawConnect(port, Buffer.concat([Buffer.from(upgradeHead()), rawFrame({ opcode: 1, payload: 'early', mask: MASK })]));
  await until(() => raw.all().includes('echo:early'));
  t.pass('the early frame was answered');
  raw.socket.destroy();
});

t.test('a ping flood from a peer that never reads is cut at the pong backlog cap (attack case 10)', async (t) => {
  let conn: WebSocketConnection | undefined;
  let closeCode = 0;
  const server = createServer({ heartbeat: false, maxPongBacklog: 64 * 1024 }, (c) => {
    conn = c;
    c.on('close', (code) => (closeCode = code));
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 100 }));
  const raw = await rawUpgrade(port);
  raw.socket.pause();
  const ping = rawFrame({ opcode: 9, payload: Buffer.alloc(125, 1), mask: MASK });
  const batch = Buffer.concat(Array(1000).fill(ping));
  const other = await connect(`ws://127.0.0.1:${port}`);
  for (let i = 0; i < 400 && !raw.socket.destroyed && closeCode === 0; i++) {
    if (!raw.socket.write(batch)) await Promise.race([once(raw.socket, 'drain', 2000).catch(() => {}), raw.closed]);
  }
  await until(() => closeCode !== 0, 10000, 'the flooding connection to close');
  t.equal(closeCode, 1006, 'cut without a handshake');
  t.ok(conn !== undefined);
  other.ping('still there?');
  const [pong] = await once<[Buffer]>(other, 'pong');
  t.equal(String(pong), 'still there?', 'another connection is unaffected');
  other.close();
});

t.test('client heartbeat: a server that stops answering pings is detected', async (t) => {
  // A raw "server" that completes the handshake and then never answers anything.
  const { createServer: createNet } = await import('node:net');
  const { acceptKey } = await import('../lib/index.js');
  const silent = createNet((socket) => {
    socket.once('data', (head) => {
      const key = /Sec-WebSocket-Key: (\S+)/i.exec(head.toString())![1];
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => silent.close());
  const port = (silent.address() as { port: number }).port;
  const c = await connect(`ws://127.0.0.1:${port}`, { heartbeat: { interval: 100, timeout: 100 } });
  const start = Date.now();
  // Generous for a loaded machine, yet well before the 30 s default heartbeat could be the one that fired.
  const [code] = await once<[number]>(c, 'close', 20_000);
  t.equal(code, 1006);
  t.ok(Date.now() - start < 20_000, `detected after ${Date.now() - start} ms (interval + timeout 200, default 30 s)`);
});

t.test('connect/disconnect cycles leave nothing behind: clients, heartbeat, handshakes, timers, handles (attack case 29)', async (t) => {
  const server = createServer({ heartbeat: { interval: 60_000, timeout: 60_000 } }, (c) => c.on('message', (d) => c.send(d)));
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 100 }));
  const resources = (): number => process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').length;
  const cycle = async (i: number): Promise<void> => {
    const c = await connect(`ws://127.0.0.1:${port}`);
    if (i % 3 === 0) {
      c.send('x');
      await once(c, 'message');
    }
    if (i % 5 === 0) c.terminate();
    else c.close(1000);
    await once(c, 'close');
  };
  for (let i = 0; i < 50; i++) await cycle(i); // warm-up
  await until(() => server.clients.size === 0);
  const before = resources();
  for (let round = 0; round < 20; round++) await Promise.all(Array.from({ length: 25 }, (_, i) => cycle(round * 25 + i)));
  await until(() => server.clients.size === 0, 5000, 'every server-side connection to close');
  const internals = server as unknown as { handshaking: Map<unknown, unknown>; heartbeat: { size: number } };
  t.equal(internals.handshaking.size, 0, 'no handshake state left');
  t.equal(internals.heartbeat.size, 0, 'the heartbeat watches nothing');
  await until(() => resources() <= before, 5000, 'handles and timers to settle');
  t.ok(resources() <= before, `active resources: ${before} before, ${resources()} after 500 cycles`);
});

t.test('maxConnections holds while handshakes authenticate concurrently', async (t) => {
  const server = createServer({ heartbeat: false, maxConnections: 2, authenticate: async () => (await new Promise((r) => setTimeout(r, 50)), {}) });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 100 }));
  const results = await Promise.all(Array.from({ length: 5 }, () => rawUpgrade(port).then((r) => r.head.status)));
  t.same(results.sort(), [101, 101, 503, 503, 503], 'two accepted, three refused although all passed the first check');
  t.equal(server.clients.size, 2);
});

t.test('client options are checked before connecting', async (t) => {
  await t.rejects(connect('ws://127.0.0.1:1/', { heartbeat: { interval: -1 } }), RangeError);
  await t.rejects(connect('ws://127.0.0.1:1/', { perMessageDeflate: { level: 42 } }), RangeError);
});
