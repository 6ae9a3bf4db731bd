import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import {
  AGENT,
  AUTOBAHN_DIR,
  AUTOBAHN_IMAGE,
  DEFAULT_PORT,
  defaultTimeoutSeconds,
  detectSuite,
  failedRunLine,
  findOnPath,
  makeFuzzingClientConfig,
  makeFuzzingServerConfig,
  noSuiteMessage,
  parseRunArgs,
  parseSuiteLine,
  probePort,
  progressLine,
  REPORTS_DIR,
  requestedCases,
  runAutobahn,
  runFolderName,
  runProblems,
  SUITE_CASES,
  suiteCommand,
  suiteOutdir,
  UsageError,
  waitForPort,
  withPort,
  type DetectDeps,
  type Progress,
  type RunnerDeps,
  type SuiteConfig,
} from '../autobahn/run.js';

// The spawned runs below start real testee servers: allow for a busy machine.
t.setTimeout(300_000);

const RUN_SCRIPT = path.resolve(import.meta.dirname, '../autobahn/run.ts');
const PROJECT = path.resolve(import.meta.dirname, '..');

function readConfig(name: string): SuiteConfig {
  return JSON.parse(readFileSync(path.join(AUTOBAHN_DIR, name), 'utf8')) as SuiteConfig;
}

/** Fake environment: `executables` exist, `docker info` succeeds iff `engine`. */
function fakeDeps(options: { path?: string; executables?: string[]; engine?: boolean; wstestEnv?: string }): DetectDeps & {
  calls: string[][];
} {
  const calls: string[][] = [];
  const executables = new Set(options.executables ?? []);
  return {
    calls,
    env: { PATH: options.path ?? '/usr/local/bin:/usr/bin', ...(options.wstestEnv ? { WSTEST: options.wstestEnv } : {}) },
    platform: 'linux',
    isExecutable: (file) => executables.has(file),
    run: (command, args) => {
      calls.push([command, ...args]);
      return { ok: command.endsWith('docker') && args[0] === 'info' && options.engine === true };
    },
  };
}

function spawnRun(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ['--import', 'tsx', RUN_SCRIPT, ...args], { cwd: PROJECT, env, timeout: 60_000 }, (_e, stdout, stderr) =>
      resolve({ code: child.exitCode, stdout, stderr }),
    );
  });
}

t.test('argument parsing', async (t) => {
  t.same(parseRunArgs([]), { modes: ['server', 'client'], port: DEFAULT_PORT, summary: true, help: false }, 'defaults: both modes');
  t.same(parseRunArgs(['--mode', 'server']).modes, ['server']);
  t.same(parseRunArgs(['--mode=client']).modes, ['client']);
  t.same(parseRunArgs(['--mode', 'both']).modes, ['server', 'client']);
  t.same(parseRunArgs(['--cases', '1.*, 5.*,12.1.*']).cases, ['1.*', '5.*', '12.1.*']);
  t.same(parseRunArgs(['--cases=9.3.1']).cases, ['9.3.1']);
  t.equal(parseRunArgs(['--port', '9100']).port, 9100);
  t.equal(parseRunArgs(['--port=1']).port, 1);
  t.equal(parseRunArgs(['--no-summary']).summary, false);
  t.equal(parseRunArgs(['--help']).help, true);
  t.equal(parseRunArgs(['-h']).help, true);
  t.same(parseRunArgs(['--mode', 'client', '--cases', '1.*', '--port', '9002', '--no-summary']), {
    modes: ['client'],
    cases: ['1.*'],
    port: 9002,
    summary: false,
    help: false,
  });

  t.throws(() => parseRunArgs(['--mode', 'all']), new UsageError('--mode must be server, client or both, not "all"'));
  t.throws(() => parseRunArgs(['--mode']), /--mode needs a value/);
  t.throws(() => parseRunArgs(['--mode', '--port', '1']), /--mode needs a value/);
  t.throws(() => parseRunArgs(['--port', '0']), /--port must be 1-65535/);
  t.throws(() => parseRunArgs(['--port', '65536']), /--port must be 1-65535/);
  t.throws(() => parseRunArgs(['--port', '90a']), /--port must be 1-65535/);
  t.throws(() => parseRunArgs(['--cases', ' , ']), /--cases: the case list is empty/);
  t.throws(() => parseRunArgs(['--cases', 'utf8']), /--cases: "utf8" is not a case pattern/);
  t.throws(() => parseRunArgs(['--no-summary=yes']), /takes no value/);
  t.throws(() => parseRunArgs(['--verbose']), /unknown argument --verbose/);
  t.throws(() => parseRunArgs(['server']), /unknown argument server/);
});

