/**
 * Runner behind `npm run autobahn`: runs the Autobahn|Testsuite against wsengine's server (fuzzingclient mode)
 * and/or client (fuzzingserver mode), shows progress, then summarises the reports (see ./summary.ts).
 *
 * The suite comes from Docker (a running engine and {@link AUTOBAHN_IMAGE}) or from a `wstest` command
 * (`WSTEST` env var, or on PATH). Exit codes: 0 all fine, 1 failing cases / regressions / a broken run,
 * 2 bad arguments, 3 no way to run the suite.
 *
 * The pure parts (argument parsing, config generation, suite detection with injected environment, command
 * building, output parsing) are exported for the tests; process handling lives in {@link runAutobahn}.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ArgReader, caseMatchesPatterns, isMainModule, loadReport, parseCasePatterns, runSummaryCli, SummaryInputError } from './summary.js';

/**
 * The testsuite's Docker image, pinned by tag so that runs are reproducible. To move to another release,
 * change the tag here (list: https://hub.docker.com/r/crossbario/autobahn-testsuite/tags), run
 * `npm run autobahn`, and refresh expected-results-*.json if outcomes legitimately changed. For byte-exact
 * pinning, append the digest: `crossbario/autobahn-testsuite:25.10.1@sha256:<digest>`.
 */
export const AUTOBAHN_IMAGE = 'crossbario/autobahn-testsuite:25.10.1';

/** Agent name under which wsengine appears in the reports. */
export const AGENT = 'wsengine';

/** Default port of the testee server (server mode) and of the suite's fuzzing server (client mode). */
export const DEFAULT_PORT = 9001;

/** Exit codes of the runner. */
export const EXIT = Object.freeze({ OK: 0, FAILED: 1, USAGE: 2, NO_SUITE: 3 });

/** This folder (autobahn/). */
export const AUTOBAHN_DIR = import.meta.dirname;
/** Where the reports and the generated configs go (gitignored); each run writes a folder of its own there. */
export const REPORTS_DIR = path.join(AUTOBAHN_DIR, 'reports');

/**
 * Every case id of the pinned suite release, in order (autobahn/cases.json, taken from a full report of
 * {@link AUTOBAHN_IMAGE}). The runner expands `--cases` against it to know which cases a run must report.
 */
export const SUITE_CASES: readonly string[] = JSON.parse(readFileSync(path.join(AUTOBAHN_DIR, 'cases.json'), 'utf8')) as string[];

/**
 * Default time limit of a run: {@link TIMEOUT_BASE_S} for starting up and writing reports, plus
 * {@link TIMEOUT_PER_CASE_S} per requested case. The slowest case seen took 37 s and full runs averaged 2.3–4.6 s
 * a case, so this is about 3× the slowest full run measured (517 cases: 7,875 s), and 135 s for a single case.
 */
export const TIMEOUT_BASE_S = 120;
/** See {@link TIMEOUT_BASE_S}. */
export const TIMEOUT_PER_CASE_S = 15;

/** The default time limit of a run of `caseCount` cases, in seconds (see {@link TIMEOUT_BASE_S}). */
export function defaultTimeoutSeconds(caseCount: number): number {
  return TIMEOUT_BASE_S + TIMEOUT_PER_CASE_S * caseCount;
}

/**
 * The case ids a run must report: those of `allCases` matching `patterns` (all when undefined) and no
 * `excluded` pattern, in suite order.
 */
export function requestedCases(patterns: readonly string[] | undefined, excluded: readonly string[] = [], allCases: readonly string[] = SUITE_CASES): string[] {
  return allCases.filter((id) => (patterns === undefined || caseMatchesPatterns(id, patterns)) && !caseMatchesPatterns(id, excluded));
}

/** The report folder name of one run: `<mode>-<UTC time>`, e.g. `server-2026-03-01T12-30-05Z` (sorts by time). */
export function runFolderName(mode: Mode, at: Date): string {
  return `${mode}-${at.toISOString().replace(/\.\d+Z$/, 'Z').replaceAll(':', '-')}`;
}

/** How a suite or testee process ended. */
export interface ProcessEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

/** What happened in one run, as {@link runProblems} judges it. */
export interface RunFacts {
  /** How the suite process ended; undefined when the runner stopped it itself as planned (client mode). */
  suite?: ProcessEnd;
  /** The time limit in seconds, when it was reached (the runner then killed the suite). */
  timedOutAfter?: number;
  /** Case ids the run had to report (see {@link requestedCases}). */
  requested: readonly string[];
  /** Case ids in the run's index.json for our agent; undefined when it is missing or unreadable (with why). */
  reported?: readonly string[];
  /** Why index.json could not be read. */
  reportError?: string;
}

