/**
 * The engine under test in `deflate-echo`'s small-message rows, in a child process of its own so that its CPU time
 * (`process.cpuUsage()`) is not mixed with the peer's. Driven over IPC by `bench/deflate-echo.ts`:
 *
 * - `{ cmd: 'server', engine }` → `{ port }`: an echo server (ours or ws) without context takeover, threshold 0;
 * - `{ cmd: 'client', engine, url, payloads }` → `{ ms, cpuUs }`: ping-pong with the server at `url`;
 * - `{ cmd: 'cpu' }` → `{ cpuUs }`: this process's CPU time so far (user + system, µs);
 * - `{ cmd: 'exit' }`.
 *
 * @module
 */
import WS, { WebSocketServer } from 'ws';
import { connect, createServer } from '../lib/index.js';

/** Both sides reset their context after every message; every message is compressed, however small. */
export const NO_CONTEXT = { serverNoContextTakeover: true, clientNoContextTakeover: true, threshold: 0 } as const;

type Engine = 'wsengine' | 'ws';
type Command =
  | { cmd: 'server'; engine: Engine }
  | { cmd: 'client'; engine: Engine; url: string; payloads: string[] }
  | { cmd: 'cpu' }
  | { cmd: 'exit' };

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

async function server(engine: Engine): Promise<number> {
  if (engine === 'wsengine') {
    const s = createServer({ heartbeat: false, perMessageDeflate: NO_CONTEXT }, (conn) => conn.on('message', (d, isBinary) => conn.send(d, { binary: isBinary })));
    return (await s.listen(0, '127.0.0.1')).port;
  }
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: NO_CONTEXT });
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (s) => s.on('message', (d: Buffer, isBinary: boolean) => s.send(d, { binary: isBinary })));
  return (wss.address() as { port: number }).port;
}

/** Sends each message once the previous echo arrived; resolves with the wall time and this process's CPU time. */
async function client(engine: Engine, url: string, texts: string[]): Promise<{ ms: number; cpuUs: number }> {
  const messages = texts.map((s) => Buffer.from(s));
  let send: (d: Buffer) => void;
  let onMessage: (cb: (d: Buffer) => void) => void;
  let close: () => void;
  if (engine === 'wsengine') {
    const c = await connect(url, { perMessageDeflate: NO_CONTEXT, heartbeat: false });
    send = (d) => c.send(d, { binary: false });
    onMessage = (cb) => c.on('message', cb);
    close = () => c.close();
  } else {
    const ws = new WS(url, { perMessageDeflate: NO_CONTEXT });
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    send = (d) => ws.send(d, { binary: false });
    onMessage = (cb) => ws.on('message', (d: Buffer) => cb(d));
    close = () => ws.close();
  }
  const cpu0 = cpuUs();
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    let i = 0;
    onMessage((d) => {
      if (d.length !== messages[i].length) return reject(new Error(`echo ${i}: ${d.length} bytes, sent ${messages[i].length}`));
      if (++i === messages.length) return resolve();
      send(messages[i]);
    });
    send(messages[0]);
  });
  const result = { ms: performance.now() - start, cpuUs: cpuUs() - cpu0 };
  close();
  return result;
}

// Only as a child (the parent imports NO_CONTEXT from this file).
if (process.send !== undefined) {
process.on('message', (m: Command) => {
  const reply = (value: unknown): void => void process.send!(value);
  if (m.cmd === 'server') void server(m.engine).then((port) => reply({ port }));
  else if (m.cmd === 'client') void client(m.engine, m.url, m.payloads).then(reply, (e: Error) => reply({ error: e.message }));
  else if (m.cmd === 'cpu') reply({ cpuUs: cpuUs() });
  else process.exit(0);
});
process.send({ ready: true });
}
