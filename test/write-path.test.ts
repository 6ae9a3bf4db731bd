/**
 * The direct write path (lib/transport/writes.ts): a plain TCP connection writes each flushed batch through its
 * socket handle's `writeBuffer`/`writev`, TLS and other Duplexes through `socket.write`. What must hold on it: frames
 * of every size arrive whole and in order, a batch gathered in one tick leaves in one handle call, a prepared frame
 * goes to many handles from the same bytes, backpressure (`bufferedAmount`, `send`'s result, `drain`) counts what
 * the handle still holds, a peer reset mid-write closes with 1006 without an unhandled error, and `server.stats()`
 * says which path each socket uses.
 *
 * test/write-path-stream.test.ts runs this file (and the transport suites) again with WSENGINE_WRITE_PATH=stream,
 * where every socket must write through `socket.write`.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { connect, createServer, prepare, type ServerOptions, type WebSocketConnection, type WebSocketServer } from '../lib/index.js';
import { directWriter, directWritesAllowed } from '../lib/transport/writes.js';
import { decodeFrames, once, rawUpgrade, until } from './helpers/net.js';

const direct = directWritesAllowed();
const socketOf = (c: WebSocketConnection): Socket => (c as unknown as { socket: Socket }).socket;

async function echoServer(t: Test, options: ServerOptions = {}): Promise<{ server: WebSocketServer; url: string; port: number; conns: WebSocketConnection[] }> {
  const conns: WebSocketConnection[] = [];
  const server = createServer({ heartbeat: false, ...options }, (c) => {
    conns.push(c);
    c.on('message', (data, isBinary) => c.send(data, { binary: isBinary }));
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  return { server, port, url: `ws://127.0.0.1:${port}`, conns };
}

/** Counts the handle calls of a socket's writes (own properties over the prototype's methods), keeping what they wrote. */
function spyHandle(socket: Socket): { calls: Array<{ method: string; data: unknown }> } {
  const handle = (socket as unknown as { _handle: Record<string, unknown> })._handle;
  const spy = { calls: [] as Array<{ method: string; data: unknown }> };
  for (const method of ['writeBuffer', 'writev', 'writeLatin1String', 'writeUtf8String']) {
    const original = Object.getPrototypeOf(handle)[method] as (...args: unknown[]) => unknown;
    handle[method] = function (this: unknown, ...args: unknown[]): unknown {
      spy.calls.push({ method, data: Array.isArray(args[1]) ? [...(args[1] as unknown[])] : args[1] });
      return original.apply(this, args);
    };
  }
  return spy;
}

/** One echo through a fresh server and client: the first public write of the process shows the request class. */
async function warmUp(t: Test): Promise<void> {
  const { url } = await echoServer(t);
  const c = await connect(url);
  const got = once(c, 'message');
  c.send('warm');
  await got;
  c.terminate();
}

t.test(`plain TCP sockets ${direct ? 'write directly' : 'write through socket.write'} (WSENGINE_WRITE_PATH=${process.env.WSENGINE_WRITE_PATH ?? 'unset'}); server.stats() says so`, async (t) => {
  await warmUp(t);
  const { server, url, conns } = await echoServer(t);
  const client = await connect(url);
  t.teardown(() => client.terminate());
  await until(() => conns.length === 1);
  const stats = server.stats();
  t.equal(stats.connections, 1);
  t.same(stats.writePath, direct ? { direct: 1, stream: 0 } : { direct: 0, stream: 1 });
  t.equal(stats.readPath.direct + stats.readPath.stream, 1, 'the read path is counted too');
  // The server's socket: its writes go through the handle, never through the Writable (which stays empty).
  const socket = socketOf(conns[0]);
  const spy = spyHandle(socket);
  const writeSpy = t.capture(socket, 'write', socket.write);
  const got = once(client, 'message');
  client.send('hello');
  const [data] = await got;
  t.equal(String(data), 'hello');
  if (direct) {
    t.equal(writeSpy.args().length, 0, 'socket.write not called');
    t.equal(spy.calls.length, 1, 'one handle write');
  } else {
    t.equal(writeSpy.args().length, 1, 'socket.write called once');
  }
});

t.test('a Duplex that is not a net.Socket (an HTTP/2 stream, a test double) gets no direct writer', async (t) => {
  const d = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  t.equal(directWriter(d, { onDirectDrain() {} }), null);
  d.destroy();
});

t.test('frames from 0 B to 8 MiB arrive whole and in order (header and payload written apart for large ones)', async (t) => {
  const { url } = await echoServer(t);
  const client = await connect(url, { maxMessageSize: 16 << 20 });
  t.teardown(() => client.terminate());
  const sizes = [0, 1, 20, 125, 126, 1024, 65535, 65536, 16 << 10, 64 << 10, 1 << 20, 8 << 20];
  const messages = sizes.map((n, i) => {
    const b = Buffer.alloc(n);
    for (let j = 0; j < n; j += 997) b[j] = (i * 31 + j) & 0xff;
    return b;
  });
  const received: Buffer[] = [];
  const done = new Promise<void>((resolve) => client.on('message', (d) => { received.push(d as Buffer); if (received.length === sizes.length) resolve(); }));
  for (const m of messages) client.send(m);
  await done;
  for (let i = 0; i < sizes.length; i++) t.ok(received[i].equals(messages[i]), `${sizes[i]} B echoed intact`);
});

