/**
 * What an extended CONNECT that is wrong gets (RFC 8441, RFC 9113): the engine's answers (a status, then
 * END_STREAM), and what node:http2 answers itself before the engine sees the stream (RST_STREAM PROTOCOL_ERROR),
 * each checked from a client on the wire: node's own client where it can send the request, a raw frame writer
 * (test/helpers/h2raw.ts) where node's client will not (upper-case names, `:protocol` without the setting).
 */
import t, { type Test } from 'tap';
import http2 from 'node:http2';
import { createServer, type ServerOptions, type WebSocketServer } from '../lib/index.js';
import { connectHeaders, h2session, outcome } from './helpers/h2.js';
import { RawH2 } from './helpers/h2raw.js';
import { once, until } from './helpers/net.js';

const { NGHTTP2_PROTOCOL_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

async function h2c(t: Test, options: ServerOptions = {}): Promise<{ wss: WebSocketServer; port: number; rejected: Array<[number, string]> }> {
  const wss = createServer({ heartbeat: false, http2: { cleartext: true }, ...options }, (c) => c.on('message', (d) => c.send(d)));
  const rejected: Array<[number, string]> = [];
  wss.on('rejected', (status, message) => rejected.push([status, message]));
  const { port } = await wss.listen(0, '127.0.0.1');
  t.teardown(() => wss.close({ timeout: 200 }));
  return { wss, port, rejected };
}

const BASE: Array<[string, string]> = [[':method', 'CONNECT'], [':protocol', 'websocket'], [':scheme', 'http'], [':path', '/'], [':authority', 'localhost']];

t.test('the server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL (0x8 = 1)', async (t) => {
  const { port } = await h2c(t);
  const raw = await RawH2.open(port);
  t.teardown(() => raw.close());
  t.equal((await raw.settings()).get(0x8), 1);
});

t.test('upper-case header names: node:http2 resets the stream with PROTOCOL_ERROR before the engine sees it', async (t) => {
  const { port, wss } = await h2c(t);
  let connections = 0;
  wss.on('connection', () => connections++);
  const raw = await RawH2.open(port);
  t.teardown(() => raw.close());
  raw.headers(1, [...BASE, ['Sec-WebSocket-Version', '13']]);
  t.same(await raw.answer(1), { kind: 'rst', code: NGHTTP2_PROTOCOL_ERROR }, 'RST_STREAM PROTOCOL_ERROR (RFC 9113 §8.2.1: a malformed request)');
  raw.headers(3, [...BASE, ['sec-websocket-version', '13']]);
  t.same(await raw.answer(3), { kind: 'headers', status: 200, endStream: false }, 'the same request in lower case on the same connection: 200');
  t.equal(connections, 1, 'only the lower-case one became a WebSocket');
});

t.test(':protocol to a server that did not advertise the setting', async (t) => {
  // A node:http2 server without enableConnectProtocol (the engine is not attached).
  const plain = http2.createServer();
  let streams = 0;
  plain.on('stream', (s) => {
    streams++;
    s.respond({ ':status': 404 }, { endStream: true });
  });
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  t.teardown(() => plain.close());
  const port = (plain.address() as { port: number }).port;
  const raw = await RawH2.open(port);
  t.teardown(() => raw.close());
  t.notOk((await raw.settings()).get(0x8), 'the server does not advertise the setting (node sends none by default)');
  raw.headers(1, [...BASE, ['sec-websocket-version', '13']]);
  t.same(await raw.answer(1), { kind: 'rst', code: NGHTTP2_PROTOCOL_ERROR }, 'node:http2 resets it with PROTOCOL_ERROR (RFC 8441 §3: :protocol needs the setting)');
  t.equal(streams, 0, 'no stream event');
  // node's own client: the request fails with a stream reset, and the server sees no stream either.
  const session = await h2session(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const r = await outcome(session.request(connectHeaders(), { endStream: false }));
  t.ok('rst' in r && [NGHTTP2_PROTOCOL_ERROR, NGHTTP2_REFUSED_STREAM].includes(r.rst), `node's client: the stream is reset (${JSON.stringify(r)})`);
  t.equal(streams, 0, 'still no stream event');
});

t.test('the engine’s answers: bad :protocol 501, plain CONNECT 501, END_STREAM 400, missing or wrong version 400, GET 426', async (t) => {
  const { port, rejected } = await h2c(t);
  const session = await h2session(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const ask = async (headers: http2.OutgoingHttpHeaders, endStream = false): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string } | { rst: number }> => {
    const r = await outcome(session.request(headers, { endStream }));
    return 'status' in r ? { status: r.status, headers: r.headers, body: await r.body } : r;
  };
  const badProtocol = await ask(connectHeaders('/', { ':protocol': 'connect-udp' }));
  t.match(badProtocol, { status: 501, body: 'only the websocket protocol is served here' }, 'another :protocol: 501 Not Implemented');
  const tunnel = await ask({ ':method': 'CONNECT', ':authority': 'example.com:443' });
  t.match(tunnel, { status: 501 }, 'a plain CONNECT tunnel: 501');
  const ended = await ask(connectHeaders('/'), true);
  t.match(ended, { status: 400 }, 'CONNECT with END_STREAM on its headers: 400');
  const noVersion = await ask(connectHeaders('/', { 'sec-websocket-version': undefined }));
  t.match(noVersion, { status: 400, headers: { 'sec-websocket-version': '13' } }, 'missing sec-websocket-version: 400 naming 13');
  const oldVersion = await ask(connectHeaders('/', { 'sec-websocket-version': '8' }));
  t.match(oldVersion, { status: 400, headers: { 'sec-websocket-version': '13' } }, 'another version: 400 naming 13 (426 would ask for an Upgrade HTTP/2 forbids)');
  const badProtocols = await ask(connectHeaders('/', { 'sec-websocket-protocol': 'a b' }));
  t.match(badProtocols, { status: 400 }, 'malformed sec-websocket-protocol: 400');
  const get = await ask({ ':path': '/' }, true);
  t.match(get, { status: 426, body: 'this endpoint speaks WebSocket' }, 'a GET without httpHandler: 426');
  t.same(rejected.map(([s]) => s), [501, 501, 400, 400, 400, 400], "each refusal reported by the 'rejected' event");
  // The session survives every refusal.
  const ok = await outcome(session.request(connectHeaders('/'), { endStream: false }));
  t.ok('status' in ok && ok.status === 200, 'a good CONNECT on the same session: 200');
});

t.test('DATA before the 200 is a protocol error for the stream', async (t) => {
  // With an async authenticate, the 200 waits: a client that writes WebSocket frames first is reset.
  let release: (() => void) | null = null;
  const { port, wss } = await h2c(t, { authenticate: () => new Promise((resolve) => (release = () => resolve({}))) });
  let connections = 0;
  wss.on('connection', () => connections++);
  const session = await h2session(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const stream = session.request(connectHeaders('/'), { endStream: false });
  const result = outcome(stream);
  stream.write(Buffer.from([0x81, 0x80, 1, 2, 3, 4])); // a masked empty text frame, before any response
  await until(() => release !== null, 5000, 'authenticate called');
  t.same(await result, { rst: NGHTTP2_PROTOCOL_ERROR }, 'RST_STREAM PROTOCOL_ERROR');
  release!();
  await new Promise((r) => setTimeout(r, 50));
  t.equal(connections, 0, 'no connection after the verdict came');
  // The same from the raw client, frames in one write with the HEADERS (synchronous accept).
  const raw = await RawH2.open(port);
  t.teardown(() => raw.close());
  raw.headers(1, [...BASE, ['sec-websocket-version', '13']]);
  raw.data(1, Buffer.from([0x81, 0x80, 1, 2, 3, 4]));
  t.same(await raw.answer(1), { kind: 'rst', code: NGHTTP2_PROTOCOL_ERROR }, 'raw: DATA right behind the HEADERS is reset too');
});

t.test('refusals from the hooks and limits over h2: 404 path, 403 origin, 401, 500 on a throwing hook, 503 when closing', async (t) => {
  const { port, wss } = await h2c(t, {
    path: '/ws',
    origins: ['https://ok.example'],
    authenticate: (req) => {
      if (req.query.get('boom')) throw new Error('hook failed');
      return req.query.get('user') ? { principal: req.query.get('user') } : false;
    },
  });
  const session = await h2session(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const status = async (path: string, extra: http2.OutgoingHttpHeaders = {}): Promise<number> => {
    const r = await outcome(session.request(connectHeaders(path, { origin: 'https://ok.example', ...extra }), { endStream: false }));
    return 'status' in r ? r.status : -r.rst;
  };
  t.equal(await status('/other?user=a'), 404);
  t.equal(await status('/ws?user=a', { origin: 'https://evil.example' }), 403);
  t.equal(await status('/ws'), 401);
  t.equal(await status('/ws?boom=1'), 500);
  t.equal(await status('/ws?user=a'), 200);
  const closing = wss.close({ timeout: 200 });
  // A session opened before the shutdown still gets an answer for a new stream (or the GOAWAY refuses it).
  const late = await outcome(session.request(connectHeaders('/ws?user=b', { origin: 'https://ok.example' }), { endStream: false })).catch(() => ({ rst: -1 }));
  t.ok(('status' in late && late.status === 503) || 'rst' in late, 'after close(): 503 or refused by the GOAWAY');
  await closing;
});

t.test('a refused CONNECT whose client keeps its side open is reset with NO_ERROR after the answer', async (t) => {
  const { port } = await h2c(t);
  const session = await h2session(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const stream = session.request(connectHeaders('/', { 'sec-websocket-version': '7' }), { endStream: false });
  stream.on('error', () => {});
  stream.resume();
  const [status] = await once<[http2.IncomingHttpHeaders]>(stream, 'response');
  t.equal(status[':status'], 400);
  await once(stream, 'close', 5000);
  t.equal(stream.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'closed with NO_ERROR (RFC 9113 §8.1)');
});

t.test('handshake timeout over h2: a CONNECT whose authenticate never answers is reset; an idle session is dropped', async (t) => {
  const { port, rejected } = await h2c(t, { handshakeTimeout: 200, authenticate: () => new Promise(() => {}) });
  const session = await h2session(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const r = await outcome(session.request(connectHeaders('/'), { endStream: false }));
  t.ok('rst' in r, `the stream was reset (${JSON.stringify(r)})`);
  await until(() => rejected.some(([s]) => s === 408), 5000, 'the 408 report');
  t.pass("'rejected' reported 408 (handshake timeout)");
  // A session that never opens a stream is closed after the handshake timeout.
  const idle = await h2session(`http://127.0.0.1:${port}`);
  t.teardown(() => idle.destroy());
  await once(idle, 'close', 5000);
  t.pass('the idle session was closed by the server');
});

t.test('headers HTTP/2 forbids, from the application, never crash: refusal without them, 500 from httpHandler', async (t) => {
  const { port } = await h2c(t, {
    authenticate: () => ({ reject: true, status: 403, headers: { Connection: 'close' }, message: 'no' }),
    httpHandler: () => ({ status: 200, headers: { 'Transfer-Encoding': 'chunked' }, body: 'x' }),
  });
  const session = await h2session(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const refused = await outcome(session.request(connectHeaders('/'), { endStream: false }));
  t.ok('status' in refused && refused.status === 403 && refused.headers.connection === undefined, '403, the connection-specific header left out');
  const page = await outcome(session.request({ ':path': '/' }));
  t.ok('status' in page && page.status === 500, 'httpHandler with a forbidden header: 500');
  if ('status' in page) t.equal(await page.body, 'invalid response headers');
});
