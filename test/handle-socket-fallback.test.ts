/**
 * Handle sockets' runtime check (lib/transport/handle-socket.ts): a read result that cannot be right (more bytes than
 * the read buffer holds, as a Node whose internals changed might report) drops that connection (1006), warns once
 * (code WSENGINE_ACCEPT_PATH_FALLBACK), and every later connection is a `net.Socket`, working as before. The switch
 * is process-wide and permanent, so this is a file of its own (tap runs each in its own process).
 */
import t from 'tap';
import { connect } from '../lib/index.js';
import { ACCEPT_PATH_FALLBACK_WARNING, handleAcceptAllowed } from '../lib/transport/handle-socket.js';
import { collectWarnings, echoServer } from './helpers/echo.js';
import { once, until } from './helpers/net.js';

t.test('a read result out of range: that connection closes 1006, one warning, then net.Sockets', async (t) => {
  t.ok(handleAcceptAllowed(), 'handle sockets are in use at first');
  const warnings = collectWarnings(t, ACCEPT_PATH_FALLBACK_WARNING);
  const { server, port, conns } = await echoServer(t);
  const first = await connect(`ws://127.0.0.1:${port}`);
  t.teardown(() => first.terminate());
  await until(() => conns.length === 1);
  t.same(server.stats().acceptPath, { handle: 1, socket: 0 });

  // What Node's read callback would see if its internals reported a read larger than the buffer it was given.
  const binding = (process as unknown as { binding(name: string): { streamBaseState: Int32Array; kReadBytesOrError: number } }).binding('stream_wrap');
  const handle = (conns[0] as unknown as { socket: { _handle: { onread: () => unknown } } }).socket._handle;
  const closed = once<[number]>(conns[0], 'close');
  const errors: Error[] = [];
  conns[0].on('error', (e: Error) => errors.push(e));
  const saved = binding.streamBaseState[binding.kReadBytesOrError];
  binding.streamBaseState[binding.kReadBytesOrError] = 10_000_000;
  try {
    handle.onread.call(handle);
  } finally {
    binding.streamBaseState[binding.kReadBytesOrError] = saved;
  }
  t.equal((await closed)[0], 1006, 'the affected connection is dropped');
  t.match(errors[0]?.message ?? '', /a read of 10000000 bytes/, 'its error says why');
  await new Promise((r) => setImmediate(r));
  t.equal(warnings.length, 1, 'one warning');
  t.match(warnings[0]?.message ?? '', /net\.Socket/);
  t.notOk(handleAcceptAllowed(), 'handle sockets are off for the process');

  const second = await connect(`ws://127.0.0.1:${port}`);
  t.teardown(() => second.terminate());
  await until(() => conns.length === 2);
  t.same(server.stats().acceptPath, { handle: 0, socket: 1 }, 'the next connection is a net.Socket');
  const echo = once<[Buffer]>(second, 'message');
  second.send(Buffer.alloc(100_000, 3));
  t.equal((await echo)[0].length, 100_000, 'and works');
  t.equal(warnings.length, 1, 'still one warning');
});
