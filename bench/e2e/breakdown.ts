/**
 * Where a server's CPU goes (issue 13): classifies the perf samples of one server child, recorded with
 * `BENCH_PERF=DIR npm run bench -- …` (see `bench/profile-breakdown.md`), into buckets — kernel, libc, libuv, Node
 * C++, V8 (builtins, inline caches, runtime), V8 compiler, GC, and JavaScript split by file into Node's stream layer,
 * other Node internals, ours (`lib/`) and the benchmark's application handler — and prints Markdown tables: percent of
 * the server's samples and µs per message (or per connection with `--per connection`) from the window's CPU time in
 * the `.json` written next to the `.data`.
 *
 * Two views: `self` (the function the sample landed in) and `on behalf of` (the nearest JavaScript frame on the
 * stack, so that a kernel `write` reached from `writeGeneric` counts for Node's stream layer, and an inline-cache
 * miss in our parser counts for ours; samples with no JavaScript on the stack are the event loop's own: epoll, libuv,
 * the read callback's C++ before it enters JavaScript).
 *
 * Usage: `npx tsx bench/e2e/breakdown.ts DIR/echo-ours-0.data [--per message|connection] [--top N]`.
 * Needs `perf` and the `/tmp/perf-PID.map` written by node's `--perf-basic-prof` during the run.
 *
 * @module
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

/** Buckets, in the order printed. */
const BUCKETS = [
  'kernel (TCP, syscalls, epoll, scheduler)',
  'libc (syscall stubs, malloc/free)',
  'libuv (uv_*)',
  'Node C++ (node::*: StreamBase, LibuvStreamWrap, MakeCallback…)',
  'V8 builtins, inline caches, runtime',
  'V8 compiler, parser (JIT: TurboFan, Maglev, Sparkplug, bytecode)',
  'GC (heap: scavenger, mark-compact, sweeper, write barrier, allocation)',
  'JS: Node stream layer (net, streams, events, stream_base_commons, timers)',
  'JS: Node other internals (buffer, util, …)',
  'JS: ours (lib/)',
  'JS: application handler (bench/e2e/server.ts)',
  'other / unknown',
] as const;
type Bucket = (typeof BUCKETS)[number];

const STREAM_LAYER = /^node:(net|events|timers|internal\/streams\/|internal\/stream_base_commons|internal\/timers|internal\/net|stream|internal\/async_hooks|internal\/process\/task_queues)/;

/** `JS:*name file:line:col` (optimized `*`, interpreted `~`, baseline `^`) → the file, or null if not JS. */
function jsFile(sym: string): string | null {
  const m = /^(?:JS|LazyCompile|Function|Script):[*~^+]?\S*\s+(\S+)$/.exec(sym) ?? /^(?:JS|LazyCompile|Function|Script):[*~^+]?(?:\S*\s+)?(\S+)$/.exec(sym);
  return m === null ? null : m[1];
}

type Owner = 'ours' | 'stream' | 'node' | 'app' | 'other';

const OWNER_LABEL: Record<Owner | 'none' | 'background', string> = {
  stream: "Node's stream layer",
  none: 'event loop, no JS on the stack (epoll, libuv, read callback C++, C++→JS entry)',
  background: "V8's background threads (JIT compiler, concurrent GC)",
  ours: 'ours (lib/)',
  node: 'other Node internals',
  app: 'application handler',
  other: 'other JS (ws, tsx, …)',
};

function ownerOfFile(file: string): Owner {
  if (/\/lib\/[^:]*\.[jt]s:/.test(file) && !file.includes('node_modules')) return 'ours';
  if (file.includes('/bench/e2e/server.ts')) return 'app';
  if (STREAM_LAYER.test(file)) return 'stream';
  if (file.startsWith('node:')) return 'node';
  return 'other';
}

/** Frames of Node's write path: a sample under one of them is the stream layer's write side. */
const WRITE_SIDE = /node:internal\/streams\/writable|writeGeneric|writevGeneric|handleWriteReq|Socket\._write|afterWriteDispatched/;