/**
 * Why a run counts as failed, whatever its cases say: the time limit was reached, the suite died on a signal,
 * exited non-zero or could not start, or index.json is missing or leaves out requested cases. Empty: the run
 * itself is sound (its cases may still fail; the summary judges those).
 */
export function runProblems(facts: RunFacts): string[] {
  const problems: string[] = [];
  if (facts.timedOutAfter !== undefined) problems.push(`the suite did not finish within the ${facts.timedOutAfter} s time limit (--timeout)`);
  else if (facts.suite !== undefined && (facts.suite.error || facts.suite.signal || facts.suite.code !== 0)) problems.push(`the suite ${exitText(facts.suite)}`);
  if (facts.reported === undefined) {
    problems.push(`no usable index.json${facts.reportError ? ` (${facts.reportError})` : ''}`);
  } else {
    const reported = new Set(facts.reported);
    const missing = facts.requested.filter((id) => !reported.has(id));
    if (missing.length > 0) {
      const shown = missing.slice(0, 10).join(', ') + (missing.length > 10 ? `, … (${missing.length - 10} more)` : '');
      problems.push(`index.json lacks ${missing.length} of the ${facts.requested.length} requested cases: ${shown}`);
    }
  }
  return problems;
}

/** The one line that says a run failed and why. */
export function failedRunLine(mode: Mode, problems: readonly string[]): string {
  return `autobahn: FAILED RUN (${mode}): ${problems.join('; ')}`;
}
const PROJECT_DIR = path.resolve(AUTOBAHN_DIR, '..');
const TESTEE_SERVER = path.join(AUTOBAHN_DIR, 'testee-server.ts');
const TESTEE_CLIENT = path.join(AUTOBAHN_DIR, 'testee-client.ts');
const HOST = '127.0.0.1';

/** Which side of wsengine is tested: `server` (suite in fuzzingclient mode) or `client` (fuzzingserver mode). */
export type Mode = 'server' | 'client';

/** Parsed runner options. */
export interface RunOptions {
  /** Modes to run, in order (`both` is server then client). */
  modes: Mode[];
  /** Case patterns from `--cases`; undefined runs the configs' own `cases` (all). */
  cases?: string[];
  port: number;
  /** Time limit per run (per mode) in seconds from `--timeout`; undefined: {@link defaultTimeoutSeconds}. */
  timeout?: number;
  /** False with `--no-summary`. */
  summary: boolean;
  help: boolean;
}

/** Bad command-line arguments; the runner prints usage and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Usage text of the runner. */
export const USAGE = `Usage: npm run autobahn -- [options]
       tsx autobahn/run.ts [options]

Runs the Autobahn|Testsuite against wsengine and summarises the results.

Options:
  --mode server|client|both  what to test (default: both)
                               server: the suite (fuzzingclient) connects to autobahn/testee-server.ts
                               client: autobahn/testee-client.ts connects to the suite (fuzzingserver)
  --cases LIST               comma-separated case patterns, e.g. "1.*,5.*,12.1.*" (default: all cases)
  --port N                   port of the testee server / the suite's fuzzing server (default: ${DEFAULT_PORT})
  --timeout SECONDS          time limit of each run (each mode); the suite is then killed and the run fails
                             (default: ${TIMEOUT_BASE_S} s + ${TIMEOUT_PER_CASE_S} s per requested case; all ${SUITE_CASES.length} cases: ${defaultTimeoutSeconds(SUITE_CASES.length)} s)
  --no-summary               do not summarise the reports (exit code then only reflects the run itself)
  -h, --help                 show this help

The suite is taken from, in order:
  1. WSTEST=/path/to/wstest (an explicit choice)
  2. Docker, when an engine is running (docker info succeeds): image ${AUTOBAHN_IMAGE}
  3. wstest on PATH (a Python 2.7 program: see autobahn/README.md)

Reports: each run writes a folder of its own, autobahn/reports/<mode>-<UTC time>/ (index.html, index.json);
earlier runs are kept. When autobahn/expected-results-server.json / -client.json exist, results are compared
with them. A run fails when the suite dies on a signal, exits non-zero, exceeds the time limit or leaves a
requested case out of index.json; one line "autobahn: FAILED RUN (<mode>): <why>" says which.
Exit codes: 0 fine, 1 failing cases, differences from the expected results or a broken run,
            2 bad arguments, 3 neither Docker nor wstest available.
`;

