/**
 * Raw WebSocket wire tools for the Autobahn-section tests: a frame encoder that can build any frame (masked or not,
 * reserved bits, reserved opcodes), an incremental frame reader for what the other side sends, and a {@link Peer}
 * that owns one TCP socket after the opening handshake and lets a test wait, with a bound, for frames and for the
 * TCP close. Written independently of lib/: the point is to check the engine from the outside.
 */
import { createHash, randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { MASK } from '../helpers/core.js';

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa } as const;

export const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function acceptFor(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

export interface FrameSpec {
  opcode: number;
  payload?: Buffer | string;
  /** Default true. */
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  /** A 4-byte key, or null for an unmasked (server) frame. Default: the fixed test key {@link MASK}. */
  mask?: readonly number[] | null;
}

/** Encodes one frame exactly as specified (minimal length encoding); masks with a fast word loop. */
export function frame(spec: FrameSpec): Buffer {
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload) : (spec.payload ?? Buffer.alloc(0));
  const mask = spec.mask === undefined ? MASK : spec.mask;
  const n = payload.length;
  const lenBytes = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const head = 2 + lenBytes + (mask ? 4 : 0);
  const out = Buffer.allocUnsafe(head + n);
  out[0] = (spec.fin === false ? 0 : 0x80) | (spec.rsv1 ? 0x40 : 0) | (spec.rsv2 ? 0x20 : 0) | (spec.rsv3 ? 0x10 : 0) | (spec.opcode & 0x0f);
  const m = mask ? 0x80 : 0;
  if (lenBytes === 0) out[1] = m | n;
  else if (lenBytes === 2) {
    out[1] = m | 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = m | 127;
    out.writeBigUInt64BE(BigInt(n), 2);
  }
  if (!mask) {
    payload.copy(out, head);
    return out;
  }
  for (let i = 0; i < 4; i++) out[2 + lenBytes + i] = mask[i];
  applyMask(payload, out, head, mask);
  return out;
}

/** Writes `src` XOR `mask` into `dst` at `offset` (the key starting at src[0]). */
function applyMask(src: Buffer, dst: Buffer, offset: number, mask: readonly number[]): void {
  const n = src.length;
  const words = n >>> 2;
  const key = Buffer.from(mask).readInt32LE(0);
  for (let w = 0; w < words; w++) dst.writeInt32LE(src.readInt32LE(w * 4) ^ key, offset + w * 4);
  for (let i = words * 4; i < n; i++) dst[offset + i] = src[i] ^ mask[i & 3];
}

/** Shorthands for masked client frames. */
export const text = (payload: Buffer | string, fin = true): Buffer => frame({ opcode: OP.TEXT, payload, fin });
export const binary = (payload: Buffer | string, fin = true): Buffer => frame({ opcode: OP.BINARY, payload, fin });
export const cont = (payload: Buffer | string, fin = true): Buffer => frame({ opcode: OP.CONT, payload, fin });
export const ping = (payload: Buffer | string = ''): Buffer => frame({ opcode: OP.PING, payload });
export const pong = (payload: Buffer | string = ''): Buffer => frame({ opcode: OP.PONG, payload });
export function closeFrame(code?: number, reason: Buffer | string = '', mask: readonly number[] | null = MASK): Buffer {
  const r = typeof reason === 'string' ? Buffer.from(reason) : reason;
  const payload = code === undefined ? Buffer.alloc(0) : Buffer.concat([Buffer.from([code >> 8, code & 0xff]), r]);
  return frame({ opcode: OP.CLOSE, payload, mask });
}

/** Splits a message into fragment frames of `size` payload bytes (the last may be shorter; at least one frame). */
export function fragments(opcode: number, payload: Buffer, size: number, mask: readonly number[] | null = MASK): Buffer {
  const frames: Buffer[] = [];
  let at = 0;
  do {
    const end = Math.min(at + size, payload.length);
    frames.push(frame({ opcode: at === 0 ? opcode : OP.CONT, payload: payload.subarray(at, end), fin: end === payload.length, mask }));
    at = end;
  } while (at < payload.length);
  return Buffer.concat(frames);
}

