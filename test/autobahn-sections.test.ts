/**
 * The Autobahn testsuite, section by section, without the suite: the real testee processes
 * (autobahn/testee-server.ts, autobahn/testee-client.ts) are started as children and driven over raw sockets the
 * way the suite drives them — masked frames with a fixed key from a "fuzzingclient", unmasked ones from a
 * "fuzzingserver" — and each case asserts the outcome the suite expects: the echoed messages and pongs, or the
 * close code of a failed connection (fast where the suite says "fail fast"), and a server that closes TCP after
 * the closing handshake. The bar is the suite's: every case OK, 6.4.x and 9.3.x/9.4.x included; the informational
 * cases (7.1.6, 7.13.x) are checked for what this engine does.
 */
import t, { type Test } from 'tap';
import { checkResponse, Compressor, Decompressor, parseExtensionHeader, type Agreed } from './autobahn-sections/deflate.js';
import { closingHandshake, type FuzzCase, FuzzingServer, readMessage } from './autobahn-sections/fuzzingserver.js';
import { Session, type Expected } from './autobahn-sections/session.js';
import { startTesteeClient, startTesteeServer } from './autobahn-sections/testee.js';
import { INVALID, MIXED, VALID } from './autobahn-sections/utf8-samples.js';
import {
  binary,
  closeCodeOf,
  closeFrame,
  cont,
  delay,
  frame,
  fragments,
  type Frame,
  header,
  OP,
  ping,
  pong,
  text,
} from './autobahn-sections/wire.js';

const { TEXT, BINARY, PONG } = OP;
const KiB = 1024;
const MiB = 1024 * 1024;

// ───────────────────────────── payloads ─────────────────────────────

/** Deterministic pseudo-random generator (xorshift32). */
function rng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

function randomBytes(n: number, seed = 7): Buffer {
  const next = rng(seed);
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = (next() * 256) | 0;
  return out;
}

/** `n` bytes of valid UTF-8 text with 1- to 4-byte characters (ASCII padding to hit `n` exactly). */
function utf8Text(n: number): Buffer {
  const unit = Buffer.from('Hello κόσμε, 世界 𝄞! ');
  const out = Buffer.alloc(n, '*');
  for (let at = 0; at + unit.length <= n; at += unit.length) unit.copy(out, at);
  return out;
}

/** Compressible text from a small vocabulary, varying with `seed`: what the compression cases send. */
function prose(n: number, seed: number): Buffer {
  const words = ['permessage', 'deflate', 'window', 'context', 'takeover', 'frame', 'κόσμε', 'octet', 'echo', 'Autobahn', 'fragment', 'message', '世界', 'server', 'client', 'sync', 'flush'];
  const next = rng(seed);
  const parts: string[] = [];
  let length = 0;
  while (length < n) {
    const w = words[(next() * words.length) | 0] + (next() < 0.1 ? '.\n' : ' ');
    parts.push(w);
    length += Buffer.byteLength(w);
  }
  return fitUtf8(Buffer.from(parts.join('')), n);
}

/** Cuts `b` to at most `n` bytes on a character boundary, then pads with ASCII to exactly `n`. */
function fitUtf8(b: Buffer, n: number): Buffer {
  let end = Math.min(n, b.length);
  while (end > 0 && end < b.length && (b[end] & 0xc0) === 0x80) end--;
  const out = Buffer.alloc(n, '.');
  b.copy(out, 0, 0, end);
  return out;
}

// ───────────────────────────── the testee server ─────────────────────────────

const testee = await startTesteeServer();
t.teardown(() => testee.kill());
const PORT = testee.port;

type CaseOptions = { timeout?: number; extensions?: string };

/** One case: a fresh connection to the testee, named like "5.9: continuation without start → 1002". */
function kase(t: Test, name: string, run: (s: Session) => Promise<void>, options: CaseOptions = {}): Promise<unknown> {
  return t.test(name, { timeout: options.timeout ?? 10_000 }, async (t) => {
    const s = await Session.open(t, PORT, { extensions: options.extensions });
    await run(s);
  });
}

/** An echo case: send `bytes` (in chops of `chop` bytes when given), expect `expected`, close normally. */
function echoCase(t: Test, name: string, bytes: Buffer, expected: Expected[], options: CaseOptions & { chop?: number; pause?: number } = {}): Promise<unknown> {
  return kase(
    t,
    name,
    async (s) => {
      if (options.chop) await s.peer.writeChopped(bytes, options.chop, options.pause ?? 0);
      else s.write(bytes);
      await s.expect(expected, options.timeout ?? 5000);
      await s.closeNormally();
    },
    options,
  );
}

/** A failure case: send `bytes`, expect the messages in `before` (if any), then the close with `code` and the TCP close. */
function failCase(t: Test, name: string, bytes: Buffer, code: number | number[], before: Expected[] = [], options: CaseOptions & { chop?: number; pause?: number } = {}): Promise<unknown> {
  return kase(
    t,
    name,
    async (s) => {
      if (options.chop) await s.peer.writeChopped(bytes, options.chop, options.pause ?? 0);
      else s.write(bytes);
      if (before.length > 0) await s.expect(before);
      await s.expectClose(code);
    },
    options,
  );
}

const cat = (...frames: Buffer[]): Buffer => Buffer.concat(frames);

