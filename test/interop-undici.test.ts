/**
 * Interop with Node's own WebSocket client (undici), run in a child process: on Node 20 the global `WebSocket`
 * needs `--experimental-websocket`; from Node 22 it is there by default.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { type Closed, startServer, WAIT, withTimeout } from './interop/util.js';

const CHILD = fileURLToPath(new URL('./interop/undici-child.mjs', import.meta.url));
const FLAG = '--experimental-websocket';

/** Node flags the child needs for a global WebSocket, or an error when this Node cannot provide one. */
function childFlags(): string[] | Error {
  if (typeof (globalThis as { WebSocket?: unknown }).WebSocket === 'function') return [];
  if (process.allowedNodeEnvironmentFlags.has(FLAG)) return [FLAG];
  return new Error(`Node ${process.version} has neither a global WebSocket nor ${FLAG}`);
}

interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runChild(flags: string[], port: number, ms: number): Promise<ChildRun> {
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // a plain Node, without the test runner's loaders
  const child = spawn(process.execPath, [...flags, CHILD, String(port)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<ChildRun>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return withTimeout(exited, ms, 'the undici child to exit').catch((error: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${error.message}\nstdout so far:\n${stdout}\nstderr so far:\n${stderr}`);
  });
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

t.test('our server ↔ Node WebSocket (undici)', async (t) => {
  const flags = childFlags();
  if (flags instanceof Error) {
    t.fail(flags.message);
    return;
  }

  const offers: Record<string, string[]> = {};
  const protocols: Record<string, string> = {};
  const closes: Record<string, Promise<Closed>> = {};
  let pong: Promise<Buffer> | undefined;
  let pingSentAt = 0;
  const bigSizes: number[] = [];

  const fixture = await startServer({
    selectProtocol: (offered) => (offered.includes('chat.v1') ? 'chat.v1' : undefined),
  });
  t.teardown(() => fixture.close());
  fixture.server.on('connection', (connection, request) => {
    const key = request.path === '/plain' ? `/plain ${request.protocols.join(',') || '-'}` : request.path;
    offers[key] = request.protocols;
    protocols[key] = connection.protocol;
    closes[key] = new Promise<Closed>((resolve) => connection.once('close', (code, reason) => resolve({ code, reason })));
    if (request.path === '/echo') {
      connection.on('message', (data, isBinary) => {
        if (data.length >= 1024 * 1024) bigSizes.push(data.length);
        connection.send(data, { binary: isBinary });
      });
    } else if (request.path === '/server-close') {
      connection.send('hello from the server ✓');
      connection.send(Buffer.from([1, 2, 3, 0, 255]));
      pong = new Promise<Buffer>((resolve) => connection.once('pong', resolve));
      pingSentAt = Date.now();
      connection.ping('are you there? 🎉');
      void pong.then(() => connection.close(4001, 'server bye 🎉 日本'));
    }
  });

  const run = await runChild(flags, fixture.port, 45_000);
  t.equal(run.code, 0, 'the child exited cleanly', { stderr: run.stderr });
  const results = new Map<string, Record<string, unknown>>();
  for (const line of run.stdout.split('\n')) {
    if (line.trim() === '') continue;
    const parsed = JSON.parse(line) as Record<string, unknown>;
    if (typeof parsed.scenario === 'string') results.set(parsed.scenario, parsed);
  }
  t.notOk(results.has('fatal'), 'no fatal error in the child', { fatal: results.get('fatal'), stderr: run.stderr });
  for (const r of results.values()) t.equal(r.error, undefined, `scenario ${String(r.scenario)} ran without error`);

  t.test('echo: subprotocol, text, binary, 1 MiB, empty, close 4000 from undici', async (t) => {
    const r = results.get('echo') as Record<string, any> | undefined;
    if (!r) return t.fail('no result for the echo scenario');
    t.same(offers['/echo'], ['chat.v2', 'chat.v1'], 'the server saw the offer in order');
    t.equal(protocols['/echo'], 'chat.v1', 'server side protocol');
    t.equal(r.protocol, 'chat.v1', 'undici sees the selected subprotocol');
    t.equal(r.extensions, '', 'no extension negotiated');
    t.same(r.text, { type: 'string', text: 'héllo 🎉 日本' }, 'text echo');
    const small = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    t.same(r.binary, { type: 'arraybuffer', length: 256, base64: small.toString('base64') }, 'binary echo as an ArrayBuffer');
    const big = Buffer.from(Array.from({ length: 1024 * 1024 }, (_, i) => (i * 31 + 7) & 0xff));
    t.same(bigSizes, [1024 * 1024], 'the server received the 1 MiB message whole');
    t.same(r.big, { type: 'arraybuffer', length: 1024 * 1024, sha256: sha256(big), sentSha256: sha256(big) }, '1 MiB echo');
    t.same(r.empty, { type: 'string', text: '' }, 'empty text echo');
    const atServer = await withTimeout(closes['/echo'], WAIT, 'server close on /echo');
    t.same(atServer, { code: 4000, reason: 'client bye ✓ 日本' }, 'the server got the close code and UTF-8 reason');
    t.same(r.close, { code: 4000, reason: '', wasClean: true }, 'undici saw a clean close with our echoed code');
    t.same(r.errors, [], 'no error events');
  });

  t.test('server-initiated: text, binary, ping answered by undici, close 4001', async (t) => {
    const r = results.get('serverClose') as Record<string, any> | undefined;
    if (!r) return t.fail('no result for the serverClose scenario');
    t.equal(r.protocol, 'chat.v1');
    t.same(r.first, { type: 'string', text: 'hello from the server ✓' });
    t.same(r.second, { type: 'arraybuffer', length: 5, base64: Buffer.from([1, 2, 3, 0, 255]).toString('base64') });
    t.ok(pong, 'a ping was sent');
    if (pong) {
      const payload = await withTimeout(pong, WAIT, 'pong from undici');
      t.equal(payload.toString(), 'are you there? 🎉', 'undici answered our ping with a pong carrying its payload');
      t.ok(pingSentAt > 0);
    }
    t.same(r.close, { code: 4001, reason: 'server bye 🎉 日本', wasClean: true }, 'undici got the code and UTF-8 reason');
    const atServer = await withTimeout(closes['/server-close'], WAIT, 'server close on /server-close');
    t.equal(atServer.code, 4001, 'undici echoed the close code');
    t.same(r.errors, [], 'no error events');
  });

  t.test('no subprotocol offered; close without a code', async (t) => {
    const r = results.get('plain') as Record<string, any> | undefined;
    if (!r) return t.fail('no result for the plain scenario');
    t.same(offers['/plain -'], []);
    t.equal(protocols['/plain -'], '');
    t.equal(r.protocol, '');
    t.same(await withTimeout(closes['/plain -'], WAIT, 'server close on /plain'), { code: 1005, reason: '' }, 'no status received');
    t.same(r.close, { code: 1005, reason: '', wasClean: true });
  });

  t.test('a subprotocol offered and none selected: undici fails the connection, as the WHATWG spec says', async (t) => {
    const r = results.get('unselected') as Record<string, any> | undefined;
    if (!r) return t.fail('no result for the unselected scenario');
    t.same(offers['/plain x.unknown'], ['x.unknown'], 'the server saw the offer');
    t.equal(protocols['/plain x.unknown'], '', 'and selected none (allowed by RFC 6455 §4.2.2)');
    t.match(r.outcome, /^error/, 'undici reports an error instead of opening');
    const atServer = await withTimeout(closes['/plain x.unknown'], WAIT, 'server close on the failed connection');
    t.equal(atServer.code, 1006, 'the server sees the connection dropped without a close frame');
  });
});
