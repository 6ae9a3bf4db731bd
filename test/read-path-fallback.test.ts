/**
 * The direct read path's runtime check (lib/transport/reads.ts): Node must call the read buffer generator after every
 * read. Here one socket's generator slot is emptied, as a Node whose internals changed would leave it uncalled; the
 * next read notices, warns once (code WSENGINE_READ_PATH_FALLBACK), and from then on every socket reads through its
 * stream: the sockets already switched (their reads pushed to their streams) and every new one (never switched).
 * Messages of every size keep arriving intact, and `server.stats()` reports the change.
 *
 * The fallback is for the whole process and permanent, so this is a file of its own (tap runs each in its own
 * process).
 */
// First: the server's connections are net.Sockets, whose read and write paths this file tests.
import './helpers/accept-socket.js';
import t from 'tap';
import type { Socket } from 'node:net';
import { connect, createServer, READ_PATH_FALLBACK_WARNING, type WebSocketConnection } from '../lib/index.js';
import { directReadsAllowed, readsDirectly } from '../lib/transport/reads.js';
import { until } from './helpers/net.js';

const socketOf = (c: WebSocketConnection): Socket => (c as unknown as { socket: Socket }).socket;

function payload(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < b.length; i++) b[i] = (i * 13 + seed) & 0xff;
  return b;
}

/** Sends each payload and resolves with the echoes, in order. */
function echoes(c: WebSocketConnection, payloads: Buffer[]): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error(`${got.length} of ${payloads.length} echoes`)), 20_000);
    const onMessage = (data: unknown): void => {
      got.push(data as Buffer);
      if (got.length === payloads.length) {
        clearTimeout(timer);
        c.off('message', onMessage);
        resolve(got);
      }
    };
    c.on('message', onMessage);
    for (const p of payloads) c.send(p);
  });
}

const SIZES = [1, 20, 700, 5000, 20_000, 200_000, 1_500_000];

t.test('a Node that skips the buffer generator: one warning, then the public path, nothing lost', async (t) => {
  if (!directReadsAllowed()) {
    // Under WSENGINE_READ_PATH=stream nothing is switched, so there is nothing to fall back from: say so, loudly.
    t.fail('this file tests the direct path: run it without WSENGINE_READ_PATH=stream');
    return;
  }
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => { if ((w as { code?: string }).code === READ_PATH_FALLBACK_WARNING) warnings.push(w); };
  process.on('warning', onWarning);
  t.teardown(() => { process.off('warning', onWarning); });

  const server = createServer({ heartbeat: false }, (c) => c.on('message', (data, isBinary) => c.send(data, { binary: isBinary })));
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const url = `ws://127.0.0.1:${port}`;
  const a = await connect(url);
  const b = await connect(url);
  t.teardown(() => { a.terminate(); b.terminate(); });
  await until(() => server.clients.size === 2);
  t.same(server.stats().readPath, { direct: 2, stream: 0 }, 'both connections read directly at first');
  t.ok(readsDirectly(socketOf(a)), 'client sockets too');

  const before = SIZES.map((n, i) => payload(n, i));
  t.ok((await echoes(a, before)).every((e, i) => e.equals(before[i])), 'echoes intact on the direct path');
  t.same(warnings, [], 'no warning while Node behaves');

  // What a changed Node would do: read into a socket's buffer and not ask the generator for the next one.
  const [serverSide] = [...server.clients].filter((c) => c !== undefined);
  const record = socketOf(serverSide) as unknown as Record<symbol, unknown>;
  const generator = Object.getOwnPropertySymbols(record).find((s) => s.description === 'kBufferGen');
  t.ok(generator !== undefined && typeof record[generator] === 'function', 'the socket has the generator slot the check relies on');
  record[generator!] = null;

  const sizes = [...SIZES, ...SIZES];
  const after = sizes.map((n, i) => payload(n, i + 100));
  const [ea, eb] = await Promise.all([echoes(a, after), echoes(b, after)]);
  t.ok(ea.every((e, i) => e.equals(after[i])), 'echoes intact on the connection whose generator stopped');
  t.ok(eb.every((e, i) => e.equals(after[i])), 'echoes intact on the other connection');
  await until(() => warnings.length > 0, 5000, 'the warning');
  t.equal(warnings.length, 1, 'warned once');
  t.match(warnings[0].message, /buffer generator/, 'the warning says what failed');
  t.match(warnings[0].message, new RegExp(`Node ${process.versions.node.replace(/\./g, '\\.')}`), 'and on which Node');
  t.equal(directReadsAllowed(), false, 'no socket is switched any more');
  t.same(server.stats().readPath, { direct: 0, stream: 2 }, 'stats report the public path for the switched connections');
  t.notOk(readsDirectly(socketOf(a)), 'the client socket too');

  // A new connection: never switched, and the public path works for it.
  const c = await connect(url);
  t.teardown(() => c.terminate());
  await until(() => server.clients.size === 3);
  t.equal(server.stats().connections, 3);
  t.same(server.stats().readPath, { direct: 0, stream: 3 }, 'the new connection reads through its stream');
  const more = SIZES.map((n, i) => payload(n, i + 200));
  t.ok((await echoes(c, more)).every((e, i) => e.equals(more[i])), 'echoes intact on a new connection');

  // A paused, fallen-back socket still holds what it reads and gives it all back on resume.
  const got: Buffer[] = [];
  serverSide.off('message', serverSide.listeners('message')[0] as (...args: unknown[]) => void);
  serverSide.on('message', (d) => got.push(d as Buffer));
  serverSide.pause();
  const held = SIZES.map((n, i) => payload(n, i + 300));
  for (const p of held) a.send(p);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(got.length, 0, 'nothing delivered while paused');
  serverSide.resume();
  await until(() => got.length === held.length, 10_000, 'every message after resume');
  t.ok(got.every((g, i) => g.equals(held[i])), 'in order and intact');
  t.equal(warnings.length, 1, 'still one warning');
});
