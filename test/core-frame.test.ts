import t from 'tap';
import { isUtf8 } from 'node:buffer';
import {
  encodeFrame,
  encodeTextFrame,
  Opcode,
  Protocol,
  SIMD_MIN,
  WORD_LOOP_MIN,
  Utf8Validator,
  isValidUtf8,
  xorMask,
  xorMaskCopy,
  randomMask,
  toBytes,
} from '../lib/core/index.js';
import { fixedMask, recorder } from './helpers/core.js';

const hex = (b: Buffer | [Buffer, Uint8Array]): string => (Array.isArray(b) ? Buffer.concat(b) : b).toString('hex');

// RFC 6455 §5.7, byte for byte.
const RFC = {
  unmaskedHello: '810548656c6c6f',
  maskedHello: '818537fa213d7f9f4d5158',
  fragmentedHello: ['010348656c', '80026c6f'],
  unmaskedPing: '890548656c6c6f',
  maskedPong: '8a8537fa213d7f9f4d5158',
  header256: '827e0100',
  header64k: '827f0000000000010000',
};

t.test('RFC 6455 §5.7 examples serialize byte for byte', async (t) => {
  t.equal(hex(encodeTextFrame('Hello')), RFC.unmaskedHello, 'single-frame unmasked text');
  t.equal(hex(encodeTextFrame('Hello', true, false, fixedMask)), RFC.maskedHello, 'single-frame masked text');
  t.equal(hex(encodeFrame(Opcode.TEXT, Buffer.from('Hello'), true, false, fixedMask)), RFC.maskedHello, 'masked text from bytes');
  t.equal(hex(encodeTextFrame('Hel', false)), RFC.fragmentedHello[0], 'first fragment');
  t.equal(hex(encodeTextFrame('lo', true, false, null, Opcode.CONTINUATION)), RFC.fragmentedHello[1], 'last fragment');
  t.equal(hex(encodeFrame(Opcode.PING, Buffer.from('Hello'))), RFC.unmaskedPing, 'unmasked ping');
  t.equal(hex(encodeFrame(Opcode.PONG, Buffer.from('Hello'), true, false, fixedMask)), RFC.maskedPong, 'masked pong');
  const f256 = encodeFrame(Opcode.BINARY, Buffer.alloc(256, 7));
  t.equal(hex(f256).slice(0, 8), RFC.header256, '256 bytes: 16-bit length');
  const f64k = encodeFrame(Opcode.BINARY, Buffer.alloc(65536, 7));
  t.ok(Array.isArray(f64k), 'a large unmasked payload is not copied: header and payload apart');
  t.equal((f64k as [Buffer, Uint8Array])[0].toString('hex'), RFC.header64k, '64 KiB: 64-bit length');
});

t.test('RFC 6455 §5.7 examples parse in both roles', async (t) => {
  const client = recorder({ role: 'client', maskSource: fixedMask });
  client.protocol.receive(Buffer.from(RFC.unmaskedHello, 'hex'));
  for (const f of RFC.fragmentedHello) client.protocol.receive(Buffer.from(f, 'hex'));
  client.protocol.receive(Buffer.from(RFC.unmaskedPing, 'hex'));
  t.same(client.events, [
    ['message', 'Hello', false, false],
    ['message', 'Hello', false, false],
    ['write', rawHex('8a85', 'Hello', true)],
    ['ping', Buffer.from('Hello').toString('hex')],
  ]);
  const server = recorder({ role: 'server' });
  server.protocol.receive(Buffer.from(RFC.maskedHello, 'hex'));
  server.protocol.receive(Buffer.from(RFC.maskedPong, 'hex'));
  t.same(server.events, [
    ['message', 'Hello', false, false],
    ['pong', Buffer.from('Hello').toString('hex')],
  ]);
});

/** A masked-with-fixedMask frame's hex: header bytes then masked payload. */
function rawHex(head: string, payload: string, masked: boolean): string {
  const p = Buffer.from(payload);
  if (!masked) return head + p.toString('hex');
  const key = [0x37, 0xfa, 0x21, 0x3d];
  return head + Buffer.from(key).toString('hex') + Buffer.from(p.map((x, i) => x ^ key[i & 3])).toString('hex');
}

t.test('client frames are masked with the injected source; the server never masks', async (t) => {
  const client = recorder({ role: 'client', maskSource: fixedMask });
  client.protocol.send('Hello');
  client.protocol.send(Buffer.from('Hello'), false);
  client.protocol.ping('Hello');
  t.same(client.written.map((b) => b.toString('hex')), [RFC.maskedHello, RFC.maskedHello, rawHex('8985', 'Hello', true)]);
  const server = recorder({ role: 'server', maskSource: fixedMask });
  server.protocol.send('Hello');
  t.equal(server.written[0].toString('hex'), RFC.unmaskedHello);
});

