import t from 'tap';
import { CloseCode, Opcode, ProtocolError, type ProtocolOptions } from '../lib/core/index.js';
import { closeHex, feedSplit, fixedMask, peerFrame, rawFrame, recorder, type Event, MASK } from './helpers/core.js';

const ROLES = ['server', 'client'] as const;
type Role = (typeof ROLES)[number];

/** What the engine writes when it fails the connection with `code` (reason = the error's message). */
function failureTail(events: Event[]): { error?: [string, number]; closeCode?: number; ended: boolean } {
  const err = events.find((e) => e[0] === 'error') as ['error', string, number] | undefined;
  const write = events.find((e) => e[0] === 'write' && e[1].startsWith('88')) as ['write', string] | undefined;
  let closeCode: number | undefined;
  if (write) {
    const bytes = Buffer.from(write[1], 'hex');
    const masked = (bytes[1] & 0x80) !== 0;
    const payload = bytes.subarray(masked ? 6 : 2);
    if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= bytes[2 + (i & 3)];
    closeCode = payload.readUInt16BE(0);
  }
  return { error: err ? [err[1], err[2]] : undefined, closeCode, ended: events.some((e) => e[0] === 'end') };
}

const violations: Array<{ name: string; frames: (role: Role) => Buffer[]; code: string; close: number; options?: Partial<ProtocolOptions> }> = [
  { name: 'RSV1 without an extension', frames: (r) => [peerFrame(r, { opcode: 1, rsv1: true, payload: 'x' })], code: 'RSV_NOT_NEGOTIATED', close: 1002 },
  { name: 'RSV2', frames: (r) => [peerFrame(r, { opcode: 2, rsv2: true })], code: 'RSV_NOT_NEGOTIATED', close: 1002 },
  { name: 'RSV3, even with an extension', frames: (r) => [peerFrame(r, { opcode: 2, rsv3: true })], code: 'RSV_NOT_NEGOTIATED', close: 1002, options: { rsv1: true } },
  ...[3, 4, 5, 6, 7].map((op) => ({ name: `reserved data opcode ${op}`, frames: (r: Role) => [peerFrame(r, { opcode: op })], code: 'RESERVED_OPCODE', close: 1002 })),
  ...[0xb, 0xc, 0xd, 0xe, 0xf].map((op) => ({ name: `reserved control opcode ${op}`, frames: (r: Role) => [peerFrame(r, { opcode: op })], code: 'RESERVED_OPCODE', close: 1002 })),
  { name: 'fragmented ping', frames: (r) => [peerFrame(r, { opcode: 9, fin: false, payload: 'a' })], code: 'CONTROL_FRAGMENTED', close: 1002 },
  { name: 'fragmented close', frames: (r) => [peerFrame(r, { opcode: 8, fin: false })], code: 'CONTROL_FRAGMENTED', close: 1002 },
  { name: 'ping of 126 bytes', frames: (r) => [peerFrame(r, { opcode: 9, payload: Buffer.alloc(126) })], code: 'CONTROL_TOO_LONG', close: 1002 },
  { name: 'RSV1 on a ping with deflate negotiated', frames: (r) => [peerFrame(r, { opcode: 9, rsv1: true })], code: 'RSV1_ON_CONTROL', close: 1002, options: { rsv1: true } },
  {
    name: 'RSV1 on a continuation with deflate negotiated',
    frames: (r) => [peerFrame(r, { opcode: 2, fin: false, rsv1: true, payload: 'a' }), peerFrame(r, { opcode: 0, rsv1: true, payload: 'b' })],
    code: 'RSV1_ON_CONTINUATION',
    close: 1002,
    options: { rsv1: true },
  },
  { name: 'continuation without a message', frames: (r) => [peerFrame(r, { opcode: 0, payload: 'a' })], code: 'UNEXPECTED_CONTINUATION', close: 1002 },
  {
    name: 'new message inside a fragmented one',
    frames: (r) => [peerFrame(r, { opcode: 1, fin: false, payload: 'a' }), peerFrame(r, { opcode: 1, payload: 'b' })],
    code: 'EXPECTED_CONTINUATION',
    close: 1002,
  },
  { name: '64-bit length with the top bit set', frames: (r) => [peerFrame(r, { opcode: 2, lengthBits: 64, declaredLength: 1n << 63n })], code: 'LENGTH_64BIT_MSB', close: 1002 },
  { name: '64-bit length of 2^53', frames: (r) => [peerFrame(r, { opcode: 2, lengthBits: 64, declaredLength: 1n << 53n })], code: 'FRAME_TOO_BIG', close: 1009 },
  { name: 'frame over maxFrameSize', frames: (r) => [peerFrame(r, { opcode: 2, payload: Buffer.alloc(11) })], code: 'FRAME_TOO_BIG', close: 1009, options: { maxFrameSize: 10 } },
  {
    name: 'fragments over maxMessageSize',
    frames: (r) => [peerFrame(r, { opcode: 2, fin: false, payload: Buffer.alloc(6) }), peerFrame(r, { opcode: 0, payload: Buffer.alloc(6) })],
    code: 'MESSAGE_TOO_BIG',
    close: 1009,
    options: { maxMessageSize: 11, fragmentOverhead: 0 },
  },
  { name: 'non-minimal 16-bit length, strict', frames: (r) => [peerFrame(r, { opcode: 2, lengthBits: 16, payload: 'ab' })], code: 'LENGTH_NOT_MINIMAL', close: 1002, options: { strictLengths: true } },
  { name: 'non-minimal 64-bit length, strict', frames: (r) => [peerFrame(r, { opcode: 2, lengthBits: 64, payload: 'ab' })], code: 'LENGTH_NOT_MINIMAL', close: 1002, options: { strictLengths: true } },
  { name: 'invalid UTF-8 text', frames: (r) => [peerFrame(r, { opcode: 1, payload: Buffer.from('cebae1bdb9cf83cebcceb5eda080656469746564', 'hex') })], code: 'INVALID_UTF8', close: 1007 },
  { name: 'text ending inside a code point', frames: (r) => [peerFrame(r, { opcode: 1, payload: Buffer.from('41e282', 'hex') })], code: 'INVALID_UTF8', close: 1007 },
  { name: 'close with a 1-byte payload', frames: (r) => [peerFrame(r, { opcode: 8, payload: Buffer.from([3]) })], code: 'INVALID_CLOSE_PAYLOAD', close: 1002 },
  ...[0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535].map((c) => ({
    name: `close code ${c}`,
    frames: (r: Role) => [peerFrame(r, { opcode: 8, payload: Buffer.from([c >> 8, c & 0xff]) })],
    code: 'INVALID_CLOSE_CODE',
    close: 1002,
  })),
  { name: 'close reason with invalid UTF-8', frames: (r) => [peerFrame(r, { opcode: 8, payload: Buffer.from('03e8ff', 'hex') })], code: 'INVALID_CLOSE_REASON', close: 1007 },
];

