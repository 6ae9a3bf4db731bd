/**
 * The direct read path (lib/transport/reads.ts): a plain TCP connection reads through one shared buffer, copied
 * out per read; TLS and other Duplexes stay on `data` events. What must hold on it: messages from many
 * connections interleaved are never mixed up (the buffer is shared), large messages spread over many reads
 * arrive whole, frames that came with the handshake are kept in order, and `pause()` stops reading once the
 * socket's stream holds its high-water mark (TCP backpressure) until `resume()`.
 *
 * test/read-path-stream.test.ts runs this file (and the transport suites) again with WSENGINE_READ_PATH=stream,
 * where every socket must be on the public path.
 */
import t from 'tap';
import { createServer as createHttpServer } from 'node:http';
import { createHash } from 'node:crypto';
import { createServer as createNetServer, type Socket } from 'node:net';
import { connect, createServer, READ_PATH_FALLBACK_WARNING, type WebSocketConnection } from '../lib/index.js';
import { directReadsAllowed, readsDirectly } from '../lib/transport/reads.js';
import { echoServer } from './helpers/echo.js';
import { rawConnect, rawUpgrade, until, upgradeHead } from './helpers/net.js';

const direct = directReadsAllowed();
const socketOf = (c: WebSocketConnection): Socket => (c as unknown as { socket: Socket }).socket;

// The runtime check of Node's internals (reads.ts) must never fire on a supported Node: this file runs under each.
const fallbackWarnings: Error[] = [];
// Checked by the last test, after reads of every size here.
process.on('warning', (w) => { if ((w as { code?: string }).code === READ_PATH_FALLBACK_WARNING) fallbackWarnings.push(w); });

t.test(`server and client sockets ${direct ? 'read directly' : 'stay on the stream path'} (WSENGINE_READ_PATH=${process.env.WSENGINE_READ_PATH ?? 'unset'})`, async (t) => {
  const { url, conns } = await echoServer(t);
  const client = await connect(url);
  t.teardown(() => client.terminate());
  await until(() => conns.length === 1);
  t.equal(readsDirectly(socketOf(conns[0])), direct, 'server side');
  t.equal(readsDirectly(socketOf(client)), direct, 'client side');
});

t.test(`server.stats() counts the read path of each connection (${direct ? 'direct' : 'stream'} here)`, async (t) => {
  const { server, url } = await echoServer(t);
  t.match(server.stats(), { connections: 0, readPath: { direct: 0, stream: 0 } }, 'no connections yet');
  const clients = await Promise.all([connect(url), connect(url), connect(url)]);
  t.teardown(() => { for (const c of clients) c.terminate(); });
  await until(() => server.clients.size === 3);
  t.equal(server.stats().connections, 3);
  t.same(server.stats().readPath, direct ? { direct: 3, stream: 0 } : { direct: 0, stream: 3 });
  clients[0].close();
  await until(() => server.clients.size === 2);
  t.same(server.stats().readPath, direct ? { direct: 2, stream: 0 } : { direct: 0, stream: 2 }, 'a closed connection is not counted');
});

t.test('a socket that is not a net.Socket stays on data events', async (t) => {
  const { Duplex } = await import('node:stream');
  const { readDirectly } = await import('../lib/transport/reads.js');
  const d = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  t.equal(readDirectly(d, () => undefined), false);
  d.destroy();
});

t.test('50 connections × 40 messages at once: every echo is its own message, in order (the read buffer is shared)', async (t) => {
  const { url } = await echoServer(t);
  const clients = await Promise.all(Array.from({ length: 50 }, () => connect(url)));
  t.teardown(() => { for (const c of clients) c.terminate(); });
  const results = await Promise.all(
    clients.map(
      (c, i) =>
        new Promise<string[]>((resolve, reject) => {
          const got: string[] = [];
          const timer = setTimeout(() => reject(new Error(`client ${i}: ${got.length} of 40`)), 15_000);
          c.on('message', (data) => {
            got.push(data.toString());
            if (got.length === 40) {
              clearTimeout(timer);
              resolve(got);
            }
          });
          // Sizes vary so that reads hold several frames and frames straddle reads.
          for (let k = 0; k < 40; k++) c.send(`c${i}m${k}:` + 'x'.repeat((i * 37 + k * 101) % 700));
        }),
    ),
  );
  let bad = 0;
  results.forEach((got, i) => got.forEach((m, k) => { if (m !== `c${i}m${k}:` + 'x'.repeat((i * 37 + k * 101) % 700)) bad++; }));
  t.equal(bad, 0, 'no echo was altered or out of order');
});

t.test('messages of 1 MiB and 3 MiB arrive whole while other connections talk', async (t) => {
  const { url } = await echoServer(t);
  const big = await connect(url);
  const chatty = await connect(url);
  t.teardown(() => { big.terminate(); chatty.terminate(); });
  const payloads = [1, 3].map((mib) => {
    const b = Buffer.allocUnsafe(mib * 1024 * 1024);
    for (let i = 0; i < b.length; i++) b[i] = (i * 7 + mib) & 0xff;
    return b;
  });
  let chats = 0;
  chatty.on('message', () => {
    chats++;
    if (chats < 200) chatty.send(`chat ${chats}`);
  });
  chatty.send('chat 0');
  const got: Buffer[] = [];
  const done = new Promise<void>((resolve) => big.on('message', (data) => { got.push(data as Buffer); if (got.length === 2) resolve(); }));
  for (const p of payloads) big.send(p);
  await done;
  t.ok(got[0].equals(payloads[0]), '1 MiB intact');
  t.ok(got[1].equals(payloads[1]), '3 MiB intact');
  await until(() => chats >= 200);
});

