/**
 * Compressed echo latency, as Autobahn's sections 12 and 13 drive it: 1,000 messages of 16–128 KiB with
 * permessage-deflate, each sent once the echo of the previous one is complete, side by side with ws in one run.
 *
 * Two scenarios, each with the same peer for both engines so only the engine under test differs:
 * - `server`: a ws client (permessage-deflate) talks to our server, then to a ws server;
 * - `client`: our client talks to a ws server, then a ws client does.
 * Engines alternate round by round; the figure is the median round's total time.
 *
 * @module
 */
import WS, { WebSocketServer } from 'ws';
import { connect, createServer } from '../lib/index.js';

export interface DeflateEchoRow {
  scenario: 'server' | 'client';
  engine: 'wsengine' | 'ws';
  messages: number;
  /** Median total time of a round, in milliseconds. */
  ms: number;
  /** Median microseconds per round trip. */
  usPerMessage: number;
}

/** JSON-like text of `size` bytes: compressible like real traffic, different for every message. */
function payloads(count: number): Buffer[] {
  const out: Buffer[] = [];
  let seed = 12345;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < count; i++) {
    const size = 16 * 1024 + Math.floor(rnd() * 112 * 1024);
    let s = '';
    for (let j = 0; s.length < size; j++) s += JSON.stringify({ id: i * 1000 + j, user: `user-${Math.floor(rnd() * 5000)}`, price: Math.floor(rnd() * 1e6) / 100, tags: ['a', 'b', j % 7] }) + '\n';
    out.push(Buffer.from(s.slice(0, size)));
  }
  return out;
}

type Echo = { send(data: Buffer): void; onMessage(cb: (data: Buffer) => void): void; close(): void };

/** Sends each message once the echo of the previous one has arrived; resolves with the total time in ms. */
function pingPong(client: Echo, messages: Buffer[]): Promise<number> {
  return new Promise((resolve, reject) => {
    let i = 0;
    const start = performance.now();
    client.onMessage((data) => {
      if (data.length !== messages[i].length) return reject(new Error(`echo ${i}: ${data.length} bytes, sent ${messages[i].length}`));
      if (++i === messages.length) return resolve(performance.now() - start);
      client.send(messages[i]);
    });
    client.send(messages[0]);
  });
}

function wsClient(url: string): Promise<Echo> {
  return new Promise((resolve, reject) => {
    const ws = new WS(url, { perMessageDeflate: true });
    ws.once('error', reject);
    ws.once('open', () =>
      resolve({ send: (d) => ws.send(d, { binary: false }), onMessage: (cb) => ws.on('message', (d: Buffer) => cb(d)), close: () => ws.close() }),
    );
  });
}

async function oursClient(url: string): Promise<Echo> {
  const c = await connect(url, { perMessageDeflate: true, heartbeat: false });
  return { send: (d) => c.send(d, { binary: false }), onMessage: (cb) => c.on('message', cb), close: () => c.close() };
}

async function oursServer(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer({ heartbeat: false, perMessageDeflate: true }, (conn) => conn.on('message', (d, isBinary) => conn.send(d, { binary: isBinary })));
  const { port } = await server.listen(0, '127.0.0.1');
  return { url: `ws://127.0.0.1:${port}`, close: () => server.close({ timeout: 200 }) };
}

async function wsServer(): Promise<{ url: string; close(): Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: true });
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (s) => s.on('message', (d: Buffer, isBinary: boolean) => s.send(d, { binary: isBinary })));
  return { url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}`, close: () => new Promise((r) => wss.close(() => r())) };
}

async function round(scenario: 'server' | 'client', engine: 'wsengine' | 'ws', messages: Buffer[]): Promise<number> {
  const server = scenario === 'server' ? await (engine === 'ws' ? wsServer() : oursServer()) : await wsServer();
  const client = scenario === 'client' && engine === 'wsengine' ? await oursClient(server.url) : await wsClient(server.url);
  try {
    return await pingPong(client, messages);
  } finally {
    client.close();
    await server.close();
  }
}

export async function runDeflateEcho(options: { quick: boolean; log: (line: string) => void }): Promise<DeflateEchoRow[]> {
  const count = options.quick ? 200 : 1000;
  const rounds = options.quick ? 1 : 3;
  const messages = payloads(count);
  const rows: DeflateEchoRow[] = [];
  // Warm-up: zlib, JIT.
  await round('server', 'wsengine', messages.slice(0, 50));
  await round('server', 'ws', messages.slice(0, 50));
  for (const scenario of ['server', 'client'] as const) {
    const times: Record<'wsengine' | 'ws', number[]> = { wsengine: [], ws: [] };
    for (let r = 0; r < rounds; r++) {
      for (const engine of r % 2 === 0 ? (['wsengine', 'ws'] as const) : (['ws', 'wsengine'] as const)) {
        times[engine].push(await round(scenario, engine, messages));
        options.log(`  ${scenario} ${engine} round ${r + 1}: ${times[engine].at(-1)!.toFixed(0)} ms`);
      }
    }
    for (const engine of ['wsengine', 'ws'] as const) {
      const ms = times[engine].sort((a, b) => a - b)[Math.floor(times[engine].length / 2)];
      rows.push({ scenario, engine, messages: count, ms, usPerMessage: (ms * 1000) / count });
    }
  }
  return rows;
}

export function formatDeflateEcho(rows: DeflateEchoRow[]): string {
  const lines = ['deflate-echo: compressed messages of 16–128 KiB, one at a time (median round)', 'scenario  engine     messages   total ms   µs/msg   ratio (ws / ours)'];
  for (const scenario of ['server', 'client'] as const) {
    const ours = rows.find((r) => r.scenario === scenario && r.engine === 'wsengine')!;
    const ws = rows.find((r) => r.scenario === scenario && r.engine === 'ws')!;
    for (const r of [ours, ws]) {
      lines.push(`${scenario.padEnd(9)} ${r.engine.padEnd(10)} ${String(r.messages).padStart(8)} ${r.ms.toFixed(0).padStart(10)} ${r.usPerMessage.toFixed(0).padStart(8)}   ${r === ours ? (ws.ms / ours.ms).toFixed(2) + '×' : ''}`);
    }
  }
  return lines.join('\n');
}