// ───────────────────────────── 1 Framing ─────────────────────────────

t.test('1 Framing', async (t) => {
  const lengths = [0, 125, 126, 127, 128, 65535, 65536];
  for (const [i, n] of lengths.entries()) {
    const payload = Buffer.alloc(n, '*');
    await echoCase(t, `1.1.${i + 1}: text, payload ${n} → echoed`, text(payload), [[TEXT, payload]]);
  }
  const t65536 = Buffer.alloc(65536, '*');
  await echoCase(t, '1.1.8: text, payload 65536 in TCP chops of 997 → echoed', text(t65536), [[TEXT, t65536]], { chop: 997 });
  for (const [i, n] of lengths.entries()) {
    const payload = Buffer.alloc(n, 0xfe);
    await echoCase(t, `1.2.${i + 1}: binary, payload ${n} → echoed`, binary(payload), [[BINARY, payload]]);
  }
  const b65536 = randomBytes(65536);
  await echoCase(t, '1.2.8: binary, payload 65536 in TCP chops of 997 → echoed', binary(b65536), [[BINARY, b65536]], { chop: 997 });
});

// ───────────────────────────── 2 Pings/Pongs ─────────────────────────────

t.test('2 Pings/Pongs', async (t) => {
  await echoCase(t, '2.1: ping without payload → pong without payload', ping(), [[PONG, '']]);
  await echoCase(t, '2.2: ping with text payload → pong with it', ping('Hello, world!'), [[PONG, 'Hello, world!']]);
  const bin = Buffer.from([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]);
  await echoCase(t, '2.3: ping with binary payload → pong with it', ping(bin), [[PONG, bin]]);
  const p125 = Buffer.alloc(125, 0xfe);
  await echoCase(t, '2.4: ping with 125-byte payload → pong with it', ping(p125), [[PONG, p125]]);
  await failCase(t, '2.5: ping with 126-byte payload → 1002', ping(Buffer.alloc(126, 0xfe)), 1002);
  await echoCase(t, '2.6: 125-byte ping in 1-octet chops → pong', ping(p125), [[PONG, p125]], { chop: 1, pause: 1 });
  await kase(t, '2.7: unsolicited pong without payload → ignored', async (s) => {
    s.write(pong());
    s.t.ok(await s.quiet(150), 'nothing sent back');
    await s.closeNormally();
  });
  await kase(t, '2.8: unsolicited pong with payload → ignored', async (s) => {
    s.write(pong('unsolicited pong payload'));
    s.t.ok(await s.quiet(150), 'nothing sent back');
    await s.closeNormally();
  });
  await echoCase(
    t,
    '2.9: unsolicited pong, then ping → only the ping is answered',
    cat(pong('unsolicited pong payload'), ping('ping payload')),
    [[PONG, 'ping payload']],
  );
  const tenPings = Array.from({ length: 10 }, (_, i) => `payload-${i}`);
  await echoCase(t, '2.10: 10 pings → 10 pongs, in order', cat(...tenPings.map((p) => ping(p))), tenPings.map((p): Expected => [PONG, p]));
  await echoCase(t, '2.11: 10 pings in 1-octet chops → 10 pongs', cat(...tenPings.map((p) => ping(p))), tenPings.map((p): Expected => [PONG, p]), {
    chop: 1,
    pause: 1,
  });
});

// ───────────────────────────── 3 Reserved bits ─────────────────────────────

t.test('3 Reserved bits', async (t) => {
  const rsv = (bits: number): { rsv1: boolean; rsv2: boolean; rsv3: boolean } => ({ rsv1: (bits & 4) !== 0, rsv2: (bits & 2) !== 0, rsv3: (bits & 1) !== 0 });
  const hello = text('Hello, world!');
  const echoed: Expected[] = [[TEXT, 'Hello, world!']];
  await failCase(t, '3.1: text with RSV=1 → 1002', frame({ opcode: TEXT, payload: 'Hello, world!', ...rsv(1) }), 1002);
  await kase(t, '3.2: valid text, then text with RSV=2, then ping → echo, then 1002 (no pong)', async (s) => {
    s.write(hello);
    await s.expect(echoed);
    s.write(cat(frame({ opcode: TEXT, payload: 'Hello, world!', ...rsv(2) }), ping('no pong expected')));
    await s.expectClose(1002);
  });
  await failCase(t, '3.3: valid text + text with RSV=3 + ping in one write → echo, then 1002', cat(hello, frame({ opcode: TEXT, payload: 'Hello, world!', ...rsv(3) }), ping()), 1002, echoed);
  await failCase(t, '3.4: same with RSV=4, in 1-octet chops → echo, then 1002', cat(hello, frame({ opcode: TEXT, payload: 'Hello, world!', ...rsv(4) }), ping()), 1002, echoed, {
    chop: 1,
  });
  await failCase(t, '3.5: binary with RSV=5 → 1002', frame({ opcode: BINARY, payload: randomBytes(8), ...rsv(5) }), 1002);
  await failCase(t, '3.6: ping with RSV=6 → 1002', frame({ opcode: OP.PING, payload: 'Hello, world!', ...rsv(6) }), 1002);
  await failCase(t, '3.7: close with RSV=7 → 1002', frame({ opcode: OP.CLOSE, payload: Buffer.from([0x03, 0xe8]), ...rsv(7) }), 1002);
});

