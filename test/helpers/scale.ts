/**
 * Helpers of the scale-out tests: hub processes (`scale-node.ts`) and WebSocket clients speaking the native
 * protocol, and throw-away broker servers on spare ports for the restart tests.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const NODE_SCRIPT = fileURLToPath(new URL('./scale-node.ts', import.meta.url));

export interface HubNode {
  port: number;
  nodeId: string;
  proc: ChildProcess;
  stderr: string[];
  stop(): Promise<void>;
}

/** Starts one hub process on a free port and waits until it listens. */
export async function startNode(broker: 'redis' | 'nats', url: string, prefix: string, maxPerUser = 5): Promise<HubNode> {
  const proc = spawn(process.execPath, ['--import=tsx', NODE_SCRIPT, broker, url, prefix, String(maxPerUser)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`hub process did not start: ${stderr.join('')}`)), 30_000);
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(buf.slice(0, nl));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`hub process exited with ${code}: ${stderr.join('')}`));
    });
  });
  const { port, nodeId } = JSON.parse(line) as { port: number; nodeId: string };
  return {
    port,
    nodeId,
    proc,
    stderr,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
        setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
      }),
  };
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

  static open(port: number, user: string): Promise<Client> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/?token=${encodeURIComponent(user)}`);
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

  publish(topic: string, data: unknown, type = 'msg'): Promise<Frame> {
    return this.request('publish', { topic, type, data });
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

  static async create(kind: 'redis' | 'nats'): Promise<OwnBroker> {
    const b = new OwnBroker(kind, await freePort());
    if (kind === 'nats') b.monitorPort = await freePort();
    await b.start();
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
    this.proc = spawn(args[0] as string, args[1] as string[], { stdio: 'ignore' });
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
