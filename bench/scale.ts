/**
 * Scale-out benchmark (`npm run bench -- scale`): cross-node delivery through Redis and NATS against single-node
 * delivery, in one run. Two hubs in this process, each with its own backplane (its own broker connections); a
 * WebSocket client subscribed on hub B; hub A's application code publishes. Latency = publish call → frame
 * received by the client (same clock); throughput = messages delivered per second with up to 64 publishes in
 * flight. One topic and 1,000 topics. Then broker traffic: three hubs, subscribers on one only — topic messages
 * the brokers delivered to hubs per publish (from the adapters' counters).
 *
 * Needs Redis at REDIS_URL (127.0.0.1:6379) and NATS with JetStream at NATS_URL (127.0.0.1:4222).
 *
 * @module
 */
import WebSocket from 'ws';
import type { Backplane } from '../lib/hub/backplane.js';
import { createHub, type Hub } from '../lib/hub/index.js';
import { createNatsBackplane, type NatsBackplane } from '../lib/hub/nats.js';
import { createRedisBackplane, type RedisBackplane } from '../lib/hub/redis.js';
import { cleanupBroker } from '../test/helpers/scale.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

export interface ScaleRow {
  scenario: string;
  messages: number;
  p50: number;
  p99: number;
  perSecond: number;
}

export interface ScaleReport {
  rows: ScaleRow[];
  traffic: { broker: string; publishes: number; brokerDeliveries: number; perPublish: number }[];
}

type Kind = 'memory' | 'redis' | 'nats';

function backplane(kind: Kind, prefix: string): Backplane | undefined {
  const common = { prefix, heartbeat: 60_000, storage: 'memory' as const };
  if (kind === 'redis') return createRedisBackplane(REDIS_URL, common);
  if (kind === 'nats') return createNatsBackplane(NATS_URL, common);
  return undefined;
}

async function subscriber(hub: Hub, topics: string[]): Promise<{ ws: WebSocket; onMessage: (f: (m: { data: { t: number } }) => void) => void }> {
  const { port } = await hub.listen(0, '127.0.0.1');
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  let handler: (m: { data: { t: number } }) => void = () => {};
  let acks = 0;
  ws.on('message', (d) => {
    const m = JSON.parse(String(d)) as { type: string; data: { t: number } };
    if (m.type === 'ack') acks++;
    else if (m.type === 'error') throw new Error(`subscribe failed: ${String(d)}`);
    else handler(m);
  });
  for (let i = 0; i < topics.length; i++) ws.send(JSON.stringify({ type: 'subscribe', data: { topic: topics[i] }, request_id: i }));
  while (acks < topics.length) await new Promise((r) => setTimeout(r, 5));
  return { ws, onMessage: (f) => (handler = f) };
}

async function runScenario(kind: Kind, topicCount: number, messages: number): Promise<ScaleRow> {
  const prefix = `wsbench${process.pid}${Date.now().toString(36)}`;
  const limits = { maxSubscriptions: 2000, rate: false as const };
  const a = createHub({ backplane: backplane(kind, prefix), heartbeat: false, limits });
  // Single node: publisher and subscriber on the same hub.
  const b = kind === 'memory' ? a : createHub({ backplane: backplane(kind, prefix), heartbeat: false, limits });
  const topics = Array.from({ length: topicCount }, (_, i) => `bench.t${i}`);
  const sub = await subscriber(b, topics);
  try {
    // Latency: one message at a time (publish → frame received), so no queueing is measured.
    const latencies: number[] = [];
    const samples = Math.min(messages, 300);
    for (let i = 0; i < samples; i++) {
      const got = new Promise<void>((r) => sub.onMessage((m) => {
        latencies.push(performance.now() - m.data.t);
        r();
      }));
      await a.publish({ topic: topics[i % topicCount], type: 'b', data: { t: performance.now() } });
      await got;
    }
    // Throughput: up to 64 publishes in flight, until all are delivered.
    let received = 0;
    let done: () => void = () => {};
    sub.onMessage(() => {
      if (++received === messages) done();
    });
    const all = new Promise<void>((r) => (done = r));
    const start = performance.now();
    let inFlight = 0;
    const waiters: (() => void)[] = [];
    for (let i = 0; i < messages; i++) {
      while (inFlight >= 64) await new Promise<void>((r) => waiters.push(r));
      inFlight++;
      void a.publish({ topic: topics[i % topicCount], type: 'b', data: { t: 0 } }).finally(() => {
        inFlight--;
        waiters.shift()?.();
      });
    }
    await Promise.race([all, new Promise((_, j) => setTimeout(() => j(new Error(`${kind}: only ${received}/${messages} delivered`)), 120_000))]);
    const seconds = (performance.now() - start) / 1000;
    latencies.sort((x, y) => x - y);
    return {
      scenario: `${kind === 'memory' ? 'single node' : `${kind}, 2 nodes`}, ${topicCount} topic${topicCount > 1 ? 's' : ''}`,
      messages,
      p50: latencies[Math.floor(latencies.length * 0.5)],
      p99: latencies[Math.floor(latencies.length * 0.99)],
      perSecond: messages / seconds,
    };
  } finally {
    sub.ws.close();
    await a.close({ code: 1001, timeout: 1000 });
    if (b !== a) await b.close({ code: 1001, timeout: 1000 });
    if (kind !== 'memory') await cleanupBroker(kind, kind === 'redis' ? REDIS_URL : NATS_URL, prefix);
  }
}

