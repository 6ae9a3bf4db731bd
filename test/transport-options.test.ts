/**
 * Option names (issue 18): every option object of the engine refuses a name it does not know with a TypeError that
 * names the equivalent — ws's names above all, so code moved from ws never runs with `verifyClient` or `maxPayload`
 * silently ignored (every client let in; no limit but the default).
 */
import t from 'tap';
import { connect, createServer, HandshakeError, prepare, Protocol, WebSocket, type ProtocolHandler, type ServerOptions } from '../lib/index.js';
import { createHub } from '../lib/hub/index.js';
import { once } from './helpers/net.js';

/** Options as untyped JavaScript passes them (the compiler would refuse these names). */
function js<T>(options: Record<string, unknown>): T {
  return options as T;
}

const server = (options: Record<string, unknown>) => () => createServer(js<ServerOptions>({ noServer: true, ...options }));

t.test("createServer: ws's option names are refused, each naming its equivalent", async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['verifyClient', () => true, /unknown option "verifyClient".*authenticate/],
    ['maxPayload', 1024, /unknown option "maxPayload".*maxMessageSize/],
    ['handleProtocols', () => 'a', /unknown option "handleProtocols".*selectProtocol/],
    ['clientTracking', false, /"clientTracking".*server\.clients/],
    ['server', {}, /"server".*noServer: true.*handleUpgrade/],
    ['backlog', 10, /"backlog".*not supported/],
    ['skipUTF8Validation', true, /"skipUTF8Validation".*always validated/],
    ['WebSocket', class {}, /"WebSocket".*WebSocketConnection/],
    ['allowSynchronousEvents', false, /"allowSynchronousEvents".*synchronously/],
    ['maxFragments', 10, /"maxFragments".*fragmentOverhead/],
    ['maxBufferedChunks', 10, /"maxBufferedChunks".*maxMessageSize/],
    ['maxPendingAutoPongs', 10, /"maxPendingAutoPongs".*maxPongBacklog/],
  ];
  for (const [name, value, message] of cases) {
    t.throws(server({ [name]: value }), { name: 'TypeError', message }, name);
  }
  t.throws(server({ key: 'k', cert: 'c' }), { name: 'TypeError', message: /"key".*tls: \{ key \}/ }, 'TLS options belong under tls');
  t.throws(server({ maxMesageSize: 1 }), { name: 'TypeError', message: /"maxMesageSize": did you mean maxMessageSize\?/ }, 'a typo');
  t.throws(server({ Authenticate: () => true }), { name: 'TypeError', message: /did you mean authenticate\?/ }, 'another case');
  t.throws(server({ frobnicate: 1 }), { name: 'TypeError', message: /"frobnicate": accepted: .*authenticate.*maxMessageSize/ }, 'no close name: the list');
  t.throws(server({ perMessageDeflate: { concurrencyLimit: 2 } }), { name: 'TypeError', message: /perMessageDeflate: unknown option "concurrencyLimit".*concurrency/ });
  t.throws(server({ perMessageDeflate: { zlibDeflateOptions: {} } }), { name: 'TypeError', message: /"zlibDeflateOptions".*level and memLevel/ });
  t.throws(server({ heartbeat: { pingInterval: 1000 } }), { name: 'TypeError', message: /heartbeat: unknown option "pingInterval".*interval/ });
});

t.test('createServer: the names it shares with ws, and every own option, are accepted; undefined sets nothing', async (t) => {
  const s = createServer({
    noServer: true,
    autoPong: true,
    closeTimeout: 1000,
    handshakeTimeout: 1000,
    path: '/ws',
    host: '127.0.0.1',
    perMessageDeflate: { threshold: 10, concurrency: 2, level: 1 },
    maxMessageSize: 1024,
    maxFrameSize: 1024,
    fragmentOverhead: 16,
    strictLengths: false,
    maxPongBacklog: 1024,
    iteratorHighWaterMark: 8,
    maxHeadSize: 8192,
    maxHeaders: 50,
    origins: ['https://example.com'],
    maxConnections: 10,
    selectProtocol: () => undefined,
    authenticate: () => ({}),
    httpHandler: () => ({ status: 204 }),
    heartbeat: { interval: 1000, timeout: 1000, anyMessage: true },
    tls: undefined,
    ...js<ServerOptions>({ verifyClient: undefined }),
  });
  t.ok(s, 'created');
  await s.close();
});

t.test('a server refusing verifyClient never lets a client in unchecked', async (t) => {
  // Before: the option was ignored and this server accepted every client.
  let s: ReturnType<typeof createServer> | undefined;
  t.throws(() => (s = createServer(js<ServerOptions>({ port: 0, verifyClient: () => false }))), TypeError);
  t.equal(s, undefined, 'no server was made (and none listens)');
});

t.test('server.close: a callback (ws style) or an unknown option is a TypeError', async (t) => {
  const s = createServer({ noServer: true });
  t.throws(() => s.close((() => {}) as never), { name: 'TypeError', message: /close\(\)\.then\(callback\)/ });
  t.throws(() => s.close(js({ timout: 10 })), { name: 'TypeError', message: /did you mean timeout\?/ });
  await s.close({ timeout: 10 });
});

