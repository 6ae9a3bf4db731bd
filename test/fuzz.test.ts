/**
 * The fuzzer as a test: (a) every input of fuzz/corpus replays without violations (the `regression-*` inputs
 * reproduce lib/core bugs the fuzzer once found), (b) a bounded fuzz run with a fixed seed finds none, (c) the
 * checker itself is shown to catch broken protocols. Any violation fails. The handshake parsers' targets
 * (`http-*` corpus inputs) are tested in fuzz-http.test.ts.
 */
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkInput, checkRoundTrip, createRng, fuzzCase, type FuzzOptions, type Harness, runCampaign } from '../fuzz/core.js';
import { peerFrame, recorder } from './helpers/core.js';

const CORPUS = fileURLToPath(new URL('../fuzz/corpus/', import.meta.url));

interface Sidecar {
  target: 'server' | 'client' | 'roundtrip';
  role: 'server' | 'client';
  options: FuzzOptions;
  seed?: number;
  checkSeed?: number;
  description?: string;
}

t.test('(a) every corpus input replays without violations', async (t) => {
  const files = readdirSync(CORPUS).filter((f) => f.endsWith('.bin') && !f.startsWith('http-')).sort();
  t.ok(files.length >= 10, `the corpus has inputs (${files.length})`);
  t.ok(files.filter((f) => f.startsWith('regression-')).length >= 2, 'the regression inputs are in the corpus');
  for (const file of files) {
    const sidecar = JSON.parse(readFileSync(join(CORPUS, file.replace(/\.bin$/, '.json')), 'utf8')) as Sidecar;
    const bytes = readFileSync(join(CORPUS, file));
    t.ok(sidecar.role === 'server' || sidecar.role === 'client', `${file}: sidecar has a role`);
    const violations = checkInput(sidecar.role, sidecar.options ?? {}, bytes, createRng(sidecar.checkSeed ?? sidecar.seed ?? 1));
    if (sidecar.target === 'roundtrip' && sidecar.seed !== undefined) violations.push(...checkRoundTrip(createRng(sidecar.seed)).violations);
    t.same(violations, [], `${file}: no violations`);
  }
});

t.test('(b) a bounded fuzz run finds no violations', async (t) => {
  // A fixed number of seeded iterations, not a time box: the run is the same on an idle and on a loaded machine
  // (a few seconds on an idle one). One iteration in 8 is a round trip.
  const ITERATIONS = 600;
  for (const role of ['server', 'client'] as const) {
    const found: string[] = [];
    const stats = runCampaign({
      iterations: ITERATIONS,
      seed: role === 'server' ? 0x5eed0001 : 0x5eed0002,
      roles: [role],
      roundTripEvery: 8,
      onFinding: (f) => {
        if (found.length < 10) found.push(...f.violations.map((v) => `seed ${f.seed} (${f.target}): ${v}`));
      },
    });
    t.comment(`${role}: ${stats.iterations} iterations in ${stats.elapsedMs} ms (${stats.inputs[role]} inputs, ${stats.roundTrips} round trips, ${(stats.bytes / 1e6).toFixed(1)} MB)`);
    t.equal(stats.iterations, ITERATIONS, `${role}: every iteration ran`);
    t.equal(stats.inputs[role], (ITERATIONS * 7) / 8, `${role}: ${(ITERATIONS * 7) / 8} inputs were checked`);
    t.equal(stats.roundTrips, ITERATIONS / 8, `${role}: ${ITERATIONS / 8} round trips ran`);
    t.same(found, [], `${role}: no violations`);
    t.equal(stats.findings, 0, `${role}: no failing iteration`);
  }
});