const GC = /Heap|Scaveng|MarkCompact|Marking|Sweep|Evacuat|Compactor|GCTracer|MemoryAllocator|PagedSpace|NewSpace|SemiSpace|RememberedSet|SlotSet|MemoryChunk|LocalAllocator|Builtins_RecordWrite|WriteBarrier|IncrementalMarking|ConcurrentMarking|Heap::|^v8::internal::GC|ObjectVisitor|Page::/;
const COMPILER = /compiler::|interpreter::Bytecode|Parser|Scanner|Compiler|TieringManager|Maglev|maglev|turboshaft|Zone|AstNode|AstValue|Deoptimiz|SharedFunctionInfo::|FeedbackVector::New|CodeStub|Assembler|baseline::/;

function bucketOf(sym: string, dso: string): Bucket {
  if (dso === '[kernel.kallsyms]' || dso.startsWith('[kernel')) return BUCKETS[0];
  const file = jsFile(sym);
  if (file !== null) {
    const o = ownerOfFile(file);
    return o === 'ours' ? BUCKETS[9] : o === 'stream' ? BUCKETS[7] : o === 'node' ? BUCKETS[8] : o === 'app' ? BUCKETS[10] : BUCKETS[11];
  }
  if (/^uv_|^uv__/.test(sym)) return BUCKETS[2];
  if (GC.test(sym)) return BUCKETS[6];
  if (COMPILER.test(sym)) return BUCKETS[5];
  if (/libc\.so|libstdc\+\+|libm\.so|ld-linux/.test(dso)) return BUCKETS[1];
  if (sym.startsWith('Builtins_') || sym.startsWith('v8::') || sym.startsWith('Stub:') || sym.startsWith('BytecodeHandler:')) return BUCKETS[4];
  if (sym.startsWith('node::') || sym.startsWith('non-virtual thunk to node::') || /^(std::|cppgc::)/.test(sym)) return BUCKETS[3];
  return BUCKETS[11];
}

interface Sample {
  tid: number;
  pid: number;
  frames: { sym: string; dso: string }[];
}

