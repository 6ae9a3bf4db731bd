/**
 * The package as a user installs it: `npm pack`, the tarball installed into a scratch project outside the
 * repository, then
 * - every ```ts snippet of README.md type-checks there against the published declarations, with `strict`,
 *   `skipLibCheck: false` and `nodenext` (so the declarations and the documentation cannot drift apart);
 * - every entry point of `exports` loads through `require()` from CommonJS (Node ≥ 20.19 loads the ESM build through
 *   require; `engines` says so), and a TypeScript consumer on the old `moduleResolution: node10` (CommonJS projects
 *   that have not moved to node16/nodenext) finds every entry point's types through `typesVersions`;
 * - `require('wsengine/ws')` gives ws's CommonJS shape: the WebSocket class, carrying the rest;
 * - every shipped source map points at sources that are in the tarball, and the LICENSE ships.
 *
 * `npm test` builds dist/ before tap runs; run alone, this file rebuilds dist/ when it is older than lib/.
 * No network: the tarball has no dependencies, and @types/node is linked from the repository's node_modules.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/**
 * Commands run as in a user's shell: without the loaders tap and tsx put in NODE_OPTIONS for this test. (tap's
 * process tracker re-adds NODE_OPTIONS to every spawn, so `env -u` removes it on the far side.)
 */

function run(file: string, args: string[], cwd: string, timeout = 120_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, npm_config_update_notifier: 'false' };
    execFile('env', ['-u', 'NODE_OPTIONS', file, ...args], { cwd, timeout, maxBuffer: 64 << 20, env }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

/**
 * A TypeScript 5 compiler from node_modules (TypeScript 7, the project's own, no longer has `moduleResolution:
 * node10`; tap's TypeScript plugin brings a 5.x): the path of its tsc, or undefined.
 */
function typescript5(): string | undefined {
  const modules = join(root, 'node_modules');
  const candidates = [join(modules, 'typescript')];
  for (const entry of readdirSync(modules)) {
    if (entry.startsWith('@')) {
      for (const scoped of readdirSync(join(modules, entry))) candidates.push(join(modules, entry, scoped, 'node_modules', 'typescript'));
    } else {
      candidates.push(join(modules, entry, 'node_modules', 'typescript'));
    }
  }
  for (const dir of candidates) {
    if (!existsSync(join(dir, 'package.json'))) continue;
    const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string };
    if (version.startsWith('5.')) return join(dir, 'bin', 'tsc');
  }
  return undefined;
}

/** The package's entry points, from package.json's `exports` (`.` as `wsengine`, `./core` as `wsengine/core`, …). */
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  engines: { node: string };
  exports: Record<string, string | Record<string, string>>;
  typesVersions: Record<string, Record<string, string[]>>;
};
const entryPoints = Object.keys(pkg.exports).filter((key) => key !== './package.json');
const specifier = (entry: string): string => (entry === '.' ? 'wsengine' : `wsengine/${entry.slice(2)}`);

function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) latest = Math.max(latest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return latest;
}

/** The ```ts blocks of the README, each with the heading it sits under. */
function readmeSnippets(readme: string): Array<{ heading: string; code: string }> {
  const snippets: Array<{ heading: string; code: string }> = [];
  let heading = '';
  const lines = readme.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (/^#{1,6} /.test(line)) heading = line.replace(/^#+ /, '');
    else if (line.trim() === '```ts') {
      const body: string[] = [];
      for (i++; i < lines.length && lines[i].trim() !== '```'; i++) body.push(lines[i]);
      snippets.push({ heading, code: body.join('\n') + '\n' });
    }
  }
  return snippets;
}

/**
 * The application's own names a README snippet leans on without defining (an existing connection, the user
 * lookup of the app, ...). A snippet gets the declaration of each such name it uses and does not define itself;
 * everything from wsengine or Node must be imported by the snippet, as a user would.
 */
const appNames: Record<string, string> = {
  conn: "declare const conn: import('wsengine').WebSocketConnection;",
  server: "declare const server: import('wsengine').WebSocketServer;",
  chunks: 'declare const chunks: Buffer[];',
  handle: 'declare function handle(data: Buffer, isBinary: boolean): Promise<void>;',
  lookUp: 'declare function lookUp(token: string): Promise<{ id: string; name: string } | null>;',
  myCa: 'declare const myCa: string;',
  data: 'declare const data: unknown;',
  transport: "declare const transport: import('node:net').Socket;",
};

