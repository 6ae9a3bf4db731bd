/**
 * Writes the seed inputs of `fuzz/corpus/` (`npx tsx fuzz/seeds.ts`): interesting streams, named for what they
 * hold, each a `.bin` with a `.json` sidecar in the format `run.ts` uses for findings, so that the replay test
 * has something to replay from the start. Re-running it rewrites the same files.
 *
 * It also writes the minimal reproductions of lib/core bugs the fuzzer once found (`regression-*`, since fixed), so
 * that the replay test guards against their return, and the seed inputs of the handshake target (`http-*`: request
 * and response heads, and hostile `Sec-WebSocket-Protocol` / `-Extensions` values), each with the outcome
 * expected of it, replayed by test/fuzz-http.test.ts.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { peerFrame, rawFrame, type RawFrame } from '../test/helpers/core.js';
import type { HeadLimits } from '../lib/core/http1.js';
import { checkInput, createRng, type FuzzOptions } from './core.js';
import { checkHead, checkTokens, type HeadKind, type HeadReport } from './http.js';

/** One seed input. */
export interface Seed {
  /** File name without extension. */
  name: string;
  description: string;
  role: 'server' | 'client';
  options: FuzzOptions;
  bytes: Buffer;
  /** Seed of the rng checkInput gets in the replay test (it chooses the chunkings). Default 1. */
  checkSeed?: number;
}

const hex = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');
const closePayload = (code: number, reason = ''): Buffer => Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason)]);