// ───────────────────────────── 4 Opcodes ─────────────────────────────

t.test('4 Opcodes', async (t) => {
  const hello = text('Hello, world!');
  const echoed: Expected[] = [[TEXT, 'Hello, world!']];
  await failCase(t, '4.1.1: reserved data opcode 3 → 1002', frame({ opcode: 3 }), 1002);
  await failCase(t, '4.1.2: reserved data opcode 4 with payload → 1002', frame({ opcode: 4, payload: 'reserved opcode' }), 1002);
  await failCase(t, '4.1.3: text, reserved opcode 5, ping → echo, then 1002', cat(hello, frame({ opcode: 5 }), ping()), 1002, echoed);
  await failCase(t, '4.1.4: text, reserved opcode 6 with payload, ping → echo, then 1002', cat(hello, frame({ opcode: 6, payload: 'x' }), ping()), 1002, echoed);
  await failCase(t, '4.1.5: text, reserved opcode 7 with payload, ping → echo, then 1002', cat(hello, frame({ opcode: 7, payload: 'x' }), ping()), 1002, echoed);
  await failCase(t, '4.2.1: reserved control opcode 11 → 1002', frame({ opcode: 11 }), 1002);
  await failCase(t, '4.2.2: reserved control opcode 12 with payload → 1002', frame({ opcode: 12, payload: 'reserved opcode' }), 1002);
  await failCase(t, '4.2.3: text, reserved opcode 13, ping → echo, then 1002', cat(hello, frame({ opcode: 13 }), ping()), 1002, echoed);
  await failCase(t, '4.2.4: text, reserved opcode 14 with payload, ping → echo, then 1002', cat(hello, frame({ opcode: 14, payload: 'x' }), ping()), 1002, echoed);
  await failCase(t, '4.2.5: text, reserved opcode 15 with payload, ping → echo, then 1002', cat(hello, frame({ opcode: 15, payload: 'x' }), ping()), 1002, echoed);
});

// ───────────────────────────── 5 Fragmentation ─────────────────────────────

t.test('5 Fragmentation', async (t) => {
  const twoFragments = cat(text('fragment1', false), cont('fragment2'));
  const whole: Expected[] = [[TEXT, 'fragment1fragment2']];
  await failCase(t, '5.1: ping in 2 fragments → 1002', cat(frame({ opcode: OP.PING, payload: 'fragment1', fin: false }), cont('fragment2')), 1002);
  await failCase(t, '5.2: pong in 2 fragments → 1002', cat(frame({ opcode: OP.PONG, payload: 'fragment1', fin: false }), cont('fragment2')), 1002);
  await echoCase(t, '5.3: text in 2 fragments → echoed whole', twoFragments, whole);
  await kase(t, '5.4: text in 2 fragments, frame-wise chops with a pause → echoed whole', async (s) => {
    s.write(text('fragment1', false));
    s.t.ok(await s.quiet(100), 'nothing echoed before the last fragment');
    s.write(cont('fragment2'));
    await s.expect(whole);
    await s.closeNormally();
  });
  await echoCase(t, '5.5: text in 2 fragments, 1-octet chops → echoed whole', twoFragments, whole, { chop: 1, pause: 1 });
  const withPing = cat(text('fragment1', false), ping('pongme!'), cont('fragment2'));
  const pongThenWhole: Expected[] = [[PONG, 'pongme!'], ...whole];
  await echoCase(t, '5.6: text in 2 fragments with a ping between → pong, then echo', withPing, pongThenWhole);
  await kase(t, '5.7: same, frame-wise chops → the pong comes before the message ends', async (s) => {
    s.write(text('fragment1', false));
    s.write(ping('pongme!'));
    await s.expect([[PONG, 'pongme!']], 2000);
    s.write(cont('fragment2'));
    await s.expect(whole);
    await s.closeNormally();
  });
  await echoCase(t, '5.8: same, 1-octet chops → pong, then echo', withPing, pongThenWhole, { chop: 1, pause: 1 });
  const after = cat(text('fragment2'), ping('no pong expected'));
  await failCase(t, '5.9: continuation (FIN=1) without start → 1002', cat(cont('fragment1'), after), 1002);
  await failCase(t, '5.10: same, frame-wise chops → 1002', cat(cont('fragment1'), after), 1002, [], { chop: 64, pause: 5 });
  await failCase(t, '5.11: same, 1-octet chops → 1002', cat(cont('fragment1'), after), 1002, [], { chop: 1, pause: 1 });
  await failCase(t, '5.12: continuation (FIN=0) without start → 1002', cat(cont('fragment1', false), after), 1002);
  await failCase(t, '5.14: same, 1-octet chops → 1002', cat(cont('fragment1', false), after), 1002, [], { chop: 1, pause: 1 });
  await failCase(t, '5.15: 2-fragment text, then continuation (FIN=0) with nothing to continue → echo, then 1002', cat(twoFragments, cont('fragment3', false), text('fragment4')), 1002, whole);
  const noStart16 = cat(cont('fragment1', false), text('fragment2', false), cont('fragment3'));
  await failCase(t, '5.16: continuation (FIN=0) without start, then a fragmented text (x2) → 1002', cat(noStart16, noStart16), 1002);
  await failCase(t, '5.17: continuation (FIN=1) without start, then a fragmented text (x2) → 1002', cat(cont('fragment1'), text('fragment2', false), cont('fragment3'), cont('fragment1'), text('fragment2', false), cont('fragment3')), 1002);
  await failCase(t, '5.18: text fragment, then a new text frame instead of a continuation → 1002', cat(text('fragment1', false), text('fragment2')), 1002);
  await kase(t, '5.19: text in 5 fragments with 2 pings between, sent with pauses → each pong at once, then the echo', async (s) => {
    s.write(text('fragment1', false));
    await delay(50);
    s.write(cont('fragment2', false));
    s.write(ping('pongme 1!'));
    await s.expect([[PONG, 'pongme 1!']], 2000);
    s.write(cont('fragment3', false));
    await delay(50);
    s.write(cont('fragment4', false));
    s.write(ping('pongme 2!'));
    await s.expect([[PONG, 'pongme 2!']], 2000);
    s.write(cont('fragment5'));
    await s.expect([[TEXT, 'fragment1fragment2fragment3fragment4fragment5']]);
    await s.closeNormally();
  });
  const fiveWithPings = cat(text('fragment1', false), cont('fragment2', false), ping('pongme 1!'), cont('fragment3', false), cont('fragment4', false), ping('pongme 2!'), cont('fragment5'));
  await echoCase(
    t,
    '5.20: same, in 1-octet chops → 2 pongs, then the echo',
    fiveWithPings,
    [[PONG, 'pongme 1!'], [PONG, 'pongme 2!'], [TEXT, 'fragment1fragment2fragment3fragment4fragment5']],
    { chop: 1 },
  );
});