for (const role of ROLES) {
  t.test(`${role}: every violation gets its close code, the close frame is written, the transport told to end`, async (t) => {
    for (const v of violations) {
      const input = Buffer.concat(v.frames(role));
      // Every split into two chunks, and one byte at a time, must fail the same way.
      const runs = [feedSplit({ role, ...v.options }, input, [])];
      runs.push(feedSplit({ role, ...v.options }, input, Array.from({ length: input.length }, (_, i) => i)));
      for (let cut = 1; cut < input.length; cut++) runs.push(feedSplit({ role, ...v.options }, input, [cut]));
      for (const events of runs) {
        const f = failureTail(events);
        if (f.error?.[0] !== v.code || f.error?.[1] !== v.close || f.closeCode !== v.close || !f.ended) {
          t.fail(`${v.name}: ${JSON.stringify(events)}`);
          break;
        }
      }
      t.pass(`${v.name} → ${v.close} (${v.code})`);
    }
  });

  t.test(`${role}: a frame with the wrong mask bit for the role is a 1002 (attack case 6)`, async (t) => {
    const wrong = rawFrame({ opcode: 1, payload: 'hi', mask: role === 'server' ? null : MASK });
    const f = failureTail(feedSplit({ role }, wrong, []));
    t.same(f.error, [role === 'server' ? 'MASK_EXPECTED' : 'MASK_UNEXPECTED', 1002]);
    t.equal(f.closeCode, 1002);
  });
}

