/**
 * Request/response over the Node IPC channel between the orchestrator and its children (server, load generators).
 *
 * The channel uses `serialization: 'advanced'` (structured clone), so typed arrays (frames, latency samples) travel
 * as bytes, not JSON.
 *
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

interface Request {
  id: number;
  op: string;
  args: unknown;
}
interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The soft and hard limits on open files (`ulimit -n`), as children inherit them. */
export function fdLimits(): { soft: number; hard: number } {
  const out = spawnSync('sh', ['-c', 'ulimit -Sn; ulimit -Hn'], { encoding: 'utf8' });
  const [soft, hard] = out.stdout.trim().split(/\s+/).map((s) => (s === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(s)));
  return { soft: Number.isFinite(soft) ? soft : 1024, hard: Number.isFinite(hard) ? hard : 1024 };
}

export interface SpawnOptions {
  /** Display name, for errors. */
  name: string;
  env?: NodeJS.ProcessEnv;
  /** Node flags before `--import tsx` (`--expose-gc`, `--cpu-prof`, …). */
  nodeFlags?: string[];
  /** Raise the soft open-files limit to this (within the hard limit) through `sh -c 'ulimit -n N; exec node …'`. */
  fdLimit?: number;
  /** Run on these CPUs only (`taskset -c LIST`), e.g. `0`. */
  cpus?: string;
  /** A command prefix run around the pinned node process, e.g. `perf record … --` (see `BENCH_PERF` in `e2e.ts`). */
  wrap?: string[];
}

/** A child process answering requests. */
export class Child {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; op: string }>();
  private exited = false;
  private readonly exitPromise: Promise<void>;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    child.on('message', (message: Reply) => {
      const p = this.pending.get(message.id);
      if (p === undefined) return;
      this.pending.delete(message.id);
      if (message.ok) p.resolve(message.result);
      else p.reject(new Error(`${this.name} ${p.op}: ${message.error}`));
    });
    this.exitPromise = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exited = true;
        for (const p of this.pending.values()) p.reject(new Error(`${this.name} exited (${signal ?? code}) during ${p.op}`));
        this.pending.clear();
        resolve();
      });
    });
  }

  /** Starts `file` (a TypeScript module run through tsx) with an IPC channel; resolves once it answered a ping. */
  static async spawn(file: string, options: SpawnOptions): Promise<Child> {
    const args = [...(options.nodeFlags ?? []), '--import', 'tsx', file];
    let command = process.execPath;
    let argv = args;
    if (options.cpus !== undefined) {
      argv = ['-c', options.cpus, command, ...argv];
      command = 'taskset';
    }
    if (options.wrap !== undefined && options.wrap.length > 0) {
      argv = [...options.wrap.slice(1), command, ...argv];
      command = options.wrap[0];
    }
    if (options.fdLimit !== undefined) {
      // `ulimit -n` in a shell that then execs node: the IPC descriptor is inherited through the exec.
      argv = ['-c', 'ulimit -n "$0" && exec "$@"', String(options.fdLimit), command, ...argv];
      command = 'sh';
    }
    const child = spawn(command, argv, {
      cwd: PROJECT_ROOT,
      env: options.env ?? process.env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    const c = new Child(options.name, child);
    await c.call('ping');
    return c;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  call<T = unknown>(op: string, args: unknown = {}, timeoutMs = 120_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.name} has exited`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name} ${op}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        op,
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ id, op, args } satisfies Request);
    });
  }

  /** Asks the child to exit (so that `--cpu-prof` writes its profile), killing it if it does not within 10 s. */
  async exit(): Promise<void> {
    if (this.exited) return;
    this.call('exit').catch(() => {});
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exitPromise;
    clearTimeout(timer);
  }
}

/** Child side: answers requests with the handlers; `ping` and `exit` are built in. Exits when the parent goes. */
export function serve(handlers: Record<string, (args: never) => unknown>): void {
  const send = (reply: Reply): void => {
    process.send?.(reply);
  };
  process.on('message', (request: Request) => {
    if (request.op === 'ping') return send({ id: request.id, ok: true, result: 'pong' });
    if (request.op === 'exit') {
      send({ id: request.id, ok: true });
      setImmediate(() => process.exit(0));
      return;
    }
    const handler = handlers[request.op];
    if (handler === undefined) return send({ id: request.id, ok: false, error: `unknown op ${request.op}` });
    Promise.resolve()
      .then(() => handler(request.args as never))
      .then(
        (result) => send({ id: request.id, ok: true, result }),
        (error: unknown) => send({ id: request.id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
      );
  });
  process.on('disconnect', () => process.exit(0));
}
