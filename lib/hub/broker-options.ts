/**
 * The options every broker backplane accepts and their defaults, the view of a topic's stream that the resume rules
 * read ({@link TopicView}, {@link resumeView}), and {@link withTimeout}. Split from broker.ts, which re-exports it.
 *
 * Internal to the hub, not a package entry point. Not tagged internal here: in a file's first comment the tag
 * attaches to the first statement, which `stripInternal` then drops from the declarations.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { HeldMessage } from './broker-wire.js';
import type { ResumeView } from './resume-rules.js';

/** Defaults shared by the broker backplanes. */
export const BROKER_DEFAULTS = {
  /** Messages kept per topic in the broker's stream. */
  historySize: 100,
  /** Milliseconds a message stays resumable. */
  historyTtl: 300_000,
  /** Milliseconds a broker call may take before it is failed (the hub then answers the client with an error). */
  timeout: 5_000,
  /** Milliseconds between a node's liveness heartbeats. */
  heartbeat: 5_000,
  /** A node that sent no heartbeat for this long (ms) is dead: its connections and presence no longer count. */
  nodeTtl: 15_000,
  /** Topics whose last delivered position a node remembers for de-duplication and gap filling. */
  maxTracked: 100_000,
} as const;

/** Options every broker backplane accepts. */
export interface BrokerBackplaneOptions {
  /**
   * Prefix of every key, channel, subject and stream the adapter uses, so that several deployments (or test runs)
   * share one broker without seeing each other. Default: `'wsengine'`. Letters, digits, `_` and `-` only.
   */
  prefix?: string;
  /** This node's id (the start of its connection ids). Default: 6 random bytes, base64url. */
  nodeId?: string;
  /** Messages kept per topic on the broker for resume. Default: 100. */
  historySize?: number;
  /** Milliseconds a message stays resumable. Default: 300,000 (5 min). */
  historyTtl?: number;
  /** Milliseconds before a broker call is failed. Default: 5,000. */
  timeout?: number;
  /** Milliseconds between liveness heartbeats of this node. Default: 5,000. */
  heartbeat?: number;
  /** Milliseconds without a heartbeat after which a node counts as dead. Default: 15,000 (3 heartbeats). */
  nodeTtl?: number;
  /** Called with every broker error the adapter survives (connection loss, failed resynchronisation). Default: none. */
  onError?: (error: Error) => void;
}

/** A topic's stream as the broker holds it (what {@link BrokerBackplane.loadView} reads). */
export interface TopicView {
  epoch: string;
  /** Last sequence number assigned in the epoch. */
  seq: number;
  /** Tenant offset of the last message. */
  lastOffset: number;
  /** Tenant offset just before the epoch's first message. */
  startOffset: number;
  /** Messages still held, oldest first, each with the tenant offset of the message before it in this topic. */
  held: HeldMessage[];
}

/**
 * A {@link TopicView} as the resume rules read it. The broker drops a topic's oldest messages first, so what was
 * dropped ends right before the oldest held message (its seq - 1, and its predecessor's offset `prev`), or, with
 * nothing held, at the epoch's last message.
 */
export function resumeView(view: TopicView): ResumeView {
  const first = view.held.length > 0 ? view.held[0] : undefined;
  return {
    epoch: view.epoch,
    seq: view.seq,
    droppedSeq: first !== undefined ? first.message.seq - 1 : view.seq,
    droppedOffset: first !== undefined ? first.prev : view.lastOffset,
    startOffset: view.startOffset,
    held: () => view.held.map((h) => h.message),
  };
}

const PREFIX_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** Checks the common options; throws TypeError/RangeError saying what to do. */
export function checkBrokerOptions(options: BrokerBackplaneOptions): Required<Omit<BrokerBackplaneOptions, 'onError'>> & Pick<BrokerBackplaneOptions, 'onError'> {
  if (options === null || typeof options !== 'object') throw new TypeError('backplane options must be an object');
  const prefix = options.prefix ?? 'wsengine';
  if (typeof prefix !== 'string' || !PREFIX_RE.test(prefix)) throw new TypeError(`prefix must be 1–64 letters, digits, "_" or "-", got ${JSON.stringify(prefix)}`);
  const nodeId = options.nodeId ?? randomBytes(6).toString('base64url');
  if (typeof nodeId !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(nodeId)) throw new TypeError(`nodeId must be 1–64 letters, digits, "_" or "-", got ${JSON.stringify(nodeId)}`);
  const num = (name: string, v: number | undefined, d: number, min: number): number => {
    const x = v ?? d;
    if (typeof x !== 'number' || !Number.isFinite(x) || x < min) throw new RangeError(`${name} must be a finite number ≥ ${min}, got ${String(x)}`);
    return Math.floor(x);
  };
  if (options.onError !== undefined && typeof options.onError !== 'function') throw new TypeError('onError must be a function');
  const heartbeat = num('heartbeat', options.heartbeat, BROKER_DEFAULTS.heartbeat, 100);
  return {
    prefix,
    nodeId,
    historySize: num('historySize', options.historySize, BROKER_DEFAULTS.historySize, 0),
    historyTtl: num('historyTtl', options.historyTtl, BROKER_DEFAULTS.historyTtl, 1),
    timeout: num('timeout', options.timeout, BROKER_DEFAULTS.timeout, 1),
    heartbeat,
    nodeTtl: num('nodeTtl', options.nodeTtl, Math.max(BROKER_DEFAULTS.nodeTtl, heartbeat * 3), heartbeat * 2),
    onError: options.onError,
  };
}

/** Rejects with a clear error when `promise` has not settled within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: the broker did not answer within ${ms} ms`)), ms);
    timer.unref?.();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