/** The seed inputs. */
export function seeds(): Seed[] {
  const toServer = (f: Omit<RawFrame, 'mask'>): Buffer => peerFrame('server', f);
  const toClient = (f: Omit<RawFrame, 'mask'>): Buffer => peerFrame('client', f);
  const pattern = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff));
  const list: Seed[] = [
    // RFC 6455 §5.7, byte for byte.
    { name: 'seed-rfc6455-5.7-unmasked-text-hello', description: 'RFC 6455 §5.7: a single-frame unmasked text message "Hello"', role: 'client', options: {}, bytes: hex('81 05 48 65 6c 6c 6f') },
    { name: 'seed-rfc6455-5.7-masked-text-hello', description: 'RFC 6455 §5.7: a single-frame masked text message "Hello"', role: 'server', options: {}, bytes: hex('81 85 37 fa 21 3d 7f 9f 4d 51 58') },
    { name: 'seed-rfc6455-5.7-fragmented-unmasked-text', description: 'RFC 6455 §5.7: a fragmented unmasked text message "Hel" + "lo"', role: 'client', options: {}, bytes: hex('01 03 48 65 6c 80 02 6c 6f') },
    { name: 'seed-rfc6455-5.7-unmasked-ping', description: 'RFC 6455 §5.7: an unmasked ping "Hello" (answered with a pong)', role: 'client', options: {}, bytes: hex('89 05 48 65 6c 6c 6f') },
    { name: 'seed-rfc6455-5.7-masked-pong', description: 'RFC 6455 §5.7: a masked pong "Hello" (the reply to the ping)', role: 'server', options: {}, bytes: hex('8a 85 37 fa 21 3d 7f 9f 4d 51 58') },
    { name: 'seed-rfc6455-5.7-256-bytes-binary-16bit-length', description: 'RFC 6455 §5.7: 256 bytes of binary data in a single unmasked frame (16-bit length)', role: 'client', options: {}, bytes: Buffer.concat([hex('82 7e 01 00'), pattern(256)]) },
    { name: 'seed-rfc6455-5.7-64KiB-binary-64bit-length', description: 'RFC 6455 §5.7: 64 KiB of binary data in a single unmasked frame (64-bit length)', role: 'client', options: {}, bytes: Buffer.concat([hex('82 7f 00 00 00 00 00 01 00 00'), pattern(65536)]) },
    // Valid streams that reach deep states.
    {
      name: 'seed-fragmented-text-ping-pong-inside-then-close',
      description: 'Text "κόσμε ✓ 😀" in 5 fragments split inside code points, a ping and a pong between fragments, then close 1000 "bye ✓"',
      role: 'server',
      options: {},
      bytes: (() => {
        const text = Buffer.from('κόσμε ✓ 😀');
        return Buffer.concat([
          toServer({ opcode: 1, fin: false, payload: text.subarray(0, 1) }),
          toServer({ opcode: 9, payload: 'ping inside' }),
          toServer({ opcode: 0, fin: false, payload: text.subarray(1, 7) }),
          toServer({ opcode: 0, fin: false, payload: Buffer.alloc(0) }),
          toServer({ opcode: 10, payload: 'pong inside' }),
          toServer({ opcode: 0, fin: false, payload: text.subarray(7, text.length - 2) }),
          toServer({ opcode: 0, payload: text.subarray(text.length - 2) }),
          toServer({ opcode: 8, payload: closePayload(1000, 'bye ✓') }),
        ]);
      })(),
    },
    {
      name: 'seed-empty-and-1-byte-fragments',
      description: 'Binary message of empty and 1-byte fragments, an empty text message, an empty ping, an empty close (1005)',
      role: 'server',
      options: {},
      bytes: Buffer.concat([
        toServer({ opcode: 2, fin: false }),
        toServer({ opcode: 0, fin: false, payload: Buffer.from([0]) }),
        toServer({ opcode: 0, fin: false }),
        toServer({ opcode: 0, fin: false, payload: Buffer.from([0xff]) }),
        toServer({ opcode: 0 }),
        toServer({ opcode: 1 }),
        toServer({ opcode: 9 }),
        toServer({ opcode: 8 }),
      ]),
    },
    {
      name: 'seed-non-minimal-lengths-accepted',
      description: '16-bit and 64-bit lengths for 2-byte payloads, accepted by default, then close 4999 with a 123-byte reason',
      role: 'client',
      options: {},
      bytes: Buffer.concat([
        toClient({ opcode: 1, lengthBits: 16, payload: 'ok' }),
        toClient({ opcode: 2, lengthBits: 64, payload: 'ok' }),
        toClient({ opcode: 8, payload: closePayload(4999, 'é'.repeat(61) + 'x') }),
      ]),
    },
    // Invalid streams.
    { name: 'seed-non-minimal-length-strict', description: 'A 16-bit length for a 2-byte payload with strictLengths: 1002', role: 'client', options: { strictLengths: true }, bytes: toClient({ opcode: 1, lengthBits: 16, payload: 'ok' }) },
    {
      name: 'seed-invalid-utf8-across-fragments',
      description: 'Text whose invalid sequence (F4 90: above U+10FFFF) starts at the end of one fragment: 1007 as soon as it arrives',
      role: 'server',
      options: {},
      bytes: Buffer.concat([toServer({ opcode: 1, fin: false, payload: Buffer.from('ok\xf4', 'latin1') }), toServer({ opcode: 0, fin: false, payload: hex('90 80 80') }), toServer({ opcode: 0, payload: 'z' })]),
    },
    {
      name: 'seed-fragments-crossing-small-limit',
      description: 'maxMessageSize 64 with fragmentOverhead 16: 30 + (16 + 18) bytes fit exactly, the next fragment header crosses the limit: 1009',
      role: 'server',
      options: { maxMessageSize: 64, fragmentOverhead: 16 },
      bytes: Buffer.concat([toServer({ opcode: 2, fin: false, payload: pattern(30) }), toServer({ opcode: 0, fin: false, payload: pattern(18) }), toServer({ opcode: 0, payload: Buffer.alloc(0) })]),
    },
    {
      name: 'seed-lying-64bit-length-msb',
      description: 'A 64-bit length with the most significant bit set after a valid message: 1002',
      role: 'server',
      options: {},
      bytes: Buffer.concat([toServer({ opcode: 1, payload: 'fine' }), toServer({ opcode: 2, lengthBits: 64, declaredLength: (1n << 63n) + 5n, payload: 'short' })]),
    },
    {
      name: 'seed-close-in-fragmented-message-then-more',
      description: 'A close frame (1001, "going") in the middle of a fragmented message, then frames that must be ignored',
      role: 'client',
      options: {},
      bytes: Buffer.concat([
        toClient({ opcode: 1, fin: false, payload: 'half' }),
        toClient({ opcode: 8, payload: closePayload(1001, 'going') }),
        toClient({ opcode: 0, payload: 'ignored' }),
        toClient({ opcode: 9, payload: 'ignored' }),
      ]),
    },
    {
      name: 'seed-wrong-mask-for-role',
      description: 'A masked frame sent to a client (servers must not mask): 1002',
      role: 'client',
      options: {},
      bytes: rawFrame({ opcode: 1, payload: 'Hello', mask: [0x37, 0xfa, 0x21, 0x3d] }),
    },
    // Reproductions of lib/core bugs the fuzzer found, fixed since: they must keep replaying clean.
    {
      name: 'regression-utf8-reason-chunking',
      description:
        'Regression (fixed in lib/core/protocol.ts): text "A" + E2 82 (ends inside a code point) in one frame. Once caught the ' +
        'close reason depending on chunking: "invalid UTF-8 in a text message" when the payload arrived in one read, "text ' +
        'message ends inside a UTF-8 sequence" when spread over reads. Both paths must now write the same close frame (1007).',
      role: 'client',
      options: {},
      bytes: toClient({ opcode: 1, payload: hex('41 e2 82') }),
    },
    {
      name: 'regression-held-views-one-byte-reads',
      description:
        'Regression (fixed in lib/core/protocol.ts): a 2000-byte binary frame with maxMessageSize 2048, fed 1 byte per exact-size ' +
        'read (check seed 2 picks exact-size buffers). Once caught 2000 held 1-byte Buffer views for 2000 payload bytes (memory per ' +
        'read, not per byte); held views now need >= 1 KiB as well as >= 1/4 of their read, so the bytes must be copied.',
      role: 'server',
      options: { maxMessageSize: 2048 },
      bytes: toServer({ opcode: 2, payload: pattern(2000) }),
      checkSeed: 2,
    },
  ];
  return list;
}