// ───────────────────────────── 6 UTF-8 ─────────────────────────────

t.test('6 UTF-8 handling', async (t) => {
  await echoCase(t, '6.1.1: empty text → echoed', text(''), [[TEXT, '']]);
  await echoCase(t, '6.1.2: text in 3 empty fragments → echoed empty', cat(text('', false), cont('', false), cont('')), [[TEXT, '']]);
  await echoCase(t, '6.1.3: text in 3 fragments, first and last empty → echoed', cat(text('', false), cont('middle frame payload', false), cont('')), [[TEXT, 'middle frame payload']]);

  const mixed = Buffer.from(MIXED);
  await echoCase(t, '6.2.1: valid UTF-8 (1–4 byte characters) in one frame → echoed', text(mixed), [[TEXT, mixed]]);
  await kase(t, `6.2.2: valid UTF-8 split into 2 fragments at every byte position (${mixed.length - 1} messages) → each echoed`, async (s) => {
    const frames: Buffer[] = [];
    for (let cut = 1; cut < mixed.length; cut++) frames.push(text(mixed.subarray(0, cut), false), cont(mixed.subarray(cut)));
    s.write(cat(...frames));
    const bad: string[] = [];
    for (let cut = 1; cut < mixed.length; cut++) {
      const m = await s.next();
      if (m.opcode !== TEXT || !m.payload.equals(mixed)) bad.push(`cut at ${cut}: got ${m.opcode}/${m.payload.toString('hex')}`);
    }
    s.t.same(bad, [], 'every split echoed whole');
    await s.closeNormally();
  });
  await echoCase(t, '6.2.3: valid UTF-8 in 1-byte fragments → echoed', fragments(TEXT, mixed, 1), [[TEXT, mixed]]);
  const kosme = Buffer.from('cebae1bdb9cf83cebcceb5', 'hex');
  await echoCase(t, '6.2.4: κόσμε in 1-byte fragments → echoed', fragments(TEXT, kosme, 1), [[TEXT, kosme]]);

  const invalidText = Buffer.from('cebae1bdb9cf83cebcceb5eda080656469746564', 'hex');
  await failCase(t, '6.3.1: invalid UTF-8 in one frame → 1007', text(invalidText), 1007);
  await failCase(t, '6.3.2: invalid UTF-8 in 1-byte fragments → 1007', fragments(TEXT, invalidText, 1), 1007);

  // 6.4.x: fail fast. The first part alone is valid (no close); the part making it invalid must get the close before
  // the rest of the message is sent.
  const failFast = (name: string, parts: string[], mode: 'frames' | 'chops'): Promise<unknown> =>
    kase(t, name, async (s) => {
      const bytes = parts.map((h) => Buffer.from(h, 'hex'));
      let pieces: Buffer[];
      if (mode === 'frames') {
        pieces = [text(bytes[0], false), cont(bytes[1], false), cont(bytes[2])];
      } else {
        const whole = text(Buffer.concat(bytes));
        const head = whole.length - Buffer.concat(bytes).length;
        const a = head + bytes[0].length;
        const b = a + bytes[1].length;
        pieces = [whole.subarray(0, a), whole.subarray(a, b), whole.subarray(b)];
      }
      s.write(pieces[0]);
      s.t.ok(await s.quiet(300), 'first part (valid so far) accepted: no close');
      s.write(pieces[1]);
      // Without fail-fast the close could only come after the rest, which is not sent until the close came: the
      // order proves it, no clock needed (the wait is generous for a loaded machine).
      await s.expectClose(1007, 8000);
      s.write(pieces[2]);
    }, { timeout: 20_000 });
  await failFast('6.4.1: 3 frames, the 2nd holds U+110000 (f4 90 80 80) → 1007 before the 3rd is sent', ['cebae1bdb9cf83cebcceb5', 'f4908080', '656469746564'], 'frames');
  await failFast('6.4.2: 3 frames, the 2nd holds the byte (90) after f4 that breaks it → 1007 before the 3rd', ['cebae1bdb9cf83cebcceb5f4', '90', '8080656469746564'], 'frames');
  await failFast('6.4.3: one frame in 3 chops, the 2nd holds f4 90 80 80 → 1007 before the 3rd chop', ['cebae1bdb9cf83cebcceb5', 'f4908080', '656469746564'], 'chops');
  await failFast('6.4.4: one frame in 3 chops, the 2nd holds the byte 90 after f4 → 1007 before the 3rd chop', ['cebae1bdb9cf83cebcceb5f4', '90', '8080656469746564'], 'chops');

  for (const [id, what, hex] of VALID) {
    const payload = Buffer.from(hex, 'hex');
    await echoCase(t, `${id}: valid UTF-8, ${what} (${hex}) → echoed`, text(payload), [[TEXT, payload]]);
  }
  for (const [id, what, hex] of INVALID) {
    await failCase(t, `${id}: invalid UTF-8, ${what} (${hex.length > 24 ? `${hex.slice(0, 24)}…` : hex}) → 1007`, text(Buffer.from(hex, 'hex')), 1007);
  }
});