async function runTraffic(kind: 'redis' | 'nats', publishes: number): Promise<ScaleReport['traffic'][number]> {
  const prefix = `wsbench${process.pid}${Date.now().toString(36)}`;
  const hubs = [0, 1, 2].map(() => createHub({ backplane: backplane(kind, prefix), heartbeat: false }));
  const sub = await subscriber(hubs[2], ['only.here']);
  try {
    let received = 0;
    let done: () => void = () => {};
    const all = new Promise<void>((r) => (done = r));
    sub.onMessage(() => void (++received === publishes && done()));
    const before = hubs.reduce((n, h) => n + (h.backplane as RedisBackplane | NatsBackplane).counters.received, 0);
    for (let i = 0; i < publishes; i++) await hubs[0].publish({ topic: 'only.here', type: 'b', data: { t: 0 } });
    await all;
    await new Promise((r) => setTimeout(r, 200));
    const after = hubs.reduce((n, h) => n + (h.backplane as RedisBackplane | NatsBackplane).counters.received, 0);
    return { broker: kind, publishes, brokerDeliveries: after - before, perPublish: (after - before) / publishes };
  } finally {
    sub.ws.close();
    await Promise.all(hubs.map((h) => h.close({ code: 1001, timeout: 1000 })));
    await cleanupBroker(kind, kind === 'redis' ? REDIS_URL : NATS_URL, prefix);
  }
}

/** Runs every scenario; `quick` uses fewer messages. */
export async function runScale(options: { quick: boolean; log: (line: string) => void }): Promise<ScaleReport> {
  const n = options.quick ? 500 : 5000;
  const rows: ScaleRow[] = [];
  for (const topics of [1, 1000]) {
    for (const kind of ['memory', 'redis', 'nats'] as const) {
      const row = await runScenario(kind, topics, n);
      options.log(`  ${row.scenario}: p50 ${row.p50.toFixed(2)} ms, p99 ${row.p99.toFixed(2)} ms, ${Math.round(row.perSecond)} msg/s`);
      rows.push(row);
    }
  }
  const traffic = [await runTraffic('redis', 200), await runTraffic('nats', 200)];
  return { rows, traffic };
}

/** The report as text tables. */
export function formatScale(report: ScaleReport): string {
  const lines = ['scale-out delivery (publish on hub A → WebSocket client on hub B; single node: same hub)', ''];
  lines.push('| scenario | messages (throughput) | latency p50 ms | latency p99 ms | msg/s (64 in flight) |', '|---|---:|---:|---:|---:|');
  for (const r of report.rows) lines.push(`| ${r.scenario} | ${r.messages} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${Math.round(r.perSecond)} |`);
  lines.push('', 'broker traffic: 3 hubs, subscribers on one only', '', '| broker | publishes | topic messages delivered to hubs | per publish |', '|---|---:|---:|---:|');
  for (const t of report.traffic) lines.push(`| ${t.broker} | ${t.publishes} | ${t.brokerDeliveries} | ${t.perPublish.toFixed(2)} |`);
  return lines.join('\n');
}
