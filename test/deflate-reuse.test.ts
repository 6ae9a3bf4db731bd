/**
 * Without context takeover, a side resets and reuses one zlib stream per direction while the connection is active
 * and releases it after {@link IDLE_RELEASE_MS}–2× of idleness (lib/deflate/codec.ts). These tests check that every
 * message still stands alone (a brand-new inflater decodes it), that streams are reused and then released, that
 * errors mid-message still close with the right code and free the stream, and that closes racing zlib work leave
 * nothing behind.
 */
import t from 'tap';
import { constants, deflateRawSync, inflateRawSync } from 'node:zlib';
import { connect, createServer, type WebSocketConnection } from '../lib/index.js';
import { resolveDeflateOptions, type DeflateOptions } from '../lib/deflate/negotiate.js';
import { compressOnce, DeflateCodec, IDLE_RELEASE_MS, Limiter, setIdleRelease, zlibStreamStats } from '../lib/deflate/codec.js';
import { rawFrame, MASK } from './helpers/core.js';
import { decodeFrames, once, rawUpgrade, until } from './helpers/net.js';

const NO_CONTEXT = { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };
const options = resolveDeflateOptions(true);
const TRAILER = Buffer.from([0, 0, 0xff, 0xff]);

/** Inflates one message's payload with a brand-new inflater: what a peer that resets its context sees. */
function inflateAlone(payload: Buffer): Buffer {
  return inflateRawSync(Buffer.concat([payload, TRAILER]), { finishFlush: constants.Z_SYNC_FLUSH });
}

function compress(codec: DeflateCodec, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => codec.compress(data, (error, out) => (error ? reject(error) : resolve(out!))));
}

function decompress(codec: DeflateCodec, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => codec.decompress(data, (error, out) => (error ? reject(error) : resolve(out!))));
}

/** Runs the test with the idle sweep period set to `ms` (set while no stream is kept, restored after). */
async function withIdle(ms: number, body: () => Promise<void>): Promise<void> {
  await until(() => zlibStreamStats().open === 0, 5000, 'no zlib stream open before changing the idle period');
  const previous = setIdleRelease(ms);
  try {
    await body();
  } finally {
    await until(() => zlibStreamStats().open === 0, 10000, 'every zlib stream released');
    setIdleRelease(previous);
  }
}

/** Messages of many sizes, text and binary, with repeats (which a compressor keeping context would shorten). */
function messages(): Buffer[] {
  const out: Buffer[] = [Buffer.alloc(0), Buffer.from('a')];
  for (let i = 0; i < 120; i++) {
    const text = `{"id":${i},"user":"user-${(i * 7919) % 5000}","items":[${'1,2,3,'.repeat(i % 40)}0]}`;
    out.push(Buffer.from(text), Buffer.from(text));
    if (i % 20 === 0) out.push(Buffer.from('lorem ipsum dolor sit amet '.repeat(800 + i)));
    if (i % 30 === 0) out.push(Buffer.from(Array.from({ length: 40000 }, (_, j) => (j * 2654435761) >>> 24)));
  }
  return out;
}

t.test('default idle period and its check', async (t) => {
  t.equal(IDLE_RELEASE_MS, 100);
  t.throws(() => setIdleRelease(0), RangeError);
  t.throws(() => setIdleRelease(1.5), RangeError);
});

