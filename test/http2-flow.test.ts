/**
 * HTTP/2 stream semantics of WebSockets (RFC 8441 §5): flow control as the backpressure (a stalled reader on one
 * stream holds its peer's data in the peer's buffer while the other streams of the session flow), RST_STREAM from
 * either side as an abnormal closure (1006), GOAWAY closing the session's WebSockets with 1001, a destroyed session
 * with 1006, and the next connect opening a new session.
 */
import t, { type Test } from 'tap';
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { connect, createServer, type WebSocketConnection, type WebSocketServer } from '../lib/index.js';
import { once, until } from './helpers/net.js';

const MiB = 1024 * 1024;

/** The HTTP/2 stream under a connection (a test reaching below the API on purpose). */
function streamOf(c: WebSocketConnection): http2.Http2Stream {
  return (c as unknown as { socket: Duplex }).socket as http2.Http2Stream;
}

async function server(t: Test, onConnection: (c: WebSocketConnection, path: string) => void): Promise<{ wss: WebSocketServer; url: string; sessions: () => Set<http2.ServerHttp2Session> }> {
  const wss = createServer({ heartbeat: false, http2: { cleartext: true } }, (c, req) => onConnection(c, req.path));
  const { port } = await wss.listen(0, '127.0.0.1');
  t.teardown(() => wss.close({ timeout: 200 }));
  const own = (wss as unknown as { h2: { sessions: Set<http2.ServerHttp2Session> } }).h2;
  return { wss, url: `ws://127.0.0.1:${port}`, sessions: () => own.sessions };
}

function echo(c: WebSocketConnection): void {
  c.on('message', (d, b) => c.send(d, { binary: b }));
}

t.test('a stalled reader holds its own stream only: the other WebSockets of the session flow', { timeout: 60_000 }, async (t) => {
  let stalled: WebSocketConnection | null = null;
  let stalledBytes = 0;
  const { url } = await server(t, (c, path) => {
    if (path === '/stalled') {
      stalled = c;
      c.pause();
      c.on('message', (d) => (stalledBytes += d.length));
    } else echo(c);
  });
  const a = await connect(`${url}/stalled`, { http2: true });
  await until(() => stalled !== null, 5000, 'server side of the stalled WebSocket');
  // 64 messages of 64 KiB toward a server that does not read.
  const chunk = Buffer.alloc(64 * 1024, 1);
  for (let i = 0; i < 64; i++) a.send(chunk);
  await until(() => a.bufferedAmount > 3 * MiB, 5000, 'the sender to hold what the stalled reader does not take');
  const others = await Promise.all(Array.from({ length: 4 }, () => connect(`${url}/echo`, { http2: true })));
  t.equal(new Set([a, ...others].map((c) => streamOf(c).session)).size, 1, 'all five WebSockets share one session');
  const big = Buffer.alloc(MiB, 2);
  const echoed = await Promise.all(
    others.map((c) => {
      const got = once<[Buffer]>(c, 'message', 30_000);
      c.send(big);
      return got.then(([d]) => d.equals(big));
    }),
  );
  t.same(echoed, [true, true, true, true], 'four 1 MiB echoes completed on the same session while one stream is stalled');
  t.ok(a.bufferedAmount > 3 * MiB, `the stalled WebSocket's data is still held by its sender (${a.bufferedAmount} bytes)`);
  const held = streamOf(stalled!).readableLength;
  t.ok(held <= 128 * 1024, `the paused server side holds no more than its stream window and read buffer (${held} bytes)`);
  t.equal(stalledBytes, 0, 'nothing delivered while paused');
  // Resume: everything arrives, the sender's buffer empties.
  stalled!.resume();
  await until(() => stalledBytes === 64 * chunk.length, 30_000, 'all 4 MiB delivered after resume');
  await until(() => a.bufferedAmount === 0, 5000, "the sender's buffer drained");
  t.pass('the stalled stream caught up after resume');
  for (const c of [a, ...others]) c.close();
});

