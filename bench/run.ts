/**
 * Benchmark dispatcher: `npm run bench -- [name ...] [--quick] [--json FILE] [--only PATTERN[,PATTERN]] [e2e options]`.
 *
 * Runs the named benchmarks (all registered ones when none is named), prints the machine and each benchmark's
 * tables, and writes JSON: to `--json FILE` (every benchmark in one file), else to `bench/results/NAME.json`.
 * After end-to-end benchmarks it also draws `bench/results/chart.svg` (their ratios, from this run and the latest
 * results of the others). Everything it writes goes to the gitignored bench/results/; the committed
 * `bench/chart.svg` (the README's picture) is only replaced with `--update-chart`, by a maintainer, on purpose.
 * The project's internal goals (ratios it aims for) are printed last, in a section labelled as such, with the
 * comparison of ours against the committed baseline `bench/baseline/e2e.json` (`bench/e2e/baseline.ts`), which
 * `--update-chart` (full default run) and `--update-baseline` (any run, its benchmarks only) refresh.
 * Add a benchmark by adding an entry to {@link BENCHMARKS}.
 *
 * @module
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderChart, type ChartRow } from './e2e/chart.js';
import { ENGINE_NAMES, type EngineName, parseSize } from './e2e/common.js';
import { BASELINE_FILE, compareBaseline, readBaseline, writeBaseline } from './e2e/baseline.js';
import { chartRows, E2E, type E2EOptions, type E2EReport, formatE2E, formatE2ETargets, runE2E, type TargetReport } from './e2e/e2e.js';
import { formatDeflate, runDeflate } from './deflate.js';
import { formatDeflateEcho, runDeflateEcho } from './deflate-echo.js';
import { formatH2, runH2 } from './h2/h2.js';
import { runHubBench } from './hub.js';
import { formatEngines, formatTables, formatTargets, type MicroReport, runMicro } from './micro.js';
import { formatScale, runScale } from './scale.js';

interface BenchOptions extends E2EOptions {
  /** Shorter warm-up and batches, for smoke tests (about 10 s for `micro`, about a minute for everything). */
  quick: boolean;
  /** Substrings of scenario ids to keep (all when empty). */
  only: string[];
  log: (line: string) => void;
}

interface Benchmark {
  description: string;
  /** Runs the benchmark, prints its tables through `options.log`, and returns what goes into the JSON. */
  run(options: BenchOptions): Promise<unknown>;
}

/** A benchmark that runs, then prints one table: `run` measures, `format` renders what it returned. */
function tabled<T>(description: string, run: (options: BenchOptions) => Promise<T>, format: (result: T) => string): Benchmark {
  return {
    description,
    async run(options) {
      const result = await run(options);
      options.log('');
      options.log(format(result));
      return result;
    },
  };
}

const BENCHMARKS: Record<string, Benchmark> = {
  micro: {
    description: 'protocol-core microbenchmarks (parse, serialize, mask, unmask, utf8) vs ws, native and pure JS',
    async run(options) {
      const report = await runMicro(options);
      options.log('');
      options.log(formatEngines(report));
      options.log(formatTables(report));
      options.log(`micro: ${report.wallSeconds.toFixed(1)} s`);
      return report;
    },
  },
  deflate: tabled(
    'permessage-deflate codec throughput (compress, decompress; 1, 16, 64 KiB) vs ws',
    runDeflate,
    formatDeflate,
  ),
  'deflate-echo': tabled(
    'compressed echo, one message at a time (Autobahn 12/13-like: 1,000 messages of 16–128 KiB; and 16 B–8 KiB without context takeover, CPU per message) vs ws',
    runDeflateEcho,
    formatDeflateEcho,
  ),
  hub: {
    description: 'pub/sub hub: publish cost with 100,000 subscriptions (wildcards), fan-out vs a bare sendPrepared loop and ws broadcast loop, memory per connection',
    async run(options) {
      return runHubBench(options);
    },
  },
  h2: tabled(
    'WebSockets over HTTP/2 (RFC 8441) vs HTTP/1.1, both TLS: server memory per idle WebSocket (1,000 streams on one session vs 1,000 connections), server CPU per echo',
    runH2,
    formatH2,
  ),
  scale: tabled(
    'scale-out: cross-node delivery latency and throughput through Redis and NATS vs single node; broker traffic per message',
    runScale,
    formatScale,
  ),
  ...Object.fromEntries(
    Object.entries(E2E).map(([name, def]): [string, Benchmark] => [
      name,
      {
        description: def.description,
        async run(options) {
          const report = await runE2E(name, options);
          options.log('');
          options.log(formatE2E(report));
          options.log(`${name}: ${report.wallSeconds.toFixed(1)} s`);
          return report;
        },
      },
    ]),
  ),
};