export interface Frame {
  fin: boolean;
  rsv1: boolean;
  rsv2: boolean;
  rsv3: boolean;
  opcode: number;
  masked: boolean;
  /** The masking key when masked. */
  key: Buffer | null;
  /** Unmasked payload. */
  payload: Buffer;
}

/** The close code of a close frame (1005 when it carries none, -1 for a malformed 1-byte payload). */
export function closeCodeOf(f: Frame): number {
  if (f.payload.length === 0) return 1005;
  if (f.payload.length === 1) return -1;
  return f.payload.readUInt16BE(0);
}

export function describe(f: Frame): string {
  const name = ({ 0: 'cont', 1: 'text', 2: 'binary', 8: 'close', 9: 'ping', 10: 'pong' } as Record<number, string>)[f.opcode] ?? `op${f.opcode}`;
  const body = f.opcode === OP.CLOSE ? `code ${closeCodeOf(f)}` : `${f.payload.length} bytes`;
  return `${name}${f.fin ? '' : ' (fin=0)'}${f.rsv1 ? ' rsv1' : ''} ${body}`;
}

/** Incremental frame parser: copes with any chunking, copies a big frame once. */
export class FrameReader {
  readonly frames: Frame[] = [];
  private chunks: Buffer[] = [];
  private total = 0;
  private need = 2;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.total += chunk.length;
    while (this.total >= this.need && this.step());
  }

  /** Bytes received that do not (yet) form a complete frame. */
  get pendingBytes(): number {
    return this.total;
  }

  private step(): boolean {
    let head = this.chunks[0];
    if (head.length < Math.min(14, this.total)) head = this.flatten();
    const b1 = head[1];
    const len7 = b1 & 0x7f;
    const masked = (b1 & 0x80) !== 0;
    const headLength = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
    if (this.total < headLength) {
      this.need = headLength;
      return false;
    }
    let length = len7;
    if (len7 === 126) length = head.readUInt16BE(2);
    else if (len7 === 127) length = Number(head.readBigUInt64BE(2));
    const size = headLength + length;
    if (this.total < size) {
      this.need = size;
      return false;
    }
    const all = this.flatten();
    const b0 = all[0];
    const key = masked ? Buffer.from(all.subarray(headLength - 4, headLength)) : null;
    const payload = Buffer.from(all.subarray(headLength, size));
    if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
    this.frames.push({
      fin: (b0 & 0x80) !== 0,
      rsv1: (b0 & 0x40) !== 0,
      rsv2: (b0 & 0x20) !== 0,
      rsv3: (b0 & 0x10) !== 0,
      opcode: b0 & 0x0f,
      masked,
      key,
      payload,
    });
    const rest = all.subarray(size);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.total = rest.length;
    this.need = 2;
    return true;
  }

  private flatten(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.total)];
    return this.chunks[0];
  }
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * What carries the cases: `'h1'` (TCP, an HTTP/1.1 upgrade; the default) or `'h2'` (`AUTOBAHN_TRANSPORT=h2`: each
 * case is a WebSocket over an HTTP/2 stream, RFC 8441, on a cleartext h2c session of its own). Read at each use,
 * so a test file can set it before importing the sections (test/http2-autobahn-sections.test.ts).
 */
export function transport(): 'h1' | 'h2' {
  return process.env.AUTOBAHN_TRANSPORT === 'h2' ? 'h2' : 'h1';
}

/** A parsed HTTP/1.1 head (request or response), parsed here by hand. */
export interface Head {
  startLine: string;
  headers: Map<string, string[]>;
}

export function header(head: Head, name: string): string | undefined {
  const v = head.headers.get(name.toLowerCase());
  return v === undefined ? undefined : v.join(', ');
}

