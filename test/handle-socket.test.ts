/**
 * Handle sockets (lib/transport/handle-socket.ts): the server's own plain-TCP listener accepts Node's TCP handles
 * without a `net.Socket` each. What must hold on them, beyond the transport suites that run on them by default: the
 * server says which connections are handle sockets, the peer's address is there, a paused connection still notices
 * the peer's FIN (and delivers what came before it once resumed) while holding at most ~64 KiB of a peer that keeps
 * sending, a reset closes with 1006 and an `error`, our FIN goes out after what is queued, and `handleUpgrade`'s
 * sockets stay `net.Socket`s.
 *
 * test/accept-path-socket.test.ts runs the transport suites again with WSENGINE_ACCEPT_PATH=socket (net.Sockets).
 */
import t, { type Test } from 'tap';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, Socket } from 'node:net';
import { connect, createServer, type WebSocketConnection, type WebSocketServer } from '../lib/index.js';
import { handleAcceptAllowed } from '../lib/transport/handle-socket.js';
import { decodeFrames, once, rawUpgrade, until } from './helpers/net.js';

const socketOf = (c: WebSocketConnection): unknown => (c as unknown as { socket: unknown }).socket;

/** A masked binary frame (zero mask key: the payload reads as it is). */
function clientFrame(payload: Buffer, opcode = 2): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, 0x80 | n]) : n < 65536 ? Buffer.from([0x80 | opcode, 0x80 | 126, n >> 8, n & 0xff]) : (() => {
    const h = Buffer.alloc(10);
    h[0] = 0x80 | opcode;
    h[1] = 0x80 | 127;
    h.writeBigUInt64BE(BigInt(n), 2);
    return h;
  })();
  return Buffer.concat([head, Buffer.alloc(4), payload]);
}

async function server(t: Test, onConnection?: (c: WebSocketConnection) => void): Promise<{ wss: WebSocketServer; port: number; conns: WebSocketConnection[] }> {
  const conns: WebSocketConnection[] = [];
  const wss = createServer({ heartbeat: false }, (c) => {
    conns.push(c);
    onConnection?.(c);
  });
  const { port } = await wss.listen(0, '127.0.0.1');
  t.teardown(() => wss.close({ timeout: 200 }));
  return { wss, port, conns };
}

t.test('the own listener accepts handle sockets, handleUpgrade keeps net.Sockets; stats() says which', async (t) => {
  t.ok(handleAcceptAllowed(), 'handle sockets are available on this Node');
  const { wss, port, conns } = await server(t);
  const client = await connect(`ws://127.0.0.1:${port}`);
  t.teardown(() => client.terminate());
  await until(() => conns.length === 1);
  t.notOk(socketOf(conns[0]) instanceof Socket, 'no net.Socket behind the connection');
  t.same(wss.stats().acceptPath, { handle: 1, socket: 0 });
  t.same(wss.stats().readPath, { direct: 1, stream: 0 });
  t.same(wss.stats().writePath, { direct: 1, stream: 0 });

  const noServer = createServer({ noServer: true, heartbeat: false });
  const http = createHttpServer();
  http.on('upgrade', (req, socket, head) => noServer.handleUpgrade(req, socket, head));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => http.close(() => r())));
  t.teardown(() => noServer.close({ timeout: 200 }));
  const viaHttp = await connect(`ws://127.0.0.1:${(http.address() as AddressInfo).port}`);
  t.teardown(() => viaHttp.terminate());
  await until(() => noServer.clients.size === 1);
  t.same(noServer.stats().acceptPath, { handle: 0, socket: 1 }, 'a socket from node:http is a net.Socket');
});

t.test("the peer's address: on the connection and in authenticate's request", async (t) => {
  let seen: { address?: string; port?: number; family?: string; local?: number } = {};
  const conns: WebSocketConnection[] = [];
  const wss = createServer(
    {
      heartbeat: false,
      authenticate: (req) => {
        seen = { address: req.socket.remoteAddress, port: req.socket.remotePort, family: req.socket.remoteFamily, local: req.socket.localPort };
        return {};
      },
    },
    (c) => conns.push(c),
  );
  const { port } = await wss.listen(0, '127.0.0.1');
  t.teardown(() => wss.close({ timeout: 200 }));
  const raw = await rawUpgrade(port);
  t.teardown(() => raw.socket.destroy());
  t.equal(raw.head.status, 101);
  await until(() => conns.length === 1);
  t.same(seen, { address: '127.0.0.1', port: raw.socket.localPort, family: 'IPv4', local: port });
  t.equal(conns[0].remoteAddress, '127.0.0.1');
});

