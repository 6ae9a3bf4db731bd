/**
 * permessage-deflate against hostile peers, over real sockets: input that inflates faster than it can be consumed,
 * and messages that end with a final DEFLATE block (BFINAL = 1, RFC 7692 §7.2.3.4), in both roles.
 */
import t, { type Test } from 'tap';
import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer as netServer, type Socket } from 'node:net';
import { constants, createDeflateRaw, deflateRawSync } from 'node:zlib';
import { connect, createServer } from '../lib/index.js';
import { MASK, rawFrame } from './helpers/core.js';
import { decodeFrames, once, rawUpgrade, until } from './helpers/net.js';
import { ACCEPTED_STATUS, CLIENT_TRANSPORT, SERVER_TRANSPORT } from './helpers/transport.js';

const SYNC = { finishFlush: constants.Z_SYNC_FLUSH };

/** A message's payload as a sender would produce it: the deflate output without the sync flush's 00 00 ff ff. */
function strip(b: Buffer): Buffer {
  const n = b.length;
  return n >= 4 && b[n - 4] === 0 && b[n - 3] === 0 && b[n - 2] === 0xff && b[n - 1] === 0xff ? b.subarray(0, n - 4) : b;
}

/** One sync-flushed message from a streaming deflater (context takeover on the sender's side). */
function flushMessage(z: ReturnType<typeof createDeflateRaw>, text: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  const onData = (c: Buffer): number => parts.push(c);
  z.on('data', onData);
  z.write(text);
  return new Promise((resolve) =>
    z.flush(constants.Z_SYNC_FLUSH, () => {
      z.off('data', onData);
      resolve(strip(Buffer.concat(parts)));
    }),
  );
}

const TEXTS = ['first message, first of all', 'second message refers to the first message', 'third message, first and second again'];

/**
 * The payloads of three text messages, the first ending with a final block. With context takeover the sender
 * starts its next stream primed with what it sent before (the window), as RFC 7692 §7.2.3.4 describes, so the later
 * messages refer back to the first one's bytes and inflate only with the window kept. Without it every message is a
 * stream of its own; the third one ends with a final block too.
 */
async function bfinalPayloads(takeover: boolean): Promise<Buffer[]> {
  // The RFC's example pads a final block with one 0x00; the receiver ignores bytes after the end of the stream.
  const first = Buffer.concat([deflateRawSync(TEXTS[0], { finishFlush: constants.Z_FINISH }), Buffer.from([0])]);
  if (!takeover) {
    return [first, strip(deflateRawSync(TEXTS[1], SYNC)), deflateRawSync(TEXTS[2], { finishFlush: constants.Z_FINISH })];
  }
  const z = createDeflateRaw({ dictionary: Buffer.from(TEXTS[0]) });
  const second = await flushMessage(z, TEXTS[1]);
  const third = await flushMessage(z, TEXTS[2]);
  z.close();
  return [first, second, third];
}

