/**
 * An engine echo server on a spare port (each message sent back as it came), and a collector of one process warning
 * code: what the read, write and accept path tests share.
 */
import type { Test } from 'tap';
import { createServer, type WebSocketConnection, type WebSocketServer } from '../../lib/index.js';

/** Starts an echo server on 127.0.0.1 (closed at the test's end); `conns` fills as connections open. */
export async function echoServer(t: Test): Promise<{ server: WebSocketServer; url: string; port: number; conns: WebSocketConnection[] }> {
  const conns: WebSocketConnection[] = [];
  const server = createServer({ heartbeat: false }, (c) => {
    conns.push(c);
    c.on('message', (data, isBinary) => c.send(data, { binary: isBinary }));
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  return { server, port, url: `ws://127.0.0.1:${port}`, conns };
}

/** The process warnings with `code` emitted from now until the test's end. */
export function collectWarnings(t: Test, code: string): Error[] {
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => {
    if ((w as { code?: string }).code === code) warnings.push(w);
  };
  process.on('warning', onWarning);
  t.teardown(() => {
    process.off('warning', onWarning);
  });
  return warnings;
}
