/**
 * Hub benchmarks (in process, connections over in-memory sockets whose writes cost nothing, so the figures are
 * the hub's own CPU): publish cost with 100,000 subscriptions over 10,000 topics with wildcards; fan-out of a
 * 20 B message to 1,000 and 10,000 subscribers, hub vs a bare `sendPrepared` loop; memory per idle hub connection
 * with 2 subscriptions vs a bare connection.
 *
 * @module
 */
import { Duplex } from 'node:stream';
import { createHub, type Hub } from '../lib/hub/index.js';
import { prepare } from '../lib/transport/prepared.js';
import { WebSocketConnection } from '../lib/transport/connection.js';

function sink(): Duplex {
  return new Duplex({ read() {}, write(_c, _e, cb) { cb(); }, writev(_c, cb) { cb(); } });
}

function attach(hub: Hub, user: string): { id: string; connection: WebSocketConnection } {
  const connection = new WebSocketConnection(sink(), 'server', {});
  connection.principal = { user };
  hub.server.emit('connection', connection, { url: '/', path: '/', protocols: [] } as never);
  return { id: (connection.data as { id: string }).id, connection };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

export interface HubBenchReport {
  publish: { subscriptions: number; topics: number; usPerPublish: number; deliveriesPerPublish: number };
  fanout: Array<{ subscribers: number; hubDeliveriesPerCpuSecond: number; bareDeliveriesPerCpuSecond: number; hubOverBare: number }>;
  memory: { bareBytes: number; hubBytes: number; connections: number };
}

export async function runHubBench(options: { quick: boolean; log: (line: string) => void }): Promise<HubBenchReport> {
  const log = options.log;
  // 1. Publish cost: 10,000 connections × 10 subscriptions = 100,000 over 10,000 topics (exact, * and #).
  const hub = createHub({ heartbeat: false, limits: { rate: false, maxConnectionsPerUser: 1e9, maxBufferedBytes: 1e12 } });
  const conns = [];
  for (let i = 0; i < 10_000; i++) {
    const c = attach(hub, `u${i}`);
    conns.push(c);
    for (let k = 0; k < 10; k++) {
      const n = (i * 10 + k) % 10_000;
      const topic = k < 7 ? `region${n % 100}.shop${n}.orders` : k < 9 ? `region${n % 100}.*.orders` : `region${n % 100}.#`;
      await hub.subscribe(c.id, topic);
    }
  }
  const publishes = options.quick ? 2_000 : 20_000;
  let delivered = hub.stats().deliveries;
  const start = process.cpuUsage();
  for (let i = 0; i < publishes; i++) {
    await hub.publish({ topic: `region${i % 100}.shop${i % 10_000}.orders`, type: 'o', data: { i } });
    if (i % 100 === 0) await tick();
  }
  const d = process.cpuUsage(start);
  delivered = hub.stats().deliveries - delivered;
  const usPerPublish = (d.user + d.system) / publishes;
  log(`publish: ${hub.stats().subscriptions} subscriptions over 10,000 topics (exact, *, #): ${usPerPublish.toFixed(1)} µs CPU per publish, ${(delivered / publishes).toFixed(1)} deliveries each`);
  await hub.close({ timeout: 100 });

  // 2. Fan-out of 20 B to N subscribers: hub.publish vs a bare prepare + sendPrepared loop, same connections.
  const fanout: HubBenchReport['fanout'] = [];
  for (const n of [1_000, 10_000]) {
    const h = createHub({ heartbeat: false, limits: { rate: false, maxConnectionsPerUser: 1e9, maxBufferedBytes: 1e12 } });
    const list: WebSocketConnection[] = [];
    for (let i = 0; i < n; i++) {
      const c = attach(h, `f${i}`);
      list.push(c.connection);
      await h.subscribe(c.id, 'hot');
    }
    const rounds = options.quick ? 20 : 100;
    const data = 'x'.repeat(2);
    let hubCpu = 0;
    let bareCpu = 0;
    // Each measurement includes the end-of-tick flush that hands the frames to the sockets.
    const timed = async (fn: () => unknown): Promise<number> => {
      const s0 = process.cpuUsage();
      await fn();
      await tick();
      const d0 = process.cpuUsage(s0);
      return (d0.user + d0.system) / 1000;
    };
    for (let r = 0; r < rounds; r++) {
      hubCpu += await timed(() => h.publish({ topic: 'hot', type: 't', data }));
      bareCpu += await timed(() => {
        const p = prepare('{"type":"t","data":"xx","n":1}');
        for (let i = 0; i < list.length; i++) list[i].sendPrepared(p);
      });
    }
    const hubRate = (n * rounds) / (hubCpu / 1000);
    const bareRate = (n * rounds) / (bareCpu / 1000);
    fanout.push({ subscribers: n, hubDeliveriesPerCpuSecond: Math.round(hubRate), bareDeliveriesPerCpuSecond: Math.round(bareRate), hubOverBare: bareRate / hubRate });
    log(`fan-out 20 B to ${n}: hub ${(hubRate / 1e6).toFixed(2)} M deliveries/CPU-s, bare sendPrepared loop ${(bareRate / 1e6).toFixed(2)} M (hub cost +${((bareRate / hubRate - 1) * 100).toFixed(0)} %)`);
    await h.close({ timeout: 100 });
  }

  // 3. Memory per idle connection: bare engine connections vs hub connections with 2 subscriptions.
  const count = options.quick ? 2_000 : 10_000;
  const gc = (globalThis as { gc?: () => void }).gc;
  const measure = async (make: () => Promise<unknown>): Promise<number> => {
    gc?.();
    const before = process.memoryUsage().heapUsed;
    const keep: unknown[] = [];
    for (let i = 0; i < count; i++) keep.push(await make());
    gc?.();
    const after = process.memoryUsage().heapUsed;
    void keep.length;
    return (after - before) / count;
  };
  const bareBytes = await measure(async () => new WebSocketConnection(sink(), 'server', {}));
  const mh = createHub({ heartbeat: false, limits: { rate: false, maxConnectionsPerUser: 1e9 } });
  let j = 0;
  const hubBytes = await measure(async () => {
    const c = attach(mh, `m${j++}`);
    await mh.subscribe(c.id, `room.${j}`);
    await mh.subscribe(c.id, `user.${j}.#`);
    return c;
  });
  log(`memory per idle connection (${count}, JS heap${gc ? '' : ', run node with --expose-gc for steadier figures'}): bare ${(bareBytes / 1024).toFixed(2)} KiB, hub with 2 subscriptions ${(hubBytes / 1024).toFixed(2)} KiB (in-memory sockets: kernel/socket objects not counted)`);
  await mh.close({ timeout: 100 });
  return { publish: { subscriptions: 100_000, topics: 10_000, usPerPublish, deliveriesPerPublish: delivered / publishes }, fanout, memory: { bareBytes, hubBytes, connections: count } };
}
