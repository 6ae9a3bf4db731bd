/**
 * The core in pull mode (no handler): `receiveData` feeds bytes, `nextEvent`/`eventsReceived` drain events,
 * `dataToSend`/`output` drain the bytes to send. Also: what it answers (pong, close reply, a failure's close frame)
 * is written when the event is taken, so a reply to an earlier message goes first; parsing stops after a compressed
 * message; lent bytes are copied; state for messages in pieces exists only while one arrives; option values shared.
 */
import t from 'tap';
import { Protocol, ProtocolEventType, type ProtocolEvent } from '../lib/core/index.js';
import { peerFrame } from './helpers/core.js';

const text = (payload: string, fin = true, opcode = 1): Buffer => peerFrame('server', { opcode, fin, payload });
const closeFrame = (code: number): Buffer => peerFrame('server', { opcode: 8, payload: Buffer.from([code >> 8, code & 0xff]) });
/** The frames in `bytes` as [opcode, payload as text] (a server's frames are unmasked). */
function frames(bytes: Buffer): Array<[number, string]> {
  const list: Array<[number, string]> = [];
  let at = 0;
  while (at < bytes.length) {
    const len = bytes[at + 1] & 0x7f; // small frames only here
    list.push([bytes[at] & 0x0f, bytes.subarray(at + 2, at + 2 + len).toString('latin1')]);
    at += 2 + len;
  }
  return list;
}

t.test('events come out in order, with their data, and the answers are in the output once taken', async (t) => {
  const p = new Protocol({ role: 'server' });
  const input = Buffer.concat([text('one'), peerFrame('server', { opcode: 9, payload: 'p' }), peerFrame('server', { opcode: 2, payload: Buffer.from([1, 2]) }), closeFrame(1000)]);
  t.equal(p.receiveData(input), input.length, 'all bytes processed');
  t.equal(p.outputCount, 0, 'nothing written before the events are taken');
  t.equal(p.nextEvent(), ProtocolEventType.TEXT);
  t.equal(p.eventData.toString(), 'one');
  t.equal(p.nextEvent(), ProtocolEventType.PING);
  t.equal(p.eventData.toString(), 'p');
  t.equal(p.outputCount, 1, 'the pong is written when the ping is taken');
  t.equal(p.nextEvent(), ProtocolEventType.BINARY);
  t.same([...p.eventData], [1, 2]);
  t.equal(p.nextEvent(), ProtocolEventType.CLOSE);
  t.equal(p.closeCode, 1000);
  t.equal(p.nextEvent(), ProtocolEventType.END, 'a server ends TCP after the closing handshake');
  t.equal(p.nextEvent(), 0);
  t.equal(p.nextEvent(), 0, 'and stays drained');
  const out = Buffer.concat(p.dataToSend());
  t.same(frames(out), [
    [0xa, 'p'],
    [0x8, '\u0003\u00e8'],
  ]);
  t.equal(p.outputCount, 0, 'dataToSend takes the output');
  t.equal(p.outputBytes, 0);
  t.same(p.dataToSend(), [], 'nothing left');
});

t.test('eventsReceived: the object form', async (t) => {
  const p = new Protocol({ role: 'server' });
  p.receiveData(Buffer.concat([text('hi'), peerFrame('server', { opcode: 10, payload: 'q' }), closeFrame(4001)]));
  const events = p.eventsReceived();
  t.same(
    events.map((e: ProtocolEvent) => (e.type === 'message' ? [e.type, e.data.toString(), e.isBinary, e.compressed] : e.type === 'pong' ? [e.type, e.data.toString()] : e.type === 'close' ? [e.type, e.code] : [e.type])),
    [['message', 'hi', false, false], ['pong', 'q'], ['close', 4001], ['end']],
  );
  t.same(p.eventsReceived(), [], 'drained');
  t.same(frames(Buffer.concat(p.dataToSend())), [[0x8, '\u000f\u00a1']], 'the close reply echoes the code');
});