/** Splits off a complete head (up to CRLF CRLF); null while incomplete. */
export function parseHead(bytes: Buffer): { head: Head; rest: Buffer } | null {
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const headers = new Map<string, string[]>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const list = headers.get(name) ?? [];
    list.push(line.slice(colon + 1).trim());
    headers.set(name, list);
  }
  return { head: { startLine: lines[0], headers }, rest: Buffer.from(bytes.subarray(end + 4)) };
}

/**
 * One side of an established WebSocket connection, driven by hand. `role: 'client'` masks what it sends with the
 * fixed key; `'server'` sends unmasked frames. Everything received is parsed into {@link frames}.
 */
export class Peer {
  readonly reader = new FrameReader();
  /** Set when the TCP connection (over HTTP/2: the stream) has closed (either way). */
  closed = false;
  /** Set when the other side ended its half (FIN received; over HTTP/2, END_STREAM). */
  ended = false;
  private cursor = 0;
  private wakers = new Set<() => void>();

  constructor(
    /**
     * A TCP socket, or an HTTP/2 stream: then `session` is given, its session to destroy with it, or null when the
     * session is shared (the fuzzingserver's, where the client under test reuses one session for its cases).
     */
    readonly socket: Duplex,
    readonly role: 'client' | 'server',
    initial?: Buffer,
    readonly session?: http2.Http2Session | null,
  ) {
    (socket as Partial<import('node:net').Socket>).setNoDelay?.(true);
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      // A TCP socket without allowHalfOpen ends its side when the peer does; an HTTP/2 stream (half-open by design)
      // is made to do the same, so the stream closes as the TCP connection would.
      if (session !== undefined) socket.end();
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    if (initial && initial.length > 0) this.reader.push(initial);
  }

  get frames(): Frame[] {
    return this.reader.frames;
  }

  private wake(): void {
    for (const w of [...this.wakers]) w();
  }

  /** Waits until `predicate()` holds, re-checking on every socket event; rejects after `ms`. */
  waitFor(predicate: () => boolean, ms: number, what: string): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate()) return;
        done();
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        this.wakers.delete(check);
      };
      this.wakers.add(check);
    });
  }

  /** Whether something is still coming: the socket is open or unread frames are left. */
  get unread(): number {
    return this.frames.length - this.cursor;
  }

  /** The next frame not yet returned; rejects after `ms`, or at once when the TCP connection closed without one. */
  async next(ms = 5000): Promise<Frame> {
    await this.waitFor(() => this.unread > 0 || this.closed, ms, 'a frame');
    if (this.unread === 0) throw new Error(`connection closed before the next frame${this.reader.pendingBytes ? ` (${this.reader.pendingBytes} bytes of a partial frame left)` : ''}`);
    return this.frames[this.cursor++];
  }

  /** Frames not yet returned by {@link next}, consumed. */
  drain(): Frame[] {
    const out = this.frames.slice(this.cursor);
    this.cursor = this.frames.length;
    return out;
  }

  /** True when no frame (and no TCP close) arrives within `ms`. */
  async quietFor(ms: number): Promise<boolean> {
    try {
      await this.waitFor(() => this.unread > 0 || this.closed || this.ended, ms, 'quiet');
      return false;
    } catch {
      return true;
    }
  }

  /** Resolves true once TCP has closed, false when it is still open after `ms`. */
  async waitClosed(ms = 3000): Promise<boolean> {
    try {
      await this.waitFor(() => this.closed, ms, 'the TCP close');
      return true;
    } catch {
      return false;
    }
  }

  write(data: Buffer): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(data);
  }

  /** Writes `data` in chops of `size` bytes, pausing `pauseMs` between chops (0: back to back). */
  async writeChopped(data: Buffer, size: number, pauseMs = 0): Promise<void> {
    for (let at = 0; at < data.length; at += size) {
      this.write(data.subarray(at, Math.min(at + size, data.length)));
      if (pauseMs > 0) await delay(pauseMs);
    }
  }

  /** Sends a frame (masked when this side is a client). */
  send(spec: FrameSpec): void {
    this.write(frame({ mask: this.role === 'client' ? MASK : null, ...spec }));
  }

  destroy(): void {
    this.socket.destroy();
    this.session?.destroy();
  }
}

