/**
 * A connection's options and settings: {@link ConnectionOptions} and their defaults, the frozen settings object
 * connections made with the same values share, the public types of sends and messages, and the checks of the
 * arguments `send`, `ping` and `pong` take (ws-style).
 *
 * @module
 */
import type { Data as Payload } from '../core/bytes.js';
import { checkOptionNames } from '../core/options.js';
import type { DeflateOptions } from '../deflate/negotiate.js';
import type { WebSocketConnection } from './connection.js';

/** Defaults of {@link ConnectionOptions}, in milliseconds and bytes. */
export const CONNECTION_DEFAULTS = {
  /** 10 s to wait for the peer's close frame (or its TCP close) before destroying the socket. */
  closeTimeout: 10_000,
  /** 1 MiB of unsent data above which a peer's ping, instead of a pong, cuts the connection. */
  maxPongBacklog: 1024 * 1024,
  /** Messages queued for a `for await` loop before the socket is paused. */
  iteratorHighWaterMark: 64,
} as const;

/** Options shared by every connection, server or client side. */
export interface ConnectionOptions {
  /** Largest message accepted, in bytes (1009 above it). Default: 64 MiB. */
  maxMessageSize?: number;
  /** Largest frame accepted, in bytes (1009 above it). Default: `maxMessageSize`. */
  maxFrameSize?: number;
  /** Bytes charged per fragment after the first toward `maxMessageSize`. Default: 16. */
  fragmentOverhead?: number;
  /** Answer pings automatically. Default: true. */
  autoPong?: boolean;
  /** Reject non-minimal frame length encodings with 1002. Default: false. */
  strictLengths?: boolean;
  /**
   * Milliseconds to wait for the closing handshake to finish before destroying the socket; after the peer ended TCP
   * without one (FIN alone), for what is still to be written to leave. Default: 10,000.
   */
  closeTimeout?: number;
  /**
   * Bytes of unsent data above which an incoming ping cuts the connection instead of queueing a pong: a peer that
   * floods pings and never reads cannot make the server buffer without bound. Default: 1 MiB.
   */
  maxPongBacklog?: number;
  /** Messages queued for async iteration before reading pauses (backpressure to the peer). Default: 64. */
  iteratorHighWaterMark?: number;
  /**
   * permessage-deflate (RFC 7692): `true` for the defaults, or options. Default: false (off). See the README for
   * when it pays and what it costs in memory.
   */
  perMessageDeflate?: boolean | DeflateOptions;
}

/** @internal The names of {@link ConnectionOptions} (the compiler keeps the list complete). */
export const CONNECTION_OPTION_NAMES = {
  maxMessageSize: true,
  maxFrameSize: true,
  fragmentOverhead: true,
  autoPong: true,
  strictLengths: true,
  closeTimeout: true,
  maxPongBacklog: true,
  iteratorHighWaterMark: true,
  perMessageDeflate: true,
} as const satisfies Record<keyof ConnectionOptions, true>;

/**
 * Called once a message's bytes were handed to the socket (flushed with the batch of its tick), with no argument;
 * or with an Error when they could not be: the connection was not open, closed first, or the socket failed.
 */
export type SendCallback = (error?: Error) => void;

/** Options of one `send`. */
export interface SendOptions {
  /** Send as binary (true) or text (false). Default: false for strings, true for bytes. */
  binary?: boolean;
  /** Compress when permessage-deflate is negotiated. Default: true (subject to the threshold). */
  compress?: boolean;
}

/** A received message, as yielded by async iteration. */
export interface Message {
  data: Buffer;
  isBinary: boolean;
}

/** Events of a {@link WebSocketConnection}. */
export interface ConnectionEvents {
  /** A complete message: text arrives as its UTF-8 bytes (already validated; `data.toString()` decodes it). */
  message: (data: Buffer, isBinary: boolean) => void;
  ping: (data: Buffer) => void;
  pong: (data: Buffer) => void;
  /**
   * Always fires once, last: the peer's close code (1005 without one, 1006 with no close frame) and reason. A peer
   * that ends TCP without a close frame (FIN alone) is not left half-open, even on a socket made with `allowHalfOpen`
   * (`node:http`'s): what was already sent is written, our side ended, the socket closed, then `close` reports 1006
   * (or the peer's code, when its close frame came before).
   */
  close: (code: number, reason: string) => void;
  /** A protocol violation by the peer or a socket error. Never emitted without a listener. */
  error: (error: Error) => void;
  /**
   * The socket's write buffer has drained below its high-water mark. Called with no argument; the optional `void`
   * parameter only lets a Promise's `resolve` be the listener: `new Promise((resolve) => conn.once('drain', resolve))`.
   */
  drain: (nothing?: void) => void;
}

