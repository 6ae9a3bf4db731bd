/**
 * Interop with a real browser: headless Chromium loads a page from our server's `httpHandler`, connects back with
 * `new WebSocket(url, ['chat.v1', 'other'])` and runs a scripted exchange (test/interop/chromium-page.js).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { type Closed, multibyteText, startServer, WAIT, withTimeout } from './interop/util.js';

const PAGE_SCRIPT = readFileSync(fileURLToPath(new URL('./interop/chromium-page.js', import.meta.url)));
const PAGE = Buffer.from(
  '<!doctype html><html><head><meta charset="utf-8"><title>wsengine interop</title></head>' +
    '<body><p>wsengine ↔ chromium</p><script src="/page.js"></script></body></html>',
);
/** The whole browser exchange, Chromium start-up included, must finish within this. */
const BROWSER_BUDGET = 40_000;

/** The Chromium binary on PATH (Debian's `chromium`), or undefined. */
function findChromium(): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const name of ['chromium', 'chromium-browser']) {
    for (const dir of [...dirs, '/usr/bin']) {
      const candidate = join(dir, name);
      try {
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

interface Browser {
  process: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderrTail(): string;
  /** Kills Chromium's whole process group and removes its profile directory. */
  stop(): Promise<void>;
}

async function launchChromium(bin: string, url: string): Promise<Browser> {
  const profile = await mkdtemp(join(tmpdir(), 'wsengine-chromium-'));
  const child = spawn(
    bin,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-default-apps',
      '--disable-extensions',
      '--disable-sync',
      '--disable-quic',
      '--disable-crash-reporter',
      '--disable-breakpad',
      '--no-first-run',
      '--no-default-browser-check',
      '--metrics-recording-only',
      '--mute-audio',
      `--user-data-dir=${profile}`,
      url,
    ],
    { detached: true, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    stderr = (stderr + s).slice(-8192);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: -1, signal: null }));
  });
  let stopped: Promise<void> | null = null;
  const killGroup = (signal: NodeJS.Signals): void => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // the group is gone already
    }
  };
  const stop = async (): Promise<void> => {
    killGroup('SIGTERM');
    const gone = await withTimeout(exited, 5000, 'chromium to exit').then(
      () => true,
      () => false,
    );
    // Renderer and helper processes share the group: make sure none survive the main process.
    killGroup('SIGKILL');
    if (!gone) await withTimeout(exited, 5000, 'chromium to exit after SIGKILL').catch(() => undefined);
    child.stderr?.destroy();
    await rm(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  };
  return {
    process: child,
    exited,
    stderrTail: () => stderr,
    stop: () => (stopped ??= stop()),
  };
}

/** Resolvable promise. */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const chromium = findChromium();
const missing = 'chromium is not installed (Debian: apt-get install chromium)';

const inCI = Boolean(process.env.CI) && process.env.CI !== 'false' && process.env.CI !== '0';