const DEFAULT_BENCHMARKS = ['micro', 'deflate', ...Object.keys(E2E)];

/**
 * What `--quick` alone runs: the headline ratios (20 B parse and serialize, echo of 20 B over 100 connections,
 * fan-out to 1,000 subscribers) with quick settings, in about a minute on an idle 2-core machine. Name benchmarks
 * (`npm run bench -- echo --quick`) or pass `--only` to choose otherwise.
 */
const QUICK_SET = { names: ['micro', 'echo', 'fanout'], only: ['parse/text-20', 'serialize/text-20', 'echo/100x20', 'fanout/1000'] } as const;

const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));

function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    logicalCpus: cpus.length,
    availableParallelism: os.availableParallelism(),
    totalMemoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    v8: process.versions.v8,
    date: new Date().toISOString(),
  };
}

function usage(): string {
  const names = Object.entries(BENCHMARKS)
    .map(([name, b]) => `  ${name.padEnd(12)} ${b.description}`)
    .join('\n');
  return [
    'usage: npm run bench -- [name ...] [--quick] [--json FILE] [--only PATTERN[,PATTERN]] [end-to-end options]',
    '',
    names,
    '',
    `  (no name: ${DEFAULT_BENCHMARKS.join(', ')})`,
    '  --quick          short warm-up and batches; alone, only the headline ratios (parse/serialize 20 B, echo',
    '                   100 x 20 B, fan-out 1,000) in about a minute',
    '  --json FILE      write all results to FILE instead of bench/results/NAME.json',
    '  --update-chart   also copy bench/results/chart.svg to the committed bench/chart.svg and write the committed',
    '                   baseline bench/baseline/e2e.json (maintainers; full default run only)',
    '  --update-baseline  write the end-to-end benchmarks of this run (any settings; the file records them) into',
    '                   bench/baseline/e2e.json, the figures every run compares ours to',
    '  --only P[,P]     keep scenarios whose id contains a pattern, e.g. --only parse/,unmask/64k or echo/100x',
    '',
    'end-to-end options (echo, latency, fanout, memory, handshake, compression):',
    '  --duration S     seconds per measured round (default 1; latency 2)',
    '  --rounds N       measured rounds per engine and scenario (default 3)',
    '  --connections L  echo connection counts, e.g. 1,100,1000',
    '  --sizes L        echo message sizes, e.g. 20,1k,16k,64k',
    '  --subscribers L  fan-out subscriber counts, e.g. 1000,10000',
    '  --rate N         latency: offered messages per second (default 20000)',
    '  --concurrency N  handshake: connections in flight (default 32)',
    '  --generators N   load-generator processes (default 2)',
    '  --engines L      subset of ours,ws-compat,ws-native,ws-js,floor (floor: raw node:net with precomputed replies;',
    '                   ws-compat: wsengine/ws running ws\'s application code; not run unless named)',
    '  --no-pin, --pin  let the OS place processes, or pin them (default: servers on CPU 0, generators on the',
    '                   others with taskset, except compression, whose zlib thread pool needs the cores)',
    '  --profile        run the server children under node --cpu-prof and summarize the profiles',
  ].join('\n');
}

interface Args {
  names: string[];
  quick: boolean;
  /** Copy the chart to the committed bench/chart.svg and write the baseline (`--update-chart`, full default runs only). */
  updateChart: boolean;
  /** Write this run's end-to-end reports into the committed baseline (`--update-baseline`). */
  updateBaseline: boolean;
  json: string | null;
  only: string[];
  e2e: Omit<E2EOptions, 'quick' | 'only' | 'log'>;
}

function positiveNumber(flag: string, text: string): number {
  const n = Number(text);
  if (!(n > 0) || !Number.isFinite(n)) throw new Error(`${flag} needs a positive number, got ${text}`);
  return n;
}