// ───────────────────────────── 7 Close handling ─────────────────────────────

t.test('7 Close handling', async (t) => {
  await failCase(t, '7.1.1: text, then close 1000 → echo, then close 1000 echoed', cat(text('Hello World!'), closeFrame(1000)), 1000, [[TEXT, 'Hello World!']]);
  await failCase(t, '7.1.2: close twice → one close back, nothing more', cat(closeFrame(1000), closeFrame(1000)), 1000);
  await failCase(t, '7.1.3: close, then ping → close back, no pong', cat(closeFrame(1000), ping('Hello World!')), 1000);
  await failCase(t, '7.1.4: close, then text → close back, no echo', cat(closeFrame(1000), text('Hello World!')), 1000);
  await failCase(t, '7.1.5: text fragment, close, last fragment → close back, no echo', cat(text('fragment1', false), closeFrame(1000), cont('fragment2')), 1000);
  // 7.1.6 is informational (a large message, then close, then ping: timing only) and not checked.

  await failCase(t, '7.3.1: close with empty payload → close back (no code)', closeFrame(), [1005, 1000]);
  await failCase(t, '7.3.2: close with a 1-byte payload → 1002', frame({ opcode: OP.CLOSE, payload: Buffer.from([0x03]) }), 1002);
  await failCase(t, '7.3.3: close 1000 → 1000', closeFrame(1000), 1000);
  await failCase(t, '7.3.4: close 1000 with a reason → 1000', closeFrame(1000, 'Hello World!'), 1000);
  await failCase(t, '7.3.5: close 1000 with a 123-byte reason → 1000', closeFrame(1000, '*'.repeat(123)), 1000);
  await failCase(t, '7.3.6: close 1000 with a 124-byte reason (126-byte control frame) → 1002', closeFrame(1000, '*'.repeat(124)), 1002);
  await failCase(t, '7.5.1: close 1000 with an invalid UTF-8 reason → 1007', closeFrame(1000, Buffer.from('cebae1bdb9cf83cebcceb5eda080656469746564', 'hex')), 1007);

  const valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999];
  for (const [i, code] of valid.entries()) {
    await failCase(t, `7.7.${i + 1}: close ${code} → ${code} echoed`, closeFrame(code), code);
  }
  // 1012–1014 are registered (IANA) and valid in this engine (lib/core/errors.ts isValidCloseCode): echoed.
  for (const code of [1012, 1013, 1014]) {
    await failCase(t, `7.7 (registered): close ${code} → ${code} echoed`, closeFrame(code), code);
  }
  const invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999];
  for (const [i, code] of invalid.entries()) {
    await failCase(t, `7.9.${i + 1}: close with invalid code ${code} → 1002`, closeFrame(code), 1002);
  }
  // 7.13.x are informational in the suite; this engine rejects codes above 4999.
  await failCase(t, '7.13.1 (informational): close 5000 → 1002', closeFrame(5000), 1002);
  await failCase(t, '7.13.2 (informational): close 65535 → 1002', closeFrame(65535), 1002);

  await kase(t, '7.x: the server ends TCP once its close reply is out, and sends nothing after it', async (s) => {
    s.write(text('before close'));
    await s.expect([[TEXT, 'before close']]);
    s.write(closeFrame(1000, 'bye'));
    const reply = await s.peer.next(3000);
    s.t.equal(reply.opcode, OP.CLOSE, 'close frame back');
    s.t.equal(closeCodeOf(reply), 1000, 'with 1000');
    s.t.ok(await s.peer.waitClosed(2000), 'TCP closed by the server within 2 s');
    s.t.same(s.peer.drain(), [], 'nothing after the close');
  });
});

// ───────────────────────────── 9 Limits/Performance ─────────────────────────────

