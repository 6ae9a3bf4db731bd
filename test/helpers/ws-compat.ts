/** Helpers of the wsengine/ws tests: servers on free ports, events awaited with a deadline, raw HTTP upgrades. */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer, type ServerOptions } from '../../lib/ws/index.js';

/** Generous: the suite runs on loaded 2-core machines. */
export const WAIT = 15_000;

/** Node's EventEmitter, or socket.io-client's emitter. */
export interface Emitter {
  once(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener: (...args: any[]) => void): unknown;
}

/** Resolves with the arguments of `emitter`'s next `event`; rejects after `ms`, or on `error` when `failOnError`. */
export function next<T extends unknown[] = unknown[]>(emitter: Emitter, event: string, ms = WAIT): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`timed out waiting for '${event}'`));
    }, ms);
    const on = (...args: unknown[]): void => {
      clearTimeout(timer);
      resolve(args as T);
    };
    emitter.once(event, on);
  });
}

/** A ws-style server listening on a free port of 127.0.0.1 (options as given, `port: 0` added). */
export async function listening(options: Omit<ServerOptions, 'port'> = {}): Promise<{ wss: WebSocketServer; port: number; url: string }> {
  const wss = new WebSocketServer({ ...options, port: 0, host: '127.0.0.1' });
  await next(wss, 'listening');
  const port = (wss.address() as AddressInfo).port;
  return { wss, port, url: `ws://127.0.0.1:${port}` };
}

/** A client, open. */
export async function connected(url: string, protocols?: string | string[], options?: ConstructorParameters<typeof WebSocket>[2]): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, options);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for open')), WAIT);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve();
    });
    ws.once('error', (error: Error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
  return ws;
}

/** Closes a server and every connection it has (ws's `close()` leaves them open). */
export async function shutdown(wss: WebSocketServer): Promise<void> {
  for (const ws of wss.clients ?? []) ws.terminate();
  await new Promise<void>((resolve) => wss.close(() => resolve()));
}

/** Sends a raw upgrade request; resolves with the response (status, headers, body) or the 101. */
export function rawUpgrade(
  port: number,
  headers: Record<string, string>,
  options: { method?: string; path?: string } = {},
): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method: options.method ?? 'GET',
      path: options.path ?? '/',
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', ...headers },
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error('timed out waiting for the upgrade response'));
    }, WAIT);
    req.on('upgrade', (res, socket) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end();
  });
}

export const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
export const UPGRADE = { 'Sec-WebSocket-Key': KEY, 'Sec-WebSocket-Version': '13' };
