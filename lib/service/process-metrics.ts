/**
 * The process series every Prometheus client library exports, under their standard names, from Node's built-ins:
 * CPU (`process_cpu_seconds_total`, user and system), memory (`process_resident_memory_bytes`,
 * `process_virtual_memory_bytes`, `process_heap_bytes`, `nodejs_heap_size_used_bytes`,
 * `nodejs_heap_size_total_bytes`, `nodejs_external_memory_bytes`), file descriptors (`process_open_fds`,
 * `process_max_fds`, Linux), `process_start_time_seconds`, the event loop's delay (`nodejs_eventloop_lag_seconds`
 * and its p50/p99/max over the last scrape interval) and garbage collection (`nodejs_gc_duration_seconds`, a
 * histogram by kind).
 *
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay, PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { histogramSamples, type MetricFamily } from './metrics.js';
import { Histogram } from '../hub/histogram.js';

/** Bounds of `nodejs_gc_duration_seconds`, in seconds. */
const GC_BOUNDS = [0.001, 0.01, 0.1, 1, 2, 5];

const GC_KINDS: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/** Collects the process series; {@link ProcessMetrics.close} stops its observers. */
export class ProcessMetrics {
  private readonly loop = monitorEventLoopDelay({ resolution: 10 });
  private readonly gc = new Map<string, Histogram>();
  private readonly observer: PerformanceObserver;
  private readonly startSeconds = Math.round((Date.now() - process.uptime() * 1000) / 1000);

  constructor() {
    this.loop.enable();
    this.observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const detail = (entry as unknown as { detail?: { kind?: number } }).detail;
        const kind = GC_KINDS[detail?.kind ?? -1] ?? 'other';
        let h = this.gc.get(kind);
        if (h === undefined) this.gc.set(kind, (h = new Histogram(GC_BOUNDS)));
        h.observe(entry.duration / 1000);
      }
    });
    this.observer.observe({ entryTypes: ['gc'] });
  }

  /** The families, read now; the event-loop percentiles cover the time since the previous call. */
  families(): MetricFamily[] {
    const one = (name: string, type: 'counter' | 'gauge', help: string, value: number): MetricFamily => ({ name, type, help, samples: [{ value }] });
    const cpu = process.cpuUsage();
    const memory = process.memoryUsage();
    const out: MetricFamily[] = [
      one('process_cpu_user_seconds_total', 'counter', 'User CPU time spent, in seconds.', cpu.user / 1e6),
      one('process_cpu_system_seconds_total', 'counter', 'System CPU time spent, in seconds.', cpu.system / 1e6),
      one('process_cpu_seconds_total', 'counter', 'User and system CPU time spent, in seconds.', (cpu.user + cpu.system) / 1e6),
      one('process_resident_memory_bytes', 'gauge', 'Resident memory size, in bytes.', memory.rss),
      one('process_heap_bytes', 'gauge', 'Process heap size (V8 heap total), in bytes.', memory.heapTotal),
      one('process_start_time_seconds', 'gauge', 'Start time of the process since the Unix epoch, in seconds.', this.startSeconds),
      one('nodejs_heap_size_used_bytes', 'gauge', 'V8 heap used, in bytes.', memory.heapUsed),
      one('nodejs_heap_size_total_bytes', 'gauge', 'V8 heap total, in bytes.', memory.heapTotal),
      one('nodejs_external_memory_bytes', 'gauge', 'Memory of C++ objects bound to JavaScript objects (Buffers included), in bytes.', memory.external),
    ];
    const vsize = virtualMemory();
    if (vsize !== null) out.push(one('process_virtual_memory_bytes', 'gauge', 'Virtual memory size, in bytes.', vsize));
    const fds = openFds();
    if (fds !== null) out.push(one('process_open_fds', 'gauge', 'Open file descriptors.', fds));
    const maxFds = maxOpenFds();
    if (maxFds !== null) out.push(one('process_max_fds', 'gauge', 'Maximum number of open file descriptors.', maxFds));
    const loop = this.loop;
    const seconds = (ns: number): number => (Number.isFinite(ns) ? ns / 1e9 : 0);
    out.push(
      one('nodejs_eventloop_lag_seconds', 'gauge', 'Mean event loop delay since the previous scrape, in seconds.', seconds(loop.mean)),
      {
        name: 'nodejs_eventloop_lag_quantile_seconds',
        type: 'gauge',
        help: 'Event loop delay percentiles since the previous scrape, in seconds.',
        samples: [
          { labels: { quantile: '0.5' }, value: seconds(loop.percentile(50)) },
          { labels: { quantile: '0.99' }, value: seconds(loop.percentile(99)) },
          { labels: { quantile: '1' }, value: seconds(loop.max) },
        ],
      },
    );
    loop.reset();
    const gcSamples: Array<MetricFamily['samples'][number]> = [];
    for (const kind of [...this.gc.keys()].sort()) gcSamples.push(...histogramSamples(this.gc.get(kind)!.snapshot(), { kind }));
    out.push({ name: 'nodejs_gc_duration_seconds', type: 'histogram', help: 'Garbage collection pauses by kind, in seconds.', samples: gcSamples });
    return out;
  }

  /** Stops the event-loop monitor and the GC observer. */
  close(): void {
    this.loop.disable();
    this.observer.disconnect();
  }
}

function virtualMemory(): number | null {
  try {
    // /proc/self/stat: field 23 is vsize (bytes); the command name (field 2) may hold spaces, so count from its ')'.
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(fields[20]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

function openFds(): number | null {
  try {
    return readdirSync('/proc/self/fd').length - 1; // minus the descriptor of the listing itself
  } catch {
    return null;
  }
}

function maxOpenFds(): number | null {
  try {
    const match = /Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}