for (const role of ['server', 'client'] as const) {
  t.test(`${role}: one stream per direction for ${messages().length} messages, each standalone`, async (t) => {
    await withIdle(60_000, async () => {
      const peerRole = role === 'server' ? 'client' : 'server';
      const sender = new DeflateCodec(role, NO_CONTEXT, options, new Limiter(2), 1 << 24);
      const receiver = new DeflateCodec(peerRole, NO_CONTEXT, options, new Limiter(2), 1 << 24);
      const created = zlibStreamStats().created;
      const all = messages();
      let alone = 0;
      let echoed = 0;
      let previous: Buffer | null = null;
      let previousOut: Buffer | null = null;
      let sameLength = 0;
      for (const m of all) {
        const out = await compress(sender, m);
        if (inflateAlone(out).equals(m)) alone++;
        if ((await decompress(receiver, out)).equals(m)) echoed++;
        // The same message twice in a row compresses to the same bytes: nothing carried over from the first.
        if (previous !== null && previous.equals(m) && m.length > 0) {
          if (previousOut!.equals(out)) sameLength++;
          else t.fail(`a repeated ${m.length}-byte message compressed to ${out.length} bytes after ${previousOut!.length}`);
        }
        previous = m;
        previousOut = out;
      }
      t.equal(alone, all.length, 'every message inflates with a brand-new inflater');
      t.equal(echoed, all.length, 'and with the reused inflater');
      t.ok(sameLength >= 120, `${sameLength} repeats compressed alike`);
      t.equal(zlibStreamStats().created - created, 2, 'one deflate and one inflate stream for all messages');
      t.equal(zlibStreamStats().open, 2, 'both kept while active');
      t.ok(sender.memory > 0 && receiver.memory > 0, 'memory reports the kept streams');
      sender.close();
      receiver.close();
      t.equal(zlibStreamStats().open, 0, 'close releases them at once');
    });
  });
}

t.test('server: frames echoed without context takeover decode standalone; one stream per direction', async (t) => {
  await withIdle(60_000, async () => {
    const server = createServer({ heartbeat: false, perMessageDeflate: { serverNoContextTakeover: true, clientNoContextTakeover: true, threshold: 0 } }, (conn) =>
      conn.on('message', (d, isBinary) => conn.send(d, { binary: isBinary })),
    );
    const { port } = await server.listen(0, '127.0.0.1');
    t.teardown(() => server.close({ timeout: 200 }));
    const created = zlibStreamStats().created;
    const raw = await rawUpgrade(port, '/', ['Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover']);
    t.match(raw.head.headers.get('sec-websocket-extensions')?.[0] ?? '', /server_no_context_takeover/);
    const texts = Array.from({ length: 100 }, (_, i) => `message ${i % 10} `.repeat(1 + (i % 50)));
    // Sent all at once: the server inflates and compresses them one after the other, in order.
    raw.socket.write(Buffer.concat(texts.map((s) => rawFrame({ opcode: 1, rsv1: true, payload: compressOnce(Buffer.from(s)), mask: MASK }))));
    await until(() => decodeFrames(raw.received()).length === texts.length, 10000, 'every echo');
    const bytes = raw.received();
    const frames = decodeFrames(bytes);
    let at = 0;
    let ok = 0;
    for (const [i, [op, payload]] of frames.entries()) {
      const compressed = (bytes[at] & 0x40) !== 0;
      at = payload.byteOffset - bytes.byteOffset + payload.length;
      if (op === 1 && compressed && inflateAlone(payload).toString() === texts[i]) ok++;
    }
    t.equal(ok, texts.length, 'every echo is compressed, in order, and inflates with a brand-new inflater');
    t.equal(zlibStreamStats().created - created, 2, "the server's inflater and deflater, reused for 100 messages");
    raw.socket.destroy();
  });
});

t.test('idle release: no zlib stream held after the idle time, created again on the next message', async (t) => {
  await withIdle(20, async () => {
    const opts: DeflateOptions = { serverNoContextTakeover: true, clientNoContextTakeover: true, threshold: 0 };
    const server = createServer({ heartbeat: false, perMessageDeflate: opts }, (conn) => conn.on('message', (d, isBinary) => conn.send(d, { binary: isBinary })));
    const { port } = await server.listen(0, '127.0.0.1');
    t.teardown(() => server.close({ timeout: 200 }));
    const c = await connect(`ws://127.0.0.1:${port}`, { perMessageDeflate: opts, heartbeat: false });
    for (let round = 0; round < 3; round++) {
      const created = zlibStreamStats().created;
      const echoes: string[] = [];
      c.on('message', (d) => echoes.push(d.toString()));
      for (let i = 0; i < 20; i++) c.send(`round ${round} message ${i} `.repeat(30));
      await until(() => echoes.length === 20, 10000, 'the echoes');
      c.removeAllListeners('message');
      t.same(echoes, Array.from({ length: 20 }, (_, i) => `round ${round} message ${i} `.repeat(30)), `round ${round}: every echo, in order`);
      t.ok(zlibStreamStats().created - created >= 4, `round ${round}: both ends created their streams again after idling`);
      await until(() => zlibStreamStats().open === 0, 10000, 'idle streams released');
      t.equal(c.readyState, 1, `round ${round}: every stream released while the connection stays open`);
    }
    c.close();
    await once(c, 'close');
  });
});

