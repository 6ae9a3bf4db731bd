/**
 * What the end-to-end benchmark processes share: engine names, the frames and payloads the load generator sends,
 * the opening-handshake request, statistics and formatting helpers.
 *
 * Frames are built here, by the benchmark itself (neither engine's code), once per scenario: every engine receives
 * identical bytes.
 *
 * @module
 */
import { deflateRawSync, constants as zlibConstants } from 'node:zlib';

/**
 * The engines of the end-to-end benchmarks. `floor` is no WebSocket engine: a raw `node:net` server answering the
 * generators' traffic with fixed, precomputed replies (see `bench/e2e/floor.ts`), the cost a Node engine cannot go
 * below. `ws-compat` is the engine behind wsengine/ws, running ws's application code (what the layer costs over
 * the engine's own API); it runs when named (`--engines ours,ws-compat`), not by default.
 */
export type EngineName = 'ours' | 'ws-compat' | 'ws-native' | 'ws-js' | 'floor';
export const ENGINE_NAMES: readonly EngineName[] = ['ours', 'ws-compat', 'ws-native', 'ws-js', 'floor'];
/** The engines of a run that names none. */
export const DEFAULT_ENGINES: readonly EngineName[] = ['ours', 'ws-native', 'ws-js', 'floor'];
export const COLUMN: Record<EngineName, string> = { ours: 'ours', 'ws-compat': 'ws-compat', 'ws-native': 'ws+native', 'ws-js': 'ws-js', floor: 'floor' };

/** Server-side permessage-deflate configuration of a server child. */
export type DeflateMode = 'off' | 'on' | 'no-context';

export const HOST = '127.0.0.1';

/** The RFC 6455 §1.3 example key and its accept value: every generated handshake uses them (servers do not care). */
export const HANDSHAKE_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
export const HANDSHAKE_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

/** Masking key of every generated frame (a fixed key is valid; servers must not assume anything about it). */
const MASK_KEY = [0x37, 0xfa, 0x21, 0x3d] as const;

/** The offer a compressing generator sends: RFC 7692 defaults, context takeover both ways. */
export const DEFLATE_OFFER = 'permessage-deflate; client_max_window_bits';
/** The offer for the no-context-takeover variant. */
export const DEFLATE_OFFER_NO_CONTEXT = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits';

export function upgradeRequest(port: number, extensions: string | null): Buffer {
  return Buffer.from(
    `GET / HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${HANDSHAKE_KEY}\r\nSec-WebSocket-Version: 13\r\n` +
      (extensions === null ? '' : `Sec-WebSocket-Extensions: ${extensions}\r\n`) +
      '\r\n',
    'latin1',
  );
}

/** A masked client frame (FIN set). */
export function maskedFrame(opcode: number, payload: Uint8Array, rsv1 = false): Buffer {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const hs = 2 + lengthBytes + 4;
  const out = Buffer.alloc(hs + length);
  out[0] = 0x80 | (rsv1 ? 0x40 : 0) | opcode;
  if (length < 126) out[1] = 0x80 | length;
  else if (length < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(length, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(length), 2);
  }
  for (let i = 0; i < 4; i++) out[hs - 4 + i] = MASK_KEY[i];
  for (let i = 0; i < length; i++) out[hs + i] = payload[i] ^ MASK_KEY[i & 3];
  return out;
}

/** An unmasked frame (FIN set), as a server sends it. */
export function serverFrame(opcode: number, payload: Uint8Array): Buffer {
  const length = payload.length;
  const hs = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(hs + length);
  out[0] = 0x80 | opcode;
  if (length < 126) out[1] = length;
  else if (length < 65536) {
    out[1] = 126;
    out.writeUInt16BE(length, 2);
  } else {
    out[1] = 127;
    out.writeBigUInt64BE(BigInt(length), 2);
  }
  out.set(payload, hs);
  return out;
}

/** Length of the masked client frame {@link maskedFrame} builds for a payload of `size` bytes. */
export function maskedFrameLength(size: number): number {
  return (size < 126 ? 2 : size < 65536 ? 4 : 10) + 4 + size;
}

/** A masked close frame with status 1000. */
export function closeFrame(): Buffer {
  return maskedFrame(0x8, Uint8Array.of(0x03, 0xe8));
}

