/**
 * Benchmark dispatcher: `npm run bench -- [name ...] [--quick] [--json FILE] [--only PATTERN[,PATTERN]]`.
 *
 * Runs the named benchmarks (all registered ones when none is named), prints the machine and each benchmark's
 * tables, and writes JSON: to `--json FILE` (every benchmark in one file), else to `bench/results/NAME.json`.
 * Add a benchmark by adding an entry to {@link BENCHMARKS}.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatEngines, formatTables, formatTargets, runMicro } from './micro.js';

interface BenchOptions {
  /** Shorter warm-up and batches, for smoke tests (about 10 s for `micro`). */
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

const BENCHMARKS: Record<string, Benchmark> = {
  micro: {
    description: 'protocol-core microbenchmarks (parse, serialize, mask, unmask, utf8) vs ws, native and pure JS',
    async run(options) {
      const report = await runMicro(options);
      options.log('');
      options.log(formatEngines(report));
      options.log(formatTables(report));
      options.log(formatTargets(report));
      options.log(`micro: ${report.wallSeconds.toFixed(1)} s`);
      return report;
    },
  },
};

const DEFAULT_BENCHMARKS = ['micro'];

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
    .map(([name, b]) => `  ${name.padEnd(8)} ${b.description}`)
    .join('\n');
  return [
    'usage: npm run bench -- [name ...] [--quick] [--json FILE] [--only PATTERN[,PATTERN]]',
    '',
    names,
    '',
    `  (no name: ${DEFAULT_BENCHMARKS.join(', ')})`,
    '  --quick   short warm-up and batches (smoke test)',
    '  --json    write all results to FILE instead of bench/results/NAME.json',
    '  --only    keep scenarios whose id contains a pattern, e.g. --only parse/,unmask/64k',
  ].join('\n');
}

function parseArgs(argv: string[]): { names: string[]; quick: boolean; json: string | null; only: string[] } {
  const names: string[] = [];
  let quick = false;
  let json: string | null = null;
  const only: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') quick = true;
    else if (arg === '--json' || arg === '--only') {
      const value = argv[++i];
      if (value === undefined) throw new Error(`${arg} needs a value`);
      if (arg === '--json') json = value;
      else only.push(...value.split(',').filter(Boolean));
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
  return { names: names.length > 0 ? names : DEFAULT_BENCHMARKS, quick, json, only };
}

function writeJson(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(value, null, 2) + '\n');
}

async function main(): Promise<void> {
  let args: ReturnType<typeof parseArgs>;
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
  for (const name of args.names) {
    const result = await BENCHMARKS[name].run({ quick: args.quick, only: args.only, log });
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
}

await main();
