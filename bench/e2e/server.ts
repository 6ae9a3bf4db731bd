/**
 * Server child of the end-to-end benchmarks: one engine per process (`ours`, `ws-native`, `ws-js`, which needs
 * `WS_NO_BUFFER_UTIL=1 WS_NO_UTF_8_VALIDATE=1` in its environment: ws reads them when it loads, or `floor`).
 *
 * Every engine runs the same application: an echo server (`message` → `send(data, { binary: isBinary })`), and a
 * broadcast on request — ours: `prepare(data)` once, then `sendPrepared` to every client; ws: its documented loop,
 * `for (const client of wss.clients) if (client.readyState === OPEN) client.send(data, { binary })`.
 *
 * `floor` is the cost a Node engine cannot go below: a raw `node:net` server that answers the generators' traffic
 * with fixed, precomputed replies and parses nothing (see {@link startFloor}).
 *
 * The orchestrator drives it over IPC (`bench/e2e/ipc.ts`): `start`, `stats` (its own `process.cpuUsage()`,
 * `process.memoryUsage()`, messages echoed, connections accepted, clients open), `gc` (with `--expose-gc`),
 * `publish`, `echo-size` (the floor's frame length; ignored by the engines), `exit`.
 *
 * @module
 */
import { createRequire } from 'node:module';
import net, { type AddressInfo } from 'node:net';
import { type PerformanceEntry, PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { writeHeapSnapshot } from 'node:v8';
import type * as WsModule from 'ws';
import { type DeflateMode, type EngineName, HANDSHAKE_ACCEPT, HOST, maskedFrameLength, nowMicros, pseudoRandom, serverFrame, upgradeRequest } from './common.js';
import { serve } from './ipc.js';

interface Engine {
  port: number;
  meta: Record<string, unknown>;
  clients(): number;
  publish(data: Buffer, binary: boolean): void;
  /** The floor only: the payload size of the echo/latency frames from now on. */
  echoSize?(size: number): void;
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

/**
 * wsengine/ws running ws's application code, as {@link startWs} does for ws: what the compatibility layer costs
 * over the engine's own API ({@link startOurs}). Its broadcast is ws's documented loop over `clients`.
 */
async function startWsCompat(deflate: DeflateMode): Promise<Engine> {
  const { WebSocket, WebSocketServer } = await import('../../lib/ws/index.js');
  const { wss, perMessageDeflate } = await wsEchoServer(WebSocketServer as unknown as typeof WsModule.WebSocketServer, deflate);
  const OPEN = WebSocket.OPEN;
  return {
    port: (wss.address() as AddressInfo).port,
    meta: { layer: 'wsengine/ws', perMessageDeflate },
    clients: () => wss.clients.size,
    publish(data, binary) {
      for (const client of wss.clients) if (client.readyState === OPEN) client.send(data, { binary });
    },
  };
}

/** A ws-shaped echo server (ws itself, or wsengine/ws), listening; counts connections and messages. */
async function wsEchoServer(Server: typeof WsModule.WebSocketServer, deflate: DeflateMode): Promise<{ wss: WsModule.WebSocketServer; perMessageDeflate: boolean | object }> {
  const perMessageDeflate = deflate === 'off' ? false : deflate === 'on' ? true : { serverNoContextTakeover: true, clientNoContextTakeover: true };
  const wss = new Server({ host: HOST, port: 0, perMessageDeflate });
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
  return { wss, perMessageDeflate };
}

async function startWs(deflate: DeflateMode): Promise<Engine> {
  const require = createRequire(import.meta.url);
  const ws = require('ws') as typeof WsModule;
  const version = (require('ws/package.json') as { version: string }).version;
  const { wss, perMessageDeflate } = await wsEchoServer(ws.WebSocketServer, deflate);
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

/**
 * The floor: what answering the benchmark's traffic costs a Node process that does nothing else. A
 * `net.createServer({ noDelay: true })` whose sockets are read through `socket.on('data')` (the plain public
 * Readable path every Node engine starts from; no `onread`, which Node does not offer for accepted sockets) and
 * answered with buffers built before the load starts, one `write` per reply:
 *
 * - upgrade: the generators' request is known byte for byte (the RFC 6455 example key, which every generated
 *   handshake uses, and this server's port), so the floor counts its bytes rather than parsing it, and answers
 *   with a precomputed `101` (its accept value computed once from that fixed key: no SHA-1 per handshake);
 * - echo and latency: each connection sends one masked frame of a known total length L (set per scenario over
 *   IPC, `echo-size`) and waits for the echo; the floor counts received bytes and, for every L of them, writes
 *   the precomputed unmasked frame of the same payload size (same bytes as sent, unmasked, not the received ones);
 * - close: a frame that starts with 0x88 at a frame boundary is the client's close; the floor answers with a
 *   precomputed close frame (status 1000) and ends the socket;
 * - fan-out: the frame is built once per publish and written to every upgraded socket;
 * - idle connections: the socket is kept, with its two counters (in a closure) and its entry in a `Set`.
 *
 * The floor counts messages and connections with the same increments as the engines, so every figure of the
 * tables (CPU per message, per delivery, per handshake, memory per connection) exists for it. It cannot compress:
 * the compression scenarios leave it out.
 */
async function startFloor(): Promise<Engine> {
  const clients = new Set<net.Socket>();
  const CLOSE_REPLY = serverFrame(0x8, Uint8Array.of(0x03, 0xe8));
  const RESPONSE = Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${HANDSHAKE_ACCEPT}\r\n\r\n`, 'latin1');
  /** Total length of a client echo frame (no echo scenario yet: larger than any read, so only closes are seen). */
  let frameLength = 2 ** 31;
  let reply: Buffer = Buffer.alloc(0);
  let requestLength = 0;
  const server = net.createServer({ noDelay: true }, (socket) => {
    let headLeft = requestLength;
    /** Bytes of the current client frame received so far. */
    let at = 0;
    socket.on('data', (chunk: Buffer) => {
      const n = chunk.length;
      let i = 0;
      if (headLeft > 0) {
        if (n < headLeft) {
          headLeft -= n;
          return;
        }
        i = headLeft;
        headLeft = 0;
        socket.write(RESPONSE);
        clients.add(socket);
        connections++;
      }
      while (i < n) {
        if (at === 0 && chunk[i] === 0x88) {
          clients.delete(socket);
          socket.end(CLOSE_REPLY);
          return;
        }
        const take = frameLength - at < n - i ? frameLength - at : n - i;
        at += take;
        i += take;
        if (at === frameLength) {
          at = 0;
          messages++;
          socket.write(reply);
        }
      }
    });
    socket.on('close', () => clients.delete(socket));
    socket.on('error', noop);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  requestLength = upgradeRequest(port, null).length;
  return {
    port,
    meta: { floor: "node:net, socket.on('data'), precomputed replies" },
    clients: () => clients.size,
    publish(data, binary) {
      const frame = serverFrame(binary ? 0x2 : 0x1, data);
      for (const socket of clients) socket.write(frame);
    },
    echoSize(size) {
      frameLength = maskedFrameLength(size);
      reply = serverFrame(0x2, pseudoRandom(size));
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
    if (args.engine === 'floor' && args.deflate !== 'off') throw new Error('the floor cannot compress');
    engine =
      args.engine === 'ours'
        ? await startOurs(args.deflate)
        : args.engine === 'ws-compat'
          ? await startWsCompat(args.deflate)
          : args.engine === 'floor'
            ? await startFloor()
            : await startWs(args.deflate);
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
  /** The payload size of the echo and latency frames that follow (the floor needs it; the engines ignore it). */
  'echo-size'(args: { size: number }) {
    engine!.echoSize?.(args.size);
    return {};
  },
  /** One broadcast: returns when the loop has run (the writes leave at the end of the tick). */
  publish(args: { data: Uint8Array; binary: boolean }) {
    const data = Buffer.from(args.data.buffer, args.data.byteOffset, args.data.byteLength);
    const t0 = nowMicros();
    engine!.publish(data, args.binary);
    return { t0, t1: nowMicros() };
  },
});