t.test('the generators are deterministic', async (t) => {
  for (const role of ['server', 'client'] as const) {
    const a = fuzzCase(role, createRng(1234));
    const b = fuzzCase(role, createRng(1234));
    t.same(a.options, b.options, `${role}: same options for the same seed`);
    t.ok(a.bytes.equals(b.bytes), `${role}: same bytes for the same seed`);
    t.notOk(a.bytes.equals(fuzzCase(role, createRng(1235)).bytes), `${role}: other bytes for another seed`);
  }
  t.same(checkRoundTrip(createRng(7)).wire, checkRoundTrip(createRng(7)).wire, 'round trip: same wire bytes for the same seed');
  const run = () => ({ ...runCampaign({ iterations: 40, seed: 9, roles: ['server', 'client'], roundTripEvery: 4 }), elapsedMs: 0 });
  t.same(run(), run(), 'campaign: same counters for the same seed and iterations');
  t.throws(() => runCampaign({ seed: 9, roles: ['server'] }), RangeError, 'a campaign needs seconds or iterations');
  t.throws(() => runCampaign({ iterations: 1.5, seed: 9, roles: ['server'] }), RangeError, 'iterations must be an integer');
});

t.test('(c) the checker catches broken protocols', async (t) => {
  // A valid stream: fragmented text with a ping inside, then a binary message and a close.
  const stream = Buffer.concat([
    peerFrame('server', { opcode: 1, fin: false, payload: 'Hel' }),
    peerFrame('server', { opcode: 9, payload: 'p' }),
    peerFrame('server', { opcode: 0, payload: 'lo ✓' }),
    peerFrame('server', { opcode: 2, payload: Buffer.alloc(300, 7) }),
    peerFrame('server', { opcode: 8, payload: Buffer.from([0x03, 0xe8]) }),
  ]);
  t.same(checkInput('server', {}, stream, createRng(1)), [], 'the real protocol passes');

  const broken = (name: string, harness: Harness, invariant: string): void => {
    const violations = checkInput('server', { maxMessageSize: 1000 }, stream, createRng(1), harness);
    t.ok(
      violations.some((v) => v.startsWith(invariant)),
      `${name}: caught as ${invariant}`,
      { found: violations.slice(0, 3) },
    );
  };

  // Invariant 2: a parser that assumes a header never straddles reads, dropping reads under 2 bytes.
  broken(
    'drops reads shorter than 2 bytes',
    (options) => {
      const r = recorder(options);
      const receive = r.protocol.receive.bind(r.protocol);
      r.protocol.receive = (chunk) => {
        if (chunk.length >= 2) receive(chunk);
      };
      return r;
    },
    '[2 chunking]',
  );

  // Invariant 2: events that depend on the number of reads (a handler counting them).
  broken(
    'reports a pong per read',
    (options) => {
      const r = recorder(options);
      const receive = r.protocol.receive.bind(r.protocol);
      let reads = 0;
      r.protocol.receive = (chunk) => {
        receive(chunk);
        if (++reads === 3) r.events.push(['pong', '']);
      };
      return r;
    },
    '[2 chunking]',
  );

  // Invariant 1: a protocol that throws on some read.
  broken(
    'throws on a 1-byte read',
    (options) => {
      const r = recorder(options);
      const receive = r.protocol.receive.bind(r.protocol);
      r.protocol.receive = (chunk) => {
        if (chunk.length === 1) throw new RangeError('boom');
        receive(chunk);
      };
      return r;
    },
    '[1 no-throw]',
  );

  // Invariant 3: a protocol that holds more than the limit.
  broken(
    'reports more buffered bytes than the limit',
    (options) => {
      const r = recorder(options);
      Object.defineProperty(r.protocol, 'bufferedMessageBytes', { get: () => (options.maxMessageSize ?? 0) + 1 });
      return r;
    },
    '[3 memory]',
  );

  // Invariant 4: a message delivered after the close event.
  broken(
    'delivers a message after the close',
    (options) => {
      const r = recorder(options);
      const handler = (r.protocol as unknown as { handler: { onClose(code: number, reason: string): void; onMessage(d: Buffer, b: boolean, c: boolean): void } }).handler;
      const onClose = handler.onClose;
      handler.onClose = (code, reason) => {
        onClose.call(handler, code, reason);
        handler.onMessage(Buffer.from('late'), false, false);
      };
      return r;
    },
    '[4 after-close]',
  );
});
