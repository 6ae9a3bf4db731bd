/**
 * ws's option names, checked and mapped onto the engine's: every ws option is either honoured or refused with a
 * TypeError that says why (and what to use instead); none is silently ignored.
 *
 * @module
 */
import { type DeflateOptions, resolveDeflateOptions } from '../deflate/negotiate.js';

/** ws's default `maxPayload`: 100 MiB. */
export const DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024;
/** ws's default `closeTimeout`: 30 s. */
export const DEFAULT_CLOSE_TIMEOUT = 30_000;

/** ws's `perMessageDeflate` object. */
export interface PerMessageDeflateOptions {
  serverNoContextTakeover?: boolean;
  clientNoContextTakeover?: boolean;
  /** 8–15 (a side bound to 8 bits sends uncompressed: zlib cannot honour it). */
  serverMaxWindowBits?: number;
  /** 8–15. */
  clientMaxWindowBits?: number;
  /** `level` and `memLevel` are honoured; `chunkSize` is accepted and has no effect (see the README). */
  zlibDeflateOptions?: { level?: number; memLevel?: number; chunkSize?: number };
  /** `chunkSize` is accepted and has no effect; nothing else is taken. */
  zlibInflateOptions?: { chunkSize?: number };
  threshold?: number;
  concurrencyLimit?: number;
}

/** The engine's own names, for a clear message when one is passed to the ws-compatible classes. */
const ENGINE_NAMES: Record<string, string> = {
  authenticate: 'verifyClient',
  selectProtocol: 'handleProtocols',
  maxMessageSize: 'maxPayload',
  heartbeat: "the ws way (ping from a setInterval), or wsengine's own createServer",
  origins: 'verifyClient (check info.origin)',
  maxConnections: 'verifyClient',
  tls: "server: an https server passed as { server }; client: tls options (ca, cert, key, …) given directly",
  handshakeTimeout: 'a timeout of your own around handleUpgrade',
  httpHandler: "the http server's 'request' event, with { server }",
};

/**
 * Checks an options object against the names a ws class accepts; throws a TypeError naming the first unknown or
 * refused one. `extra` is true for the client, whose other options go to `http.request` as in ws.
 */
export function checkNames(what: string, options: object, known: ReadonlySet<string>): void {
  for (const name of Object.keys(options)) {
    if (known.has(name)) continue;
    const instead = ENGINE_NAMES[name];
    throw new TypeError(
      instead !== undefined
        ? `${what}: unknown option "${name}" (a wsengine option; with wsengine/ws use ${instead})`
        : `${what}: unknown option "${name}"`,
    );
  }
}

/** `maxPayload` as ws reads it (a 32-bit integer; 0 or less: no limit) → the engine's `maxMessageSize`. */
export function maxMessageSize(maxPayload: unknown): number {
  if (maxPayload === undefined) return DEFAULT_MAX_PAYLOAD;
  if (typeof maxPayload !== 'number' || Number.isNaN(maxPayload)) throw new TypeError(`maxPayload must be a number, got ${typeof maxPayload}`);
  const n = maxPayload | 0;
  return n > 0 ? n : Number.MAX_SAFE_INTEGER;
}

/**
 * ws's `maxFragments` (fragments per message; 0: no limit) as the engine's `fragmentOverhead`: every fragment after
 * the first is charged `maxMessageSize / maxFragments` bytes (at least the engine's 16) toward the size limit, so a
 * message of more than `maxFragments` fragments is over it (1009). Undefined: the engine's default.
 */
export function fragmentOverhead(maxFragments: unknown, maxMessageSize: number): number | undefined {
  if (maxFragments === undefined) return undefined;
  if (typeof maxFragments !== 'number' || Number.isNaN(maxFragments)) throw new TypeError(`maxFragments must be a number, got ${typeof maxFragments}`);
  const n = maxFragments | 0;
  if (n <= 0 || maxMessageSize >= Number.MAX_SAFE_INTEGER) return undefined;
  return Math.max(16, Math.ceil(maxMessageSize / n));
}

/**
 * ws's `maxBufferedChunks` (chunks held for a message being received; 0: no limit): checked, and satisfied by the
 * engine's design rather than counted: it copies small reads into 16 KiB blocks and counts the memory of what it
 * keeps toward `maxPayload`, so what a message holds is bounded by `maxPayload` alone.
 */
/** The options ws's server and client share: `skipUTF8Validation` (refused), `allowSynchronousEvents`, `autoPong`. */
export function checkSharedOptions(options: { skipUTF8Validation?: unknown; allowSynchronousEvents?: unknown; autoPong?: unknown }): void {
  if (options.skipUTF8Validation) {
    throw new TypeError('skipUTF8Validation: true is not supported by wsengine/ws: UTF-8 is always validated (it costs little: see the README)');
  }
  checkBoolean('allowSynchronousEvents', options.allowSynchronousEvents);
  checkBoolean('autoPong', options.autoPong);
}

