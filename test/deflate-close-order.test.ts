/**
 * permessage-deflate and the closing handshake, two orderings ws's tests found wanting (fixed in the connection):
 *
 * - a message accepted by `send()` while earlier ones were compressing is written before the close frame that
 *   answers a peer's close arriving meanwhile (it was dropped, its callback told the connection was closed);
 * - a socket closing while a received message is inflating no longer loses that message, nor the frames behind
 *   it: `close` waits until what was read is handled.
 */
import type { AddressInfo } from 'node:net';
import { createServer as createNetServer, type Socket } from 'node:net';
import t from 'tap';
import { connect, createServer, type WebSocketConnection } from '../lib/index.js';

const WAIT = 15_000;

function within<T>(promise: Promise<T>, what: string): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), WAIT).unref())]);
}

t.test("a reply still compressing when the peer's close arrives goes out before the close reply", async (t) => {
  const server = createServer({ heartbeat: false, perMessageDeflate: { threshold: 0 } }, (conn) => {
    conn.on('message', (data, isBinary) => conn.send(data, { binary: isBinary }, (error) => conn.data === undefined && error && (conn.data = error)));
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 100 }));
  for (let i = 0; i < 10; i++) {
    const client = await connect(`ws://127.0.0.1:${port}`, { perMessageDeflate: { threshold: 0 } });
    const got: string[] = [];
    client.on('message', (data) => got.push(data.toString()));
    const closed = new Promise<number>((resolve) => client.once('close', (code) => resolve(code)));
    client.send(`last words ${i}`);
    client.close(1000);
    t.equal(await within(closed, 'close'), 1000);
    t.same(got, [`last words ${i}`], `reply ${i} arrived before the close`);
  }
  for (const conn of server.clients) t.equal((conn as WebSocketConnection<Error | undefined>).data, undefined, 'no send callback failed');
});

t.test('a socket closing while a message inflates: the message and the frames behind it are still handled', async (t) => {
  // A raw server: the 101 with permessage-deflate, then compressed messages, a close frame and FIN at once.
  const { deflateRawSync, constants } = await import('node:zlib');
  const frame = (text: string): Buffer => {
    const deflated = deflateRawSync(Buffer.from(text), { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4);
    return Buffer.concat([Buffer.from([0xc1, deflated.length]), deflated]);
  };
  const raw = createNetServer((socket: Socket) => {
    socket.once('data', (head: Buffer) => {
      const key = /sec-websocket-key: (\S+)/i.exec(head.toString())![1];
      void import('../lib/index.js').then(({ acceptKey }) => {
        socket.end(
          Buffer.concat([
            Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n`),
            frame('one'),
            frame('two'),
            frame('three'),
            Buffer.from([0x88, 0x02, 0x03, 0xe8]),
          ]),
        );
      });
    });
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => raw.close(() => r())));
  const port = (raw.address() as AddressInfo).port;
  for (let i = 0; i < 5; i++) {
    const client = await connect(`ws://127.0.0.1:${port}`, { perMessageDeflate: true });
    const got: string[] = [];
    client.on('message', (data) => got.push(data.toString()));
    const code = await within(new Promise<number>((resolve) => client.once('close', (c) => resolve(c))), 'close');
    t.same(got, ['one', 'two', 'three'], `run ${i}: every message`);
    t.equal(code, 1000, `run ${i}: the close frame read behind them`);
  }
});
