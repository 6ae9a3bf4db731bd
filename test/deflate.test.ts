import t, { type Test } from 'tap';
import { constants, createDeflateRaw, deflateRawSync } from 'node:zlib';
import WS, { WebSocketServer as WsServer } from 'ws';
import {
  connect,
  createServer,
  parseExtensions,
  prepare,
  type ServerOptions,
  type WebSocketConnection,
} from '../lib/index.js';
import { acceptServerResponse, clientOffer, type DeflateOptions, negotiateServer, resolveDeflateOptions } from '../lib/deflate/negotiate.js';
import { compressOnce, DeflateCodec, Limiter } from '../lib/deflate/codec.js';
import { rawFrame, MASK } from './helpers/core.js';
import { decodeFrames, once, rawUpgrade, until } from './helpers/net.js';
import { CLIENT_TRANSPORT, SERVER_TRANSPORT } from './helpers/transport.js';

const defaults = resolveDeflateOptions(true);

function offer(value: string) {
  return negotiateServer(parseExtensions(value)!, defaults);
}

t.test('server negotiation: every parameter alone and combined', async (t) => {
  const params = ['server_no_context_takeover', 'client_no_context_takeover', 'server_max_window_bits=10', 'client_max_window_bits', 'client_max_window_bits=12'];
  let combos = 0;
  for (let mask = 0; mask < 1 << params.length; mask++) {
    const chosen = params.filter((_, i) => mask & (1 << i));
    if (chosen.filter((p) => p.startsWith('client_max')).length > 1) continue;
    const r = offer(['permessage-deflate', ...chosen].join('; '));
    if (r === null) {
      t.fail(`declined ${chosen.join('; ')}`);
      continue;
    }
    combos++;
    const back = parseExtensions(r.header)![0];
    const names = back.params.map(([k]) => k);
    t.equal(r.params.serverNoContextTakeover, chosen.includes('server_no_context_takeover'));
    if (chosen.includes('server_no_context_takeover') && !names.includes('server_no_context_takeover')) t.fail('server_no_context_takeover must be echoed');
    if (chosen.includes('server_max_window_bits=10')) t.equal(r.params.serverMaxWindowBits, 10);
    if (chosen.includes('client_max_window_bits=12')) t.equal(r.params.clientMaxWindowBits, 12);
    if (!chosen.some((p) => p.startsWith('client_max')) && names.includes('client_max_window_bits')) t.fail('client_max_window_bits sent to a client that did not offer it');
    // What the server answered is acceptable to a client that offered the same.
    const clientOpts = resolveDeflateOptions({
      serverNoContextTakeover: chosen.includes('server_no_context_takeover'),
      clientNoContextTakeover: chosen.includes('client_no_context_takeover'),
      serverMaxWindowBits: chosen.includes('server_max_window_bits=10') ? 10 : 15,
      clientMaxWindowBits: chosen.includes('client_max_window_bits=12') ? 12 : 15,
    });
    const accepted = acceptServerResponse(back, clientOpts);
    if (typeof accepted === 'string') t.fail(`client refused ${r.header}: ${accepted}`);
  }
  t.equal(combos, 24);
});

t.test('server negotiation: the first acceptable of several offers is chosen', async (t) => {
  const r = offer('permessage-deflate; server_max_window_bits=16, permessage-deflate; unknown_param, permessage-deflate; server_max_window_bits=11, permessage-deflate');
  t.equal(r?.params.serverMaxWindowBits, 11, 'offers with 16 and an unknown parameter were declined');
  const eight = offer('permessage-deflate; server_max_window_bits=8; client_max_window_bits=8');
  t.equal(eight?.header, 'permessage-deflate; server_max_window_bits=8; client_max_window_bits=8', '8-bit windows are accepted');
  t.equal(offer('x-webkit-deflate-frame, permessage-deflate')?.header, 'permessage-deflate');
});

