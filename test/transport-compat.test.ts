/**
 * What ws-style and browser-style code expects of the engine (issue 18): ready-state constants on connections,
 * `req.socket` on the standalone server's request, Blob sends kept in order, and `bufferedAmount` as the WHATWG
 * spec counts it on the browser-style WebSocket (payload bytes), while the engine's connection counts frame bytes.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, WebSocket, WebSocketConnection, type IncomingUpgrade, type ServerOptions, type WebSocketServer } from '../lib/index.js';
import { once, until } from './helpers/net.js';

/** A server recording every message (as text, binary ones prefixed `bin:`) and close of its connections. */
async function recordingServer(t: Test, options: ServerOptions = {}): Promise<{ server: WebSocketServer; port: number; log: string[] }> {
  const log: string[] = [];
  const server = createServer({ heartbeat: false, ...options }, (conn) => {
    conn.on('message', (data, isBinary) => log.push(isBinary ? `bin:${data.toString()}` : data.toString()));
    conn.on('close', (code) => log.push(`close ${code}`));
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  return { server, port, log };
}

function opened(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error('WebSocket failed to open'));
  });
}

t.test('connections have CONNECTING, OPEN, CLOSING, CLOSED (static and instance), matching readyState', async (t) => {
  t.same([WebSocketConnection.CONNECTING, WebSocketConnection.OPEN, WebSocketConnection.CLOSING, WebSocketConnection.CLOSED], [0, 1, 2, 3]);
  const { server, port } = await recordingServer(t);
  const accepted = once<[WebSocketConnection]>(server, 'connection');
  const c = await connect(`ws://127.0.0.1:${port}/`);
  const [conn] = await accepted;
  for (const x of [conn, c]) {
    t.same([x.CONNECTING, x.OPEN, x.CLOSING, x.CLOSED], [0, 1, 2, 3], 'on the instance');
    t.equal(x.readyState, x.OPEN, 'open');
  }
  // graphql-ws's check before every send, and ws's usual one.
  t.ok(conn.readyState === conn.OPEN && conn.readyState === WebSocketConnection.OPEN);
  t.notOk(Object.keys(conn).includes('OPEN'), 'on the prototype: no field per connection');
  t.throws(() => {
    (conn as unknown as { OPEN: number }).OPEN = 5;
  }, TypeError, 'read-only');
  c.close(1000);
  t.equal(c.readyState, c.CLOSING, 'CLOSING once close() is called');
  await once(c, 'close');
  t.equal(c.readyState, c.CLOSED, 'CLOSED after the close event');
  await until(() => conn.readyState === conn.CLOSED);
});

t.test("the standalone server's request has socket: addresses, ports, family, encrypted", async (t) => {
  const requests: IncomingUpgrade[] = [];
  const { server, port } = await recordingServer(t);
  server.on('connection', (_conn, req) => requests.push(req));
  const c = await connect(`ws://127.0.0.1:${port}/`);
  await until(() => requests.length === 1);
  const req = requests[0];
  // ws-style code: `req.socket.remoteAddress` in the connection handler (threw a TypeError before: no socket).
  t.equal(req.socket.remoteAddress, '127.0.0.1');
  t.equal(req.socket.remotePort, (c as unknown as { socket: import('node:net').Socket }).socket.localPort, "the client's port");
  t.equal(req.socket.remoteFamily, 'IPv4');
  t.equal(req.socket.localAddress, '127.0.0.1');
  t.equal(req.socket.localPort, port);
  t.equal(req.socket.encrypted, false);
  t.ok(Object.isFrozen(req.socket), 'a frozen summary, not the socket the connection owns');
  t.equal(req.socket, req.socket, 'read once');
  t.equal((req as unknown as { toJSON(): IncomingUpgrade }).toJSON().socket.remotePort, req.socket.remotePort, 'in the JSON form too');
  c.close();
  await once(c, 'close');
});

