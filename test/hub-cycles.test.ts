/**
 * Attack case 29: 100,000 connect/subscribe/unsubscribe/disconnect cycles leave no topic entry, user counter,
 * timer or listener. The bulk runs in process (connections over an in-memory duplex, through the server's real
 * `connection` path); a few hundred cycles run over real sockets.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Hub, type HubStats, MemoryBackplane } from '../lib/hub/index.js';
import { open, sleep, startHub, token } from './helpers/hub.js';

function clean(t: { same: (a: unknown, b: unknown, m: string) => unknown; equal: (a: unknown, b: unknown, m: string) => unknown }, hub: Hub, backplane: MemoryBackplane, what: string): void {
  const s = hub.stats();
  t.same(
    { connections: s.connections, users: s.users, subscriptions: s.subscriptions, patterns: s.patterns, deadlines: s.deadlines, heartbeat: s.heartbeatRunning, pending: s.pendingAuth },
    { connections: 0, users: 0, subscriptions: 0, patterns: 0, deadlines: 0, heartbeat: false, pending: 0 },
    `${what}: hub registry empty, no timers`,
  );
  const c = backplane.counts;
  t.same({ users: c.users, presence: c.presence, interest: c.interest }, { users: 0, presence: 0, interest: 0 }, `${what}: backplane holds no user counter, presence or interest`);
  t.equal(hub.server.clients.size, 0, `${what}: server holds no connection`);
}

t.test('100,000 subscribe/unsubscribe cycles over 20,000 connect/disconnect cycles (in process) leave nothing behind', async (t) => {
  const N = Number(process.env.HUB_CYCLES ?? 100_000);
  const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./helpers/hub-cycles-bulk.ts', import.meta.url)), String(N)], { encoding: 'utf8', timeout: 110_000 });
  t.equal(child.status, 0, `the child ran (${child.stderr.slice(0, 500)})`);
  const r = JSON.parse(child.stdout.trim().split('\n').pop()!) as { stats: HubStats; counts: MemoryBackplane['counts']; serverClients: number; listenersLeft: number; ms: number; subscribeCycles: number };
  t.comment(`${N} cycles in ${r.ms} ms`);
  const s = r.stats;
  t.equal(r.subscribeCycles, N, 'every subscribe cycle ran');
  t.equal(s.connectionsTotal, N / 5, 'every connection cycle ran');
  t.same(
    { connections: s.connections, users: s.users, subscriptions: s.subscriptions, patterns: s.patterns, deadlines: s.deadlines, heartbeat: s.heartbeatRunning, pending: s.pendingAuth },
    { connections: 0, users: 0, subscriptions: 0, patterns: 0, deadlines: 0, heartbeat: false, pending: 0 },
    'hub registry empty, no timers',
  );
  t.same({ users: r.counts.users, presence: r.counts.presence, interest: r.counts.interest }, { users: 0, presence: 0, interest: 0 }, 'backplane: no user counter, presence or interest');
  t.equal(r.serverClients, 0, 'server holds no connection');
  t.equal(r.listenersLeft, 0, 'no listener added twice to a connection');
  t.ok((s.closeCodes['4429'] ?? 0) > 0, 'the per-user limit applied along the way (oldest closed 4429)');
});

t.test('300 real-socket cycles leave nothing behind', async (t) => {
  const backplane = new MemoryBackplane();
  const { hub, url } = await startHub({ backplane, limits: { authDeadline: 1000 } });
  for (let i = 0; i < 300; i++) {
    const c = await open(`${url}?token=${token('user' + (i % 10))}`);
    c.send({ type: 'subscribe', data: { topic: `room.${i % 20}.#`, presence: true }, request_id: 1 });
    await c.next((m) => m.type === 'ack');
    if (i % 2) c.send({ type: 'unsubscribe', data: { topic: `room.${i % 20}.#` } });
    if (i % 3 === 0) c.ws.close();
    else c.ws.close(4000);
    await c.closed;
  }
  // A few that never authenticate, closed by the client before the deadline.
  for (let i = 0; i < 20; i++) {
    const c = await open(url);
    c.ws.close();
    await c.closed;
  }
  await sleep(100);
  clean(t, hub, backplane, '320 socket cycles');
  await hub.close();
});
