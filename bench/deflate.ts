/**
 * permessage-deflate throughput: compress and decompress one message at a time through each engine's own
 * per-connection codec (ours: `DeflateCodec`; ws: `PerMessageDeflate`), same zlib settings (level 6, memLevel 8,
 * 15-bit windows, context takeover), same payloads, in one process, engines alternating round by round.
 *
 * Both engines drive node:zlib streams on the thread pool, so the figures mostly measure zlib; what differs is each
 * engine's overhead around it (buffering, flush handling, trailer removal, limits), which shows most on small
 * messages.
 *
 * @module
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DeflateCodec, Limiter } from '../lib/deflate/codec.js';
import { resolveDeflateOptions } from '../lib/deflate/negotiate.js';

const require = createRequire(import.meta.url);

interface Codec {
  compress(data: Buffer): Promise<Buffer>;
  decompress(data: Buffer): Promise<Buffer>;
  close(): void;
}

const PARAMS = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };

function ours(): Codec {
  const options = resolveDeflateOptions({ level: 6, memLevel: 8, threshold: 0, concurrency: 10 });
  const codec = new DeflateCodec('server', PARAMS, options, new Limiter(10), 256 * 1024 * 1024);
  return {
    compress: (data) => new Promise((resolve, reject) => codec.compress(data, (e, out) => (e ? reject(e) : resolve(out!)))),
    decompress: (data) => new Promise((resolve, reject) => codec.decompress(data, (e, out) => (e ? reject(e) : resolve(out!)))),
    close: () => codec.close(),
  };
}

function ws(): Codec {
  // ws exports no subpaths: load its module file by path, as it loads it itself.
  const wsDir = dirname(require.resolve('ws/package.json'));
  const PerMessageDeflate = require(join(wsDir, 'lib/permessage-deflate.js')) as new (options: object, isServer: boolean, maxPayload: number) => {
    accept(params: object[]): object;
    compress(data: Buffer, fin: boolean, cb: (e: Error | null, out?: Buffer) => void): void;
    decompress(data: Buffer, fin: boolean, cb: (e: Error | null, out?: Buffer) => void): void;
    cleanup(): void;
  };
  const pmd = new PerMessageDeflate({ zlibDeflateOptions: { level: 6, memLevel: 8 }, threshold: 0, concurrencyLimit: 10 }, true, 256 * 1024 * 1024);
  pmd.accept([{}]);
  return {
    compress: (data) => new Promise((resolve, reject) => pmd.compress(data, true, (e, out) => (e ? reject(e) : resolve(out!)))),
    decompress: (data) => new Promise((resolve, reject) => pmd.decompress(data, true, (e, out) => (e ? reject(e) : resolve(out!)))),
    close: () => pmd.cleanup(),
  };
}

/** JSON-like text: repetitive keys, varying numbers, as real traffic. */
function payload(size: number): Buffer {
  let s = '';
  for (let i = 0; s.length < size; i++) s += JSON.stringify({ id: i, user: `user-${i % 97}`, price: (i * 7919) % 10007, tags: ['a', 'b', i % 5] }) + '\n';
  return Buffer.from(s.slice(0, size));
}

export interface DeflateRow {
  scenario: string;
  bytes: number;
  ours: { median: number; min: number; max: number };
  ws: { median: number; min: number; max: number };
  ratio: number;
}

async function rate(fn: () => Promise<unknown>, ms: number): Promise<number> {
  const start = process.hrtime.bigint();
  let n = 0;
  const limit = BigInt(ms) * 1_000_000n;
  while (process.hrtime.bigint() - start < limit) {
    await fn();
    n++;
  }
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

function stats(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1] };
}

/** Runs compress and decompress for 1 KiB, 16 KiB and 64 KiB payloads; returns one row per scenario. */
export async function runDeflate(options: { quick: boolean; log: (line: string) => void }): Promise<DeflateRow[]> {
  const rounds = options.quick ? 2 : 5;
  const ms = options.quick ? 150 : 500;
  const rows: DeflateRow[] = [];
  for (const size of [1024, 16 * 1024, 64 * 1024]) {
    const data = payload(size);
    const engines = { ours: ours(), ws: ws() };
    const results: Record<string, Record<'ours' | 'ws', number[]>> = { compress: { ours: [], ws: [] }, decompress: { ours: [], ws: [] } };
    for (let round = 0; round < rounds; round++) {
      for (const name of round % 2 ? (['ws', 'ours'] as const) : (['ours', 'ws'] as const)) {
        const e = engines[name];
        results.compress[name].push(await rate(() => e.compress(data), ms));
        // The first message out of a fresh compressor refers to nothing before it, so an inflater that keeps its
        // context can decode it again and again: each engine inflates what its own codec produced.
        const fresh = name === 'ours' ? ours() : ws();
        const first = await fresh.compress(data);
        fresh.close();
        const reader = name === 'ours' ? ours() : ws();
        results.decompress[name].push(await rate(() => reader.decompress(first), ms));
        reader.close();
      }
    }
    engines.ours.close();
    engines.ws.close();
    for (const op of ['compress', 'decompress'] as const) {
      const o = stats(results[op].ours);
      const w = stats(results[op].ws);
      rows.push({ scenario: `${op} ${size / 1024} KiB`, bytes: size, ours: o, ws: w, ratio: o.median / w.median });
    }
  }
  return rows;
}

/** The table for the dispatcher. */
export function formatDeflate(rows: DeflateRow[]): string {
  const f = (x: number): string => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)} k` : x.toFixed(0));
  const lines = [
    '### permessage-deflate — one message at a time through each engine\'s codec (level 6, memLevel 8, 15-bit windows)',
    '',
    '| scenario | ours ops/s | ws ops/s | ours MB/s | ours/ws |',
    '| --- | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.scenario} | ${f(r.ours.median)} (${f(r.ours.min)}–${f(r.ours.max)}) | ${f(r.ws.median)} (${f(r.ws.min)}–${f(r.ws.max)}) | ${((r.ours.median * r.bytes) / 1e6).toFixed(0)} | ${r.ratio.toFixed(2)}× |`,
    );
  }
  return lines.join('\n');
}