export interface Upgraded {
  peer: Peer;
  response: Head;
  status: number;
}

/**
 * Connects to 127.0.0.1:`port` and performs the opening handshake by hand (with `extensions` offered when given).
 * Checks the 101 and Sec-WebSocket-Accept; rejects on anything else, or after `ms`.
 */
export async function upgrade(port: number, options: { path?: string; extensions?: string; ms?: number } = {}): Promise<Upgraded> {
  if (transport() === 'h2') return connectStream(port, options);
  const ms = options.ms ?? 5000;
  const key = randomBytes(16).toString('base64');
  const socket = netConnect({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  const lines = [
    `GET ${options.path ?? '/'} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${key}`,
    'Sec-WebSocket-Version: 13',
    ...(options.extensions !== undefined ? [`Sec-WebSocket-Extensions: ${options.extensions}`] : []),
    '',
    '',
  ];
  return new Promise<Upgraded>((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new Error(`no upgrade response within ${ms} ms`)), ms);
    const fail = (error: Error): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.destroy();
      reject(error);
    };
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const parsed = parseHead(buffered);
      if (parsed === null) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', fail);
      const status = Number(parsed.head.startLine.split(' ')[1]);
      if (status !== 101) return fail(new Error(`expected 101, got: ${parsed.head.startLine}`));
      if (header(parsed.head, 'sec-websocket-accept') !== acceptFor(key)) return fail(new Error('wrong Sec-WebSocket-Accept'));
      resolve({ peer: new Peer(socket, 'client', parsed.rest), response: parsed.head, status });
    };
    const onClose = (): void => fail(new Error('connection closed during the opening handshake'));
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.on('error', fail);
    socket.write(lines.join('\r\n'));
  });
}

/**
 * The opening handshake over HTTP/2 (RFC 8441): an h2c session of its own, an extended CONNECT, a 200 (no
 * Sec-WebSocket-Accept). The response is shown as a {@link Head} (`HTTP/2 200` and the lower-case headers).
 */
async function connectStream(port: number, options: { path?: string; extensions?: string; ms?: number }): Promise<Upgraded> {
  const ms = options.ms ?? 5000;
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  return new Promise<Upgraded>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`no CONNECT response within ${ms} ms`)), ms);
    const fail = (error: Error): void => {
      clearTimeout(timer);
      session.destroy();
      reject(error);
    };
    session.once('close', () => fail(new Error('session closed during the opening handshake')));
    session.once('remoteSettings', (settings) => {
      if (!settings.enableConnectProtocol) return fail(new Error('the server did not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL'));
      const stream = session.request(
        {
          ':method': 'CONNECT',
          ':protocol': 'websocket',
          ':scheme': 'http',
          ':path': options.path ?? '/',
          ':authority': `127.0.0.1:${port}`,
          'sec-websocket-version': '13',
          ...(options.extensions !== undefined ? { 'sec-websocket-extensions': options.extensions } : {}),
        },
        { endStream: false },
      );
      stream.on('error', () => {});
      stream.once('close', () => fail(new Error('stream closed during the opening handshake')));
      stream.once('response', (h) => {
        clearTimeout(timer);
        stream.removeAllListeners('close');
        session.removeAllListeners('close');
        const status = Number(h[':status']);
        if (status !== 200) return fail(new Error(`expected 200, got ${status}`));
        const headers = new Map<string, string[]>();
        for (const [name, value] of Object.entries(h)) {
          if (name.startsWith(':') || value === undefined) continue;
          headers.set(name, Array.isArray(value) ? value : [String(value)]);
        }
        resolve({ peer: new Peer(stream, 'client', undefined, session), response: { startLine: `HTTP/2 ${status}`, headers }, status });
      });
    });
  });
}
