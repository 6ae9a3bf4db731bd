/**
 * `npm run bench -- h2`: WebSockets over HTTP/2 (RFC 8441) against WebSockets over their own TLS connections
 * (HTTP/1.1 upgrade), on the same server (one HTTPS port, `allowHTTP1`; see `bench/h2/server.ts`):
 *
 * - memory per idle WebSocket: 1,000 WebSockets as streams of one HTTP/2 session vs 1,000 TLS connections; the
 *   server's RSS and JS heap (and external memory) after forced GCs, minus its baseline, per WebSocket;
 * - server CPU per echoed message: 10 WebSockets (one HTTP/2 session, or 10 TLS connections) each keeping 32
 *   messages of 20 bytes in flight; the server's CPU time (user + system) per echo, and the ratio h2 / HTTP/1.1.
 *
 * Both transports use TLS, as browsers do (Chromium speaks HTTP/2 only over TLS). The clients run in this process
 * (this package's `connect`, with `{ http2: true }` for the streams). Passes alternate between the transports
 * (h1, h2, h1, h2, …) and each figure is the median; a fresh server per pass.
 *
 * @module
 */
import { fileURLToPath } from 'node:url';
import { connect, type WebSocketConnection } from '../../lib/index.js';
import { Child } from '../e2e/ipc.js';
import { testCertificate } from '../../test/helpers/tls.js';

const SERVER_FILE = fileURLToPath(new URL('./server.ts', import.meta.url));

type Transport = 'h1' | 'h2';

export interface H2Options {
  quick: boolean;
  log: (line: string) => void;
}