t.test('non-minimal length encodings are accepted by default', async (t) => {
  for (const role of ROLES) {
    for (const bits of [16, 64] as const) {
      const events = feedSplit({ role }, peerFrame(role, { opcode: 1, lengthBits: bits, payload: 'ok' }), []);
      t.same(events, [['message', 'ok', false, false]], `${role}, ${bits}-bit length for 2 bytes`);
    }
  }
});

/** Sequences whose events must not depend on how the bytes are cut. */
function sequences(role: Role): Array<[string, Buffer]> {
  const f = (x: Parameters<typeof peerFrame>[1]) => peerFrame(role, x);
  const big = Buffer.alloc(70000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  return [
    ['text, binary, empty', Buffer.concat([f({ opcode: 1, payload: 'héllo wörld' }), f({ opcode: 2, payload: Buffer.from([0, 1, 2, 255]) }), f({ opcode: 1 })])],
    [
      'fragmented text with a ping and a pong inside (attack case 9)',
      Buffer.concat([
        f({ opcode: 1, fin: false, payload: 'κό' }),
        f({ opcode: 9, payload: 'p1' }),
        f({ opcode: 0, fin: false, payload: Buffer.from('cf83ce', 'hex') }),
        f({ opcode: 10, payload: 'p2' }),
        f({ opcode: 0, payload: Buffer.from('bcceb5', 'hex') }),
      ]),
    ],
    ['empty fragments', Buffer.concat([f({ opcode: 2, fin: false }), f({ opcode: 0, fin: false }), f({ opcode: 0, fin: false, payload: 'x' }), f({ opcode: 0 })])],
    ['16-bit and 64-bit lengths', Buffer.concat([f({ opcode: 2, payload: big.subarray(0, 300) }), f({ opcode: 2, payload: big })])],
    ['close with code and reason', Buffer.concat([f({ opcode: 1, payload: 'bye' }), f({ opcode: 8, payload: Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from('done ✓')]) }), f({ opcode: 1, payload: 'ignored' })])],
    ['invalid UTF-8 in the middle fragment', Buffer.concat([f({ opcode: 1, fin: false, payload: 'ok' }), f({ opcode: 0, fin: false, payload: Buffer.from('f490', 'hex') }), f({ opcode: 0, payload: 'z' })])],
  ];
}

for (const role of ROLES) {
  t.test(`${role}: any chunking gives the same events`, async (t) => {
    for (const [name, input] of sequences(role)) {
      const reference = feedSplit({ role, maskSource: fixedMask }, input, []);
      t.ok(reference.length > 0, `${name}: produces events`);
      let differing = 0;
      const small = input.length < 400;
      // Every single cut for small inputs; every pair of cuts for the smallest; 1-byte chunks; random splits.
      const splits: number[][] = [Array.from({ length: input.length }, (_, i) => i)];
      for (let a = 1; a < input.length; a += small ? 1 : 97) splits.push([a]);
      if (input.length < 80) for (let a = 1; a < input.length; a++) for (let b = a + 1; b < input.length; b++) splits.push([a, b]);
      let seed = 12345;
      for (let i = 0; i < 50; i++) {
        const cuts: number[] = [];
        for (let at = 0; at < input.length; ) {
          seed = (seed * 1103515245 + 12345) & 0x7fffffff;
          at += 1 + (seed % 300);
          cuts.push(at);
        }
        splits.push(cuts);
      }
      for (const cuts of splits) {
        const events = feedSplit({ role, maskSource: fixedMask }, input, cuts);
        if (JSON.stringify(events) !== JSON.stringify(reference)) differing++;
      }
      t.equal(differing, 0, `${name}: ${splits.length} chunkings agree`);
    }
  });
}

t.test('a ping inside a fragmented message is answered at once and the message stays intact (attack case 9)', async (t) => {
  const r = recorder({ role: 'server' });
  r.protocol.receive(peerFrame('server', { opcode: 1, fin: false, payload: 'Hel' }));
  r.protocol.receive(peerFrame('server', { opcode: 9, payload: 'are you there' }));
  t.same(r.events, [['write', rawFrame({ opcode: 10, payload: 'are you there' }).toString('hex')], ['ping', Buffer.from('are you there').toString('hex')]]);
  r.protocol.receive(peerFrame('server', { opcode: 0, payload: 'lo' }));
  t.same(r.events.at(-1), ['message', 'Hello', false, false]);
});

