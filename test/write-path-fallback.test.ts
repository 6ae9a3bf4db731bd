/**
 * The direct write path's runtime check (lib/transport/writes.ts): a socket handle whose write answers in a shape
 * the engine does not know (as a future Node's internals might) turns the direct path off for the process, with one
 * warning (code WSENGINE_WRITE_PATH_FALLBACK), and every connection, the affected one included, goes on writing
 * through `socket.write`. Its own file: tap runs it in a process of its own, since the switch is process-wide.
 */
// First: the server's connections are net.Sockets, whose read and write paths this file tests.
import './helpers/accept-socket.js';
import t from 'tap';
import type { Socket } from 'node:net';
import { connect, type WebSocketConnection } from '../lib/index.js';
import { directWritesAllowed, WRITE_PATH_FALLBACK_WARNING } from '../lib/transport/writes.js';
import { collectWarnings, echoServer } from './helpers/echo.js';
import { once, until } from './helpers/net.js';

const socketOf = (c: WebSocketConnection): Socket => (c as unknown as { socket: Socket }).socket;

t.test('an unexpected handle answer: one warning, then socket.write for every connection', async (t) => {
  if (!directWritesAllowed()) {
    t.pass('WSENGINE_WRITE_PATH=stream: the direct path is off, nothing to fall back from');
    return;
  }
  const warnings = collectWarnings(t, WRITE_PATH_FALLBACK_WARNING);
  const { server, port, conns } = await echoServer(t);
  const clients = [await connect(`ws://127.0.0.1:${port}`), await connect(`ws://127.0.0.1:${port}`)];
  t.teardown(() => { for (const c of clients) c.terminate(); });
  await until(() => conns.length === 2);
  // The first echo shows the engine the request class; from then on the server's sockets write directly.
  const first = once(clients[0], 'message');
  clients[0].send('first');
  await first;
  t.same(server.stats().writePath, { direct: 2, stream: 0 });
  // The first server socket's handle now writes, but answers with something that is not an errno.
  const handle = (socketOf(conns[0]) as unknown as { _handle: Record<string, unknown> })._handle;
  const original = Object.getPrototypeOf(handle).writeBuffer as (...args: unknown[]) => unknown;
  // (Once: Node's own public path calls it too, and would throw on such an answer.)
  handle.writeBuffer = function (this: unknown, ...args: unknown[]): unknown {
    delete handle.writeBuffer;
    original.apply(this, args);
    return { unexpected: true };
  };
  const odd = once(clients[0], 'message');
  clients[0].send('odd');
  t.equal(String((await odd)[0]), 'odd', 'the message written by the odd call still arrives');
  await new Promise((r) => setImmediate(r));
  t.equal(warnings.length, 1, 'one warning');
  t.equal(WRITE_PATH_FALLBACK_WARNING, 'WSENGINE_WRITE_PATH_FALLBACK', 'the documented code');
  t.match(warnings[0].message, /socket\.write/);
  t.same(server.stats().writePath, { direct: 0, stream: 2 }, 'every connection reports the stream path');
  // Both connections go on working, through socket.write.
  const writes = [t.capture(socketOf(conns[0]), 'write', socketOf(conns[0]).write), t.capture(socketOf(conns[1]), 'write', socketOf(conns[1]).write)];
  for (let i = 0; i < 2; i++) {
    const got = once(clients[i], 'message');
    clients[i].send(`after ${i}`);
    t.equal(String((await got)[0]), `after ${i}`);
    t.equal(writes[i].args().length, 1, `connection ${i} wrote through socket.write`);
  }
  // A new connection too; and no second warning.
  const late = await connect(`ws://127.0.0.1:${port}`);
  t.teardown(() => late.terminate());
  await until(() => conns.length === 3);
  const got = once(late, 'message');
  late.send('late');
  t.equal(String((await got)[0]), 'late');
  t.same(server.stats().writePath, { direct: 0, stream: 3 });
  t.equal(warnings.length, 1, 'still one warning');
});
