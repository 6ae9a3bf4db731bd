/**
 * wsengine/ws behaves as ws 8 does: the server's options and events, `handleUpgrade`/`shouldHandle`, `close(cb)`
 * leaving connections open, `clients`, the ws-style client and its events (close reason as a Buffer), `binaryType`,
 * `createWebSocketStream`, and ws options honoured or refused with a TypeError. The project's own tests, written
 * from ws's documentation; ws's own test files are run from outside the repository (see the README).
 */
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Duplex } from 'node:stream';
import t from 'tap';
import WebSocketDefault, { CloseEvent, createWebSocketStream, MessageEvent, WebSocket, WebSocketServer } from '../lib/ws/index.js';
import { connected, listening, next, rawUpgrade, shutdown, UPGRADE, WAIT } from './helpers/ws-compat.js';

t.test('exports: ws\'s shapes', async (t) => {
  t.equal(WebSocketDefault, WebSocket, 'the default export is the WebSocket class');
  const statics = WebSocket as unknown as Record<string, unknown>;
  t.equal(statics.WebSocketServer, WebSocketServer);
  t.equal(statics.Server, WebSocketServer);
  t.equal(statics.createWebSocketStream, createWebSocketStream);
  t.equal(statics.WebSocket, WebSocket);
  for (const [name, value] of Object.entries({ CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 })) {
    t.equal((WebSocket as unknown as Record<string, number>)[name], value, `WebSocket.${name}`);
    t.equal((WebSocket.prototype as unknown as Record<string, number>)[name], value, `ws.${name}`);
  }
  t.ok(Object.getOwnPropertyDescriptor(WebSocket.prototype, 'readyState')?.enumerable, 'accessors are enumerable, as ws\'s');
});

t.test('options: exactly one of port, server, noServer; ws names honoured, others refused with a TypeError', async (t) => {
  const http = createHttpServer();
  t.throws(() => new WebSocketServer({}), TypeError);
  t.throws(() => new WebSocketServer({ noServer: true, server: http }), TypeError);
  t.throws(() => new WebSocketServer({ noServer: true, authenticate: () => true } as never), { name: 'TypeError', message: /authenticate.*verifyClient/ });
  t.throws(() => new WebSocketServer({ noServer: true, maxMessageSize: 10 } as never), { name: 'TypeError', message: /maxMessageSize.*maxPayload/ });
  t.throws(() => new WebSocketServer({ noServer: true, verifyclient: () => true } as never), { name: 'TypeError', message: /unknown option "verifyclient"/ });
  t.throws(() => new WebSocketServer({ noServer: true, skipUTF8Validation: true }), { name: 'TypeError', message: /skipUTF8Validation/ });
  t.throws(() => new WebSocketServer({ noServer: true, verifyClient: 'yes' as never }), TypeError);
  t.throws(() => new WebSocketServer({ noServer: true, perMessageDeflate: { zlibDeflateOptions: { strategy: 1 } } as never }), TypeError);
  t.throws(() => new WebSocketServer({ noServer: true, perMessageDeflate: { level: 1 } as never }), { message: /unknown option "level"/ });
  t.throws(() => new WebSocketServer({ noServer: true, WebSocket: class {} as never }), TypeError);
  t.throws(() => new WebSocket('ws://127.0.0.1:1', { skipUTF8Validation: true }), TypeError);
  t.throws(() => new WebSocket('ws://127.0.0.1:1', { protocolVersion: 7 }), RangeError);
  t.throws(() => new WebSocket('ws://127.0.0.1:1', ['a', 'a']), SyntaxError);
  t.throws(() => new WebSocket('ftp://127.0.0.1:1'), SyntaxError);
  // The ws options whose values the engine meets its own way are accepted (engine.io always passes maxBufferedChunks).
  const wss = new WebSocketServer({ noServer: true, maxBufferedChunks: 10_000, maxFragments: 100, backlog: 5, closeTimeout: 1000, skipUTF8Validation: false, perMessageDeflate: { zlibDeflateOptions: { level: 3, memLevel: 7, chunkSize: 1024 }, zlibInflateOptions: { chunkSize: 10240 }, serverMaxWindowBits: 10, concurrencyLimit: 4, threshold: 512 } });
  t.equal(wss.options.maxBufferedChunks, 10_000, 'options are exposed as given');
  wss.close();
});