t.test('the default mask source draws different keys', async (t) => {
  const keys = new Set<string>();
  const b = Buffer.alloc(4);
  for (let i = 0; i < 5000; i++) {
    randomMask(b, 0);
    keys.add(b.toString('hex'));
  }
  t.ok(keys.size > 4990, `5000 draws gave ${keys.size} distinct keys`);
});

t.test('length encodings: 7, 16 and 64 bits at their boundaries', async (t) => {
  for (const n of [0, 125, 126, 65535, 65536, 70000]) {
    const out = encodeFrame(Opcode.BINARY, Buffer.alloc(n, 1));
    const bytes = Array.isArray(out) ? Buffer.concat(out) : out;
    const expected = n < 126 ? 2 : n < 65536 ? 4 : 10;
    t.equal(bytes.length, n + expected, `${n} bytes: ${expected}-byte header`);
    const r = recorder({ role: 'client' });
    r.protocol.receive(bytes);
    t.equal(r.messages[0].length, n, `${n} bytes round-trip`);
  }
});

t.test('masking: every strategy matches a reference at every size, offset and key phase', async (t) => {
  const sizes = [0, 1, 2, 3, 4, 5, 7, WORD_LOOP_MIN - 1, WORD_LOOP_MIN, WORD_LOOP_MIN + 3, 63, 64, 65, 100, SIMD_MIN - 1, SIMD_MIN, SIMD_MIN + 5, 65536 + 64 + 3, 200_001];
  const key = [0xa1, 0x02, 0xf3, 0x44];
  let checked = 0;
  for (const n of sizes) {
    for (const offset of [0, 1, 2, 3]) {
      const src = Buffer.alloc(n + offset + 3);
      for (let i = 0; i < src.length; i++) src[i] = (i * 31 + 7) & 0xff;
      const expected = Buffer.from(src);
      for (let i = 0; i < n; i++) expected[offset + i] ^= key[i & 3];
      const inPlace = Buffer.from(src);
      xorMask(inPlace, offset, offset + n, key[0], key[1], key[2], key[3]);
      if (!inPlace.equals(expected)) t.fail(`xorMask n=${n} offset=${offset}`);
      const dst = Buffer.alloc(n + 5);
      xorMaskCopy(src.subarray(offset, offset + n), dst, 2, key[0], key[1], key[2], key[3]);
      if (!dst.subarray(2, 2 + n).equals(expected.subarray(offset, offset + n))) t.fail(`xorMaskCopy n=${n} offset=${offset}`);
      t.equal(dst[0] + dst[1] + (dst[n + 2] ?? 0), 0, 'writes nothing outside the target range');
      checked++;
    }
  }
  t.equal(checked, sizes.length * 4);
});

t.test('UTF-8: the incremental validator agrees with isUtf8 under any split', async (t) => {
  const samples = [
    'Hello-µ@ßöäüàá-UTF-8!!',
    'κόσμε',
    '\u{10ffff}\u{1f600}',
    '\ud7ff\ue000\ufffd',
  ].map((s) => Buffer.from(s));
  const invalid = ['cebae1bdb9cf83cebcceb5eda080656469746564', 'f4908080', 'c0af', 'e080af', 'eda080', 'f8888080', 'ffff', 'ce', 'f09f98'].map((h) =>
    Buffer.from(h, 'hex'),
  );
  const v = new Utf8Validator();
  for (const s of [...samples, ...invalid]) {
    const want = isUtf8(s);
    for (let cut1 = 0; cut1 <= s.length; cut1++) {
      for (let cut2 = cut1; cut2 <= s.length; cut2++) {
        v.reset();
        const ok = v.push(s, 0, cut1) && v.push(s, cut1, cut2) && v.push(s, cut2, s.length) && v.end();
        if (ok !== want) t.fail(`${s.toString('hex')} split at ${cut1},${cut2}: got ${ok}`);
      }
    }
    t.equal(isValidUtf8(s), want, `isValidUtf8 ${s.toString('hex')}`);
  }
});