t.test('closing handshake: the server replies, echoes the code and closes TCP first', async (t) => {
  const r = recorder({ role: 'server' });
  r.protocol.receive(peerFrame('server', { opcode: 8, payload: Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from('app')]) }));
  t.same(r.events, [['write', closeHex('server', 4000)], ['close', 4000, 'app'], ['end']]);
  t.equal(r.protocol.readyState, 3);
  t.equal(r.protocol.send('late'), false, 'nothing is sent after the close');
});

t.test('closing handshake: an empty close gets an empty close, reported as 1005', async (t) => {
  for (const role of ROLES) {
    const r = recorder({ role, maskSource: fixedMask });
    r.protocol.receive(peerFrame(role, { opcode: 8 }));
    t.same(r.events.slice(0, 2), [['write', closeHex(role)], ['close', 1005, '']]);
    t.equal(r.events.some((e) => e[0] === 'end'), role === 'server', 'only the server closes TCP itself (RFC 6455 §7.1.1)');
  }
});

t.test('closing handshake initiated locally: CLOSING until the peer answers', async (t) => {
  for (const role of ROLES) {
    const r = recorder({ role, maskSource: fixedMask });
    r.protocol.close(1001, 'going');
    t.equal(r.protocol.readyState, 2);
    t.same(r.events, [['write', closeHex(role, 1001, 'going')]]);
    r.protocol.close(1000);
    t.equal(r.written.length, 1, 'a second close() sends nothing');
    r.protocol.receive(peerFrame(role, { opcode: 1, payload: 'in flight' }));
    r.protocol.receive(peerFrame(role, { opcode: 9, payload: 'p' }));
    r.protocol.receive(peerFrame(role, { opcode: 8, payload: Buffer.from([0x03, 0xe9]) }));
    t.same(r.events.slice(1), [
      ['message', 'in flight', false, false],
      ['ping', '70'],
      ['close', 1001, ''],
      ...(role === 'server' ? [['end']] : []),
    ], `${role}: messages in flight delivered, no pong after our close, no second close frame`);
    t.equal(r.protocol.readyState, 3);
  }
});

t.test('data after a close frame, a second close, then EOF: one close event (attack case 11)', async (t) => {
  for (const role of ROLES) {
    const r = recorder({ role, maskSource: fixedMask });
    r.protocol.receive(Buffer.concat([
      peerFrame(role, { opcode: 8, payload: Buffer.from([0x03, 0xe8]) }),
      peerFrame(role, { opcode: 1, payload: 'after' }),
      peerFrame(role, { opcode: 8, payload: Buffer.from([0x03, 0xe8]) }),
    ]));
    t.equal(r.events.filter((e) => e[0] === 'close').length, 1);
    t.equal(r.events.filter((e) => e[0] === 'message').length, 0);
    t.equal(r.protocol.transportClosed(), 1000, 'the peer code is what the transport reports');
  }
  const eof = recorder({ role: 'server' });
  eof.protocol.receive(peerFrame('server', { opcode: 1, fin: false, payload: 'half' }));
  t.equal(eof.protocol.transportClosed(), CloseCode.ABNORMAL, 'EOF without a close frame is 1006');
  t.equal(eof.protocol.bufferedMessageBytes, 0, 'the partial message is released');
});

t.test('limits: a 4 MiB message in 65,536 fragments of 64 bytes is accepted (Autobahn 9.3.1)', async (t) => {
  const r = recorder({ role: 'server', maxMessageSize: 16 * 1024 * 1024 });
  const piece = Buffer.alloc(64, 0x61);
  const frames: Buffer[] = [];
  for (let i = 0; i < 65536; i++) frames.push(rawFrame({ opcode: i === 0 ? 1 : 0, fin: i === 65535, payload: piece, mask: MASK }));
  const all = Buffer.concat(frames);
  for (let at = 0; at < all.length; at += 65536) r.protocol.receive(all.subarray(at, at + 65536));
  t.equal(r.messages.length, 1);
  t.equal(r.messages[0].length, 4 * 1024 * 1024);
  t.ok(r.messages[0].every((b) => b === 0x61));
});

