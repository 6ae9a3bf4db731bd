/**
 * Node binaries of other majors for test/node-versions.test.ts, from the npm registry: every Node release is
 * published there as `node-<platform>-<arch>` (a tarball whose `package/bin/node` is the official binary). Each
 * major's newest release is resolved with `npm view`, fetched once with `npm pack` into a cache directory outside
 * the project (so `npm ci`, which deletes node_modules, does not throw it away), checked to run, and reused while it
 * is still the newest; an older release of the same major is deleted when a newer one is fetched.
 *
 * Cache: `$WSENGINE_NODE_CACHE`, else `$XDG_CACHE_HOME/wsengine/nodes`, else `~/.cache/wsengine/nodes`
 * (~120 MB per major). Delete it to start over.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where the binaries are kept: one directory per release, `v<version>/node`. */
export const NODE_CACHE = process.env.WSENGINE_NODE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'wsengine', 'nodes');

/** The registry package holding this platform's Node binaries. */
export const NODE_PACKAGE = `node-${process.platform}-${process.arch}`;

/** npm with its chatter off: no update notice, no funding or audit lines. */
const npmEnv = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', npm_config_loglevel: 'error' };

async function npm(args: string[], timeout: number): Promise<string> {
  try {
    const { stdout } = await run('npm', args, { env: npmEnv, timeout, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    throw new Error(`\`npm ${args.join(' ')}\` failed: ${npmFailure(error as Error & { stdout?: string; stderr?: string; killed?: boolean })}`);
  }
}

/** What went wrong in an npm command, in one line: its JSON error (`--json`), its `npm error` lines, or how it ended. */
function npmFailure(error: Error & { stdout?: string; stderr?: string; killed?: boolean }): string {
  if (error.killed) return 'no answer in time';
  try {
    const e = (JSON.parse(error.stdout ?? '') as { error?: { code?: string; summary?: string } }).error;
    if (e) return [e.code, e.summary].filter(Boolean).join(': ');
  } catch {
    // not JSON: fall through to stderr
  }
  const lines = (error.stderr ?? '').split('\n').filter((l) => /^npm (error|ERR!)/.test(l) && !/A complete log|^npm error\s*$/.test(l));
  return lines.slice(0, 2).map((l) => l.replace(/^npm (error|ERR!)\s*/, '')).join(' / ') || error.message.split('\n')[0];
}

/** A binary ready to run, and how it was had. */
export interface NodeBinary {
  /** Absolute path of the `node` executable. */
  path: string;
  /** Its version, without the `v`. */
  version: string;
  /** `cached`: reused; `fetched`: downloaded now; `offline`: reused because the registry could not be asked. */
  source: 'cached' | 'fetched' | 'offline';
  /** Why the registry was not used (source `offline`). */
  note?: string;
}

/** The release a directory of the cache holds (`v22.23.5` → [22, 23, 5]); null for anything else. */
function versionOf(dir: string): number[] | null {
  const m = /^v(\d+)\.(\d+)\.(\d+)$/.exec(dir);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

async function cachedReleases(major: number): Promise<string[]> {
  let dirs: string[];
  try {
    dirs = await readdir(NODE_CACHE);
  } catch {
    return [];
  }
  return dirs
    .map((d) => ({ d, v: versionOf(d) }))
    .filter((e): e is { d: string; v: number[] } => e.v !== null && e.v[0] === major && existsSync(join(NODE_CACHE, e.d, 'node')))
    .sort((a, b) => a.v[1] - b.v[1] || a.v[2] - b.v[2])
    .map((e) => e.d.slice(1));
}

/** The version `node` reports, checked to be `version`: a binary that does not run is an error. */
async function check(path: string, version: string): Promise<void> {
  const { stdout } = await run(path, ['-p', 'process.versions.node'], { timeout: 60_000 });
  if (stdout.trim() !== version) throw new Error(`${path} reports Node ${stdout.trim()}, expected ${version}`);
}

/** The newest release of `major` on the registry. */
async function newest(major: number): Promise<string> {
  const out = await npm(['view', `${NODE_PACKAGE}@${major}`, 'version', '--json', '--fetch-retries=1'], 60_000);
  const parsed: unknown = JSON.parse(out);
  const list = Array.isArray(parsed) ? parsed : [parsed];
  const last = list[list.length - 1];
  if (typeof last !== 'string' || !/^\d+\.\d+\.\d+$/.test(last)) throw new Error(`npm view ${NODE_PACKAGE}@${major} answered ${out.trim().slice(0, 200)}`);
  return last;
}

/** Downloads `version` into the cache (in a scratch directory first, renamed into place: runs may race). */
async function fetchRelease(version: string): Promise<string> {
  await mkdir(NODE_CACHE, { recursive: true });
  const final = join(NODE_CACHE, `v${version}`);
  const scratch = await mkdtemp(join(NODE_CACHE, `.v${version}-`));
  try {
    const packed: unknown = JSON.parse(await npm(['pack', `${NODE_PACKAGE}@${version}`, '--pack-destination', scratch, '--json'], 300_000));
    const filename = Array.isArray(packed) ? (packed[0] as { filename?: unknown })?.filename : undefined;
    if (typeof filename !== 'string') throw new Error(`npm pack ${NODE_PACKAGE}@${version} did not name its tarball`);
    const tarball = join(scratch, filename.replace(/^.*\//, ''));
    await run('tar', ['-xzf', tarball, '-C', scratch, 'package/bin/node'], { timeout: 120_000 });
    await rename(join(scratch, 'package', 'bin', 'node'), join(scratch, 'node'));
    await rm(join(scratch, 'package'), { recursive: true, force: true });
    await rm(tarball, { force: true });
    await check(join(scratch, 'node'), version);
    try {
      await rename(scratch, final);
    } catch (error) {
      // Another run put the same release in place first: use that one.
      if (!existsSync(join(final, 'node'))) throw error;
    }
    return join(final, 'node');
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * The newest Node `major` for this platform: from the cache when it holds the registry's newest release, else
 * fetched. When the registry cannot be asked, the newest cached release of that major is used (and says so); with
 * none cached, this rejects with an Error that says what failed.
 */
export async function nodeBinary(major: number): Promise<NodeBinary> {
  let version: string;
  try {
    version = await newest(major);
  } catch (error) {
    const cached = await cachedReleases(major);
    const reason = (error as Error).message;
    if (cached.length === 0) {
      throw new Error(`cannot get Node ${major} from the npm registry (${reason}), and ${NODE_CACHE} holds no Node ${major}. Node ${major} is tested with the binary the registry publishes as ${NODE_PACKAGE}: run with the registry reachable once (the binary is then cached), or put one at ${join(NODE_CACHE, 'v<version>', 'node')}.`);
    }
    const v = cached[cached.length - 1];
    const path = join(NODE_CACHE, `v${v}`, 'node');
    await check(path, v);
    return { path, version: v, source: 'offline', note: `the registry did not answer (${reason}); using the cached ${v}` };
  }
  const path = join(NODE_CACHE, `v${version}`, 'node');
  let source: NodeBinary['source'] = 'cached';
  if (existsSync(path)) {
    try {
      await check(path, version);
    } catch {
      await rm(join(NODE_CACHE, `v${version}`), { recursive: true, force: true });
      source = 'fetched';
    }
  } else {
    source = 'fetched';
  }
  if (source === 'fetched') await fetchRelease(version);
  // Older releases of this major are no longer used.
  for (const old of await cachedReleases(major)) {
    if (old !== version) await rm(join(NODE_CACHE, `v${old}`), { recursive: true, force: true });
  }
  return { path, version, source };
}
