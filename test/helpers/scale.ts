/**
 * Helpers of the scale-out tests: hub processes — the package's `bin` (`wsengine hub --redis … | --nats …`, as
 * users run it) — driven through their HTTP API, WebSocket clients speaking the native protocol, and throw-away
 * broker servers on spare ports for the restart tests.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { api, serviceArgs, startService, tokenFor, type ServiceProcess } from './service.js';

/** One hub process (the bin) of a cluster. */
export interface HubNode {
  port: number;
  /** `http://127.0.0.1:port/` */
  url: string;
  proc: ChildProcess;
  /** Everything the process logged so far. */
  output(): string;
  /** Graceful stop (SIGTERM), SIGKILL after 5 s. */
  stop(): Promise<void>;
  /** SIGKILL at once: the hub dies without leaving the cluster. */
  kill(): Promise<void>;
}

/** Options of {@link startNode}; durations in ms. */
export interface NodeOptions {
  /** `--max-connections-per-user`. Default: 5. */
  maxPerUser?: number;
  /** `--node-heartbeat`. Default: 500. */
  heartbeat?: number;
  /** `--node-ttl`. Default: 2,000. */
  nodeTtl?: number;
}

/**
 * Starts `wsengine hub` on a free port against `url` with the run's `prefix`, and waits until it listens. The
 * process never outlives the test process (it exits when its stdin closes, see test/helpers/exit-with-parent.mjs).
 */
export async function startNode(broker: 'redis' | 'nats', url: string, prefix: string, options: NodeOptions = {}): Promise<HubNode> {
  const args = serviceArgs([
    `--${broker}`, url,
    '--broker-prefix', prefix,
    '--max-connections-per-user', String(options.maxPerUser ?? 5),
    '--node-heartbeat', String(options.heartbeat ?? 500),
    '--node-ttl', String(options.nodeTtl ?? 2000),
    '--inbound-rate', '0',
    '--shutdown-timeout', '2000',
  ]);
  const service: ServiceProcess = await startService(args, {}, 90_000, { exitWithParent: true });
  const ended = (): boolean => service.child.exitCode !== null || service.child.signalCode !== null;
  return {
    port: service.port,
    url: service.url,
    proc: service.child,
    output: service.output,
    async stop() {
      if (ended()) return;
      const timer = setTimeout(() => service.child.kill('SIGKILL'), 5000);
      await service.stop('SIGTERM');
      clearTimeout(timer);
    },
    async kill() {
      if (!ended()) await service.stop('SIGKILL');
    },
  };
}

/** `POST /api/publish` on a hub; resolves with the reply (status 200), rejects with the status otherwise. */
export async function publish(node: HubNode, topic: string, data: unknown, type = 'msg'): Promise<{ seq: number; epoch: string }> {
  const r = await api(node, 'POST', '/api/publish', { topic, type, data });
  if (r.status !== 200) throw Object.assign(new Error(`publish answered ${r.status}: ${JSON.stringify(r.body)}`), { status: r.status });
  return r.body as { seq: number; epoch: string };
}