t.test('committed configs use the suite keys', async (t) => {
  const client = readConfig('fuzzingclient.json');
  t.same(client.servers, [{ agent: AGENT, url: 'ws://127.0.0.1:9001', options: { version: 18 } }]);
  t.equal(client.outdir, './reports/servers');
  t.same(client.cases, ['*']);
  t.same(client['exclude-cases'], []);
  t.same(client['exclude-agent-cases'], {});

  const server = readConfig('fuzzingserver.json');
  t.equal(server.url, 'ws://127.0.0.1:9001');
  t.equal(server.outdir, './reports/clients');
  t.same(server.cases, ['*']);
  t.same(server['exclude-agent-cases'], {});
});

t.test('withPort', async (t) => {
  t.equal(withPort('ws://127.0.0.1:9001', 9100), 'ws://127.0.0.1:9100');
  t.equal(withPort('ws://localhost', 9100), 'ws://localhost:9100');
  t.equal(withPort('wss://example.test:443/path?x=1', 8443), 'wss://example.test:8443/path?x=1');
  t.equal(withPort('ws://[::1]:9001/', 9002), 'ws://[::1]:9002/');
  t.throws(() => withPort('http://127.0.0.1:9001', 1), /not a WebSocket URL/);
});

t.test('--cases, --port and outdir rewrite a copy of the configs', async (t) => {
  const base = readConfig('fuzzingclient.json');
  const before = structuredClone(base);
  const config = makeFuzzingClientConfig(base, { cases: ['1.*', '5.*', '12.1.*'], port: 9123, outdir: '/reports/servers' });
  t.same(config, {
    options: { failByDrop: false },
    outdir: '/reports/servers',
    servers: [{ agent: AGENT, url: 'ws://127.0.0.1:9123', options: { version: 18 } }],
    cases: ['1.*', '5.*', '12.1.*'],
    'exclude-cases': [],
    'exclude-agent-cases': {},
  });
  t.same(base, before, 'the committed config object is not modified');
  t.same(makeFuzzingClientConfig(base, { port: 9001, outdir: 'x' }).cases, ['*'], 'no --cases keeps all cases');
  t.throws(() => makeFuzzingClientConfig({ servers: [] }, { port: 1, outdir: 'x' }), /non-empty "servers"/);
  t.throws(() => makeFuzzingClientConfig({ servers: [{ agent: 'a' }] }, { port: 1, outdir: 'x' }), /needs a "url"/);

  const serverBase = readConfig('fuzzingserver.json');
  const serverConfig = makeFuzzingServerConfig(serverBase, { cases: ['9.*'], port: 9200, outdir: '/abs/reports/clients' });
  t.same(serverConfig, {
    url: 'ws://127.0.0.1:9200',
    options: { failByDrop: false },
    outdir: '/abs/reports/clients',
    cases: ['9.*'],
    'exclude-cases': [],
    'exclude-agent-cases': {},
  });
  t.equal(serverBase.url, 'ws://127.0.0.1:9001');
  t.throws(() => makeFuzzingServerConfig({}, { port: 1, outdir: 'x' }), /needs a "url"/);
});

t.test('the Docker image is pinned by tag', async (t) => {
  t.match(AUTOBAHN_IMAGE, /^crossbario\/autobahn-testsuite:\d+\.\d+\.\d+$/);
});