t.test('port: listening callback, req is a node:http IncomingMessage with req.socket, 426 for plain requests', async (t) => {
  const wss = await new Promise<WebSocketServer>((resolve) => {
    const s: WebSocketServer = new WebSocketServer({ port: 0, host: '127.0.0.1' }, () => resolve(s));
  });
  t.teardown(() => shutdown(wss));
  const port = (wss.address() as AddressInfo).port;
  const plain = await rawUpgrade(port, {}, {}).catch(() => null);
  t.ok(plain, 'answered');
  const response = await fetch(`http://127.0.0.1:${port}/`);
  t.equal(response.status, 426);
  const seen = next<[WebSocket, IncomingMessage]>(wss, 'connection');
  const ws = await connected(`ws://127.0.0.1:${port}/room?x=1`);
  const [server, req] = await seen;
  t.ok(server instanceof WebSocket, 'the connection is a ws-style WebSocket');
  t.equal(req.url, '/room?x=1');
  t.match(req.socket.remoteAddress, /127\.0\.0\.1/, 'req.socket.remoteAddress, as ws users read it');
  t.ok(server._socket, 'ws._socket, which applications read too');
  t.equal(server.readyState, WebSocket.OPEN);
  t.equal(ws.url, `ws://127.0.0.1:${port}/room?x=1`);
  ws.terminate();
});

t.test('verifyClient: sync and async forms, info fields, status, reason and headers of a refusal', async (t) => {
  const seen: Array<{ origin: string; secure: boolean; url: string | undefined }> = [];
  const { wss, port, url } = await listening({
    verifyClient: (info: { origin: string; secure: boolean; req: IncomingMessage }) => {
      seen.push({ origin: info.origin, secure: info.secure, url: info.req.url });
      return info.req.url !== '/no';
    },
  });
  t.teardown(() => shutdown(wss));
  const refused = await rawUpgrade(port, UPGRADE, { path: '/no' });
  t.equal(refused.status, 401, 'false → 401');
  const ws = await connected(`${url}/yes`, undefined, { origin: 'https://app.example' });
  t.same(seen[1], { origin: 'https://app.example', secure: false, url: '/yes' });
  ws.terminate();

  const async = await listening({
    verifyClient: (info: { req: IncomingMessage }, cb: (ok: boolean, code?: number, name?: string, headers?: Record<string, string>) => void) => {
      setTimeout(() => (info.req.url === '/ok' ? cb(true) : cb(false, 403, 'Go away', { 'X-Why': 'policy' })), 20);
    },
  });
  t.teardown(() => shutdown(async.wss));
  const denied = await rawUpgrade(async.port, UPGRADE, { path: '/nope' });
  t.equal(denied.status, 403);
  t.equal(denied.body, 'Go away');
  t.equal(denied.headers['x-why'], 'policy');
  const unexpected = new WebSocket(`${async.url}/nope`);
  const [, res] = await next<[unknown, IncomingMessage]>(unexpected, 'unexpected-response');
  t.equal(res.statusCode, 403, "the client's unexpected-response event");
  res.resume();
  unexpected.on('error', () => {}); // as in ws: terminate() while CONNECTING reports an error
  unexpected.terminate();
  const accepted = await connected(`${async.url}/ok`);
  t.equal(accepted.readyState, WebSocket.OPEN, 'async accept');
  accepted.terminate();
});