/** Parses the runner's arguments (without node/script); throws {@link UsageError} on bad input. */
export function parseRunArgs(argv: readonly string[]): RunOptions {
  const options: RunOptions = { modes: ['server', 'client'], port: DEFAULT_PORT, summary: true, help: false };
  const reader = new ArgReader(argv, (message) => new UsageError(message));
  for (let flag = reader.next(); flag !== undefined; flag = reader.next()) {
    const { arg, name, inline } = flag;
    const value = (n: string, i: string | undefined): string => reader.value(n, i);
    switch (name) {
      case '--mode': {
        const mode = value(name, inline);
        if (mode === 'both') options.modes = ['server', 'client'];
        else if (mode === 'server' || mode === 'client') options.modes = [mode];
        else throw new UsageError(`--mode must be server, client or both, not "${mode}"`);
        break;
      }
      case '--cases':
        try {
          options.cases = parseCasePatterns(value(name, inline));
        } catch (error) {
          if (error instanceof SummaryInputError) throw new UsageError(`--cases: ${error.message}`);
          throw error;
        }
        for (const pattern of options.cases) {
          if (requestedCases([pattern]).length === 0) throw new UsageError(`--cases: "${pattern}" matches no case of the suite`);
        }
        break;
      case '--port': {
        const text = value(name, inline);
        const port = Number(text);
        if (!/^\d+$/.test(text) || port < 1 || port > 65535) throw new UsageError(`--port must be 1-65535, not "${text}"`);
        options.port = port;
        break;
      }
      case '--timeout': {
        const text = value(name, inline);
        const seconds = Number(text);
        if (!/^\d+(\.\d+)?$/.test(text) || seconds <= 0) throw new UsageError(`--timeout must be a positive number of seconds, not "${text}"`);
        options.timeout = seconds;
        break;
      }
      case '--no-summary':
        if (inline !== undefined) throw new UsageError('--no-summary takes no value');
        options.summary = false;
        break;
      case '-h':
      case '--help':
        options.help = true;
        break;
      default:
        throw new UsageError(`unknown argument ${arg}`);
    }
  }
  return options;
}

/** A testsuite config as JSON. */
export type SuiteConfig = Record<string, unknown>;

/** What a generated config changes in the committed one. */
export interface ConfigOverrides {
  /** Replaces `cases` when given. */
  cases?: string[];
  /** Replaces the port of the URL(s). */
  port: number;
  /** Replaces `outdir`. */
  outdir: string;
}