t.test('frames sent in the same packet as the upgrade request are read first, in order', async (t) => {
  const received: string[] = [];
  const server = createServer({ heartbeat: false }, (c) => c.on('message', (d) => received.push(d.toString())));
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const frames = ['one', 'two', 'three'].map((s) => maskedText(s));
  const peer = await rawConnect(port, Buffer.concat([Buffer.from(upgradeHead()), ...frames]));
  t.teardown(() => peer.socket.destroy());
  await until(() => received.length === 3);
  peer.socket.write(maskedText('four'));
  await until(() => received.length === 4);
  t.same(received, ['one', 'two', 'three', 'four']);
});

t.test('pause() stops reading from the socket (the peer sees backpressure) and resume() gets everything, in order', async (t) => {
  let serverConn: WebSocketConnection | undefined;
  const received: number[] = [];
  const server = createServer({ heartbeat: false }, (c) => {
    serverConn = c;
    c.on('message', (d) => received.push((d as Buffer).readUInt32BE(0)));
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const client = await connect(`ws://127.0.0.1:${port}`);
  t.teardown(() => client.terminate());
  await until(() => serverConn !== undefined);
  serverConn!.pause();
  const chunk = Buffer.alloc(64 * 1024);
  let sent = 0;
  // Write until the client's own buffers fill: the paused server no longer drains the connection.
  while (client.bufferedAmount < 8 * 1024 * 1024 && sent < 2000) {
    chunk.writeUInt32BE(sent, 0);
    client.send(Buffer.from(chunk));
    sent++;
    if (sent % 50 === 0) await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => setTimeout(r, 200));
  const whilePaused = received.length;
  t.ok(client.bufferedAmount > 0, `the client could not send everything (${client.bufferedAmount} bytes still buffered)`);
  t.ok(whilePaused < sent, `the paused server took only part of it (${whilePaused} of ${sent} messages)`);
  serverConn!.resume();
  await until(() => received.length === sent, 20_000, 'every message after resume');
  t.same(received, Array.from({ length: sent }, (_, i) => i), 'every message, in order');
});

t.test('a peer closing its end while the server reads directly gives the usual close', async (t) => {
  const { conns, port } = await echoServer(t);
  const peer = await rawUpgrade(port);
  await until(() => conns.length === 1);
  const closed = new Promise<number>((resolve) => conns[0].on('close', (code: number) => resolve(code)));
  peer.socket.end();
  t.equal(await closed, 1006, 'abnormal closure: the peer ended without a close frame');
});

t.test('a node:http server socket handed to handleUpgrade reads directly too', async (t) => {
  const wss = createServer({ noServer: true, heartbeat: false });
  const seen: string[] = [];
  const http = createHttpServer();
  http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head));
  t.teardown(() => http.close());
  wss.on('connection', (c: WebSocketConnection) => {
    t.equal(readsDirectly(socketOf(c)), direct);
    c.on('message', (d) => seen.push(d.toString()));
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  const port = (http.address() as { port: number }).port;
  const client = await connect(`ws://127.0.0.1:${port}`);
  t.teardown(() => client.terminate());
  client.send('via node:http');
  await until(() => seen.length === 1);
  t.same(seen, ['via node:http']);
});

t.test('a client gets a large message sent right behind the 101 whole (the socket was paused during the handshake)', async (t) => {
  const payload = Buffer.allocUnsafe(256 * 1024);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + 7) & 0xff;
  const header = Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 4, 0, 0]);
  const raw = createNetServer((socket) => {
    let head = '';
    socket.on('data', (c) => {
      head += c.toString('latin1');
      const m = /sec-websocket-key: *(\S+)/i.exec(head);
      if (!head.includes('\r\n\r\n') || m === null) return;
      const accept = createHash('sha1').update(m[1] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
      // One write: the response and a frame larger than any single read.
      socket.write(Buffer.concat([Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`), header, payload]));
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => raw.close());
  const client = await connect(`ws://127.0.0.1:${(raw.address() as { port: number }).port}`);
  t.teardown(() => client.terminate());
  const got = await new Promise<Buffer>((resolve) => client.once('message', (d) => resolve(d as Buffer)));
  t.equal(got.length, payload.length, 'the whole message');
  t.ok(got.equals(payload), 'byte for byte');
});

t.test('the runtime check of the internals did not fire', async (t) => {
  t.same(fallbackWarnings.map((w) => w.message), [], `no ${READ_PATH_FALLBACK_WARNING} warning (Node ${process.versions.node})`);
  t.equal(directReadsAllowed(), direct, 'still reading directly');
});

function maskedText(s: string): Buffer {
  const payload = Buffer.from(s);
  const mask = [1, 2, 3, 4];
  const out = Buffer.alloc(6 + payload.length);
  out[0] = 0x81;
  out[1] = 0x80 | payload.length;
  out.set(mask, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i] ^ mask[i & 3];
  return out;
}
