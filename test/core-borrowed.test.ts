/**
 * Protocol.receiveBorrowed: bytes lent for the call only (the direct read path's shared buffer). Whatever the core
 * delivers or keeps must survive the lender overwriting the buffer right after each call: messages whole in one
 * read, messages spread over reads (large and small pieces), fragments, pings, and input held while paused.
 */
import t from 'tap';
import { Protocol, type ProtocolHandler } from '../lib/core/protocol.js';
import { peerFrame } from './helpers/core.js';

function lend(): { protocol: Protocol; delivered: Buffer[]; pings: Buffer[]; feed(bytes: Buffer, cuts: number[]): void } {
  const delivered: Buffer[] = [];
  const pings: Buffer[] = [];
  const handler: ProtocolHandler = {
    onMessage: (data) => void delivered.push(data), // the buffer itself, not a copy: it must stay intact
    onPing: (data) => void pings.push(data),
    onPong: () => undefined,
    onClose: () => undefined,
    onError: (e) => { throw new Error(`unexpected ${e.code}`); },
    onWrite: () => undefined,
    onEnd: () => undefined,
  };
  const protocol = new Protocol({ role: 'server' }, handler);
  const shared = Buffer.alloc(100_000);
  return {
    protocol,
    delivered,
    pings,
    feed(bytes, cuts) {
      let at = 0;
      for (const end of [...cuts, bytes.length]) {
        const n = end - at;
        bytes.copy(shared, 0, at, end);
        protocol.receiveBorrowed(shared.subarray(0, n));
        shared.fill(0xee, 0, n); // the lender reuses its buffer at once
        at = end;
      }
    },
  };
}

const pattern = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

t.test('messages whole in one read, spread over reads, fragmented, and a ping: all intact after the buffer is reused', async (t) => {
  const small = pattern(20, 1);
  const mid = pattern(3000, 2);
  const large = pattern(65_536, 3);
  const part1 = pattern(1500, 4);
  const part2 = pattern(2500, 5);
  const input = Buffer.concat([
    peerFrame('server', { opcode: 2, payload: small }),
    peerFrame('server', { opcode: 9, payload: Buffer.from('ping!') }),
    peerFrame('server', { opcode: 2, payload: mid }),
    peerFrame('server', { opcode: 2, payload: large }),
    peerFrame('server', { opcode: 2, payload: part1, fin: false }),
    peerFrame('server', { opcode: 0, payload: part2 }),
  ]);
  for (const cuts of [[], [10, 2000, 40_000, 60_000, 70_500], [5000, 69_000]]) {
    const r = lend();
    r.feed(input, cuts);
    t.equal(r.delivered.length, 4, `cuts ${cuts.join(',')}: four messages`);
    t.ok(r.delivered[0].equals(small), 'small');
    t.ok(r.delivered[1].equals(mid), 'mid');
    t.ok(r.delivered[2].equals(large), 'large, spread over reads');
    t.ok(r.delivered[3].equals(Buffer.concat([part1, part2])), 'fragmented');
    t.equal(r.pings[0]?.toString(), 'ping!', 'ping payload');
  }
});

t.test('large fragments (views of a read, when owned) are copied when lent', async (t) => {
  const r = lend();
  const f1 = pattern(30_000, 8);
  const f2 = pattern(30_000, 9);
  r.feed(Buffer.concat([peerFrame('server', { opcode: 2, payload: f1, fin: false }), peerFrame('server', { opcode: 0, payload: f2 })]), [30_008]);
  t.equal(r.delivered.length, 1);
  t.ok(r.delivered[0].equals(Buffer.concat([f1, f2])), 'intact');
  // A frame that starts with a small piece, then large pieces: those would be held as views of their reads.
  const big = pattern(90_000, 10);
  const r2 = lend();
  r2.feed(peerFrame('server', { opcode: 2, payload: big }), [114, 30_114, 60_114]);
  t.equal(r2.delivered.length, 1);
  t.ok(r2.delivered[0].equals(big), 'intact after pieces held across reads');
});

t.test('input lent while the core is paused is kept as a copy', async (t) => {
  const r = lend();
  const a = pattern(2000, 6);
  const b = pattern(5000, 7);
  r.protocol.pause();
  r.feed(Buffer.concat([peerFrame('server', { opcode: 2, payload: a }), peerFrame('server', { opcode: 2, payload: b })]), [1000]);
  t.equal(r.delivered.length, 0, 'nothing while paused');
  r.protocol.resume();
  t.equal(r.delivered.length, 2);
  t.ok(r.delivered[0].equals(a) && r.delivered[1].equals(b), 'both intact');
});