t.test('9 Limits/Performance', async (t) => {
  const big = { timeout: 30_000 };
  const t1 = utf8Text(MiB);
  const t4 = utf8Text(4 * MiB);
  const b1 = randomBytes(MiB, 11);
  const b4 = randomBytes(4 * MiB, 13);
  await echoCase(t, '9.1.3: text message of 1 MiB → echoed', text(t1), [[TEXT, t1]], big);
  await echoCase(t, '9.1.4: text message of 4 MiB → echoed', text(t4), [[TEXT, t4]], big);
  await echoCase(t, '9.2.3: binary message of 1 MiB → echoed', binary(b1), [[BINARY, b1]], big);
  await echoCase(t, '9.2.4: binary message of 4 MiB → echoed', binary(b4), [[BINARY, b4]], big);
  const b16 = randomBytes(16 * MiB, 17);
  await echoCase(t, '9.2.6: binary message of 16 MiB → echoed', binary(b16), [[BINARY, b16]], { timeout: 40_000 });

  await echoCase(t, '9.3.1: text of 4 MiB in 65,536 fragments of 64 bytes → echoed whole', fragments(TEXT, t4, 64), [[TEXT, t4]], big);
  await echoCase(t, '9.3.2: text of 4 MiB in fragments of 256 bytes → echoed whole', fragments(TEXT, t4, 256), [[TEXT, t4]], big);
  await echoCase(t, '9.3.5: text of 4 MiB in fragments of 16 KiB → echoed whole', fragments(TEXT, t4, 16 * KiB), [[TEXT, t4]], big);
  await echoCase(t, '9.4.1: binary of 4 MiB in 65,536 fragments of 64 bytes → echoed whole', fragments(BINARY, b4, 64), [[BINARY, b4]], big);
  await echoCase(t, '9.4.2: binary of 4 MiB in fragments of 256 bytes → echoed whole', fragments(BINARY, b4, 256), [[BINARY, b4]], big);

  await echoCase(t, '9.5.1: text of 1 MiB in TCP chops of 64 bytes → echoed', text(t1), [[TEXT, t1]], { ...big, chop: 64 });
  await echoCase(t, '9.6.1: binary of 1 MiB in TCP chops of 64 bytes → echoed', binary(b1), [[BINARY, b1]], { ...big, chop: 64 });

  const roundTrips = (name: string, opcode: number, payload: Buffer): Promise<unknown> =>
    kase(
      t,
      name,
      async (s) => {
        let wrong = 0;
        for (let i = 0; i < 1000; i++) {
          s.write(frame({ opcode, payload }));
          const m = await s.next(3000);
          if (m.opcode !== opcode || !m.payload.equals(payload)) wrong++;
        }
        s.t.equal(wrong, 0, '1000 echoes, each as sent');
        await s.closeNormally();
      },
      big,
    );
  await roundTrips('9.7.4: 1000 text messages of 256 bytes, one at a time → all echoed', TEXT, utf8Text(256));
  await roundTrips('9.8.4: 1000 binary messages of 256 bytes, one at a time → all echoed', BINARY, randomBytes(256, 19));
});

// ───────────────────────────── 10 Misc ─────────────────────────────

t.test('10 Misc', async (t) => {
  const m = utf8Text(65536);
  await echoCase(t, '10.1.1: text of 64 KiB auto-fragmented into 1300-byte frames → echoed whole', fragments(TEXT, m, 1300), [[TEXT, m]]);
  // Fragments of varied sizes, crossing every length encoding (7-bit, 16-bit, 64-bit) and splitting characters.
  const sizes = [1, 7, 125, 126, 127, 128, 1300, 65535, 65536, 70000, 3];
  const total = sizes.reduce((a, b) => a + b, 0);
  const v = utf8Text(total);
  const parts: Buffer[] = [];
  let at = 0;
  for (const [i, n] of sizes.entries()) {
    parts.push(frame({ opcode: i === 0 ? TEXT : OP.CONT, payload: v.subarray(at, at + n), fin: i === sizes.length - 1 }));
    at += n;
  }
  await echoCase(t, `10.1.x: text of ${total} bytes in ${sizes.length} fragments of varied sizes → echoed whole`, cat(...parts), [[TEXT, v]]);
  const bv = randomBytes(total, 23);
  const bparts: Buffer[] = [];
  at = 0;
  for (const [i, n] of sizes.entries()) {
    bparts.push(frame({ opcode: i === 0 ? BINARY : OP.CONT, payload: bv.subarray(at, at + n), fin: i === sizes.length - 1 }));
    at += n;
    if (i === 4) bparts.push(ping('between fragments'));
  }
  await echoCase(t, '10.1.x: binary in fragments of varied sizes, a ping among them → pong, then echo', cat(...bparts), [
    [PONG, 'between fragments'],
    [BINARY, bv],
  ]);
});

// ───────────────────────────── 12/13 permessage-deflate ─────────────────────────────

interface Outgoing {
  opcode: number;
  data: Buffer;
}

/** What the compression cases send: text and binary, 0 B to 64 KiB, with content repeated across messages. */
function compressionMessages(): Outgoing[] {
  const out: Outgoing[] = [{ opcode: TEXT, data: Buffer.alloc(0) }];
  let seed = 1;
  for (const size of [16, 64, 256, 1024, 4096, 16384, 65536]) {
    for (let k = 0; k < 3; k++) {
      // Every other message repeats the previous one: only context takeover can refer back to it.
      const data = k === 1 ? out[out.length - 1].data : prose(size, seed++);
      out.push({ opcode: k === 2 ? BINARY : TEXT, data });
    }
  }
  return out;
}