export function checkBufferedChunks(value: unknown): void {
  if (value !== undefined && (typeof value !== 'number' || Number.isNaN(value))) throw new TypeError(`maxBufferedChunks must be a number, got ${typeof value}`);
}

export function closeTimeout(value: unknown): number {
  if (value === undefined) return DEFAULT_CLOSE_TIMEOUT;
  if (typeof value !== 'number' || !(value >= 0)) throw new TypeError(`closeTimeout must be a non-negative number, got ${String(value)}`);
  return value;
}

export function checkBoolean(name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${typeof value}`);
}

export function checkFunction(name: string, value: unknown): void {
  if (value !== undefined && value !== null && typeof value !== 'function') throw new TypeError(`${name} must be a function, got ${typeof value}`);
}

const DEFLATE_NAMES = new Set([
  'serverNoContextTakeover',
  'clientNoContextTakeover',
  'serverMaxWindowBits',
  'clientMaxWindowBits',
  'zlibDeflateOptions',
  'zlibInflateOptions',
  'threshold',
  'concurrencyLimit',
]);

/**
 * ws's `perMessageDeflate` (true, false or its object) → the engine's resolved options, or null when off.
 * `fallback` is ws's default for the role: off on servers, on for clients.
 */
export function deflateOptions(value: unknown, fallback: boolean): Required<DeflateOptions> | null {
  if (value === undefined) value = fallback;
  if (value === false || value === null) return null;
  if (value === true) return resolveDeflateOptions(true);
  if (typeof value !== 'object') throw new TypeError(`perMessageDeflate must be a boolean or an object, got ${typeof value}`);
  const o = value as PerMessageDeflateOptions & Record<string, unknown>;
  for (const name of Object.keys(o)) {
    if (!DEFLATE_NAMES.has(name)) throw new TypeError(`perMessageDeflate: unknown option "${name}"`);
  }
  const out: DeflateOptions = {};
  if (o.serverNoContextTakeover !== undefined) out.serverNoContextTakeover = Boolean(o.serverNoContextTakeover);
  if (o.clientNoContextTakeover !== undefined) out.clientNoContextTakeover = Boolean(o.clientNoContextTakeover);
  // ws also takes `true` (offer the parameter without a value): the engine's default.
  if (typeof o.serverMaxWindowBits === 'number') out.serverMaxWindowBits = o.serverMaxWindowBits;
  else if (o.serverMaxWindowBits !== undefined && typeof (o.serverMaxWindowBits as unknown) !== 'boolean') {
    throw new TypeError('perMessageDeflate.serverMaxWindowBits must be a number from 8 to 15, or true');
  }
  if (typeof o.clientMaxWindowBits === 'number') out.clientMaxWindowBits = o.clientMaxWindowBits;
  else if (o.clientMaxWindowBits !== undefined && typeof (o.clientMaxWindowBits as unknown) !== 'boolean') {
    throw new TypeError('perMessageDeflate.clientMaxWindowBits must be a number from 8 to 15, or true');
  }
  if (o.threshold !== undefined) out.threshold = o.threshold;
  if (o.concurrencyLimit !== undefined) out.concurrency = o.concurrencyLimit;
  const z = o.zlibDeflateOptions;
  if (z !== undefined) {
    if (typeof z !== 'object' || z === null) throw new TypeError('perMessageDeflate.zlibDeflateOptions must be an object');
    for (const name of Object.keys(z)) {
      if (name !== 'level' && name !== 'memLevel' && name !== 'chunkSize') {
        throw new TypeError(`perMessageDeflate.zlibDeflateOptions.${name} is not supported by wsengine/ws (level, memLevel and chunkSize are)`);
      }
    }
    if (z.level !== undefined) out.level = z.level;
    if (z.memLevel !== undefined) out.memLevel = z.memLevel;
  }
  const zi = o.zlibInflateOptions;
  if (zi !== undefined) {
    if (typeof zi !== 'object' || zi === null) throw new TypeError('perMessageDeflate.zlibInflateOptions must be an object');
    for (const name of Object.keys(zi)) {
      if (name !== 'chunkSize') throw new TypeError(`perMessageDeflate.zlibInflateOptions.${name} is not supported by wsengine/ws (chunkSize is)`);
    }
  }
  // An 8-bit window is ws's lowest: the engine negotiates it (the side bound to it sends uncompressed, as RFC 7692
  // allows, since zlib cannot compress with 8 bits) but its options start at 9.
  const eight = { server: out.serverMaxWindowBits === 8, client: out.clientMaxWindowBits === 8 };
  if (eight.server) out.serverMaxWindowBits = 9;
  if (eight.client) out.clientMaxWindowBits = 9;
  const resolved = resolveDeflateOptions(out);
  if (eight.server) resolved.serverMaxWindowBits = 8;
  if (eight.client) resolved.clientMaxWindowBits = 8;
  return resolved;
}