t.test('suite detection', async (t) => {
  t.test('docker engine running', async (t) => {
    const deps = fakeDeps({ executables: ['/usr/bin/docker'], engine: true });
    t.same(detectSuite(deps), { suite: { kind: 'docker', docker: '/usr/bin/docker', image: AUTOBAHN_IMAGE }, notes: [] });
    t.same(deps.calls, [['/usr/bin/docker', 'info']], 'checked with docker info');
  });

  t.test('only the docker client (no engine), nothing else', async (t) => {
    const deps = fakeDeps({ executables: ['/usr/local/bin/docker'], engine: false });
    const detection = detectSuite(deps);
    t.equal(detection.suite, undefined);
    t.match(detection.notes[0], /client found at \/usr\/local\/bin\/docker, but `docker info` failed: no Docker engine/);
    t.match(detection.notes[1], /wstest: not found on PATH, and WSTEST is not set/);
  });

  t.test('docker client without engine falls back to wstest on PATH', async (t) => {
    const deps = fakeDeps({ executables: ['/usr/bin/docker', '/usr/local/bin/wstest'], engine: false });
    const detection = detectSuite(deps);
    t.same(detection.suite, { kind: 'wstest', command: '/usr/local/bin/wstest' });
    t.equal(detection.notes.length, 1);
  });

  t.test('WSTEST env names the command (and wins over Docker)', async (t) => {
    const deps = fakeDeps({ executables: ['/opt/py2/bin/wstest', '/usr/bin/docker'], engine: true, wstestEnv: '/opt/py2/bin/wstest' });
    t.same(detectSuite(deps), { suite: { kind: 'wstest', command: '/opt/py2/bin/wstest' }, notes: [] });
    t.same(deps.calls, [], 'docker not even asked');
    const byName = fakeDeps({ path: '/opt/py2/bin', executables: ['/opt/py2/bin/wstest2'], wstestEnv: 'wstest2' });
    t.same(detectSuite(byName).suite, { kind: 'wstest', command: '/opt/py2/bin/wstest2' }, 'a bare name is looked up on PATH');
  });

  t.test('a WSTEST that is not executable is reported and skipped', async (t) => {
    const deps = fakeDeps({ executables: ['/usr/bin/docker'], engine: true, wstestEnv: '/nowhere/wstest' });
    const detection = detectSuite(deps);
    t.equal(detection.suite?.kind, 'docker');
    t.match(detection.notes, [/WSTEST=\/nowhere\/wstest is not an executable file; ignoring it/]);
  });

  t.test('wstest on PATH', async (t) => {
    const deps = fakeDeps({ path: '/home/u/py2/bin:/usr/bin', executables: ['/home/u/py2/bin/wstest'] });
    const detection = detectSuite(deps);
    t.same(detection.suite, { kind: 'wstest', command: '/home/u/py2/bin/wstest' });
    t.match(detection.notes, [/docker: not found on PATH/]);
  });

  t.test('none: the message names both options', async (t) => {
    const detection = detectSuite(fakeDeps({}));
    t.equal(detection.suite, undefined);
    const message = noSuiteMessage(detection.notes);
    t.match(message, /neither Docker nor wstest is available/);
    t.match(message, /docker: not found on PATH/);
    t.match(message, /install Docker/);
    t.match(message, AUTOBAHN_IMAGE);
    t.match(message, /Python 2\.7 program/);
    t.match(message, /not verified by this project/);
    t.match(message, /WSTEST=\/path\/to\/wstest/);
  });

  t.test('findOnPath honours PATHEXT on Windows', async (t) => {
    const found = findOnPath('wstest', {
      env: { PATH: 'C:\\py27\\Scripts;C:\\bin', PATHEXT: '.EXE;.BAT' },
      platform: 'win32',
      isExecutable: (file) => file.endsWith('wstest.EXE') && file.includes('py27'),
    });
    t.ok(found?.endsWith('wstest.EXE'));
  });
});