t.test('a side with context takeover keeps its stream when idle; the other side releases its own', async (t) => {
  await withIdle(20, async () => {
    const params = { ...NO_CONTEXT, serverNoContextTakeover: false };
    const codec = new DeflateCodec('server', params, options, new Limiter(2), 1 << 20);
    const text = Buffer.from('context is kept between messages: '.repeat(40));
    const first = await compress(codec, text);
    t.equal((await decompress(codec, compressOnce(text))).toString(), text.toString());
    await until(() => zlibStreamStats().open === 1, 10000, 'the inflater released');
    const deflaterBytes = (1 << 17) + (1 << 17);
    t.equal(codec.memory, deflaterBytes, 'only the deflater is held');
    await new Promise((r) => setTimeout(r, 100));
    t.equal(zlibStreamStats().open, 1, 'still held after several idle periods');
    const second = await compress(codec, text);
    t.ok(second.length < first.length / 2, `the repeat refers to the first message (${first.length} → ${second.length} bytes)`);
    codec.close();
  });
});

t.test('errors mid-stream release the stream; the next message gets a fresh one and stands alone', async (t) => {
  await withIdle(60_000, async () => {
    const codec = new DeflateCodec('server', NO_CONTEXT, options, new Limiter(1), 10_000);
    const good = Buffer.from('a good message, '.repeat(20));
    t.same(await decompress(codec, compressOnce(good)), good);
    t.equal(zlibStreamStats().open, 1, 'inflater kept');
    const bad = await decompress(codec, Buffer.from([0xff, 0xfe, 0xfd, 0xfc])).catch((e: { closeCode: number; cause?: { code?: string } }) => e);
    t.equal((bad as { closeCode: number }).closeCode, 1007, 'malformed data: 1007');
    t.equal(zlibStreamStats().open, 0, 'the failed inflater is released');
    t.same(await decompress(codec, compressOnce(good)), good, 'the next message inflates');
    const big = await decompress(codec, compressOnce(Buffer.alloc(1_000_000))).catch((e: { closeCode: number }) => e);
    t.equal((big as { closeCode: number }).closeCode, 1009, 'over maxMessageSize: 1009, mid-stream');
    await until(() => zlibStreamStats().open === 0, 5000, 'the stream stopped at the limit released');
    t.same(await decompress(codec, compressOnce(good)), good, 'and the next one again');
    // A message ending with a final block ends zlib's stream: it is not reset but replaced.
    t.same(await decompress(codec, deflateRawSync(good)), good, 'a message ending with a final block');
    t.equal(zlibStreamStats().open, 0, 'its ended stream is released');
    t.same(await decompress(codec, compressOnce(good)), good, 'the next message after it');
    // Output of the reused deflater still stands alone after all this.
    const out = await compress(codec, good);
    t.same(inflateAlone(out), good);
    codec.close();
  });
});

