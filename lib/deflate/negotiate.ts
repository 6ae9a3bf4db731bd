/**
 * permessage-deflate negotiation (RFC 7692 §5, §7.1), both roles, sans-I/O.
 *
 * The server walks the client's offers in order and accepts the first one it can honour; an offer with an unknown
 * parameter, a duplicated one, or a bad value (window bits outside 8–15, "abc", empty) is declined and the next one
 * tried — never a crash, and never a 400 for a well-formed header (RFC 7692 §5.1: decline).
 *
 * An 8-bit window is accepted but never compressed with: zlib silently uses 9 bits when asked for 8, which a peer
 * that really keeps a 256-byte window could not inflate. The side bound to 8 bits sends its messages uncompressed,
 * which RFC 7692 allows (RSV1 is per message); it still inflates what the other side compresses.
 *
 * @module
 */
import { checkOptionNames, WS_OPTION_HINTS } from '../core/options.js';
import type { ExtensionOffer } from '../core/tokens.js';

/** The parameters both sides agreed to. */
export interface DeflateParams {
  /** The server resets its compression context after every message. */
  serverNoContextTakeover: boolean;
  /** The client resets its compression context after every message. */
  clientNoContextTakeover: boolean;
  /** Largest LZ77 window (log2 bytes) the server compresses with: 8–15. */
  serverMaxWindowBits: number;
  /** Largest window the client compresses with: 8–15. */
  clientMaxWindowBits: number;
}

/** Defaults of {@link DeflateOptions}. */
export const DEFLATE_DEFAULTS = {
  /** The server keeps its compression context between messages (better ratio, ~256 KiB per connection). */
  serverNoContextTakeover: false,
  /** The client may keep its compression context between messages. */
  clientNoContextTakeover: false,
  /** 15: a 32 KiB LZ77 window for the server's compressor (log2 bytes). */
  serverMaxWindowBits: 15,
  /** 15: a 32 KiB window for the client's compressor (log2 bytes). */
  clientMaxWindowBits: 15,
  /** zlib's default compression level. */
  level: 6,
  /** 8: zlib's default internal-state size (deflate holds 2^(windowBits+2) + 2^(memLevel+9) bytes). */
  memLevel: 8,
  /** Messages under 1 KiB go uncompressed: deflating them costs more than it saves. */
  threshold: 1024,
  /** At most 10 zlib operations in flight per server (or per client options object). */
  concurrency: 10,
} as const;

/** permessage-deflate configuration (server or client). */
export interface DeflateOptions {
  /** Server: reset our compressor after each message (and ask for it). Default: false. */
  serverNoContextTakeover?: boolean;
  /** Ask the client to reset its compressor after each message. Default: false. */
  clientNoContextTakeover?: boolean;
  /** Largest window the server compresses with, 9–15 (log2 bytes). Smaller saves memory. Default: 15. */
  serverMaxWindowBits?: number;
  /** Largest window the client should compress with, 9–15. Default: 15. */
  clientMaxWindowBits?: number;
  /** zlib compression level 0–9. Default: 6. */
  level?: number;
  /** zlib memLevel 1–9: memory for the compressor's internal state. Default: 8. */
  memLevel?: number;
  /** Messages shorter than this many bytes are sent uncompressed. Default: 1024. */
  threshold?: number;
  /** Most zlib operations in flight at once, shared by a server's connections (or by client connections made with the same options object). Default: 10. */
  concurrency?: number;
}

const DEFLATE_OPTION_NAMES: ReadonlySet<string> = new Set(
  Object.keys({
    serverNoContextTakeover: true,
    clientNoContextTakeover: true,
    serverMaxWindowBits: true,
    clientMaxWindowBits: true,
    level: true,
    memLevel: true,
    threshold: true,
    concurrency: true,
  } as const satisfies Record<keyof DeflateOptions, true>),
);

/**
 * Validates and completes options; RangeError/TypeError on misuse, a TypeError for an unknown option name (ws's
 * `concurrencyLimit`, `zlibDeflateOptions`, `zlibInflateOptions` name their equivalent here).
 */
export function resolveDeflateOptions(options: DeflateOptions | true): Required<DeflateOptions> {
  const o = options === true ? {} : options;
  if (typeof o !== 'object' || o === null) throw new TypeError('perMessageDeflate must be true or an options object');
  checkOptionNames('perMessageDeflate', o, DEFLATE_OPTION_NAMES, WS_OPTION_HINTS);
  const out = { ...DEFLATE_DEFAULTS, ...o } as Required<DeflateOptions>;
  const int = (name: keyof DeflateOptions, lo: number, hi: number): void => {
    const v = out[name] as number;
    if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`perMessageDeflate.${name} must be an integer from ${lo} to ${hi}, got ${String(v)}`);
  };
  int('serverMaxWindowBits', 9, 15);
  int('clientMaxWindowBits', 9, 15);
  int('level', 0, 9);
  int('memLevel', 1, 9);
  int('threshold', 0, Number.MAX_SAFE_INTEGER);
  int('concurrency', 1, 1024);
  return out;
}