/** One seed input of the handshake target. */
export interface HttpSeed {
  /** File name without extension; starts with `http-`. */
  name: string;
  description: string;
  /** A head (`request`, `response`) for checkHead, or a header value (`tokens`, latin1) for checkTokens. */
  kind: HeadKind | 'tokens';
  limits: HeadLimits;
  bytes: Buffer;
  /** For a head: the outcome of the whole-buffer run, and of the upgrade check when it is a head. */
  expect?: { outcome: HeadReport['outcome']; handshake?: HeadReport['handshake'] };
}

/** The request of RFC 6455 §1.3, line by line (without the final blank line). */
const RFC_REQUEST = [
  'GET /chat HTTP/1.1',
  'Host: server.example.com',
  'Upgrade: websocket',
  'Connection: Upgrade',
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
  'Origin: http://example.com',
  'Sec-WebSocket-Protocol: chat, superchat',
  'Sec-WebSocket-Version: 13',
];

/** Lines as a head: CRLF after each, then the blank line. */
const head = (lines: string[]): Buffer => Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');

/** The seed inputs of the handshake target. */
export function httpSeeds(): HttpSeed[] {
  const rfc = head(RFC_REQUEST);
  const many = head([...RFC_REQUEST, ...Array.from({ length: 93 }, (_, i) => `X-H${i}: ${i}`)]); // 7 + 93 = exactly 100 header lines
  const cookie = `Cookie: ${Array.from({ length: 60 }, (_, i) => `k${i}=${'v'.repeat(20)}`).join('; ')}`;
  return [
    {
      name: 'http-seed-rfc6455-1.3-request',
      description: 'RFC 6455 §1.3: the client handshake (subprotocols chat, superchat; Origin): accepted',
      kind: 'request',
      limits: {},
      bytes: rfc,
      expect: { outcome: 'head', handshake: 'accepted' },
    },
    {
      name: 'http-seed-rfc6455-1.3-response',
      description: 'RFC 6455 §1.3: the server handshake, 101 with Sec-WebSocket-Accept s3pPLMBiTxaQ9kYGzzhZRbK+xOo= and subprotocol chat: accepted',
      kind: 'response',
      limits: {},
      bytes: head(['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=', 'Sec-WebSocket-Protocol: chat']),
      expect: { outcome: 'head', handshake: 'accepted' },
    },
    {
      name: 'http-seed-deflate-offers-then-frame',
      description: 'An upgrade request with three extension offers (quoted and escaped values, a declined offer first) followed by a masked frame sent early: accepted, the frame left as rest',
      kind: 'request',
      limits: {},
      bytes: Buffer.concat([
        head([
          ...RFC_REQUEST.slice(0, 6),
          'Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8; client_max_window_bits="1\\0"; x=1, permessage-deflate ; client_max_window_bits="10" ; server_no_context_takeover, x-webkit-deflate-frame',
          'Sec-WebSocket-Version: 13',
        ]),
        Buffer.from('818537fa213d7f9f4d5158', 'hex'),
      ]),
      expect: { outcome: 'head', handshake: 'accepted' },
    },
    {
      name: 'http-seed-prototype-names',
      description: 'Headers named __proto__, constructor, prototype and hasOwnProperty (twice) in a valid upgrade request: just names, accepted',
      kind: 'request',
      limits: {},
      bytes: head([...RFC_REQUEST, '__proto__: {"polluted":true}', 'constructor: x', 'Prototype: y', 'hasOwnProperty: 1', 'HASOWNPROPERTY: 2']),
      expect: { outcome: 'head', handshake: 'accepted' },
    },
    {
      name: 'http-seed-obs-fold',
      description: 'A header continued on the next line (obsolete line folding): 400',
      kind: 'request',
      limits: {},
      bytes: head([...RFC_REQUEST.slice(0, 3), 'Connection: keep-alive,', ' Upgrade', ...RFC_REQUEST.slice(4)]),
      expect: { outcome: '400' },
    },
    {
      name: 'http-seed-nul-and-bare-cr-in-value',
      description: 'A header value with a NUL and a bare CR in it: 400',
      kind: 'request',
      limits: {},
      bytes: head([...RFC_REQUEST, 'X-Odd: a\x00b\rc']),
      expect: { outcome: '400' },
    },
    {
      name: 'http-seed-head-exactly-at-limit',
      description: `The RFC 6455 request with maxHeadSize equal to its size (${rfc.length} bytes): accepted`,
      kind: 'request',
      limits: { maxHeadSize: rfc.length },
      bytes: rfc,
      expect: { outcome: 'head', handshake: 'accepted' },
    },
    {
      name: 'http-seed-head-one-byte-over-limit',
      description: `The RFC 6455 request with maxHeadSize one byte under its size (${rfc.length - 1}): 431`,
      kind: 'request',
      limits: { maxHeadSize: rfc.length - 1 },
      bytes: rfc,
      expect: { outcome: '431' },
    },
    {
      name: 'http-seed-100-header-lines-limit-99',
      description: 'A request with exactly 100 header lines (the default maximum) and maxHeaders 99: 431',
      kind: 'request',
      limits: { maxHeaders: 99 },
      bytes: many,
      expect: { outcome: '431' },
    },
    {
      name: 'http-seed-bare-lf-line-ends',
      description: 'A request whose lines end in bare LF: never a head (no CR LF CR LF), so still incomplete',
      kind: 'request',
      limits: {},
      bytes: Buffer.from(`${RFC_REQUEST.join('\n')}\n\n`, 'latin1'),
      expect: { outcome: 'incomplete' },
    },
    {
      name: 'http-seed-partial-terminators',
      description: 'CR LF CR, CR CR LF and LF runs inside and between lines before the real end: 400 (bare CR in a header line)',
      kind: 'request',
      limits: {},
      bytes: Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\rX: 1\r\n\n\r\n\r\r\n\r\n', 'latin1'),
      expect: { outcome: '400' },
    },
    {
      name: 'http-held-chunks-one-byte-reads',
      description:
        'A 1.6 KB upgrade request (default limits). Dribbled one byte per exact-size read, HeadParser (lib/core/http1.ts) keeps every ' +
        'read as its own Buffer until the head is complete: ~1.6 K held Buffers for 1.6 KB, memory per read, not per byte ' +
        '(a 16 KiB head, the default limit, holds ~16 K Buffers, ~3.5 MiB of heap per connection). Checks the retained-memory bound.',
      kind: 'request',
      limits: {},
      bytes: head([...RFC_REQUEST, cookie]),
      expect: { outcome: 'head', handshake: 'accepted' },
    },
    {
      name: 'http-seed-hostile-extensions',
      description: 'A Sec-WebSocket-Extensions value with escapes, an empty quoted value, empty elements, __proto__ parameters and an unclosed quote',
      kind: 'tokens',
      limits: {},
      bytes: Buffer.from('permessage-deflate; client_max_window_bits="1\\5"; __proto__=1, , x; constructor; a="", ;, b; c="\\"", d="unclosed', 'latin1'),
    },
    {
      name: 'http-seed-hostile-protocols',
      description: 'A Sec-WebSocket-Protocol value with empty elements, tabs, a duplicate and a quoted name',
      kind: 'tokens',
      limits: {},
      bytes: Buffer.from(' , chat,,\tsuperchat ,  chat, "chat", __proto__', 'latin1'),
    },
  ];
}

