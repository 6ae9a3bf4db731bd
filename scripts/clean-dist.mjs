// Empties dist/ before a build, so a module that was removed or renamed in lib/ leaves no stale files behind to be
// packed or imported (tsc only ever adds and overwrites).
import { rmSync } from 'node:fs';

rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
