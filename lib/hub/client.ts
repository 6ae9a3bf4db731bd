/**
 * One connected client ({@link HubClient}) and its subscriptions: the per-connection state every part of the hub
 * reads (admission, the request queue, delivery, the registry). No behaviour beyond accessors lives here.
 *
 * @module
 */
import type { WebSocketConnection } from '../transport/connection.js';
import type { IncomingUpgrade } from '../transport/server.js';
import type { HubEnvelope } from './backplane.js';
import type { Principal } from './auth.js';
import type { Gap, PublishedMessage } from './history.js';
import { type Dialect, type ErrorCode, type HubRequest, serializeData } from './protocol.js';
import type { Deadline } from './timers.js';

/** A request the hub refuses: the client gets an error reply with this code. */
export class HubError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** One subscription of one client. */
export interface Subscription {
  readonly client: HubClient;
  /** The client's connection (the fan-out reads it without going through the client). */
  readonly connection: WebSocketConnection;
  readonly tenant: string;
  readonly topic: string;
  readonly key: string;
  readonly dialect: Dialect;
  readonly pattern: boolean;
  readonly presence: boolean;
  /**
   * Messages (and backplane gap reports) that arrived while the subscription was being set up or its resume was
   * being replayed; null once live.
   */
  buffer: Array<PublishedMessage | Gap> | null;
  /** Approximate bytes held in `buffer` (bounded by the connection's outbound budget). */
  bufferBytes: number;
  /**
   * For a wildcard subscription that reaches topics the client may not read (channel permissions): whether a topic
   * may reach it. Null for every other subscription.
   */
  filter: ((topic: string) => boolean) | null;
  /** Whether the subscription was cancelled while being set up. */
  cancelled: boolean;
}

/** @internal */
export const STATE_PENDING_AUTH = 0;
/** @internal */
export const STATE_OPEN = 1;
/** @internal */
export const STATE_CLOSED = 2;

/** @internal What a client needs of its hub: the one delivery path for `client.send`. */
export interface ClientOwner {
  deliverDirect(client: HubClient, envelope: HubEnvelope, frames: null): boolean;
}

/** @internal A resume replay in progress (see `Delivery.replay`). */
export interface Replay {
  readonly sub: Subscription;
  /** Messages and gap reports, in the order they are written. */
  readonly entries: ReadonlyArray<PublishedMessage | Gap>;
  index: number;
  /** Called once every entry was written (not when cancelled). */
  readonly done: () => void;
}

/** One connected client, as the application sees it. */
export class HubClient<Data = unknown> {
  /** Unique id (`<nodeId>.<n>`), for `hub.sendToConnection` and `hub.subscribe`. */
  readonly id: string;
  /** The engine connection. */
  readonly connection: WebSocketConnection;
  /** The negotiated subprotocol ('' when none). */
  readonly protocol: string;
  /** A free slot for the application's per-connection state. */
  data: Data | undefined = undefined;
  /** @internal */
  readonly hub: ClientOwner;
  /** @internal */
  principal: Principal | null = null;
  /** @internal */
  state = STATE_PENDING_AUTH;
  /** @internal */
  subs: Subscription[] | null = null;
  /** @internal last publication stamp delivered (once-per-client de-duplication). */
  stamp = 0;
  /** @internal */
  lastSeen: number;
  /** @internal */
  lastPing: number;
  /** @internal */
  tokens: number;
  /** @internal */
  refilledAt: number;
  /** @internal */
  strikes = 0;
  /** @internal auth deadline or token expiry */
  deadline: Deadline | null = null;
  /** @internal */
  kill: Deadline | null = null;
  /** @internal gaps recorded while dropping (policy `drop`), by tenant + topic. */
  gaps: Map<string, Gap & { dialect: Dialect }> | null = null;
  /** @internal the close code the hub sent. */
  closeCode = 0;
  /** @internal */
  registered: Promise<unknown> | null = null;
  /** @internal the upgrade request: while waiting for first-message auth, and for life when the resolver takes it. */
  request: IncomingUpgrade | undefined = undefined;
  /** @internal whether the connection counts in `pendingAuth`. */
  pendingCounted = false;
  /** @internal whether it gets the app-level ping (then only data messages count as signs of life). */
  appPing = false;
  /**
   * @internal the requests waiting behind one that is running asynchronously (null while none runs: a request then
   * starts at once).
   */
  queue: HubRequest[] | null = null;
  /** @internal resume replays in progress, oldest first (null when none). */
  replays: Replay[] | null = null;
  /** @internal whether a `drain` listener is armed (replays to continue, gaps to flush). */
  drainArmed = false;
  /**
   * @internal the connection's presence calls to the backplane (joins and leaves), one after the other: a leave
   * never overtakes its join, nor a new join the leave before it. Null when none is pending.
   */
  presence: Promise<void> | null = null;
  /** @internal whether messages were dropped for it since it last caught up (policy `drop`). */
  dropping = false;

  /** @internal */
  constructor(hub: ClientOwner, id: string, connection: WebSocketConnection, now: number, tokens: number) {
    this.hub = hub;
    this.id = id;
    this.connection = connection;
    this.protocol = connection.protocol;
    this.lastSeen = now;
    this.lastPing = now;
    this.tokens = tokens;
    this.refilledAt = now;
  }

  /** The user id ('' before first-message authentication). */
  get user(): string {
    return this.principal?.user ?? '';
  }

  /** The tenants this client may use (undefined: any). */
  get tenants(): readonly string[] | undefined {
    return this.principal?.tenants;
  }

  /** The verified claims (with the JWT resolver: the token's payload). */
  get claims(): Record<string, unknown> | undefined {
    return this.principal?.claims;
  }

  /** Whether the client is authenticated and open. */
  get open(): boolean {
    return this.state === STATE_OPEN;
  }

  /** The subscriptions, as `{ tenant, topic }`. */
  get subscriptions(): Array<{ tenant: string; topic: string }> {
    return this.subs === null ? [] : this.subs.map((s) => ({ tenant: s.tenant, topic: s.topic }));
  }

  /** The reply dialect for messages not tied to a subscription. */
  get dialect(): Dialect {
    return this.protocol === 'llps.v1' ? 'llps' : 'native';
  }

  /** Sends `{"type","data"}` to this client (subject to the slow-consumer policy). Returns false when not sent. */
  send(type: string, data: unknown = {}): boolean {
    checkType(type);
    return this.hub.deliverDirect(this, { type, data: serializeData(data) }, null);
  }

  /** Closes the connection (default 1000). */
  close(code = 1000, reason = ''): void {
    this.closeCode = code;
    this.connection.close(code, reason);
  }
}

/** @internal */
export function checkType(type: unknown): asserts type is string {
  if (typeof type !== 'string' || type.length === 0) throw new TypeError('message type must be a non-empty string');
}
