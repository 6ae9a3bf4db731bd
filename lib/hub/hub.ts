/**
 * The pub/sub hub: topics with `*`/`#` wildcards, tenants, delivery to topics, users, connections and everyone,
 * authentication at the handshake or by first message, authorization hooks, heartbeats, limits, sequence
 * numbers with bounded history and exact resume, presence, graceful shutdown. Built on the engine's server; the
 * state shared between hubs goes through a {@link Backplane} ({@link MemoryBackplane} by default).
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { type PreparedMessage, prepare } from '../transport/prepared.js';
import { type AuthRejection, createServer, type IncomingUpgrade, type ServerOptions, type WebSocketServer } from '../transport/server.js';
import type { WebSocketConnection } from '../transport/connection.js';
import { extractToken, HUB_SUBPROTOCOLS, type Principal, resolveTokenOptions, selectHubProtocol, TicketStore, type TokenExtractOptions, type TokenResolver, type TokenSource } from './auth.js';
import { type Backplane, type BackplaneSink, type DisconnectTarget, type HubEnvelope, MemoryBackplane, type PresenceEvent, type PresenceSnapshot, type ResumeAnswer } from './backplane.js';
import { type Gap, type HistoryOptions, type PatternSince, type PublishedMessage, type StreamPosition } from './history.js';
import { jwtResolver, type JwtResolverOptions } from './jwt.js';
import {
  APP_PING,
  type Dialect,
  encodeAck,
  encodeDirect,
  encodeError,
  encodeGap,
  encodeTopicMessage,
  type ErrorCode,
  type HubRequest,
  parseRequest,
  type RequestId,
  serializeData,
} from './protocol.js';
import { TimerQueue, type Deadline } from './timers.js';
import { checkTopic, isPattern, matches, normalizePattern, TopicTrie } from './topics.js';

/** Defaults of {@link HubLimits}. */
export const HUB_LIMIT_DEFAULTS = {
  /** 64 KiB per inbound message (close 1009 above), as seed 001. */
  maxMessageSize: 64 * 1024,
  /** 5 open connections per user; a 6th closes the user's oldest with 4429. */
  maxConnectionsPerUser: 5,
  /** 100 inbound messages per second per connection (token bucket refilled at 100 per 1,000 ms), bursts of up to 100. */
  rate: { messages: 100, interval: 1000, burst: 100 },
  /** 20 rate-limited messages in a row close the connection with 4429. */
  maxRateViolations: 20,
  /** 100 subscriptions per connection. */
  maxSubscriptions: 100,
  /** 256 characters per topic name or pattern. */
  maxTopicLength: 256,
  /** 32 dot-separated segments per topic. */
  maxTopicSegments: 32,
  /** 1 MiB of unsent data per connection before the slow-consumer policy applies. */
  maxBufferedBytes: 1024 * 1024,
  /** Slow consumers are disconnected (1008) by default. */
  slowConsumer: 'disconnect' as SlowConsumerPolicy,
  /** 5 s to send `{"type":"auth","token"}` when the handshake carried no token. */
  authDeadline: 5_000,
  /** 1,000 topics in one wildcard resume request's `since.positions`. */
  maxResumePositions: 1_000,
} as const;

/** Defaults of {@link HubHeartbeatOptions}. */
export const HUB_HEARTBEAT_DEFAULTS = {
  /** 30 s between pings (app-level `{"type":"ping"}` and protocol ping), as seed 001. */
  interval: 30_000,
  /** 60 s without anything from the client closes it with 4408, as seed 001. */
  timeout: 60_000,
} as const;

/** Close codes the hub sends. */
export const HUB_CLOSE_CODES = {
  /** Normal closure (`client.close()`, `disconnectUser` default). */
  NORMAL: 1000,
  /** Hub shutting down. */
  GOING_AWAY: 1001,
  /** Slow consumer (policy `disconnect`). */
  POLICY: 1008,
  /** Message over `maxMessageSize` (sent by the engine). */
  TOO_BIG: 1009,
  /** Hub restarting (`close({ code: 1012 })`). */
  RESTART: 1012,
  /**
   * Try again later: the backplane could not register the connection (broker unreachable or timing out), so the
   * per-user connection limit could not be enforced for it. The hub client reconnects with backoff.
   */
  TRY_AGAIN: 1013,
  /** Missing, refused or expired token; first-message auth deadline passed. */
  UNAUTHORIZED: 4401,
  /** Heartbeat timeout: nothing came back within `heartbeat.timeout`. */
  HEARTBEAT_TIMEOUT: 4408,
  /** Over the per-user connection limit (the oldest is closed), or repeated rate limiting. */
  TOO_MANY: 4429,
} as const;

/** What to do with a connection whose unsent data exceeds `maxBufferedBytes`. */
export type SlowConsumerPolicy = 'disconnect' | 'drop';

/** Limits and policies; every field has a documented default ({@link HUB_LIMIT_DEFAULTS}). */
export interface HubLimits {
  /** Largest inbound message in bytes; bigger ones close the connection with 1009. Default: 65,536. */
  maxMessageSize?: number;
  /** Open connections per user (cluster-wide with a shared backplane); the oldest is closed with 4429. Default: 5. */
  maxConnectionsPerUser?: number;
  /**
   * Inbound rate per connection, a token bucket: `messages` tokens are added every `interval` ms, up to `burst`
   * (default: `messages`); each message takes one, a message finding none gets a `rate_limited` error. A new
   * connection starts with a full bucket. `false`: no limit. Default: 100 per 1,000 ms, burst 100.
   */
  rate?: HubRate | false;
  /** Consecutive rate-limited messages after which the connection is closed with 4429. Default: 20. */
  maxRateViolations?: number;
  /** Subscriptions per connection; more get `subscription_failed`. Default: 100. */
  maxSubscriptions?: number;
  /** Longest topic name or pattern, in characters. Default: 256. */
  maxTopicLength?: number;
  /** Most segments in a topic name or pattern. Default: 32. */
  maxTopicSegments?: number;
  /** Unsent bytes per connection above which the slow-consumer policy applies. Default: 1 MiB. */
  maxBufferedBytes?: number;
  /**
   * `disconnect` (default): close the connection with 1008 and destroy it 1 s later. `drop`: skip messages for it
   * and, once it catches up, send `{"type":"gap","data":{topic, tenant, epoch, from, to}}` per topic with the exact
   * sequence numbers it missed (it can fetch them with a `history` request while they are held). The same frame
   * reports messages a backplane lost ({@link BackplaneSink.gap}).
   */
  slowConsumer?: SlowConsumerPolicy;
  /** Milliseconds to send a first-message `auth` when the handshake carried no token; then 4401. Default: 5,000. */
  authDeadline?: number;
  /** Topics in one wildcard resume's `since.positions`. Default: 1,000. */
  maxResumePositions?: number;
}

/** The inbound token bucket of {@link HubLimits.rate}. */
export interface HubRate {
  /** Tokens added per `interval`. */
  messages: number;
  /** Milliseconds over which `messages` tokens are added. */
  interval: number;
  /** Bucket size: the most messages accepted back to back after a quiet period. Default: `messages`. */
  burst?: number;
}

/** Why the hub refused a handshake or closed a connection on a policy ({@link HubEvents.refused}). */
export type HubRefusalReason = 'token' | 'ticket' | 'auth_deadline' | 'origin' | 'connection_limit' | 'rate_limit';

/** What the `refused` event carries. Never the token. */
export interface HubRefusal {
  /**
   * `token`: the resolver refused the token (handshake: close 4401; first-message `auth`: close 4401);
   * `ticket`: an unknown, expired or already used `?ticket=` (4401); `auth_deadline`: no first-message `auth`
   * in time (4401); `origin`: `Origin` not in `origins` (HTTP 403); `connection_limit`: the user's oldest connection
   * (`connectionId`) is closed with 4429 for this new one; `rate_limit`: closed with 4429 after repeated rate limiting.
   */
  reason: HubRefusalReason;
  /**
   * The upgrade request concerned, as received: a token sent in its query or headers is in it, so redact before
   * logging it. For `connection_limit`, the new connection's; for `rate_limit`, present only when the hub keeps
   * requests (see {@link HubOptions.authenticate}).
   */
  request: IncomingUpgrade | undefined;
  /** The HTTP status (403) or close code (4401, 4429) sent. */
  code: number;
  /** The connection closed, when there was one. */
  connectionId?: string;
  /** The user, when known. */
  user?: string;
}

/** Heartbeat timing: one shared timer for all connections. */
export interface HubHeartbeatOptions {
  /** Milliseconds between pings. Default: 30,000. */
  interval?: number;
  /**
   * Milliseconds after the last thing received from a client (any message, `pong` envelope or protocol pong) after
   * which it is closed with 4408 and destroyed 1 s later. Default: 60,000.
   */
  timeout?: number;
  /**
   * Which connections get the app-level `{"type":"ping","data":{},"request_id":null}`: `native` (default: all but
   * those that negotiated the `llps.v1` subprotocol), `all`, or `none` (protocol pings only).
   */
  appPing?: 'native' | 'all' | 'none';
}

/** What an authorization hook is asked about. */
export interface AuthorizationRequest {
  client: HubClient;
  tenant: string;
  /** The topic name or pattern (wildcards included). */
  topic: string;
}

/** Authorization hooks: return (or resolve) false to refuse; the client gets an `unauthorized` error reply. */
export interface HubAuthorize {
  /** May this client subscribe? Default: yes, within the principal's tenants. */
  subscribe?: (request: AuthorizationRequest) => boolean | Promise<boolean>;
  /** May this client publish? Default: yes, within the principal's tenants (`clientPublish: false` refuses all). */
  publish?: (request: AuthorizationRequest) => boolean | Promise<boolean>;
}

