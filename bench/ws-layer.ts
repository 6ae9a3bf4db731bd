/**
 * What wsengine/ws adds per message over the engine's own API, measured in one process over sockets that discard
 * their writes (no kernel): `npx tsx bench/ws-layer.ts`. Echo (`message` → `send`) at 20 B, 1 KiB and 16 KiB; fan-out
 * of 64 B to 1,000 and 10,000 connections (the engine: `prepare` + `sendPrepared`; the layer: ws's documented loop,
 * `readyState === OPEN` then `send`). Each figure is the minimum of 9 interleaved rounds of CPU time, so it holds on
 * a busy machine, where the end-to-end `ws-compat` engine (`npm run bench -- echo fanout --engines ours,ws-compat`)
 * does not. The difference is the layer's work alone; the real cost of a message adds the system calls to both.
 *
 * @module
 */
import { Duplex } from 'node:stream';
import { WebSocketConnection, prepare } from '../lib/index.js';
import { WebSocket } from '../lib/ws/index.js';
import { maskedFrame } from './e2e/common.js';

class Sink extends Duplex {
  override _read() {}
  override _write(_c: unknown, _e: unknown, cb: () => void) { cb(); }
  override _writev(_c: unknown, cb: () => void) { cb(); }
}

function engineConn(): WebSocketConnection { return new WebSocketConnection(new Sink(), 'server', {}); }
function layerWs(): WebSocket {
  const ws = new WebSocket(null);
  ws._attach(new Sink(), Buffer.alloc(0), { role: 'server', allowSynchronousEvents: true, autoPong: true, closeTimeout: 30000, maxMessageSize: 1 << 26, fragmentOverhead: undefined, protocol: '', extensions: '', codec: null, threshold: undefined });
  return ws;
}
const tick = () => new Promise((r) => setImmediate(r));

async function echo(kind: 'engine' | 'layer', size: number, n: number): Promise<number> {
  const frame = maskedFrame(0x2, Buffer.alloc(size, 7));
  const batch = Buffer.concat(Array.from({ length: 50 }, () => frame));
  let count = 0;
  let feed: (b: Buffer) => void;
  if (kind === 'engine') {
    const c = engineConn();
    c.on('message', (d, b) => { count++; c.send(d, { binary: b }); });
    feed = (b) => c.receive(b);
  } else {
    const ws = layerWs();
    ws.on('message', (d: Buffer, b: boolean) => { count++; ws.send(d, { binary: b }); });
    feed = (b) => ws._conn!.receive(b);
  }
  for (let i = 0; i < 200; i++) feed(Buffer.from(batch)); // warm-up
  await tick();
  const t0 = process.cpuUsage();
  for (let i = 0; i < n / 50; i++) { feed(Buffer.from(batch)); if (i % 20 === 0) await tick(); }
  await tick();
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / n * 1000; // ns per message
}

async function fanout(kind: 'engine' | 'layer', subscribers: number, rounds: number): Promise<number> {
  const data = Buffer.alloc(64, 1);
  let publish: () => void;
  if (kind === 'engine') {
    const conns = Array.from({ length: subscribers }, engineConn);
    publish = () => { const p = prepare(data, { binary: true }); for (const c of conns) c.sendPrepared(p); };
  } else {
    const set = new Set(Array.from({ length: subscribers }, layerWs));
    publish = () => { for (const c of set) if (c.readyState === WebSocket.OPEN) c.send(data, { binary: true }); };
  }
  for (let i = 0; i < 50; i++) { publish(); await tick(); }
  const t0 = process.cpuUsage();
  for (let i = 0; i < rounds; i++) { publish(); await tick(); }
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / (rounds * subscribers) * 1000; // ns per delivery
}

const min = (xs: number[]) => Math.min(...xs);
for (const size of [20, 1024, 16384]) {
  const e: number[] = [], l: number[] = [];
  for (let r = 0; r < 9; r++) { e.push(await echo('engine', size, 100_000)); l.push(await echo('layer', size, 100_000)); }
  console.log(`echo ${size} B: engine ${min(e).toFixed(0)} ns/msg, layer ${min(l).toFixed(0)} ns/msg, +${(min(l) - min(e)).toFixed(0)} ns`);
}
for (const subs of [1000, 10000]) {
  const e: number[] = [], l: number[] = [];
  for (let r = 0; r < 9; r++) { e.push(await fanout('engine', subs, 100)); l.push(await fanout('layer', subs, 100)); }
  console.log(`fanout ${subs} × 64 B: engine ${min(e).toFixed(0)} ns/delivery, layer ${min(l).toFixed(0)} ns/delivery, +${(min(l) - min(e)).toFixed(0)} ns`);
}