t.test('paused: the FIN is still seen, what came before it is delivered on resume, then close 1006', async (t) => {
  const { port, conns } = await server(t, (c) => c.pause());
  const raw = await rawUpgrade(port);
  await until(() => conns.length === 1);
  const conn = conns[0];
  const messages: Buffer[] = [];
  conn.on('message', (data) => messages.push(data as Buffer));
  let closeCode = 0;
  conn.on('close', (code: number) => (closeCode = code));
  raw.socket.write(Buffer.concat([clientFrame(Buffer.from('one')), clientFrame(Buffer.from('two'))]));
  raw.socket.end();
  // Our FIN answers the peer's only once the held bytes are delivered: the peer's socket stays half-open till then.
  await new Promise((r) => setTimeout(r, 100));
  t.equal(messages.length, 0, 'nothing delivered while paused');
  t.equal(closeCode, 0, 'not closed while what came before the FIN waits');
  conn.resume();
  await until(() => closeCode !== 0, 5000, 'the close');
  t.same(messages.map(String), ['one', 'two'], 'both messages, in order, before the close');
  t.equal(closeCode, 1006, 'the peer left without a close frame');
  await raw.closed;
});

t.test('paused with nothing held: the FIN closes the connection at once', async (t) => {
  const { port, conns } = await server(t, (c) => c.pause());
  const raw = await rawUpgrade(port);
  await until(() => conns.length === 1);
  const closed = once<[number]>(conns[0], 'close');
  raw.socket.end();
  t.equal((await closed)[0], 1006);
});

t.test('paused while the peer keeps sending: at most ~64 KiB held, then the handle stops; all arrives on resume', async (t) => {
  const { port, conns } = await server(t, (c) => c.pause());
  const raw = await rawUpgrade(port);
  t.teardown(() => raw.socket.destroy());
  await until(() => conns.length === 1);
  const conn = conns[0];
  let bytes = 0;
  conn.on('message', (data) => (bytes += (data as Buffer).length));
  const frame = clientFrame(Buffer.alloc(16 * 1024, 1));
  const count = 256; // 4 MiB
  let written = 0;
  const pump = (): void => {
    while (written < count) {
      written++;
      if (!raw.socket.write(frame)) return void raw.socket.once('drain', pump);
    }
  };
  pump();
  await new Promise((r) => setTimeout(r, 300));
  const socket = socketOf(conn) as { heldBytes: number };
  t.ok(socket.heldBytes <= 128 * 1024, `held ${socket.heldBytes} B (high-water mark 64 KiB plus at most one read)`);
  t.ok(written < count, `the peer is held back by TCP (${written} of ${count} frames written)`);
  conn.resume();
  await until(() => bytes === count * 16 * 1024, 10_000, 'every message');
  t.pass(`all ${count} messages arrived after resume`);
});

t.test('a reset: close 1006 and an error event, no unhandled error', async (t) => {
  const { port, conns } = await server(t);
  const raw = await rawUpgrade(port);
  await until(() => conns.length === 1);
  const errors: Error[] = [];
  conns[0].on('error', (e: Error) => errors.push(e));
  const closed = once<[number]>(conns[0], 'close');
  raw.socket.resetAndDestroy();
  t.equal((await closed)[0], 1006);
  t.ok(errors.length <= 1, 'at most one error');
  if (errors.length === 1) t.match((errors[0] as NodeJS.ErrnoException).code, /ECONNRESET|EPIPE/);
});

t.test('our close: the close frame, then our FIN, after a large queued message', async (t) => {
  const big = Buffer.alloc(3 * 1024 * 1024, 9);
  const { port, conns } = await server(t);
  const raw = await rawUpgrade(port);
  await until(() => conns.length === 1);
  conns[0].send(big);
  conns[0].close(4000, 'bye');
  await until(() => decodeFrames(raw.received()).length === 2, 10_000, 'the message and the close frame');
  const frames = decodeFrames(raw.received());
  t.equal(frames[0]?.[1].length, big.length, 'the whole message first');
  t.equal(frames[1]?.[0], 8, 'then the close frame');
  t.equal(frames[1]?.[1].readUInt16BE(0), 4000);
  const closed = once<[number]>(conns[0], 'close');
  raw.socket.write(clientFrame(Buffer.from([0x0f, 0xa0]), 8));
  t.equal((await closed)[0], 4000, 'the closing handshake completed');
  await raw.closed;
  t.pass('then the TCP connection closed');
});

t.test('a refused handshake is answered, then the socket closes', async (t) => {
  const wss = createServer({ heartbeat: false, path: '/only' });
  const { port } = await wss.listen(0, '127.0.0.1');
  t.teardown(() => wss.close({ timeout: 200 }));
  const raw = await rawUpgrade(port, '/elsewhere');
  t.equal(raw.head.status, 404);
  await raw.closed;
  t.pass('closed');
});