function* samples(data: string): Generator<Sample> {
  const out = spawnSync('perf', ['script', '-i', data, '-F', 'comm,pid,tid,ip,sym,dso'], { maxBuffer: 1 << 30, encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`perf script failed: ${out.stderr}`);
  let cur: Sample | null = null;
  let comm = '';
  for (const line of out.stdout.split('\n')) {
    if (line === '') {
      if (cur !== null && comm === 'node') yield cur;
      cur = null;
      continue;
    }
    if (!line.startsWith('\t') && !line.startsWith(' ')) {
      const m = /^(\S.*?)\s+(\d+)\/(\d+)/.exec(line);
      if (m === null) continue;
      comm = m[1];
      cur = { pid: Number(m[2]), tid: Number(m[3]), frames: [] };
      continue;
    }
    const m = /^\s*[0-9a-f]+\s+(.*)\s+\(([^()]*)\)\s*$/.exec(line);
    if (m !== null && cur !== null) cur.frames.push({ sym: m[1], dso: m[2] });
  }
  if (cur !== null && comm === 'node') yield cur;
}

export interface Breakdown {
  total: number;
  self: Map<Bucket, number>;
  owner: Map<Owner | 'none' | 'background', { all: number; kernel: number }>;
  /** Samples on behalf of the stream layer by side (write: a Writable/writeGeneric frame on the stack) and kernel or not. */
  sides: Map<string, number>;
  /** Self bucket × owner (nearest JS frame). */
  matrix: Map<string, number>;
  /** Kernel samples by the system call they are under (`irq/softirq` when none: interrupts, loopback delivery). */
  syscalls: Map<string, number>;
  /** Leaf symbols, any bucket. */
  leaves: Map<string, { bucket: Bucket; n: number }>;
  /** Per JS function: self samples, and samples with it as the nearest JS frame (its native callees included). */
  functions: Map<string, { owner: Owner; self: number; withNative: number }>;
  /** Samples in threads other than the main one, by bucket. */
  background: number;
}

export function breakdown(data: string): Breakdown {
  const self = new Map<Bucket, number>();
  const owner: Breakdown['owner'] = new Map();
  const functions: Breakdown['functions'] = new Map();
  const syscalls = new Map<string, number>();
  const matrix = new Map<string, number>();
  const sides = new Map<string, number>();
  const leaves: Breakdown['leaves'] = new Map();
  let total = 0;
  let background = 0;
  const mainPid = new Map<number, number>();
  for (const s of samples(data)) {
    if (s.frames.length === 0) continue;
    // The tsx loader's worker thread is the harness's, not the server's.
    if (s.frames.some((f) => f.sym.startsWith('node::worker::Worker::Run'))) continue;
    total++;
    mainPid.set(s.pid, (mainPid.get(s.pid) ?? 0) + 1);
    if (s.tid !== s.pid) background++;
    const leaf = s.frames[0];
    const b = bucketOf(leaf.sym, leaf.dso);
    self.set(b, (self.get(b) ?? 0) + 1);
    const leafKey = jsFile(leaf.sym) !== null ? leaf.sym.replace(/^JS:/, '') : leaf.sym;
    const le = leaves.get(leafKey) ?? { bucket: b, n: 0 };
    le.n++;
    leaves.set(leafKey, le);
    const inKernel = b === BUCKETS[0];
    if (inKernel) {
      // The frame under the syscall entry is the call's handler (ksys_write, __x64_sys_epoll_pwait, …).
      const at = s.frames.findIndex((f) => f.sym === 'do_syscall_64');
      let name = at > 0 ? s.frames[at - 1].sym.replace(/^(__x64_sys_|__se_sys_|__do_sys_|ksys_|__sys_)/, '') : 'no system call (interrupts, softirq)';
      if (/irq|exit_to_user/.test(name)) name = 'system call entry/exit (timer samples deferred to irq enable)';
      syscalls.set(name, (syscalls.get(name) ?? 0) + 1);
    }
    let nearest: { sym: string; owner: Owner } | null = null;
    for (const f of s.frames) {
      const file = jsFile(f.sym);
      if (file !== null) {
        nearest = { sym: f.sym, owner: ownerOfFile(file) };
        break;
      }
    }
    // No JavaScript on the stack: the main thread's event loop, or V8's background threads (JIT, GC).
    const o = nearest?.owner ?? (s.tid !== s.pid ? 'background' : 'none');
    const oe = owner.get(o) ?? { all: 0, kernel: 0 };
    oe.all++;
    if (inKernel) oe.kernel++;
    owner.set(o, oe);
    if (o === 'stream') {
      const write = s.frames.some((f) => WRITE_SIDE.test(f.sym));
      const key = `${write ? 'write' : 'read'} side, ${inKernel ? 'kernel' : b === BUCKETS[1] ? 'libc' : 'user space'}`;
      sides.set(key, (sides.get(key) ?? 0) + 1);
    }
    const mk = `${b}\u0000${o}`;
    matrix.set(mk, (matrix.get(mk) ?? 0) + 1);
    if (nearest !== null) {
      const e = functions.get(nearest.sym) ?? { owner: nearest.owner, self: 0, withNative: 0 };
      e.withNative++;
      if (nearest.sym === leaf.sym) e.self++;
      functions.set(nearest.sym, e);
    }
  }
  return { total, self, owner, functions, background, syscalls, leaves, matrix, sides };
}

function main(): void {
  const args = process.argv.slice(2);
  const data = args.find((a) => !a.startsWith('--') && a.endsWith('.data'));
  if (data === undefined) {
    process.stderr.write('usage: npx tsx bench/e2e/breakdown.ts FILE.data [--per message|connection] [--top N]\n');
    process.exit(2);
  }
  const per = args.includes('--per') ? args[args.indexOf('--per') + 1] : 'message';
  const top = args.includes('--top') ? Number(args[args.indexOf('--top') + 1]) : 10;
  const side = data.replace(/\.data$/, '.json');
  const w = existsSync(side)
    ? (JSON.parse(readFileSync(side, 'utf8')) as { messages: number; connections: number; cpuMicros: number; gc: Record<string, number> | null })
    : null;
  const units = w === null ? 0 : per === 'connection' ? w.connections : w.messages;
  const usPer = w === null || units === 0 ? 0 : w.cpuMicros / units;
  const r = breakdown(data);
  const pct = (n: number): string => `${((100 * n) / r.total).toFixed(1)} %`;
  const us = (n: number): string => (usPer === 0 ? '–' : ((usPer * n) / r.total).toFixed(2));
  const out: string[] = [];
  out.push(`${data}: ${r.total} samples (${pct(r.background)} in V8's background threads)` + (w === null ? '' : `; window: ${w.messages} messages, ${w.connections} connections, ${(w.cpuMicros / 1e6).toFixed(2)} s server CPU = ${usPer.toFixed(2)} µs per ${per}`));
  if (w?.gc != null) {
    const g = w.gc;
    const per100k = (n: number): string => (w.messages > 0 ? ((1e5 * n) / w.messages).toFixed(1) : '–');
    out.push(`GC (perf_hooks 'gc' entries in the window): ${g.scavenge ?? 0} scavenges (${per100k(g.scavenge ?? 0)} per 100k messages, ${(g.scavengeMs ?? 0).toFixed(0)} ms wall), ${g.markCompact ?? 0} mark-compacts (${(g.markCompactMs ?? 0).toFixed(0)} ms), ${g.incremental ?? 0} incremental steps`);
  }
  out.push('', `| bucket (self: where the sample landed) | % of server CPU | µs per ${per} |`, '|---|--:|--:|');
  for (const b of BUCKETS) if ((r.self.get(b) ?? 0) > 0) out.push(`| ${b} | ${pct(r.self.get(b)!)} | ${us(r.self.get(b)!)} |`);
  out.push('', `| on behalf of (nearest JavaScript frame on the stack) | % of server CPU | of which kernel | µs per ${per} |`, '|---|--:|--:|--:|');
  for (const [o, n] of [...r.owner].sort((a, b) => b[1].all - a[1].all)) out.push(`| ${OWNER_LABEL[o]} | ${pct(n.all)} | ${pct(n.kernel)} | ${us(n.all)} |`);
  const owners = ['stream', 'none', 'background', 'ours', 'node', 'app', 'other'] as const;
  out.push('', `| self bucket × on behalf of (% of server CPU) | ${owners.join(' | ')} |`, `|---|${owners.map(() => '--:').join('|')}|`);
  for (const b of BUCKETS) {
    if ((r.self.get(b) ?? 0) === 0) continue;
    out.push(`| ${b.replace(/ \(.*/, '')} | ${owners.map((o) => { const n = r.matrix.get(`${b}\u0000${o}`) ?? 0; return n === 0 ? '' : pct(n); }).join(' | ')} |`);
  }
  out.push('', "| Node's stream layer, by side | % of server CPU |", '|---|--:|');
  for (const [k, n] of [...r.sides].sort()) out.push(`| ${k} | ${pct(n)} |`);
  out.push('', '| kernel, by system call | % of server CPU |', '|---|--:|');
  for (const [name, n] of [...r.syscalls].sort((a, b) => b[1] - a[1]).slice(0, 8)) out.push(`| ${name} | ${pct(n)} |`);
  out.push('', `top ${2 * top} leaf symbols outside the kernel`, '| symbol | bucket | self |', '|---|---|--:|');
  for (const [sym, e] of [...r.leaves].filter(([, e]) => e.bucket !== BUCKETS[0]).sort((a, b) => b[1].n - a[1].n).slice(0, 2 * top)) {
    out.push(`| \`${sym.replace(/file:\/\/\/\S*?\/(lib|bench)\//, '$1/').slice(0, 90)}\` | ${e.bucket.replace(/ \(.*/, '')} | ${pct(e.n)} |`);
  }
  for (const [o, title] of [
    ['ours', 'ours (lib/)'],
    ['stream', "Node's stream layer"],
  ] as const) {
    out.push('', `top ${top} of ${title}: self, and with its native callees (builtins, ICs, C++, kernel reached from it)`, '| function | self | with native callees |', '|---|--:|--:|');
    const list = [...r.functions].filter(([, e]) => e.owner === o).sort((a, b) => b[1].withNative - a[1].withNative).slice(0, top);
    for (const [sym, e] of list) out.push(`| \`${sym.replace(/^JS:/, '').replace(/file:\/\/\/\S*?\/(lib|bench)\//, '$1/')}\` | ${pct(e.self)} | ${pct(e.withNative)} |`);
  }
  console.log(out.join('\n'));
}

if (process.argv[1]?.endsWith('breakdown.ts')) main();