function integerList(flag: string, text: string): number[] {
  return text.split(',').filter(Boolean).map((t) => {
    const n = positiveNumber(flag, t.replace(/_/g, ''));
    if (!Number.isInteger(n)) throw new Error(`${flag} needs integers, got ${t}`);
    return n;
  });
}

function parseArgs(argv: string[]): Args {
  const names: string[] = [];
  let quick = false;
  let updateChart = false;
  let updateBaseline = false;
  let json: string | null = null;
  const only: string[] = [];
  const e2e: Args['e2e'] = {};
  const valued = new Set(['--json', '--only', '--duration', '--rounds', '--connections', '--sizes', '--subscribers', '--rate', '--generators', '--concurrency', '--engines']);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') quick = true;
    else if (arg === '--update-chart') updateChart = true;
    else if (arg === '--update-baseline') updateBaseline = true;
    else if (arg === '--profile') e2e.profile = true;
    else if (arg === '--pin' || arg === '--no-pin') e2e.pin = arg === '--pin';
    else if (valued.has(arg)) {
      const value = argv[++i];
      if (value === undefined) throw new Error(`${arg} needs a value`);
      if (arg === '--json') json = value;
      else if (arg === '--only') only.push(...value.split(',').filter(Boolean));
      else if (arg === '--duration') e2e.duration = positiveNumber(arg, value);
      else if (arg === '--rounds') e2e.rounds = integerList(arg, value)[0];
      else if (arg === '--connections') e2e.connections = integerList(arg, value);
      else if (arg === '--subscribers') e2e.subscribers = integerList(arg, value);
      else if (arg === '--rate') e2e.rate = positiveNumber(arg, value);
      else if (arg === '--generators') e2e.generators = integerList(arg, value)[0];
      else if (arg === '--concurrency') e2e.concurrency = integerList(arg, value)[0];
      else if (arg === '--sizes') e2e.sizes = value.split(',').filter(Boolean).map(parseSize);
      else {
        const engines = value.split(',').filter(Boolean);
        for (const e of engines) if (!(ENGINE_NAMES as readonly string[]).includes(e)) throw new Error(`unknown engine ${e} (known: ${ENGINE_NAMES.join(', ')})`);
        e2e.engines = ENGINE_NAMES.filter((e) => engines.includes(e)) as EngineName[];
      }
    } else if (arg === '--help' || arg === '-h') {
      console.log(usage());
      process.exit(0);
    } else if (arg.startsWith('-')) {
      throw new Error(`unknown option ${arg}`);
    } else if (!Object.hasOwn(BENCHMARKS, arg)) {
      throw new Error(`unknown benchmark ${arg} (known: ${Object.keys(BENCHMARKS).join(', ')})`);
    } else if (!names.includes(arg)) {
      names.push(arg);
    }
  }
  if (quick && names.length === 0) {
    // The headline ratios in about a minute: small-frame parse and serialize, one echo, one fan-out.
    return { names: [...QUICK_SET.names], quick, updateChart, updateBaseline, json, only: only.length > 0 ? only : [...QUICK_SET.only], e2e };
  }
  return { names: names.length > 0 ? names : DEFAULT_BENCHMARKS, quick, updateChart, updateBaseline, json, only, e2e };
}

function writeJson(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(value, null, 2) + '\n');
}

/**
 * Draws the ratios of the end-to-end benchmarks into bench/results/chart.svg: this run's reports, plus the latest
 * JSON in bench/results of those not run now. Returns the chart's path.
 */
function writeChart(fresh: Record<string, unknown>, info: Record<string, unknown>, quick: boolean): string | null {
  const reports: E2EReport[] = [];
  const dates: string[] = [];
  for (const name of Object.keys(E2E)) {
    if (fresh[name] !== undefined) {
      reports.push(fresh[name] as E2EReport);
      dates.push(String(info.date));
      continue;
    }
    const path = resolve(RESULTS_DIR, `${name}.json`);
    if (!existsSync(path)) continue;
    try {
      const saved = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown> & { machine?: { date?: string } };
      const report = saved[name] as E2EReport | undefined;
      if (report?.rows !== undefined) {
        reports.push(report);
        dates.push(String(saved.machine?.date ?? '?'));
      }
    } catch {
      // an unreadable old result is left out of the chart
    }
  }
  const rows: ChartRow[] = reports.flatMap(chartRows);
  if (rows.length === 0) return null;
  const days = [...new Set(dates.map((d) => d.slice(0, 10)))].join(', ');
  const svg = renderChart(rows, {
    title: 'wsengine vs ws 8, end to end on loopback',
    subtitle: `${info.logicalCpus} CPUs · Node ${info.node} · ${days}${quick ? ' · QUICK (smoke-test figures)' : ''} · >1× = ours better (rate ratio, or inverse cost ratio)`,
  });
  const path = resolve(RESULTS_DIR, 'chart.svg');
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, svg);
  return path;
}

