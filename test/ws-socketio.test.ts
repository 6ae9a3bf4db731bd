/**
 * socket.io 4 on wsengine/ws: `new Server(http, { wsEngine: WebSocketServer })`, unchanged otherwise. WebSocket-only
 * and polling→upgrade clients, acks, rooms, binary, `maxHttpBufferSize` enforced over WebSocket, and
 * `initial_headers` reaching the 101.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, type Socket as ServerSocket } from 'socket.io';
import { io, type Socket } from 'socket.io-client';
import t, { type Test } from 'tap';
import { WebSocket, WebSocketServer } from '../lib/ws/index.js';
import { next, WAIT } from './helpers/ws-compat.js';

async function start(t: Test, options: ConstructorParameters<typeof Server>[1] = {}): Promise<{ io: Server; url: string; port: number }> {
  const http = createServer();
  const server = new Server(http, { wsEngine: WebSocketServer, ...options });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (http.address() as AddressInfo).port;
  return { io: server, url: `http://127.0.0.1:${port}`, port };
}

function client(t: Test, url: string, options: Parameters<typeof io>[1] = {}): Socket {
  const socket = io(url, { forceNew: true, reconnection: false, timeout: WAIT, ...options });
  t.teardown(() => {
    socket.close();
  });
  return socket;
}

t.test('websocket-only: connect, acks both ways, binary, rooms', async (t) => {
  const { io: server, url } = await start(t);
  server.on('connection', (socket: ServerSocket) => {
    socket.on('echo', (value: unknown, ack: (v: unknown) => void) => ack(value));
    socket.on('join', (room: string, ack: () => void) => {
      void socket.join(room);
      ack();
    });
    socket.on('shout', (room: string, text: string) => server.to(room).emit('heard', text));
  });
  const a = client(t, url, { transports: ['websocket'] });
  const b = client(t, url, { transports: ['websocket'] });
  const c = client(t, url, { transports: ['websocket'] });
  await Promise.all([next(a, 'connect'), next(b, 'connect'), next(c, 'connect')]);
  t.equal(a.io.engine.transport.name, 'websocket');
  t.same(await a.timeout(WAIT).emitWithAck('echo', { n: 1, s: 'ünï' }), { n: 1, s: 'ünï' }, 'ack with JSON');
  const bytes = Buffer.from([0, 1, 2, 255]);
  const back = (await a.timeout(WAIT).emitWithAck('echo', { bytes })) as { bytes: Buffer };
  t.same([...back.bytes], [...bytes], 'binary attachment both ways');
  await a.timeout(WAIT).emitWithAck('join', 'lobby');
  await b.timeout(WAIT).emitWithAck('join', 'lobby');
  let cHeard = false;
  c.on('heard', () => (cHeard = true));
  const heardA = next<[string]>(a, 'heard');
  const heardB = next<[string]>(b, 'heard');
  c.emit('shout', 'lobby', 'hello room');
  t.same([(await heardA)[0], (await heardB)[0]], ['hello room', 'hello room'], 'room members hear it');
  // server → client ack
  const asked = new Promise<unknown>((resolve) => {
    server.once('connection', (s: ServerSocket) => {
      s.timeout(WAIT).emit('question', 'why?', (_err: unknown, answer: unknown) => resolve(answer));
    });
  });
  const d = client(t, url, { transports: ['websocket'] });
  d.on('question', (q: string, ack: (a: string) => void) => ack(`because ${q}`));
  t.equal(await asked, 'because why?', 'server-side ack');
  t.equal(cHeard, false, 'outside the room: nothing');
});

t.test('polling then upgrade to WebSocket', async (t) => {
  const { io: server, url } = await start(t);
  server.on('connection', (socket: ServerSocket) => socket.on('echo', (v: unknown, ack: (v: unknown) => void) => ack(v)));
  // engine.io's side: the transport it started with, and the one it upgraded to.
  const transports = new Promise<[string, string]>((resolve) =>
    server.engine.once('connection', (raw: { transport: { name: string }; once(e: string, f: (tr: { name: string }) => void): void }) => {
      const first = raw.transport.name;
      raw.once('upgrade', (to) => resolve([first, to.name]));
    }),
  );
  const socket = client(t, url, { transports: ['polling', 'websocket'] });
  await next(socket, 'connect');
  t.same(await transports, ['polling', 'websocket'], 'started with polling, upgraded to WebSocket');
  t.equal(socket.io.engine.transport.name, 'websocket', 'the client is on WebSocket');
  t.equal(await socket.timeout(WAIT).emitWithAck('echo', 'after upgrade'), 'after upgrade');
});

t.test('maxHttpBufferSize is enforced over WebSocket', async (t) => {
  const { io: server, url } = await start(t, { maxHttpBufferSize: 1e5 });
  let big = 0;
  const reason = new Promise<string>((resolve) =>
    server.on('connection', (socket: ServerSocket) => {
      socket.on('big', () => big++);
      socket.on('disconnect', (r: string) => resolve(r));
    }),
  );
  const socket = client(t, url, { transports: ['websocket'] });
  await next(socket, 'connect');
  socket.emit('big', 'x'.repeat(500_000));
  t.equal(await reason, 'transport error', 'the server drops the connection');
  t.equal(big, 0, 'the message never reached the handler');
  // A message under the limit still passes on a new connection.
  const ok = client(t, url, { transports: ['websocket'] });
  await next(ok, 'connect');
  const got = new Promise<number>((resolve) => server.on('connection', (s: ServerSocket) => s.on('small', (v: string) => resolve(v.length))));
  const again = client(t, url, { transports: ['websocket'] });
  await next(again, 'connect');
  again.emit('small', 'y'.repeat(50_000));
  t.equal(await got, 50_000);
});

t.test('initial_headers and headers reach the 101', async (t) => {
  const { io: server, port } = await start(t);
  server.engine.on('initial_headers', (headers: Record<string, string>, req: IncomingMessage) => {
    headers['set-cookie'] = `sid=${req.url?.includes('EIO=4') ? 'ok' : 'bad'}`;
    headers['x-initial'] = 'yes';
  });
  server.engine.on('headers', (headers: Record<string, string>) => {
    headers['x-every'] = 'yes';
  });
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
  const upgraded = next<[IncomingMessage]>(ws, 'upgrade');
  const first = next<[Buffer]>(ws, 'message');
  const [res] = await upgraded;
  t.equal(res.statusCode, 101);
  t.equal(res.headers['x-initial'], 'yes');
  t.equal(res.headers['x-every'], 'yes');
  t.same(res.headers['set-cookie'], ['sid=ok']);
  const [open] = await first;
  t.match(open.toString(), /^0\{"sid":/, 'the engine.io open packet');
  ws.close();
});