t.test('server to a stalled client: send() reports backpressure, drain follows resume', { timeout: 60_000 }, async (t) => {
  let serverSide: WebSocketConnection | null = null;
  const { url } = await server(t, (c) => (serverSide = c));
  const c = await connect(url, { http2: true });
  c.pause();
  await until(() => serverSide !== null, 5000, 'server side');
  const s = serverSide!;
  const chunk = Buffer.alloc(64 * 1024, 3);
  const sent = 32;
  const accepted: boolean[] = [];
  for (let i = 0; i < sent; i++) accepted.push(s.send(chunk));
  t.equal(accepted.filter(Boolean).length, 0, "send() reports backpressure at once (64 KiB is over the stream's 16 KiB high-water mark)");
  // What the client does not read stays in the server's buffer: the client's stream window (64 KiB) closes.
  await new Promise((r) => setTimeout(r, 300));
  t.ok(s.bufferedAmount > sent * chunk.length - 256 * 1024, `the server holds what the client has not taken (${s.bufferedAmount} of ${sent * chunk.length} bytes)`);
  let received = 0;
  c.on('message', () => received++);
  const drained = once(s, 'drain', 30_000);
  c.resume();
  await drained;
  t.pass('drain after the client resumed');
  await until(() => received === sent, 30_000, 'every message received');
  t.equal(s.bufferedAmount, 0, 'the server buffer emptied');
  c.close();
});

t.test('RST_STREAM from the client: 1006 on the server, the session and its other WebSockets go on', async (t) => {
  const closes: number[] = [];
  const { url } = await server(t, (c) => {
    echo(c);
    c.on('close', (code) => closes.push(code));
  });
  const a = await connect(url, { http2: true });
  const b = await connect(url, { http2: true });
  t.equal(streamOf(a).session, streamOf(b).session, 'same session');
  const aClosed = once<[number]>(a, 'close');
  streamOf(a).close(http2.constants.NGHTTP2_CANCEL);
  t.equal((await aClosed)[0], 1006, 'client side: 1006');
  await until(() => closes.length === 1, 5000, 'server side closed');
  t.same(closes, [1006], 'server side: 1006, nothing thrown');
  b.send('still here');
  t.equal(String((await once<[Buffer]>(b, 'message'))[0]), 'still here');
  b.close();
});

t.test('RST_STREAM from the server (terminate, or a reset with an error code): 1006 on the client', async (t) => {
  const conns: WebSocketConnection[] = [];
  const { url } = await server(t, (c) => conns.push(c));
  const a = await connect(url, { http2: true });
  const b = await connect(url, { http2: true });
  await until(() => conns.length === 2, 5000, 'server sides');
  const aClosed = once<[number]>(a, 'close');
  conns[0].terminate();
  t.equal((await aClosed)[0], 1006, 'terminate(): RST_STREAM, 1006');
  const bClosed = once<[number]>(b, 'close');
  let errors = 0;
  b.on('error', () => errors++);
  streamOf(conns[1]).close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  t.equal((await bClosed)[0], 1006, 'RST_STREAM INTERNAL_ERROR: 1006');
  t.ok(errors <= 1, 'at most an error event, never a throw');
});

t.test('GOAWAY from the client: the server closes that session’s WebSockets with 1001, handshake completed', async (t) => {
  const serverCloses: number[] = [];
  const { url } = await server(t, (c) => c.on('close', (code) => serverCloses.push(code)));
  const conns = await Promise.all([1, 2, 3].map(() => connect(url, { http2: true })));
  const session = streamOf(conns[0]).session!;
  const closed = Promise.all(conns.map((c) => once<[number]>(c, 'close')));
  session.close(); // GOAWAY NO_ERROR: no new streams; these may finish
  const codes = (await closed).map(([code]) => code);
  t.same(codes, [1001, 1001, 1001], "the client got the server's 1001 close frames");
  await until(() => serverCloses.length === 3, 5000, 'server sides closed');
  t.same(serverCloses, [1001, 1001, 1001], 'closing handshakes completed on the server');
  const next = await connect(url, { http2: true });
  t.not(streamOf(next).session, session, 'the next connect opened a new session');
  next.close();
});

