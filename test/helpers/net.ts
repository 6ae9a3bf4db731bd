/** Socket-level test helpers: raw TCP peers that speak (or abuse) the protocol by hand. */
import { connect as netConnect, type Socket } from 'node:net';
import type { EventEmitter } from 'node:events';
import { HeadParser, type HttpHead } from '../../lib/index.js';

export const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

export function upgradeHead(path = '/', extra: string[] = []): string {
  return [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13', ...extra, '', ''].join('\r\n');
}

/** Resolves when `emitter` emits `event`, rejects after `ms`. */
export function once<T extends unknown[] = unknown[]>(emitter: EventEmitter, event: string, ms = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), ms);
    emitter.once(event, (...args: unknown[]) => {
      clearTimeout(timer);
      resolve(args as T);
    });
  });
}

export interface RawPeer {
  socket: Socket;
  /** Every byte received after the response head. */
  received(): Buffer;
  /** Resolves when the socket closes, with the time it took. */
  closed: Promise<number>;
}

/** Opens a TCP connection, optionally writes `data`, and collects what comes back. */
export async function rawConnect(port: number, data?: string | Buffer): Promise<RawPeer & { all(): Buffer }> {
  const socket = netConnect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  const start = Date.now();
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - start)));
  if (data !== undefined) socket.write(data);
  const all = (): Buffer => Buffer.concat(chunks);
  return { socket, closed, all, received: all };
}

/** Completes a handshake by hand; resolves with the response head and a function returning later bytes. */
export async function rawUpgrade(port: number, path = '/', extra: string[] = []): Promise<RawPeer & { head: HttpHead }> {
  const socket = netConnect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  await once(socket, 'connect');
  const closed = new Promise<number>((resolve) => {
    const start = Date.now();
    socket.once('close', () => resolve(Date.now() - start));
  });
  const parser = new HeadParser('response');
  const after: Buffer[] = [];
  let head: HttpHead | null = null;
  const headPromise = new Promise<HttpHead>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      if (head !== null) return void after.push(chunk);
      head = parser.push(chunk);
      if (head !== null) {
        if (parser.rest.length) after.push(Buffer.from(parser.rest));
        resolve(head);
      }
    });
    socket.once('close', () => reject(new Error('closed before the response head')));
  });
  socket.write(upgradeHead(path, extra));
  const h = await headPromise;
  return { socket, head: h, closed, received: () => Buffer.concat(after) };
}

/** Waits until `predicate()` holds, polling every 10 ms, failing after `ms`. */
export async function until(predicate: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Decodes the server's unmasked frames from raw bytes: [opcode, payload][]. */
export function decodeFrames(bytes: Buffer): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    let len = bytes[at + 1] & 0x7f;
    let p = at + 2;
    if (len === 126) {
      len = bytes.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      len = Number(bytes.readBigUInt64BE(p));
      p += 8;
    }
    if (p + len > bytes.length) break;
    out.push([bytes[at] & 0x0f, bytes.subarray(p, p + len)]);
    at = p + len;
  }
  return out;
}
