/**
 * The options of {@link Protocol}: their names, defaults and checks, and the frozen settings object they resolve to,
 * shared by every protocol made with the same values (a connection holds one pointer, not a field per option).
 *
 * @module
 */
import { type MaskSource, randomMask } from './mask.js';

/** Connection states, numbered as the WHATWG `WebSocket.readyState`. */
export const ReadyState = {
  CONNECTING: 0,
  OPEN: 1,
  CLOSING: 2,
  CLOSED: 3,
} as const;

/** Defaults of {@link ProtocolOptions}. */
export const PROTOCOL_DEFAULTS = {
  /** 64 MiB. */
  maxMessageSize: 64 * 1024 * 1024,
  /** 16 bytes charged per fragment after a message's first. */
  fragmentOverhead: 16,
} as const;

/** Options of {@link Protocol}. */
export interface ProtocolOptions {
  /** `'server'` expects masked frames and sends unmasked ones; `'client'` the reverse (RFC 6455 §5.1). */
  role: 'server' | 'client';
  /**
   * Largest message accepted, in bytes, counting each fragment after the first as `fragmentOverhead` more bytes.
   * A message over it closes the connection with 1009 as soon as the header that crosses it arrives.
   * Default: 64 MiB (67,108,864).
   */
  maxMessageSize?: number;
  /** Largest single frame payload accepted, in bytes; 1009 above it. Default: `maxMessageSize`. */
  maxFrameSize?: number;
  /** Bytes charged per fragment after the first toward `maxMessageSize`, for the cost of holding a part. Default: 16. */
  fragmentOverhead?: number;
  /** An extension that uses RSV1 (permessage-deflate) was negotiated. Default: false. */
  rsv1?: boolean;
  /** Answer pings with pongs automatically. Default: true. */
  autoPong?: boolean;
  /** Reject non-minimal length encodings with 1002. Default: false (accept them, as most peers do). */
  strictLengths?: boolean;
  /** Where client masking keys come from. Default: {@link randomMask} (CSPRNG pool). Inject one only in tests. */
  maskSource?: MaskSource;
}

/** The names of {@link ProtocolOptions}, for `checkOptionNames`. */
export const PROTOCOL_OPTION_NAMES: ReadonlySet<string> = new Set(
  Object.keys({
    role: true,
    maxMessageSize: true,
    maxFrameSize: true,
    fragmentOverhead: true,
    rsv1: true,
    autoPong: true,
    strictLengths: true,
    maskSource: true,
  } as const satisfies Record<keyof ProtocolOptions, true>),
);


/** The option values of a protocol: one frozen object shared by every protocol made with the same values. */
export interface ProtocolSettings {
  readonly role: 'server' | 'client';
  readonly maxMessageSize: number;
  readonly maxFrameSize: number;
  readonly fragmentOverhead: number;
  readonly rsv1: boolean;
  readonly autoPong: boolean;
  readonly strictLengths: boolean;
  readonly mask: MaskSource | null;
}

const settingsCache = new Map<string, ProtocolSettings>();
/** Distinct option sets kept for sharing; past it, protocols get their own object. */
const SETTINGS_KEPT = 64;

/** Checks `options` and returns their settings: a shared frozen object when no `maskSource` is injected. */
export function settingsOf(options: ProtocolOptions): ProtocolSettings {
  if (options.role !== 'server' && options.role !== 'client') {
    throw new TypeError(`options.role must be 'server' or 'client', got ${String(options.role)}`);
  }
  if (options.maskSource !== undefined && typeof options.maskSource !== 'function') {
    throw new TypeError('options.maskSource must be a function (target, offset) => void');
  }
  const role = options.role;
  const maxMessageSize = sizeOption('maxMessageSize', options.maxMessageSize, PROTOCOL_DEFAULTS.maxMessageSize);
  const maxFrameSize = sizeOption('maxFrameSize', options.maxFrameSize, maxMessageSize);
  const fragmentOverhead = sizeOption('fragmentOverhead', options.fragmentOverhead, PROTOCOL_DEFAULTS.fragmentOverhead);
  const rsv1 = options.rsv1 === true;
  const autoPong = options.autoPong !== false;
  const strictLengths = options.strictLengths === true;
  const shared = options.maskSource === undefined;
  const key = `${role}/${maxMessageSize}/${maxFrameSize}/${fragmentOverhead}/${rsv1 ? 1 : 0}${autoPong ? 1 : 0}${strictLengths ? 1 : 0}`;
  let settings = shared ? settingsCache.get(key) : undefined;
  if (settings === undefined) {
    const mask = role === 'client' ? (options.maskSource ?? randomMask) : null;
    settings = Object.freeze({ role, maxMessageSize, maxFrameSize, fragmentOverhead, rsv1, autoPong, strictLengths, mask });
    if (shared && settingsCache.size < SETTINGS_KEPT) settingsCache.set(key, settings);
  }
  return settings;
}

function sizeOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new RangeError(`options.${name} must be a non-negative integer number of bytes, got ${String(value)}`);
  }
  return value;
}