t.test('a bad compressed frame on a connection reusing its inflater closes 1007 and frees every stream', async (t) => {
  await withIdle(60_000, async () => {
    let closeCode = 0;
    const server = createServer({ heartbeat: false, perMessageDeflate: { serverNoContextTakeover: true, clientNoContextTakeover: true, threshold: 0 } }, (conn) => {
      conn.on('message', (d, isBinary) => conn.send(d, { binary: isBinary }));
      conn.on('close', (code) => (closeCode = code));
    });
    const { port } = await server.listen(0, '127.0.0.1');
    t.teardown(() => server.close({ timeout: 200 }));
    const raw = await rawUpgrade(port, '/', ['Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover']);
    const frames = [0, 1, 2].map((i) => rawFrame({ opcode: 1, rsv1: true, payload: compressOnce(Buffer.from(`good ${i} `.repeat(40))), mask: MASK }));
    raw.socket.write(Buffer.concat([...frames, rawFrame({ opcode: 2, rsv1: true, payload: Buffer.from([0xff, 0xff, 0xff, 0x00, 0x12]), mask: MASK })]));
    await raw.closed;
    const got = decodeFrames(raw.received());
    t.same(
      got.filter(([op]) => op === 1).map(([, p]) => inflateAlone(p).toString()),
      [0, 1, 2].map((i) => `good ${i} `.repeat(40)),
      'the good messages were echoed first',
    );
    t.equal(got.find(([op]) => op === 8)?.[1].readUInt16BE(0), 1007);
    await until(() => closeCode !== 0, 5000, 'the server-side close event');
    t.equal(zlibStreamStats().open, 0, 'no zlib stream left');
  });
});

t.test('close while a job is in flight: the callback runs once, nothing is reset after close, nothing leaks', async (t) => {
  await withIdle(60_000, async () => {
    const noise = Buffer.from(Array.from({ length: 4 << 20 }, (_, i) => (i * 2654435761) >>> 24));
    for (const closeAfter of [0, 1]) {
      const codec = new DeflateCodec('server', NO_CONTEXT, options, new Limiter(1), 1 << 24);
      await compress(codec, Buffer.from('warm the stream up '.repeat(10)));
      let calls = 0;
      const answered = new Promise<void>((resolve) =>
        codec.compress(noise, () => {
          calls++;
          resolve();
        }),
      );
      const inflated = new Promise<void>((resolve) =>
        codec.decompress(compressOnce(noise), () => {
          calls++;
          resolve();
        }),
      );
      if (closeAfter === 0) codec.close();
      else setImmediate(() => codec.close());
      await Promise.all([answered, inflated]);
      await new Promise((r) => setTimeout(r, 50));
      t.equal(calls, 2, `closed ${closeAfter === 0 ? 'at once' : 'a tick later'}: each callback ran once`);
      t.equal(zlibStreamStats().open, 0, 'nothing left open');
      const after = await new Promise<string>((r) => codec.compress(Buffer.from('x'), (e) => r(e ? e.message : 'compressed')));
      t.equal(after, 'connection closed', 'a closed codec refuses work');
    }
  });
});

t.test('a shared limiter of 1 with connections closing mid-burst: order kept for the others, every stream freed', async (t) => {
  await withIdle(60_000, async () => {
    const opts: DeflateOptions = { serverNoContextTakeover: true, clientNoContextTakeover: true, threshold: 0, concurrency: 1 };
    const server = createServer({ heartbeat: false, perMessageDeflate: opts }, (conn) => conn.on('message', (d, isBinary) => conn.send(d, { binary: isBinary })));
    const { port } = await server.listen(0, '127.0.0.1');
    t.teardown(() => server.close({ timeout: 200 }));
    const clients: WebSocketConnection[] = await Promise.all(Array.from({ length: 12 }, () => connect(`ws://127.0.0.1:${port}`, { perMessageDeflate: opts, heartbeat: false })));
    const results = await Promise.all(
      clients.map(
        (c, n) =>
          new Promise<{ n: number; got: number[]; code: number }>((resolve) => {
            const got: number[] = [];
            c.on('message', (d) => {
              got.push(Number(d.toString().split(':')[1]));
              // Every third client goes away in the middle of its burst: half its messages still compressing.
              if (n % 3 === 0 && got.length === 10) c.terminate();
              if (got.length === 50) c.close();
            });
            c.on('close', (code) => resolve({ n, got, code }));
            for (let i = 0; i < 50; i++) c.send(`${n}:${i}:` + 'payload '.repeat(10 + ((i * 7) % 90)));
          }),
      ),
    );
    for (const { n, got } of results) {
      if (n % 3 === 0) t.same(got, Array.from({ length: 10 }, (_, i) => i), `client ${n}: in order until it left`);
      else t.same(got, Array.from({ length: 50 }, (_, i) => i), `client ${n}: all 50 echoes, in order`);
    }
    await until(() => server.clients.size === 0, 10000, 'the server saw every close');
    t.equal(zlibStreamStats().open, 0, 'no zlib stream left on either side');
  });
});