/** Internal hooks for the layers above (server registry, heartbeat, deflate). */
export interface ConnectionInternals {
  onClosed?: (connection: WebSocketConnection<any, any>) => void;
}

/** A connection's option values, in milliseconds, bytes and messages (see {@link ConnectionOptions}). */
export interface Settings {
  readonly closeTimeout: number;
  readonly maxPongBacklog: number;
  readonly autoPong: boolean;
  readonly iteratorHighWaterMark: number;
  /** permessage-deflate: messages below this many bytes are sent uncompressed. */
  readonly threshold: number;
}

/**
 * Settings objects by their values: connections made with the same options (every connection of a server, as a
 * rule) share one object instead of carrying five fields each (40 bytes per connection). At most
 * {@link SETTINGS_KEPT} distinct sets are kept; past that, connections get their own object.
 */
const settingsCache = new Map<string, Settings>();
const SETTINGS_KEPT = 64;

export function settingsOf(closeTimeout: number, maxPongBacklog: number, autoPong: boolean, iteratorHighWaterMark: number, threshold: number): Settings {
  const key = `${closeTimeout}/${maxPongBacklog}/${autoPong ? 1 : 0}/${iteratorHighWaterMark}/${threshold}`;
  let settings = settingsCache.get(key);
  if (settings === undefined) {
    settings = Object.freeze({ closeTimeout, maxPongBacklog, autoPong, iteratorHighWaterMark, threshold });
    if (settingsCache.size < SETTINGS_KEPT) settingsCache.set(key, settings);
  }
  return settings;
}

/** Splits `(data?, options?, callback?)` as ws accepts it: the options may be left out before the callback. */
export function sendArgs(options: SendOptions | SendCallback | undefined, callback: SendCallback | undefined, what: string): SendCallback | undefined {
  if (typeof options === 'function') {
    if (callback !== undefined) throw new TypeError(`${what}(data, callback) takes nothing after the callback`);
    return options;
  }
  if (options !== undefined) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`${what} options must be an object ({ binary, compress }) or omitted, got ${options === null ? 'null' : typeof options}; a callback goes last: ${what}(data, options, callback)`);
    }
    for (const name in options) if (name !== 'binary' && name !== 'compress') checkOptionNames(what, options, SEND_OPTION_NAMES, SEND_HINTS);
  }
  if (callback !== undefined && typeof callback !== 'function') throw new TypeError(`${what} callback must be a function, got ${typeof callback}`);
  return callback;
}

const SEND_OPTION_NAMES: ReadonlySet<string> = new Set(Object.keys({ binary: true, compress: true } as const satisfies Record<keyof SendOptions, true>));
const SEND_HINTS = {
  fin: 'stream a fragmented message with sendFragment(data, fin)',
  mask: 'clients mask every frame and servers never (RFC 6455 §5.1): remove the option',
};

/**
 * Splits `(data?, mask?, callback?)` as ws accepts it for ping/pong. `mask` may only state what the role implies
 * (clients mask every frame, servers never: RFC 6455 §5.1).
 */
export function controlArgs(
  what: string,
  role: 'server' | 'client',
  data: Payload | SendCallback | undefined,
  mask: boolean | SendCallback | undefined,
  callback: SendCallback | undefined,
): [Payload, SendCallback | undefined] {
  if (typeof data === 'function') {
    if (mask !== undefined || callback !== undefined) throw new TypeError(`${what}(callback) takes nothing after the callback`);
    return ['', data];
  }
  if (typeof mask === 'function') {
    if (callback !== undefined) throw new TypeError(`${what}(data, callback) takes nothing after the callback`);
    callback = mask;
    mask = undefined;
  }
  if (mask !== undefined) {
    if (typeof mask !== 'boolean') throw new TypeError(`${what} mask must be a boolean or omitted, got ${mask === null ? 'null' : typeof mask}`);
    if (mask !== (role === 'client')) {
      throw new RangeError(`a ${role} ${role === 'client' ? 'masks every frame' : 'never masks its frames'} (RFC 6455 §5.1): omit mask or pass ${role === 'client'}`);
    }
  }
  if (callback !== undefined && typeof callback !== 'function') throw new TypeError(`${what} callback must be a function, got ${typeof callback}`);
  return [data ?? '', callback];
}