/** Options of {@link createHub}. */
export interface HubOptions {
  /**
   * Token → principal (sync or async; `null` refuses with 4401). Default: the JWT resolver when `jwt` is given;
   * with neither, connections are anonymous (each its own user, `anonymous:<connection id>`). It is called with the
   * connection's upgrade request as second argument for handshake tokens, first-message `auth` and `refresh`. A
   * resolver declared with two parameters `(token, request)` makes the hub keep each connection's request for its
   * lifetime (for `refresh`); one declared with one parameter does not (less memory per connection).
   */
  authenticate?: TokenResolver;
  /** Verify tokens as JWTs with the built-in verifier (`user` = `sub`, `tenants` claim, `exp`). */
  jwt?: JwtResolverOptions;
  /** Where tokens are looked for, first found wins. Default: header, subprotocol, ticket, query, cookie. */
  tokenOrder?: readonly TokenSource[];
  /** Query parameter / cookie names for tokens and tickets. Default: `token`, `ticket`, cookie `token`. */
  tokenNames?: Omit<TokenExtractOptions, 'order'>;
  /** Authorization hooks. */
  authorize?: HubAuthorize;
  /** Whether clients may publish at all. Default: true (subject to `authorize.publish` and tenants). */
  clientPublish?: boolean;
  /** Heartbeat timing, or false for none. Default: ping every 30 s, 4408 after 60 s of silence. */
  heartbeat?: HubHeartbeatOptions | false;
  /** Limits and policies. */
  limits?: HubLimits;
  /** History per topic (count and age) of the default {@link MemoryBackplane}. Default: 100 messages, 5 min. */
  history?: HistoryOptions;
  /** Shared state between hubs. Default: a new {@link MemoryBackplane} (single process). */
  backplane?: Backplane;
  /** Allowed `Origin` values; others, and requests without one, get 403. Default: any origin. */
  origins?: readonly string[];
  /** Accept upgrades only on this path (404 otherwise). Default: any path. */
  path?: string;
  /** Subprotocol names besides `llps.v1` and `bearer` the hub may echo. Default: none. */
  protocols?: readonly string[];
  /** One-time tickets (`?ticket=`): their lifetime in ms. Default: 60,000. */
  ticketTtl?: number;
  /** Engine options (TLS, permessage-deflate, handshake timeout, …). `heartbeat`, `authenticate` and `selectProtocol` are the hub's. */
  server?: Omit<ServerOptions, 'heartbeat' | 'authenticate' | 'selectProtocol' | 'origins' | 'path' | 'port'>;
  /** Frame topic messages compressed once as well, for clients that negotiated permessage-deflate without context takeover. Default: false. */
  compress?: boolean;
}

/** A message handed to the application (`hub.on('message', …)`). */
export interface ClientMessage {
  type: string;
  data: unknown;
  requestId: RequestId | undefined;
  /** The whole envelope as received. */
  envelope: Record<string, unknown>;
}

/** What a subscription's acknowledgement carries. */
export interface SubscribeResult {
  topic: string;
  tenant: string;
  /** Exact topics: the epoch and last sequence number at the time the subscription went live. */
  epoch?: string;
  seq?: number;
  /** Wildcard subscriptions: the tenant stream offset to resume from (see README "History and resume"). */
  offset?: number;
  /**
   * Wildcard subscriptions: the epoch of `offset`, to send back with it (`since.offsetEpoch`); when the hub's
   * offsets restarted meanwhile, the resume replays everything held for the matching topics.
   */
  offsetEpoch?: string;
  /** True when everything missed since `since` was replayed (always true without `since`). */
  recovered: boolean;
  /** Ranges that could not be replayed. */
  gaps?: Gap[];
  /** Messages replayed before live delivery. */
  replayed: number;
}

/** A metrics snapshot ({@link Hub.stats}). Counters count since the hub was created. */
export interface HubStats {
  /** Open connections (authenticated or waiting for first-message auth). */
  connections: number;
  /** Connections waiting for first-message auth. */
  pendingAuth: number;
  /** Distinct users with an open connection on this hub. */
  users: number;
  /** Subscriptions of all connections. */
  subscriptions: number;
  /** Distinct (tenant, pattern) entries in the local tries. */
  patterns: number;
  /** Connections accepted since start. */
  connectionsTotal: number;
  /** Inbound messages. */
  messagesIn: number;
  /** Frames sent by the hub (replies, deliveries, pings). */
  messagesOut: number;
  /** Topic messages published (through this hub). */
  publishes: number;
  /** Topic, user, connection and broadcast messages delivered to sockets. */
  deliveries: number;
  /** Messages dropped for slow consumers (policy `drop`). */
  drops: number;
  /**
   * `gap` reports sent to clients: slow-consumer drops, ranges a resume could not replay, and losses the backplane
   * reported ({@link BackplaneSink.gap}), one per recipient connection.
   */
  gapReports: number;
  /** Connections closed as slow consumers (policy `disconnect`). */
  slowConsumerDisconnects: number;
  /** Messages refused by the rate limiter. */
  rateLimited: number;
  /** Refused tokens and missed auth deadlines. */
  authFailures: number;
  /** Error replies sent, by code. */
  errors: Record<string, number>;
  /** Closed connections by close code (the hub's code when it closed, else the peer's). */
  closeCodes: Record<string, number>;
  /** Pending deadlines in the shared timer (auth deadlines, token expiries, kills). */
  deadlines: number;
  /** Whether the shared heartbeat timer runs (only while connections are open). */
  heartbeatRunning: boolean;
}

/** Options of {@link Hub.close}. */
export interface HubCloseOptions {
  /** 1001 going away (default) or 1012 service restart. */
  code?: 1001 | 1012;
  /** Close reason. Default: 'server shutting down' / 'server restarting'. */
  reason?: string;
  /** Milliseconds to wait for closing handshakes before destroying what is left. Default: 5,000. */
  timeout?: number;
}

/** A message for users, connections or everyone: its type and JSON-serializable data. */
export interface OutgoingMessage {
  type: string;
  data?: unknown;
}

/** A message to publish on a topic. */
export interface PublishMessage extends OutgoingMessage {
  topic: string;
  /** Default: `default`. */
  tenant?: string;
}

/** Events of a {@link Hub}. */
export interface HubEvents {
  /** A client is connected and authenticated (after the first-message auth, for those). */
  connection: (client: HubClient, request: IncomingUpgrade | undefined) => void;
  /** A client's connection closed (every path); its subscriptions and counters are already released. */
  disconnect: (client: HubClient, code: number, reason: string) => void;
  /**
   * An application message (a `type` the hub does not handle itself). Listeners may return a promise: the ack
   * (when the message has a `request_id`) waits for it; a throw or rejection answers `internal_error`.
   */
  message: (client: HubClient, message: ClientMessage) => unknown;
  /** A non-JSON text message (seed 003's plain text). Without a listener the client gets `invalid_request`. */
  text: (client: HubClient, text: string) => unknown;
  /** A binary message. Without a listener the client gets `invalid_request`. */
  binary: (client: HubClient, data: Buffer) => unknown;
  /**
   * A handshake or connection refused on a policy: bad token, unknown or reused ticket, auth deadline, origin, the
   * per-user connection limit, repeated rate limiting. Carries the reason and the request, never the token.
   */
  refused: (refusal: HubRefusal) => void;
  /** A presence change (from any hub of the cluster). */
  presence: (event: PresenceEvent) => void;
  /** An application handler failed, or the backplane rejected. Never emitted without a listener. */
  error: (error: Error) => void;
}

class HubError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** One subscription of one client. */
interface Subscription {
  readonly client: HubClient;
  /** The client's connection (the fan-out reads it without going through the client). */
  readonly connection: WebSocketConnection;
  readonly tenant: string;
  readonly topic: string;
  readonly key: string;
  readonly dialect: Dialect;
  readonly pattern: boolean;
  readonly presence: boolean;
  /** Messages (and backplane gap reports) that arrived while the subscription was being set up; null once live. */
  buffer: Array<PublishedMessage | Gap> | null;
  /** Whether the subscription was cancelled while being set up. */
  cancelled: boolean;
}

