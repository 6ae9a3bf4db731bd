/** Child processes under test: the Autobahn testee server and client, started as the suite's runner starts them. */
import { type ChildProcess, spawn } from 'node:child_process';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import path from 'node:path';
import { delay } from './wire.js';

export const PROJECT = path.resolve(import.meta.dirname, '../..');

/** A port that was free a moment ago (bound to 0, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface Child {
  process: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  exited: Promise<number | string>;
  /** Kills the process (by its own pid) if it is still running. */
  kill(): void;
}

function start(script: string, args: string[]): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(PROJECT, script), ...args], {
    cwd: PROJECT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  return {
    process: child,
    output: () => output,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** Starts `autobahn/testee-server.ts` on a free port and waits (at most `ms`) until it accepts connections. */
export async function startTesteeServer(ms = 20_000): Promise<Child & { port: number }> {
  const port = await freePort();
  const child = start('autobahn/testee-server.ts', [String(port)]);
  const deadline = Date.now() + ms;
  let exited = false;
  void child.exited.then(() => (exited = true));
  while (!(await canConnect(port))) {
    if (exited) throw new Error(`testee server exited before listening:\n${child.output()}`);
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`testee server not listening on ${port} after ${ms} ms:\n${child.output()}`);
    }
    await delay(50);
  }
  return Object.assign(child, { port });
}

/** Starts `autobahn/testee-client.ts` against `url`. */
export function startTesteeClient(url: string): Child {
  return start('autobahn/testee-client.ts', [url]);
}