/** `POST` of the HTTP API that must answer 200 (`/api/send`, `/api/broadcast`, …). */
export async function apiOk(node: HubNode, path: string, body: unknown): Promise<any> {
  const r = await api(node, 'POST', path, body);
  if (r.status !== 200) throw new Error(`${path} answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** `GET /api/presence` of a topic on a hub. */
export async function presenceOf(node: HubNode, topic: string): Promise<{ users: Record<string, number>; connections: number }> {
  const r = await api(node, 'GET', `/api/presence?topic=${encodeURIComponent(topic)}`);
  if (r.status !== 200) throw new Error(`presence answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body as { users: Record<string, number>; connections: number };
}

/** A counter of a hub's `GET /metrics` (0 when absent). */
export async function metric(node: HubNode, name: string): Promise<number> {
  const r = await api(node, 'GET', '/metrics');
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
  const line = String(r.body).split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

export interface Frame {
  type: string;
  data?: any;
  request_id?: unknown;
  topic?: string;
  tenant?: string;
  seq?: number;
  epoch?: string;
}

/** A native-protocol client: every frame received in `frames`, requests awaited by request_id. */
export class Client {
  readonly frames: Frame[] = [];
  closeCode: number | null = null;
  private nextId = 0;
  private waiters: Array<() => void> = [];
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      this.frames.push(JSON.parse(String(d)) as Frame);
      this.wake();
    });
    ws.on('close', (code) => {
      this.closeCode = code;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Connects to a hub's `/ws` as `user` (a JWT signed with the tests' secret). */
  static open(port: number, user: string): Promise<Client> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${encodeURIComponent(tokenFor(user))}`);
    const c = new Client(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
    });
  }

  /** Waits until `pred` holds over the frames (or the socket closes, for `closed`). */
  async until(pred: (c: Client) => boolean, what: string, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred(this)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.frames.slice(-5))}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  async request(type: string, data: object): Promise<Frame> {
    const id = ++this.nextId;
    this.ws.send(JSON.stringify({ type, data, request_id: id }));
    let reply: Frame | undefined;
    await this.until(() => (reply = this.frames.find((f) => f.request_id === id)) !== undefined, `the reply to ${type}`);
    if (reply!.type === 'error') throw new Error(`${type} failed: ${JSON.stringify(reply!.data)}`);
    return reply!;
  }

  subscribe(topic: string, extra: object = {}): Promise<Frame> {
    return this.request('subscribe', { topic, ...extra });
  }

  /** Topic messages received (frames with a seq). */
  messages(topic?: string): Frame[] {
    return this.frames.filter((f) => typeof f.seq === 'number' && (topic === undefined || f.topic === topic));
  }

  gaps(): Frame[] {
    return this.frames.filter((f) => f.type === 'gap');
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((r) => {
      this.ws.once('close', () => r());
      this.ws.close(1000);
    });
  }
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}

/** A broker server of our own on a spare port, which a test may stop and start again. */
export class OwnBroker {
  private proc: ChildProcess | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'wsengine-broker-'));
  monitorPort = 0;
  private constructor(readonly kind: 'redis' | 'nats', readonly port: number) {}

  /** A server on a spare port, started unless `start: false` (then only its port is chosen: start it later). */
  static async create(kind: 'redis' | 'nats', options: { start?: boolean } = {}): Promise<OwnBroker> {
    const b = new OwnBroker(kind, await freePort());
    if (kind === 'nats') b.monitorPort = await freePort();
    if (options.start !== false) await b.start();
    return b;
  }

  get url(): string {
    return this.kind === 'redis' ? `redis://127.0.0.1:${this.port}` : `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const args =
      this.kind === 'redis'
        ? ['redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir]]
        : ['nats-server', ['-a', '127.0.0.1', '-p', String(this.port), '-m', String(this.monitorPort), '-js', '-sd', this.dir]];
    const proc = spawn(args[0] as string, args[1] as string[], { stdio: 'ignore' });
    this.proc = proc;
    // Never outlive the test process, whatever path it ends by.
    const kill = (): void => void proc.kill('SIGKILL');
    const onSignal = (): void => {
      kill();
      process.exit(1);
    };
    process.once('exit', kill);
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    proc.once('exit', () => {
      process.removeListener('exit', kill);
      process.removeListener('SIGTERM', onSignal);
      process.removeListener('SIGINT', onSignal);
    });
    const deadline = Date.now() + 15_000;
    for (;;) {
      const ok = await new Promise<boolean>((r) => {
        const s = net.connect(this.port, '127.0.0.1', () => {
          s.destroy();
          r(true);
        });
        s.once('error', () => r(false));
      });
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`${this.kind} server on port ${this.port} did not start`);
      await new Promise((r) => setTimeout(r, 100));
    }
    if (this.kind === 'nats') await new Promise((r) => setTimeout(r, 500)); // JetStream readiness
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (p === null || p.exitCode !== null) return;
    await new Promise<void>((r) => {
      p.once('exit', () => r());
      p.kill('SIGKILL');
    });
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A unique prefix for one test run, so parallel runs never share keys, channels, subjects or streams. */
export function runPrefix(name: string): string {
  return `wst${name}${process.pid}${Date.now().toString(36)}`;
}

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/** Removes every key (Redis) or stream and bucket (NATS) of a test run's prefix. */
export async function cleanupBroker(broker: 'redis' | 'nats', url: string, prefix: string): Promise<void> {
  if (broker === 'redis') {
    const { createClient } = await import('redis');
    const c = createClient({ url });
    await c.connect();
    let cursor = '0';
    do {
      const [next, keys] = await c.sendCommand<[string, string[]]>(['SCAN', cursor, 'MATCH', `${prefix}:*`, 'COUNT', '1000']);
      cursor = next;
      if (keys.length > 0) await c.sendCommand(['DEL', ...keys]);
    } while (cursor !== '0');
    await c.close();
    return;
  }
  const { connect } = await import('nats');
  const nc = await connect({ servers: url });
  const jsm = await nc.jetstreamManager();
  for (const name of [`${prefix}_hub`, `KV_${prefix}_users`, `KV_${prefix}_presence`, `KV_${prefix}_nodes`]) await jsm.streams.delete(name).catch(() => {});
  await nc.close();
}

/** Raw Redis command against a server (for PUBSUB checks). */
export async function redisCommand<T>(url: string, args: string[]): Promise<T> {
  const { createClient } = await import('redis');
  const c = createClient({ url });
  await c.connect();
  try {
    return await c.sendCommand<T>(args);
  } finally {
    await c.close();
  }
}

/** The subscriptions on a NATS server (its monitoring port), across all connections, with the messages each received. */
export async function natsSubscriptions(monitorPort: number): Promise<{ subject: string; msgs: number }[]> {
  const r = await fetch(`http://127.0.0.1:${monitorPort}/connz?subs=detail`);
  const j = (await r.json()) as { connections?: { subscriptions_list_detail?: { subject: string; msgs: number }[] }[] };
  return (j.connections ?? []).flatMap((c) => c.subscriptions_list_detail ?? []);
}

/** Checks a client's topic messages: per topic and epoch, contiguous seqs, each once, except where a gap frame covers the hole. */
export function checkSequence(c: Client, topic: string): { delivered: number; duplicates: number; holes: number; epochs: number } {
  const gaps = c.gaps().map((g) => g.data as { topic: string; epoch: string; from: number; to: number }).filter((g) => g.topic === topic);
  let last: { epoch: string; seq: number } | null = null;
  let duplicates = 0;
  let holes = 0;
  let epochs = 0;
  const seen = new Set<string>();
  for (const m of c.messages(topic)) {
    const k = `${m.epoch}/${m.seq}`;
    if (seen.has(k)) duplicates++;
    seen.add(k);
    if (last === null || last.epoch !== m.epoch) {
      epochs++;
      last = { epoch: m.epoch!, seq: m.seq! };
      continue;
    }
    if (m.seq! > last.seq + 1) {
      const covered = gaps.some((g) => g.epoch === m.epoch && g.from <= last!.seq + 1 && g.to >= m.seq! - 1);
      if (!covered) holes++;
    }
    last = { epoch: m.epoch!, seq: Math.max(last.seq, m.seq!) };
  }
  return { delivered: seen.size, duplicates, holes, epochs };
}
