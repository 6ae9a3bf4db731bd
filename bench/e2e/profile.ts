/**
 * Summary of a V8 CPU profile (`node --cpu-prof`): the functions with the most self time, and the most inclusive
 * time, as a plain-text table. Used by `npm run bench -- NAME --profile` for our server child; also a CLI:
 * `npx tsx bench/e2e/profile.ts FILE.cpuprofile [TOP]`.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileEntry {
  name: string;
  where: string;
  selfMs: number;
  totalMs: number;
}

export interface ProfileSummary {
  file: string;
  /** Sampled time, idle excluded, ms. */
  busyMs: number;
  idleMs: number;
  gcMs: number;
  bySelf: ProfileEntry[];
  byTotal: ProfileEntry[];
}

const ROOT = pathToFileURL(fileURLToPath(new URL('../..', import.meta.url))).href;

function where(url: string, line: number): string {
  if (url === '') return '';
  let u = url.startsWith(ROOT) ? url.slice(ROOT.length) : url;
  u = u.replace(/^node:/, 'node:').replace(/^.*\/node_modules\//, '');
  return `${u}:${line + 1}`;
}

export function summarizeProfile(file: string, top = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) byId.set(node.id, node);
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const keyOf = (node: ProfileNode): string => {
    const f = node.callFrame;
    return `${f.functionName || '(anonymous)'}\u0000${where(f.url, f.lineNumber)}`;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let idle = 0;
  let gc = 0;
  let busy = 0;
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const dt = (deltas[i + 1] ?? deltas[i] ?? 0) / 1000; // µs → ms: the time until the next sample
    const node = byId.get(samples[i]);
    if (node === undefined) continue;
    const name = node.callFrame.functionName;
    if (name === '(idle)') {
      idle += dt;
      continue;
    }
    if (name === '(garbage collector)') gc += dt;
    busy += dt;
    const key = keyOf(node);
    self.set(key, (self.get(key) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id)!;
      const k = keyOf(n);
      if (n.callFrame.functionName === '(root)' || seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
  }
  const entry = (key: string): ProfileEntry => {
    const [name, at] = key.split('\u0000');
    return { name, where: at, selfMs: self.get(key) ?? 0, totalMs: total.get(key) ?? 0 };
  };
  const bySelf = [...self.keys()].map(entry).sort((a, b) => b.selfMs - a.selfMs).slice(0, top);
  const byTotal = [...total.keys()]
    .map(entry)
    .filter((e) => e.where.startsWith('lib/') || e.where.startsWith('ws/'))
    .sort((a, b) => b.totalMs - a.totalMs)
    .slice(0, top);
  return { file, busyMs: busy, idleMs: idle, gcMs: gc, bySelf, byTotal };
}

export function formatProfile(s: ProfileSummary): string {
  const pct = (ms: number): string => `${((100 * ms) / s.busyMs).toFixed(1)}%`;
  const out = [
    `profile ${s.file}: ${s.busyMs.toFixed(0)} ms busy (${s.idleMs.toFixed(0)} ms idle, GC ${pct(s.gcMs)} of busy)`,
    '',
    '  self     total    function  (file:line of the transpiled code)',
  ];
  for (const e of s.bySelf) out.push(`  ${pct(e.selfMs).padStart(6)}  ${pct(e.totalMs).padStart(6)}   ${e.name}  ${e.where}`);
  out.push('', '  inclusive time of lib/ and ws/ functions:');
  for (const e of s.byTotal) out.push(`  ${pct(e.selfMs).padStart(6)}  ${pct(e.totalMs).padStart(6)}   ${e.name}  ${e.where}`);
  return out.join('\n');
}

// ───────────────────────────── heap snapshots ─────────────────────────────

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count per `type:name` (constructor for objects) in a `.heapsnapshot` file. */
function heapTotals(file: string): Map<string, { size: number; count: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as HeapSnapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const fType = fields.indexOf('type');
  const fName = fields.indexOf('name');
  const fSize = fields.indexOf('self_size');
  const out = new Map<string, { size: number; count: number }>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + fType]];
    let name = type === 'object' || type === 'closure' || type === 'native' ? snap.strings[snap.nodes[i + fName]] : `(${type})`;
    if (type === 'closure') name = `closure ${name || '(anonymous)'}`;
    if (name.length > 60) name = name.slice(0, 57) + '…';
    const e = out.get(name) ?? { size: 0, count: 0 };
    e.size += snap.nodes[i + fSize];
    e.count++;
    out.set(name, e);
  }
  return out;
}

export interface HeapDiffEntry {
  name: string;
  /** Bytes per connection. */
  bytes: number;
  /** Objects per connection. */
  count: number;
}

/** What `n` connections added to the heap, per connection, by constructor: the largest first. */
export function heapDiff(before: string, after: string, n: number, top = 20): { total: number; entries: HeapDiffEntry[] } {
  const a = heapTotals(before);
  const b = heapTotals(after);
  const entries: HeapDiffEntry[] = [];
  let total = 0;
  for (const [name, e] of b) {
    const base = a.get(name) ?? { size: 0, count: 0 };
    const bytes = (e.size - base.size) / n;
    total += bytes;
    entries.push({ name, bytes, count: (e.count - base.count) / n });
  }
  entries.sort((x, y) => y.bytes - x.bytes);
  return { total, entries: entries.slice(0, top) };
}

export function formatHeapDiff(label: string, d: { total: number; entries: HeapDiffEntry[] }): string {
  const out = [`${label}: ${d.total.toFixed(0)} B of heap objects per connection (self sizes, heap snapshots)`, '', '   bytes   objects  constructor / type'];
  for (const e of d.entries) out.push(`  ${e.bytes.toFixed(0).padStart(6)}  ${e.count.toFixed(2).padStart(8)}  ${e.name}`);
  return out.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: npx tsx bench/e2e/profile.ts FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  console.log(formatProfile(summarizeProfile(file, Number(process.argv[3] ?? 25))));
}