t.test('server negotiation: invalid offers are declined, never a crash (attack case 14)', async (t) => {
  const bad = [
    'permessage-deflate; server_max_window_bits=16',
    'permessage-deflate; server_max_window_bits=abc',
    'permessage-deflate; server_max_window_bits',
    'permessage-deflate; server_max_window_bits=010',
    'permessage-deflate; client_max_window_bits=16',
    'permessage-deflate; client_max_window_bits=7',
    'permessage-deflate; client_max_window_bits="abc"',
    'permessage-deflate; client_max_window_bits=9; client_max_window_bits=10',
    'permessage-deflate; server_no_context_takeover; server_no_context_takeover',
    'permessage-deflate; server_no_context_takeover=1',
    'permessage-deflate; __proto__',
    'permessage-deflate; constructor=1',
    'permessage-deflate; toString',
  ];
  for (const b of bad) t.equal(offer(b), null, b);
});

t.test('client: offer and checks of the response', async (t) => {
  t.equal(clientOffer(defaults), 'permessage-deflate; client_max_window_bits');
  const opts = resolveDeflateOptions({ serverNoContextTakeover: true, serverMaxWindowBits: 12 });
  t.equal(clientOffer(opts), 'permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_max_window_bits');
  const check = (header: string, o = defaults) => acceptServerResponse(parseExtensions(header)![0], o);
  t.same(check('permessage-deflate; client_max_window_bits=10'), { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 10 });
  t.type(check('permessage-deflate; client_max_window_bits'), 'string', 'a response needs a value');
  t.type(check('permessage-deflate; foo'), 'string');
  t.equal((check('permessage-deflate; client_max_window_bits=8') as { clientMaxWindowBits: number }).clientMaxWindowBits, 8, 'accepted; this side then sends uncompressed');
  t.type(check('permessage-deflate', opts), 'string', 'server ignored server_no_context_takeover');
  t.type(check('permessage-deflate; server_no_context_takeover; server_max_window_bits=13', opts), 'string', 'window above the offer');
  t.throws(() => resolveDeflateOptions({ serverMaxWindowBits: 8 }), RangeError);
  t.throws(() => resolveDeflateOptions({ level: 10 }), RangeError);
  t.throws(() => resolveDeflateOptions(5 as never), TypeError);
});

