/**
 * Hub benchmarks (in process, connections over in-memory sockets whose writes cost nothing, so the figures are
 * the hub's own CPU): publish cost with 100,000 subscriptions over 10,000 topics with wildcards; fan-out of a
 * 20 B message to 1,000 and 10,000 subscribers, hub vs a bare `sendPrepared` loop vs ws's documented broadcast loop
 * (all three over the same in-memory socket kind); memory per idle hub connection with 2 subscriptions vs a bare
 * connection.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
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

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

interface FanoutCpu {
  hub: number;
  bare: number;
  ws: number;
}

/**
 * `n` ws server-side WebSockets, each completed by ws's own `handleUpgrade` on an in-memory Duplex of the same kind
 * the hub's connections use (its 101 response goes into the sink); no permessage-deflate, as for ours.
 */
async function wsServer(n: number): Promise<WebSocketServer> {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: true });
  for (let i = 0; i < n; i++) {
    const request = {
      method: 'GET',
      url: '/',
      headers: { host: 'bench', upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': randomBytes(16).toString('base64'), 'sec-websocket-version': '13' },
      socket: {},
    } as unknown as IncomingMessage;
    await new Promise<void>((resolve) => wss.handleUpgrade(request, sink(), Buffer.alloc(0), () => resolve()));
  }
  if (wss.clients.size !== n) throw new Error(`ws accepted ${wss.clients.size} of ${n} in-memory connections`);
  return wss;
}

export interface HubBenchReport {
  publish: { subscriptions: number; topics: number; usPerPublish: number; deliveriesPerPublish: number };
  fanout: Array<{
    subscribers: number;
    hubDeliveriesPerCpuSecond: number;
    bareDeliveriesPerCpuSecond: number;
    wsDeliveriesPerCpuSecond: number;
    /** Hub CPU / bare-loop CPU for the same deliveries (1.10 = 10 % more), median of the rounds. */
    hubOverBare: number;
    /** Hub deliveries per CPU-second / ws's, median of the rounds. */
    hubOverWs: number;
  }>;
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

  // 2. Fan-out of 20 B of data to N subscribers, three ways over the same kind of in-memory socket:
  //    hub.publish; a bare loop (prepare once + sendPrepared per connection); ws's documented broadcast loop
  //    (`wss.clients.forEach(c => c.readyState === OPEN && c.send(text))`) over ws WebSockets made by
  //    `wss.handleUpgrade` on the same Duplex kind. The bare loop and ws send the hub's own frame text (same bytes).
  const fanout: HubBenchReport['fanout'] = [];
  for (const n of [1_000, 10_000]) {
    const h = createHub({ heartbeat: false, limits: { rate: false, maxConnectionsPerUser: 1e9, maxBufferedBytes: 1e12 } });
    const list: WebSocketConnection[] = [];
    for (let i = 0; i < n; i++) {
      const c = attach(h, `f${i}`);
      list.push(c.connection);
      await h.subscribe(c.id, 'hot');
    }
    const wss = await wsServer(n);
    const rounds = options.quick ? 60 : 300;
    const warmup = options.quick ? 20 : 60;
    const data = 'x'.repeat(20);
    let seq = 0;
    // What the hub sends for each publish (its seq and ts change): the bare loop and ws send the same text.
    const text = (): string => `{"type":"t","data":"${data}","topic":"hot","tenant":"default","seq":${++seq},"epoch":"AAAAAAAAAAA","ts":${Date.now()}}`;
    const runs: Array<[keyof FanoutCpu, () => unknown]> = [
      ['hub', () => h.publish({ topic: 'hot', type: 't', data })],
      [
        'bare',
        () => {
          const p = prepare(text());
          for (let i = 0; i < list.length; i++) list[i].sendPrepared(p);
        },
      ],
      [
        'ws',
        () => {
          const t = text();
          wss.clients.forEach((c) => {
            if (c.readyState === WebSocket.OPEN) c.send(t);
          });
        },
      ],
    ];
    const cpu: FanoutCpu = { hub: 0, bare: 0, ws: 0 };
    const overBare: number[] = [];
    const overWs: number[] = [];
    // Each measurement includes the end-of-tick flush that hands the frames to the sockets. The order rotates
    // every round and the first rounds are not counted (JIT warm-up).
    // The ratios are the medians of each round's ratios (the three runs of a round are adjacent in time, so a
    // burst of load from elsewhere on the machine moves all three); the rates are totals over the counted rounds.
    for (let r = 0; r < warmup + rounds; r++) {
      const round: FanoutCpu = { hub: 0, bare: 0, ws: 0 };
      for (let k = 0; k < runs.length; k++) {
        const [name, fn] = runs[(r + k) % runs.length];
        const s0 = process.cpuUsage();
        await fn();
        await tick();
        const d0 = process.cpuUsage(s0);
        round[name] = (d0.user + d0.system) / 1e6;
      }
      if (r < warmup) continue;
      for (const name of ['hub', 'bare', 'ws'] as const) cpu[name] += round[name];
      overBare.push(round.hub / round.bare);
      overWs.push(round.ws / round.hub);
    }
    const rate = (seconds: number): number => (n * rounds) / seconds;
    const row = {
      subscribers: n,
      hubDeliveriesPerCpuSecond: Math.round(rate(cpu.hub)),
      bareDeliveriesPerCpuSecond: Math.round(rate(cpu.bare)),
      wsDeliveriesPerCpuSecond: Math.round(rate(cpu.ws)),
      hubOverBare: median(overBare),
      hubOverWs: median(overWs),
    };
    fanout.push(row);
    log(
      `fan-out 20 B to ${n} (${rounds} publishes): hub ${(row.hubDeliveriesPerCpuSecond / 1e6).toFixed(2)} M deliveries/CPU-s, bare sendPrepared loop ${(row.bareDeliveriesPerCpuSecond / 1e6).toFixed(2)} M, ws broadcast loop ${(row.wsDeliveriesPerCpuSecond / 1e6).toFixed(2)} M` +
        ` — median per round: hub cost over bare ${row.hubOverBare >= 1 ? '+' : ''}${((row.hubOverBare - 1) * 100).toFixed(1)} % (target ≤ +10 %), hub/ws ${row.hubOverWs.toFixed(2)}× (target ≥ 3×)`,
    );
    for (const c of wss.clients) c.terminate();
    wss.close();
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