t.test('a batch sent in one tick leaves in one handle write, in order', async (t) => {
  await warmUp(t);
  const { url, conns } = await echoServer(t);
  const client = await connect(url);
  t.teardown(() => client.terminate());
  await until(() => conns.length === 1);
  const spy = spyHandle(socketOf(conns[0]));
  const received: string[] = [];
  const done = new Promise<void>((resolve) => client.on('message', (d) => { received.push(String(d)); if (received.length === 100) resolve(); }));
  for (let i = 0; i < 100; i++) conns[0].send(`message ${i}`);
  await done;
  t.same(received, Array.from({ length: 100 }, (_, i) => `message ${i}`));
  if (direct) {
    t.equal(spy.calls.length, 1, 'one handle call for the batch');
    t.equal(spy.calls[0].method, 'writev');
    t.equal((spy.calls[0].data as unknown[]).length, 100, 'with the 100 frames');
  } else {
    t.ok(spy.calls.length >= 1, 'the stream path writes through the handle too');
  }
});

t.test('fan-out: one prepared frame goes to 50 handles from the same bytes', async (t) => {
  await warmUp(t);
  const { url, conns } = await echoServer(t);
  const clients = await Promise.all(Array.from({ length: 50 }, () => connect(url)));
  t.teardown(() => { for (const c of clients) c.terminate(); });
  await until(() => conns.length === 50);
  const spies = conns.map((c) => spyHandle(socketOf(c)));
  const message = prepare('to everyone');
  const got = Promise.all(clients.map((c) => once(c, 'message')));
  for (const c of conns) c.sendPrepared(message);
  const all = await got;
  for (const [data] of all) t.equal(String(data), 'to everyone');
  if (direct) {
    t.ok(spies.every((s) => s.calls.length === 1 && s.calls[0].data === message.frame), 'each handle wrote the prepared frame itself (no copy)');
  }
  // A large prepared frame ([header, payload]) goes out in one writev per handle, the payload shared.
  const big = prepare(Buffer.alloc(100_000, 7));
  for (const s of spies) s.calls.length = 0;
  const gotBig = Promise.all(clients.map((c) => once(c, 'message')));
  for (const c of conns) c.sendPrepared(big);
  for (const [data] of await gotBig) t.equal((data as Buffer).length, 100_000);
  if (direct) {
    const payload = (big.frame as [Buffer, Uint8Array])[1];
    t.ok(spies.every((s) => s.calls.length === 1 && (s.calls[0].data as unknown[])[1] === payload), 'header and payload in one writev, payload not copied');
  }
});

t.test('backpressure: a peer that does not read makes bufferedAmount grow and send return false; drain once it reads', async (t) => {
  await warmUp(t);
  let conn: WebSocketConnection | null = null;
  const server = createServer({ heartbeat: false }, (c) => { conn = c; });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const peer = await rawUpgrade(port);
  t.teardown(() => peer.socket.destroy());
  peer.socket.pause();
  await until(() => conn !== null);
  const c = conn! as WebSocketConnection;
  const chunk = Buffer.alloc(256 << 10, 1);
  let sent = 0;
  // Each send's batch leaves at the end of the tick: send one per tick until the kernel's buffers are full.
  while (sent < 400) {
    sent++;
    if (!c.send(chunk)) break;
    await new Promise((r) => setImmediate(r));
  }
  t.ok(sent < 400, `send returned false after ${sent} messages`);
  const buffered = c.bufferedAmount;
  t.ok(buffered > 0, `bufferedAmount ${buffered} > 0 while the peer does not read`);
  if (direct) t.equal(socketOf(c).writableLength, 0, "the socket's own Writable holds nothing: the count is the handle's");
  // More sends while blocked are counted too.
  c.send(chunk);
  await new Promise((r) => setImmediate(r));
  t.ok(c.bufferedAmount >= buffered, 'a further send adds to bufferedAmount');
  const drained = once(c, 'drain', 20_000);
  let read = 0;
  peer.socket.on('data', (d: Buffer) => { read += d.length; });
  peer.socket.resume();
  await drained;
  t.equal(c.bufferedAmount, 0, 'nothing left unsent at drain');
  t.ok(c.send(Buffer.from('after drain')), 'send returns true again');
  await until(() => read >= (sent + 1) * chunk.length, 20_000, 'every byte read');
});

