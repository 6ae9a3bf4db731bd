/**
 * Autobahn 9.1.5 under load: an 8 MiB text message is echoed, then the other side closes. Our side's part of the
 * closing handshake must not wait behind the large write, a paused read side or a timer: both sides see a clean
 * close (1000) — in both roles, with permessage-deflate negotiated as the suite's testees do, while CPU-bound
 * processes keep the machine busy.
 */
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import WS, { WebSocketServer } from 'ws';
import { connect, createServer } from '../lib/index.js';
import { once } from './helpers/net.js';

const TEXT = 'x'.repeat(1024).replace(/x/g, (_, i: number) => String.fromCharCode(97 + ((i * 7) % 26))).repeat(8 * 1024);

function busy(t: Test): void {
  const children: ChildProcess[] = [];
  for (let i = 0; i < 2; i++) {
    const child = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
    child.unref();
    children.push(child);
  }
  t.teardown(() => {
    for (const c of children) c.kill('SIGKILL');
  });
}

for (const deflate of [true, false]) {
  t.test(`server: 8 MiB echoed, then the client closes: clean on both sides (deflate ${deflate})`, async (t) => {
    busy(t);
    let serverClose: [number, string] | null = null;
    const server = createServer({ heartbeat: false, perMessageDeflate: deflate }, (conn) => {
      conn.on('message', (data, isBinary) => conn.send(data, { binary: isBinary }));
      conn.on('close', (code, reason) => (serverClose = [code, reason]));
    });
    const { port } = await server.listen(0, '127.0.0.1');
    t.teardown(() => server.close({ timeout: 100 }));
    const client = new WS(`ws://127.0.0.1:${port}`, { perMessageDeflate: deflate });
    await once(client, 'open', 20000);
    client.send(TEXT);
    const [echo] = await once<[Buffer]>(client, 'message', 60000);
    t.equal(echo.length, TEXT.length, 'the echo came back whole');
    const started = Date.now();
    client.close(1000);
    const [code] = await once<[number]>(client, 'close', 30000);
    t.comment(`closing handshake took ${Date.now() - started} ms`);
    t.equal(code, 1000, 'the client saw a clean close (our close frame came back)');
    await new Promise((r) => setTimeout(r, 50));
    t.same(serverClose, [1000, ''], 'our server saw the clean close');
  });

  t.test(`client: 8 MiB echoed, then the server closes: clean on both sides (deflate ${deflate})`, async (t) => {
    busy(t);
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: deflate });
    await once(wss, 'listening');
    t.teardown(() => wss.close());
    let peerClose: Promise<[number]> | null = null;
    let closeSentAt = 0;
    wss.on('connection', (ws) => {
      peerClose = once<[number]>(ws, 'close', 30000);
      ws.on('message', (data: Buffer) => {
        t.equal(data.length, TEXT.length, 'the echo came back whole');
        closeSentAt = Date.now();
        ws.close(1000);
      });
      ws.send(TEXT);
    });
    const c = await connect(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`, { perMessageDeflate: deflate, heartbeat: false, maxMessageSize: 64 * 1024 * 1024 });
    c.on('message', (data, isBinary) => c.send(data, { binary: isBinary }));
    const [code] = await once<[number]>(c, 'close', 60000);
    t.equal(code, 1000, 'our client saw a clean close');
    const [peerCode] = await peerClose!;
    t.comment(`closing handshake took ${Date.now() - closeSentAt} ms`);
    t.equal(peerCode, 1000, 'the server saw our close frame (clean)');
  });
}
