/** Socket-level test helpers: raw TCP peers that speak (or abuse) the protocol by hand. */
import { connect as netConnect, type Socket } from 'node:net';
import type { EventEmitter } from 'node:events';
import http2 from 'node:http2';
import { HeadParser, type HttpHead } from '../../lib/index.js';
import { TRANSPORT } from './transport.js';

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

/**
 * Completes a handshake by hand; resolves with the response head and a function returning later bytes. Under
 * `WSENGINE_TEST_TRANSPORT=h2` (test/helpers/transport.ts) it is an extended CONNECT on an h2c session of its own,
 * and `socket` is the HTTP/2 stream (its head: status 200, lower-case headers).
 */
export async function rawUpgrade(port: number, path = '/', extra: string[] = []): Promise<RawPeer & { head: HttpHead }> {
  if (TRANSPORT === 'h2') return rawStream(port, path, extra);
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

/** {@link rawUpgrade} over HTTP/2: `extra` header lines become lower-case request headers of the CONNECT. */
async function rawStream(port: number, path: string, extra: string[]): Promise<RawPeer & { head: HttpHead }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  await once(session, 'remoteSettings');
  const headers: http2.OutgoingHttpHeaders = {
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': 'http',
    ':path': path,
    ':authority': `127.0.0.1:${port}`,
    'sec-websocket-version': '13',
  };
  for (const line of extra) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const stream = session.request(headers, { endStream: false });
  stream.on('error', () => {});
  const start = Date.now();
  const closed = new Promise<number>((resolve) =>
    stream.once('close', () => {
      session.close();
      resolve(Date.now() - start);
    }),
  );
  // A TCP peer's socket ends its side when the server ends; the stream is made to do the same.
  stream.on('end', () => stream.end());
  const after: Buffer[] = [];
  stream.on('data', (c: Buffer) => after.push(c));
  const [response] = await once<[http2.IncomingHttpHeaders]>(stream, 'response');
  const map = new Map<string, string[]>();
  for (const [name, value] of Object.entries(response)) {
    if (!name.startsWith(':') && value !== undefined) map.set(name, Array.isArray(value) ? value : [String(value)]);
  }
  const head: HttpHead = { method: '', target: '', version: 'HTTP/2', status: Number(response[':status']), statusText: '', headers: map };
  return { socket: stream as unknown as Socket, head, closed, received: () => Buffer.concat(after) };
}
