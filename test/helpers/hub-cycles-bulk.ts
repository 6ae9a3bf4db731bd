/**
 * The bulk of the 100,000-cycle leak check, run as a child process by hub-cycles.test.ts (tap's async hooks
 * track every promise and would make the in-process run ~20× slower). Prints one JSON line: the hub's stats and
 * the backplane's counts after the cycles.
 */
import { Duplex } from 'node:stream';
import { createHub, MemoryBackplane } from '../../lib/hub/index.js';
import { WebSocketConnection } from '../../lib/transport/connection.js';

const N = Number(process.argv[2] ?? 100_000);
const backplane = new MemoryBackplane();
const hub = createHub({ backplane, limits: { maxConnectionsPerUser: 3 } });
const request = { url: '/', path: '/', protocols: [] } as never;
const live: Duplex[] = [];
let subscribeCycles = 0;
let listenersLeft = 0;
const connections: WebSocketConnection[] = [];
const started = Date.now();
// One connect/disconnect per 5 subscribe/unsubscribe cycles: N subscription cycles over N/5 connections (a
// connection costs a stream and a protocol core; the subscription registry is what this checks most).
for (let i = 0; i < N; i += 5) {
  const socket = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  const connection = new WebSocketConnection(socket, 'server', {});
  connection.principal = { user: `u${i % 1000}`, expiresAt: Date.now() + 3_600_000 };
  hub.server.emit('connection', connection, request);
  const id = (connection.data as { id: string }).id;
  for (let k = i; k < i + 5; k++) {
    subscribeCycles++;
    await hub.subscribe(id, `t.${k % 5000}`);
    await hub.subscribe(id, `t.*.${k % 7}.#`);
    if (k % 3 === 0) await hub.unsubscribe(id, `t.${k % 5000}`);
    if (k % 2 === 0) await hub.unsubscribe(id, `t.*.${k % 7}.#`);
  }
  if (i % 10_000 === 0) connections.push(connection);
  live.push(socket);
  if (live.length >= 50) for (const s of live.splice(0)) s.destroy();
}
for (const s of live.splice(0)) s.destroy();
await new Promise((r) => setTimeout(r, 50));
for (const c of connections) for (const e of ['message', 'close', 'pong', 'error', 'drain']) listenersLeft += c.listenerCount(e) > 1 ? 1 : 0;
const stats = hub.stats();
const counts = backplane.counts;
const serverClients = hub.server.clients.size;
await hub.close();
console.log(JSON.stringify({ subscribeCycles, stats, counts, serverClients, listenersLeft, ms: Date.now() - started }));
