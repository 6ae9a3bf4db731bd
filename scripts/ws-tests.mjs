#!/usr/bin/env node
// Runs ws's own public-API tests against wsengine/ws, from outside this repository:
//
//   npm run build && node scripts/ws-tests.mjs /path/to/a/ws/checkout [mocha args…]
//
// The checkout (github.com/websockets/ws, with its test/ and lib/) stays where it is; its three test files
// (websocket-server, websocket, create-websocket-stream) are copied into a temporary directory beside it with the
// lines that load the code under test — require('..'), '../lib/stream' and '../lib/event-target' — pointed at
// dist/ws/index.js; ws's test helpers (its Sender, used to build frames, and its constants) keep coming from the
// checkout. mocha comes from the checkout's node_modules (`npm install` there) or `npx`. Prints each file's counts
// and the total pass rate; nothing of ws is written into this repository.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ws = process.argv[2] && resolve(process.argv[2]);
if (!ws || !existsSync(join(ws, 'test', 'websocket.test.js'))) {
  console.error('usage: node scripts/ws-tests.mjs /path/to/ws-checkout [mocha args…]');
  process.exit(2);
}
const dist = join(root, 'dist', 'ws', 'index.js');
if (!existsSync(dist)) {
  console.error('dist/ws/index.js is missing: run `npm run build` first');
  process.exit(2);
}

// Inside the checkout, so that the tests' relative paths (test/fixtures/…) resolve from its root, as in ws.
const out = mkdtempSync(join(ws, 'test-wsengine-'));
process.on('exit', () => rmSync(out, { recursive: true, force: true }));
cpSync(join(ws, 'test', 'duplex-pair.js'), join(out, 'duplex-pair.js'));
mkdirSync(join(out, 'fixtures'));
cpSync(join(ws, 'test', 'fixtures'), join(out, 'fixtures'), { recursive: true });
const files = ['websocket-server', 'websocket', 'create-websocket-stream'];
for (const name of files) {
  const source = readFileSync(join(ws, 'test', `${name}.test.js`), 'utf8')
    .replaceAll("require('..')", `require(${JSON.stringify(dist)})`)
    .replaceAll("require('../lib/stream')", `require(${JSON.stringify(dist)}).createWebSocketStream`)
    .replaceAll("require('../lib/event-target')", `require(${JSON.stringify(dist)})`)
    .replace(/require\('\.\.\/lib\/([a-z-]+)'\)/g, (_, module) => `require(${JSON.stringify(join(ws, 'lib', module))})`);
  writeFileSync(join(out, `${name}.test.js`), source);
}

const localMocha = join(ws, 'node_modules', '.bin', 'mocha');
const mocha = existsSync(localMocha) ? [localMocha] : ['npx', '--yes', 'mocha@10'];
let passed = 0;
let failed = 0;
for (const name of files) {
  const file = join(out, `${name}.test.js`);
  const run = (extra) => {
    const r = spawnSync(mocha[0], [...mocha.slice(1), '--exit', '--reporter', 'json', file, ...extra, ...process.argv.slice(3)], { cwd: ws, encoding: 'utf8', maxBuffer: 256 << 20 });
    try {
      return JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
    } catch {
      return null;
    }
  };
  // One stream test asserts ws's error text inside an uncaughtException handler: on a mismatch it ends mocha's
  // process, so it runs alone (failed unless it passes) and the rest of the file without it.
  const lone = name === 'create-websocket-stream' ? 'does not suppress the throwing' : null;
  const report = run(lone ? ['--fgrep', lone, '--invert'] : []);
  if (report === null) {
    console.log(`${name}: mocha produced no report`);
    continue;
  }
  const status = new Map();
  for (const t of report.passes) status.set(t.fullTitle, true);
  for (const t of report.failures) if (!/hook for/.test(t.fullTitle)) status.set(t.fullTitle, false);
  if (lone) status.set(lone, run(['--fgrep', lone])?.stats.passes === 1);
  const p = [...status.values()].filter(Boolean).length;
  console.log(`${name}: ${p} passed, ${status.size - p} failed`);
  for (const [title, ok] of status) if (!ok) console.log(`  failed: ${title}`);
  passed += p;
  failed += status.size - p;
}
console.log(`total: ${passed} of ${passed + failed} passed (${((100 * passed) / (passed + failed)).toFixed(1)} %)`);