t.test('limits: many small fragments over the limit → 1009 (attack case 2)', async (t) => {
  const r = recorder({ role: 'server', maxMessageSize: 1000, fragmentOverhead: 0 });
  r.protocol.receive(peerFrame('server', { opcode: 2, fin: false, payload: Buffer.alloc(100) }));
  for (let i = 0; i < 20; i++) r.protocol.receive(peerFrame('server', { opcode: 0, fin: false, payload: Buffer.alloc(100) }));
  const f = failureTail(r.events);
  t.same(f.error, ['MESSAGE_TOO_BIG', 1009]);
  t.equal(r.events.filter((e) => e[0] === 'error').length, 1, 'one error, then input ignored');
});

t.test('limits: 100,000 empty and 1-byte fragments cost memory by bytes, then 1009 (attack case 3)', async (t) => {
  const r = recorder({ role: 'server', maxMessageSize: 1024 * 1024 });
  r.protocol.receive(peerFrame('server', { opcode: 2, fin: false }));
  const empty = peerFrame('server', { opcode: 0, fin: false });
  const one = peerFrame('server', { opcode: 0, fin: false, payload: 'x' });
  let failedAt = -1;
  let maxHeld = 0;
  for (let i = 0; i < 100000; i++) {
    r.protocol.receive(Buffer.from(i % 2 ? one : empty));
    maxHeld = Math.max(maxHeld, r.protocol.bufferedMessageBytes);
    if (failedAt < 0 && r.events.some((e) => e[0] === 'error')) failedAt = i;
  }
  t.same(failureTail(r.events).error, ['MESSAGE_TOO_BIG', 1009]);
  // 1 MiB at 16 bytes of overhead per fragment (+1 byte every other one): about 63,550 fragments.
  t.ok(failedAt > 63000 && failedAt < 64000, `closed after ${failedAt} fragments`);
  t.ok(maxHeld <= 32000, `held ${maxHeld} bytes for ~31k one-byte fragments: bytes, not parts`);
});

t.test('limits: a large frame delivered one byte per read holds memory by bytes (attack case 4)', async (t) => {
  const r = recorder({ role: 'server' });
  const payload = Buffer.alloc(200_000, 0x62);
  const frame = peerFrame('server', { opcode: 2, payload });
  const before = process.memoryUsage().arrayBuffers;
  for (let i = 0; i < frame.length - 1; i++) r.protocol.receive(frame.subarray(i, i + 1));
  const held = r.protocol.bufferedMessageBytes;
  const growth = process.memoryUsage().arrayBuffers - before;
  t.equal(held, payload.length - 1, 'held exactly the bytes received');
  t.ok(growth < 2 * payload.length, `array buffer growth ${growth} B for ${payload.length} B of payload`);
  r.protocol.receive(frame.subarray(frame.length - 1));
  t.ok(r.messages[0].equals(payload));
});

t.test('limits: oversize frames are refused on their header, before any payload (attack case 1)', async (t) => {
  for (const declared of [1n << 62n, (1n << 53n) + 1n, 65n * 1024n * 1024n]) {
    const r = recorder({ role: 'server' });
    const head = rawFrame({ opcode: 2, lengthBits: 64, declaredLength: declared, mask: MASK });
    r.protocol.receive(head);
    const f = failureTail(r.events);
    t.equal(f.closeCode, declared >= 1n << 63n ? 1002 : 1009, `declared ${declared}`);
    t.equal(r.protocol.bufferedMessageBytes, 0);
  }
});

t.test('a single-frame message in one read is delivered as a view of that read (zero copy)', async (t) => {
  let seen: Buffer | undefined;
  const chunk = peerFrame('server', { opcode: 2, payload: Buffer.alloc(1000, 3) });
  const p = recorder({ role: 'server' }).protocol;
  (p as unknown as { handler: { onMessage: (d: Buffer) => void } }).handler.onMessage = (d) => (seen = d);
  p.receive(chunk);
  t.equal(seen!.buffer, chunk.buffer, 'same memory');
  t.equal(seen!.byteOffset, chunk.byteOffset + 8, 'right after the 8-byte header');
});

t.test('automatic pongs can be turned off', async (t) => {
  const r = recorder({ role: 'client', autoPong: false });
  r.protocol.receive(peerFrame('client', { opcode: 9, payload: 'x' }));
  t.same(r.events, [['ping', '78']]);
});

