/**
 * Fuzzer entry point: `npm run fuzz -- [--seconds N] [--seed S] [--target core|http|hub-order|all]
 * [--role server|client|both] [--progress N] [--corpus DIR]`.
 *
 * Targets:
 * - `core`: {@link runCampaign} (frame parser and state machine through `checkInput`, plus serialize → parse
 *   round trips), for the roles given by `--role`.
 * - `http`: {@link runHttpCampaign} (the opening-handshake parsers: HTTP head parser, protocol/extension
 *   tokenizers, upgrade checks, permessage-deflate negotiation, through `checkHead` and `checkTokens`).
 * - `hub-order`: {@link runHubOrderCampaign} (the hub's per-connection request order: a few clients on real sockets
 *   pipeline random subscribe/unsubscribe/refresh/publish/ping batches against a backplane with random delays,
 *   checked against a sequential model of each client's requests).
 * - `all` (the default): the three, one after the other, sharing `--seconds` equally.
 *
 * Prints iterations per second and progress every few seconds. A failing input is saved as
 * `<corpus>/<target>-<sha1 of bytes>.bin` (`http-<kind>-<sha1>.bin` for the handshake target) with a `.json`
 * sidecar (target, role or kind, options or limits, seeds, violations) and printed; similar violations are saved
 * once per run. The `hub-order` target saves nothing (its inputs depend on timing): its violations are printed, and
 * `--seed` repeats its requests (not their timing). Exits 1 at the end when any violation was found.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CampaignStats, type Finding, parseSeed, runCampaign } from './core.js';
import { type HttpCampaignStats, type HttpFinding, runHttpCampaign } from './http.js';
import { type HubOrderStats, runHubOrderCampaign } from './hub.js';

/** Which campaign(s) to run. */
export type FuzzTarget = 'core' | 'http' | 'hub-order' | 'all';

/** Parsed command line. */
export interface RunArgs {
  seconds: number;
  seed: number;
  target: FuzzTarget;
  roles: Array<'server' | 'client'>;
  progressSeconds: number;
  corpus: string;
}

const USAGE = 'usage: npm run fuzz -- [--seconds N] [--seed S] [--target core|http|hub-order|all] [--role server|client|both] [--progress N] [--corpus DIR]';

