/**
 * The server child of `npm run bench -- h2` (run with `--expose-gc`): one HTTPS port with HTTP/2 and HTTP/1.1
 * (`allowHTTP1`), the engine's WebSocket server attached to both (`attachHttp2` for RFC 8441 streams, the
 * `upgrade` event for HTTP/1.1), echoing every message. Answers the orchestrator over IPC: its port, its memory
 * after forced GCs, its CPU time, and the WebSockets it holds by transport.
 *
 * @module
 */
import { createSecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createServer, type WebSocketConnection } from '../../lib/index.js';
import { serve } from '../e2e/ipc.js';

const gc = (globalThis as { gc?: () => void }).gc;
const open = new Set<WebSocketConnection>();
let sessions = 0;

serve({
  async listen({ key, cert }: { key: string; cert: string }) {
    const server = createSecureServer({ key, cert, allowHTTP1: true });
    const wss = createServer({ noServer: true, heartbeat: false });
    wss.on('connection', (conn) => {
      open.add(conn);
      conn.on('close', () => open.delete(conn));
      conn.on('message', (data, isBinary) => conn.send(data, { binary: isBinary }));
    });
    wss.attachHttp2(server);
    server.on('session', (session) => {
      sessions++;
      session.once('close', () => sessions--);
    });
    server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  },
  /** Memory after full GCs (several, with turns of the event loop between, so finalizers run). */
  async memory() {
    if (gc === undefined) throw new Error('run the server with --expose-gc');
    for (let i = 0; i < 4; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
    const m = process.memoryUsage();
    return { rss: m.rss, heapUsed: m.heapUsed, external: m.external };
  },
  cpu() {
    const c = process.cpuUsage();
    return c.user + c.system;
  },
  /** Open HTTP/2 sessions. */
  sessions() {
    return sessions;
  },
  sockets() {
    const by: Record<string, number> = {};
    for (const conn of open) by[conn.transport] = (by[conn.transport] ?? 0) + 1;
    return by;
  },
});