t.test('RSV1 with an extension negotiated: delivered as compressed, UTF-8 left to the extension', async (t) => {
  const r = recorder({ role: 'server', rsv1: true });
  r.protocol.receive(peerFrame('server', { opcode: 1, rsv1: true, fin: false, payload: Buffer.from([0xff]) }));
  r.protocol.receive(peerFrame('server', { opcode: 0, payload: Buffer.from([0xfe]) }));
  t.same(r.events, [['message', Buffer.from([0xff, 0xfe]).toString('utf8'), false, true]]);
});

t.test('sending: fragments, interleaved control frames and misuse of the fragment state', async (t) => {
  const r = recorder({ role: 'server' });
  r.protocol.sendFragment('Hel', false);
  r.protocol.ping('x');
  t.throws(() => r.protocol.send('no'), /fragmented message is being sent/);
  r.protocol.sendFragment('lo', true);
  t.throws(() => r.protocol.sendFragment(Buffer.from('a'), false, true, false) && r.protocol.sendFragment('b', true, false, true), /rsv1 may only be set on the first fragment/);
  t.same(r.written.map((b) => b.toString('hex')), ['010348656c', '890178', '80026c6f', '020161']);
  // The peer sees one message.
  const c = recorder({ role: 'client' });
  for (const w of r.written.slice(0, 3)) c.protocol.receive(w);
  t.same(c.events.filter((e) => e[0] === 'message'), [['message', 'Hello', false, false]]);
});

t.test('a failure queues exactly one close frame and stops reading', async (t) => {
  const r = recorder({ role: 'server' });
  r.protocol.close(1000);
  r.protocol.receive(peerFrame('server', { opcode: 5 }));
  t.equal(r.written.length, 1, 'no second close frame after ours');
  t.same(failureTail(r.events).error, ['RESERVED_OPCODE', 1002]);
  r.protocol.receive(peerFrame('server', { opcode: 1, payload: 'ignored' }));
  t.notOk(r.events.some((e) => e[0] === 'message'));
  t.equal(Opcode.TEXT, 1);
});

t.test('pause() holds input at a message boundary and resume() replays it in order', async (t) => {
  const r = recorder({ role: 'server' });
  const frames = ['a', 'b', 'c', 'd', 'e'].map((p) => peerFrame('server', { opcode: 1, payload: p }));
  const delivered: string[] = [];
  const p = r.protocol;
  (p as unknown as { handler: { onMessage: (d: Buffer) => void } }).handler.onMessage = (d) => {
    delivered.push(d.toString());
    if (d.toString() === 'b' || d.toString() === 'd') p.pause();
  };
  p.receive(Buffer.concat(frames.slice(0, 3)));
  t.same(delivered, ['a', 'b'], 'paused after b');
  t.ok(p.isPaused);
  p.receive(Buffer.concat(frames.slice(3)));
  t.same(delivered, ['a', 'b'], 'later input is held');
  p.resume();
  t.same(delivered, ['a', 'b', 'c', 'd'], 'paused again after d, mid-replay');
  p.receive(peerFrame('server', { opcode: 8, payload: Buffer.from([0x03, 0xe8]) }));
  t.notOk(r.events.some((e) => e[0] === 'close'), 'the close frame waits behind e');
  p.resume();
  t.same(delivered, ['a', 'b', 'c', 'd', 'e']);
  t.ok(r.events.some((e) => e[0] === 'close'), 'then the close');
});

t.test('failWith() fails the connection from outside the parser (an extension error)', async (t) => {
  const r = recorder({ role: 'server', rsv1: true });
  r.protocol.receive(peerFrame('server', { opcode: 2, rsv1: true, payload: 'zz' }));
  r.protocol.pause();
  r.protocol.failWith(new ProtocolError('EXTENSION_ERROR', 'bad deflate data', 1007));
  const f = failureTail(r.events);
  t.same(f.error, ['EXTENSION_ERROR', 1007]);
  t.equal(f.closeCode, 1007);
  t.ok(f.ended);
});

