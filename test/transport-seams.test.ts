/**
 * The transport seams the hub leans on, and what a ws user trips over (issues 9 and 10), each over a real socket:
 * sendPrepared through the core, send/ping/pong callbacks, the Heartbeat's hooks, typed per-connection state,
 * handleUpgrade with a callback, node:http-shaped headers, ECONNREFUSED kept as the cause, and the browser-style
 * WebSocket's send conversion and close() while connecting.
 */
import t, { type Test } from 'tap';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import {
  connect,
  createServer,
  HandshakeError,
  Heartbeat,
  prepare,
  WebSocket,
  type CloseEvent,
  type ServerOptions,
  type WebSocketConnection,
  type WebSocketServer,
} from '../lib/index.js';
import { once, rawUpgrade, until } from './helpers/net.js';

async function listen<D, P>(t: Test, options: ServerOptions<D, P> = {}, onConnection?: (c: WebSocketConnection<D, P>) => void): Promise<{ server: WebSocketServer<D, P>; url: string; port: number }> {
  const server = createServer<D, P>({ heartbeat: false, ...options }, onConnection);
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  return { server, port, url: `ws://127.0.0.1:${port}` };
}

function collect(conn: WebSocketConnection, count: number): Promise<string[]> {
  const got: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`got ${got.length} of ${count} messages: ${JSON.stringify(got.map((m) => m.slice(0, 20)))}`)), 10_000);
    conn.on('message', (data) => {
      got.push(data.toString());
      if (got.length === count) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

async function firstConnection<D, P>(server: WebSocketServer<D, P>): Promise<WebSocketConnection<D, P>> {
  await until(() => server.clients.size > 0, 5000, 'a server connection');
  return [...server.clients][0];
}

t.test('sendPrepared during a fragmented sendFragment stream follows its final fragment (no 1002)', async (t) => {
  const { server, url } = await listen(t);
  const client = await connect(url);
  const closes: number[] = [];
  client.on('close', (code) => closes.push(code));
  const conn = await firstConnection(server);
  const messages = collect(client, 4);
  conn.sendFragment('frag-1 ', false);
  conn.sendPrepared(prepare('prepared-1'));
  conn.ping('between');
  conn.send('plain');
  conn.sendPrepared(prepare(Buffer.from('prepared-2')));
  conn.sendFragment('frag-2', true);
  t.same(await messages, ['frag-1 frag-2', 'prepared-1', 'plain', 'prepared-2'], 'whole messages sent during the stream come after it, in order');
  t.equal(client.readyState, 1, 'the peer saw no protocol error');
  t.same(closes, []);
  // After the stream, prepared messages go straight out again.
  const more = collect(client, 1);
  t.equal(conn.sendPrepared(prepare('after')), true);
  t.same((await more).slice(-1), ['after']);
  client.close();
});

t.test('sendPrepared keeps its place behind messages waiting for compression', async (t) => {
  const { server, url } = await listen(t, { perMessageDeflate: { threshold: 0, serverNoContextTakeover: false } });
  const client = await connect(url, { perMessageDeflate: true });
  t.match(client.extensions, /permessage-deflate/);
  const conn = await firstConnection(server);
  const big = 'compress me '.repeat(20_000);
  const messages = collect(client, 5);
  conn.send(big); // waits for zlib
  conn.sendPrepared(prepare('prepared-1'));
  conn.send('x'.repeat(10)); // compressed too (threshold 0)
  conn.sendPrepared(prepare('prepared-2'));
  conn.send(big + '!');
  const got = await messages;
  t.same(
    got.map((m) => (m.length > 100 ? `big(${m.length})` : m)),
    [`big(${big.length})`, 'prepared-1', 'xxxxxxxxxx', 'prepared-2', `big(${big.length + 1})`],
    'every message arrives in the order it was sent',
  );
  client.close();
});

t.test('with compression: whole messages sent during a fragmented stream follow it, through the compression queue, each callback once', async (t) => {
  const { server, url } = await listen(t, { perMessageDeflate: { threshold: 1024 } });
  const client = await connect(url, { perMessageDeflate: true });
  t.match(client.extensions, /permessage-deflate/);
  const conn = await firstConnection(server);
  const big = 'compress me '.repeat(20_000);
  const calls: Array<[string, Error | undefined]> = [];
  const cb = (name: string) => (e?: Error) => calls.push([name, e]);

  // The stream starts with nothing queued: held messages, plain first, then one for zlib and more behind it.
  let messages = collect(client, 5);
  conn.sendFragment('frag-1 ', false, cb('frag-1'));
  conn.send('small-0', cb('small-0'));
  conn.send(big, cb('big'));
  const asyncSent = conn.sendAsync('small-1');
  conn.sendPrepared(prepare('prepared-1'), cb('prepared-1'));
  t.ok(conn.bufferedAmount >= big.length, `held bytes count in bufferedAmount (${conn.bufferedAmount})`);
  conn.sendFragment('frag-2', true, cb('frag-2'));
  t.same(
    (await messages).map((m) => (m.length > 100 ? `big(${m.length})` : m)),
    ['frag-1 frag-2', 'small-0', `big(${big.length})`, 'small-1', 'prepared-1'],
    'whole messages follow the final fragment, in the order they were sent',
  );
  await asyncSent;

  // The stream starts while a compression is in progress: its fragments queue behind it, held messages after them.
  messages = collect(client, 3);
  conn.send(big + '!', cb('big!'));
  conn.sendFragment('a', false, cb('a'));
  conn.send('held', cb('held'));
  conn.sendFragment('b', true, cb('b'));
  t.same(
    (await messages).map((m) => (m.length > 100 ? `big(${m.length})` : m)),
    [`big(${big.length + 1})`, 'ab', 'held'],
    'fragments wait behind the compression; the held message follows the final fragment',
  );
  await until(() => calls.length >= 9, 5000, 'every callback');
  await new Promise((r) => setTimeout(r, 100));
  t.same(
    calls.map(([name]) => name).sort(),
    ['a', 'b', 'big', 'big!', 'frag-1', 'frag-2', 'held', 'prepared-1', 'small-0'],
    'each callback ran exactly once',
  );
  t.ok(calls.every(([, e]) => e === undefined), 'all without an error');
  t.equal(client.readyState, 1, 'the peer saw no protocol error');
  client.close();
});

t.test('send/ping/pong/sendFragment/sendPrepared callbacks run once written; errors when not sent; misuse throws', async (t) => {
  const { server, url } = await listen(t, { perMessageDeflate: { threshold: 1024 } });
  const client = await connect(url, { perMessageDeflate: true });
  const conn = await firstConnection(server);
  const calls: string[] = [];
  const done = (name: string) => (error?: Error): void => void calls.push(error ? `${name}:error` : name);
  const messages = collect(client, 6);
  t.equal(conn.send('a', done('send')), true);
  conn.send(Buffer.from('b'), { binary: false }, done('send+options'));
  conn.send('c'.repeat(4096), done('send-compressed')); // above the threshold: goes through zlib
  conn.sendPrepared(prepare('d'), done('prepared'));
  conn.sendFragment('e1', false, done('fragment-1'));
  conn.sendFragment('e2', true, { binary: false }, done('fragment-2'));
  conn.send('f');
  conn.ping(done('ping'));
  conn.ping('payload', done('ping+data'));
  conn.ping('payload', false, done('ping+mask'));
  conn.pong(done('pong'));
  t.same(calls, [], 'no callback runs synchronously');
  await messages;
  await until(() => calls.length === 10, 5000, 'every callback');
  t.same(
    [...calls].sort(),
    ['fragment-1', 'fragment-2', 'ping', 'ping+data', 'ping+mask', 'pong', 'prepared', 'send', 'send+options', 'send-compressed'],
    'each callback ran once, without an error',
  );

  // A client connection masks: ping(data, true) is what it may say.
  const clientPinged = new Promise<void>((resolve, reject) => client.ping('c', true, (error) => (error ? reject(error) : resolve())));
  await clientPinged;

  // Misuse: an argument that is neither options nor a function is a TypeError, never ignored.
  t.throws(() => conn.send('x', 42 as never), TypeError);
  t.throws(() => conn.send('x', {}, 'callback' as never), TypeError);
  t.throws(() => conn.send('x', (() => {}) as never, (() => {}) as never), TypeError);
  t.throws(() => conn.ping('x', 'yes' as never), TypeError);
  t.throws(() => conn.ping('x', true), RangeError, 'a server never masks');
  t.throws(() => client.ping('x', false), RangeError, 'a client always masks');
  t.throws(() => conn.sendPrepared(prepare('x'), 1 as never), TypeError);
  t.throws(() => conn.sendFragment('x', 'no' as never), TypeError);

  // Data dropped by a terminated connection: the callback gets an Error.
  const clientClosed = once(client, 'close');
  const serverClosed = once(conn, 'close');
  const lost: Array<Error | undefined> = [];
  conn.send('lost', (error) => lost.push(error));
  conn.terminate();
  await until(() => lost.length === 1, 5000, 'the lost message callback');
  t.type(lost[0], Error, 'a message the socket never took reports an error');
  await clientClosed;
  await serverClosed;
  const late: Array<Error | undefined> = [];
  t.equal(conn.send('late', (error) => late.push(error)), false);
  conn.ping((error) => late.push(error));
  await until(() => late.length === 2, 5000, 'callbacks after close');
  t.ok(late.every((e) => e instanceof Error && /not open/.test(e.message)), 'sending after close calls back with "not open"');
});

t.test('a message queued behind compression calls back with an error when the connection closes first', async (t) => {
  const { server, url } = await listen(t, { perMessageDeflate: { threshold: 0 } });
  const client = await connect(url, { perMessageDeflate: true });
  const conn = await firstConnection(server);
  const results: Array<Error | undefined> = [];
  conn.send('z'.repeat(1 << 20), (e) => results.push(e));
  conn.send('behind', (e) => results.push(e));
  conn.terminate();
  await until(() => results.length >= 2, 5000, 'both callbacks');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(results.length, 2, 'each callback ran once (not again when zlib answered late)');
  t.ok(results.every((e) => e instanceof Error), 'neither message was written: both report it');
  client.terminate();
});

t.test('Heartbeat hooks: application-level ping, alive() from outside, close with 4408 on timeout', async (t) => {
  const appPing = JSON.stringify({ type: 'ping', data: {}, request_id: null });
  const { server, url } = await listen<undefined, undefined>(t, {
    heartbeat: {
      interval: 40,
      timeout: 150,
      protocolPing: false,
      onPing: (conn) => conn.send(appPing),
      closeCode: 4408,
      closeReason: 'no pong',
    },
  });
  server.on('connection', (conn) => {
    conn.on('message', (data) => {
      if (JSON.parse(data.toString()).type === 'pong') server.heartbeat!.alive(conn);
    });
  });
  // One client answers the application ping, the other only reads (its automatic protocol pongs do not count here).
  const answering = await connect(url);
  let pingsSeen = 0;
  answering.on('message', (data) => {
    if (JSON.parse(data.toString()).type === 'ping') {
      pingsSeen++;
      answering.send(JSON.stringify({ type: 'pong', data: {} }));
    }
  });
  const silent = await connect(url);
  const silentPings: string[] = [];
  silent.on('message', (data) => silentPings.push(data.toString()));
  const [code, reason] = await once<[number, string]>(silent, 'close', 5000);
  t.equal(code, 4408, 'the silent connection is closed with the chosen code');
  t.equal(reason, 'no pong');
  t.ok(silentPings.length >= 2 && silentPings.every((m) => m === appPing), `it got the application-level ping (${silentPings.length}×) before the timeout`);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(answering.readyState, 1, 'the connection that answers stays open');
  t.ok(pingsSeen >= 5, `the answering one keeps being pinged (${pingsSeen})`);
  t.equal(server.heartbeat!.size, 1, 'only the open connection is watched');
  t.notOk('pingPending' in answering, 'no heartbeat state is written on the connection');
  answering.close();
  await once(answering, 'close');
  await until(() => server.heartbeat!.size === 0, 5000, 'the heartbeat to let go');
});

t.test('Heartbeat: anyMessage counts messages as life; onTimeout replaces the default; options are checked', async (t) => {
  const timedOut: WebSocketConnection[] = [];
  const heartbeat = new Heartbeat({ interval: 30, timeout: 100, protocolPing: false, onPing: () => {}, anyMessage: true, onTimeout: (c) => (timedOut.push(c), c.close(4000)) });
  t.teardown(() => heartbeat.stop());
  const { server, url } = await listen(t);
  const chatty = await connect(url);
  const quiet = await connect(url);
  await until(() => server.clients.size === 2, 5000, 'two connections');
  for (const c of server.clients) heartbeat.add(c);
  const chatter = setInterval(() => chatty.send('still here'), 20);
  t.teardown(() => clearInterval(chatter));
  const [code] = await once<[number]>(quiet, 'close', 5000);
  t.equal(code, 4000, 'onTimeout ran for the quiet connection and closed it its own way');
  t.equal(timedOut.length, 1);
  t.equal(chatty.readyState, 1, 'messages kept the chatty connection alive');
  clearInterval(chatter);
  chatty.close();

  t.throws(() => new Heartbeat({ onTimeout: () => {}, closeCode: 4408 }), TypeError, 'onTimeout or closeCode, not both');
  t.throws(() => new Heartbeat({ closeCode: 1006 }), RangeError, 'a code that cannot be sent');
  t.throws(() => new Heartbeat({ closeReason: 'why' }), TypeError, 'a reason without a code');
  t.throws(() => new Heartbeat({ protocolPing: false }), TypeError, 'no ping at all');
  t.throws(() => new Heartbeat({ onPing: 'ping' as never }), TypeError);
  t.throws(() => createServer({ heartbeat: { timeout: 0 } }), RangeError);
});

t.test('typed per-connection state: Principal inferred from authenticate, Data given explicitly', async (t) => {
  interface User {
    id: string;
    tenants: string[];
  }
  const { url } = await listen<unknown, User>(t);
  const server = createServer({ heartbeat: false, authenticate: (req) => ({ principal: { id: req.query.get('user') ?? '', tenants: ['prod'] } }) });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const seen = once<[WebSocketConnection<unknown, { id: string; tenants: string[] }>]>(server, 'connection');
  const c = await connect(`ws://127.0.0.1:${port}/?user=ada`);
  const [conn] = await seen;
  // Compiles without a cast: the principal's type comes from authenticate.
  const id: string = conn.principal.id;
  t.equal(id, 'ada');
  t.same(conn.principal.tenants, ['prod']);
  const typed = createServer<{ room: string }, User>({ heartbeat: false, noServer: true }, (conn) => {
    conn.data = { room: 'lobby' };
    const room: string = conn.data.room;
    const tenants: string[] = conn.principal.tenants;
    void room;
    void tenants;
  });
  void typed;
  c.close();
  void url;
});

t.test('handleUpgrade with a callback emits nothing itself: the ws line fires connection once', async (t) => {
  const wss = createServer({ noServer: true, heartbeat: false });
  let events = 0;
  wss.on('connection', () => events++);
  const http = createHttpServer();
  http.on('upgrade', (req, socket, head) => {
    if (req.url === '/ws-style') wss.handleUpgrade(req, socket, head, (conn) => wss.emit('connection', conn, req as never));
    else wss.handleUpgrade(req, socket, head);
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    http.close();
    return wss.close({ timeout: 200 });
  });
  const port = (http.address() as { port: number }).port;
  const a = await connect(`ws://127.0.0.1:${port}/ws-style`);
  await until(() => events >= 1, 5000, 'the connection event');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(events, 1, 'the ws-style callback line fires connection exactly once');
  const b = await connect(`ws://127.0.0.1:${port}/plain`);
  await until(() => events >= 2, 5000, 'the second connection event');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(events, 2, 'without a callback the server emits connection once');
  t.throws(() => wss.handleUpgrade({} as never, {} as never, Buffer.alloc(0), 'cb' as never), TypeError, 'a callback that is not a function');
  a.close();
  b.close();
});

t.test('the request has node:http-shaped headers besides header() and headerMap', async (t) => {
  let seen: { headers: Record<string, unknown>; proto: unknown; xff: unknown; map: string[] | undefined; first: string | undefined } | null = null;
  const { port } = await listen(t, {
    authenticate: (req) => {
      seen = {
        headers: { ...req.headers },
        proto: Object.getPrototypeOf(req.headers),
        xff: req.headers['x-forwarded-for'],
        map: req.headerMap.get('x-forwarded-for'),
        first: req.header('X-Forwarded-For'),
      };
      return {};
    },
  });
  const peer = await rawUpgrade(port, '/', [
    'X-Forwarded-For: 10.0.0.1',
    'x-forwarded-for: 10.0.0.2',
    'Cookie: a=1',
    'Cookie: b=2',
    'Set-Cookie: s=1',
    'Authorization: Bearer first',
    'Authorization: Bearer second',
    'User-Agent: test-agent',
  ]);
  t.equal(peer.head.status, 101);
  t.ok(seen);
  const s = seen!;
  t.equal(s.proto, null, 'an object without a prototype, as node:http');
  t.equal(s.xff, '10.0.0.1, 10.0.0.2', 'duplicates joined with ", "');
  t.same(s.map, ['10.0.0.1', '10.0.0.2'], 'headerMap keeps each value');
  t.equal(s.first, '10.0.0.1', 'header() gives the first value, any case');
  t.equal(s.headers.cookie, 'a=1; b=2', 'cookie joined with "; "');
  t.same(s.headers['set-cookie'], ['s=1'], 'set-cookie is always an array');
  t.equal(s.headers.authorization, 'Bearer first', 'a single-valued header keeps its first value');
  t.equal(s.headers['user-agent'], 'test-agent');
  t.equal(s.headers.upgrade, 'websocket');
  peer.socket.destroy();
});

t.test('a refused connection keeps the system error: HandshakeError with code and cause', async (t) => {
  const probe = createNetServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as { port: number }).port;
  await new Promise((r) => probe.close(r));
  const error = await connect(`ws://127.0.0.1:${port}`).then(
    () => null,
    (e: unknown) => e,
  );
  t.type(error, HandshakeError);
  const e = error as HandshakeError;
  t.equal(e.code, 'ECONNREFUSED', 'error.code tells "nobody listening"');
  t.equal((e.cause as { code?: string }).code, 'ECONNREFUSED', 'error.cause is the system error');
  t.equal(e.status, 0, 'no HTTP status: the handshake never started');
  // A refusal by HTTP status has no system code.
  const { port: refusing } = await listen(t, { authenticate: () => false });
  const refused = (await connect(`ws://127.0.0.1:${refusing}`).catch((x: unknown) => x)) as HandshakeError;
  t.equal(refused.status, 401);
  t.equal(refused.code, undefined);
});

t.test('browser-style WebSocket.send converts other values to strings, as WebIDL does', async (t) => {
  const received: string[] = [];
  const { url } = await listen(t, {}, (conn) => conn.on('message', (data, isBinary) => received.push(`${isBinary ? 'bin' : 'text'}:${data.toString()}`)));
  const ws = new WebSocket(url);
  await new Promise((resolve) => ws.addEventListener('open', resolve, { once: true }));
  ws.send(42);
  ws.send(true);
  ws.send(null);
  ws.send({ toString: () => 'custom' });
  ws.send(new Uint8Array([0x68, 0x69]));
  t.throws(() => (ws.send as () => void)(), TypeError, 'a missing argument is a TypeError');
  t.throws(() => ws.send(Symbol('x') as never), TypeError, 'a Symbol cannot be converted');
  await until(() => received.length === 5, 5000, 'five messages');
  t.same(received, ['text:42', 'text:true', 'text:null', 'text:custom', 'bin:hi']);
  ws.close();
});

t.test('browser-style WebSocket.close() while connecting aborts the handshake: error, then close 1006', async (t) => {
  // A server that accepts TCP and never answers the upgrade.
  const sockets: Socket[] = [];
  const silent = createNetServer((s) => sockets.push(s.on('error', () => {}).resume()));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const port = (silent.address() as { port: number }).port;
  const ws = new WebSocket(`ws://127.0.0.1:${port}`);
  const events: string[] = [];
  ws.onerror = () => events.push('error');
  const closed = new Promise<CloseEvent>((resolve) => {
    ws.onclose = (event) => {
      events.push('close');
      resolve(event);
    };
  });
  ws.onopen = () => events.push('open');
  await until(() => sockets.length === 1, 5000, 'the TCP connection');
  const serverSide = once(sockets[0], 'close', 5000);
  t.equal(ws.readyState, WebSocket.CONNECTING);
  ws.close();
  t.equal(ws.readyState, WebSocket.CLOSING, 'CLOSING at once, as the spec says');
  const event = await closed;
  t.equal(event.code, 1006);
  t.equal(event.wasClean, false);
  t.same(events, ['error', 'close'], 'error then close, never open');
  t.equal(ws.readyState, WebSocket.CLOSED);
  await serverSide;
  t.pass('the handshake socket was destroyed');
});