t.test('handleProtocols: chosen, default first, false for none; the headers event can add to the 101', async (t) => {
  const { wss, url } = await listening({ handleProtocols: (protocols: Set<string>, req: IncomingMessage) => (req.url === '/none' ? false : protocols.has('chat.v2') ? 'chat.v2' : false) });
  t.teardown(() => shutdown(wss));
  wss.on('headers', (headers: string[]) => headers.push('X-Extra: 1'));
  const ws = new WebSocket(url, ['chat.v1', 'chat.v2']);
  const upgraded = next<[IncomingMessage]>(ws, 'upgrade');
  const opened = next(ws, 'open');
  const [res] = await upgraded;
  t.equal(res.headers['x-extra'], '1', 'headers pushed by a headers listener reach the 101');
  await opened;
  t.equal(ws.protocol, 'chat.v2');
  ws.terminate();
  const none = new WebSocket(`${url}/none`, ['chat.v1']);
  const [error] = await next<[Error]>(none, 'error');
  t.match(error.message, /no subprotocol/, 'the client refuses a 101 without the subprotocol it asked for');

  const plain = await listening();
  t.teardown(() => shutdown(plain.wss));
  const first = await connected(plain.url, ['a', 'b']);
  t.equal(first.protocol, 'a', "without handleProtocols, the client's first");
  first.terminate();
});

t.test('noServer + handleUpgrade, path and shouldHandle', async (t) => {
  const wss = new WebSocketServer({ noServer: true, path: '/ws' });
  t.throws(() => wss.address(), /noServer/);
  t.equal(wss.shouldHandle({ url: '/ws?x=1' } as IncomingMessage), true);
  t.equal(wss.shouldHandle({ url: '/other' } as IncomingMessage), false);
  const http = createHttpServer((_req, res) => res.end('page'));
  http.on('upgrade', (req, socket, head) => {
    if (!wss.shouldHandle(req)) {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => http.close(() => r())));
  const port = (http.address() as AddressInfo).port;
  let connections = 0;
  wss.on('connection', (ws: WebSocket) => {
    connections++;
    ws.on('message', (data: Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary }));
  });
  const ws = await connected(`ws://127.0.0.1:${port}/ws`);
  ws.send('hello');
  const [data, isBinary] = await next<[Buffer, boolean]>(ws, 'message');
  t.same([data.toString(), isBinary, Buffer.isBuffer(data)], ['hello', false, true], 'text arrives as a Buffer with isBinary false');
  t.equal(connections, 1, 'connection emitted once, by the callback');
  t.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'page', 'plain requests stay with the HTTP server');
  const wrongPath = await rawUpgrade(port, UPGRADE, { path: '/other' });
  t.equal(wrongPath.status, 404);
  ws.terminate();

  // A subclass overriding shouldHandle (ws documents it as overridable).
  class Picky extends WebSocketServer {
    override shouldHandle(req: IncomingMessage): boolean {
      return req.headers['x-let-in'] === 'yes';
    }
  }
  const picky = new Picky({ port: 0, host: '127.0.0.1' });
  await next(picky, 'listening');
  t.teardown(() => shutdown(picky));
  const pickyPort = (picky.address() as AddressInfo).port;
  t.equal((await rawUpgrade(pickyPort, UPGRADE)).status, 400, 'not handled: 400');
  t.equal((await rawUpgrade(pickyPort, { ...UPGRADE, 'X-Let-In': 'yes' })).status, 101);
  wss.close();
});

t.test('{ server }: attaches to an HTTP server; close() leaves that server listening and removes its listeners', async (t) => {
  const http = createHttpServer((_req, res) => res.end('hi'));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => http.close(() => r())));
  const before = http.listenerCount('upgrade');
  const wss = new WebSocketServer({ server: http });
  const port = (http.address() as AddressInfo).port;
  const ws = await connected(`ws://127.0.0.1:${port}`);
  await new Promise<void>((resolve) => {
    const server = [...wss.clients][0];
    ws.once('close', () => resolve());
    server.close(4001, 'bye');
  });
  await new Promise<void>((resolve) => wss.close(() => resolve()));
  t.equal(http.listenerCount('upgrade'), before, 'upgrade listener removed');
  t.ok(http.listening, 'the HTTP server still listens');
  t.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'hi');
});