t.test('a frame spanning reads with most of it in the first read is unmasked straight into its own buffer', async (t) => {
  for (const role of ROLES) {
    const text = 'ünïcödé '.repeat(1000); // 10 KiB of 2-byte characters
    const bin = Buffer.from(Array.from({ length: 20000 }, (_, i) => (i * 31) & 0xff));
    const input = Buffer.concat([
      peerFrame(role, { opcode: 1, payload: text }),
      peerFrame(role, { opcode: 2, fin: false, payload: bin.subarray(0, 9000) }),
      peerFrame(role, { opcode: 9, payload: 'mid' }),
      peerFrame(role, { opcode: 0, payload: bin.subarray(9000) }),
    ]);
    // Cut inside each large payload, after more than a quarter of it, and at odd offsets for the mask phase.
    for (const cuts of [[7001], [7001, 10003], [4000, 12001, 15002, 21003], [3, 9000, 9001, 19999]]) {
      const events = feedSplit({ role }, input, cuts);
      const messages = events.filter((e) => e[0] === 'message');
      t.equal(messages.length, 2, `${role} ${cuts}: two messages`);
      t.equal(messages[0][1], text, 'the text, intact');
      t.equal(messages[1][1], bin.toString('hex'), 'the fragmented binary, intact');
    }
    // Invalid UTF-8 in the second piece of such a frame fails at that piece, before the frame ends.
    const bad = Buffer.from('a'.repeat(4000) + 'b'.repeat(4000));
    bad[5000] = 0xff;
    const frame = peerFrame(role, { opcode: 1, payload: bad });
    const r = recorder({ role, maskSource: fixedMask });
    r.protocol.receive(Buffer.from(frame.subarray(0, 3000)));
    t.equal(r.events.length, 0, 'the valid first piece is accepted');
    r.protocol.receive(Buffer.from(frame.subarray(3000, 6000)));
    t.same(failureTail(r.events).error, ['INVALID_UTF8', 1007], `${role}: fails at the piece holding the bad byte`);
  }
});

t.test('limits: an unfinished message padded with pongs holds no more than the limit (views count their whole read)', async (t) => {
  const limit = 1024 * 1024;
  const r = recorder({ role: 'server', maxMessageSize: limit });
  // Each read: a 1,100-byte fragment (a quarter of the read, so it would be kept as a view) and 3,300 bytes of pongs.
  const pong = peerFrame('server', { opcode: 10, payload: Buffer.alloc(125) });
  const pongs = Buffer.concat(Array(25).fill(pong));
  let first = true;
  let maxHeld = 0;
  // What stays alive, counted independently of the getter: every distinct memory block the held parts point into.
  const reallyHeld = (): number => {
    // The assembly state (internal): null until a piece of a message is held.
    const p = (r.protocol as unknown as { asm: { parts: Buffer[]; block: Buffer | null } | null }).asm ?? { parts: [], block: null };
    const seen = new Set<ArrayBufferLike>();
    let bytes = 0;
    for (const part of p.block ? [...p.parts, p.block] : p.parts) {
      if (seen.has(part.buffer)) continue;
      seen.add(part.buffer);
      bytes += part.buffer.byteLength;
    }
    return bytes;
  };
  let accepted = 0;
  let cost = 0;
  while (cost + 1100 + 16 + 10 + 16 <= limit) {
    const fragment = peerFrame('server', { opcode: first ? 2 : 0, fin: false, payload: Buffer.alloc(1100, 7) });
    // A read of its own (not a slice of a shared pool), as a socket hands over.
    const read = Buffer.allocUnsafeSlow(fragment.length + pongs.length);
    fragment.copy(read);
    pongs.copy(read, fragment.length);
    r.protocol.receive(read);
    accepted += 1100;
    cost += first ? 1100 : 1116;
    first = false;
    maxHeld = Math.max(maxHeld, reallyHeld(), r.protocol.bufferedMessageBytes);
  }
  t.notOk(r.events.some((e) => e[0] === 'error'), 'no error: every fragment was within the limit');
  t.ok(maxHeld <= limit + 16 * 1024, `held at most ${maxHeld} bytes for ${accepted} accepted (limit ${limit})`);
  // The message still completes intact.
  r.protocol.receive(peerFrame('server', { opcode: 0, payload: Buffer.alloc(10, 7) }));
  t.equal(r.messages.length, 1);
  t.equal(r.messages[0].length, accepted + 10);
  t.ok(r.messages[0].every((b) => b === 7), 'the message is intact');
});