function prelude(code: string): string {
  const lines: string[] = [];
  for (const [name, declaration] of Object.entries(appNames)) {
    const used = new RegExp(`\\b${name}\\b`).test(code);
    const defined = new RegExp(`\\b(?:const|let|var|function|class)\\s+${name}\\b|import[^;]*\\b${name}\\b[^;]*from`).test(code);
    if (used && !defined) lines.push(declaration);
  }
  return lines.join('\n');
}

t.test('snippet extraction finds every ts block', async (t) => {
  const found = readmeSnippets('# A\n```ts\nconst a = 1;\n```\n## B\ntext\n```sh\nls\n```\n```ts\nb();\n```\n');
  t.same(found, [
    { heading: 'A', code: 'const a = 1;\n' },
    { heading: 'B', code: 'b();\n' },
  ]);
  t.equal(prelude('conn.send(data)'), `${appNames.conn}\n${appNames.data}`, 'declares the app names used');
  t.equal(prelude('const server = createServer(); server.close();'), '', 'not the ones the snippet defines');
});

t.test('package.json: every entry point for import, require and node10 types; engines', async (t) => {
  t.equal(pkg.engines.node, '>=20.19', 'engines: require() of the ESM build needs Node 20.19');
  t.ok(entryPoints.length >= 6, `${entryPoints.length} entry points`);
  for (const entry of entryPoints) {
    const conditions = pkg.exports[entry] as Record<string, string>;
    t.ok(conditions.types && conditions.import, `${entry}: types and import`);
    t.equal(conditions.default, conditions.import, `${entry}: a default condition (require) to the same file as import`);
    if (entry === '.') continue;
    t.same(pkg.typesVersions['*'][entry.slice(2)], [conditions.types], `${entry}: typesVersions maps it to its types for node10`);
  }
});

