/**
 * Compressed echo latency, as Autobahn's sections 12 and 13 drive it: 1,000 messages of 16–128 KiB with
 * permessage-deflate, each sent once the echo of the previous one is complete, side by side with ws in one run.
 *
 * Two scenarios, each with the same peer for both engines so only the engine under test differs:
 * - `server`: a ws client (permessage-deflate) talks to our server, then to a ws server;
 * - `client`: our client talks to a ws server, then a ws client does.
 * Engines alternate round by round; the figure is the median round's total time.
 *
 * A second part, `small`: Autobahn 12.4.1–6 / 13.5.1–6-like traffic without context takeover (both directions,
 * threshold 0): messages of 16, 64, 256, 1,024, 4,096 and 8,192 bytes, 1,000 of each in that order, one at a
 * time. The engine under test runs in a child process (`bench/deflate-echo-peer.ts`) so that its CPU time per
 * message is measured alone; the peer (a ws client, or a ws server) is the same for both engines. Cells are the
 * median round; the ratio is ws's CPU per message over ours (above 1: ours cheaper).
 *
 * @module
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import WS, { WebSocketServer } from 'ws';
import { connect, createServer } from '../lib/index.js';
import { NO_CONTEXT } from './deflate-echo-peer.js';

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

/** One row of the small-message part: the engine under test's CPU and the wall time per round trip. */
export interface SmallEchoRow {
  scenario: 'server' | 'client';
  engine: 'wsengine' | 'ws';
  messages: number;
  /** Median round's wall time per round trip, µs. */
  usPerMessage: number;
  /** Median round's CPU time (user + system) of the engine's process per round trip, µs. */
  cpuUsPerMessage: number;
}

/** Sizes of Autobahn's cases 12.x.1–6 (bytes). */
const SMALL_SIZES = [16, 64, 256, 1024, 4096, 8192];

/** HTML-like text (Autobahn 12.4 uses an HTML file), `perSize` messages of each size, each different. */
function smallPayloads(perSize: number): string[] {
  const out: string[] = [];
  let seed = 777;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const words = ['<div class="item">', '<span>', 'price', '</span>', '<a href="/p/', 'user', '">', '</a>', '</div>\n', 'lorem', 'ipsum', 'dolor'];
  for (const size of SMALL_SIZES) {
    for (let i = 0; i < perSize; i++) {
      let s = '';
      while (s.length < size) s += words[Math.floor(rnd() * words.length)] + (rnd() < 0.3 ? String(Math.floor(rnd() * 10000)) : '');
      out.push(s.slice(0, size));
    }
  }
  return out;
}

const PEER_FILE = fileURLToPath(new URL('./deflate-echo-peer.ts', import.meta.url));

/** A child process running one engine (see `bench/deflate-echo-peer.ts`). */
class Peer {
  private constructor(private readonly child: ChildProcess) {}