t.test('GOAWAY from the server: the client closes with 1001; a destroyed session gives 1006', async (t) => {
  const serverCloses: number[] = [];
  const { url, sessions } = await server(t, (c) => c.on('close', (code) => serverCloses.push(code)));
  const a = await connect(url, { http2: true });
  const b = await connect(url, { http2: true });
  const first = streamOf(a).session;
  const closed = Promise.all([a, b].map((c) => once<[number]>(c, 'close')));
  for (const s of sessions()) s.close();
  t.same((await closed).map(([c]) => c), [1001, 1001], 'the client closed its WebSockets with 1001 (echoed by the server)');
  await until(() => serverCloses.length === 2, 5000, 'server sides closed');
  t.same(serverCloses, [1001, 1001]);
  // A session destroyed under its WebSockets.
  const c = await connect(url, { http2: true });
  t.not(streamOf(c).session, first, 'a new session after the GOAWAY');
  const cClosed = once<[number]>(c, 'close');
  for (const s of sessions()) s.destroy();
  t.equal((await cClosed)[0], 1006, 'session destroyed: 1006');
  const d = await connect(url, { http2: true });
  d.send('new session works');
  d.on('message', () => {});
  t.equal(d.transport, 'h2');
  d.close();
});

t.test('a GOAWAY with an error code destroys the session: 1006 on both sides', async (t) => {
  const serverCloses: number[] = [];
  const { url, sessions } = await server(t, (c) => c.on('close', (code) => serverCloses.push(code)));
  const a = await connect(url, { http2: true });
  const aClosed = once<[number]>(a, 'close');
  for (const s of sessions()) s.goaway(http2.constants.NGHTTP2_PROTOCOL_ERROR);
  t.equal((await aClosed)[0], 1006, 'client: 1006');
  await until(() => serverCloses.length === 1, 10_000, 'server side closed');
  t.ok([1006, 1001].includes(serverCloses[0]), `server side closed (${serverCloses[0]})`);
});

t.test('RST_STREAM NO_ERROR to a paused WebSocket: it closes at once (1006), not when it resumes', async (t) => {
  let serverSide: WebSocketConnection | null = null;
  const { url } = await server(t, (c) => {
    serverSide = c;
    c.pause();
  });
  const c = await connect(url, { http2: true });
  await until(() => serverSide !== null, 5000, 'server side');
  c.send(Buffer.alloc(100_000)); // something buffered, unread, on the paused side
  await new Promise((r) => setTimeout(r, 100));
  const closed = once<[number]>(serverSide!, 'close', 5000);
  streamOf(c).close(http2.constants.NGHTTP2_NO_ERROR);
  t.equal((await closed)[0], 1006, 'the paused server side closed with 1006');
});

t.test('a GOAWAY as the CONNECT leaves (REFUSED_STREAM): the client retries once on a new session', async (t) => {
  const h2server = http2.createServer({ settings: { enableConnectProtocol: true } });
  const wss = createServer({ noServer: true, heartbeat: false }, (c) => echo(c));
  let sessions = 0;
  const opened: http2.ServerHttp2Session[] = [];
  h2server.on('session', (session) => {
    opened.push(session);
    // The first session goes away at once, refusing every stream.
    if (sessions++ === 0) session.goaway(http2.constants.NGHTTP2_NO_ERROR, 0);
  });
  wss.attachHttp2(h2server);
  await new Promise<void>((r) => h2server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    // (node keeps a server session that sent a bare GOAWAY open after the client ended its side: ours to close.)
    for (const s of opened) s.destroy();
    h2server.close();
    return wss.close({ timeout: 200 });
  });
  const c = await connect(`ws://127.0.0.1:${(h2server.address() as { port: number }).port}/`, { http2: true });
  t.equal(c.transport, 'h2', 'connected over HTTP/2');
  t.equal(sessions, 2, 'on a second session');
  c.send('hi');
  t.equal(String((await once<[Buffer]>(c, 'message'))[0]), 'hi');
  c.close();
});