t.test("connect: ws's client option names reject with a TypeError before any socket opens", async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['maxPayload', 10, /connect: unknown option "maxPayload".*maxMessageSize/],
    ['protocolVersion', 8, /"protocolVersion".*version 13/],
    ['generateMask', () => {}, /"generateMask"/],
    ['finishRequest', () => {}, /"finishRequest".*headers/],
    ['skipUTF8Validation', true, /always validated/],
    ['allowSynchronousEvents', true, /synchronously/],
    ['timeout', 100, /"timeout".*handshakeTimeout/],
    ['rejectUnauthorized', false, /tls: \{ rejectUnauthorized \}/],
    ['agent', {}, /"agent".*not supported/],
    ['perMessageDeflate', { zlibInflateOptions: {} }, /perMessageDeflate: unknown option "zlibInflateOptions"/],
  ];
  // Port 1: nothing listens, so a check made after connecting would show as a HandshakeError instead.
  for (const [name, value, message] of cases) {
    await t.rejects(connect('ws://127.0.0.1:1/', js({ [name]: value })), { name: 'TypeError', message }, name);
  }
  await t.rejects(
    connect('ws://127.0.0.1:1/', { followRedirects: true, maxRedirects: 2, handshakeTimeout: 1000, origin: 'https://a.example', headers: {}, autoPong: true, closeTimeout: 100 }),
    HandshakeError,
    "the names shared with ws are accepted (the failure is the connection's)",
  );
});

t.test('new WebSocket: an unknown option throws at once; its signal aborts the handshake', async (t) => {
  t.throws(() => new WebSocket('ws://127.0.0.1:1/', [], js({ maxPayload: 10 })), { name: 'TypeError', message: /new WebSocket: unknown option "maxPayload".*maxMessageSize/ });
  // The signal of the options was replaced by the constructor's own before: now either aborts.
  const net = await import('node:net');
  const sockets: import('node:net').Socket[] = [];
  const listener = net.createServer((socket) => sockets.push(socket)); // accepts, never answers the upgrade
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    listener.close();
  });
  const controller = new AbortController();
  const ws = new WebSocket(`ws://127.0.0.1:${(listener.address() as { port: number }).port}/`, [], { signal: controller.signal, handshakeTimeout: 10_000 });
  const closed = new Promise<number>((r) => (ws.onclose = (e) => r(e.code)));
  setTimeout(() => controller.abort(), 50);
  const started = Date.now();
  t.equal(await closed, 1006);
  t.ok(Date.now() - started < 5000, 'aborted by the signal, not the handshake timeout');
});

t.test('send, sendFragment and prepare: unknown option names (ws: fin, mask) are TypeErrors', async (t) => {
  const s = createServer({ heartbeat: false });
  const { port } = await s.listen(0, '127.0.0.1');
  t.teardown(() => s.close({ timeout: 100 }));
  const c = await connect(`ws://127.0.0.1:${port}/`);
  t.throws(() => c.send('x', js({ fin: false })), { name: 'TypeError', message: /send: unknown option "fin".*sendFragment/ });
  t.throws(() => c.send('x', js({ mask: true })), { name: 'TypeError', message: /"mask".*RFC 6455/ });
  t.throws(() => c.send('x', js({ binry: true })), { name: 'TypeError', message: /did you mean binary\?/ });
  t.throws(() => c.sendFragment('x', false, js({ compres: false })), { name: 'TypeError', message: /sendFragment: unknown option "compres"/ });
  t.equal(c.send('ok', { binary: false, compress: false }), true, 'known options pass');
  t.throws(() => prepare('x', js({ windowbits: 10 })), { name: 'TypeError', message: /prepare: unknown option "windowbits": did you mean windowBits\?/ });
  c.close();
  await once(c, 'close');
});

t.test('the core Protocol refuses unknown option names', async (t) => {
  const handler: ProtocolHandler = { onMessage() {}, onPing() {}, onPong() {}, onClose() {}, onError() {}, onWrite() {}, onEnd() {} };
  t.throws(() => new Protocol(js({ role: 'server', maxPayload: 10 }), handler), { name: 'TypeError', message: /Protocol: unknown option "maxPayload".*maxMessageSize/ });
  t.ok(new Protocol({ role: 'client', maxMessageSize: 10, strictLengths: true }, handler));
});

t.test("the hub's options.server: engine options only, none the hub sets itself", async (t) => {
  t.throws(() => createHub(js({ server: { verifyClient: () => true } })), { name: 'TypeError', message: /createHub options\.server: unknown option "verifyClient".*authenticate/ });
  t.throws(() => createHub(js({ server: { maxMessageSize: 10 } })), { name: 'TypeError', message: /"maxMessageSize".*limits\.maxMessageSize/ });
  t.throws(() => createHub(js({ server: { heartbeat: false } })), { name: 'TypeError', message: /"heartbeat".*options\.heartbeat of createHub/ });
  t.throws(() => createHub(js({ server: { port: 8080 } })), { name: 'TypeError', message: /hub\.listen\(port\)/ });
  const hub = createHub({ server: { handshakeTimeout: 2000, perMessageDeflate: true, maxConnections: 10 } });
  t.equal(hub.server.options.handshakeTimeout, 2000, 'engine options reach the server');
  await hub.close();
});