t.test('runAutobahn returns early for help, bad arguments and no suite', async (t) => {
  const io = (deps: DetectDeps): RunnerDeps & { out: (s: string) => void; stdout: () => string; stderr: () => string } => {
    let out = '';
    let err = '';
    return {
      ...deps,
      out: (s: string) => void (out += s),
      err: (s: string) => void (err += s),
      stdout: () => out,
      stderr: () => err,
    };
  };
  const none = io(fakeDeps({ executables: ['/usr/bin/docker'], engine: false }));
  t.equal(await runAutobahn(['--mode', 'server', '--cases', '1.*'], none), 3, 'exit 3 without a suite');
  t.match(none.stderr(), /neither Docker nor wstest is available/);
  t.match(none.stderr(), /`docker info` failed/);
  t.match(none.stderr(), /WSTEST=\/path\/to\/wstest/);
  t.equal(none.stdout(), '');

  const help = io(fakeDeps({}));
  t.equal(await runAutobahn(['--help'], help), 0);
  t.match(help.stdout(), /Usage: npm run autobahn -- \[options\]/);

  const bad = io(fakeDeps({}));
  t.equal(await runAutobahn(['--mode', 'sideways'], bad), 2);
  t.match(bad.stderr(), /--mode must be server, client or both/);
  t.match(bad.stderr(), /Usage:/);
});

t.test('suite command lines', async (t) => {
  const configFile = path.join(REPORTS_DIR, 'fuzzingclient.generated.json');
  const docker = suiteCommand(
    { kind: 'docker', docker: '/usr/bin/docker', image: AUTOBAHN_IMAGE },
    { mode: 'fuzzingclient', configFile, autobahnDir: AUTOBAHN_DIR, reportsDir: REPORTS_DIR, containerName: 'c1' },
  );
  t.equal(docker.command, '/usr/bin/docker');
  t.same(docker.args, [
    'run', '--rm', '--network', 'host', '--name', 'c1',
    '-e', 'PYTHONUNBUFFERED=1',
    '-v', `${AUTOBAHN_DIR}:/config`,
    '-v', `${REPORTS_DIR}:/reports`,
    AUTOBAHN_IMAGE,
    'wstest', '-m', 'fuzzingclient', '-s', '/config/reports/fuzzingclient.generated.json',
  ]);
  t.throws(
    () =>
      suiteCommand(
        { kind: 'docker', docker: 'docker', image: AUTOBAHN_IMAGE },
        { mode: 'fuzzingserver', configFile: '/elsewhere/x.json', autobahnDir: AUTOBAHN_DIR, reportsDir: REPORTS_DIR, containerName: 'c' },
      ),
    /must lie inside/,
  );
  const wstest = suiteCommand(
    { kind: 'wstest', command: '/py2/bin/wstest' },
    { mode: 'fuzzingserver', configFile: '/tmp/fs.json', autobahnDir: AUTOBAHN_DIR, reportsDir: REPORTS_DIR, containerName: 'c' },
  );
  t.same(wstest, { command: '/py2/bin/wstest', args: ['-m', 'fuzzingserver', '-s', '/tmp/fs.json', '-u', '0'] }, 'client mode: no web UI (port 8080)');
  const wstestClient = suiteCommand(
    { kind: 'wstest', command: '/py2/bin/wstest' },
    { mode: 'fuzzingclient', configFile: '/tmp/fc.json', autobahnDir: AUTOBAHN_DIR, reportsDir: REPORTS_DIR, containerName: 'c' },
  );
  t.same(wstestClient.args, ['-m', 'fuzzingclient', '-s', '/tmp/fc.json'], 'server mode: the suite serves no UI, nothing to turn off');
  const dockerServer = suiteCommand(
    { kind: 'docker', docker: '/usr/bin/docker', image: AUTOBAHN_IMAGE },
    { mode: 'fuzzingserver', configFile: path.join(REPORTS_DIR, 'fs.json'), autobahnDir: AUTOBAHN_DIR, reportsDir: REPORTS_DIR, containerName: 'c2' },
  );
  t.same(dockerServer.args.slice(-8), [AUTOBAHN_IMAGE, 'wstest', '-m', 'fuzzingserver', '-s', '/config/reports/fs.json', '-u', '0'], 'in Docker too');

  t.equal(suiteOutdir({ kind: 'docker', docker: 'docker', image: AUTOBAHN_IMAGE }, REPORTS_DIR, 'servers'), '/reports/servers');
  t.equal(suiteOutdir({ kind: 'wstest', command: 'wstest' }, REPORTS_DIR, 'clients'), path.join(REPORTS_DIR, 'clients'));
});