t.test('UTF-8: fails fast at the first byte that no continuation can make valid', async (t) => {
  // Autobahn 6.4.2: F4 90 is already invalid (F4 allows 80..8F next).
  const v = new Utf8Validator();
  t.ok(v.push(Buffer.from('cebae1bdb9cf83cebcceb5f4', 'hex')), 'valid prefix ending in a lead byte');
  t.notOk(v.push(Buffer.from('90', 'hex')), 'the next byte fails at once');
  v.reset();
  t.ok(v.push(Buffer.from('ed', 'hex')));
  t.notOk(v.push(Buffer.from('a0', 'hex')), 'surrogate rejected at its second byte');
  // Exhaustive over short random strings: the first failing push is the one holding the first bad byte.
  let mismatches = 0;
  for (let iter = 0; iter < 20000; iter++) {
    const n = 1 + ((iter * 7) % 9);
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = [0x41, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0xed, 0xf4, 0x90, 0xc0][(iter * 13 + i * 5 + (iter >> 3)) % 14];
    // First index at which the prefix b[0..i] is not a prefix of any valid string.
    let firstBad = -1;
    for (let i = 0; i < n && firstBad < 0; i++) {
      const w = new Utf8Validator();
      if (!w.push(b, 0, i + 1)) firstBad = i;
    }
    const w = new Utf8Validator();
    let failedAt = -1;
    for (let i = 0; i < n; i++) if (!w.push(b, i, i + 1)) { failedAt = i; break; }
    if (failedAt !== firstBad) mismatches++;
    if (firstBad < 0 && w.end() !== isUtf8(b)) mismatches++;
  }
  t.equal(mismatches, 0, 'byte-by-byte and whole-prefix validation agree on where input fails');
});

t.test('application misuse throws TypeError/RangeError at once (attack case 30)', async (t) => {
  const r = recorder({ role: 'client', maskSource: fixedMask });
  const p = r.protocol;
  for (const bad of [42, null, undefined, {}, [1, 2, 3], true, Symbol('x')]) {
    t.throws(() => p.send(bad as never), TypeError, `send(${String(typeof bad)})`);
  }
  const ab = new ArrayBuffer(8);
  structuredClone(ab, { transfer: [ab] });
  t.throws(() => p.send(ab), TypeError, 'detached ArrayBuffer');
  t.throws(() => p.send(new Uint8Array(ab)), TypeError, 'view of a detached ArrayBuffer');
  t.throws(() => p.ping(Buffer.alloc(126)), RangeError, 'ping over 125 bytes');
  t.throws(() => p.close(1005), RangeError, 'reserved close code');
  t.throws(() => p.close(999), RangeError);
  t.throws(() => p.close(5000), RangeError);
  t.throws(() => p.close(1000.5), RangeError);
  t.throws(() => p.close('1000' as never), RangeError);
  t.throws(() => p.close(1000, 'x'.repeat(124)), RangeError, 'reason over 123 bytes');
  t.throws(() => p.close(1000, 5 as never), TypeError);
  t.throws(() => p.close(undefined, 'why'), TypeError);
  t.throws(() => new Protocol({ role: 'peer' as never }, null as never), TypeError);
  t.throws(() => new Protocol({ role: 'server', maxMessageSize: -1 }, null as never), RangeError);
  t.equal(r.written.length, 0, 'nothing reached the wire');
  // Odd views send exactly their own bytes, never the memory around them.
  const backing = Buffer.from('0011223344556677', 'hex');
  p.send(new Uint16Array(backing.buffer, backing.byteOffset + 2, 2));
  p.send(new DataView(backing.buffer, backing.byteOffset + 6, 1));
  const server = recorder({ role: 'server' });
  for (const w of r.written) server.protocol.receive(w);
  t.same(server.events.map((e) => e[1]), ['22334455', '66']);
  t.same(toBytes(new Float64Array([1])).length, 8);
});

t.test('UTF-8: the short JavaScript path agrees with isUtf8 (every 2-byte input, random inputs under 24 bytes)', async (t) => {
  let mismatches = 0;
  const b2 = Buffer.alloc(2);
  for (let x = 0; x < 65536; x++) {
    b2[0] = x >> 8;
    b2[1] = x & 0xff;
    if (isValidUtf8(b2) !== isUtf8(b2)) mismatches++;
  }
  let seed = 99;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) >> 8) & 0xff;
  const alphabet = [0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xa0, 0x9f, 0xed, 0xee, 0xef, 0xf0, 0x90, 0x8f, 0xf4, 0xf5, 0xff];
  for (let iter = 0; iter < 200000; iter++) {
    const n = 1 + (rand() % 23);
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = rand() < 128 ? alphabet[rand() % alphabet.length] : rand();
    if (isValidUtf8(b) !== isUtf8(b)) mismatches++;
  }
  t.equal(mismatches, 0);
});

t.test('short ASCII text takes the fast path and falls back for anything else', async (t) => {
  const server = recorder({ role: 'server' });
  for (const s of ['', 'a', 'x'.repeat(125), 'é', 'aé', 'x'.repeat(124) + '€', '\u0000\u007f']) {
    const frame = encodeTextFrame(s);
    const c = recorder({ role: 'client' });
    c.protocol.receive(frame);
    t.same(c.events, [['message', s, false, false]], JSON.stringify(s).slice(0, 20));
    const masked = encodeTextFrame(s, true, false, fixedMask);
    server.protocol.receive(masked);
  }
  t.equal(server.messages.length, 7);
});