async function compressionCase(s: Session, offer: string): Promise<void> {
  const t = s.t;
  const response = header(s.response, 'sec-websocket-extensions');
  const problems: string[] = [];
  let agreed: Agreed | null = null;
  for (const o of parseExtensionHeader(offer)) {
    const r = checkResponse(o.params, response);
    if (!Array.isArray(r)) {
      agreed = r;
      break;
    }
    problems.push(...r);
  }
  t.ok(agreed, `101 accepts the offer with a valid Sec-WebSocket-Extensions: ${JSON.stringify(response)}`, { problems });
  if (agreed === null) return;
  const compressor = new Compressor(agreed.clientMaxWindowBits, agreed.clientNoContextTakeover);
  const decompressor = new Decompressor(Math.max(9, agreed.serverMaxWindowBits), agreed.serverNoContextTakeover);
  t.teardown(() => {
    compressor.close();
    decompressor.close();
  });
  const messages = compressionMessages();
  const wire: Buffer[] = [];
  for (const [i, m] of messages.entries()) {
    const payload = await compressor.compress(m.data);
    if (i % 4 === 3 && payload.length >= 3) {
      // 12.x auto-fragmentation: RSV1 on the first frame only.
      const a = Math.floor(payload.length / 3);
      const b = Math.floor((2 * payload.length) / 3);
      wire.push(
        frame({ opcode: m.opcode, payload: payload.subarray(0, a), fin: false, rsv1: true }),
        frame({ opcode: OP.CONT, payload: payload.subarray(a, b), fin: false }),
        frame({ opcode: OP.CONT, payload: payload.subarray(b) }),
      );
    } else {
      wire.push(frame({ opcode: m.opcode, payload, rsv1: true }));
    }
  }
  s.write(Buffer.concat(wire));
  const failures: string[] = [];
  let compressed = 0;
  for (const [i, m] of messages.entries()) {
    let got;
    try {
      got = await s.next(10_000);
    } catch (e) {
      failures.push(`#${i + 1}: ${(e as Error).message}`);
      break;
    }
    let data = got.payload;
    if (got.compressed) {
      compressed++;
      try {
        data = await decompressor.decompress(got.payload);
      } catch (e) {
        failures.push(`#${i + 1} (${m.data.length} bytes): echo does not inflate with the negotiated parameters: ${(e as Error).message}`);
        continue;
      }
    }
    if (got.opcode !== m.opcode || !data.equals(m.data)) failures.push(`#${i + 1} (${m.data.length} bytes): echo differs (opcode ${got.opcode}, ${data.length} bytes)`);
  }
  t.same(failures, [], `${messages.length} compressed messages echoed (${compressed} echoes compressed)`);
  if (agreed.serverMaxWindowBits >= 9) t.ok(compressed > 0, 'the server compresses its large echoes');
  await s.closeNormally();
}