t.test('close(cb): stops accepting, leaves open connections open, calls back once they are gone', async (t) => {
  const { wss, url } = await listening();
  const ws = await connected(url);
  const server = [...wss.clients][0];
  let closed = false;
  const done = new Promise<Error | undefined>((resolve) => wss.close((error) => {
    closed = true;
    resolve(error);
  }));
  await new Promise((r) => setTimeout(r, 50));
  t.equal(ws.readyState, WebSocket.OPEN, 'the client is still open');
  t.equal(closed, false, 'close waits for the connections');
  server.send('still here');
  const [data] = await next<[Buffer]>(ws, 'message');
  t.equal(data.toString(), 'still here', 'messages still flow');
  const refused = new WebSocket(url);
  await next(refused, 'error');
  t.equal(wss.clients.size, 1);
  ws.close();
  t.equal(await done, undefined, 'callback without an error');
  t.equal(wss.address(), null);
  const again = await new Promise<Error | undefined>((resolve) => wss.close(resolve));
  t.match(again?.message, /not running/, 'closing a closed server calls back with an Error');

  const noServer = new WebSocketServer({ noServer: true, clientTracking: false });
  t.equal(noServer.clients, undefined, 'clientTracking: false');
  await new Promise<void>((resolve) => noServer.close(() => resolve()));
});

t.test('clients: added on connection, removed on close and on terminate', async (t) => {
  const { wss, url } = await listening();
  t.teardown(() => shutdown(wss));
  const a = await connected(url);
  const b = await connected(url);
  t.equal(wss.clients.size, 2);
  const [server] = [...wss.clients];
  const gone = next(server, 'close');
  a.close();
  await gone;
  t.equal(wss.clients.size, 1);
  const [other] = [...wss.clients];
  const gone2 = next(other, 'close');
  b.terminate();
  await gone2;
  t.equal(wss.clients.size, 0);
});

t.test('client: events, close reason as a Buffer, ping/pong, readyState, bufferedAmount, send callback', async (t) => {
  const { wss, url } = await listening();
  t.teardown(() => shutdown(wss));
  wss.on('connection', (ws: WebSocket) => {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (data.toString() === 'close me') ws.close(4000, 'as asked');
      else if (data.toString() === 'ping me') ws.ping('p');
      else ws.send(data, { binary: isBinary });
    });
  });
  const ws = new WebSocket(url);
  t.equal(ws.readyState, WebSocket.CONNECTING);
  t.throws(() => ws.send('too early'), /not open/, 'send throws while CONNECTING, as in ws');
  await next(ws, 'open');
  t.equal(ws.bufferedAmount, 0);
  await new Promise<void>((resolve, reject) => ws.send(Buffer.from([1, 2, 3]), (error) => (error ? reject(error) : resolve())));
  const [echo, isBinary] = await next<[Buffer, boolean]>(ws, 'message');
  t.same([[...echo], isBinary], [[1, 2, 3], true]);
  ws.send(42 as never);
  t.equal((await next<[Buffer]>(ws, 'message'))[0].toString(), '42', 'numbers are sent as text, as ws does');
  ws.send('ping me');
  const [ping] = await next<[Buffer]>(ws, 'ping');
  t.equal(ping.toString(), 'p');
  const pong = next<[Buffer]>(ws, 'pong');
  ws.ping('x');
  t.equal((await pong)[0].toString(), 'x', 'the server answers pings (autoPong)');
  ws.send('close me');
  const [code, reason] = await next<[number, Buffer]>(ws, 'close');
  t.equal(code, 4000);
  t.ok(Buffer.isBuffer(reason), 'the reason is a Buffer, as in ws');
  t.equal(reason.toString(), 'as asked');
  t.equal(ws.readyState, WebSocket.CLOSED);
  const error = await new Promise<Error | undefined>((resolve) => ws.send('late', resolve));
  t.match(error?.message, /not open/, 'a send after close calls back with an Error');
  t.ok(ws.bufferedAmount > 0, 'and counts in bufferedAmount, as in ws');
});