t.test("a reply sent while a message is handled goes before the close frame that came after it", async (t) => {
  const p = new Protocol({ role: 'server' });
  p.receiveData(Buffer.concat([text('ask'), closeFrame(1000)]));
  t.equal(p.nextEvent(), ProtocolEventType.TEXT);
  t.ok(p.send('answer'), 'the close frame is not answered yet: sending is allowed');
  t.equal(p.nextEvent(), ProtocolEventType.CLOSE);
  t.notOk(p.send('late'), 'after the close was taken, sending is refused');
  t.same(frames(Buffer.concat(p.dataToSend())), [
    [0x1, 'answer'],
    [0x8, '\u0003\u00e8'],
  ]);
});

t.test('a violation: the reply to the message before it goes first, then the close frame with its code', async (t) => {
  const p = new Protocol({ role: 'server' });
  p.receiveData(Buffer.concat([text('ok'), peerFrame('server', { opcode: 3 })]));
  t.equal(p.nextEvent(), ProtocolEventType.TEXT);
  p.send('echo');
  t.equal(p.nextEvent(), ProtocolEventType.ERROR);
  t.equal(p.eventError?.code, 'RESERVED_OPCODE');
  t.equal(p.eventError?.closeCode, 1002);
  t.equal(p.nextEvent(), ProtocolEventType.END);
  const out = frames(Buffer.concat(p.dataToSend()));
  t.same(out[0], [0x1, 'echo']);
  t.equal(out[1][0], 0x8);
  t.equal((out[1][1].charCodeAt(0) << 8) | out[1][1].charCodeAt(1), 1002);
  t.equal(p.receiveData(text('ignored')), text('ignored').length, 'input after the failure is ignored');
  t.equal(p.nextEvent(), 0);
});

t.test('receiveData stops right after a compressed message; the rest is fed again later', async (t) => {
  const p = new Protocol({ role: 'server', rsv1: true });
  const first = peerFrame('server', { opcode: 2, rsv1: true, payload: 'zz' });
  const input = Buffer.concat([first, text('after'), closeFrame(1000)]);
  const n = p.receiveData(input);
  t.equal(n, first.length, 'stopped after the compressed message');
  t.equal(p.nextEvent(), ProtocolEventType.BINARY_COMPRESSED);
  t.equal(p.eventData.toString(), 'zz');
  t.equal(p.nextEvent(), 0, 'nothing parsed behind it');
  t.equal(p.payloadPending, 0);
  t.equal(p.receiveData(input.subarray(n)), input.length - n);
  t.equal(p.nextEvent(), ProtocolEventType.TEXT);
  t.equal(p.eventData.toString(), 'after');
  t.equal(p.nextEvent(), ProtocolEventType.CLOSE);
});

t.test('lent bytes: what is delivered survives the lender reusing its buffer', async (t) => {
  const p = new Protocol({ role: 'server' });
  const shared = Buffer.alloc(64);
  const frame = text('lent');
  frame.copy(shared);
  p.receiveData(shared.subarray(0, frame.length), true);
  shared.fill(0xee);
  t.equal(p.nextEvent(), ProtocolEventType.TEXT);
  t.equal(p.eventData.toString(), 'lent');
  t.not(p.eventData.buffer, shared.buffer, 'a copy');
});

t.test('output slots: output/outputCount/outputBytes, clearOutput from a slot, pushOutput', async (t) => {
  const p = new Protocol({ role: 'server' });
  p.send('a');
  p.send('bc');
  t.equal(p.outputCount, 2);
  t.equal(p.outputBytes, 3 + 4);
  p.clearOutput(1);
  t.equal(p.outputCount, 1);
  t.equal(p.outputBytes, 3);
  p.pushOutput(Buffer.from([0x81, 0x01, 0x78]));
  t.same(frames(Buffer.concat(p.output.slice(0, p.outputCount) as Buffer[])), [
    [0x1, 'a'],
    [0x1, 'x'],
  ]);
  p.clearOutput();
  t.equal(p.outputCount, 0);
  t.equal(p.outputBytes, 0);
});

