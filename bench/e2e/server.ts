/**
 * Server child of the end-to-end benchmarks: one engine per process (`ours`, `ws-native`, or `ws-js`, which needs
 * `WS_NO_BUFFER_UTIL=1 WS_NO_UTF_8_VALIDATE=1` in its environment: ws reads them when it loads).
 *
 * Every engine runs the same application: an echo server (`message` → `send(data, { binary: isBinary })`), and a
 * broadcast on request — ours: `prepare(data)` once, then `sendPrepared` to every client; ws: its documented loop,
 * `for (const client of wss.clients) if (client.readyState === OPEN) client.send(data, { binary })`.
 *
 * The orchestrator drives it over IPC (`bench/e2e/ipc.ts`): `start`, `stats` (its own `process.cpuUsage()`,
 * `process.memoryUsage()`, messages echoed, connections accepted, clients open), `gc` (with `--expose-gc`),
 * `publish`, `exit`.
 *
 * @module
 */
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { type PerformanceEntry, PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { writeHeapSnapshot } from 'node:v8';
import type * as WsModule from 'ws';
import { type DeflateMode, type EngineName, HOST, nowMicros } from './common.js';
import { serve } from './ipc.js';

interface Engine {
  port: number;
  meta: Record<string, unknown>;
  clients(): number;
  publish(data: Buffer, binary: boolean): void;
}

/** Counted by the application handlers: the same one increment per message or connection in every engine. */
let messages = 0;
let connections = 0;
let engine: Engine | null = null;

const noop = (): void => {};

async function startOurs(deflate: DeflateMode): Promise<Engine> {
  const { createServer, prepare } = await import('../../lib/index.js');
  const perMessageDeflate = deflate === 'off' ? false : deflate === 'on' ? true : { serverNoContextTakeover: true, clientNoContextTakeover: true };
  const server = createServer({ heartbeat: false, perMessageDeflate }, (connection) => {
    connections++;
    connection.on('message', (data, isBinary) => {
      messages++;
      connection.send(data, { binary: isBinary });
    });
    connection.on('error', noop);
  });
  const { port } = await server.listen(0, HOST);
  return {
    port,
    meta: { perMessageDeflate },
    clients: () => server.clients.size,
    publish(data, binary) {
      const prepared = prepare(data, { binary });
      for (const client of server.clients) client.sendPrepared(prepared);
    },
  };
}

async function startWs(deflate: DeflateMode): Promise<Engine> {
  const require = createRequire(import.meta.url);
  const ws = require('ws') as typeof WsModule;
  const version = (require('ws/package.json') as { version: string }).version;
  const perMessageDeflate = deflate === 'off' ? false : deflate === 'on' ? true : { serverNoContextTakeover: true, clientNoContextTakeover: true };
  const wss = new ws.WebSocketServer({ host: HOST, port: 0, perMessageDeflate });
  wss.on('connection', (socket) => {
    connections++;
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      messages++;
      socket.send(data, { binary: isBinary });
    });
    socket.on('error', noop);
  });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  let bufferutil = false;
  let utf8Validate = false;
  for (const id of Object.keys(require.cache)) {
    if (id.includes('/node_modules/bufferutil/')) bufferutil = true;
    if (id.includes('/node_modules/utf-8-validate/')) utf8Validate = true;
  }
  const OPEN = ws.WebSocket.OPEN;
  return {
    port: (wss.address() as AddressInfo).port,
    meta: {
      ws: version,
      perMessageDeflate,
      bufferutilLoaded: bufferutil,
      utf8ValidateLoaded: utf8Validate,
      WS_NO_BUFFER_UTIL: process.env.WS_NO_BUFFER_UTIL ?? null,
      WS_NO_UTF_8_VALIDATE: process.env.WS_NO_UTF_8_VALIDATE ?? null,
    },
    clients: () => wss.clients.size,
    publish(data, binary) {
      for (const client of wss.clients) if (client.readyState === OPEN) client.send(data, { binary });
    },
  };
}

export interface ServerStats {
  /** Monotonic clock, µs. */
  hr: number;
  /** CPU time of the whole process (all threads: zlib's thread pool included), µs. */
  cpu: number;
  /** Of which in user mode (JavaScript, V8, libuv, zlib) and in the kernel (syscalls: the TCP stack, epoll), µs. */
  cpuUser: number;
  cpuSystem: number;
  memory: NodeJS.MemoryUsage;
  messages: number;
  connections: number;
  clients: number;
  /**
   * With `BENCH_GC_COUNT=1` in the environment (set by `BENCH_PERF`): garbage collections since start, by kind
   * (`scavenge`, `markCompact`, `incremental`, `weakcb`) with their summed pause, `…Ms`.
   */
  gc?: Record<string, number>;
}

const gcCounts: Record<string, number> | undefined = process.env.BENCH_GC_COUNT === '1' ? {} : undefined;
if (gcCounts !== undefined) {
  const kinds: Record<number, string> = {
    [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
    [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'markCompact',
    [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
  };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries() as (PerformanceEntry & { detail?: { kind?: number } })[]) {
      const kind = kinds[e.detail?.kind ?? -1] ?? 'other';
      gcCounts[kind] = (gcCounts[kind] ?? 0) + 1;
      gcCounts[`${kind}Ms`] = (gcCounts[`${kind}Ms`] ?? 0) + e.duration;
    }
  }).observe({ entryTypes: ['gc'] });
}

function stats(): ServerStats {
  const cpu = process.cpuUsage();
  return {
    hr: nowMicros(),
    cpu: cpu.user + cpu.system,
    cpuUser: cpu.user,
    cpuSystem: cpu.system,
    memory: process.memoryUsage(),
    messages,
    connections,
    clients: engine?.clients() ?? 0,
    ...(gcCounts !== undefined ? { gc: { ...gcCounts } } : {}),
  };
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

serve({
  async start(args: { engine: EngineName; deflate: DeflateMode }) {
    engine = args.engine === 'ours' ? await startOurs(args.deflate) : await startWs(args.deflate);
    return { port: engine.port, meta: { engine: args.engine, node: process.version, ...engine.meta } };
  },
  stats,
  /** Full garbage collections until the heap stops shrinking (needs --expose-gc), then the stats. */
  async gc() {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc === undefined) throw new Error('run the server child with --expose-gc');
    let last = Infinity;
    for (let i = 0; i < 8; i++) {
      gc();
      await nextTurn();
      await new Promise((resolve) => setTimeout(resolve, 20));
      const used = process.memoryUsage().heapUsed;
      if (i >= 2 && used >= last * 0.999) break;
      last = used;
    }
    return stats();
  },
  /** Writes a heap snapshot (after a full GC) to `path`. */
  async 'heap-snapshot'(args: { path: string }) {
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    await nextTurn();
    return { path: writeHeapSnapshot(args.path) };
  },
  /** One broadcast: returns when the loop has run (the writes leave at the end of the tick). */
  publish(args: { data: Uint8Array; binary: boolean }) {
    const data = Buffer.from(args.data.buffer, args.data.byteOffset, args.data.byteLength);
    const t0 = nowMicros();
    engine!.publish(data, args.binary);
    return { t0, t1: nowMicros() };
  },
});