const STATE_PENDING_AUTH = 0;
const STATE_OPEN = 1;
const STATE_CLOSED = 2;

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
  readonly hub: Hub;
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

  /** @internal */
  constructor(hub: Hub, id: string, connection: WebSocketConnection, now: number, tokens: number) {
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

function checkType(type: unknown): asserts type is string {
  if (typeof type !== 'string' || type.length === 0) throw new TypeError('message type must be a non-empty string');
}

/** `Hub` listeners, typed. */
export interface Hub {
  on<K extends keyof HubEvents>(event: K, listener: HubEvents[K]): this;
  once<K extends keyof HubEvents>(event: K, listener: HubEvents[K]): this;
  off<K extends keyof HubEvents>(event: K, listener: HubEvents[K]): this;
  emit<K extends keyof HubEvents>(event: K, ...args: Parameters<HubEvents[K]>): boolean;
}

const ANONYMOUS = Symbol('anonymous');
/** A refused handshake token, by where it came from. */
interface Refused {
  refused: 'token' | 'ticket';
}
type UpgradeVerdict = Principal | Refused | typeof ANONYMOUS | undefined;

interface Interest {
  count: number;
  /** The backplane subscription while it is being set up (or failed); null once it is live. */
  ready: Promise<void> | null;
}

/** The state of the fan-out in progress (one object per hub, reused). */
interface Fanout {
  message: PublishedMessage | null;
  stamp: number;
  native: PreparedMessage | null;
  nativeSize: number;
  llps: PreparedMessage | null;
  llpsSize: number;
}

/**
 * The hub. Create it with {@link createHub}; attach it to a `node:http` server with {@link Hub.handleUpgrade} or
 * run it standalone with {@link Hub.listen}.
 */
export class Hub extends EventEmitter {
  /** The engine server (for its `rejected` event, address, …). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the principal slot carries the hub's handshake verdict
  readonly server: WebSocketServer<any, any>;
  /** The backplane in use. */
  readonly backplane: Backplane;
  /** One-time tickets for `?ticket=` authentication: `hub.tickets.issue(principal)` (or {@link Hub.issueTicket}). */
  readonly tickets: TicketStore;
  private readonly options: HubOptions;
  private readonly resolver: TokenResolver | null;
  private readonly tokenOptions: TokenExtractOptions;
  private readonly limits: ResolvedLimits;
  /** Whether the resolver takes the request (then each connection keeps it, for `refresh`). */
  private readonly keepRequest: boolean;
  private readonly heartbeat: Required<HubHeartbeatOptions> | null;
  private readonly supportedProtocols: readonly string[];
  private readonly clients = new Map<string, HubClient>();
  /** Open clients by user: the client itself while the user has one connection here, a Set from the second on. */
  private readonly users = new Map<string, HubClient | Set<HubClient>>();
  private readonly tries = new Map<string, TopicTrie<Subscription>>();
  private readonly interest = new Map<string, Interest>();
  private readonly timers = new TimerQueue();
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private nextId = 0;
  private stampCounter = 0;
  private readonly matchScratch: Array<ReadonlySet<Subscription>> = [];
  private readonly fanQueue: PublishedMessage[] = [];
  private readonly fanout: Fanout = { message: null, stamp: 0, native: null, nativeSize: 0, llps: null, llpsSize: 0 };
  private closing: Promise<void> | null = null;
  private readonly attached: Promise<void>;
  /** Whether the backplane's `attach` settled: `null` while it runs, then `'ok'` or `'failed'`. */
  private attachState: 'ok' | 'failed' | null = null;
  private pendingAuth = 0;
  private subscriptionCount = 0;
  private readonly counters = {
    connectionsTotal: 0,
    messagesIn: 0,
    messagesOut: 0,
    publishes: 0,
    deliveries: 0,
    drops: 0,
    gapReports: 0,
    slowConsumerDisconnects: 0,
    rateLimited: 0,
    authFailures: 0,
  };
  private readonly errorCounts: Record<string, number> = Object.create(null) as Record<string, number>;
  private readonly closeCounts: Record<string, number> = Object.create(null) as Record<string, number>;

  constructor(options: HubOptions = {}) {
    super();
    if (typeof options !== 'object' || options === null) throw new TypeError('hub options must be an object');
    this.options = options;
    if (options.authenticate !== undefined && typeof options.authenticate !== 'function') throw new TypeError('options.authenticate must be a function (token, request) => principal | null');
    if (options.authenticate && options.jwt) throw new TypeError('give either options.authenticate or options.jwt, not both');
    this.resolver = options.authenticate ?? (options.jwt ? jwtResolver(options.jwt) : null);
    this.keepRequest = options.authenticate !== undefined && options.authenticate.length >= 2;
    this.tokenOptions = { ...options.tokenNames, order: options.tokenOrder };
    resolveTokenOptions(this.tokenOptions);
    this.limits = resolveLimits(options.limits ?? {});
    this.heartbeat = options.heartbeat === false ? null : resolveHeartbeat(options.heartbeat ?? {});
    this.supportedProtocols = [...HUB_SUBPROTOCOLS, ...(options.protocols ?? [])];
    this.tickets = new TicketStore({ ttl: options.ticketTtl });
    this.backplane = options.backplane ?? new MemoryBackplane({ history: options.history });
    if (options.backplane && options.history) throw new TypeError('options.history configures the default MemoryBackplane; configure history on your backplane instead');
    for (const [name, fn] of Object.entries(options.authorize ?? {})) {
      if (typeof fn !== 'function') throw new TypeError(`options.authorize.${name} must be a function`);
    }
    this.server = createServer(
      {
        ...options.server,
        maxMessageSize: this.limits.maxMessageSize,
        path: options.path,
        heartbeat: false,
        authenticate: (request) => this.authenticateUpgrade(request),
        selectProtocol: (offered) => selectHubProtocol(offered, this.supportedProtocols),
      },
      (connection, request) => this.accept(connection, request),
    );
    this.attached = this.backplane.attach(this.sink());
    this.attached.then(
      () => {
        this.attachState = 'ok';
      },
      (error: Error) => {
        this.attachState = 'failed';
        this.report(error);
      },
    );
  }

  // ─── Attaching ────────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Completes an upgrade from a `node:http`/`https` server's `upgrade` event. An upgrade that arrives while the
   * backplane is still attaching (connecting to its broker) waits for it, since a connection cannot be registered
   * (per-user limit, presence) before; if attaching failed, it is answered `503 Service Unavailable`.
   */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.attachState === 'ok') return this.server.handleUpgrade(request, socket, head);
    const go = (): void => {
      if (socket.destroyed) return;
      if (this.attachState === 'ok') this.server.handleUpgrade(request, socket, head);
      else socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    };
    this.attached.then(go, go);
  }

  /** Listens standalone (ws, or wss with `server.tls`). Resolves with the bound address. */
  async listen(port = 0, host?: string): Promise<AddressInfo> {
    await this.attached;
    return this.server.listen(port, host);
  }

  // ─── Application API ──────────────────────────────────────────────────────────────────────────────────────

  /**
   * Publishes a topic message to every subscriber of a matching pattern (each connection once). Resolves with its
   * sequence number, epoch and timestamp (`ts`, ms since 1970, as subscribers receive it) once the backplane stored it. TypeError/RangeError for a bad topic, tenant or type.
   */
  async publish(message: PublishMessage): Promise<{ seq: number; epoch: string; ts: number }> {
    if (typeof message !== 'object' || message === null) throw new TypeError('publish needs { topic, type, data, tenant? }');
    checkType(message.type);
    const tenant = message.tenant ?? 'default';
    this.checkTenantName(tenant);
    const problem = checkTopic(message.topic, false, this.topicLimits());
    if (problem !== null) throw new RangeError(problem);
    const data = serializeData(message.data ?? {});
    await this.attached;
    const m = await this.backplane.publish(tenant, message.topic, message.type, data);
    this.counters.publishes++;
    return { seq: m.seq, epoch: m.epoch, ts: m.ts };
  }

  /** Sends `{type, data}` to every open connection of `user` (across the cluster). Resolves with the sockets reached on this hub. */
  async sendToUser(user: string, message: OutgoingMessage): Promise<number> {
    if (typeof user !== 'string' || user.length === 0) throw new TypeError('user must be a non-empty string');
    return this.backplane.sendToUser(user, this.envelope(message));
  }

  /** Sends `{type, data}` to one connection by id (wherever it is). Resolves true when it was on this hub and sent. */
  async sendToConnection(connectionId: string, message: OutgoingMessage): Promise<boolean> {
    if (typeof connectionId !== 'string') throw new TypeError('connectionId must be a string');
    return this.backplane.sendToConnection(connectionId, this.envelope(message));
  }

  /** Sends `{type, data}` to every connection (of `tenant` only: those allowed to use it). Resolves with the sockets reached here. */
  async broadcast(message: OutgoingMessage, options: { tenant?: string } = {}): Promise<number> {
    if (options.tenant !== undefined) this.checkTenantName(options.tenant);
    return this.backplane.broadcast(this.envelope(message), options.tenant);
  }

  /** Closes every connection of `user` (default 4000: the client should reconnect). Resolves with those closed here. */
  async disconnectUser(user: string, code = 4000, reason = ''): Promise<number> {
    if (typeof user !== 'string' || user.length === 0) throw new TypeError('user must be a non-empty string');
    checkCloseCode(code);
    return this.backplane.disconnect({ user }, code, reason);
  }

  /**
   * Subscribes a connection of this hub from application code (seed 001's `hub.subscribe(connection_id, topic)`).
   * Resolves once live; no ack is sent to the client. Rejects with a RangeError for an unknown connection or a bad
   * topic, and with an Error for a refused tenant.
   */
  async subscribe(connectionId: string, topic: string, options: { tenant?: string; since?: StreamPosition | PatternSince } = {}): Promise<SubscribeResult> {
    const client = this.clients.get(connectionId);
    if (client === undefined || client.state !== STATE_OPEN) throw new RangeError(`no open, authenticated connection ${String(connectionId)} on this hub`);
    try {
      return await this.subscribeClient(client, options.tenant, topic, options.since, 'native', false, true);
    } catch (error) {
      if (error instanceof HubError) throw error.code === 'invalid_request' ? new RangeError(error.message) : new Error(error.message);
      throw error;
    }
  }

  /** Ends a subscription made by the client or by {@link Hub.subscribe}. Resolves false when there was none. */
  async unsubscribe(connectionId: string, topic: string, options: { tenant?: string } = {}): Promise<boolean> {
    const client = this.clients.get(connectionId);
    if (client === undefined) return false;
    const tenant = options.tenant ?? 'default';
    const sub = findSub(client, tenant, normalizePattern(topic));
    if (sub === undefined) return false;
    this.removeSubscription(sub);
    return true;
  }

  /** Who is subscribed to `topic` (the exact name or pattern subscribed to) in `tenant` (default `default`). */
  presence(topic: string, tenant = 'default'): Promise<PresenceSnapshot> {
    return this.backplane.presence(tenant, topic);
  }

  /**
   * The held history of a topic after `since`, with exact gaps. `since`: absent (everything held), a sequence
   * number in the topic's current epoch, or `{ epoch, seq }` (another epoch: everything held, `recovered: false`).
   * `position` in the answer is the topic's current epoch and last sequence number.
   *
   * A wildcard pattern (`orders.*`, `orders.#`) answers for every matching topic with a stream, messages in
   * publication order (tenant offset) across topics and gaps per topic (each names its topic). `since`: absent
   * (everything held), a tenant offset of the current offset epoch (what came after it), or a
   * {@link PatternSince} `{ positions?, offset?, offsetEpoch? }` as a wildcard subscription resumes (an offset of
   * another offset epoch: everything held). The answer has no `position`; its `offset`/`offsetEpoch` are the
   * tenant's current ones, to ask again from.
   */
  async history(topic: string, options: { tenant?: string; since?: StreamPosition | PatternSince | number } = {}): Promise<ResumeAnswer> {
    const pattern = typeof topic === 'string' && isPattern(topic);
    const problem = checkTopic(topic, pattern, this.topicLimits());
    if (problem !== null) throw new RangeError(problem);
    const tenant = options.tenant ?? 'default';
    this.checkTenantName(tenant);
    const since = options.since;
    if (pattern) return this.patternHistory(tenant, normalizePattern(topic), since);
    if (since === undefined) return this.backplane.resume(tenant, topic, { epoch: '', seq: 0 });
    if (typeof since === 'number') {
      if (!Number.isInteger(since) || since < 0) throw new RangeError(`since must be a non-negative integer sequence number, got ${String(since)}`);
      const now = await this.backplane.resume(tenant, topic, null);
      return this.backplane.resume(tenant, topic, { epoch: now.position?.epoch ?? '', seq: since });
    }
    const position = since as Partial<StreamPosition> | null;
    if (typeof position !== 'object' || position === null || typeof position.epoch !== 'string' || !Number.isInteger(position.seq) || position.seq! < 0) {
      throw new TypeError('since for a topic must be a sequence number or { epoch: string, seq: non-negative integer }');
    }
    return this.backplane.resume(tenant, topic, { epoch: position.epoch, seq: position.seq! });
  }

  private async patternHistory(tenant: string, pattern: string, since: StreamPosition | PatternSince | number | undefined): Promise<ResumeAnswer> {
    await this.attached;
    if (since === undefined) return this.backplane.resume(tenant, pattern, { offset: 0 });
    if (typeof since === 'number') {
      if (!Number.isInteger(since) || since < 0) throw new RangeError(`since must be a non-negative integer tenant offset, got ${String(since)}`);
      return this.backplane.resume(tenant, pattern, { offset: since });
    }
    let checked: PatternSince;
    try {
      checked = this.checkPatternSince(since);
    } catch (error) {
      throw new TypeError(`since for a pattern must be a tenant offset or { positions?, offset?, offsetEpoch? }: ${(error as Error).message}`);
    }
    if (checked.offset === undefined && checked.positions === undefined) throw new TypeError('since for a pattern needs positions or an offset');
    return this.backplane.resume(tenant, pattern, checked);
  }

  /** Issues a one-time ticket for `?ticket=` (single use, `ttl` ms, default `ticketTtl`). */
  issueTicket(principal: Principal, ttl?: number): string {
    return this.tickets.issue(principal, ttl);
  }

  /** The client with this id on this hub. */
  client(connectionId: string): HubClient | undefined {
    return this.clients.get(connectionId);
  }

  /** Metrics snapshot, for `/metrics`. */
  stats(): HubStats {
    let patterns = 0;
    for (const trie of this.tries.values()) patterns += trie.size;
    return {
      connections: this.clients.size,
      pendingAuth: this.pendingAuth,
      users: this.users.size,
      subscriptions: this.subscriptionCount,
      patterns,
      ...this.counters,
      errors: { ...this.errorCounts },
      closeCodes: { ...this.closeCounts },
      deadlines: this.timers.size,
      heartbeatRunning: this.heartbeatTimer !== null,
    };
  }

  /**
   * Graceful shutdown: stops accepting, closes every connection with 1001 (or 1012 for a restart), waits up to
   * `timeout` ms, destroys what is left; every `disconnect` event and registry cleanup runs. Then releases the
   * timers, the tickets and the backplane. Calling it again returns the same promise.
   */
  close(options: HubCloseOptions = {}): Promise<void> {
    if (this.closing) return this.closing;
    const code = options.code ?? 1001;
    if (code !== 1001 && code !== 1012) throw new RangeError('close code must be 1001 (going away) or 1012 (restart)');
    for (const c of this.clients.values()) if (c.closeCode === 0) c.closeCode = code;
    this.closing = (async () => {
      await this.server.close({ code, reason: options.reason ?? (code === 1012 ? 'server restarting' : 'server shutting down'), timeout: options.timeout });
      this.stopHeartbeat();
      this.timers.clear();
      this.tickets.close();
      await this.backplane.close();
    })();
    return this.closing;
  }

  // ─── Connections ──────────────────────────────────────────────────────────────────────────────────────────

  private async authenticateUpgrade(request: IncomingUpgrade): Promise<{ principal: UpgradeVerdict } | AuthRejection> {
    const origins = this.options.origins;
    if (origins !== undefined) {
      const o = request.origin?.toLowerCase();
      if (o === undefined || o === 'null' || !origins.some((allowed) => allowed.toLowerCase() === o)) {
        this.refused({ reason: 'origin', request, code: 403 });
        return { reject: true, status: 403, message: 'origin not allowed' };
      }
    }
    if (this.resolver === null) return { principal: ANONYMOUS };
    const location = extractToken(request, this.tokenOptions);
    if (location === null) return { principal: undefined };
    let principal: Principal | null = null;
    try {
      principal = location.source === 'ticket' ? this.tickets.redeem(location.token) : await this.resolver(location.token, request);
    } catch (error) {
      this.report(new Error(`the token resolver threw: ${(error as Error)?.message ?? String(error)}`));
      principal = null;
    }
    return { principal: validPrincipal(principal) ? principal : { refused: location.source === 'ticket' ? 'ticket' : 'token' } };
  }

  private accept(connection: WebSocketConnection, request: IncomingUpgrade): void {
    const now = Date.now();
    const id = `${this.backplane.nodeId}.${(++this.nextId).toString(36)}`;
    const rate = this.limits.rate;
    const client = new HubClient(this, id, connection, now, rate === false ? 0 : rate.burst);
    connection.data = client;
    connection.on('message', onConnectionMessage);
    connection.on('close', onConnectionClose);
    connection.on('error', onConnectionError);
    connection.on('pong', onConnectionPong);
    this.clients.set(id, client);
    this.counters.connectionsTotal++;
    this.startHeartbeat();
    const verdict = connection.principal as UpgradeVerdict;
    if (verdict !== undefined && verdict !== ANONYMOUS && 'refused' in verdict) {
      this.counters.authFailures++;
      client.state = STATE_CLOSED;
      this.refused({ reason: verdict.refused, request, code: 4401, connectionId: id });
      this.closeClient(client, 4401, verdict.refused === 'ticket' ? 'unknown, expired or already used ticket' : 'invalid or expired token');
      return;
    }
    if (this.keepRequest) client.request = request;
    if (verdict === ANONYMOUS) {
      this.admit(client, { user: `anonymous:${id}` }, request);
      return;
    }
    if (verdict === undefined) {
      this.pendingAuth++;
      client.request = request;
      client.deadline = this.timers.schedule(this.limits.authDeadline, () => {
        client.deadline = null;
        if (client.state !== STATE_PENDING_AUTH) return;
        this.counters.authFailures++;
        this.refused({ reason: 'auth_deadline', request: client.request, code: 4401, connectionId: client.id });
        this.closeClient(client, 4401, 'authentication timeout: send {"type":"auth","token":…} first');
      });
      return;
    }
    this.admit(client, verdict, request);
  }

  private admit(client: HubClient, principal: Principal, request: IncomingUpgrade | undefined): void {
    if (client.state === STATE_PENDING_AUTH && client.deadline !== null) this.pendingAuth--;
    if (!this.keepRequest) client.request = undefined;
    this.timers.cancel(client.deadline);
    client.deadline = null;
    client.principal = principal;
    client.state = STATE_OPEN;
    const user = principal.user;
    const held = this.users.get(user);
    if (held === undefined) this.users.set(user, client);
    else if (held instanceof Set) held.add(client);
    else this.users.set(user, new Set([held, client]));
    this.armExpiry(client);
    const registered: Promise<unknown> = this.backplane.registerConnection(user, client.id).then(
      (ids) => {
        if (client.registered === registered) client.registered = null;
        const excess = ids.length - this.limits.maxConnectionsPerUser;
        for (let i = 0; i < excess; i++) {
          if (ids[i] === client.id) continue;
          this.refused({ reason: 'connection_limit', request, code: 4429, connectionId: ids[i], user });
          void this.backplane.disconnect({ connectionId: ids[i] }, 4429, 'too many connections for this user: oldest closed').catch((e: Error) => this.report(e));
        }
      },
      (error: Error) => {
        if (client.registered === registered) client.registered = null;
        this.report(error);
        // Never leave a connection open that the cluster does not count (the per-user limit would not hold).
        if (client.state === STATE_OPEN) this.closeClient(client, HUB_CLOSE_CODES.TRY_AGAIN, 'could not register the connection with the backplane: try again later');
      },
    );
    client.registered = registered;
    this.emit('connection', client, request);
  }

  private armExpiry(client: HubClient): void {
    this.timers.cancel(client.deadline);
    client.deadline = null;
    const expiresAt = client.principal?.expiresAt;
    if (expiresAt === undefined) return;
    client.deadline = this.timers.schedule(Math.max(0, expiresAt - Date.now()), () => {
      client.deadline = null;
      if (client.state !== STATE_OPEN) return;
      this.closeClient(client, 4401, 'token expired');
    });
  }

  /** Closes a client with a code the hub chose (counted under that code). */
  private closeClient(client: HubClient, code: number, reason: string, killAfter = 0): void {
    if (client.closeCode === 0) client.closeCode = code;
    client.connection.close(code, reason);
    if (killAfter > 0 && client.kill === null) {
      client.kill = this.timers.schedule(killAfter, () => {
        client.kill = null;
        client.connection.terminate();
      });
    }
  }

  /** @internal Every close path ends here (the engine's close event always fires). */
  onClose(client: HubClient, code: number, reason: string): void {
    const wasPending = client.state === STATE_PENDING_AUTH;
    const wasOpen = client.state === STATE_OPEN;
    client.state = STATE_CLOSED;
    if (wasPending && client.deadline !== null) this.pendingAuth--;
    this.timers.cancel(client.deadline);
    this.timers.cancel(client.kill);
    client.deadline = null;
    client.kill = null;
    client.gaps = null;
    client.request = undefined;
    this.clients.delete(client.id);
    if (client.subs !== null) {
      for (const sub of [...client.subs]) this.removeSubscription(sub);
      client.subs = null;
    }
    const principal = client.principal;
    if (wasOpen && principal !== null) {
      const held = this.users.get(principal.user);
      if (held === client) this.users.delete(principal.user);
      else if (held instanceof Set) {
        held.delete(client);
        if (held.size === 1) this.users.set(principal.user, held.values().next().value as HubClient);
      }
      const registered = client.registered ?? Promise.resolve();
      client.registered = null;
      void registered.then(() => this.backplane.unregisterConnection(principal.user, client.id)).catch((e: Error) => this.report(e));
    }
    const counted = client.closeCode !== 0 ? client.closeCode : code;
    this.closeCounts[counted] = (this.closeCounts[counted] ?? 0) + 1;
    if (this.clients.size === 0) this.stopHeartbeat();
    if (wasOpen) this.emit('disconnect', client, code, reason);
  }

  // ─── Inbound ──────────────────────────────────────────────────────────────────────────────────────────────

  /** @internal */
  onMessage(client: HubClient, data: Buffer, isBinary: boolean): void {
    if (client.state === STATE_CLOSED) return;
    this.counters.messagesIn++;
    const now = Date.now();
    client.lastSeen = now;
    if (!this.takeToken(client, now)) return;
    if (isBinary) {
      if (client.state !== STATE_OPEN) return this.replyError(client, client.dialect, 'unauthorized', 'authenticate first: send {"type":"auth","token":…}', undefined);
      if (this.listenerCount('binary') === 0) return this.replyError(client, client.dialect, 'invalid_request', 'binary messages are not accepted here', undefined);
      return this.callApp(client, 'binary', [client, data], undefined, client.dialect);
    }
    const text = data.toString();
    if (text === 'ping') {
      this.sendText(client, 'pong');
      return;
    }
    if (text.charCodeAt(0) !== 0x7b /* { */ && text.trimStart().charCodeAt(0) !== 0x7b) {
      if (client.state !== STATE_OPEN) return this.replyError(client, client.dialect, 'unauthorized', 'authenticate first: send {"type":"auth","token":…}', undefined);
      if (this.listenerCount('text') === 0) return this.replyError(client, client.dialect, 'invalid_request', 'expected a JSON object {"type": string, "data": object, "request_id"?: string | number}', undefined);
      return this.callApp(client, 'text', [client, text], undefined, client.dialect);
    }
    const request = parseRequest(text);
    if (request.kind === 'invalid') return this.replyError(client, request.dialect, request.code, request.message, request.requestId);
    void this.dispatch(client, request).catch((error: unknown) => {
      if (error instanceof HubError) return this.replyError(client, request.dialect, error.code, error.message, request.requestId);
      this.report(error as Error);
      this.replyError(client, request.dialect, 'internal_error', 'the hub failed to handle this request', request.requestId);
    });
  }

  private takeToken(client: HubClient, now: number): boolean {
    const rate = this.limits.rate;
    if (rate === false) return true;
    const elapsed = now - client.refilledAt;
    if (elapsed > 0) {
      client.tokens = Math.min(rate.burst, client.tokens + (elapsed * rate.messages) / rate.interval);
      client.refilledAt = now;
    }
    if (client.tokens >= 1) {
      client.tokens -= 1;
      client.strikes = 0;
      return true;
    }
    this.counters.rateLimited++;
    if (++client.strikes >= this.limits.maxRateViolations) {
      if (client.closeCode === 0) this.refused({ reason: 'rate_limit', request: client.request, code: 4429, connectionId: client.id, user: client.principal?.user });
      this.closeClient(client, 4429, 'rate limit exceeded repeatedly', 1000);
      return false;
    }
    this.replyError(client, client.dialect, 'rate_limited', `more than ${rate.messages} messages per ${rate.interval} ms: slow down`, undefined);
    return false;
  }

  private async dispatch(client: HubClient, r: HubRequest): Promise<void> {
    if (client.state !== STATE_OPEN) {
      if (r.kind === 'auth') return this.firstMessageAuth(client, r.token, r.requestId);
      if (r.kind === 'ping') return this.replyPong(client, r.dialect, r.requestId);
      if (r.kind === 'pong') return;
      throw new HubError('unauthorized', 'authenticate first: send {"type":"auth","token":…}');
    }
    switch (r.kind) {
      case 'ping':
        return this.replyPong(client, r.dialect, r.requestId);
      case 'pong':
        return;
      case 'auth':
      case 'refresh':
        return this.refresh(client, r.token, r.requestId, r.kind);
      case 'subscribe': {
        const result = await this.subscribeClient(client, r.tenant, r.topic, r.since, r.dialect, r.presence, false, r.requestId);
        void result;
        return;
      }
      case 'unsubscribe': {
        const tenant = this.tenantFor(client, r.tenant);
        const topic = this.checkName(r.topic, true);
        const sub = findSub(client, tenant, topic);
        if (sub !== undefined) this.removeSubscription(sub);
        if (r.requestId !== undefined || r.dialect === 'llps') this.sendText(client, encodeAck(r.dialect, r.requestId, { topic, tenant, ...(r.dialect === 'llps' ? { channel: topic } : {}) }, 'unsubscribed'));
        return;
      }
      case 'publish': {
        const tenant = this.tenantFor(client, r.tenant);
        const topic = this.checkName(r.topic, false);
        if (this.options.clientPublish === false) throw new HubError('unauthorized', 'clients may not publish on this hub');
        const hook = this.options.authorize?.publish;
        if (hook !== undefined && (await hook({ client, tenant, topic })) !== true) throw new HubError('unauthorized', `not allowed to publish to ${topic}`);
        let data: string;
        try {
          data = serializeData(r.data);
        } catch {
          throw new HubError('invalid_request', 'publish data must be JSON');
        }
        const m = await this.backplane.publish(tenant, topic, r.type, data);
        this.counters.publishes++;
        if (r.requestId !== undefined || r.dialect === 'llps') {
          this.sendText(client, encodeAck(r.dialect, r.requestId, { topic, tenant, seq: m.seq, epoch: m.epoch, ...(r.dialect === 'llps' ? { channel: topic } : {}) }, 'published'));
        }
        return;
      }
      case 'presence': {
        const tenant = this.tenantFor(client, r.tenant);
        const topic = this.checkName(r.topic, true);
        const snapshot = await this.backplane.presence(tenant, topic);
        this.sendText(client, encodeAck(r.dialect, r.requestId, { ...snapshot }, 'presence'));
        return;
      }
      case 'history': {
        const tenant = this.tenantFor(client, r.tenant);
        const topic = this.checkName(r.topic, false);
        await this.authorizeSubscribe(client, tenant, topic);
        const since = r.since === undefined ? { epoch: '', seq: 0 } : this.checkPosition(r.since);
        const answer = await this.backplane.resume(tenant, topic, since);
        const messages = answer.messages.map((m) => encodeTopicMessage(r.dialect, m)).join(',');
        const ack = encodeAck(r.dialect, r.requestId, { topic, tenant, epoch: answer.position?.epoch, seq: answer.position?.seq, recovered: answer.recovered, gaps: answer.gaps }, 'history');
        this.sendText(client, `${ack.slice(0, -1)},"messages":[${messages}]}`);
        return;
      }
      case 'app':
        if (this.listenerCount('message') === 0) throw new HubError('invalid_request', `unknown message type ${JSON.stringify(r.type)}`);
        return this.callApp(client, 'message', [client, { type: r.type, data: r.data, requestId: r.requestId, envelope: r.envelope }], r.requestId, r.dialect);
    }
  }

  private replyPong(client: HubClient, dialect: Dialect, requestId: RequestId | undefined): void {
    this.sendText(client, dialect === 'llps' ? `{"action":"pong"${requestId === undefined ? '' : `,"request_id":${JSON.stringify(requestId)}`}}` : `{"type":"pong","data":{},"request_id":${JSON.stringify(requestId ?? null)}}`);
  }

  private callApp(client: HubClient, event: 'message' | 'text' | 'binary', args: unknown[], requestId: RequestId | undefined, dialect: Dialect): void {
    const results: unknown[] = [];
    try {
      for (const listener of this.listeners(event)) results.push((listener as (...a: unknown[]) => unknown)(...args));
    } catch (error) {
      this.report(error as Error);
      return this.replyError(client, dialect, 'internal_error', 'the application failed to handle this message', requestId);
    }
    const pending = results.filter((r) => r instanceof Promise);
    const done = (): void => {
      if (requestId !== undefined && client.state === STATE_OPEN) this.sendText(client, encodeAck(dialect, requestId));
    };
    if (pending.length === 0) return done();
    Promise.all(pending).then(done, (error: Error) => {
      this.report(error);
      this.replyError(client, dialect, 'internal_error', 'the application failed to handle this message', requestId);
    });
  }

  private async firstMessageAuth(client: HubClient, token: string, requestId: RequestId | undefined): Promise<void> {
    const request = client.request;
    const principal = await this.resolveToken(token, request);
    if (client.state !== STATE_PENDING_AUTH) return;
    if (principal === null) {
      this.counters.authFailures++;
      this.refused({ reason: 'token', request, code: 4401, connectionId: client.id });
      this.closeClient(client, 4401, 'invalid or expired token');
      return;
    }
    this.admit(client, principal, request);
    this.sendText(client, requestId === undefined ? '{"type":"auth_ok"}' : `{"type":"auth_ok","request_id":${JSON.stringify(requestId)}}`);
  }

  private async refresh(client: HubClient, token: string, requestId: RequestId | undefined, kind: 'auth' | 'refresh'): Promise<void> {
    if (this.resolver === null) throw new HubError('invalid_request', 'this hub has no authentication: nothing to refresh');
    const principal = await this.resolveToken(token, client.request);
    if (client.state !== STATE_OPEN) return;
    if (principal === null) throw new HubError('unauthorized', 'the new token is invalid or expired; the current one stays in force');
    if (principal.user !== client.user) throw new HubError('unauthorized', 'the new token is for another user');
    client.principal = principal;
    this.armExpiry(client);
    if (kind === 'auth') this.sendText(client, requestId === undefined ? '{"type":"auth_ok"}' : `{"type":"auth_ok","request_id":${JSON.stringify(requestId)}}`);
    else this.sendText(client, encodeAck('native', requestId, { expiresAt: principal.expiresAt ?? null }));
  }

  private async resolveToken(token: string, request: IncomingUpgrade | undefined): Promise<Principal | null> {
    if (this.resolver === null) return null;
    try {
      const p = await this.resolver(token, request as IncomingUpgrade);
      return validPrincipal(p) ? p : null;
    } catch (error) {
      this.report(new Error(`the token resolver threw: ${(error as Error)?.message ?? String(error)}`));
      return null;
    }
  }

  // ─── Subscriptions ────────────────────────────────────────────────────────────────────────────────────────

  private topicLimits(): { maxLength: number; maxSegments: number } {
    return { maxLength: this.limits.maxTopicLength, maxSegments: this.limits.maxTopicSegments };
  }

  private checkName(topic: unknown, pattern: boolean): string {
    const problem = checkTopic(topic, pattern, this.topicLimits());
    if (problem !== null) throw new HubError('invalid_request', problem);
    return pattern ? normalizePattern(topic as string) : (topic as string);
  }

  private checkTenantName(tenant: unknown): asserts tenant is string {
    if (typeof tenant !== 'string' || tenant.length === 0 || tenant.length > 128 || /[\s\0]/.test(tenant)) {
      throw new TypeError('tenant must be a non-empty string of at most 128 characters without whitespace');
    }
  }

  /** The tenant a request uses: given or `default`, and one the principal may use. */
  private tenantFor(client: HubClient, tenant: unknown): string {
    if (tenant === undefined || tenant === null) tenant = 'default';
    try {
      this.checkTenantName(tenant);
    } catch (error) {
      throw new HubError('invalid_request', (error as Error).message);
    }
    const allowed = client.principal?.tenants;
    if (allowed !== undefined && !allowed.includes(tenant)) throw new HubError('unauthorized', `not allowed to use tenant ${JSON.stringify(tenant)}`);
    return tenant;
  }

  private async authorizeSubscribe(client: HubClient, tenant: string, topic: string): Promise<void> {
    const hook = this.options.authorize?.subscribe;
    if (hook !== undefined && (await hook({ client, tenant, topic })) !== true) throw new HubError('unauthorized', `not allowed to subscribe to ${topic}`);
  }

  private checkPosition(since: unknown): StreamPosition {
    if (typeof since !== 'object' || since === null) throw new HubError('invalid_request', 'since must be {"epoch": string, "seq": number}');
    const { epoch, seq } = since as Record<string, unknown>;
    if (typeof epoch !== 'string' || epoch.length > 64) throw new HubError('invalid_request', 'since.epoch must be a string');
    if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0) throw new HubError('invalid_request', 'since.seq must be a non-negative integer');
    return { epoch, seq };
  }

  private checkPatternSince(since: unknown): PatternSince {
    if (typeof since !== 'object' || since === null || Array.isArray(since)) throw new HubError('invalid_request', 'since for a wildcard subscription must be {"positions": {topic: {"epoch","seq"}}, "offset": number, "offsetEpoch": string}');
    const s = since as Record<string, unknown>;
    const out: PatternSince = {};
    if (s.offset !== undefined) {
      if (typeof s.offset !== 'number' || !Number.isInteger(s.offset) || s.offset < 0) throw new HubError('invalid_request', 'since.offset must be a non-negative integer');
      out.offset = s.offset;
    }
    if (s.offsetEpoch !== undefined) {
      if (typeof s.offsetEpoch !== 'string' || s.offsetEpoch.length > 64) throw new HubError('invalid_request', 'since.offsetEpoch must be a string (the offsetEpoch of the subscription\'s ack)');
      out.offsetEpoch = s.offsetEpoch;
    }
    if (s.positions !== undefined) {
      if (typeof s.positions !== 'object' || s.positions === null || Array.isArray(s.positions)) throw new HubError('invalid_request', 'since.positions must be an object {topic: {"epoch","seq"}}');
      const entries = Object.entries(s.positions);
      if (entries.length > this.limits.maxResumePositions) throw new HubError('invalid_request', `since.positions has more than ${this.limits.maxResumePositions} topics`);
      const positions: Record<string, StreamPosition> = Object.create(null) as Record<string, StreamPosition>;
      for (const [topic, position] of entries) positions[topic] = this.checkPosition(position);
      out.positions = positions;
    }
    return out;
  }

  /** Subscribes, waits until live, replays what `since` asks for, acks, then delivers live messages. */
  private async subscribeClient(
    client: HubClient,
    rawTenant: unknown,
    rawTopic: unknown,
    rawSince: unknown,
    dialect: Dialect,
    presence: boolean,
    fromApp: boolean,
    requestId?: RequestId,
  ): Promise<SubscribeResult> {
    const tenant = this.tenantFor(client, rawTenant);
    const topic = this.checkName(rawTopic, true);
    const pattern = isPattern(topic);
    const since = rawSince === undefined || rawSince === null ? null : pattern ? this.checkPatternSince(rawSince) : this.checkPosition(rawSince);
    if (!fromApp) await this.authorizeSubscribe(client, tenant, topic);
    if (client.state !== STATE_OPEN) throw new HubError('unauthorized', 'the connection is closed');
    const key = subKey(tenant, topic);
    const existing = findSub(client, tenant, topic);
    if (existing !== undefined && since === null) {
      // Idempotent: already subscribed.
      const result: SubscribeResult = { topic, tenant, recovered: true, replayed: 0 };
      if (!fromApp) this.sendText(client, encodeAck(dialect, requestId, ackData(result, dialect), 'subscribed'));
      return result;
    }
    if (existing !== undefined) this.removeSubscription(existing);
    if ((client.subs?.length ?? 0) >= this.limits.maxSubscriptions) throw new HubError('subscription_failed', `subscription limit reached (${this.limits.maxSubscriptions} per connection)`);
    const sub: Subscription = { client, connection: client.connection, tenant, topic, key, dialect, pattern, presence, buffer: [], cancelled: false };
    (client.subs ??= []).push(sub);
    this.subscriptionCount++;
    let trie = this.tries.get(tenant);
    if (trie === undefined) {
      trie = new TopicTrie();
      this.tries.set(tenant, trie);
    }
    trie.add(topic, sub);
    const interestKey = key;
    let interest = this.interest.get(interestKey);
    if (interest === undefined) {
      const created: Interest = { count: 0, ready: null };
      created.ready = this.backplane.subscribe(tenant, topic).then(() => {
        created.ready = null;
      });
      interest = created;
      this.interest.set(interestKey, interest);
    }
    interest.count++;
    let answer: ResumeAnswer;
    try {
      if (interest.ready !== null) await interest.ready;
      answer = await this.backplane.resume(tenant, topic, since);
    } catch (error) {
      this.removeSubscription(sub);
      this.report(error as Error);
      throw new HubError('subscription_failed', 'the subscription could not be set up; try again');
    }
    if (sub.cancelled) throw new HubError('subscription_failed', 'unsubscribed or disconnected while subscribing');
    const result: SubscribeResult = {
      topic,
      tenant,
      recovered: answer.recovered,
      replayed: answer.messages.length,
      ...(pattern ? { offset: answer.offset, offsetEpoch: answer.offsetEpoch } : { epoch: answer.position?.epoch ?? '', seq: answer.position?.seq ?? 0 }),
      ...(answer.gaps.length > 0 ? { gaps: answer.gaps } : {}),
    };
    if (!fromApp) this.sendText(client, encodeAck(dialect, requestId, ackData(result, dialect), 'subscribed'));
    // Replay, then the messages that arrived live meanwhile, without duplicates: per topic, only what is newer
    // than the replay (or than the position read with it).
    const last = new Map<string, number>();
    if (!pattern && answer.position !== undefined) last.set(topic, answer.position.seq);
    for (const m of answer.messages) {
      this.sendFrame(client, prepare(encodeTopicMessage(dialect, m)));
      this.counters.deliveries++;
      last.set(m.topic, m.seq);
    }
    for (const g of answer.gaps) this.sendGap(client, encodeGap(dialect, g));
    const buffered = sub.buffer!;
    sub.buffer = null;
    for (const m of buffered) {
      if (isGap(m)) {
        // A loss the backplane reported while this subscription was being set up: sent unless the client's
        // starting point (the ack's position, or what was replayed) is already past it.
        const position = answer.position;
        const before = pattern ? (last.get(m.topic) ?? 0) >= m.to : position === undefined || m.epoch !== position.epoch || m.to <= position.seq;
        if (!before && !this.coveredElsewhere(sub, m)) this.sendGap(client, encodeGap(dialect, m));
        continue;
      }
      if (pattern ? m.offset <= answer.offset && !last.has(m.topic) : false) continue;
      const seen = last.get(m.topic);
      if (seen !== undefined && m.seq <= seen && (pattern || m.epoch === answer.position?.epoch)) continue;
      if (this.coveredElsewhere(sub, m)) continue;
      this.deliverTopic(client, sub, m, null);
    }
    void this.backplane.presenceJoin(tenant, topic, client.user, client.id).catch((e: Error) => this.report(e));
    return result;
  }

  /** Whether another live subscription of the same client matches the message (it was delivered through that one). */
  private coveredElsewhere(sub: Subscription, m: { tenant: string; topic: string }): boolean {
    const subs = sub.client.subs;
    if (subs === null || subs.length < 2) return false;
    for (const other of subs) {
      if (other !== sub && other.buffer === null && other.tenant === m.tenant && matches(other.topic, m.topic)) return true;
    }
    return false;
  }

  private removeSubscription(sub: Subscription): void {
    const client = sub.client;
    if (sub.cancelled) return;
    sub.cancelled = true;
    const subs = client.subs;
    if (subs !== null) {
      const i = subs.indexOf(sub);
      if (i !== -1) subs.splice(i, 1);
      if (subs.length === 0) client.subs = null;
    }
    this.subscriptionCount--;
    const trie = this.tries.get(sub.tenant);
    if (trie !== undefined) {
      trie.delete(sub.topic, sub);
      if (trie.size === 0) this.tries.delete(sub.tenant);
    }
    const interest = this.interest.get(sub.key);
    if (interest !== undefined && --interest.count === 0) {
      this.interest.delete(sub.key);
      const { tenant, topic } = sub;
      void (interest.ready ?? Promise.resolve()).then(() => this.backplane.unsubscribe(tenant, topic)).catch((e: Error) => this.report(e));
    }
    if (sub.buffer === null) void this.backplane.presenceLeave(sub.tenant, sub.topic, client.user, client.id).catch((e: Error) => this.report(e));
  }

  // ─── Delivery ─────────────────────────────────────────────────────────────────────────────────────────────

  private sink(): BackplaneSink {
    return {
      message: (m) => this.onTopicMessage(m),
      user: (user, envelope) => {
        const held = this.users.get(user);
        if (held === undefined) return 0;
        if (!(held instanceof Set)) return this.deliverDirect(held, envelope, null) ? 1 : 0;
        let n = 0;
        const frames: Partial<Record<Dialect, PreparedMessage>> = {};
        for (const client of held) if (this.deliverDirect(client, envelope, frames)) n++;
        return n;
      },
      connection: (id, envelope) => {
        const client = this.clients.get(id);
        return client !== undefined && client.state === STATE_OPEN && this.deliverDirect(client, envelope, null);
      },
      broadcast: (envelope, tenant) => {
        let n = 0;
        const frames: Partial<Record<Dialect, PreparedMessage>> = {};
        for (const client of this.clients.values()) {
          if (client.state !== STATE_OPEN) continue;
          if (tenant !== undefined && client.principal?.tenants !== undefined && !client.principal.tenants.includes(tenant)) continue;
          if (this.deliverDirect(client, envelope, frames)) n++;
        }
        return n;
      },
      disconnect: (target: DisconnectTarget, code, reason) => {
        const held = 'user' in target ? this.users.get(target.user) : this.clients.get(target.connectionId);
        const list = held === undefined ? [] : held instanceof Set ? [...held] : [held];
        for (const client of list) this.closeClient(client, code, reason);
        return list.length;
      },
      presence: (event) => this.onPresence(event),
      gap: (gap) => this.onBackplaneGap(gap),
    };
  }

  /**
   * A loss reported by the backplane: one `gap` frame per dialect, sent to every connection with a live
   * subscription matching the topic (once per connection, however many of its patterns match). Subscriptions
   * still being set up keep it in their buffer, in order with the messages.
   */
  private onBackplaneGap(gap: Gap): void {
    if (typeof gap !== 'object' || gap === null || typeof gap.topic !== 'string' || typeof gap.tenant !== 'string') return;
    const trie = this.tries.get(gap.tenant);
    if (trie === undefined) return;
    const sets: Array<ReadonlySet<Subscription>> = [];
    trie.collect(gap.topic, sets);
    // Per connection, one subscription: a live one when there is one.
    const chosen = new Map<HubClient, Subscription>();
    for (const set of sets) {
      for (const sub of set) {
        const held = chosen.get(sub.client);
        if (held === undefined || (held.buffer !== null && sub.buffer === null)) chosen.set(sub.client, sub);
      }
    }
    let native: PreparedMessage | null = null;
    let llps: PreparedMessage | null = null;
    for (const [client, sub] of chosen) {
      if (sub.buffer !== null) {
        sub.buffer.push(gap);
        continue;
      }
      if (client.state !== STATE_OPEN) continue;
      const frame = sub.dialect === 'native' ? (native ??= prepare(encodeGap('native', gap))) : (llps ??= prepare(encodeGap('llps', gap)));
      this.sendFrame(client, frame);
      this.counters.gapReports++;
    }
  }

  /**
   * Fan-out of one topic message. Per recipient: the set iteration, a de-duplication stamp, the set-up check, one
   * `bufferedAmount` comparison and `sendPrepared`; the frame (one per dialect), its size and the counters are
   * handled once per publication.
   */
  private onTopicMessage(m: PublishedMessage): void {
    if (this.fanout.message !== null) {
      // A message handed over while a fan-out is running (a listener that publishes synchronously): after it.
      this.fanQueue.push(m);
      return;
    }
    this.fanOutMessage(m);
    while (this.fanQueue.length > 0) this.fanOutMessage(this.fanQueue.shift()!);
  }

  private fanOutMessage(m: PublishedMessage): void {
    const trie = this.tries.get(m.tenant);
    if (trie === undefined) return;
    const sets = this.matchScratch;
    trie.collect(m.topic, sets);
    if (sets.length === 0) return;
    const fan = this.fanout;
    fan.message = m;
    fan.stamp = sets.length > 1 ? ++this.stampCounter : 0;
    let delivered = 0;
    try {
      const dedupe = sets.length > 1;
      for (let i = 0; i < sets.length; i++) delivered += this.fanOut(sets[i], fan, dedupe);
    } finally {
      sets.length = 0;
      fan.message = null;
      fan.native = null;
      fan.llps = null;
      this.counters.deliveries += delivered;
      this.counters.messagesOut += delivered;
    }
  }

  private fanOut(set: ReadonlySet<Subscription>, fan: Fanout, dedupe: boolean): number {
    const m = fan.message!;
    const stamp = fan.stamp;
    const max = this.limits.maxBufferedBytes;
    const drop = this.limits.slowConsumer === 'drop';
    let delivered = 0;
    // Only the subscription and its connection are touched per recipient, unless several pattern sets matched
    // (then the client carries the de-duplication stamp) or the policy is `drop` (then its gap record is checked).
    for (const sub of set) {
      if (dedupe) {
        const client = sub.client;
        if (client.stamp === stamp) continue;
        if (sub.buffer === null) client.stamp = stamp;
      }
      if (sub.buffer !== null) {
        sub.buffer.push(m);
        continue;
      }
      let frame: PreparedMessage;
      let size: number;
      if (sub.dialect === 'native') {
        frame = fan.native ??= this.prepareTopic('native', m, fan);
        size = fan.nativeSize;
      } else {
        frame = fan.llps ??= this.prepareTopic('llps', m, fan);
        size = fan.llpsSize;
      }
      const connection = sub.connection;
      if (connection.bufferedAmount + size > max) {
        if (drop) this.recordDrop(sub.client, sub.dialect, m);
        else this.slowDisconnect(sub.client);
        continue;
      }
      if (drop && sub.client.gaps !== null) this.flushGaps(sub.client);
      connection.sendPrepared(frame);
      delivered++;
    }
    return delivered;
  }

  private prepareTopic(dialect: Dialect, m: PublishedMessage, fan: Fanout): PreparedMessage {
    const frame = prepare(encodeTopicMessage(dialect, m), { compress: this.options.compress === true });
    if (dialect === 'native') fan.nativeSize = frameSize(frame);
    else fan.llpsSize = frameSize(frame);
    return frame;
  }

  private frameFor(dialect: Dialect, m: PublishedMessage, frames: Partial<Record<Dialect, PreparedMessage>> | null): PreparedMessage {
    if (frames === null) return prepare(encodeTopicMessage(dialect, m), { compress: this.options.compress === true });
    return (frames[dialect] ??= prepare(encodeTopicMessage(dialect, m), { compress: this.options.compress === true }));
  }

  private deliverTopic(client: HubClient, sub: Subscription, m: PublishedMessage, frames: Partial<Record<Dialect, PreparedMessage>> | null): void {
    const frame = this.frameFor(sub.dialect, m, frames);
    if (!this.hasRoom(client, frame)) {
      if (this.limits.slowConsumer === 'disconnect') return this.slowDisconnect(client);
      this.recordDrop(client, sub.dialect, m);
      return;
    }
    if (client.gaps !== null) this.flushGaps(client);
    this.sendFrame(client, frame);
    this.counters.deliveries++;
  }

  /** @internal A message without a sequence number for one client. */
  deliverDirect(client: HubClient, envelope: HubEnvelope, frames: Partial<Record<Dialect, PreparedMessage>> | null): boolean {
    if (client.state !== STATE_OPEN) return false;
    const dialect = client.dialect;
    const frame = frames === null ? prepare(encodeDirect(dialect, envelope.type, envelope.data)) : (frames[dialect] ??= prepare(encodeDirect(dialect, envelope.type, envelope.data)));
    if (!this.hasRoom(client, frame)) {
      if (this.limits.slowConsumer === 'disconnect') this.slowDisconnect(client);
      else this.counters.drops++;
      return false;
    }
    this.sendFrame(client, frame);
    this.counters.deliveries++;
    return true;
  }

  private hasRoom(client: HubClient, frame: PreparedMessage): boolean {
    return client.connection.bufferedAmount + frameSize(frame) <= this.limits.maxBufferedBytes;
  }

  private slowDisconnect(client: HubClient): void {
    if (client.closeCode !== 0) return;
    this.counters.slowConsumerDisconnects++;
    this.closeClient(client, 1008, 'slow consumer: too much unsent data', 1000);
  }

  private recordDrop(client: HubClient, dialect: Dialect, m: PublishedMessage): void {
    this.counters.drops++;
    if (client.gaps === null) {
      client.gaps = new Map();
      client.connection.once('drain', onConnectionDrain);
    }
    const key = subKey(m.tenant, m.topic);
    const gap = client.gaps.get(key);
    if (gap !== undefined && gap.epoch === m.epoch && gap.to + 1 === m.seq) gap.to = m.seq;
    else {
      if (gap !== undefined) this.sendGap(client, encodeGap(gap.dialect, gap), true);
      client.gaps.set(key, { tenant: m.tenant, topic: m.topic, epoch: m.epoch, from: m.seq, to: m.seq, dialect });
    }
  }

  /** @internal Sends the recorded gaps once the connection has room again. */
  flushGaps(client: HubClient): void {
    const gaps = client.gaps;
    if (gaps === null || client.state !== STATE_OPEN) return;
    client.gaps = null;
    client.connection.off('drain', onConnectionDrain);
    for (const g of gaps.values()) this.sendGap(client, encodeGap(g.dialect, g), true);
  }

  private sendGap(client: HubClient, text: string, force = false): void {
    if (client.state === STATE_CLOSED && !force) return;
    this.sendText(client, text, force);
    this.counters.gapReports++;
  }

  private sendFrame(client: HubClient, frame: PreparedMessage): void {
    client.connection.sendPrepared(frame);
    this.counters.messagesOut++;
  }

  /** Replies and control messages: always sent (they are small), except to a closed connection. */
  private sendText(client: HubClient, text: string, force = false): void {
    if (client.state === STATE_CLOSED && !force) return;
    client.connection.send(text);
    this.counters.messagesOut++;
  }

  private replyError(client: HubClient, dialect: Dialect, code: ErrorCode, message: string, requestId: RequestId | undefined): void {
    this.errorCounts[code] = (this.errorCounts[code] ?? 0) + 1;
    this.sendText(client, encodeError(dialect, code, message, requestId));
  }

  private onPresence(event: PresenceEvent): void {
    if (this.listenerCount('presence') > 0) this.emit('presence', event);
    const trie = this.tries.get(event.tenant);
    const subs = trie?.get(event.topic);
    if (subs === undefined) return;
    const data = serializeData({ tenant: event.tenant, topic: event.topic, user: event.user });
    for (const sub of subs) {
      if (!sub.presence || sub.buffer !== null || sub.client.user === event.user) continue;
      this.sendText(sub.client, sub.dialect === 'llps' ? `{"action":${JSON.stringify(event.kind)},"channel":${JSON.stringify(event.topic)},"tenant":${JSON.stringify(event.tenant)},"user":${JSON.stringify(event.user)}}` : encodeDirect('native', event.kind, data));
    }
  }

  private envelope(message: OutgoingMessage): HubEnvelope {
    if (typeof message !== 'object' || message === null) throw new TypeError('message must be { type, data }');
    checkType(message.type);
    return { type: message.type, data: serializeData(message.data ?? {}) };
  }

  private refused(refusal: HubRefusal): void {
    if (this.listenerCount('refused') === 0) return;
    try {
      this.emit('refused', refusal);
    } catch (error) {
      this.report(error as Error);
    }
  }

  private report(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  // ─── Heartbeat ────────────────────────────────────────────────────────────────────────────────────────────

  private startHeartbeat(): void {
    const hb = this.heartbeat;
    if (hb === null || this.heartbeatTimer !== null) return;
    const tick = Math.max(10, Math.min(hb.interval, hb.timeout) / 4);
    this.heartbeatTimer = setInterval(() => this.sweep(), tick);
    this.heartbeatTimer.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  private sweep(): void {
    const hb = this.heartbeat!;
    const now = Date.now();
    for (const client of this.clients.values()) {
      if (client.state === STATE_CLOSED || client.closeCode !== 0) continue;
      if (now - client.lastSeen >= hb.timeout) {
        this.closeClient(client, 4408, 'heartbeat timeout: no pong', 1000);
        continue;
      }
      if (client.gaps !== null && client.connection.bufferedAmount < this.limits.maxBufferedBytes / 2) this.flushGaps(client);
      if (now - client.lastPing >= hb.interval) {
        client.lastPing = now;
        client.connection.ping();
        if (hb.appPing === 'all' || (hb.appPing === 'native' && client.protocol !== 'llps.v1')) this.sendText(client, APP_PING);
      }
    }
  }
}

function onConnectionMessage(this: WebSocketConnection, data: Buffer, isBinary: boolean): void {
  const client = this.data as HubClient;
  client.hub.onMessage(client, data, isBinary);
}

function onConnectionClose(this: WebSocketConnection, code: number, reason: string): void {
  const client = this.data as HubClient;
  client.hub.onClose(client, code, reason);
}

/** Protocol errors close the connection with their code (1009, 1002, 1007…); remember it for the close counts. */
function onConnectionError(this: WebSocketConnection, error: Error): void {
  const client = this.data as HubClient;
  const code = (error as { closeCode?: unknown }).closeCode;
  if (typeof code === 'number' && client.closeCode === 0) client.closeCode = code;
}

function onConnectionDrain(this: WebSocketConnection): void {
  const client = this.data as HubClient;
  client.hub.flushGaps(client);
}

/** Protocol pongs (browsers answer pings by themselves) count as signs of life. */
function onConnectionPong(this: WebSocketConnection): void {
  (this.data as HubClient).lastSeen = Date.now();
}

function frameSize(message: PreparedMessage): number {
  const f = message.frame;
  return Array.isArray(f) ? f[0].length + f[1].length : f.length;
}

function isGap(entry: PublishedMessage | Gap): entry is Gap {
  return (entry as Gap).from !== undefined;
}

function findSub(client: HubClient, tenant: string, topic: string): Subscription | undefined {
  const subs = client.subs;
  if (subs === null) return undefined;
  for (let i = 0; i < subs.length; i++) if (subs[i].topic === topic && subs[i].tenant === tenant) return subs[i];
  return undefined;
}

function subKey(tenant: string, topic: string): string {
  return `${tenant}\0${topic}`;
}

function ackData(result: SubscribeResult, dialect: Dialect): Record<string, unknown> {
  const data: Record<string, unknown> = { topic: result.topic, tenant: result.tenant };
  if (dialect === 'llps') data.channel = result.topic;
  if (result.epoch !== undefined) data.epoch = result.epoch;
  if (result.seq !== undefined) data.seq = result.seq;
  if (result.offset !== undefined) data.offset = result.offset;
  if (result.offsetEpoch !== undefined) data.offsetEpoch = result.offsetEpoch;
  data.recovered = result.recovered;
  if (result.gaps !== undefined) data.gaps = result.gaps.map((g) => ({ from: g.from, to: g.to, topic: g.topic, epoch: g.epoch }));
  return data;
}

function validPrincipal(p: unknown): p is Principal {
  if (typeof p !== 'object' || p === null) return false;
  const principal = p as Principal;
  if (typeof principal.user !== 'string' || principal.user.length === 0) return false;
  if (principal.expiresAt !== undefined && !(principal.expiresAt > Date.now())) return false;
  return true;
}

function checkCloseCode(code: number): void {
  if (!Number.isInteger(code) || !(code === 1000 || (code >= 3000 && code <= 4999) || code === 1001 || code === 1008 || code === 1012 || code === 1013)) {
    throw new RangeError(`close code must be 1000, 1001, 1008, 1012, 1013 or 3000-4999, got ${String(code)}`);
  }
}

function positiveNumber(name: string, value: unknown): number {
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) throw new RangeError(`${name} must be a positive number, got ${String(value)}`);
  return value;
}

