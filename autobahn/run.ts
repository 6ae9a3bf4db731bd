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
import { accessSync, constants, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ArgReader, isMainModule, parseCasePatterns, runSummaryCli, SummaryInputError } from './summary.js';

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
/** Where the reports and the generated configs go (gitignored). */
export const REPORTS_DIR = path.join(AUTOBAHN_DIR, 'reports');
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
  --no-summary               do not summarise the reports (exit code then only reflects the run itself)
  -h, --help                 show this help

The suite is taken from, in order:
  1. WSTEST=/path/to/wstest (an explicit choice)
  2. Docker, when an engine is running (docker info succeeds): image ${AUTOBAHN_IMAGE}
  3. wstest on PATH (pip install autobahntestsuite, under Python 2)

Reports: autobahn/reports/servers/index.html and autobahn/reports/clients/index.html.
When autobahn/expected-results-server.json / -client.json exist, results are compared with them.
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
        break;
      case '--port': {
        const text = value(name, inline);
        const port = Number(text);
        if (!/^\d+$/.test(text) || port < 1 || port > 65535) throw new UsageError(`--port must be 1-65535, not "${text}"`);
        options.port = port;
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
    '  2. wstest: install the suite under Python 2 (e.g. in a Python 2.7 virtualenv:',
    '     `pip install autobahntestsuite`), then put `wstest` on PATH or set WSTEST=/path/to/wstest.',
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
 * `wstest -m MODE -s /config/<config>`. wstest: `wstest -m MODE -s <config>`.
 */
export function suiteCommand(suite: Suite, params: SuiteCommandParams): { command: string; args: string[] } {
  if (suite.kind === 'wstest') return { command: suite.command, args: ['-m', params.mode, '-s', params.configFile] };
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
      'wstest', '-m', params.mode, '-s', `/config/${relative.split(path.sep).join('/')}`,
    ],
  };
}

/** The `outdir` to write into a generated config: as the suite sees the reports sub-folder. */
export function suiteOutdir(suite: Suite, reportsDir: string, sub: 'servers' | 'clients'): string {
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

  private writeConfig(name: string, config: SuiteConfig): string {
    const file = path.join(REPORTS_DIR, name);
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

  private prepareReportDir(sub: 'servers' | 'clients'): void {
    // A stale index.json must not pass for this run's; freshness is checked again afterwards.
    try {
      rmSync(path.join(REPORTS_DIR, sub, 'index.json'), { force: true });
    } catch {
      // e.g. root-owned files from a Docker run; the mtime check below still catches staleness.
    }
  }

  private async ensurePortFree(): Promise<boolean> {
    if (!(await probePort(this.options.port))) return true;
    this.fail(`port ${this.options.port} on ${HOST} is already in use; stop whatever listens there or pass --port`);
    return false;
  }

  private async runServerMode(): Promise<number> {
    const { port, cases } = this.options;
    const base = JSON.parse(readFileSync(path.join(AUTOBAHN_DIR, 'fuzzingclient.json'), 'utf8')) as SuiteConfig;
    const config = makeFuzzingClientConfig(base, { cases, port, outdir: suiteOutdir(this.suite, REPORTS_DIR, 'servers') });
    const configFile = this.writeConfig('fuzzingclient.generated.json', config);
    this.prepareReportDir('servers');
    if (!(await this.ensurePortFree())) return EXIT.FAILED;

    const startedAt = Date.now();
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
    const result = await suite.proc.done;
    await stopProcess(testee);
    if (result.code !== 0) return this.fail(`the suite (fuzzingclient) ${exitText(result)}`);
    return this.finish('server', startedAt, progress, testeeDied);
  }

  private async runClientMode(): Promise<number> {
    const { port, cases } = this.options;
    const base = JSON.parse(readFileSync(path.join(AUTOBAHN_DIR, 'fuzzingserver.json'), 'utf8')) as SuiteConfig;
    const config = makeFuzzingServerConfig(base, { cases, port, outdir: suiteOutdir(this.suite, REPORTS_DIR, 'clients') });
    const configFile = this.writeConfig('fuzzingserver.generated.json', config);
    this.prepareReportDir('clients');
    if (!(await this.ensurePortFree())) return EXIT.FAILED;

    const startedAt = Date.now();
    const progress: Progress = { done: 0 };
    const suite = this.startSuite('fuzzingserver', configFile, (l) => {
      // The testee client prints its own case progress; the suite's case lines are only counted.
      const text = progressLine(l, progress, '[autobahn]');
      if (text !== undefined && parseSuiteLine(l).kind !== 'case') this.line(text);
    });
    const up = await waitForPort(port, HOST, { timeoutMs: 120_000, stop: () => suite.proc.exited });
    if (!up) {
      const why = suite.proc.exited ? exitText(await suite.proc.done) : 'did not listen within 120 s';
      await suite.stop();
      return this.fail(`the suite (fuzzingserver) ${why}`);
    }

    const client = startProcess(process.execPath, ['--import', 'tsx', TESTEE_CLIENT, `ws://${HOST}:${port}`], (l) =>
      this.line(`[testee-client] ${l}`),
    );
    const clientResult = await client.done;
    const suiteExitedEarly = suite.proc.exited;
    await suite.stop();
    let code = this.finish('client', startedAt, progress, false);
    if (clientResult.code !== 0) code = this.fail(`the testee client (${path.relative(PROJECT_DIR, TESTEE_CLIENT)}) ${exitText(clientResult)}`);
    if (suiteExitedEarly) code = this.fail('the suite (fuzzingserver) stopped before the testee client finished');
    return code;
  }

  private finish(mode: Mode, startedAt: number, progress: Progress, testeeDied: boolean): number {
    const dir = path.join(REPORTS_DIR, mode === 'server' ? 'servers' : 'clients');
    const index = path.join(dir, 'index.json');
    let fresh = false;
    try {
      fresh = statSync(index).mtimeMs >= startedAt - 2000;
    } catch {
      fresh = false;
    }
    if (!fresh) return this.fail(`the suite wrote no report for this run (${path.relative(PROJECT_DIR, index)} is missing or stale)`);
    this.line(`autobahn: HTML report: ${path.relative(PROJECT_DIR, path.join(dir, 'index.html'))}`);
    let code: number = EXIT.OK;
    if (testeeDied) code = EXIT.FAILED;
    if (progress.total !== undefined && progress.done < progress.total) {
      code = this.fail(`only ${progress.done} of ${progress.total} cases ran`);
    }
    if (this.options.summary) {
      const args = [dir, '--agent', AGENT];
      if (this.options.cases) args.push('--cases', this.options.cases.join(','));
      const expected = path.join(AUTOBAHN_DIR, `expected-results-${mode}.json`);
      if (existsSync(expected)) args.push('--expected', expected);
      this.line('');
      if (runSummaryCli(args, { out: this.deps.out, err: this.deps.err }) !== 0) code = EXIT.FAILED;
    }
    return code;
  }
}

if (isMainModule(import.meta.url)) {
  process.exitCode = await runAutobahn(process.argv.slice(2));
}