t.test('the packed package, installed in a user project', async (t) => {
  if (!existsSync(join(root, 'dist', 'index.js')) || newest(join(root, 'lib')) > newest(join(root, 'dist'))) {
    const build = await run(npm, ['run', 'build'], root);
    t.equal(build.code, 0, `npm run build\n${build.out}`);
    if (build.code !== 0) return;
  }

  const scratch = mkdtempSync(join(tmpdir(), 'wsengine-pack-'));
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }));

  // dist/ is already built: --ignore-scripts keeps `prepare` from rebuilding it under tests that are reading it.
  const pack = await run(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', scratch], root);
  t.equal(pack.code, 0, 'npm pack');
  if (pack.code !== 0) return;
  const [info] = JSON.parse(pack.out.slice(pack.out.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const shipped = new Set(info.files.map((f) => f.path));

  t.test('the tarball', async (t) => {
    t.ok(shipped.has('LICENSE'), 'LICENSE ships');
    t.match(readFileSync(join(root, 'LICENSE'), 'utf8'), /MIT License[\s\S]*wsengine contributors/);
    t.ok(shipped.has('dist/index.js') && shipped.has('dist/index.d.ts'), 'the build ships');
    t.notOk([...shipped].some((p) => p.startsWith('test/') || p.startsWith('bench/')), 'no tests or benchmarks');
    const maps = [...shipped].filter((p) => p.endsWith('.map'));
    t.ok(maps.length > 0, 'source maps ship (with the sources they point to)');
    const unresolved: string[] = [];
    for (const map of maps) {
      const { sources, sourceRoot = '' } = JSON.parse(readFileSync(join(root, map), 'utf8')) as { sources: string[]; sourceRoot?: string };
      for (const source of sources) {
        const target = posix.normalize(posix.join(posix.dirname(map), sourceRoot, source));
        if (!shipped.has(target)) unresolved.push(`${map} → ${target}`);
      }
    }
    t.same(unresolved, [], 'every source of every shipped map is in the tarball');
  });

  const project = join(scratch, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  const install = await run(npm, ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', join(scratch, info.filename)], project);
  t.equal(install.code, 0, `npm install of the tarball\n${install.out}`);
  if (install.code !== 0) return;
  mkdirSync(join(project, 'node_modules', '@types'), { recursive: true });
  symlinkSync(join(root, 'node_modules', '@types', 'node'), join(project, 'node_modules', '@types', 'node'), 'dir');
  // wsengine/hub/nats's declarations use the nats package's types, as a NATS user has them installed.
  symlinkSync(join(root, 'node_modules', 'nats'), join(project, 'node_modules', 'nats'), 'dir');

  t.test('require() loads every entry point from CommonJS (Node ≥ 20.19)', async (t) => {
    const [major, minor] = process.versions.node.split('.').map(Number);
    if (major === 20 && minor < 19) {
      t.pass(`skipped on Node ${process.version}: require() of ESM needs 20.19`);
      return;
    }
    const check = [
      "const m = require('wsengine');",
      "const core = require('wsengine/core');",
      "for (const name of ['createServer', 'connect', 'WebSocket', 'prepare', 'HandshakeError']) if (typeof m[name] !== 'function') throw new Error('wsengine.' + name + ' is ' + typeof m[name]);",
      "if (typeof core.Protocol !== 'function') throw new Error('wsengine/core.Protocol is ' + typeof core.Protocol);",
      `for (const s of ${JSON.stringify(entryPoints.map(specifier))}) { const n = Object.keys(require(s)).length; if (n === 0) throw new Error(s + ' exports nothing'); console.log(s, n); }`,
      // ws's CommonJS shape: the WebSocket class, carrying the rest.
      "const WebSocket = require('wsengine/ws');",
      "for (const name of ['WebSocketServer', 'Server', 'createWebSocketStream', 'WebSocket']) if (typeof WebSocket[name] !== 'function') throw new Error('wsengine/ws.' + name + ' is ' + typeof WebSocket[name]);",
      "if (WebSocket.OPEN !== 1 || new WebSocket.Server({ noServer: true }).clients.size !== 0) throw new Error('wsengine/ws: not ws-shaped');",
      "console.log('ok', Object.keys(m).length);",
    ].join('\n');
    // A .cjs file: the project is "type": "module", so this is CommonJS as a user's .cjs (or CJS package) is.
    writeFileSync(join(project, 'require-all.cjs'), check);
    const result = await run(process.execPath, ['require-all.cjs'], project, 20_000);
    t.equal(result.code, 0, result.out);
    t.match(result.out, /\nok \d+/);
    for (const entry of entryPoints) t.match(result.out, new RegExp(`^${specifier(entry)} \\d+$`, 'm'), `require('${specifier(entry)}')`);
  });

  t.test('a moduleResolution node10 TypeScript consumer finds every entry point\'s types', async (t) => {
    const tsc5 = typescript5();
    if (tsc5 === undefined) {
      t.fail('no TypeScript 5 in node_modules (TypeScript 7 removed moduleResolution node10): add one as a devDependency alias');
      return;
    }
    const dir = join(project, 'node10');
    mkdirSync(dir);
    // A namespace import of each entry point: unresolved, or resolved to JavaScript without types, is an error
    // (TS2307, or TS7016 under strict); the declarations themselves are checked too (skipLibCheck off).
    const source = entryPoints.map((entry, i) => `import * as m${i} from '${specifier(entry)}';\nexport const k${i}: string[] = Object.keys(m${i});\n`).join('');
    writeFileSync(join(dir, 'consumer.ts'), `${source}import { createServer } from 'wsengine';\nexport const server: import('wsengine').WebSocketServer = createServer({ noServer: true });\n`);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          skipLibCheck: false,
          module: 'commonjs',
          moduleResolution: 'node10',
          target: 'es2022',
          // dom: the nats package's own declarations name TextEncoder/TextDecoder as types.
          lib: ['es2023', 'dom'],
          types: ['node'],
          noEmit: true,
        },
        files: ['consumer.ts'],
      }),
    );
    const tsc = await run(process.execPath, [tsc5, '-p', 'tsconfig.json'], dir);
    t.equal(tsc.code, 0, `tsc (TypeScript 5, node10) in the consumer project:\n${tsc.out}`);
    t.equal(tsc.out.trim(), '', 'no diagnostics');
  });

  t.test('every README snippet type-checks against the published declarations', async (t) => {
    const snippets = readmeSnippets(readFileSync(join(root, 'README.md'), 'utf8'));
    t.ok(snippets.length >= 10, `found ${snippets.length} snippets`);
    const files: string[] = [];
    snippets.forEach(({ heading, code }, i) => {
      const name = `snippet-${String(i + 1).padStart(2, '0')}.ts`;
      // `export {}` keeps each snippet a module of its own (top-level await, no clashes between snippets).
      writeFileSync(join(project, name), `// README: ${heading}\n${prelude(code)}\n${code}export {};\n`);
      files.push(name);
    });
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          skipLibCheck: false,
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          lib: ['es2023'],
          types: ['node'],
          noEmit: true,
        },
        files,
      }),
    );
    const tsc = await run(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], project);
    const headingOf = (out: string) =>
      out.replace(/snippet-(\d+)\.ts/g, (m, n: string) => `${m} (README: ${snippets[Number(n) - 1].heading})`);
    t.equal(tsc.code, 0, `tsc in the consumer project:\n${headingOf(tsc.out)}`);
    t.equal(tsc.out.trim(), '', 'no diagnostics');
  });
});
