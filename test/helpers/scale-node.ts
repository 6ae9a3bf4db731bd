/**
 * One hub process of a scale-out test: `tsx test/helpers/scale-node.ts <redis|nats> <url> <prefix> [maxConnectionsPerUser]`.
 * Listens on a free port, prints `{"port","nodeId"}` as one JSON line on stdout, logs backplane errors to stderr,
 * and closes on SIGTERM. The token is the user name (`?token=alice`).
 */
import { createHub } from '../../lib/hub/index.js';
import { createNatsBackplane } from '../../lib/hub/nats.js';
import { createRedisBackplane } from '../../lib/hub/redis.js';

const [broker, url, prefix, maxPerUser] = process.argv.slice(2);
const common = { prefix, onError: (e: Error) => process.stderr.write(`backplane: ${e.message}\n`), heartbeat: 500, nodeTtl: 2000 };
const backplane = broker === 'redis' ? createRedisBackplane(url, common) : createNatsBackplane(url, common);
const hub = createHub({
  backplane,
  authenticate: (token: string) => ({ user: token }),
  heartbeat: false,
  limits: { maxConnectionsPerUser: Number(maxPerUser ?? 5) },
});
// App messages: {"type":"to_user","data":{"user","data"}} → hub.sendToUser; {"type":"presence","data":{"topic"}} → hub.presence; stats → the backplane's counters.
hub.on('message', async (client: { id: string }, m: { type: string; data: any }) => {
  if (m.type === 'stats') await hub.sendToConnection(client.id, { type: 'stats', data: backplane.counters });
  if (m.type === 'to_user') await hub.sendToUser(m.data.user, { type: 'direct', data: m.data.data });
  if (m.type === 'broadcast_all') await hub.broadcast({ type: 'announce', data: m.data });
});
hub.on('error', (e: Error) => process.stderr.write(`hub: ${e.message}\n`));
const address = await hub.listen(0, '127.0.0.1');
process.stdout.write(JSON.stringify({ port: address.port, nodeId: backplane.nodeId }) + '\n');
const shutdown = (): void => {
  void hub.close({ code: 1001, timeout: 2000 }).finally(() => process.exit(0));
};
process.on('SIGTERM', shutdown);
// The parent holds our stdin: when it goes away (even killed), so do we.
process.stdin.on('end', shutdown).on('error', shutdown).resume();