export interface H2Report {
  idle: number;
  echo: { connections: number; inFlight: number; messages: number; size: number };
  passes: number;
  memory: Record<Transport, { rss: number; heap: number; external: number }>;
  cpuPerEcho: Record<Transport, number>;
  wallSeconds: number;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Opens `n` WebSockets, 50 at a time. `tls` is one object for all: the client shares an HTTP/2 session per origin
 * and per `tls` object, so a fresh `{ ca }` per call would open a session each.
 */
async function openMany(url: string, n: number, transport: Transport, tls: { ca: Buffer }): Promise<WebSocketConnection[]> {
  const out: WebSocketConnection[] = [];
  const batch = 50;
  for (let i = 0; i < n; i += batch) {
    const k = Math.min(batch, n - i);
    out.push(...(await Promise.all(Array.from({ length: k }, () => connect(url, { http2: transport === 'h2', tls, heartbeat: false })))));
  }
  return out;
}

async function closeAll(conns: WebSocketConnection[]): Promise<void> {
  await Promise.all(conns.map((c) => new Promise<void>((resolve) => {
    if (c.readyState === 3) return resolve();
    c.once('close', () => resolve());
    c.close(1000);
  })));
}

async function withServer<T>(key: Buffer, cert: Buffer, body: (server: Child, url: string) => Promise<T>): Promise<T> {
  const server = await Child.spawn(SERVER_FILE, { name: 'h2 bench server', nodeFlags: ['--expose-gc'] });
  try {
    const port = await server.call<number>('listen', { key: key.toString(), cert: cert.toString() });
    return await body(server, `wss://localhost:${port}/`);
  } finally {
    await server.exit();
  }
}

/** One memory pass: baseline after a warm-up, then `n` idle WebSockets over `transport`; growth per WebSocket. */
async function memoryPass(transport: Transport, n: number, tls: { key: Buffer; cert: Buffer }): Promise<{ rss: number; heap: number; external: number }> {
  const clientTls = { ca: tls.cert };
  return withServer(tls.key, tls.cert, async (server, url) => {
    // Warm-up: the code paths of both transports, so that what follows measures connections, not compiled code.
    for (const t of ['h1', 'h2'] as const) {
      const warm = await openMany(url, 20, t, clientTls);
      await Promise.all(warm.map((c) => new Promise<void>((resolve) => {
        c.once('message', () => resolve());
        c.send('warm-up');
      })));
      await closeAll(warm);
    }
    await new Promise((r) => setTimeout(r, 200));
    const base = await server.call<{ rss: number; heapUsed: number; external: number }>('memory');
    const conns = await openMany(url, n, transport, clientTls);
    const held = await server.call<Record<string, number>>('sockets');
    const expected = transport === 'h2' ? 'h2' : 'http/1.1';
    if (held[expected] !== n) throw new Error(`the server holds ${JSON.stringify(held)}, expected ${n} ${expected}`);
    const sessions = await server.call<number>('sessions');
    if (transport === 'h2' && sessions !== 1) throw new Error(`${n} WebSockets over ${sessions} HTTP/2 sessions, expected one`);
    const after = await server.call<{ rss: number; heapUsed: number; external: number }>('memory');
    await closeAll(conns);
    return { rss: (after.rss - base.rss) / n, heap: (after.heapUsed - base.heapUsed) / n, external: (after.external - base.external) / n };
  });
}

/** One CPU pass: server CPU time per echoed message over `transport`. */
async function echoPass(transport: Transport, o: H2Report['echo'], tls: { key: Buffer; cert: Buffer }): Promise<number> {
  return withServer(tls.key, tls.cert, async (server, url) => {
    const conns = await openMany(url, o.connections, transport, { ca: tls.cert });
    if (transport === 'h2' && (await server.call<number>('sessions')) !== 1) throw new Error('the echo sockets are not on one HTTP/2 session');
    const payload = Buffer.alloc(o.size, 'x');
    const run = (messages: number): Promise<void> =>
      Promise.all(conns.map((c) => new Promise<void>((resolve) => {
        const quota = Math.floor(messages / conns.length);
        let sent = 0;
        let got = 0;
        const onMessage = (): void => {
          got++;
          if (got === quota) {
            c.off('message', onMessage);
            resolve();
          } else if (sent < quota) {
            sent++;
            c.send(payload, { binary: true });
          }
        };
        c.on('message', onMessage);
        for (; sent < Math.min(o.inFlight, quota); sent++) c.send(payload, { binary: true });
      }))).then(() => undefined);
    await run(Math.min(o.messages, 5000)); // warm-up
    const before = await server.call<number>('cpu');
    await run(o.messages);
    const after = await server.call<number>('cpu');
    await closeAll(conns);
    // µs of CPU → ns per message (the two `cpu` calls add a constant that the message count dwarfs).
    return ((after - before) * 1000) / (Math.floor(o.messages / conns.length) * conns.length);
  });
}

export async function runH2(options: H2Options): Promise<H2Report> {
  const started = performance.now();
  const tls = testCertificate();
  try {
    const idle = 1000;
    const passes = options.quick ? 1 : 3;
    const echo = { connections: 10, inFlight: 32, messages: options.quick ? 20_000 : 60_000, size: 20 };
    const mem: Record<Transport, Array<{ rss: number; heap: number; external: number }>> = { h1: [], h2: [] };
    const cpu: Record<Transport, number[]> = { h1: [], h2: [] };
    for (let p = 0; p < passes; p++) {
      for (const t of ['h1', 'h2'] as const) {
        mem[t].push(await memoryPass(t, idle, tls));
        options.log(`h2: memory pass ${p + 1}/${passes} ${t}: ${Math.round(mem[t].at(-1)!.rss)} B RSS, ${Math.round(mem[t].at(-1)!.heap)} B heap per WebSocket`);
      }
      for (const t of ['h1', 'h2'] as const) {
        cpu[t].push(await echoPass(t, echo, tls));
        options.log(`h2: echo pass ${p + 1}/${passes} ${t}: ${(cpu[t].at(-1)! / 1000).toFixed(2)} µs server CPU per echo`);
      }
    }
    const memory = Object.fromEntries((['h1', 'h2'] as const).map((t) => [t, { rss: median(mem[t].map((m) => m.rss)), heap: median(mem[t].map((m) => m.heap)), external: median(mem[t].map((m) => m.external)) }])) as H2Report['memory'];
    const cpuPerEcho = { h1: median(cpu.h1), h2: median(cpu.h2) };
    return { idle, echo, passes, memory, cpuPerEcho, wallSeconds: (performance.now() - started) / 1000 };
  } finally {
    tls.remove();
  }
}

export function formatH2(r: H2Report): string {
  const kib = (b: number): string => `${(b / 1024).toFixed(2)} KiB`;
  const rows = [
    ['', 'HTTP/1.1 (a TLS connection each)', 'HTTP/2 (streams of one session)', 'h2 / h1'],
    [`RSS per idle WebSocket (${r.idle})`, kib(r.memory.h1.rss), kib(r.memory.h2.rss), (r.memory.h2.rss / r.memory.h1.rss).toFixed(2)],
    [`JS heap per idle WebSocket (${r.idle})`, kib(r.memory.h1.heap), kib(r.memory.h2.heap), (r.memory.h2.heap / r.memory.h1.heap).toFixed(2)],
    [`external per idle WebSocket (${r.idle})`, kib(r.memory.h1.external), kib(r.memory.h2.external), r.memory.h1.external > 0 ? (r.memory.h2.external / r.memory.h1.external).toFixed(2) : '—'],
    [`server CPU per echo (${r.echo.connections} sockets × ${r.echo.inFlight} in flight, ${r.echo.size} B)`, `${(r.cpuPerEcho.h1 / 1000).toFixed(2)} µs`, `${(r.cpuPerEcho.h2 / 1000).toFixed(2)} µs`, (r.cpuPerEcho.h2 / r.cpuPerEcho.h1).toFixed(2)],
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const lines = rows.map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  '));
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  return [`WebSockets over HTTP/2 vs HTTP/1.1, both over TLS (median of ${r.passes} pass${r.passes > 1 ? 'es' : ''}, a fresh server each)`, ...lines, `h2: ${r.wallSeconds.toFixed(1)} s`].join('\n');
}
