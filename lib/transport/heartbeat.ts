/**
 * Heartbeat: pings at an interval, and connections from which nothing came back within a timeout are terminated
 * or closed (half-open TCP connections otherwise live for hours). Two timers for all connections — a ping sweep
 * every `interval` and one check armed for the earliest deadline — never one timer per connection.
 *
 * The heartbeat owns its state: which connections answered is kept in the heartbeat, not on the connection. A
 * protocol pong marks a connection alive; so does {@link Heartbeat.alive} (for an application-level pong), and,
 * with `anyMessage`, any message from the peer.
 *
 * @module
 */
import { checkOptionNames } from '../core/options.js';
import { validateClose } from '../core/protocol.js';
import type { WebSocketConnection } from './connection.js';

/** Defaults of {@link HeartbeatOptions}, in milliseconds. */
export const HEARTBEAT_DEFAULTS = {
  /** 30 s between pings. */
  interval: 30_000,
  /** 30 s for an answer to come back. */
  timeout: 30_000,
} as const;

/** Heartbeat timing and hooks. */
export interface HeartbeatOptions<Data = unknown, Principal = unknown> {
  /** Milliseconds between ping sweeps. Default: 30,000. */
  interval?: number;
  /**
   * Milliseconds a connection has, from the first ping it left unanswered, to show life (a pong, {@link
   * Heartbeat.alive}, or with `anyMessage` any message). May be longer than `interval`: with `interval: 30_000,
   * timeout: 60_000` a connection gets two pings before it is given up. Default: 30,000.
   */
  timeout?: number;
  /** Send a protocol ping at each sweep. Turn it off when `onPing` sends an application-level ping instead. Default: true. */
  protocolPing?: boolean;
  /**
   * Called at each sweep for every open connection, after the protocol ping (when on): send an application-level
   * ping here (`conn.send(JSON.stringify({ type: 'ping' }))`) and call {@link Heartbeat.alive} when its answer comes.
   * Default: none.
   */
  onPing?(connection: WebSocketConnection<Data, Principal>): void;
  /**
   * Called once for a connection that showed no life within `timeout`; it is no longer watched afterwards.
   * Default: `closeCode` given → `connection.close(closeCode, closeReason)` (a closing handshake the peer can read;
   * the connection's `closeTimeout` destroys it if the peer never answers); otherwise `connection.terminate()` (the
   * peer sees 1006). Give either `onTimeout` or `closeCode`, not both.
   */
  onTimeout?(connection: WebSocketConnection<Data, Principal>): void;
  /** Close code sent to a connection that timed out, e.g. 4408 (1000, 1001–1003, 1007–1014, 3000–4999). Default: none (terminate). */
  closeCode?: number;
  /** Close reason with `closeCode` (at most 123 UTF-8 bytes). Default: ''. */
  closeReason?: string;
  /** Count any message from the peer as a sign of life, not only pongs. Default: false. */
  anyMessage?: boolean;
}

type Conn<D, P> = WebSocketConnection<D, P>;

const HEARTBEAT_OPTION_NAMES: ReadonlySet<string> = new Set(
  Object.keys({
    interval: true,
    timeout: true,
    protocolPing: true,
    onPing: true,
    onTimeout: true,
    closeCode: true,
    closeReason: true,
    anyMessage: true,
  } as const satisfies Record<keyof HeartbeatOptions, true>),
);

const HEARTBEAT_HINTS = {
  pingInterval: 'use interval (milliseconds between pings)',
  pingTimeout: 'use timeout (milliseconds to answer)',
};

/**
 * Pings a set of connections and gives up on those that stop answering. A server makes one for its connections
 * (`heartbeat` option, exposed as `server.heartbeat`); make your own to watch client connections with hooks.
 */
export class Heartbeat<Data = unknown, Principal = unknown> {
  /** Milliseconds between sweeps. */
  readonly interval: number;
  /** Milliseconds to show life after the first unanswered ping. */
  readonly timeout: number;
  private readonly protocolPing: boolean;
  private readonly onPing: ((connection: Conn<Data, Principal>) => void) | undefined;
  private readonly onTimeout: (connection: Conn<Data, Principal>) => void;
  private readonly anyMessage: boolean;
  /** Watched connections → the number of the sweep whose ping is the oldest unanswered (0: none pending). */
  private readonly pending = new Map<Conn<Data, Principal>, number>();
  private sweeps = 0;
  /** Sweeps whose deadline has not been checked yet, oldest first, with their deadlines. */
  private readonly deadlines: Array<{ sweep: number; at: number }> = [];
  private sweepTimer: NodeJS.Timeout | null = null;
  private checkTimer: NodeJS.Timeout | null = null;
  /** One listener shared by every watched connection (`this` is the connection). */
  private readonly onLife: (this: Conn<Data, Principal>) => void;