t.test('client: unreachable server → error then close 1006; close() while connecting aborts', async (t) => {
  const http = createHttpServer();
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const port = (http.address() as AddressInfo).port;
  await new Promise<void>((r) => http.close(() => r()));
  const ws = new WebSocket(`ws://127.0.0.1:${port}`);
  const events: string[] = [];
  ws.on('error', () => events.push('error'));
  const [code] = await next<[number]>(ws, 'close');
  t.same(events, ['error']);
  t.equal(code, 1006);

  const { wss, url } = await listening();
  t.teardown(() => shutdown(wss));
  const early = new WebSocket(url);
  const failed = next<[Error]>(early, 'error');
  const closed = next<[number]>(early, 'close');
  early.close();
  t.match((await failed)[0].message, /closed before the connection was established/);
  t.equal((await closed)[0], 1006);
});

t.test('binaryType: nodebuffer, arraybuffer, fragments, blob; text stays a Buffer', async (t) => {
  const { wss, url } = await listening();
  t.teardown(() => shutdown(wss));
  wss.on('connection', (ws: WebSocket) => ws.on('message', (data: Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary })));
  const ws = await connected(url);
  t.equal(ws.binaryType, 'nodebuffer');
  const roundTrip = async (): Promise<[unknown, boolean]> => {
    ws.send(Uint8Array.of(7, 8));
    return next<[unknown, boolean]>(ws, 'message');
  };
  ws.binaryType = 'arraybuffer';
  const [ab] = await roundTrip();
  t.ok(ab instanceof ArrayBuffer && new Uint8Array(ab).join() === '7,8', 'arraybuffer');
  ws.binaryType = 'fragments';
  const [frags] = await roundTrip();
  t.ok(Array.isArray(frags) && Buffer.concat(frags as Buffer[]).join() === '7,8', 'fragments: an array of Buffers');
  ws.binaryType = 'blob';
  const [blob] = await roundTrip();
  t.ok(blob instanceof Blob && new Uint8Array(await (blob as Blob).arrayBuffer()).join() === '7,8', 'blob');
  ws.binaryType = 'bogus' as never;
  t.equal(ws.binaryType, 'blob', 'other values are ignored');
  ws.binaryType = 'arraybuffer';
  ws.send('text');
  const [text, isBinary] = await next<[Buffer, boolean]>(ws, 'message');
  t.ok(Buffer.isBuffer(text) && !isBinary, 'text is a Buffer whatever binaryType says');
  ws.terminate();
});

t.test('Blobs keep their place among messages, as in ws', async (t) => {
  const { wss, url } = await listening();
  t.teardown(() => shutdown(wss));
  const received: string[] = [];
  const all = new Promise<void>((resolve) => {
    wss.on('connection', (ws: WebSocket) =>
      ws.on('message', (data: Buffer) => {
        received.push(data.toString());
        if (received.length === 3) resolve();
      }),
    );
  });
  const ws = await connected(url);
  ws.send('first');
  ws.send(new Blob(['second']));
  ws.send('third');
  await all;
  t.same(received, ['first', 'second', 'third']);
  ws.terminate();
});

t.test('browser-style API: addEventListener, onmessage, MessageEvent and CloseEvent', async (t) => {
  const { wss, url } = await listening();
  t.teardown(() => shutdown(wss));
  wss.on('connection', (ws: WebSocket) => {
    ws.send('hi');
    ws.close(1000, 'done');
  });
  const ws = new WebSocket(url);
  const events: string[] = [];
  ws.onopen = () => events.push('open');
  const message = new Promise<MessageEvent>((resolve) => ws.addEventListener('message', (e: MessageEvent) => resolve(e), { once: true }));
  const close = new Promise<CloseEvent>((resolve) => {
    ws.onclose = (e) => resolve(e as CloseEvent);
  });
  const m = await message;
  t.equal(m.data, 'hi', 'text as a string');
  t.equal(m.target, ws);
  const c = await close;
  t.same([c.code, c.reason, c.wasClean, c.type], [1000, 'done', true, 'close']);
  t.same(events, ['open']);
  t.equal(typeof ws.onopen, 'function');
  ws.onopen = null;
  t.equal(ws.onopen, null);
});

