/**
 * A peer that leaves with FIN alone (TCP half-close, no close frame): the connection finishes writing what is
 * queued, ends its side, closes, and reports 1006 — on sockets from `node:http`/`node:https` (made with
 * `allowHalfOpen`, handed to `handleUpgrade`), on the standalone server's, over TLS, and on the client. Issue 16,
 * item 4: such a connection used to stay open for good (CLOSE-WAIT) when the heartbeat was off.
 *
 * test/read-path-stream.test.ts runs this file again with WSENGINE_READ_PATH=stream.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { connect, createServer, HeadParser, type ServerOptions, type WebSocketConnection, type WebSocketServer } from '../lib/index.js';
import { createHub } from '../lib/hub/index.js';
import type { MemoryBackplane } from '../lib/hub/backplane.js';
import { MASK, rawFrame } from './helpers/core.js';
import { decodeFrames, once, until, upgradeHead } from './helpers/net.js';

/** Generous: the close comes within milliseconds, but the machine may be loaded. */
const PROMPTLY = 2000;

const socketOf = (c: WebSocketConnection): Socket => (c as unknown as { socket: Socket }).socket;

/** A raw client on `socket` (TCP or TLS, connected or connecting): the upgrade by hand, then what follows. */
interface RawClient {
  socket: Duplex;
  /** Bytes received after the 101 head. */
  received(): Buffer;
  /** Resolve when the server ends its side, and when the socket is closed. */
  ended: Promise<void>;
  closed: Promise<void>;
}

async function upgradeOver(socket: Duplex, path = '/'): Promise<RawClient> {
  socket.on('error', () => undefined);
  const ended = new Promise<void>((resolve) => socket.once('end', () => resolve()));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const parser = new HeadParser('response');
  const after: Buffer[] = [];
  let upgraded = false;
  const head = new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      if (upgraded) return void after.push(chunk);
      const h = parser.push(chunk);
      if (h === null) return;
      if (h.status !== 101) return reject(new Error(`status ${h.status}`));
      upgraded = true;
      if (parser.rest.length > 0) after.push(Buffer.from(parser.rest));
      resolve();
    });
    void closed.then(() => reject(new Error('closed before the 101')));
  });
  socket.write(upgradeHead(path));
  await head;
  return { socket, ended, closed, received: () => Buffer.concat(after) };
}

const rawTcp = (port: number, path?: string): Promise<RawClient> => upgradeOver(netConnect({ host: '127.0.0.1', port }), path);

/** A `node:http` server whose upgrades go to `wss.handleUpgrade`; resolves with its port. */
async function attach(t: Test, wss: WebSocketServer, http: HttpServer = createHttpServer()): Promise<number> {
  http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(async () => {
    await wss.close({ timeout: 200 });
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
  });
  return (http.address() as { port: number }).port;
}

/** The server's connections, as they come. */
function collect(wss: WebSocketServer): WebSocketConnection[] {
  const conns: WebSocketConnection[] = [];
  wss.on('connection', (c: WebSocketConnection) => conns.push(c));
  return conns;
}

/** The client half-closes; the server's connection must close with 1006 and its socket be gone on both ends. */
async function halfCloseClosesPromptly(t: Test, client: RawClient, conns: WebSocketConnection[]): Promise<void> {
  await until(() => conns.length === 1, PROMPTLY, 'the connection');
  const conn = conns[0];
  const closed = once<[number, string]>(conn, 'close', PROMPTLY);
  client.socket.end();
  const [code, reason] = await closed;
  t.equal(code, 1006, 'abnormal closure: the peer left without a close frame');
  t.equal(reason, '');
  t.equal(conn.readyState, 3, 'CLOSED');
  t.ok(socketOf(conn).destroyed, 'the server socket is destroyed');
  await Promise.all([client.ended, client.closed]);
  t.pass('the client saw our FIN and its socket closed: nothing left in CLOSE-WAIT');
}

t.test('handleUpgrade on node:http: a FIN alone closes the connection with 1006', async (t) => {
  const wss = createServer({ noServer: true, heartbeat: false });
  const conns = collect(wss);
  const port = await attach(t, wss);
  await halfCloseClosesPromptly(t, await rawTcp(port), conns);
});

t.test('the standalone server: a FIN alone closes the connection with 1006', async (t) => {
  const wss = createServer({ heartbeat: false });
  const conns = collect(wss);
  const { port } = await wss.listen(0, '127.0.0.1');
  t.teardown(() => wss.close({ timeout: 200 }));
  await halfCloseClosesPromptly(t, await rawTcp(port), conns);
});

t.test('handleUpgrade on node:https (TLS): a FIN alone closes the connection with 1006', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsengine-fin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  } catch (error) {
    t.fail(`openssl is needed to make a test certificate: ${(error as Error).message}`);
    return;
  }
  const https = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) });
  const wss = createServer({ noServer: true, heartbeat: false });
  const conns = collect(wss);
  const port = await attach(t, wss, https);
  const client = await upgradeOver(tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }));
  await halfCloseClosesPromptly(t, client, conns);
});