if (!chromium && inCI) {
  t.fail(`${missing}: .ci/run should have installed it before the tests; the browser interop test cannot run`);
} else {
  for (const deflate of [false, true]) t.test(`our server ↔ headless Chromium${deflate ? ', permessage-deflate negotiated' : ''}`, { skip: chromium ? false : `${missing}; skipped outside CI` }, async (t) => {
    const bigText = multibyteText(1024 * 1024);
    const upgrade = deferred<{ origin: string | undefined; offered: string[]; protocol: string; path: string }>();
    const report = deferred<Record<string, any>>();
    const final = deferred<Record<string, any>>();
    const pong = deferred<Buffer>();
    const serverClose = deferred<Closed>();
    const httpPaths: string[] = [];
    const selectCalls: string[][] = [];
    const echoed: Array<{ isBinary: boolean; length: number }> = [];

    const fixture = await startServer({
      // Compress every message, even the smallest, when deflate is on: both directions go through zlib.
      perMessageDeflate: deflate ? { threshold: 0 } : false,
      selectProtocol: (offered) => {
        selectCalls.push([...offered]);
        return offered.includes('chat.v1') ? 'chat.v1' : undefined;
      },
      httpHandler: (request) => {
        httpPaths.push(request.path);
        if (request.method !== 'GET') return { status: 405, body: 'GET only' };
        if (request.path === '/') return { status: 200, headers: { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' }, body: PAGE };
        if (request.path === '/page.js') {
          return { status: 200, headers: { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-store' }, body: PAGE_SCRIPT };
        }
        if (request.path === '/result') {
          let data: Record<string, any>;
          try {
            data = JSON.parse(request.query.get('data') ?? 'null') as Record<string, any>;
          } catch (error) {
            data = { kind: 'error', error: `unparsable result: ${(error as Error).message}` };
          }
          final.resolve(data ?? { kind: 'error', error: 'empty result' });
          return { status: 204 };
        }
        return { status: 404, body: 'not found' };
      },
    });
    t.teardown(() => fixture.close());

    fixture.server.on('connection', (connection, request) => {
      upgrade.resolve({ origin: request.origin, offered: request.protocols, protocol: connection.protocol, path: request.path });
      connection.once('pong', (data) => pong.resolve(data));
      connection.once('close', (code, reason) => serverClose.resolve({ code, reason }));
      connection.on('message', (data, isBinary) => {
        if (!isBinary && data.subarray(0, 16).toString() === '{"kind":"report"') {
          report.resolve(JSON.parse(data.toString()) as Record<string, any>);
          connection.send(bigText);
          // The browser closes once the server has seen its pong.
          void withTimeout(pong.promise, WAIT, 'pong').then(
            (payload) => connection.send(`go:${payload.toString()}`),
            () => connection.send('go:no-pong'),
          );
          return;
        }
        echoed.push({ isBinary, length: data.length });
        connection.send(data, { binary: isBinary });
      });
      // A server-initiated ping: the browser answers on its own.
      connection.ping('chromium ping ✓');
    });

    const url = `http://127.0.0.1:${fixture.port}/`;
    const browser = await launchChromium(chromium as string, url);
    t.teardown(() => browser.stop());

    const outcome: Record<string, any> = await withTimeout(
      Promise.race<Record<string, any>>([
        final.promise,
        browser.exited.then(({ code, signal }) => ({ kind: 'error', error: `chromium exited early (code ${code}, signal ${signal})` })),
      ]),
      BROWSER_BUDGET,
      'the browser to finish its exchange',
    ).catch((error: Error) => ({ kind: 'error', error: error.message }));
    if (outcome.kind !== 'final') {
      t.fail(`the browser exchange failed: ${String(outcome.error)}`, { httpPaths, chromiumStderr: browser.stderrTail() });
      return;
    }
    const results = outcome.results as Record<string, any>;
    t.comment(`browser: ${String(results.userAgent)}`);

    t.test('handshake: origin, subprotocol selected by the server', async (t) => {
      const u = await withTimeout(upgrade.promise, 1000, 'upgrade');
      t.equal(u.path, '/ws');
      t.equal(u.origin, `http://127.0.0.1:${fixture.port}`, 'the browser sent its page origin');
      t.same(u.offered, ['chat.v1', 'other'], 'the server saw the offer in order');
      t.same(selectCalls, [['chat.v1', 'other']], 'selectProtocol consulted once');
      t.equal(u.protocol, 'chat.v1', 'server side protocol');
      t.equal(results.protocol, 'chat.v1', 'ws.protocol in the browser');
      if (deflate) t.match(results.extensions, /^permessage-deflate/, 'permessage-deflate negotiated with the browser');
      else t.equal(results.extensions, '', 'no extension negotiated (the permessage-deflate offer is declined)');
      t.ok(httpPaths.includes('/') && httpPaths.includes('/page.js'), 'page and script served by httpHandler');
    });

    t.test('echoes', async (t) => {
      t.same(results.text, { type: 'string', ok: true, got: 'héllo from chromium 🎉 日本語 👩‍👩‍👧' }, 'text echo');
      t.same(results.binary, { type: 'arraybuffer', length: 256, ok: true }, 'binary echo as an ArrayBuffer');
      t.same(results.big, { type: 'arraybuffer', length: 1024 * 1024, ok: true }, '1 MiB binary echo');
      t.same(
        echoed,
        [
          { isBinary: false, length: Buffer.byteLength('héllo from chromium 🎉 日本語 👩‍👩‍👧') },
          { isBinary: true, length: 256 },
          { isBinary: true, length: 1024 * 1024 },
        ],
        'the server received each message whole, with its type',
      );
      const r = await withTimeout(report.promise, 1000, 'report');
      t.same(r.results?.text, results.text, 'the in-band report matches the final one');
      t.same(results.bigText, { type: 'string', length: bigText.length, head: bigText.slice(0, 16) }, 'a ~1 MiB text from the server');
    });

    t.test('server ping answered by the browser', async (t) => {
      const payload = await withTimeout(pong.promise, 1000, 'pong');
      t.equal(payload.toString(), 'chromium ping ✓', 'the pong carries the ping payload');
      t.equal(results.go, 'go:chromium ping ✓');
    });

    t.test('close 4000 with a reason from the browser', async (t) => {
      const atServer = await withTimeout(serverClose.promise, WAIT, 'server close');
      t.same(atServer, { code: 4000, reason: 'browser bye ✓ 日本' }, 'the server got the code and UTF-8 reason');
      t.same(results.close, { code: 4000, reason: '', wasClean: true }, 'the browser saw a clean close with our echoed code');
    });
  });
}