const PARAM_NAMES = new Set(['server_no_context_takeover', 'client_no_context_takeover', 'server_max_window_bits', 'client_max_window_bits']);

/** Reads one offer's (or response's) parameters; null when invalid (unknown, duplicated, bad value). */
function readParams(offer: ExtensionOffer): Map<string, string | true> | null {
  const params = new Map<string, string | true>();
  for (const [name, value] of offer.params) {
    if (!PARAM_NAMES.has(name) || params.has(name)) return null;
    if (name.endsWith('_no_context_takeover')) {
      if (value !== true) return null;
    } else if (value !== true || name === 'server_max_window_bits') {
      if (value === true || !isWindowBits(value)) return null;
    }
    params.set(name, value);
  }
  return params;
}

function isWindowBits(value: string): boolean {
  // RFC 7692 §7.1.2: 1*DIGIT, 8 to 15, no leading zero.
  return value.length <= 2 && /^(8|9|1[0-5])$/.test(value);
}

/** Server side: the response header value and the agreed parameters, or null when no offer is acceptable. */
export function negotiateServer(offers: ExtensionOffer[], options: Required<DeflateOptions>): { header: string; params: DeflateParams } | null {
  for (const offer of offers) {
    if (offer.name !== 'permessage-deflate') continue;
    const p = readParams(offer);
    if (p === null) continue;
    const params: DeflateParams = {
      serverNoContextTakeover: options.serverNoContextTakeover || p.has('server_no_context_takeover'),
      clientNoContextTakeover: options.clientNoContextTakeover || p.has('client_no_context_takeover'),
      serverMaxWindowBits: options.serverMaxWindowBits,
      clientMaxWindowBits: 15,
    };
    const requestedServerBits = p.get('server_max_window_bits');
    if (typeof requestedServerBits === 'string') {
      params.serverMaxWindowBits = Math.min(Number(requestedServerBits), options.serverMaxWindowBits);
    }
    const clientBits = p.get('client_max_window_bits');
    let header = 'permessage-deflate';
    if (params.serverNoContextTakeover) header += '; server_no_context_takeover';
    if (params.clientNoContextTakeover) header += '; client_no_context_takeover';
    if (requestedServerBits !== undefined || params.serverMaxWindowBits < 15) header += `; server_max_window_bits=${params.serverMaxWindowBits}`;
    if (clientBits !== undefined) {
      // The client supports the parameter: limit it to what it offered and what we ask.
      params.clientMaxWindowBits = Math.min(clientBits === true ? 15 : Number(clientBits), options.clientMaxWindowBits);
      if (params.clientMaxWindowBits < 15 || clientBits !== true) header += `; client_max_window_bits=${params.clientMaxWindowBits}`;
    }
    return { header, params };
  }
  return null;
}

/** Client side: the offer to send. */
export function clientOffer(options: Required<DeflateOptions>): string {
  let header = 'permessage-deflate';
  if (options.serverNoContextTakeover) header += '; server_no_context_takeover';
  if (options.clientNoContextTakeover) header += '; client_no_context_takeover';
  if (options.serverMaxWindowBits < 15) header += `; server_max_window_bits=${options.serverMaxWindowBits}`;
  header += options.clientMaxWindowBits < 15 ? `; client_max_window_bits=${options.clientMaxWindowBits}` : '; client_max_window_bits';
  return header;
}

/** Client side: checks the server's accepted parameters against our offer; a message when they are invalid. */
export function acceptServerResponse(response: ExtensionOffer, options: Required<DeflateOptions>): DeflateParams | string {
  const p = readParams(response);
  if (p === null) return 'server sent invalid permessage-deflate parameters';
  const serverBits = p.get('server_max_window_bits');
  const clientBits = p.get('client_max_window_bits');
  if (clientBits === true) return 'client_max_window_bits needs a value in a response';
  const params: DeflateParams = {
    serverNoContextTakeover: p.has('server_no_context_takeover'),
    clientNoContextTakeover: options.clientNoContextTakeover || p.has('client_no_context_takeover'),
    serverMaxWindowBits: typeof serverBits === 'string' ? Number(serverBits) : 15,
    clientMaxWindowBits: typeof clientBits === 'string' ? Number(clientBits) : options.clientMaxWindowBits,
  };
  if (options.serverNoContextTakeover && !params.serverNoContextTakeover) return 'server ignored server_no_context_takeover';
  if (params.serverMaxWindowBits > options.serverMaxWindowBits) return 'server_max_window_bits above what was offered';
  if (params.clientMaxWindowBits > options.clientMaxWindowBits) return 'client_max_window_bits above what was offered';
  return params;
}