t.test('message assembly state exists only while a message arrives in pieces', async (t) => {
  const p = new Protocol({ role: 'server' });
  for (let i = 0; i < 5; i++) p.receiveData(text(`single ${i}`));
  t.notOk(p.assembling, 'single-frame messages never create it');
  t.equal(p.eventsReceived().length, 5);
  p.receiveData(text('frag', false));
  t.ok(p.assembling, 'created with the first piece of a fragmented message');
  t.ok(p.bufferedMessageBytes > 0);
  p.receiveData(text('ment', true, 0));
  t.notOk(p.assembling, 'dropped once the message is delivered');
  t.equal(p.bufferedMessageBytes, 0);
  t.same(p.eventsReceived().map((e) => (e.type === 'message' ? e.data.toString() : e.type)), ['fragment']);
  p.receiveData(text('', false));
  t.notOk(p.assembling, 'an empty fragment holds nothing');
  p.receiveData(text('', true, 0));
  t.same(p.eventsReceived().map((e) => (e.type === 'message' ? e.data.length : e.type)), [0]);
});

t.test('protocols made with the same options share one frozen settings object', async (t) => {
  type Inside = { settings: object };
  const a = new Protocol({ role: 'server', maxMessageSize: 1234 }) as unknown as Inside;
  const b = new Protocol({ role: 'server', maxMessageSize: 1234 }) as unknown as Inside;
  const c = new Protocol({ role: 'server', maxMessageSize: 4321 }) as unknown as Inside;
  t.equal(a.settings, b.settings);
  t.not(a.settings, c.settings);
  t.ok(Object.isFrozen(a.settings));
  const p = new Protocol({ role: 'client', maxMessageSize: 10, strictLengths: true });
  t.equal(p.role, 'client');
  t.equal(p.maxMessageSize, 10);
  t.equal(p.maxFrameSize, 10);
  t.equal(p.strictLengths, true);
  t.equal(typeof p.mask, 'function');
});

t.test('push mode: receive from inside a handler is refused (no re-entry)', async (t) => {
  let inner: unknown = null;
  const p: Protocol = new Protocol(
    { role: 'server' },
    {
      onMessage: () => {
        try {
          p.receive(text('nested'));
        } catch (error) {
          inner = error;
        }
      },
      onPing() {},
      onPong() {},
      onClose() {},
      onError() {},
      onWrite() {},
      onEnd() {},
    },
  );
  p.receive(text('outer'));
  t.match(inner, { message: /from inside a handler/ });
});