/** Deterministic bytes (xorshift32), so that every engine gets identical inputs. In an ArrayBuffer of their own. */
export function pseudoRandom(size: number, seed = 0x9e3779b9): Buffer {
  const out = Buffer.allocUnsafeSlow(size);
  let x = seed >>> 0;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * Exactly `size` bytes of JSON-like ASCII text: an array of records (ids, names, prices, timestamps, short
 * phrases) drawn from a seeded generator, so it compresses like real API traffic (3–5×), not like a repeated
 * string.
 */
export function jsonText(size: number, seed = 12345): string {
  let x = seed >>> 0;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet', 'kilo', 'lima', 'mike', 'november'];
  const status = ['open', 'filled', 'cancelled', 'pending'];
  const parts: string[] = [];
  let length = 1;
  for (let id = 1; length < size; id++) {
    const record = JSON.stringify({
      id: 100000 + (next() % 900000),
      user: `user_${next() % 10000}`,
      ts: 1_700_000_000_000 + (next() % 1_000_000_000),
      price: (next() % 1_000_000) / 100,
      qty: next() % 500,
      side: next() % 2 === 0 ? 'buy' : 'sell',
      status: status[next() % status.length],
      note: `${words[next() % words.length]} ${words[next() % words.length]} ${words[next() % words.length]}`,
    });
    parts.push(record);
    length += record.length + 1;
  }
  let text = `[${parts.join(',')}]`;
  if (text.length > size) text = text.slice(0, size - 1) + ']';
  return text.padEnd(size, ' ');
}

/** Raw deflate of a whole message without context, ready for a permessage-deflate frame (RFC 7692 §7.2.1). */
export function deflateMessage(data: Uint8Array): Buffer {
  const out = deflateRawSync(data, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
  const n = out.length;
  return n >= 4 && out[n - 4] === 0 && out[n - 3] === 0 && out[n - 2] === 0xff && out[n - 1] === 0xff ? out.subarray(0, n - 4) : out;
}

// ───────────────────────────── units and formatting ─────────────────────────────

export const KiB = 1024;

export function sizeName(n: number): string {
  return n >= KiB * KiB ? `${n / KiB / KiB} MiB` : n >= KiB ? `${n / KiB} KiB` : `${n} B`;
}

export function sizeId(n: number): string {
  return n >= KiB * KiB ? `${n / KiB / KiB}m` : n >= KiB ? `${n / KiB}k` : `${n}`;
}

/** `20`, `1k`, `16K`, `64kib`, `1m` → bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(k|kib|kb|m|mib|mb|b)?$/i.exec(text.trim());
  if (m === null) throw new Error(`not a size: ${text}`);
  const unit = (m[2] ?? 'b').toLowerCase();
  const scale = unit.startsWith('k') ? KiB : unit.startsWith('m') ? KiB * KiB : 1;
  const n = Math.round(Number(m[1]) * scale);
  if (!(n >= 0) || n > 64 * KiB * KiB) throw new Error(`size out of range: ${text}`);
  return n;
}

/** `1,000` style integers. */
export function count(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function formatRate(x: number): string {
  if (!Number.isFinite(x)) return '–';
  if (x >= 1e6) return `${(x / 1e6).toFixed(x >= 1e8 ? 0 : x >= 1e7 ? 1 : 2)} M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(x >= 1e5 ? 0 : x >= 1e4 ? 1 : 2)} k`;
  return x.toFixed(x >= 100 ? 0 : 1);
}

/** A duration or a cost in microseconds. */
export function formatMicros(us: number): string {
  if (!Number.isFinite(us)) return '–';
  if (us >= 1e6) return `${(us / 1e6).toFixed(2)} s`;
  if (us >= 1e4) return `${(us / 1e3).toFixed(1)} ms`;
  if (us >= 1e3) return `${(us / 1e3).toFixed(2)} ms`;
  return `${us.toFixed(us >= 100 ? 0 : us >= 10 ? 1 : 2)} µs`;
}

/** Bytes (per connection). */
export function formatBytes(b: number): string {
  if (!Number.isFinite(b)) return '–';
  const sign = b < 0 ? '-' : '';
  const a = Math.abs(b);
  if (a >= 1e6) return `${sign}${(a / 1e6).toFixed(2)} MB`;
  if (a >= 1e3) return `${sign}${(a / 1e3).toFixed(a >= 1e5 ? 0 : 1)} kB`;
  return `${sign}${a.toFixed(0)} B`;
}

export function ratio(r: number | undefined | null): string {
  if (r === undefined || r === null || !Number.isFinite(r)) return '–';
  return `${r.toFixed(r >= 10 ? 1 : 2)}×`;
}

// ───────────────────────────── statistics ─────────────────────────────

export interface Stat {
  median: number;
  min: number;
  max: number;
  /** Every value, in measurement order. */
  values: number[];
}

export function stat(values: number[]): Stat {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return { median: NaN, min: NaN, max: NaN, values };
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], values };
}

/** Quantile of sorted values (nearest rank). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

/** `median (min–max)` with a formatter; the range is left out for a single value. */
export function statCell(s: Stat | undefined, format: (x: number) => string): string {
  if (s === undefined || !Number.isFinite(s.median)) return '–';
  if (s.values.length <= 1 || s.min === s.max) return format(s.median);
  return `${format(s.median)} (${format(s.min)}–${format(s.max)})`;
}

/** A Markdown table, aligned so that it reads in a terminal too (first column left, the others right). */
export function markdownTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  return [line(header), `| ${widths.map((w, i) => (i === 0 ? '-'.repeat(w) : '-'.repeat(w - 1) + ':')).join(' | ')} |`, ...rows.map(line)].join('\n');
}

/** Monotonic clock in microseconds, comparable between processes on one machine (CLOCK_MONOTONIC). */
export function nowMicros(): number {
  return Number(process.hrtime.bigint()) / 1e3;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The environment of an engine's child process: ws in pure-JS mode gets `WS_NO_BUFFER_UTIL=1` and
 * `WS_NO_UTF_8_VALIDATE=1`; every other engine runs without them.
 */
export function engineEnv(engine: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.WS_NO_BUFFER_UTIL;
  delete env.WS_NO_UTF_8_VALIDATE;
  if (engine === 'ws-js') {
    env.WS_NO_BUFFER_UTIL = '1';
    env.WS_NO_UTF_8_VALIDATE = '1';
  }
  return env;
}