async function deflateServer(t: Test, options: ServerOptions = {}, onConnection?: (c: WebSocketConnection) => void) {
  const server = createServer({ heartbeat: false, perMessageDeflate: { threshold: 0 }, ...SERVER_TRANSPORT, ...options }, (conn) => {
    if (onConnection) return onConnection(conn);
    conn.on('message', (data, isBinary) => conn.send(data, { binary: isBinary }));
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  return { server, port, url: `ws://127.0.0.1:${port}` };
}

function collect(conn: WebSocketConnection, n: number): Promise<Array<[Buffer, boolean]>> {
  const out: Array<[Buffer, boolean]> = [];
  return new Promise((resolve, reject) => {
    conn.on('message', (d, b) => {
      out.push([d, b]);
      if (out.length === n) resolve(out);
    });
    conn.on('close', (code) => reject(new Error(`closed ${code} after ${out.length} messages`)));
  });
}

t.test('round trips for every window size and context mode, both directions', async (t) => {
  const payloads = [Buffer.alloc(0), Buffer.from('a'), Buffer.from('hello '.repeat(2000)), Buffer.from(Array.from({ length: 70000 }, (_, i) => (i * 7919) & 0xff))];
  for (const bits of [9, 12, 15]) {
    for (const noContext of [false, true]) {
      const opts: DeflateOptions = { threshold: 0, serverMaxWindowBits: bits, clientMaxWindowBits: bits, serverNoContextTakeover: noContext, clientNoContextTakeover: noContext };
      const { url } = await deflateServer(t, { perMessageDeflate: opts });
      const c = await connect(url, { perMessageDeflate: opts, ...CLIENT_TRANSPORT });
      t.match(c.extensions, /permessage-deflate/);
      const got = collect(c, payloads.length * 3);
      for (let round = 0; round < 3; round++) for (const p of payloads) c.send(p);
      const echoes = await got;
      const ok = echoes.every(([d], i) => d.equals(payloads[i % payloads.length]));
      t.ok(ok, `window ${bits}, no context takeover ${noContext}: ${echoes.length} echoes intact`);
      c.close();
      await once(c, 'close');
    }
  }
});

t.test('an 8-bit server window: compressed input is inflated, the echo goes uncompressed', async (t) => {
  const { port } = await deflateServer(t);
  const raw = await rawUpgrade(port, '/', ['Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8']);
  t.equal(raw.head.headers.get('sec-websocket-extensions')?.[0], 'permessage-deflate; server_max_window_bits=8');
  const text = 'eight bit window '.repeat(40);
  raw.socket.write(rawFrame({ opcode: 1, rsv1: true, payload: compressOnce(Buffer.from(text), 9), mask: MASK }));
  await until(() => decodeFrames(raw.received()).length === 1);
  const bytes = raw.received();
  t.equal(bytes[0] & 0x40, 0, 'the echo is not compressed');
  t.equal(decodeFrames(bytes)[0][1].toString(), text);
  raw.socket.destroy();
});

t.test('small messages and opted-out ones go uncompressed; control frames never are', async (t) => {
  let conn: WebSocketConnection | undefined;
  const { port } = await deflateServer(t, { perMessageDeflate: { threshold: 100 } }, (c) => (conn = c));
  const raw = await rawUpgrade(port, '/', ['Sec-WebSocket-Extensions: permessage-deflate']);
  t.match(raw.head.headers.get('sec-websocket-extensions')?.[0] ?? '', /^permessage-deflate/);
  await until(() => conn !== undefined);
  conn!.send('x'.repeat(99));
  conn!.send('y'.repeat(500), { compress: false });
  conn!.ping('p');
  conn!.send('z'.repeat(500));
  await until(() => decodeFrames(raw.received()).length === 4);
  const firstBytes: number[] = [];
  let at = 0;
  const bytes = raw.received();
  for (const [, payload] of decodeFrames(bytes)) {
    firstBytes.push(bytes[at]);
    at = payload.byteOffset - bytes.byteOffset + payload.length;
  }
  t.same(firstBytes.map((b) => (b & 0x40 ? 'rsv1' : 'plain')), ['plain', 'plain', 'plain', 'rsv1']);
  raw.socket.destroy();
});

t.test('a fragmented compressed message from the peer is inflated whole; RSV1 on a continuation is a 1002', async (t) => {
  const { port } = await deflateServer(t);
  const raw = await rawUpgrade(port, '/', ['Sec-WebSocket-Extensions: permessage-deflate']);
  const deflated = compressOnce(Buffer.from('fragmented and compressed '.repeat(50)));
  const third = Math.floor(deflated.length / 3);
  raw.socket.write(
    Buffer.concat([
      rawFrame({ opcode: 1, fin: false, rsv1: true, payload: deflated.subarray(0, third), mask: MASK }),
      rawFrame({ opcode: 9, payload: 'between', mask: MASK }),
      rawFrame({ opcode: 0, fin: false, payload: deflated.subarray(third, 2 * third), mask: MASK }),
      rawFrame({ opcode: 0, payload: deflated.subarray(2 * third), mask: MASK }),
    ]),
  );
  await until(() => decodeFrames(raw.received()).some(([op]) => op === 1));
  const frames = decodeFrames(raw.received());
  t.equal(frames[0][0], 10, 'the pong came first');
  const text = frames.find(([op]) => op === 1)!;
  // The echo is compressed: inflate it to compare.
  const { inflateRawSync } = await import('node:zlib');
  t.equal(inflateRawSync(Buffer.concat([text[1], Buffer.from([0, 0, 255, 255])]), { finishFlush: constants.Z_SYNC_FLUSH }).toString(), 'fragmented and compressed '.repeat(50));
  raw.socket.write(Buffer.concat([rawFrame({ opcode: 2, fin: false, rsv1: true, payload: deflated.subarray(0, 5), mask: MASK }), rawFrame({ opcode: 0, rsv1: true, payload: deflated.subarray(5), mask: MASK })]));
  await raw.closed;
  const close = decodeFrames(raw.received()).find(([op]) => op === 8)!;
  t.equal(close[1].readUInt16BE(0), 1002);
});

/** Deflates `total` zero bytes without holding them: the payload of a decompression bomb. */
async function bomb(total: number): Promise<Buffer> {
  const z = createDeflateRaw({ level: 9 });
  const parts: Buffer[] = [];
  z.on('data', (c: Buffer) => parts.push(c));
  const zeros = Buffer.alloc(16 * 1024 * 1024);
  for (let done = 0; done < total; done += zeros.length) {
    if (!z.write(zeros)) await once(z, 'drain', 30000);
  }
  await new Promise<void>((r) => z.flush(constants.Z_SYNC_FLUSH, () => r()));
  z.close();
  const out = Buffer.concat(parts);
  return out.subarray(0, out.length - 4);
}

t.test('a 1 KB-per-MB decompression bomb (1 GiB inflated) closes with 1009 without allocating it (attack case 12)', async (t) => {
  const payload = await bomb(1024 * 1024 * 1024);
  t.ok(payload.length < 1.1 * 1024 * 1024, `1 GiB deflates to ${payload.length} bytes`);
  let closeCode = 0;
  const { port } = await deflateServer(t, { maxMessageSize: 4 * 1024 * 1024 }, (c) => c.on('close', (code) => (closeCode = code)));
  const raw = await rawUpgrade(port, '/', ['Sec-WebSocket-Extensions: permessage-deflate']);
  const rssBefore = process.memoryUsage().rss;
  let peak = rssBefore;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  raw.socket.write(rawFrame({ opcode: 2, rsv1: true, payload, mask: MASK }));
  await raw.closed;
  clearInterval(sampler);
  const close = decodeFrames(raw.received()).find(([op]) => op === 8);
  t.equal(close?.[1].readUInt16BE(0), 1009, 'closed with 1009');
  t.ok(peak - rssBefore < 256 * 1024 * 1024, `RSS grew by ${((peak - rssBefore) / 1048576).toFixed(1)} MiB while refusing a 1 GiB bomb`);
  await until(() => closeCode !== 0);
});

t.test('malformed DEFLATE data closes cleanly with 1007, also after a limit already fired (attack case 13)', async (t) => {
  const { port, url } = await deflateServer(t);
  const raw = await rawUpgrade(port, '/', ['Sec-WebSocket-Extensions: permessage-deflate']);
  raw.socket.write(rawFrame({ opcode: 2, rsv1: true, payload: Buffer.from([0xff, 0xff, 0xff, 0x00, 0x12]), mask: MASK }));
  await raw.closed;
  t.equal(decodeFrames(raw.received()).find(([op]) => op === 8)?.[1].readUInt16BE(0), 1007);
  // A codec that already failed on its limit gets garbage next: it answers, never throws.
  const codec = new DeflateCodec('server', { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 }, defaults, new Limiter(2), 1000);
  const first = await new Promise<number>((r) => codec.decompress(deflateRawSync(Buffer.alloc(100000)), (e) => r(e?.closeCode ?? 0)));
  t.equal(first, 1009);
  const second = await new Promise<number>((r) => codec.decompress(Buffer.from([0xff, 0xfe, 0xfd, 0xfc]), (e) => r(e?.closeCode ?? 0)));
  t.equal(second, 1007);
  const third = await new Promise<string>((r) => codec.decompress(deflateRawSync(Buffer.from('fine')), (e, d) => r(e ? `error ${e.closeCode}` : d!.toString())));
  t.equal(third, 'fine', 'a fresh context after the errors');
  codec.close();
  // The server is still serving others.
  const c = await connect(url, { perMessageDeflate: true, ...CLIENT_TRANSPORT });
  c.send('alive'.repeat(300));
  t.equal(String((await once<[Buffer]>(c, 'message'))[0]), 'alive'.repeat(300));
  c.close();
});

t.test('invalid UTF-8 inside a compressed text message → 1007', async (t) => {
  const { port } = await deflateServer(t);
  const raw = await rawUpgrade(port, '/', ['Sec-WebSocket-Extensions: permessage-deflate']);
  raw.socket.write(rawFrame({ opcode: 1, rsv1: true, payload: compressOnce(Buffer.from([0x41, 0xff, 0x42])), mask: MASK }));
  await raw.closed;
  t.equal(decodeFrames(raw.received()).find(([op]) => op === 8)?.[1].readUInt16BE(0), 1007);
});

t.test('ordering: compressed and plain messages, then close, arrive in order; backpressure still reported', async (t) => {
  const { url } = await deflateServer(t, { perMessageDeflate: { threshold: 64 } }, (conn) => {
    for (let i = 0; i < 300; i++) conn.send(i % 3 === 0 ? `${i}:` + 'big '.repeat(100 + i) : `${i}`);
    conn.close(4000, 'after all');
  });
  const c = await connect(url, { perMessageDeflate: true, ...CLIENT_TRANSPORT });
  const seen: number[] = [];
  c.on('message', (d) => seen.push(Number(d.toString().split(':')[0])));
  const [code, reason] = await once<[number, string]>(c, 'close', 10000);
  t.same(seen, Array.from({ length: 300 }, (_, i) => i), 'every message, in order');
  t.same([code, reason], [4000, 'after all'], 'the close frame came last');
  let conn: WebSocketConnection | undefined;
  const { url: url2 } = await deflateServer(t, {}, (x) => (conn = x));
  const d = await connect(url2, { perMessageDeflate: true, ...CLIENT_TRANSPORT });
  await until(() => conn !== undefined);
  const noise = Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 2654435761) >>> 24));
  conn!.send(noise);
  t.ok(conn!.bufferedAmount >= noise.length, 'bytes waiting for zlib count in bufferedAmount');
  await conn!.sendAsync(noise);
  t.pass('sendAsync resolves after the compressed send');
  d.close();
});