async function main(): Promise<void> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage()}`);
    process.exit(2);
  }
  const info = machine();
  const log = (line: string): void => console.log(line);
  log(`machine: ${info.cpu} · ${info.logicalCpus} logical CPUs · availableParallelism ${info.availableParallelism}`);
  log(`         ${info.platform} · Node ${info.node} (V8 ${info.v8}) · ${info.date} · load ${(info.loadAverage as number[]).join(' ')}`);
  log(`mode:    ${args.quick ? 'quick (smoke test: figures are rough)' : 'full'}${args.only.length ? ` · only ${args.only.join(',')}` : ''}`);
  log('');
  const all: Record<string, unknown> = {};
  const started = process.hrtime.bigint();
  for (const name of args.names) {
    const result = await BENCHMARKS[name].run({ ...args.e2e, quick: args.quick, only: args.only, log });
    all[name] = result;
    if (args.json === null) {
      const path = resolve(RESULTS_DIR, `${name}.json`);
      writeJson(path, { machine: info, quick: args.quick, only: args.only, [name]: result });
      log(`wrote ${path}`);
    }
  }
  if (args.json !== null) {
    const path = resolve(args.json);
    writeJson(path, { machine: info, quick: args.quick, only: args.only, benchmarks: all });
    log(`wrote ${path}`);
  }
  const ranE2E = args.names.filter((n) => Object.hasOwn(E2E, n));
  const full = !args.quick && args.only.length === 0 && Object.keys(args.e2e).length === 0 && DEFAULT_BENCHMARKS.every((n) => args.names.includes(n));
  if (ranE2E.length > 0) {
    const chart = writeChart(all, info, args.quick);
    if (chart !== null) {
      log(`wrote ${chart}`);
      if (args.updateChart) {
        // Only on request: the committed chart is the README's picture and must come from a full default run.
        if (!full) log('--update-chart: not done; the committed chart comes only from a full default run (`npm run bench -- --update-chart`)');
        else {
          const committed = fileURLToPath(new URL('./chart.svg', import.meta.url));
          copyFileSync(chart, committed);
          log(`wrote ${committed}`);
        }
      }
    }
  } else if (args.updateChart) {
    log('--update-chart: not done; this run drew no chart (no end-to-end benchmark ran)');
  }
  // The project's own goals, last and labelled as such: ratios it aims for, not pass/fail results of this run.
  const goals: string[] = [];
  if (all.micro !== undefined) goals.push(formatTargets(all.micro as MicroReport));
  const targets: TargetReport[] = [];
  for (const name of ranE2E) targets.push(...(all[name] as E2EReport).targets);
  const reports = Object.fromEntries(ranE2E.map((name) => [name, all[name] as E2EReport]));
  // Compared with the baseline as it was before this run (the update below comes after).
  const baseline = ranE2E.length > 0 ? readBaseline() : null;
  if (baseline !== null) targets.push(...compareBaseline(reports, baseline));
  else if (ranE2E.length > 0) log(`(no baseline at ${BASELINE_FILE}: nothing to compare ours with)`);
  if (ranE2E.length > 0 && ((args.updateChart && full) || args.updateBaseline)) {
    writeBaseline(reports, { machine: info, quick: args.quick, only: args.only, options: { ...args.e2e } });
    log(`wrote ${BASELINE_FILE}${full ? '' : ' (this run\'s benchmarks, with its settings: recorded in the file)'}`);
  }
  goals.push(formatE2ETargets(targets));
  const goalText = goals.filter((g) => g !== '').join('');
  if (goalText !== '') {
    log('\n### project goals (internal aims of this project: ours/ws ratios it works toward; "not yet" is work to do, not a failed run)\n');
    log(goalText);
  }
  log(`total: ${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(0)} s`);
}

await main();
