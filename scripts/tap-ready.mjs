// Makes `npm test` work right after `npm install` on a fresh clone.
//
// tap ships its test class prebuilt with its default plugins, TypeScript plugin included. Our package.json drops
// that plugin ("tap.plugin": ["!@tapjs/typescript"]; tsx loads the tests instead) because it breaks against
// TypeScript 7. tap notices the difference only after it has already chosen the node arguments for the test
// processes, so the first run after an install fails every file. This script runs `tap build` before tap
// starts, and only when the built plugin set differs from the configured one (a build takes ~30 s).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

let built;
let wanted;
try {
  const { TapConfig } = await import('@tapjs/config');
  ({ signature: built } = await import('@tapjs/test'));
  wanted = (await TapConfig.load()).pluginSignature;
} catch (error) {
  // tap's internals moved: fall back to always building, which is slower but never wrong.
  console.error(`tap-ready: cannot compare tap plugin sets (${error.message}); rebuilding`);
}

if (built === undefined || built !== wanted) {
  const tapBin = createRequire(import.meta.url).resolve('tap/package.json').replace(/package\.json$/, 'dist/esm/run.mjs');
  console.error('tap-ready: rebuilding tap for the plugins configured in package.json');
  const result = spawnSync(process.execPath, [tapBin, 'build'], { stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`tap-ready: tap build failed (${result.signal ?? `exit ${result.status}`})`);
    process.exit(1);
  }
}