t.test('peer reset mid-write: close 1006, no throw, no unhandled error', async (t) => {
  await warmUp(t);
  let conn: WebSocketConnection | null = null;
  const server = createServer({ heartbeat: false }, (c) => { conn = c; });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const peer = await rawUpgrade(port);
  peer.socket.pause();
  await until(() => conn !== null);
  const c = conn! as WebSocketConnection;
  const errors: Error[] = [];
  c.on('error', (e) => errors.push(e));
  const closed = once<[number, string]>(c, 'close', 10_000);
  const callbacks: Array<Error | undefined> = [];
  const chunk = Buffer.alloc(1 << 20, 2);
  for (let i = 0; i < 8; i++) c.send(chunk, (e) => callbacks.push(e ?? undefined));
  await new Promise((r) => setImmediate(r));
  t.ok(c.bufferedAmount > 0, 'bytes are still unsent when the peer resets');
  peer.socket.resetAndDestroy();
  // Keep writing into the reset socket: later batches must fail quietly.
  const late = setInterval(() => c.send(chunk), 5);
  const [code] = await closed;
  clearInterval(late);
  t.equal(code, 1006);
  t.equal(c.bufferedAmount, 0, 'nothing counted after close');
  t.ok(errors.every((e) => /ECONNRESET|EPIPE|closed/.test(e.message)), `errors as on the public path: ${errors.map((e) => e.message).join(', ')}`);
  await until(() => callbacks.length === 8, 5000, 'every send callback');
  t.equal(c.send('after close'), false);
});

t.test('writes after end() or terminate() never reach the socket', async (t) => {
  await warmUp(t);
  const { url, conns } = await echoServer(t);
  const client = await connect(url);
  await until(() => conns.length === 1);
  const c = conns[0];
  const spy = spyHandle(socketOf(c));
  c.terminate();
  c.send('x');
  const failed = new Promise<Error | undefined>((resolve) => c.send('y', resolve));
  t.match(String(await failed), /not open|closed/);
  await new Promise((r) => setImmediate(r));
  t.equal(spy.calls.length, 0, 'no handle write after destroy');
  await once(client, 'close');
});

t.test('TLS sockets write through socket.write and echo every size', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsengine-write-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  const key = readFileSync(join(dir, 'key.pem'));
  const cert = readFileSync(join(dir, 'cert.pem'));
  const { server, port } = await echoServer(t, { tls: { key, cert } });
  const c = await connect(`wss://localhost:${port}/`, { tls: { ca: cert } });
  t.teardown(() => c.terminate());
  t.same(server.stats().writePath, { direct: 0, stream: 1 }, 'the TLS server socket writes through socket.write');
  for (const n of [20, 70_000, 1 << 20]) {
    const got = once(c, 'message');
    c.send(Buffer.alloc(n, 3));
    const [data] = await got;
    t.equal((data as Buffer).length, n, `${n} B over TLS`);
  }
});

t.test('the handshake response and the first frames keep their order (raw peer)', async (t) => {
  const server = createServer({ heartbeat: false }, (c) => { for (let i = 0; i < 5; i++) c.send(`m${i}`); });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const peer = await rawUpgrade(port);
  t.teardown(() => peer.socket.destroy());
  t.equal(peer.head.status, 101);
  await until(() => decodeFrames(peer.received()).length === 5);
  t.same(decodeFrames(peer.received()).map(([, p]) => String(p)), ['m0', 'm1', 'm2', 'm3', 'm4']);
});

t.test('a handle write that fails at once (EPIPE) takes the public path\'s route: error event, callback error, close 1006', async (t) => {
  await warmUp(t);
  const { url, conns } = await echoServer(t);
  const client = await connect(url);
  t.teardown(() => client.terminate());
  await until(() => conns.length === 1);
  const c = conns[0];
  const socket = socketOf(c);
  if (direct) {
    // What the handle answers when the peer is gone: a negative errno, nothing written.
    const handle = (socket as unknown as { _handle: Record<string, unknown> })._handle;
    handle.writeBuffer = () => -32;
  } else {
    t.capture(socket, 'write', (_data: unknown, cb?: (e?: Error) => void) => {
      const error = Object.assign(new Error('write EPIPE'), { code: 'EPIPE', errno: -32, syscall: 'write' });
      process.nextTick(() => { cb?.(error); socket.destroy(error); });
      return false;
    });
  }
  const errors: Error[] = [];
  c.on('error', (e) => errors.push(e));
  const closed = once<[number, string]>(c, 'close');
  const callback = new Promise<Error | undefined>((resolve) => c.send('doomed', resolve));
  const [code] = await closed;
  t.equal(code, 1006);
  const error = (await callback) as NodeJS.ErrnoException | undefined;
  t.equal(error?.message, 'write EPIPE', 'the send callback gets the error');
  t.equal(error?.code, 'EPIPE');
  t.same(errors.map((e) => e.message), ['write EPIPE'], "the connection's error event, once");
});
