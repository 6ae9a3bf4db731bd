/**
 * Starts the hub service as a user would: the package's `bin` (dist/cli/wsengine.js, built by `npm test` before the
 * tests) in a child process on a real port, and reads the URL from its start-up log line.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { signJwt } from '../../lib/hub/jwt.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(ROOT, 'dist', 'cli', 'wsengine.js');

/** A fixed test secret (≥ 32 characters) and API key. */
export const SECRET = 'test-secret-0123456789-abcdefghijklmnop';
export const API_KEY = 'test-api-key-42';

/** A HS256 token for `user` signed with {@link SECRET}. */
export function tokenFor(user: string, options: { expiresIn?: number; tenants?: string[] } = {}): string {
  return signJwt({ sub: user, ...(options.tenants ? { tenants: options.tenants } : {}) }, SECRET, { expiresIn: options.expiresIn ?? 3600 });
}

export interface ServiceProcess {
  child: ChildProcess;
  /** `http://127.0.0.1:port/` (`https://` when started with --tls-cert/--tls-key) */
  url: string;
  port: number;
  /** `ws://127.0.0.1:port/ws` (`wss://` with TLS) */
  wsUrl: string;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit status (or signal) once the process exits. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` (default SIGTERM) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Waits until the output contains `text` (or matches it). */
  waitForOutput(text: string | RegExp, timeout?: number): Promise<void>;
}

/**
 * Preloaded into a bin started with `exitWithParent`: the process shuts down (SIGTERM, then exit) when its stdin
 * closes, which happens whenever the test process ends, even by SIGKILL. The bin itself is unchanged.
 */
const EXIT_WITH_PARENT = join(ROOT, 'test', 'helpers', 'exit-with-parent.mjs');

/** Runs the bin with `args` (and `env` added to the environment) until it prints its URL. */
export async function startService(args: readonly string[], env: Record<string, string> = {}, timeout = 20_000, options: { exitWithParent?: boolean; cwd?: string } = {}): Promise<ServiceProcess> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run npm run build first (npm test does)`);
  const nodeArgs = options.exitWithParent === true ? ['--import', pathToFileURL(EXIT_WITH_PARENT).href] : [];
  const child = spawn(process.execPath, [...nodeArgs, BIN, 'hub', ...args], { cwd: options.cwd, env: { ...process.env, ...env }, stdio: [options.exitWithParent === true ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  child.stdin?.on('error', () => {});
  let output = '';
  const watchers = new Set<() => void>();
  const onData = (chunk: Buffer): void => {
    output += chunk.toString('utf8');
    for (const w of watchers) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const waitForOutput = (text: string | RegExp, ms = timeout): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (typeof text === 'string' ? output.includes(text) : text.test(output)) {
          watchers.delete(check);
          clearTimeout(timer);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        watchers.delete(check);
        reject(new Error(`no ${String(text)} in the service output within ${ms} ms:\n${output}`));
      }, ms);
      watchers.add(check);
      void exited.then(() => setImmediate(() => {
        if (watchers.has(check)) {
          watchers.delete(check);
          clearTimeout(timer);
          reject(new Error(`the service exited before printing ${String(text)}:\n${output}`));
        }
      }));
      check();
    });
  await waitForOutput(/event=start url=https?:\/\/[^ ]+/);
  const url = /event=start url=(https?:\/\/[^ ]+)/.exec(output)![1];
  const port = Number(new URL(url).port);
  return {
    child,
    url,
    port,
    wsUrl: `${url.startsWith('https:') ? 'wss' : 'ws'}://127.0.0.1:${port}/ws`,
    output: () => output,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    waitForOutput,
  };
}

/** Runs the bin to completion (for --help and configuration errors). */
export function runBin(args: readonly string[], env: Record<string, string> = {}, cwd?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The standard arguments: a random port, the test secret and key, quick heartbeats off the critical path. */
export function serviceArgs(extra: readonly string[] = [], port = 0): string[] {
  return ['--port', String(port), '--jwt-secret', SECRET, '--api-key', API_KEY, ...extra];
}

/** fetch against the service with the API key (unless `key` is given, or null for none). */
export async function api(service: { url: string }, method: string, path: string, body?: unknown, key: string | null = API_KEY): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (key !== null) headers.Authorization = `Bearer ${key}`;
  let payload: string | undefined;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(new URL(path, service.url), { method, headers, body: payload });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON (metrics)
  }
  return { status: res.status, body: parsed, headers: res.headers };
}