/** Writes the seeds into `dir` (warning about any that does not replay clean); returns the .bin paths. */
export function writeSeeds(dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const seed of seeds()) {
    const checkSeed = seed.checkSeed ?? 1;
    const violations = checkInput(seed.role, seed.options, seed.bytes, createRng(checkSeed));
    if (violations.length > 0) console.warn(`${seed.name}: ${violations.join('\n  ')}`);
    const base = join(dir, seed.name);
    writeFileSync(`${base}.bin`, seed.bytes);
    const sidecar = { target: seed.role, role: seed.role, options: seed.options, checkSeed, description: seed.description };
    writeFileSync(`${base}.json`, `${JSON.stringify(sidecar, null, 2)}\n`);
    written.push(`${base}.bin`);
  }
  for (const seed of httpSeeds()) {
    const violations =
      seed.kind === 'tokens' ? checkTokens(seed.bytes.toString('latin1'), createRng(1)) : checkHead(seed.bytes, createRng(1), { kind: seed.kind, limits: seed.limits }).violations;
    if (violations.length > 0) console.warn(`${seed.name}: ${violations.join('\n  ')}`);
    const base = join(dir, seed.name);
    writeFileSync(`${base}.bin`, seed.bytes);
    const sidecar = { target: 'http', kind: seed.kind, limits: seed.limits, checkSeed: 1, description: seed.description, ...(seed.expect ? { expect: seed.expect } : {}) };
    writeFileSync(`${base}.json`, `${JSON.stringify(sidecar, null, 2)}\n`);
    written.push(`${base}.bin`);
  }
  return written;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'corpus');
  for (const file of writeSeeds(dir)) console.log(file);
}
