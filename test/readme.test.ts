/**
 * The README's examples run as written, from plain JavaScript, in a consumer project that imports the built package
 * by its name (`import … from 'wsengine'` resolves through package.json's `exports` to dist/). `npm test` builds
 * dist first.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testCertificate } from './helpers/tls.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

function snippet(heading: string): string {
  const at = readme.indexOf(`## ${heading}`);
  const start = readme.indexOf('```ts\n', at) + 6;
  return readme.slice(start, readme.indexOf('```', start));
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/** A consumer project outside the repository, with this package linked in as node_modules/wsengine. */
const consumer = mkdtempSync(join(tmpdir(), 'wsengine-consumer-'));
mkdirSync(join(consumer, 'node_modules'));
symlinkSync(root, join(consumer, 'node_modules', 'wsengine'), 'dir');
t.teardown(() => rmSync(consumer, { recursive: true, force: true }));

function runModule(name: string, source: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const file = join(consumer, name);
  writeFileSync(file, source);
  return new Promise((resolve) => {
    execFile(process.execPath, [file], { cwd: consumer, timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

t.test('the package builds to ESM with declarations and an exports map', async (t) => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<string, any>;
  t.same(pkg.dependencies ?? {}, {}, 'no runtime dependencies');
  t.equal(pkg.type, 'module');
  for (const entry of ['.', './core']) {
    const target = pkg.exports[entry];
    t.ok(existsSync(join(root, target.import)), `${entry} → ${target.import} built`);
    t.ok(existsSync(join(root, target.types)), `${entry} → ${target.types} built`);
  }
});

t.test('"Echo in a dozen lines" runs from plain JavaScript', async (t) => {
  const port = await freePort();
  const code = snippet('Echo in a dozen lines').replaceAll('8080', String(port));
  const { code: exit, stdout, stderr } = await runModule('echo.mjs', code);
  t.equal(exit, 0, stderr);
  t.equal(stdout.trim(), 'echo: hello');
});

t.test('the read path\'s server.stats() example runs and reports the connection\'s read path', async (t) => {
  const port = await freePort();
  const code = readme.slice(readme.indexOf('```ts\n', readme.indexOf('**Checked while it runs.**')) + 6).split('```')[0].replaceAll('8080', String(port));
  t.match(code, /server\.stats\(\)/, 'the example found');
  const { code: exit, stdout, stderr } = await runModule('stats.mjs', code);
  t.equal(exit, 0, stderr);
  const direct = process.env.WSENGINE_READ_PATH === 'stream' ? 0 : 1;
  t.match(stdout, /connections: 1,/);
  t.match(stdout, `readPath: { direct: ${direct}, stream: ${1 - direct} }`);
  t.notMatch(stderr, /WSENGINE_READ_PATH_FALLBACK/, 'no fallback warning');
});

t.test('"Attaching to an existing HTTP server" serves both endpoints', async (t) => {
  const port = await freePort();
  const code =
    readme.slice(readme.indexOf('```ts\n', readme.indexOf('### Attaching to an existing HTTP server')) + 6).split('```')[0].replaceAll('8080', String(port)) +
    `
import { connect } from 'wsengine';
for (const path of ['/chat', '/feed']) {
  const c = await connect('ws://127.0.0.1:${port}' + path);
  const [data] = await new Promise((r) => c.once('message', (...a) => r(a)));
  console.log(path, data.toString());
  c.close();
}
process.exit(0);
`;
  const { code: exit, stdout, stderr } = await runModule('attach.mjs', code);
  t.equal(exit, 0, stderr);
  t.same(stdout.trim().split('\n'), ['/chat welcome to chat', '/feed welcome to the feed']);
});

t.test('"HTTP/2 (RFC 8441)" runs: two WebSockets on one HTTP/2 connection', async (t) => {
  const port = await freePort();
  const code = readme.slice(readme.indexOf('```ts\n', readme.indexOf('### HTTP/2 (RFC 8441)')) + 6).split('```')[0].replaceAll('8080', String(port));
  const { code: exit, stdout, stderr } = await runModule('http2.mjs', code);
  t.equal(exit, 0, stderr);
  t.equal(stdout.trim(), 'h2: hello');
});

/** The `n`th (from 0) TypeScript block of the section under `## heading`. */
function sectionSnippet(heading: string, n: number): string {
  const at = readme.indexOf(`## ${heading}\n`);
  const end = readme.indexOf('\n## ', at + 3);
  const blocks = [...readme.slice(at, end === -1 ? undefined : end).matchAll(/```ts\n([\s\S]*?)```/g)];
  return blocks[n][1];
}

t.test('"WebSockets over HTTP/2": attachHttp2 on a node:http2 server, HTTP/2 and HTTP/1.1 on one port', async (t) => {
  const port = await freePort();
  const tls = testCertificate();
  t.teardown(() => tls.remove());
  writeFileSync(join(consumer, 'key.pem'), tls.key);
  writeFileSync(join(consumer, 'cert.pem'), tls.cert);
  const code = sectionSnippet('WebSockets over HTTP/2', 0).replaceAll('8443', String(port));
  const { code: exit, stdout, stderr } = await runModule('h2-attach.mjs', code);
  t.equal(exit, 0, stderr);
  t.same(stdout.trim().split('\n'), ['welcome over h2', 'welcome over http/1.1']);
});

t.test('every install line in the README works while the package is not on the registry', async (t) => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; version: string };
  const shell = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1].split('\n'));
  const installs = shell.filter((line) => /\bnpm (?:install|i|add)\b/.test(line));
  t.ok(installs.length >= 3, `install lines found: ${installs.length}`);
  for (const line of installs) {
    const command = line.split('#')[0];
    const args = command.slice(command.search(/\bnpm (?:install|i|add)\b/)).split('&&')[0].trim().split(/\s+/).slice(2);
    t.notOk(args.includes(pkg.name) || args.some((a) => a.startsWith(`${pkg.name}@`)), `${JSON.stringify(line.trim())} does not install ${pkg.name} from the registry (404 until it is published)`);
    for (const tarball of args.filter((a) => a.endsWith('.tgz'))) {
      t.ok(tarball.endsWith(`${pkg.name}-${pkg.version}.tgz`), `${tarball} is the name npm pack gives (${pkg.name}-${pkg.version}.tgz)`);
    }
  }
  t.match(readme, `writes ${pkg.name}-${pkg.version}.tgz`, 'the npm pack line names the tarball of this version');
});