t.test('suite output: totals, case lines and progress', async (t) => {
  t.same(parseSuiteLine('Ok, will run 517 test cases against 1 servers'), { kind: 'total', total: 517 });
  t.same(parseSuiteLine('Ok, will run 12 test cases for any clients connecting'), { kind: 'total', total: 12 });
  t.same(parseSuiteLine('Running test case ID 12.1.10 for agent wsengine from peer tcp4:127.0.0.1:9001'), { kind: 'case', id: '12.1.10' });
  t.same(parseSuiteLine('Cases = [...]'), { kind: 'other' });

  const progress: Progress = { done: 0 };
  t.equal(progressLine('Running test case ID 1.1.1 for agent wsengine from peer x', progress), '[autobahn] case 1/?: 1.1.1');
  t.equal(progressLine('Ok, will run 3 test cases against 1 servers', progress), '[autobahn] Ok, will run 3 test cases against 1 servers');
  t.equal(progressLine('Running test case ID 1.1.2 for agent wsengine from peer x', progress), '[autobahn] case 2/3: 1.1.2');
  t.equal(progressLine('   ', progress), undefined);
  t.same(progress, { done: 2, total: 3 });
});

t.test('probePort and waitForPort', async (t) => {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  t.equal(await probePort(port), true, 'listening port accepts');
  t.equal(await waitForPort(port, '127.0.0.1', { timeoutMs: 2000 }), true);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  t.equal(await probePort(port), false, 'closed port refuses');

  // stop() turns true on its 3rd call; the time limit is 10 minutes, so only stop() can end this wait (were it
  // ignored, the file would time out).
  let stopCalls = 0;
  t.equal(await waitForPort(port, '127.0.0.1', { timeoutMs: 600_000, intervalMs: 20, stop: () => ++stopCalls === 3 }), false);
  t.equal(stopCalls, 3, 'stop() ends the wait as soon as it turns true');

  const late = net.createServer((socket) => socket.destroy());
  setTimeout(() => late.listen(port, '127.0.0.1'), 300);
  t.equal(await waitForPort(port, '127.0.0.1', { timeoutMs: 10_000, intervalMs: 50 }), true, 'waits until it listens');
  await new Promise<void>((resolve) => late.close(() => resolve()));
  t.equal(await waitForPort(port, '127.0.0.1', { timeoutMs: 300, intervalMs: 50 }), false, 'times out');
});

t.test('spawned: --help prints usage and exits 0', async (t) => {
  const result = await spawnRun(['--help'], process.env);
  t.equal(result.code, 0);
  t.match(result.stdout, /Usage: npm run autobahn -- \[options\]/);
  t.match(result.stdout, /--mode server\|client\|both/);
  t.match(result.stdout, /--cases LIST/);
  t.equal(result.stderr, '');
});

