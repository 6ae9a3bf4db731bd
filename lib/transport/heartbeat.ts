/**
 * Heartbeat: protocol pings at an interval, and connections whose pong does not come within a timeout destroyed
 * (half-open TCP connections otherwise live for hours). Two timers for all connections — a ping sweep every
 * `interval` and one check `timeout` later — never one timer per connection.
 *
 * @module
 */
import type { WebSocketConnection } from './connection.js';

/** Defaults of {@link HeartbeatOptions}, in milliseconds. */
export const HEARTBEAT_DEFAULTS = {
  /** 30 s between pings. */
  interval: 30_000,
  /** 30 s for the pong to come back. */
  timeout: 30_000,
} as const;

/** Heartbeat timing. */
export interface HeartbeatOptions {
  /** Milliseconds between ping sweeps. Default: 30,000. */
  interval?: number;
  /** Milliseconds a connection has to answer a ping before it is destroyed. Default: 30,000. */
  timeout?: number;
}

/** Pings a set of connections and destroys those that stop answering. */
export class Heartbeat {
  readonly interval: number;
  readonly timeout: number;
  private readonly connections = new Set<WebSocketConnection>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private checkTimer: NodeJS.Timeout | null = null;

  constructor(options: HeartbeatOptions = {}) {
    this.interval = positive('heartbeat.interval', options.interval ?? HEARTBEAT_DEFAULTS.interval);
    this.timeout = positive('heartbeat.timeout', options.timeout ?? HEARTBEAT_DEFAULTS.timeout);
  }

  /** Starts watching a connection. */
  add(connection: WebSocketConnection): void {
    this.connections.add(connection);
    if (this.sweepTimer === null) {
      this.sweepTimer = setInterval(() => this.sweep(), this.interval);
      this.sweepTimer.unref();
    }
  }

  /** Stops watching a connection (called when it closes). */
  delete(connection: WebSocketConnection): void {
    this.connections.delete(connection);
    if (this.connections.size === 0) this.stop();
  }

  /** Number of connections watched. */
  get size(): number {
    return this.connections.size;
  }

  /** Stops both timers. */
  stop(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    if (this.checkTimer !== null) clearTimeout(this.checkTimer);
    this.sweepTimer = null;
    this.checkTimer = null;
  }

  private sweep(): void {
    // Connections still waiting from the previous sweep are dead when the timeout is not shorter than the interval.
    if (this.timeout >= this.interval) this.check();
    for (const c of this.connections) {
      if (c.readyState !== 1) continue;
      c.pingPending = true;
      c.ping();
    }
    if (this.timeout < this.interval) {
      if (this.checkTimer !== null) clearTimeout(this.checkTimer);
      this.checkTimer = setTimeout(() => this.check(), this.timeout);
      this.checkTimer.unref();
    }
  }

  private check(): void {
    this.checkTimer = null;
    for (const c of this.connections) if (c.pingPending) c.terminate();
  }
}

function positive(name: string, value: number): number {
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`${name} must be a positive number of milliseconds, got ${String(value)}`);
  }
  return value;
}