/** Returns a ws:// or wss:// URL with its port replaced (added when absent); path and query are kept. */
export function withPort(url: string, port: number): string {
  const match = /^(wss?:\/\/)(\[[^\]]+\]|[^/:?#]+)(:\d+)?(.*)$/i.exec(url);
  if (!match) throw new Error(`not a WebSocket URL: ${url}`);
  return `${match[1]}${match[2]}:${port}${match[4]}`;
}

function applyCommon(config: SuiteConfig, overrides: ConfigOverrides): void {
  if (overrides.cases !== undefined) config.cases = [...overrides.cases];
  config.outdir = overrides.outdir;
}

/**
 * Builds the fuzzingclient config for one run from the committed one (not modified): `cases` replaced by
 * the `--cases` patterns if any, every server URL moved to the port, `outdir` replaced.
 */
export function makeFuzzingClientConfig(base: SuiteConfig, overrides: ConfigOverrides): SuiteConfig {
  const config = structuredClone(base);
  const servers = config.servers;
  if (!Array.isArray(servers) || servers.length === 0) throw new Error('fuzzingclient config needs a non-empty "servers" list');
  config.servers = servers.map((server: unknown) => {
    if (typeof server !== 'object' || server === null || typeof (server as { url?: unknown }).url !== 'string') {
      throw new Error('every fuzzingclient server needs a "url"');
    }
    const entry = server as { url: string };
    return { ...entry, url: withPort(entry.url, overrides.port) };
  });
  applyCommon(config, overrides);
  return config;
}

/**
 * Builds the fuzzingserver config for one run from the committed one (not modified): `cases` replaced by
 * the `--cases` patterns if any, the listening `url` moved to the port, `outdir` replaced.
 */
export function makeFuzzingServerConfig(base: SuiteConfig, overrides: ConfigOverrides): SuiteConfig {
  const config = structuredClone(base);
  if (typeof config.url !== 'string') throw new Error('fuzzingserver config needs a "url"');
  config.url = withPort(config.url, overrides.port);
  applyCommon(config, overrides);
  return config;
}

/** How to run the suite. */
export type Suite = { kind: 'docker'; docker: string; image: string } | { kind: 'wstest'; command: string };

/** What suite detection may look at; injected so tests can fake every situation. */
export interface DetectDeps {
  env: Record<string, string | undefined>;
  /** Runs a command to completion; `ok` when it exited 0. */
  run(command: string, args: string[]): { ok: boolean };
  /** Whether a path is an executable file. */
  isExecutable(file: string): boolean;
  platform?: NodeJS.Platform;
}

/** The result of {@link detectSuite}: the suite, if any, and notes on what was not usable and why. */
export interface Detection {
  suite?: Suite;
  notes: string[];
}

/** Looks a command up on `env.PATH` (honouring PATHEXT on Windows); returns its path or undefined. */
export function findOnPath(name: string, deps: Pick<DetectDeps, 'env' | 'isExecutable' | 'platform'>): string | undefined {
  const platform = deps.platform ?? process.platform;
  const delimiter = platform === 'win32' ? ';' : ':';
  const exts = platform === 'win32' ? ['', ...(deps.env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';')] : [''];
  for (const dir of (deps.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    for (const ext of exts) {
      const candidate = path.join(dir, name + ext);
      if (deps.isExecutable(candidate)) return candidate;
    }
  }
  return undefined;
}

/**
 * Finds a way to run the suite, in this order: the `WSTEST` env var (an explicit choice: a path, or a command
 * looked up on PATH), Docker when `docker info` succeeds (a running engine, not just the client), then
 * `wstest` on PATH. Every unusable option leaves a note.
 */
export function detectSuite(deps: DetectDeps): Detection {
  const notes: string[] = [];
  const wstestEnv = deps.env.WSTEST;
  if (wstestEnv) {
    const hasDir = wstestEnv.includes('/') || wstestEnv.includes('\\');
    const command = hasDir ? (deps.isExecutable(path.resolve(wstestEnv)) ? path.resolve(wstestEnv) : undefined) : findOnPath(wstestEnv, deps);
    if (command) return { suite: { kind: 'wstest', command }, notes };
    notes.push(`WSTEST=${wstestEnv} is not an executable file${hasDir ? '' : ' on PATH'}; ignoring it`);
  }
  const docker = findOnPath('docker', deps);
  if (!docker) {
    notes.push('docker: not found on PATH');
  } else if (deps.run(docker, ['info']).ok) {
    return { suite: { kind: 'docker', docker, image: AUTOBAHN_IMAGE }, notes };
  } else {
    notes.push(`docker: client found at ${docker}, but \`docker info\` failed: no Docker engine is running (or it is not reachable)`);
  }
  const wstest = findOnPath('wstest', deps);
  if (wstest) return { suite: { kind: 'wstest', command: wstest }, notes };
  notes.push(`wstest: not found on PATH${wstestEnv ? '' : ', and WSTEST is not set'}`);
  return { notes };
}

/** The message printed when no suite is available: what was found lacking and how to get either option. */
export function noSuiteMessage(notes: readonly string[]): string {
  return [
    'autobahn: cannot run the Autobahn|Testsuite: neither Docker nor wstest is available.',
    ...notes.map((note) => `  - ${note}`),
    '',
    'Get either of:',
    `  1. Docker: install Docker (https://docs.docker.com/get-docker/) and start its engine so that`,
    `     \`docker info\` succeeds; the runner then uses the image ${AUTOBAHN_IMAGE}`,
    `     (pulled automatically, or beforehand with \`docker pull ${AUTOBAHN_IMAGE}\`).`,
    '  2. wstest: a working wstest you already have, on PATH or named by WSTEST=/path/to/wstest. The suite is',
    '     a Python 2.7 program on pinned pre-2020 dependencies; installing it outside Docker is upstream\'s',
    '     recipe, not verified by this project (see autobahn/README.md).',
    '',
  ].join('\n');
}

/** Describes a suite for the log. */
export function describeSuite(suite: Suite): string {
  return suite.kind === 'docker' ? `Docker image ${suite.image} (${suite.docker})` : `wstest at ${suite.command}`;
}

/** Parameters of {@link suiteCommand}. */
export interface SuiteCommandParams {
  /** wstest mode: `fuzzingclient` tests our server, `fuzzingserver` tests our client. */
  mode: 'fuzzingclient' | 'fuzzingserver';
  /** Absolute host path of the generated config; must lie inside `autobahnDir` for Docker. */
  configFile: string;
  autobahnDir: string;
  reportsDir: string;
  /** Name for the container, so it can be killed by name. */
  containerName: string;
}

/**
 * The command line that runs the suite. Docker: `docker run --rm --network host` with the autobahn folder
 * mounted at /config and the reports folder at /reports, unbuffered Python output, then
 * `wstest -m MODE -s /config/<config>`. wstest: `wstest -m MODE -s <config>`. In `fuzzingserver` mode (testing our
 * client) `-u 0` follows: the suite would otherwise also serve its web UI on port 8080 (and die when 8080 is
 * taken); the runner does not use it.
 */
export function suiteCommand(suite: Suite, params: SuiteCommandParams): { command: string; args: string[] } {
  const noWebUi = params.mode === 'fuzzingserver' ? ['-u', '0'] : [];
  if (suite.kind === 'wstest') return { command: suite.command, args: ['-m', params.mode, '-s', params.configFile, ...noWebUi] };
  const relative = path.relative(params.autobahnDir, params.configFile);
  if (relative.startsWith('..') || path.isAbsolute(relative)) {
    throw new Error(`config ${params.configFile} must lie inside ${params.autobahnDir} to be visible in the container`);
  }
  return {
    command: suite.docker,
    args: [
      'run', '--rm', '--network', 'host', '--name', params.containerName,
      '-e', 'PYTHONUNBUFFERED=1',
      '-v', `${params.autobahnDir}:/config`,
      '-v', `${params.reportsDir}:/reports`,
      suite.image,
      'wstest', '-m', params.mode, '-s', `/config/${relative.split(path.sep).join('/')}`, ...noWebUi,
    ],
  };
}

/** The `outdir` to write into a generated config: as the suite sees the run's folder under the reports folder. */
export function suiteOutdir(suite: Suite, reportsDir: string, sub: string): string {
  return suite.kind === 'docker' ? `/reports/${sub}` : path.join(reportsDir, sub);
}

/** What a line of the suite's output says. */
export type SuiteLine = { kind: 'total'; total: number } | { kind: 'case'; id: string } | { kind: 'other' };

/**
 * Classifies a line of wstest output: `Ok, will run N test cases ...` gives the total, `Running test case ID
 * X for agent ...` marks a case starting; anything else is `other`.
 */
export function parseSuiteLine(line: string): SuiteLine {
  const total = /will run (\d+) test cases?/i.exec(line);
  if (total) return { kind: 'total', total: Number(total[1]) };
  const started = /Running test case ID (\d+(?:\.\d+)*)/i.exec(line);
  if (started) return { kind: 'case', id: started[1] };
  return { kind: 'other' };
}

/** Case progress through a run. */
export interface Progress {
  done: number;
  total?: number;
}

/**
 * Updates progress from one line of suite output and returns what to print for it: `case N/M: ID` for a case
 * line, the line itself with a prefix otherwise (or undefined for blank lines).
 */
export function progressLine(line: string, progress: Progress, prefix = '[autobahn]'): string | undefined {
  const parsed = parseSuiteLine(line);
  if (parsed.kind === 'total') progress.total = parsed.total;
  if (parsed.kind === 'case') {
    progress.done++;
    return `${prefix} case ${progress.done}/${progress.total ?? '?'}: ${parsed.id}`;
  }
  return line.trim() === '' ? undefined : `${prefix} ${line}`;
}

/** Resolves true when something accepts TCP connections on host:port within the timeout. */
export function probePort(port: number, host = HOST, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Polls host:port until it accepts connections (true), the timeout passes or `stop()` turns true (false).
 */
export async function waitForPort(
  port: number,
  host: string,
  { timeoutMs, intervalMs = 200, stop = () => false }: { timeoutMs: number; intervalMs?: number; stop?: () => boolean },
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (stop()) return false;
    if (await probePort(port, host, Math.min(1000, Math.max(1, deadline - Date.now())))) return true;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return false;
}

/** Everything {@link runAutobahn} needs from the outside world. */
export interface RunnerDeps extends DetectDeps {
  out(text: string): void;
  err(text: string): void;
}

function isExecutableFile(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The real environment: process.env, spawnSync, the file system and process.stdout/stderr. */
export function defaultRunnerDeps(): RunnerDeps {
  return {
    env: process.env,
    run: (command, args) => ({ ok: spawnSync(command, args, { stdio: 'ignore', timeout: 20_000 }).status === 0 }),
    isExecutable: isExecutableFile,
    platform: process.platform,
    out: (text) => void process.stdout.write(text),
    err: (text) => void process.stderr.write(text),
  };
}

/**
 * Runs the tool: parses arguments, detects the suite, runs the requested modes and summarises. Returns the
 * exit code (see {@link EXIT}); returns before starting any process for `--help`, bad arguments, and when
 * no suite is available.
 */
export async function runAutobahn(argv: readonly string[], deps: RunnerDeps = defaultRunnerDeps()): Promise<number> {
  let options: RunOptions;
  try {
    options = parseRunArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    deps.err(`autobahn: ${error.message}\n\n${USAGE}`);
    return EXIT.USAGE;
  }
  if (options.help) {
    deps.out(USAGE);
    return EXIT.OK;
  }
  const detection = detectSuite(deps);
  if (!detection.suite) {
    deps.err(noSuiteMessage(detection.notes));
    return EXIT.NO_SUITE;
  }
  for (const note of detection.notes) deps.err(`autobahn: note: ${note}\n`);
  deps.out(`autobahn: using ${describeSuite(detection.suite)}\n`);
  return new Session(options, detection.suite, deps).run();
}

interface Started {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>;
  exited: boolean;
}

/** Spawned processes and containers of this run, killed on exit and on SIGINT/SIGTERM. */
const live = new Set<ChildProcess>();
const containers = new Map<string, string>();
let cleanupInstalled = false;

function killEverything(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const [name, docker] of containers) spawnSync(docker, ['kill', name], { stdio: 'ignore', timeout: 15_000 });
  containers.clear();
}

function installCleanup(err: (text: string) => void): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.on('exit', killEverything);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      err(`\nautobahn: ${signal}: stopping the testee and the suite\n`);
      killEverything();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
}

function startProcess(command: string, args: string[], onLine: (line: string) => void, env?: NodeJS.ProcessEnv): Started {
  const child = spawn(command, args, { cwd: PROJECT_DIR, stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  live.add(child);
  const started: Started = { child, exited: false, done: undefined as never };
  started.done = new Promise((resolve) => {
    let settled = false;
    const finish = (result: { code: number | null; signal: NodeJS.Signals | null; error?: Error }): void => {
      if (settled) return;
      settled = true;
      started.exited = true;
      live.delete(child);
      resolve(result);
    };
    child.once('error', (error) => finish({ code: null, signal: null, error }));
    child.once('close', (code, signal) => finish({ code, signal }));
  });
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream, crlfDelay: Infinity }).on('line', onLine);
  }
  return started;
}

async function stopProcess(started: Started, graceMs = 5000): Promise<void> {
  if (started.exited) return;
  started.child.kill('SIGTERM');
  const timer = new Promise<'timeout'>((resolve) => setTimeout(resolve, graceMs, 'timeout').unref());
  if ((await Promise.race([started.done, timer])) === 'timeout') {
    started.child.kill('SIGKILL');
    await started.done;
  }
}

function exitText(result: { code: number | null; signal: NodeJS.Signals | null; error?: Error }): string {
  if (result.error) return `could not start: ${result.error.message}`;
  return result.signal ? `was killed by ${result.signal}` : `exited with code ${result.code}`;
}

/** One invocation of the runner with real processes. */
class Session {
  constructor(
    private readonly options: RunOptions,
    private readonly suite: Suite,
    private readonly deps: RunnerDeps,
  ) {}

  async run(): Promise<number> {
    installCleanup(this.deps.err);
    mkdirSync(REPORTS_DIR, { recursive: true });
    if (this.suite.kind === 'docker' && !(await this.ensureImage(this.suite))) return EXIT.FAILED;
    let code: number = EXIT.OK;
    for (const mode of this.options.modes) {
      this.deps.out(`\n=== Autobahn: testing the wsengine ${mode} ===\n`);
      const result = mode === 'server' ? await this.runServerMode() : await this.runClientMode();
      code = Math.max(code, result);
    }
    return code;
  }

  private line(text: string): void {
    this.deps.out(`${text}\n`);
  }

  private fail(text: string): number {
    this.deps.err(`autobahn: ${text}\n`);
    return EXIT.FAILED;
  }

  private async ensureImage(suite: Extract<Suite, { kind: 'docker' }>): Promise<boolean> {
    if (spawnSync(suite.docker, ['image', 'inspect', suite.image], { stdio: 'ignore' }).status === 0) return true;
    this.line(`autobahn: pulling ${suite.image} ...`);
    const pull = startProcess(suite.docker, ['pull', suite.image], (l) => this.line(`[docker] ${l}`));
    const result = await pull.done;
    if (result.code === 0) return true;
    this.fail(`docker pull ${suite.image} ${exitText(result)}`);
    return false;
  }

  /** A new folder for this run's reports and config; earlier runs' folders are never touched. */
  private newRunFolder(mode: Mode): string {
    const base = runFolderName(mode, new Date());
    for (let i = 0; ; i++) {
      const name = i === 0 ? base : `${base}-${i}`;
      const dir = path.join(REPORTS_DIR, name);
      try {
        mkdirSync(dir); // not recursive: fails if another run took the name first (runs may start in the same second)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw error;
      }
      this.line(`autobahn: this run's reports: ${path.relative(PROJECT_DIR, dir)}/`);
      return name;
    }
  }

  private writeConfig(folder: string, name: string, config: SuiteConfig): string {
    const file = path.join(REPORTS_DIR, folder, name);
    writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
    return file;
  }

  private startSuite(mode: SuiteCommandParams['mode'], configFile: string, onLine: (line: string) => void): { proc: Started; stop: () => Promise<void> } {
    const containerName = `wsengine-autobahn-${process.pid}-${mode}`;
    const { command, args } = suiteCommand(this.suite, { mode, configFile, autobahnDir: AUTOBAHN_DIR, reportsDir: REPORTS_DIR, containerName });
    const suite = this.suite;
    if (suite.kind === 'docker') containers.set(containerName, suite.docker);
    const proc = startProcess(command, args, onLine, { ...process.env, PYTHONUNBUFFERED: '1' });
    const stop = async (): Promise<void> => {
      if (suite.kind === 'docker' && containers.has(containerName)) {
        if (!proc.exited) spawnSync(suite.docker, ['kill', containerName], { stdio: 'ignore', timeout: 15_000 });
        containers.delete(containerName);
      }
      await stopProcess(proc);
    };
    void proc.done.then(() => {
      if (suite.kind === 'docker') containers.delete(containerName);
    });
    return { proc, stop };
  }

  private async ensurePortFree(): Promise<boolean> {
    if (!(await probePort(this.options.port))) return true;
    this.fail(`port ${this.options.port} on ${HOST} is already in use; stop whatever listens there or pass --port`);
    return false;
  }

  /** The cases this run must report, and its time limit in seconds. */
  private plan(base: SuiteConfig): { requested: string[]; limit: number } {
    const excluded = Array.isArray(base['exclude-cases']) ? (base['exclude-cases'] as string[]) : [];
    const requested = requestedCases(this.options.cases, excluded);
    const limit = this.options.timeout ?? defaultTimeoutSeconds(requested.length);
    this.line(`autobahn: ${requested.length} cases, time limit ${limit} s`);
    return { requested, limit };
  }

  /** Resolves 'timeout' after `seconds` (the timer does not keep the process alive). */
  private deadline(seconds: number): { reached: Promise<'timeout'>; clear: () => void } {
    let timer: NodeJS.Timeout | undefined;
    const reached = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(resolve, seconds * 1000, 'timeout');
      timer.unref();
    });
    return { reached, clear: () => clearTimeout(timer) };
  }

  private async runServerMode(): Promise<number> {
    const { port, cases } = this.options;
    const base = JSON.parse(readFileSync(path.join(AUTOBAHN_DIR, 'fuzzingclient.json'), 'utf8')) as SuiteConfig;
    const { requested, limit } = this.plan(base);
    if (!(await this.ensurePortFree())) return EXIT.FAILED;
    const folder = this.newRunFolder('server');
    const config = makeFuzzingClientConfig(base, { cases, port, outdir: suiteOutdir(this.suite, REPORTS_DIR, folder) });
    const configFile = this.writeConfig(folder, 'fuzzingclient.generated.json', config);

    const testee = startProcess(process.execPath, ['--import', 'tsx', TESTEE_SERVER, String(port)], (l) => this.line(`[testee-server] ${l}`));
    const up = await waitForPort(port, HOST, { timeoutMs: 30_000, stop: () => testee.exited });
    if (!up) {
      const why = testee.exited ? exitText(await testee.done) : 'did not listen within 30 s';
      await stopProcess(testee);
      return this.fail(`the testee server (${path.relative(PROJECT_DIR, TESTEE_SERVER)}) ${why}`);
    }

    const progress: Progress = { done: 0 };
    const suite = this.startSuite('fuzzingclient', configFile, (l) => {
      const text = progressLine(l, progress, '[autobahn]');
      if (text !== undefined) this.line(text);
    });
    let testeeDied = false;
    void testee.done.then((result) => {
      if (!suite.proc.exited) {
        testeeDied = true;
        this.fail(`the testee server ${exitText(result)} during the run`);
      }
    });
    const deadline = this.deadline(limit);
    const ended = await Promise.race([suite.proc.done, deadline.reached]);
    deadline.clear();
    if (ended === 'timeout') await suite.stop();
    await stopProcess(testee);
    const facts: Omit<RunFacts, 'requested' | 'reported'> =
      ended === 'timeout' ? { timedOutAfter: limit } : { suite: ended };
    return this.finish('server', folder, requested, facts, progress, testeeDied);
  }

  private async runClientMode(): Promise<number> {
    const { port, cases } = this.options;
    const base = JSON.parse(readFileSync(path.join(AUTOBAHN_DIR, 'fuzzingserver.json'), 'utf8')) as SuiteConfig;
    const { requested, limit } = this.plan(base);
    if (!(await this.ensurePortFree())) return EXIT.FAILED;
    const folder = this.newRunFolder('client');
    const config = makeFuzzingServerConfig(base, { cases, port, outdir: suiteOutdir(this.suite, REPORTS_DIR, folder) });
    const configFile = this.writeConfig(folder, 'fuzzingserver.generated.json', config);

    const progress: Progress = { done: 0 };
    const suite = this.startSuite('fuzzingserver', configFile, (l) => {
      // The testee client prints its own case progress; the suite's case lines are only counted.
      const text = progressLine(l, progress, '[autobahn]');
      if (text !== undefined && parseSuiteLine(l).kind !== 'case') this.line(text);
    });
    const deadline = this.deadline(limit);
    const up = await waitForPort(port, HOST, { timeoutMs: Math.min(120_000, limit * 1000), stop: () => suite.proc.exited });
    if (!up) {
      deadline.clear();
      const why = suite.proc.exited ? exitText(await suite.proc.done) : `did not listen within ${Math.min(120, limit)} s`;
      await suite.stop();
      return this.failedRun('client', [`the suite (fuzzingserver) ${why}`]);
    }

    const client = startProcess(process.execPath, ['--import', 'tsx', TESTEE_CLIENT, `ws://${HOST}:${port}`], (l) =>
      this.line(`[testee-client] ${l}`),
    );
    const ended = await Promise.race([client.done, deadline.reached]);
    deadline.clear();
    if (ended === 'timeout') await stopProcess(client);
    // The fuzzing server runs until stopped: once the client is done, stopping it is the plan, not a failure;
    // ending on its own before that is one.
    const suiteExitedEarly = suite.proc.exited;
    const suiteEnd = suiteExitedEarly ? await suite.proc.done : undefined;
    await suite.stop();
    const extra: string[] = [];
    if (ended !== 'timeout' && ended.code !== 0) extra.push(`the testee client (${path.relative(PROJECT_DIR, TESTEE_CLIENT)}) ${exitText(ended)}`);
    if (suiteExitedEarly) extra.push(`the suite (fuzzingserver) stopped before the testee client finished: it ${exitText(suiteEnd!)}`);
    const facts: Omit<RunFacts, 'requested' | 'reported'> = ended === 'timeout' ? { timedOutAfter: limit } : {};
    return this.finish('client', folder, requested, facts, progress, false, extra);
  }

  private failedRun(mode: Mode, problems: readonly string[]): number {
    this.deps.err(`${failedRunLine(mode, problems)}\n`);
    return EXIT.FAILED;
  }

  private finish(
    mode: Mode,
    folder: string,
    requested: readonly string[],
    facts: Omit<RunFacts, 'requested' | 'reported'>,
    progress: Progress,
    testeeDied: boolean,
    extra: string[] = [],
  ): number {
    const dir = path.join(REPORTS_DIR, folder);
    let reported: string[] | undefined;
    let reportError: string | undefined;
    try {
      reported = Object.keys(loadReport(dir, AGENT).cases);
    } catch (error) {
      if (!(error instanceof SummaryInputError)) throw error;
      reportError = error.message;
    }
    const problems = [...runProblems({ ...facts, requested, reported, reportError }), ...extra];
    if (testeeDied) problems.push('the testee server died during the run');
    if (progress.total !== undefined && progress.total !== requested.length) {
      problems.push(`the suite announced ${progress.total} cases, ${requested.length} were requested`);
    }
    let code: number = EXIT.OK;
    if (reported !== undefined) {
      this.line(`autobahn: HTML report: ${path.relative(PROJECT_DIR, path.join(dir, 'index.html'))}`);
      if (this.options.summary) {
        const args = [dir, '--agent', AGENT];
        if (this.options.cases) args.push('--cases', this.options.cases.join(','));
        const expected = path.join(AUTOBAHN_DIR, `expected-results-${mode}.json`);
        if (existsSync(expected)) args.push('--expected', expected);
        this.line('');
        if (runSummaryCli(args, { out: this.deps.out, err: this.deps.err }) !== 0) code = EXIT.FAILED;
      }
    }
    // Last, so that the verdict on the run itself is the final line, after any summary.
    if (problems.length > 0) return this.failedRun(mode, problems);
    return code;
  }
}

if (isMainModule(import.meta.url)) {
  process.exitCode = await runAutobahn(process.argv.slice(2));
}