t.test('a broadcast compressed once goes to every no-context-takeover subscriber', async (t) => {
  const { server, url } = await deflateServer(t, { perMessageDeflate: { serverNoContextTakeover: true } }, () => {});
  const peers = await Promise.all([0, 1, 2].map(() => connect(url, { perMessageDeflate: true, ...CLIENT_TRANSPORT })));
  const plain = await connect(url, CLIENT_TRANSPORT);
  await until(() => server.clients.size === 4);
  const text = JSON.stringify({ event: 'price', values: Array.from({ length: 200 }, (_, i) => i) });
  const message = prepare(text, { compress: true });
  t.ok(message.compressed, 'compressed once');
  const got = Promise.all([...peers, plain].map((p) => once<[Buffer]>(p, 'message')));
  for (const c of server.clients) c.sendPrepared(message);
  t.same((await got).map(([d]) => d.toString()), Array(4).fill(text));
  for (const p of [...peers, plain]) p.close();
});

t.test('interop with ws, compression negotiated, both directions', async (t) => {
  const { url } = await deflateServer(t);
  const client = new WS(url, { perMessageDeflate: true });
  await once(client, 'open');
  t.match(client.extensions, /permessage-deflate/);
  const texts = ['short', 'long '.repeat(5000), '🌍'.repeat(3000)];
  const received: string[] = [];
  client.on('message', (d: Buffer) => received.push(d.toString()));
  for (const s of texts) client.send(s);
  await until(() => received.length === texts.length);
  t.same(received, texts, 'ws client ↔ our server');
  client.close();
  const wss = new WsServer({ port: 0, host: '127.0.0.1', perMessageDeflate: { threshold: 0 } });
  await once(wss, 'listening');
  t.teardown(() => wss.close());
  wss.on('connection', (s) => s.on('message', (d, isBinary) => s.send(d, { binary: isBinary })));
  const c = await connect(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`, { perMessageDeflate: true });
  t.match(c.extensions, /permessage-deflate/);
  const echoes = collect(c, texts.length);
  for (const s of texts) c.send(s);
  t.same((await echoes).map(([d]) => d.toString()), texts, 'our client ↔ ws server');
  c.close();
});