t.test('12/13 permessage-deflate', async (t) => {
  const offers: Array<[string, string]> = [
    ['12.x / 13.1: default offer', 'permessage-deflate'],
    ['13.x: client_no_context_takeover', 'permessage-deflate; client_no_context_takeover'],
    ['13.x: server_max_window_bits=9', 'permessage-deflate; server_max_window_bits=9'],
    ['13.x: server_max_window_bits=15', 'permessage-deflate; server_max_window_bits=15'],
    ['13.x: client_max_window_bits=9', 'permessage-deflate; client_max_window_bits=9'],
    ['13.x: client_max_window_bits=15', 'permessage-deflate; client_max_window_bits=15'],
    ['13.x: client_max_window_bits without a value', 'permessage-deflate; client_max_window_bits'],
    ['13.x: server_no_context_takeover', 'permessage-deflate; server_no_context_takeover'],
    ['13.x: server_max_window_bits=9 + server_no_context_takeover', 'permessage-deflate; server_max_window_bits=9; server_no_context_takeover'],
    ['13.x: every parameter, 9-bit windows', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9'],
    ['13.x: several offers, the first acceptable one wins', 'permessage-deflate; server_max_window_bits=9; client_no_context_takeover, permessage-deflate'],
  ];
  for (const [label, offer] of offers) {
    await kase(t, `${label}: "${offer}" → valid answer, messages round-trip`, (s) => compressionCase(s, offer), { extensions: offer, timeout: 20_000 });
  }
});

// ───────────────────────────── our client against a raw fuzzingserver ─────────────────────────────

t.test('client: testee-client.ts against a raw fuzzingserver', { timeout: 45_000 }, async (t) => {
  const expectEcho = async (peer: Parameters<FuzzCase['run']>[0], opcode: number, payload: Buffer): Promise<void> => {
    const m = await readMessage(peer);
    if (m.opcode !== opcode || !m.payload.equals(payload)) throw new Error(`expected ${opcode}/${payload.length} bytes, got ${m.opcode}/${m.payload.length} bytes`);
  };
  const hello = Buffer.from('Hello, wsengine — κόσμε');
  const blob = randomBytes(65536, 29);
  const pingPayload = Buffer.from([0x00, 0xff, 0xfe, 0x01, 0x80]);
  const deflated = [prose(2000, 101), prose(2000, 101), prose(16, 102), prose(5000, 103)];
  const cases: FuzzCase[] = [
    {
      name: '1.1.x: text message → echoed (masked)',
      run: async (p) => {
        p.send({ opcode: TEXT, payload: hello });
        await expectEcho(p, TEXT, hello);
        await closingHandshake(p);
      },
    },
    {
      name: '1.2.8: binary of 64 KiB → echoed (masked)',
      run: async (p) => {
        p.send({ opcode: BINARY, payload: blob });
        await expectEcho(p, BINARY, blob);
        await closingHandshake(p);
      },
    },
    {
      name: '5.6: text in 2 fragments with a ping between → pong, then the whole message',
      run: async (p) => {
        p.send({ opcode: TEXT, payload: 'fragment1', fin: false });
        p.send({ opcode: OP.PING, payload: 'pongme!' });
        p.send({ opcode: OP.CONT, payload: 'fragment2' });
        await expectEcho(p, PONG, Buffer.from('pongme!'));
        await expectEcho(p, TEXT, Buffer.from('fragment1fragment2'));
        await closingHandshake(p);
      },
    },
    {
      name: '2.3: ping with binary payload → pong with it',
      run: async (p) => {
        p.send({ opcode: OP.PING, payload: pingPayload });
        await expectEcho(p, PONG, pingPayload);
        await closingHandshake(p);
      },
    },
    {
      name: '6.3.1: invalid UTF-8 text → the client fails the connection with 1007',
      run: async (p) => {
        p.send({ opcode: TEXT, payload: Buffer.from('cebae1bdb9cf83cebcceb5eda080656469746564', 'hex') });
        const m = await readMessage(p);
        if (m.opcode !== OP.CLOSE) throw new Error(`expected a close, got opcode ${m.opcode}`);
        const code = m.payload.length >= 2 ? m.payload.readUInt16BE(0) : 1005;
        if (code !== 1007) throw new Error(`expected close 1007, got ${code}`);
      },
    },
    {
      name: '7.1.1: text, then close 1000 → echo, then close 1000 echoed',
      run: async (p) => {
        p.send({ opcode: TEXT, payload: 'Hello World!' });
        await expectEcho(p, TEXT, Buffer.from('Hello World!'));
        await closingHandshake(p);
        if (!(await p.quietFor(100))) {
          if (p.unread > 0) throw new Error('client sent a frame after its close');
        }
      },
    },
    {
      name: '12.x: permessage-deflate accepted, compressed messages with context takeover → echoes inflate back',
      deflate: true,
      run: async (p) => {
        const compressor = new Compressor(15, false);
        const decompressor = new Decompressor(15, false);
        try {
          for (const data of deflated) p.send({ opcode: TEXT, payload: await compressor.compress(data), rsv1: true });
          let compressed = 0;
          for (const data of deflated) {
            const m = await readMessage(p);
            const out = m.compressed ? await decompressor.decompress(m.payload) : m.payload;
            if (m.compressed) compressed++;
            if (m.opcode !== TEXT || !out.equals(data)) throw new Error(`echo of ${data.length} bytes differs (${out.length} bytes back)`);
          }
          if (compressed === 0) throw new Error('the client compressed none of its echoes');
          await closingHandshake(p);
        } finally {
          compressor.close();
          decompressor.close();
        }
      },
    },
  ];
  const fuzz = new FuzzingServer(cases);
  const port = await fuzz.listen();
  t.teardown(() => fuzz.close());
  const client = startTesteeClient(`ws://127.0.0.1:${port}`);
  t.teardown(() => client.kill());
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([client.exited, new Promise<string>((resolve) => (timer = setTimeout(() => resolve('timed out after 30 s'), 30_000)))]);
  clearTimeout(timer);
  t.equal(exit, 0, 'testee client exited with 0', { output: client.output() });
  t.same(
    fuzz.requests.map((r) => r.target),
    ['/getCaseCount', ...cases.map((_, i) => `/runCase?case=${i + 1}&agent=wsengine`), '/updateReports?agent=wsengine'],
    'asked for the count, ran every case in order, then updated the reports',
  );
  t.ok(
    fuzz.requests.every((r) => r.version === '13' && /permessage-deflate/.test(r.extensions ?? '')),
    'every upgrade: version 13, permessage-deflate offered',
  );
  t.ok(fuzz.updated, '/updateReports completed');
  t.same(fuzz.problems, [], 'count and report sessions went cleanly');
  for (const [i, theCase] of cases.entries()) {
    const result = fuzz.results.find((r) => r.case === i + 1);
    t.equal(result?.error, '', `case ${i + 1}: ${theCase.name}`);
  }
  const frames: Frame[] = fuzz.results.flatMap((r) => r.frames);
  t.ok(frames.length >= cases.length, `the client sent ${frames.length} frames`);
  t.same(
    frames.filter((f) => !f.masked).map((f) => f.opcode),
    [],
    'every client frame is masked',
  );
  t.ok(new Set(frames.map((f) => f.key?.toString('hex'))).size > 1, 'masking keys vary from frame to frame');
  t.match(client.output(), new RegExp(`case ${cases.length}/${cases.length}`), 'client reported every case');
});