type ResolvedLimits = Required<Omit<HubLimits, 'rate'>> & { rate: Required<HubRate> | false };

function resolveLimits(l: HubLimits): ResolvedLimits {
  if (typeof l !== 'object' || l === null) throw new TypeError('options.limits must be an object');
  const d = HUB_LIMIT_DEFAULTS;
  const slow = l.slowConsumer ?? d.slowConsumer;
  if (slow !== 'disconnect' && slow !== 'drop') throw new TypeError(`limits.slowConsumer must be 'disconnect' or 'drop', got ${String(slow)}`);
  let rate: Required<HubRate> | false = d.rate;
  if (l.rate === false) rate = false;
  else if (l.rate !== undefined) {
    if (typeof l.rate !== 'object' || l.rate === null) throw new TypeError('limits.rate must be { messages, interval, burst? } or false');
    const messages = positiveNumber('limits.rate.messages', l.rate.messages);
    const burst = positiveNumber('limits.rate.burst', l.rate.burst ?? messages);
    if (burst < 1) throw new RangeError(`limits.rate.burst must be at least 1, got ${burst}`);
    rate = { messages, interval: positiveNumber('limits.rate.interval', l.rate.interval), burst };
  }
  return {
    maxMessageSize: positiveNumber('limits.maxMessageSize', l.maxMessageSize ?? d.maxMessageSize),
    maxConnectionsPerUser: positiveNumber('limits.maxConnectionsPerUser', l.maxConnectionsPerUser ?? d.maxConnectionsPerUser),
    rate,
    maxRateViolations: positiveNumber('limits.maxRateViolations', l.maxRateViolations ?? d.maxRateViolations),
    maxSubscriptions: positiveNumber('limits.maxSubscriptions', l.maxSubscriptions ?? d.maxSubscriptions),
    maxTopicLength: positiveNumber('limits.maxTopicLength', l.maxTopicLength ?? d.maxTopicLength),
    maxTopicSegments: positiveNumber('limits.maxTopicSegments', l.maxTopicSegments ?? d.maxTopicSegments),
    maxBufferedBytes: positiveNumber('limits.maxBufferedBytes', l.maxBufferedBytes ?? d.maxBufferedBytes),
    slowConsumer: slow,
    authDeadline: positiveNumber('limits.authDeadline', l.authDeadline ?? d.authDeadline),
    maxResumePositions: positiveNumber('limits.maxResumePositions', l.maxResumePositions ?? d.maxResumePositions),
  };
}

function resolveHeartbeat(h: HubHeartbeatOptions): Required<HubHeartbeatOptions> {
  if (typeof h !== 'object' || h === null) throw new TypeError('options.heartbeat must be an object or false');
  const appPing = h.appPing ?? 'native';
  if (appPing !== 'native' && appPing !== 'all' && appPing !== 'none') throw new TypeError(`heartbeat.appPing must be 'native', 'all' or 'none'`);
  return {
    interval: positiveNumber('heartbeat.interval', h.interval ?? HUB_HEARTBEAT_DEFAULTS.interval),
    timeout: positiveNumber('heartbeat.timeout', h.timeout ?? HUB_HEARTBEAT_DEFAULTS.timeout),
    appPing,
  };
}

/** Creates a hub. Attach it with `hub.handleUpgrade` or start it with `await hub.listen(port)`. */
export function createHub(options: HubOptions = {}): Hub {
  return new Hub(options);
}
