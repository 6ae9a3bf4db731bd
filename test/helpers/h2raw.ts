/**
 * A raw HTTP/2 client for the tests that need what node:http2's client will not send (upper-case header names, a
 * `:protocol` to a server that did not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL): frames written by hand, header
 * blocks as HPACK literals without indexing or Huffman coding (RFC 7541 §6.2.2), and the server's frames reported
 * by type. Only what those tests need: one request stream, the server's answer as frames.
 */
import { connect as netConnect, type Socket } from 'node:net';

export const FRAME = { DATA: 0x0, HEADERS: 0x1, RST_STREAM: 0x3, SETTINGS: 0x4, PING: 0x6, GOAWAY: 0x7, WINDOW_UPDATE: 0x8 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export interface RawFrame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

function int(value: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

/** A header block of literal fields without indexing, new names, no Huffman (names sent exactly as given). */
export function headerBlock(fields: Array<[string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'latin1');
    parts.push(Buffer.from([0x00, ...int(n.length, 7, 0)]), n, Buffer.from(int(v.length, 7, 0)), v);
  }
  return Buffer.concat(parts);
}

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** The status of a response header block when HPACK gives it as a static-table entry (200, 204, 206, 304, 400, 404, 500), else undefined. */
export function staticStatus(block: Buffer): number | undefined {
  return ({ 0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404, 0x8e: 500 } as Record<number, number>)[block[0]];
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** One cleartext (h2c, prior knowledge) connection: the preface and an empty SETTINGS sent, the server's frames collected. */
export class RawH2 {
  readonly frames: RawFrame[] = [];
  closed = false;
  private buffered = Buffer.alloc(0);
  private waiters: Array<() => void> = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 9) {
        const length = this.buffered.readUIntBE(0, 3);
        if (this.buffered.length < 9 + length) break;
        const f: RawFrame = {
          type: this.buffered[3],
          flags: this.buffered[4],
          stream: this.buffered.readUInt32BE(5) & 0x7fffffff,
          payload: Buffer.from(this.buffered.subarray(9, 9 + length)),
        };
        this.buffered = this.buffered.subarray(9 + length);
        // Acknowledge the server's SETTINGS as a conforming client does.
        if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
        this.frames.push(f);
      }
      this.wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static open(port: number): Promise<RawH2> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host: '127.0.0.1', port }, () => {
        socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
        resolve(new RawH2(socket));
      });
      socket.once('error', reject);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** The server's SETTINGS values (the first non-ACK SETTINGS frame), by identifier. */
  async settings(ms = 5000): Promise<Map<number, number>> {
    const f = await this.waitFrame((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0, ms);
    const out = new Map<number, number>();
    for (let i = 0; i + 6 <= f.payload.length; i += 6) out.set(f.payload.readUInt16BE(i), f.payload.readUInt32BE(i + 2));
    return out;
  }

  /** Sends a HEADERS frame (END_HEADERS, and END_STREAM when `endStream`). */
  headers(stream: number, fields: Array<[string, string]>, endStream = false): void {
    this.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), stream, headerBlock(fields)));
  }

  data(stream: number, payload: Buffer, endStream = false): void {
    this.socket.write(frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, stream, payload));
  }

  /** The first frame matching `predicate` (already received or coming); rejects after `ms` or when the connection closes first. */
  async waitFrame(predicate: (f: RawFrame) => boolean, ms = 5000): Promise<RawFrame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.frames.find(predicate);
      if (found) return found;
      if (this.closed) throw new Error('connection closed before the frame came');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no such frame within ${ms} ms (got types ${this.frames.map((f) => f.type).join(',')})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The server's answer on `stream`: its HEADERS (with the status when HPACK's static table gives it), or its RST_STREAM code, or a GOAWAY. */
  async answer(stream: number, ms = 5000): Promise<{ kind: 'headers'; status: number | undefined; endStream: boolean } | { kind: 'rst'; code: number } | { kind: 'goaway'; code: number }> {
    const f = await this.waitFrame((f) => ((f.type === FRAME.HEADERS || f.type === FRAME.RST_STREAM) && f.stream === stream) || f.type === FRAME.GOAWAY, ms);
    if (f.type === FRAME.RST_STREAM) return { kind: 'rst', code: f.payload.readUInt32BE(0) };
    if (f.type === FRAME.GOAWAY) return { kind: 'goaway', code: f.payload.readUInt32BE(4) };
    return { kind: 'headers', status: staticStatus(f.payload), endStream: (f.flags & FLAG.END_STREAM) !== 0 };
  }

  close(): void {
    this.socket.destroy();
  }
}