t.test('a FIN while the application has paused the connection is seen all the same', async (t) => {
  // Paused, the socket still reads up to its stream's high-water mark (on the direct read path too): a FIN with
  // nothing before it is seen at once.
  for (const where of ['node:http', 'standalone'] as const) {
    await t.test(where, async (t) => {
      const wss = createServer({ noServer: where === 'node:http', heartbeat: false });
      const conns = collect(wss);
      wss.on('connection', (c: WebSocketConnection) => c.pause());
      let port: number;
      if (where === 'node:http') port = await attach(t, wss);
      else {
        port = (await wss.listen(0, '127.0.0.1')).port;
        t.teardown(() => wss.close({ timeout: 200 }));
      }
      await halfCloseClosesPromptly(t, await rawTcp(port), conns);
    });
  }
});

t.test('what was queued as the FIN came is still written before our FIN', async (t) => {
  const big = Buffer.alloc(4 * 1024 * 1024, 7);
  const wss = createServer({ noServer: true, heartbeat: false });
  const http = createHttpServer();
  let conn: WebSocketConnection | undefined;
  wss.on('connection', (c: WebSocketConnection) => (conn = c));
  // Runs before the connection's own `end` listener: the message is queued as the FIN arrives.
  http.on('upgrade', (_req, socket) => socket.prependListener('end', () => conn!.send(big)));
  const port = await attach(t, wss, http);
  const client = await rawTcp(port);
  await until(() => conn !== undefined, PROMPTLY, 'the connection');
  const closed = once<[number]>(conn!, 'close', 10_000);
  client.socket.end();
  await client.ended;
  const frames = decodeFrames(client.received());
  t.equal(frames.length, 1, 'one frame');
  t.equal(frames[0]?.[1].length, big.length, 'the whole 4 MiB message came before the FIN');
  t.equal((await closed)[0], 1006);
});

t.test('a FIN while authenticate is still deciding: the connection closes with 1006 once made', async (t) => {
  let sawEnd!: () => void;
  const ended = new Promise<void>((resolve) => (sawEnd = resolve));
  const options: ServerOptions = { noServer: true, heartbeat: false, authenticate: async () => (await ended, { principal: 'p' }) };
  const wss = createServer(options);
  const conns = collect(wss);
  const http = createHttpServer();
  const port = await attach(t, wss, http);
  // The verdict waits for the FIN to be read (or, should the paused socket not read it, a second).
  http.on('upgrade', (_req, socket) => {
    socket.once('end', sawEnd);
    setTimeout(sawEnd, 1000);
  });
  const socket = netConnect({ host: '127.0.0.1', port });
  const client = upgradeOver(socket);
  await once(socket, 'connect');
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.end();
  await client.catch(() => undefined);
  await until(() => conns.length === 1, PROMPTLY, 'the connection');
  if (conns[0].readyState !== 3) await once(conns[0], 'close', PROMPTLY);
  t.ok(socketOf(conns[0]).destroyed, 'the server socket is destroyed');
});

t.test('the client: a server FIN after its close frame, read while paused, ends the connection with its code', async (t) => {
  // The server answers the handshake, later sends a message, its close frame and its FIN at once; the client pauses
  // on the message, so the close frame is handled while paused: it must read on to see the FIN.
  const raw = createNetServer((socket) => {
    let head = '';
    socket.on('error', () => undefined);
    socket.on('data', (c) => {
      head += c.toString('latin1');
      const m = /sec-websocket-key: *(\S+)/i.exec(head);
      if (!head.includes('\r\n\r\n') || m === null) return;
      head = '';
      const accept = createHash('sha1').update(m[1] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      setTimeout(() => socket.end(Buffer.concat([rawFrame({ opcode: 1, payload: 'x' }), rawFrame({ opcode: 8, payload: Buffer.from([0x0f, 0xa0]) })])), 100);
    });
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => raw.close());
  const client = await connect(`ws://127.0.0.1:${(raw.address() as { port: number }).port}`, { closeTimeout: 30_000 });
  t.teardown(() => client.terminate());
  client.on('message', () => client.pause());
  const [code] = await once<[number]>(client, 'close', PROMPTLY);
  t.equal(code, 4000, "the server's close code: the closing handshake completed");
});

t.test('the hub on node:http: a client that leaves with FIN alone is gone from stats, presence and user counts', async (t) => {
  const hub = createHub({ heartbeat: false, authenticate: (token) => (token === 'secret-a' ? { user: 'alice' } : null) });
  const http = createHttpServer();
  http.on('upgrade', (req, socket, head) => hub.handleUpgrade(req, socket, head));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(async () => {
    await hub.close({ timeout: 200 });
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
  });
  const port = (http.address() as { port: number }).port;
  const backplane = hub.backplane as MemoryBackplane;
  const client = await rawTcp(port, '/?token=secret-a');
  client.socket.write(rawFrame({ opcode: 1, payload: JSON.stringify({ type: 'subscribe', data: { topic: 'room.1', presence: true }, request_id: 1 }), mask: MASK }));
  await until(() => decodeFrames(client.received()).some(([, p]) => /"ack"/.test(p.toString())), PROMPTLY, 'the subscription ack');
  t.equal(hub.stats().connections, 1);
  t.equal((await hub.presence('room.1')).connections, 1);
  t.equal(backplane.counts.users, 1);
  client.socket.end();
  await until(() => hub.stats().connections === 0, PROMPTLY, 'the hub to drop the connection');
  t.equal((await hub.presence('room.1')).connections, 0, 'no presence left');
  t.equal(hub.stats().users, 0, 'no user left');
  await until(() => backplane.counts.users === 0, PROMPTLY, "the user's connection count to be released");
  await Promise.all([client.ended, client.closed]);
  t.pass('the client saw our FIN and its socket closed');
});
