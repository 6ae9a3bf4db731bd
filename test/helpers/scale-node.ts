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
hub.on('error', (e: Error) => process.stderr.write(`hub: ${e.message}\n`));
const address = await hub.listen(0, '127.0.0.1');
process.stdout.write(JSON.stringify({ port: address.port, nodeId: backplane.nodeId }) + '\n');
process.on('SIGTERM', () => {
  void hub.close({ code: 1001, timeout: 2000 }).finally(() => process.exit(0));
});