t.test('random sequences of good, final-block, malformed and oversized messages, with idle gaps (seeded)', async (t) => {
  await withIdle(5, async () => {
    for (const replyTakeover of [false, true]) {
      // mulberry32
      let seed = replyTakeover ? 99 : 7;
      const rnd = (): number => {
        seed = (seed + 0x6d2b79f5) >>> 0;
        let x = Math.imul(seed ^ (seed >>> 15), seed | 1);
        x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
        return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
      };
      // The client compresses without context takeover; the server's replies with or without it.
      const params = { ...NO_CONTEXT, serverNoContextTakeover: !replyTakeover };
      const client = new DeflateCodec('client', params, options, new Limiter(1), 1 << 20);
      const server = new DeflateCodec('server', params, options, new Limiter(1), 50_000);
      const counts = { good: 0, final: 0, split: 0, malformed: 0, oversized: 0, idle: 0 };
      const text = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => 'abcdefgh ,.{}"0123'[Math.floor(rnd() * 18)]).join(''));
      for (let step = 0; step < 300; step++) {
        const kind = rnd();
        const m = text(Math.floor(rnd() * (rnd() < 0.2 ? 20000 : 300)));
        if (kind < 0.5) {
          const out = await compress(client, m);
          if (!inflateAlone(out).equals(m)) t.fail(`step ${step}: not standalone`);
          if (!(await decompress(server, out)).equals(m)) t.fail(`step ${step}: wrong data`);
          const reply = await compress(server, m);
          if (!(await decompress(client, reply)).equals(m)) t.fail(`step ${step}: wrong reply`);
          counts.good++;
        } else if (kind < 0.6) {
          // A message ending with a final block.
          if (!(await decompress(server, deflateRawSync(m))).equals(m)) t.fail(`step ${step}: final block`);
          counts.final++;
        } else if (kind < 0.7) {
          // A final block, then more data in the same message (a new stream, the window carried over).
          const m2 = text(50);
          const got = await decompress(server, Buffer.concat([deflateRawSync(m), compressOnce(m2)]));
          if (!got.equals(Buffer.concat([m, m2]))) t.fail(`step ${step}: data after a final block`);
          counts.split++;
        } else if (kind < 0.8) {
          const e = await decompress(server, Buffer.from([0xff, 0xfe, Math.floor(rnd() * 256), 0x00])).then(
            () => 0,
            (err: { closeCode: number }) => err.closeCode,
          );
          if (e !== 1007) t.fail(`step ${step}: malformed data gave ${e}`);
          counts.malformed++;
        } else if (kind < 0.9) {
          const e = await decompress(server, compressOnce(Buffer.alloc(60_000 + Math.floor(rnd() * 100_000), 'a'))).then(
            () => 0,
            (err: { closeCode: number }) => err.closeCode,
          );
          if (e !== 1009) t.fail(`step ${step}: oversized message gave ${e}`);
          counts.oversized++;
        } else {
          // Idle for several sweep periods: the no-takeover streams go; with takeover on replies the server's
          // deflater and the client's inflater stay (their windows are shared state).
          await until(() => zlibStreamStats().open === (replyTakeover && counts.good > 0 ? 2 : 0), 5000, 'idle release');
          counts.idle++;
        }
      }
      t.ok(Object.values(counts).every((n) => n > 0), `every kind of step ran: ${JSON.stringify(counts)}`);
      client.close();
      server.close();
      t.equal(zlibStreamStats().open, 0, `reply takeover ${replyTakeover}: nothing left open`);
    }
  });
});