/** A permessage-deflate server recording every message (as text) and close code of its connections. */
async function recordingServer(t: Test): Promise<{ port: number; got: string[]; closes: number[] }> {
  const got: string[] = [];
  const closes: number[] = [];
  const server = createServer({ heartbeat: false, perMessageDeflate: true, ...SERVER_TRANSPORT }, (conn) => {
    conn.on('message', (d) => got.push(d.toString()));
    conn.on('close', (code) => closes.push(code));
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  return { port, got, closes };
}

for (const takeover of [true, false]) {
  const label = takeover ? 'with context takeover' : 'without context takeover';

  t.test(`server: a message ending with a final block does not empty later ones (${label})`, async (t) => {
    const { port, got, closes } = await recordingServer(t);
    const offer = takeover ? 'permessage-deflate' : 'permessage-deflate; client_no_context_takeover';
    const raw = await rawUpgrade(port, '/', [`Sec-WebSocket-Extensions: ${offer}`]);
    t.equal(raw.head.status, ACCEPTED_STATUS);
    const payloads = await bfinalPayloads(takeover);
    raw.socket.write(Buffer.concat(payloads.map((payload) => rawFrame({ opcode: 1, rsv1: true, payload, mask: MASK }))));
    await until(() => got.length === 3 || closes.length > 0, 5000, 'three messages');
    t.same(got, TEXTS, 'all three messages intact');
    t.same(closes, [], 'the connection stays open');
    raw.socket.destroy();
  });

  t.test(`client: a message ending with a final block does not empty later ones (${label})`, async (t) => {
    const payloads = await bfinalPayloads(takeover);
    const sockets: Socket[] = [];
    // A raw TCP server: answers the handshake with permessage-deflate, then sends the three frames unmasked.
    const tcp = netServer((socket) => {
      sockets.push(socket);
      let head = '';
      socket.on('data', (chunk) => {
        if (head.includes('\r\n\r\n')) return;
        head += chunk.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        const key = /sec-websocket-key: *(\S+)/i.exec(head)![1];
        const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        const ext = takeover ? 'permessage-deflate' : 'permessage-deflate; server_no_context_takeover';
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Extensions: ${ext}\r\n\r\n`);
        socket.write(Buffer.concat(payloads.map((payload) => rawFrame({ opcode: 1, rsv1: true, payload }))));
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    t.teardown(() => {
      for (const s of sockets) s.destroy();
      tcp.close();
    });
    const c = await connect(`ws://127.0.0.1:${(tcp.address() as { port: number }).port}`, { perMessageDeflate: true, heartbeat: false });
    const got: string[] = [];
    let closed = 0;
    c.on('message', (d) => got.push(d.toString()));
    c.on('close', (code) => (closed = code));
    await until(() => got.length === 3 || closed !== 0, 5000, 'three messages');
    t.same(got, TEXTS, 'all three messages intact');
    t.equal(closed, 0, 'the connection stays open');
    c.terminate();
  });
}

t.test('data after a final block that the window cannot explain closes with 1007, never wrong data', async (t) => {
  const { port, got } = await recordingServer(t);
  const raw = await rawUpgrade(port, '/', ['Sec-WebSocket-Extensions: permessage-deflate']);
  // The second message refers to a dictionary the receiver never saw: distances too far back.
  const first = deflateRawSync('short', { finishFlush: constants.Z_FINISH });
  const second = strip(deflateRawSync('another text that refers back to the unseen dictionary', { ...SYNC, dictionary: Buffer.from('another text that refers back to the unseen dictionary') }));
  raw.socket.write(Buffer.concat([first, second].map((payload) => rawFrame({ opcode: 1, rsv1: true, payload, mask: MASK }))));
  await raw.closed;
  t.same(got, ['short']);
  t.equal(decodeFrames(raw.received()).find(([op]) => op === 8)?.[1].readUInt16BE(0), 1007, 'closed with 1007');
});

/** 8 MiB of zeros, deflated: about 8 KB on the wire. */
const BOMBLET = strip(deflateRawSync(Buffer.alloc(8 * 1024 * 1024), SYNC));

async function startChild(t: Test): Promise<{ child: ChildProcess; port: number; stats(): Promise<{ rss: number; external: number; arrayBuffers: number; closes: number[] }> }> {
  const child = fork(new URL('./fixtures/deflate-server.ts', import.meta.url), [], { execArgv: ['--import=tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  t.teardown(() => {
    child.kill();
  });
  const [{ port }] = await once<[{ port: number }]>(child, 'message', 90000);
  const stats = async () => {
    child.send('stats');
    const [s] = await once<[{ rss: number; external: number; arrayBuffers: number; closes: number[] }]>(child, 'message', 60000);
    return s;
  };
  return { child, port, stats };
}

for (const path of ['/', '/echo']) {
  t.test(`a stream of small messages that inflate to 8 MiB each keeps the server's memory bounded (${path === '/' ? 'messages dropped' : 'every message echoed'})`, async (t) => {
    t.ok(BOMBLET.length < 16 * 1024, `8 MiB deflates to ${BOMBLET.length} bytes`);
    const { child, port, stats } = await startChild(t);
    const baseline = await stats();
    const raw = await rawUpgrade(port, path, ['Sec-WebSocket-Extensions: permessage-deflate']);
    t.equal(raw.head.status, ACCEPTED_STATUS);
    // Masked once, sent many times: as fast as the server's socket takes it, for 4 s or 1 GiB on the wire.
    const frame = rawFrame({ opcode: 2, rsv1: true, payload: BOMBLET, mask: MASK });
    const batch = Buffer.concat(Array(64).fill(frame));
    let sent = 0;
    let peak = baseline.rss;
    let closedEarly = false;
    raw.closed.then(() => (closedEarly = true));
    const deadline = Date.now() + 4000;
    let lastSample = 0;
    let closes: number[] = [];
    while (Date.now() < deadline && sent < 1024 * 1024 * 1024 && !closedEarly) {
      if (!raw.socket.write(batch)) {
        // Wait for drain, at most 250 ms (a server that stopped reading never drains); one listener, removed either way.
        await new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(timer);
            raw.socket.off('drain', done);
            resolve();
          };
          const timer = setTimeout(done, 250);
          raw.socket.once('drain', done);
        });
      }
      sent += batch.length;
      if (Date.now() - lastSample > 200) {
        lastSample = Date.now();
        const s = await stats();
        peak = Math.max(peak, s.rss);
        closes = s.closes;
      }
    }
    // A few more samples while the server works through what it had already read.
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const s = await stats();
      peak = Math.max(peak, s.rss);
      closes = s.closes;
    }
    const grown = (peak - baseline.rss) / 1048576;
    t.comment(`client wrote ${(sent / 1048576).toFixed(0)} MiB (${Math.round(sent / frame.length)} messages, ${((sent / frame.length) * 8 / 1024).toFixed(0)} GiB inflated); server RSS grew by ${grown.toFixed(0)} MiB at most`);
    t.ok(grown < 128, `server RSS grew by ${grown.toFixed(0)} MiB (bound: 128 MiB) while the client pushed ${(sent / 1048576).toFixed(0)} MiB`);
    // Served, or closed with a policy/size code: never anything else, and the process keeps serving others.
    t.ok(closes.every((c) => c === 1008 || c === 1009), `closes so far: ${JSON.stringify(closes)}`);
    // The hostile peer goes away (its queued work is dropped with it); the process serves the next client.
    raw.socket.destroy();
    const other = await connect(`ws://127.0.0.1:${port}`, { perMessageDeflate: true, heartbeat: false, ...CLIENT_TRANSPORT });
    other.send('still there?');
    const [echo] = await once<[Buffer]>(other, 'message', 60000);
    t.equal(echo.toString(), 'still there?', 'another connection is served');
    other.terminate();
    t.ok(child.connected, 'the server process is alive');
  });
}