  static async start(): Promise<Peer> {
    const child = fork(PEER_FILE, [], { execArgv: ['--import=tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`peer exited with ${code}`)));
    });
    return new Peer(child);
  }

  call<T>(command: object): Promise<T> {
    return new Promise((resolve, reject) => {
      this.child.once('message', (m: T & { error?: string }) => (m.error ? reject(new Error(m.error)) : resolve(m)));
      this.child.send(command);
    });
  }

  stop(): void {
    this.child.send({ cmd: 'exit' });
  }
}

/** A ws client's ping-pong (the peer of the server scenario). */
async function wsPingPong(url: string, texts: string[]): Promise<number> {
  const ws = new WS(url, { perMessageDeflate: NO_CONTEXT });
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  const client: Echo = { send: (d) => ws.send(d, { binary: false }), onMessage: (cb) => ws.on('message', (d: Buffer) => cb(d)), close: () => ws.close() };
  try {
    return await pingPong(client, texts.map((s) => Buffer.from(s)));
  } finally {
    client.close();
  }
}

async function smallRound(scenario: 'server' | 'client', engine: 'wsengine' | 'ws', texts: string[]): Promise<{ ms: number; cpuUs: number }> {
  const peer = await Peer.start();
  try {
    const warm = texts.filter((_, i) => i % 10 === 0);
    if (scenario === 'server') {
      const { port } = await peer.call<{ port: number }>({ cmd: 'server', engine });
      const url = `ws://127.0.0.1:${port}`;
      await wsPingPong(url, warm);
      const before = await peer.call<{ cpuUs: number }>({ cmd: 'cpu' });
      const ms = await wsPingPong(url, texts);
      const after = await peer.call<{ cpuUs: number }>({ cmd: 'cpu' });
      return { ms, cpuUs: after.cpuUs - before.cpuUs };
    }
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: NO_CONTEXT });
    await new Promise((r) => wss.once('listening', r));
    wss.on('connection', (s) => s.on('message', (d: Buffer, isBinary: boolean) => s.send(d, { binary: isBinary })));
    const url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}`;
    try {
      await peer.call({ cmd: 'client', engine, url, payloads: warm });
      return await peer.call<{ ms: number; cpuUs: number }>({ cmd: 'client', engine, url, payloads: texts });
    } finally {
      for (const c of wss.clients) c.terminate();
      await new Promise((r) => wss.close(r));
    }
  } finally {
    peer.stop();
  }
}

/** The small-message rows without context takeover (see the module's comment). */
export async function runSmallNoContext(options: { quick: boolean; log: (line: string) => void }): Promise<SmallEchoRow[]> {
  const texts = smallPayloads(options.quick ? 200 : 1000);
  const rounds = options.quick ? 3 : 5;
  const rows: SmallEchoRow[] = [];
  for (const scenario of ['server', 'client'] as const) {
    const got: Record<'wsengine' | 'ws', Array<{ ms: number; cpuUs: number }>> = { wsengine: [], ws: [] };
    for (let r = 0; r < rounds; r++) {
      for (const engine of r % 2 === 0 ? (['wsengine', 'ws'] as const) : (['ws', 'wsengine'] as const)) {
        const x = await smallRound(scenario, engine, texts);
        got[engine].push(x);
        options.log(`  small ${scenario} ${engine} round ${r + 1}: ${x.ms.toFixed(0)} ms, CPU ${((x.cpuUs) / texts.length).toFixed(1)} µs/msg`);
      }
    }
    for (const engine of ['wsengine', 'ws'] as const) {
      const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      rows.push({
        scenario,
        engine,
        messages: texts.length,
        usPerMessage: (median(got[engine].map((x) => x.ms)) * 1000) / texts.length,
        cpuUsPerMessage: median(got[engine].map((x) => x.cpuUs)) / texts.length,
      });
    }
  }
  return rows;
}

export async function runDeflateEcho(options: { quick: boolean; log: (line: string) => void }): Promise<{ large: DeflateEchoRow[]; small: SmallEchoRow[] }> {
  const small = await runSmallNoContext(options);
  const large = await runLargeEcho(options);
  return { large, small };
}

async function runLargeEcho(options: { quick: boolean; log: (line: string) => void }): Promise<DeflateEchoRow[]> {
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

export function formatDeflateEcho(result: { large: DeflateEchoRow[]; small: SmallEchoRow[] }): string {
  return `${formatLarge(result.large)}\n\n${formatSmall(result.small)}`;
}

export function formatSmall(rows: SmallEchoRow[]): string {
  const lines = [
    'deflate-echo small: no context takeover either way, 16 B–8 KiB (Autobahn 12.4.1–6 / 13.5.1–6-like), one at a time (median round)',
    'scenario  engine     messages   wall µs/msg   CPU µs/msg   CPU ratio (ws / ours)',
  ];
  for (const scenario of ['server', 'client'] as const) {
    const ours = rows.find((r) => r.scenario === scenario && r.engine === 'wsengine')!;
    const ws = rows.find((r) => r.scenario === scenario && r.engine === 'ws')!;
    for (const r of [ours, ws]) {
      lines.push(`${scenario.padEnd(9)} ${r.engine.padEnd(10)} ${String(r.messages).padStart(8)} ${r.usPerMessage.toFixed(1).padStart(13)} ${r.cpuUsPerMessage.toFixed(1).padStart(12)}   ${r === ours ? (ws.cpuUsPerMessage / ours.cpuUsPerMessage).toFixed(2) + '×' : ''}`);
    }
  }
  return lines.join('\n');
}

function formatLarge(rows: DeflateEchoRow[]): string {
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