  constructor(options: HeartbeatOptions<Data, Principal> = {}) {
    if (typeof options !== 'object' || options === null) throw new TypeError('heartbeat options must be an object (or false to disable it)');
    checkOptionNames('heartbeat', options, HEARTBEAT_OPTION_NAMES, HEARTBEAT_HINTS);
    this.interval = positive('heartbeat.interval', options.interval ?? HEARTBEAT_DEFAULTS.interval);
    this.timeout = positive('heartbeat.timeout', options.timeout ?? HEARTBEAT_DEFAULTS.timeout);
    for (const name of ['onPing', 'onTimeout'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'function') throw new TypeError(`heartbeat.${name} must be a function`);
    }
    this.protocolPing = options.protocolPing !== false;
    this.anyMessage = options.anyMessage === true;
    this.onPing = options.onPing;
    if (options.onTimeout !== undefined && options.closeCode !== undefined) {
      throw new TypeError('heartbeat: give onTimeout or closeCode, not both (close from your onTimeout instead)');
    }
    if (options.closeCode !== undefined) {
      const { closeCode: code, closeReason: reason = '' } = options;
      validateClose(code, reason);
      this.onTimeout = (c) => c.close(code, reason);
    } else {
      if (options.closeReason !== undefined) throw new TypeError('heartbeat.closeReason needs a closeCode');
      this.onTimeout = options.onTimeout ?? ((c) => c.terminate());
    }
    if (!this.protocolPing && this.onPing === undefined) {
      throw new TypeError('heartbeat: with protocolPing false, give onPing to send your own ping (or disable the heartbeat)');
    }
    const heartbeat = this;
    this.onLife = function (this: Conn<Data, Principal>) {
      heartbeat.alive(this);
    };
  }

  /** Starts watching a connection. */
  add(connection: Conn<Data, Principal>): void {
    if (this.pending.has(connection)) return;
    this.pending.set(connection, 0);
    connection.on('pong', this.onLife);
    if (this.anyMessage) connection.on('message', this.onLife);
    if (this.sweepTimer === null) {
      this.sweepTimer = setInterval(() => this.sweep(), this.interval);
      this.sweepTimer.unref();
    }
  }

  /** Stops watching a connection (the server calls it when the connection closes). */
  delete(connection: Conn<Data, Principal>): void {
    if (!this.pending.delete(connection)) return;
    connection.off('pong', this.onLife);
    if (this.anyMessage) connection.off('message', this.onLife);
    if (this.pending.size === 0) this.stop();
  }

  /** Marks a connection alive: its unanswered pings are forgotten. Call it when an application-level pong comes. */
  alive(connection: Conn<Data, Principal>): void {
    if (this.pending.get(connection)) this.pending.set(connection, 0);
  }

  /** Whether a connection is watched. */
  has(connection: Conn<Data, Principal>): boolean {
    return this.pending.has(connection);
  }

  /** Number of connections watched. */
  get size(): number {
    return this.pending.size;
  }

  /** Stops both timers (they start again with the next `add`). */
  stop(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    if (this.checkTimer !== null) clearTimeout(this.checkTimer);
    this.sweepTimer = null;
    this.checkTimer = null;
    this.deadlines.length = 0;
  }

  private sweep(): void {
    const sweep = ++this.sweeps;
    let pinged = false;
    for (const [c, since] of this.pending) {
      if (c.readyState !== 1) continue;
      if (since === 0) this.pending.set(c, sweep);
      pinged = true;
      try {
        if (this.protocolPing) c.ping();
        this.onPing?.(c);
      } catch (error) {
        // A hook's failure must not stop the sweep for every other connection.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    if (!pinged) return;
    this.deadlines.push({ sweep, at: Date.now() + this.timeout });
    if (this.checkTimer === null) this.armCheck();
  }

  private armCheck(): void {
    const next = this.deadlines[0];
    this.checkTimer = setTimeout(() => this.check(), Math.max(0, next.at - Date.now()));
    this.checkTimer.unref();
  }

  /** The deadline of the oldest sweep is due: connections still waiting since that sweep (or before) are given up. */
  private check(): void {
    this.checkTimer = null;
    const due = this.deadlines.shift();
    if (due === undefined) return;
    const dead: Array<Conn<Data, Principal>> = [];
    for (const [c, since] of this.pending) if (since !== 0 && since <= due.sweep) dead.push(c);
    for (const c of dead) {
      this.delete(c);
      try {
        this.onTimeout(c);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    if (this.deadlines.length > 0 && this.checkTimer === null) this.armCheck();
  }
}

function positive(name: string, value: number): number {
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`${name} must be a positive number of milliseconds, got ${String(value)}`);
  }
  return value;
}