t.test('pull mode gives the same events and bytes as push mode, for random input cut at random places', async (t) => {
  // A small deterministic generator (no Math.random: a failure is reproducible).
  let seed = 0x2545f491;
  const random = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const piece = (): Buffer => {
    const k = random(12);
    const size = [0, 1, 5, 125, 126, 300, 2000, 70_000][random(8)];
    if (k < 5) return peerFrame('server', { opcode: 1 + random(2), payload: Buffer.alloc(size, 0x41 + random(20)) });
    if (k < 7) return Buffer.concat([peerFrame('server', { opcode: 2, fin: false, payload: Buffer.alloc(size, 7) }), peerFrame('server', { opcode: 9, payload: 'x' }), peerFrame('server', { opcode: 0, payload: Buffer.alloc(random(50), 8) })]);
    if (k === 7) return peerFrame('server', { opcode: 9, payload: Buffer.alloc(random(126), 3) });
    if (k === 8) return peerFrame('server', { opcode: 10, payload: 'pong' });
    if (k === 9) return peerFrame('server', { opcode: 1, payload: Buffer.from([0xc3, 0x28]) }); // invalid UTF-8: 1007
    if (k === 10) return peerFrame('server', { opcode: 1, fin: false, payload: 'a' }); // then a new message: 1002
    return closeFrame(1000 + random(4));
  };
  for (let round = 0; round < 60; round++) {
    const input = Buffer.concat(Array.from({ length: 1 + random(8) }, piece));
    const cuts: number[] = [];
    for (let at = 0; at < input.length; ) {
      at += 1 + random(random(2) === 0 ? 20 : 5000);
      cuts.push(Math.min(at, input.length));
    }
    // Push mode: events and writes as the handler sees them.
    const pushed: string[] = [];
    const push = new Protocol(
      { role: 'server' },
      {
        onMessage: (d, b) => void pushed.push(`m${b ? 'b' : 't'}:${d.toString('hex')}`),
        onPing: (d) => void pushed.push(`ping:${d.toString('hex')}`),
        onPong: (d) => void pushed.push(`pong:${d.toString('hex')}`),
        onClose: (c) => void pushed.push(`close:${c}`),
        onError: (e) => void pushed.push(`error:${e.closeCode}`),
        onWrite: (w) => void pushed.push(`write:${Buffer.concat(Array.isArray(w) ? w : [w]).toString('hex')}`),
        onEnd: () => void pushed.push('end'),
      },
    );
    // Pull mode: events drained after each read, then the output.
    const pulled: string[] = [];
    const pull = new Protocol({ role: 'server' });
    let at = 0;
    for (const cut of cuts) {
      const lent = random(2) === 0;
      const chunk = Buffer.from(input.subarray(at, cut));
      push.receive(Buffer.from(chunk));
      t.equal(pull.receiveData(chunk, lent), chunk.length);
      if (lent) chunk.fill(0xee);
      for (let type = pull.nextEvent(); type !== 0; type = pull.nextEvent()) {
        const d = pull.eventData.toString('hex');
        if (type === ProtocolEventType.TEXT || type === ProtocolEventType.BINARY) pulled.push(`m${type === ProtocolEventType.BINARY ? 'b' : 't'}:${d}`);
        else if (type === ProtocolEventType.PING) pulled.push(`ping:${d}`);
        else if (type === ProtocolEventType.PONG) pulled.push(`pong:${d}`);
        else if (type === ProtocolEventType.CLOSE) pulled.push(`close:${pull.closeCode}`);
        else if (type === ProtocolEventType.ERROR) pulled.push(`error:${pull.eventError!.closeCode}`);
        else if (type === ProtocolEventType.END) pulled.push('end');
        // What the answer wrote (push mode writes it just before the event).
        const out = pull.dataToSend();
        if (out.length > 0) pulled.splice(pulled.length - 1, 0, `write:${Buffer.concat(out).toString('hex')}`);
      }
      at = cut;
    }
    t.same(pulled, pushed, `round ${round}: ${input.length} bytes in ${cuts.length} reads`);
  }
});

t.test('readyState follows the events as they are taken: a message parsed before a close or a violation is taken while OPEN', async (t) => {
  const p = new Protocol({ role: 'server' });
  const input = Buffer.concat([text('one'), closeFrame(1000)]);
  t.equal(p.receiveData(input), input.length);
  t.equal(p.readyState, 1, 'OPEN after parsing: the close frame is not taken yet');
  t.equal(p.nextEvent(), ProtocolEventType.TEXT);
  t.equal(p.readyState, 1, 'OPEN while the message before the close is handled (a reply may still go out)');
  p.send('reply');
  t.equal(p.nextEvent(), ProtocolEventType.CLOSE);
  t.equal(p.readyState, 3, 'CLOSED once the close is taken');
  t.same(frames(Buffer.concat(p.dataToSend())).map(([op]) => op), [1, 8], 'the reply, then the close reply');

  const q = new Protocol({ role: 'server' });
  const bad = Buffer.concat([text('two'), peerFrame('server', { opcode: 3, payload: 'x' })]);
  q.receiveData(bad);
  t.equal(q.nextEvent(), ProtocolEventType.TEXT);
  t.equal(q.readyState, 1, 'OPEN while the message before the violation is handled');
  t.equal(q.nextEvent(), ProtocolEventType.ERROR);
  t.equal(q.readyState, 2, 'CLOSING once the violation is taken');
});