t.test('req.socket through handleUpgrade, and encrypted on wss', async (t) => {
  const wss = createServer({ noServer: true, heartbeat: false });
  const requests: Array<IncomingUpgrade['socket']> = [];
  // Read in the handler, as ws code does: the addresses are read from the socket on first use, and are gone once
  // it is closed.
  wss.on('connection', (conn, req) => {
    requests.push(req.socket);
    conn.close();
  });
  const http = createHttpServer();
  http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  t.teardown(async () => {
    await wss.close({ timeout: 100 });
    http.close();
  });
  const port = (http.address() as { port: number }).port;
  const c = await connect(`ws://127.0.0.1:${port}/`);
  await once(c, 'close');
  t.equal(requests[0].remoteAddress, '127.0.0.1');
  t.equal(requests[0].localPort, port);

  const dir = mkdtempSync(join(tmpdir(), 'wsengine-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  } catch (error) {
    t.fail(`openssl is needed to make a test certificate: ${(error as Error).message}`);
    return;
  }
  const cert = readFileSync(join(dir, 'cert.pem'));
  const secure = createServer({ heartbeat: false, tls: { key: readFileSync(join(dir, 'key.pem')), cert } });
  const tlsRequests: Array<IncomingUpgrade['socket']> = [];
  secure.on('connection', (conn, req) => {
    tlsRequests.push(req.socket);
    conn.close();
  });
  const { port: tlsPort } = await secure.listen(0, '127.0.0.1');
  t.teardown(() => secure.close({ timeout: 100 }));
  const s = await connect(`wss://localhost:${tlsPort}/`, { tls: { ca: cert } });
  await once(s, 'close');
  t.equal(tlsRequests[0].encrypted, true, 'encrypted on wss');
  t.equal(tlsRequests[0].remoteAddress, '127.0.0.1');
});

t.test('WebSocket.send(Blob) keeps the order of the sends, and a close() waits for it', async (t) => {
  const { port, log } = await recordingServer(t);
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  await opened(ws);
  ws.send('first');
  ws.send(new Blob(['second']));
  ws.send('third');
  const bytes = Buffer.from('fourth');
  ws.send(bytes);
  bytes.write('FOURTH'); // taken at the call, as browsers take it, even while waiting behind a Blob
  ws.send(new Blob(['fifth']));
  ws.send(new Blob(['sixth']));
  ws.send('seventh');
  ws.close(1000);
  ws.send('after close'); // dropped: the socket is closing
  await until(() => log.includes('close 1000'), 5000, 'the close');
  t.same(log, ['first', 'bin:second', 'third', 'bin:fourth', 'bin:fifth', 'bin:sixth', 'seventh', 'close 1000']);
});

t.test('WebSocket.bufferedAmount counts payload bytes (WHATWG), not frame headers', async (t) => {
  const { port, log } = await recordingServer(t);
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  await opened(ws);
  t.equal(ws.bufferedAmount, 0);
  ws.send(Buffer.alloc(8 * 1024 * 1024));
  t.equal(ws.bufferedAmount, 8 * 1024 * 1024, '8 MiB is 8,388,608 (8,388,622 with the header and mask before)');
  ws.send('héllo');
  t.equal(ws.bufferedAmount, 8 * 1024 * 1024 + 6, 'text counts its UTF-8 bytes');
  ws.send(new Blob(['abc']));
  t.equal(ws.bufferedAmount, 8 * 1024 * 1024 + 9, "a Blob counts its size at once, while it is read");
  await until(() => ws.bufferedAmount === 0, 10_000, 'the buffer to drain');
  await until(() => log.length === 3, 5000, 'the messages');
  t.same(log.slice(1), ['héllo', 'bin:abc']);
  ws.close();
  await new Promise((r) => (ws.onclose = r));
  ws.send('while closed');
  t.equal(ws.bufferedAmount, 12, 'sends after close count and are never sent, as the spec says');
});

t.test("the engine connection's bufferedAmount counts frame bytes (documented; the hub's send budget reads it)", async (t) => {
  const { server, port } = await recordingServer(t);
  const accepted = once<[WebSocketConnection]>(server, 'connection');
  const c = await connect(`ws://127.0.0.1:${port}/`);
  const [conn] = await accepted;
  conn.send(Buffer.alloc(1000));
  t.equal(conn.bufferedAmount, 1004, 'server: 1,000 bytes and a 4-byte header');
  c.send(Buffer.alloc(1000));
  t.equal(c.bufferedAmount, 1008, 'client: 1,000 bytes, a 4-byte header and the 4-byte mask');
  await until(() => conn.bufferedAmount === 0 && c.bufferedAmount === 0);
  c.close();
  await once(c, 'close');
});