/** Parses `argv` (without node and script); throws a usage error on anything unknown. */
export function parseArgs(argv: readonly string[]): RunArgs {
  const here = dirname(fileURLToPath(import.meta.url));
  const args: RunArgs = {
    seconds: 60,
    seed: (Date.now() ^ (process.pid << 16)) >>> 0,
    target: 'all',
    roles: ['server', 'client'],
    progressSeconds: 5,
    corpus: join(here, 'corpus'),
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    switch (flag) {
      case '--seconds': {
        args.seconds = Number(value());
        if (!(args.seconds > 0)) throw new Error(`--seconds must be a positive number\n${USAGE}`);
        break;
      }
      case '--seed':
        args.seed = parseSeed(value());
        break;
      case '--target': {
        const target = value();
        if (target !== 'core' && target !== 'http' && target !== 'hub-order' && target !== 'all') throw new Error(`--target must be core, http, hub-order or all\n${USAGE}`);
        args.target = target;
        break;
      }
      case '--role': {
        const role = value();
        if (role === 'both') args.roles = ['server', 'client'];
        else if (role === 'server' || role === 'client') args.roles = [role];
        else throw new Error(`--role must be server, client or both\n${USAGE}`);
        break;
      }
      case '--progress':
        args.progressSeconds = Math.max(0.5, Number(value()) || 5);
        break;
      case '--corpus':
        args.corpus = resolve(value());
        break;
      case '--help':
      case '-h':
        console.log(USAGE);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${argv[i]}\n${USAGE}`);
    }
  }
  return args;
}

/** A violation line with numbers, hex, quoted text and run labels blurred: similar violations share it. */
function violationKind(line: string): string {
  return line
    .replace(/\[[^\]]*(whole|1-byte|random)[^\]]*\]/g, '[run]')
    .replace(/"[^"]*"/g, '"…"')
    .replace(/\d+/g, 'N')
    .slice(0, 160);
}

/** Writes `<name>.bin` and its `.json` sidecar into `corpus`; returns the .bin path. */
function writeCase(corpus: string, name: string, bytes: Buffer, sidecar: object): string {
  mkdirSync(corpus, { recursive: true });
  const base = join(corpus, name);
  writeFileSync(`${base}.bin`, bytes);
  writeFileSync(`${base}.json`, `${JSON.stringify(sidecar, null, 2)}\n`);
  return `${base}.bin`;
}

const sha1 = (bytes: Buffer): string => createHash('sha1').update(bytes).digest('hex');

/** Writes a core finding as `<target>-<sha1>.bin` and its `.json` sidecar; returns the .bin path. */
export function saveFinding(corpus: string, finding: Finding, masterSeed: number): string {
  return writeCase(corpus, `${finding.target}-${sha1(finding.bytes)}`, finding.bytes, {
    target: finding.target,
    role: finding.role,
    options: finding.options,
    seed: finding.seed,
    checkSeed: finding.checkSeed,
    masterSeed,
    iteration: finding.iteration,
    replay:
      finding.target === 'roundtrip'
        ? `checkRoundTrip(createRng(${finding.seed}))`
        : `checkInput('${finding.role}', options, bytes, createRng(${finding.checkSeed}))`,
    violations: finding.violations,
  });
}

/** Writes a handshake finding as `http-<kind>-<sha1>.bin` and its `.json` sidecar; returns the .bin path. */
export function saveHttpFinding(corpus: string, finding: HttpFinding, masterSeed: number): string {
  return writeCase(corpus, `http-${finding.kind}-${sha1(finding.bytes)}`, finding.bytes, {
    target: 'http',
    kind: finding.kind,
    limits: finding.limits,
    seed: finding.seed,
    checkSeed: finding.checkSeed,
    masterSeed,
    iteration: finding.iteration,
    replay:
      finding.kind === 'tokens'
        ? `checkTokens(bytes.toString('latin1'), createRng(${finding.checkSeed}))`
        : `checkHead(bytes, createRng(${finding.checkSeed}), { kind: '${finding.kind}', limits })`,
    violations: finding.violations,
  });
}

const rate = (iterations: number, ms: number): string => (iterations / Math.max(0.001, ms / 1000)).toFixed(0);

function coreLine(stats: CampaignStats): string {
  return (
    `[core ${(stats.elapsedMs / 1000).toFixed(0).padStart(4)}s] ${stats.iterations} iterations (${rate(stats.iterations, stats.elapsedMs)}/s): ` +
    `server ${stats.inputs.server}, client ${stats.inputs.client}, round trips ${stats.roundTrips}, ` +
    `${(stats.bytes / 1e6).toFixed(1)} MB of input | violations in ${stats.findings} iterations`
  );
}

function httpLine(stats: HttpCampaignStats): string {
  const outcomes = Object.entries(stats.outcomes)
    .sort()
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  return (
    `[http ${(stats.elapsedMs / 1000).toFixed(0).padStart(4)}s] ${stats.iterations} iterations (${rate(stats.iterations, stats.elapsedMs)}/s): ` +
    `requests ${stats.requests}, responses ${stats.responses}, token values ${stats.tokenValues}, ${(stats.bytes / 1e6).toFixed(1)} MB | ` +
    `outcomes ${outcomes || '-'}, upgrades accepted ${stats.upgrades} | violations in ${stats.findings} iterations`
  );
}

function hubOrderLine(stats: HubOrderStats): string {
  return (
    `[hub-order ${(stats.elapsedMs / 1000).toFixed(0).padStart(4)}s] ${stats.batches} batches (${rate(stats.batches, stats.elapsedMs)}/s): ` +
    `${stats.requests} requests, ${stats.publishes} publishes, ${stats.deliveries} deliveries, ` +
    `${stats.selfChecks} own-publish and ${stats.crossChecks} cross-client delivery checks | violations ${stats.violations.length}`
  );
}

/** Prints a finding's violations once per kind and saves up to 50 inputs (when it has some to save); shared by the targets. */
class Reporter {
  readonly kinds = new Set<string>();
  private saved = 0;
  constructor(private readonly corpus: string) {}

  report(header: string, violations: string[], save?: () => string): void {
    const kinds = violations.map(violationKind).filter((k) => !this.kinds.has(k));
    if (kinds.length === 0) return; // seen this run already
    kinds.forEach((k) => this.kinds.add(k));
    console.log(`\nVIOLATION (${header}):`);
    for (const line of violations) console.log(`  ${line}`);
    if (save !== undefined && this.saved < 50) {
      this.saved++;
      console.log(`  saved ${save()} (in ${this.corpus})\n`);
    }
  }
}

/** Runs the fuzzer with the given command line; resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let args: RunArgs;
  try {
    args = parseArgs(argv);
  } catch (error) {
    console.error((error as Error).message);
    return 2;
  }
  const seconds = args.target === 'all' ? args.seconds / 3 : args.seconds;
  const runs = (target: Exclude<FuzzTarget, 'all'>): boolean => args.target === target || args.target === 'all';
  console.log(
    `fuzz: ${args.seconds} s, target ${args.target}, seed ${args.seed} (--seed ${args.seed} repeats this run), ` +
      `${runs('core') ? `roles ${args.roles.join('+')}, ` : ''}corpus ${args.corpus}`,
  );
  const reporter = new Reporter(args.corpus);
  let findings = 0;

  if (runs('core')) {
    const stats = runCampaign({
      seconds,
      seed: args.seed,
      roles: args.roles,
      progressMs: args.progressSeconds * 1000,
      onProgress: (s) => console.log(coreLine(s)),
      onFinding: (f) =>
        reporter.report(
          `core ${f.target}, role ${f.role}, iteration ${f.iteration}, seed ${f.seed}, ${f.bytes.length} bytes, options ${JSON.stringify(f.options)}`,
          f.violations,
          () => saveFinding(args.corpus, f, args.seed),
        ),
    });
    console.log(coreLine(stats));
    console.log(
      `core done: ${stats.iterations} iterations in ${(stats.elapsedMs / 1000).toFixed(1)} s (${rate(stats.iterations, stats.elapsedMs)}/s): ` +
        `${stats.inputs.server} server inputs, ${stats.inputs.client} client inputs, ${stats.roundTrips} round trips, ` +
        `${(stats.bytes / 1e6).toFixed(1)} MB; violations in ${stats.findings} iterations`,
    );
    findings += stats.findings;
  }

  if (runs('http')) {
    const stats = runHttpCampaign({
      seconds,
      seed: args.seed,
      progressMs: args.progressSeconds * 1000,
      onProgress: (s) => console.log(httpLine(s)),
      onFinding: (f) =>
        reporter.report(
          `http ${f.kind}, iteration ${f.iteration}, seed ${f.seed}, ${f.bytes.length} bytes, limits ${JSON.stringify(f.limits)}`,
          f.violations,
          () => saveHttpFinding(args.corpus, f, args.seed),
        ),
    });
    console.log(httpLine(stats));
    console.log(
      `http done: ${stats.iterations} iterations in ${(stats.elapsedMs / 1000).toFixed(1)} s (${rate(stats.iterations, stats.elapsedMs)}/s): ` +
        `${stats.requests} requests, ${stats.responses} responses, ${stats.tokenValues} token values, ${(stats.bytes / 1e6).toFixed(1)} MB; ` +
        `violations in ${stats.findings} iterations`,
    );
    findings += stats.findings;
  }

  if (runs('hub-order')) {
    const stats = await runHubOrderCampaign({
      seconds,
      seed: args.seed,
      progressMs: args.progressSeconds * 1000,
      onProgress: (s) => console.log(hubOrderLine(s)),
    });
    console.log(hubOrderLine(stats));
    if (stats.violations.length > 0) reporter.report(`hub-order, seed ${args.seed}`, stats.violations);
    console.log(
      `hub-order done: ${stats.batches} batches in ${(stats.elapsedMs / 1000).toFixed(1)} s: ${stats.requests} requests, ${stats.publishes} publishes, ` +
        `${stats.deliveries} deliveries; ${stats.violations.length} violations`,
    );
    // Counted as one failing iteration: the campaign is one run, its violations are not tied to one input.
    if (stats.violations.length > 0) findings++;
  }

  console.log(`violations: ${findings} iterations (${reporter.kinds.size} kinds)`);
  return findings > 0 ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