t.test('createWebSocketStream: a Duplex both ways; ending it closes the WebSocket', async (t) => {
  const { wss, url } = await listening();
  t.teardown(() => shutdown(wss));
  const serverDone = new Promise<string>((resolve) => {
    wss.on('connection', (ws: WebSocket) => {
      const stream = createWebSocketStream(ws, { encoding: 'utf8' });
      let text = '';
      stream.on('data', (chunk: string) => (text += chunk));
      stream.on('end', () => resolve(text));
      stream.write('from server');
    });
  });
  const ws = new WebSocket(url);
  const closed = next(ws, 'close');
  const duplex = createWebSocketStream(ws);
  t.ok(duplex instanceof Duplex);
  duplex.write('a');
  duplex.write('b', () => {});
  const [chunk] = await once(duplex, 'data');
  t.equal(String(chunk), 'from server');
  duplex.end();
  t.equal(await serverDone, 'ab', 'writes made while connecting were sent, in order');
  await closed;
  duplex.destroy();
});

t.test('maxPayload is enforced (1009), on the server and on the client', async (t) => {
  const { wss, url } = await listening({ maxPayload: 1000 });
  t.teardown(() => shutdown(wss));
  const serverSide = next<[WebSocket]>(wss, 'connection');
  const ws = await connected(url, undefined, { maxPayload: 500 });
  const [server] = await serverSide;
  const serverError = next<[Error & { code?: string }]>(server, 'error');
  ws.send(Buffer.alloc(1001));
  const [error] = await serverError;
  t.equal(error.code, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', "ws's error code");
  const [code] = await next<[number]>(ws, 'close');
  t.equal(code, 1009);

  const again = next<[WebSocket]>(wss, 'connection');
  const ws2 = await connected(url, undefined, { maxPayload: 500 });
  const [server2] = await again;
  const clientError = next<[Error & { code?: string }]>(ws2, 'error');
  server2.send(Buffer.alloc(501));
  t.equal((await clientError)[0].code, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
  ws2.terminate();
});

t.test('permessage-deflate: negotiated when both sides want it; extensions lists the name', async (t) => {
  const { wss, url } = await listening({ perMessageDeflate: { threshold: 0 } });
  t.teardown(() => shutdown(wss));
  const serverSide = next<[WebSocket, IncomingMessage]>(wss, 'connection');
  const ws = await connected(url);
  const [server, req] = await serverSide;
  t.equal(req.headers['sec-websocket-extensions'], 'permessage-deflate; client_max_window_bits', "the client offers deflate by default, as ws's does");
  t.equal(ws.extensions, 'permessage-deflate');
  t.equal(server.extensions, 'permessage-deflate');
  server.on('message', (data: Buffer) => server.send(data));
  ws.send('x'.repeat(5000));
  const [data] = await next<[Buffer]>(ws, 'message');
  t.equal(data.length, 5000);
  ws.close();
  await next(ws, 'close');

  const off = await listening();
  t.teardown(() => shutdown(off.wss));
  const plain = await connected(off.url);
  t.equal(plain.extensions, '', 'servers have it off by default');
  plain.terminate();
});

t.test('a reply compressing when the close frame arrives is sent before the close reply', async (t) => {
  const { wss, url } = await listening({ perMessageDeflate: { threshold: 0 } });
  t.teardown(() => shutdown(wss));
  wss.on('connection', (ws: WebSocket) => ws.on('message', (data: Buffer) => ws.send(data)));
  for (let i = 0; i < 5; i++) {
    const ws = await connected(url, undefined, { perMessageDeflate: { threshold: 0 } });
    const got = next<[Buffer]>(ws, 'message');
    const closed = next(ws, 'close');
    ws.send(`last words ${i}`);
    ws.close();
    t.equal((await got)[0].toString(), `last words ${i}`);
    await closed;
  }
});

t.test('WebSocket option: connections are instances of the given subclass', async (t) => {
  class Tagged extends WebSocket {
    get tag(): string {
      return 'tagged';
    }
  }
  const { wss, url } = await listening({ WebSocket: Tagged });
  t.teardown(() => shutdown(wss));
  const serverSide = next<[Tagged]>(wss, 'connection');
  const ws = await connected(url);
  const [server] = await serverSide;
  t.ok(server instanceof Tagged);
  t.equal(server.tag, 'tagged');
  ws.terminate();
});

t.test('autoPong: false; allowSynchronousEvents: false spreads events over turns', async (t) => {
  const { wss, url } = await listening({ autoPong: false, allowSynchronousEvents: false });
  t.teardown(() => shutdown(wss));
  const serverSide = next<[WebSocket]>(wss, 'connection');
  const ws = await connected(url);
  const [server] = await serverSide;
  let pongs = 0;
  ws.on('pong', () => pongs++);
  const pinged = next(server, 'ping');
  ws.ping();
  await pinged;
  await new Promise((r) => setTimeout(r, 50));
  t.equal(pongs, 0, 'no automatic pong');

  // Each message is emitted in a turn of its own: a flag set by one and reset by a setImmediate is clear again at the next.
  let pending = false;
  let sameTurn = 0;
  let count = 0;
  const three = new Promise<void>((resolve) =>
    server.on('message', () => {
      if (pending) sameTurn++;
      pending = true;
      setImmediate(() => (pending = false));
      if (++count === 3) resolve();
    }),
  );
  // One write: the three messages arrive in one read.
  (ws._socket as Socket).cork();
  ws.send('1');
  ws.send('2');
  ws.send('3');
  (ws._socket as Socket).uncork();
  await three;
  t.equal(sameTurn, 0, 'no two messages in the same turn');
  ws.terminate();
});

t.test('pause and resume hold messages back', async (t) => {
  const { wss, url } = await listening();
  t.teardown(() => shutdown(wss));
  const serverSide = next<[WebSocket]>(wss, 'connection');
  const ws = await connected(url);
  const [server] = await serverSide;
  const got: string[] = [];
  ws.on('message', (d: Buffer) => got.push(d.toString()));
  ws.pause();
  t.equal(ws.isPaused, true);
  server.send('held');
  await new Promise((r) => setTimeout(r, 100));
  t.same(got, [], 'nothing while paused');
  const arrived = next(ws, 'message');
  ws.resume();
  await arrived;
  t.same(got, ['held']);
  ws.terminate();
});

t.test('protocol errors: ws error codes, error once, then close', { timeout: WAIT * 2 }, async (t) => {
  const { wss, url } = await listening();
  t.teardown(() => shutdown(wss));
  const serverSide = next<[WebSocket]>(wss, 'connection');
  const ws = await connected(url);
  const [server] = await serverSide;
  const errors: Array<Error & { code?: string }> = [];
  ws.on('error', (e: Error) => errors.push(e));
  (server._socket as Socket).write(Buffer.from([0x85, 0x00])); // reserved opcode 5
  const [code] = await next<[number]>(ws, 'close');
  t.equal(errors.length, 1);
  t.equal(errors[0].code, 'WS_ERR_INVALID_OPCODE');
  t.ok(errors[0] instanceof RangeError);
  t.ok(code === 1006 || code === 1002, `closed (${code})`);
});

t.test('a message and the close frame in one read: the server still replies to the message (readyState OPEN while it is handled)', async (t) => {
  const wss = new WebSocketServer({ port: 0 });
  await new Promise<void>((resolve) => wss.on('listening', () => resolve()));
  const states: number[] = [];
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => {
    states.push(ws.readyState);
    ws.send(data, { binary: isBinary });
  }));
  const port = (wss.address() as { port: number }).port;
  for (const payload of [Buffer.from('foobar'), Buffer.alloc(0), Buffer.from([1, 2, 3])]) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`);
    const echo = new Promise<Buffer>((resolve, reject) => {
      ws.on('message', (data) => resolve(data as Buffer));
      ws.on('close', () => reject(new Error('closed without the echo')));
    });
    ws.on('open', () => {
      ws.send(payload); // the message and the close frame leave in one write
      ws.close();
    });
    t.same([...(await echo)], [...payload], `the echo of ${payload.length} bytes arrives before the close`);
  }
  t.same(states, [1, 1, 1], 'OPEN in every message handler');
  await new Promise<void>((resolve) => wss.close(() => resolve()));
});