t.test('spawned: without Docker or wstest it exits 3 with the message', async (t) => {
  // PATH holds only the node binary, so neither docker nor wstest can be found, whatever the machine has.
  const bin = mkdtempSync(path.join(tmpdir(), 'autobahn-path-'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  symlinkSync(process.execPath, path.join(bin, path.basename(process.execPath)));
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: bin };
  delete env.WSTEST;
  const result = await spawnRun(['--mode', 'server', '--cases', '1.1.1'], env);
  t.equal(result.code, 3);
  t.match(result.stderr, /neither Docker nor wstest is available/);
  t.match(result.stderr, /docker: not found on PATH/);
  t.match(result.stderr, /WSTEST=\/path\/to\/wstest/);
  t.match(result.stderr, AUTOBAHN_IMAGE);
});

t.test('--timeout and the default time limit', async (t) => {
  t.equal(parseRunArgs(['--timeout', '90']).timeout, 90);
  t.equal(parseRunArgs(['--timeout=2.5']).timeout, 2.5);
  t.equal(parseRunArgs([]).timeout, undefined, 'default: derived from the number of cases');
  t.throws(() => parseRunArgs(['--timeout', '0']), /--timeout must be a positive number of seconds, not "0"/);
  t.throws(() => parseRunArgs(['--timeout', '-5']), /--timeout must be a positive number/);
  t.throws(() => parseRunArgs(['--timeout', '10m']), /--timeout must be a positive number/);
  t.equal(defaultTimeoutSeconds(1), 135);
  t.equal(defaultTimeoutSeconds(517), 7875);
  t.ok(defaultTimeoutSeconds(517) > 2 * 2400, 'about 3x the slowest full run seen (about 2,400 s)');
});

t.test('requested cases come from the pinned suite case list', async (t) => {
  t.equal(SUITE_CASES.length, 517);
  t.same(SUITE_CASES.slice(0, 2), ['1.1.1', '1.1.2']);
  t.equal(new Set(SUITE_CASES).size, 517, 'no duplicates');
  t.equal(requestedCases(undefined).length, 517, 'no --cases: all of them');
  t.same(requestedCases(['9.3.*']), ['9.3.1', '9.3.2', '9.3.3', '9.3.4', '9.3.5', '9.3.6', '9.3.7', '9.3.8', '9.3.9']);
  t.same(requestedCases(['1.1.*'], ['1.1.2', '1.1.5*']), ['1.1.1', '1.1.3', '1.1.4', '1.1.6', '1.1.7', '1.1.8'], 'exclude-cases honoured');
  t.throws(() => parseRunArgs(['--cases', '14.*']), /--cases: "14\.\*" matches no case of the suite/);
  t.throws(() => parseRunArgs(['--cases', '1.*,1.1.99']), /"1\.1\.99" matches no case/);
});

t.test('each run gets a folder of its own', async (t) => {
  t.equal(runFolderName('server', new Date('2026-03-01T12:30:05.123Z')), 'server-2026-03-01T12-30-05Z');
  t.equal(runFolderName('client', new Date('2026-12-31T23:59:59Z')), 'client-2026-12-31T23-59-59Z');
});

t.test('runProblems: what makes a run fail regardless of its cases', async (t) => {
  const requested = ['1.1.1', '1.1.2', '1.1.3'];
  const clean = { code: 0, signal: null };
  t.same(runProblems({ suite: clean, requested, reported: requested }), [], 'exit 0 with every case: sound');
  t.same(runProblems({ requested, reported: [...requested, '9.9.9'] }), [], 'stopped by the runner as planned (client mode), extra cases ok');
  t.same(runProblems({ suite: { code: null, signal: 'SIGTERM' }, requested, reported: requested }), ['the suite was killed by SIGTERM'], 'a signal fails the run even with a complete index');
  t.same(runProblems({ suite: { code: 1, signal: null }, requested, reported: requested }), ['the suite exited with code 1']);
  t.same(runProblems({ suite: { code: null, signal: null, error: new Error('spawn ENOENT') }, requested, reported: undefined, reportError: 'report folder x does not exist' }), [
    'the suite could not start: spawn ENOENT',
    'no usable index.json (report folder x does not exist)',
  ]);
  t.same(runProblems({ suite: clean, requested, reported: ['1.1.1'] }), ['index.json lacks 2 of the 3 requested cases: 1.1.2, 1.1.3']);
  t.same(runProblems({ timedOutAfter: 60, requested, reported: requested }), ['the suite did not finish within the 60 s time limit (--timeout)']);
  const many = runProblems({ suite: clean, requested: SUITE_CASES, reported: [] });
  t.match(many[0], /^index\.json lacks 517 of the 517 requested cases: 1\.1\.1, .*, … \(507 more\)$/);
  t.equal(failedRunLine('server', ['a', 'b']), 'autobahn: FAILED RUN (server): a; b');
});

/**
 * A stand-in for wstest in fuzzingclient mode: announces and "runs" the configured cases, writes index.json into
 * the configured outdir, then behaves as FAKE_WSTEST says: ok, hang (after writing index.json, as the real
 * suite did when it crashed writing per-case reports), signal (dies of SIGSEGV), exit (exits 4), omit (leaves
 * the last case out of index.json and exits 0).
 */
const FAKE_WSTEST = `#!${process.execPath}
const fs = require('node:fs');
const path = require('node:path');
const config = JSON.parse(fs.readFileSync(process.argv[process.argv.indexOf('-s') + 1], 'utf8'));
const ids = config.cases;
console.log('Ok, will run ' + ids.length + ' test cases against 1 servers');
const cases = {};
for (const id of ids) {
  console.log('Running test case ID ' + id + ' for agent wsengine from peer tcp4:127.0.0.1:1');
  cases[id] = { behavior: 'OK', behaviorClose: 'OK', duration: 1, remoteCloseCode: 1000, reportfile: 'x.json' };
}
const how = process.env.FAKE_WSTEST;
if (how === 'omit') delete cases[ids[ids.length - 1]];
fs.mkdirSync(config.outdir, { recursive: true });
fs.writeFileSync(path.join(config.outdir, 'index.json'), JSON.stringify({ wsengine: cases }));
if (how === 'hang') setInterval(() => {}, 1000);
else if (how === 'signal') process.kill(process.pid, 'SIGSEGV');
else if (how === 'exit') process.exit(4);
`;

t.test('spawned with a fake suite: hung, crashed, failing or incomplete runs fail with one clear line', async (t) => {
  const bin = mkdtempSync(path.join(tmpdir(), 'autobahn-fake-'));
  const wstest = path.join(bin, 'wstest');
  writeFileSync(wstest, FAKE_WSTEST);
  chmodSync(wstest, 0o755);
  const folders: string[] = [];
  t.teardown(() => {
    rmSync(bin, { recursive: true, force: true });
    for (const folder of folders) rmSync(path.join(REPORTS_DIR, folder), { recursive: true, force: true });
  });

  const run = async (how: string, timeout = 60) => {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as net.AddressInfo;
        s.close(() => resolve(port));
      });
    });
    const env = { ...process.env, WSTEST: wstest, FAKE_WSTEST: how };
    const result = await spawnRun(['--mode', 'server', '--cases', '1.1.1,1.1.2,2.1', '--port', String(port), '--timeout', String(timeout)], env);
    const name = /autobahn: this run's reports: autobahn\/reports\/(server-[0-9T-]+Z(?:-\d+)?)\//.exec(result.stdout)?.[1];
    if (name) folders.push(name);
    const lastErr = result.stderr.trim().split('\n').at(-1) ?? '';
    return { ...result, name, lastErr };
  };

  // Five runs side by side (own ports, own folders): each starts the real testee server, slow on a busy machine.
  const [ok, omit, exit, signal, hang] = await Promise.all([run('ok'), run('omit'), run('exit'), run('signal'), run('hang', 3)]);

  t.equal(ok.code, 0, `a clean run exits 0\n${ok.stdout}\n${ok.stderr}`);
  t.match(ok.stdout, /autobahn: 3 cases, time limit 60 s/);
  t.notMatch(ok.stderr, /FAILED RUN/);
  t.ok(ok.name && existsSync(path.join(REPORTS_DIR, ok.name!, 'index.json')), 'its report is in a folder of its own');

  t.equal(omit.code, 1, 'a case left out of index.json fails the run');
  t.equal(omit.lastErr, 'autobahn: FAILED RUN (server): index.json lacks 1 of the 3 requested cases: 2.1');

  t.equal(exit.code, 1);
  t.equal(exit.lastErr, 'autobahn: FAILED RUN (server): the suite exited with code 4');

  t.equal(signal.code, 1);
  t.equal(signal.lastErr, 'autobahn: FAILED RUN (server): the suite was killed by SIGSEGV');

  // Exit code 1 and the time-limit message below show the runner stopped the hung suite itself (had it waited
  // forever, the spawn helper would have killed it at 60 s: no exit code, no such message). No clock check here.
  t.equal(hang.code, 1, 'a hung suite is stopped at the time limit');
  // On a busy machine the fake may not have written index.json within 3 s; then that is named too, after the limit.
  t.match(hang.lastErr, /^autobahn: FAILED RUN \(server\): the suite did not finish within the 3 s time limit \(--timeout\)(; no usable index\.json .*)?$/);

  t.ok(existsSync(path.join(REPORTS_DIR, ok.name!, 'index.json')), "later runs never delete an earlier run's index.json");
  t.equal(new Set([ok.name, omit.name, exit.name, signal.name, hang.name]).size, 5, 'five runs, five folders');
});
