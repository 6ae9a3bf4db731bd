/**
 * Development mode's credentials, kept across restarts: the generated JWT secret and API key live in
 * `.wsengine-dev.json` in the working directory (mode 0600), so tokens handed out before a restart (the banner's,
 * the demo page's, a curl command's API key) keep working after it. Values given by flags or environment variables
 * win and are not stored. Deleting the file gives new credentials on the next start.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError } from './config.js';

/** The file's name, in the working directory. */
export const DEV_CREDENTIALS_FILE = '.wsengine-dev.json';

/** What {@link devCredentials} settled on. */
export interface DevCredentials {
  jwtSecret: string;
  apiKey: string;
  /** Absolute path of the file. */
  path: string;
  /**
   * `created`: the file was written now (new credentials); `loaded`: read from the file (maybe completed with a
   * value it lacked); `flags`: both values came from the configuration, the file was neither read nor written;
   * `unsaved`: the file could not be written (the credentials last until the service stops; `error` says why).
   */
  state: 'created' | 'loaded' | 'flags' | 'unsaved';
  /** Why the file could not be written (`unsaved`), or that its permissions were narrowed to 0600. */
  note?: string;
}

interface Stored {
  jwtSecret?: string;
  apiKey?: string;
}

const generateSecret = (): string => `dev-${randomBytes(24).toString('base64url')}`;
const generateKey = (): string => `dev-${randomBytes(18).toString('base64url')}`;

function readStored(path: string): Stored | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`--dev: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    data = undefined;
  }
  const ok = (v: unknown): boolean => v === undefined || (typeof v === 'string' && v.length >= 8);
  if (typeof data !== 'object' || data === null || Array.isArray(data) || !ok((data as Stored).jwtSecret) || !ok((data as Stored).apiKey)) {
    throw new ConfigError(`--dev: ${path} is not a wsengine development credentials file ({"jwtSecret","apiKey"}); delete it to generate new credentials`);
  }
  const { jwtSecret, apiKey } = data as Stored;
  return { jwtSecret, apiKey };
}

function serialize(stored: Stored): string {
  return `${JSON.stringify({ note: 'wsengine hub --dev credentials: development only; delete this file for new ones', jwtSecret: stored.jwtSecret, apiKey: stored.apiKey }, null, 2)}\n`;
}

/** Writes `text` to a private temporary file beside `path` and returns its name. */
function writeTemp(path: string, text: string): string {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(temp, text, { mode: 0o600, flag: 'wx' });
  chmodSync(temp, 0o600);
  return temp;
}

/**
 * The development secret and API key: `given` values win; missing ones come from `<dir>/.wsengine-dev.json`, or are
 * generated and stored there (created atomically with mode 0600; two hubs starting at once in one folder end up
 * with the same credentials). A file that is not this module's stops the start with a {@link ConfigError}; a folder
 * that cannot be written only costs persistence (`state: 'unsaved'`).
 */
export function devCredentials(dir: string, given: { jwtSecret?: string; apiKey?: string }): DevCredentials {
  const path = resolve(join(dir, DEV_CREDENTIALS_FILE));
  if (given.jwtSecret !== undefined && given.apiKey !== undefined) return { jwtSecret: given.jwtSecret, apiKey: given.apiKey, path, state: 'flags' };
  for (let attempt = 0; ; attempt++) {
    const stored = readStored(path);
    if (stored !== undefined) {
      let note: string | undefined;
      try {
        if ((statSync(path).mode & 0o077) !== 0) {
          chmodSync(path, 0o600);
          note = 'permissions narrowed to 0600';
        }
      } catch {
        // Not ours to fix (another owner): the values are still usable.
      }
      const complete = { jwtSecret: stored.jwtSecret ?? generateSecret(), apiKey: stored.apiKey ?? generateKey() };
      if (stored.jwtSecret === undefined || stored.apiKey === undefined) {
        try {
          const temp = writeTemp(path, serialize(complete));
          renameSync(temp, path);
        } catch (error) {
          return { jwtSecret: given.jwtSecret ?? complete.jwtSecret, apiKey: given.apiKey ?? complete.apiKey, path, state: 'unsaved', note: `cannot update ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` };
        }
      }
      return { jwtSecret: given.jwtSecret ?? complete.jwtSecret, apiKey: given.apiKey ?? complete.apiKey, path, state: 'loaded', ...(note !== undefined ? { note } : {}) };
    }
    const fresh = { jwtSecret: generateSecret(), apiKey: generateKey() };
    let temp: string | undefined;
    try {
      temp = writeTemp(path, serialize(fresh));
      // A hard link creates the file whole, or fails when another process created it first: then read theirs.
      try {
        linkSync(temp, path);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EEXIST' || code === 'EACCES' || code === 'EROFS' || code === 'ENOENT') throw error;
        // A file system without hard links: create the file exclusively instead.
        writeFileSync(path, serialize(fresh), { mode: 0o600, flag: 'wx' });
      }
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && attempt < 3) continue;
      return { jwtSecret: given.jwtSecret ?? fresh.jwtSecret, apiKey: given.apiKey ?? fresh.apiKey, path, state: 'unsaved', note: `cannot write ${path}: ${code ?? (error as Error).message}` };
    } finally {
      if (temp !== undefined) {
        try {
          unlinkSync(temp);
        } catch {
          // Never created.
        }
      }
    }
    return { jwtSecret: given.jwtSecret ?? fresh.jwtSecret, apiKey: given.apiKey ?? fresh.apiKey, path, state: 'created' };
  }
}
