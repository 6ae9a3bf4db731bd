/**
 * Helpers shared by the interop tests: bounded waits, an inbox that records what a peer (ours or a foreign one)
 * receives, and a server fixture on 127.0.0.1 with an ephemeral port.
 */
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import {
  createServer,
  type IncomingUpgrade,
  type ServerOptions,
  type WebSocketConnection,
  type WebSocketServer,
} from '../../lib/index.js';

/** Default bound for a single wait in these tests: generous, but a hang fails instead of stalling the run. */
export const WAIT = 10_000;

/** Rejects with a descriptive error when `promise` has not settled within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A FIFO that hands items to waiters, each wait bounded by a timeout. */
export class Inbox<T> {
  private readonly items: T[] = [];
  private readonly waiters: Array<(item: T) => void> = [];
  constructor(private readonly name = 'item') {}

  push(item: T): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.items.push(item);
  }

  /** Items received and not yet taken. */
  get size(): number {
    return this.items.length;
  }

  next(ms = WAIT, label = this.name): Promise<T> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift() as T);
    let waiter: ((item: T) => void) | undefined;
    const pending = new Promise<T>((resolve) => {
      waiter = resolve;
      this.waiters.push(resolve);
    });
    return withTimeout(pending, ms, label).catch((error: unknown) => {
      const i = waiter ? this.waiters.indexOf(waiter) : -1;
      if (i !== -1) this.waiters.splice(i, 1);
      throw error;
    });
  }
}

export interface Received {
  data: Buffer;
  isBinary: boolean;
}

export interface Closed {
  code: number;
  reason: string;
}

/** What one endpoint observed: messages, pings, pongs, errors and its close. */
export interface Peer {
  messages: Inbox<Received>;
  pings: Inbox<Buffer>;
  pongs: Inbox<Buffer>;
  errors: Error[];
  /** Resolves with the close code and reason the endpoint reported. */
  closed: Promise<Closed>;
  /** `closed`, bounded. */
  waitClosed(ms?: number): Promise<Closed>;
}

function toBuffer(data: unknown): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data as Buffer[]);
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (typeof data === 'string') return Buffer.from(data);
  throw new TypeError(`unexpected message data: ${typeof data}`);
}

/**
 * Records the events of an emitter that speaks the `message(data, isBinary)` / `ping` / `pong` / `close(code,
 * reason)` / `error` dialect: our {@link WebSocketConnection} and the `ws` package's WebSocket both do.
 */
export function watch(emitter: EventEmitter, name = 'peer'): Peer {
  const messages = new Inbox<Received>(`${name} message`);
  const pings = new Inbox<Buffer>(`${name} ping`);
  const pongs = new Inbox<Buffer>(`${name} pong`);
  const errors: Error[] = [];
  emitter.on('message', (data: unknown, isBinary: boolean) => messages.push({ data: toBuffer(data), isBinary }));
  emitter.on('ping', (data: Buffer) => pings.push(Buffer.from(data)));
  emitter.on('pong', (data: Buffer) => pongs.push(Buffer.from(data)));
  emitter.on('error', (error: Error) => errors.push(error));
  const closed = new Promise<Closed>((resolve) => {
    emitter.once('close', (code: number, reason: string | Buffer) => resolve({ code, reason: String(reason ?? '') }));
  });
  return { messages, pings, pongs, errors, closed, waitClosed: (ms = WAIT) => withTimeout(closed, ms, `${name} close`) };
}

export interface Accepted {
  connection: WebSocketConnection;
  request: IncomingUpgrade;
  peer: Peer;
}

export interface ServerFixture {
  server: WebSocketServer;
  port: number;
  /** `ws://127.0.0.1:PORT` (no trailing slash). */
  base: string;
  /** Connections in the order they were accepted, each already watched. */
  accepted: Inbox<Accepted>;
  /** Closes the server, giving its connections `timeout` ms for the closing handshake. */
  close(timeout?: number): Promise<void>;
}

/** Starts our server on 127.0.0.1:0 with the heartbeat off (tests ping explicitly). */
export async function startServer(options: ServerOptions = {}): Promise<ServerFixture> {
  const accepted = new Inbox<Accepted>('server connection');
  const server = createServer({ heartbeat: false, ...options }, (connection, request) => {
    accepted.push({ connection, request, peer: watch(connection, 'server') });
  });
  const address = await server.listen(0, '127.0.0.1');
  let closing: Promise<void> | null = null;
  return {
    server,
    port: address.port,
    base: `ws://127.0.0.1:${address.port}`,
    accepted,
    close: (timeout = 2000) => (closing ??= withTimeout(server.close({ timeout }), timeout + WAIT, 'server close')),
  };
}

/** Deterministic-length random bytes. */
export function bytes(n: number): Buffer {
  return randomBytes(n);
}

/** A string of about `n` UTF-8 bytes mixing 1-, 2-, 3- and 4-byte characters. */
export function multibyteText(n: number): string {
  const unit = 'aé日🎉 Zß∑𝄞';
  const unitBytes = Buffer.byteLength(unit);
  return unit.repeat(Math.ceil(n / unitBytes));
}

/** Text samples that stress UTF-8: multibyte, astral, ZWJ sequences, NUL, BOM-like code points. */
export const TEXTS = [
  'hello',
  'héllo wörld',
  '日本語のテキスト',
  '🎉🚀 emoji 👩‍👩‍👧‍👦 and 🇫🇷',
  'nul \u0000 inside',
  '\ufeffbom and \u2028 separators \u2029',
  '𝄞 musical and 𐍈 gothic',
];

/** The part of a tap test the fixtures need: registering cleanup. */
export interface Teardown {
  teardown(fn: () => unknown): void;
}
