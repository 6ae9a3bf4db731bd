/**
 * `wsengine/hub-client`: a client for the wsengine hub's native JSON protocol that runs over any WHATWG-style
 * `WebSocket` — the browser's own, or this package's `WebSocket` in Node — so the same code works in both.
 *
 * It compiles to plain ESM a browser loads as it is: it imports nothing and uses only `WebSocket` (passed in or
 * `globalThis.WebSocket`), `setTimeout`/`clearTimeout`, `URL` and `Math.random`.
 *
 * What it does for the application:
 * - reconnects with exponential backoff and full jitter, up to a maximum delay, and resets the backoff once a
 *   connection has stayed open for `backoff.stableAfter` ms;
 * - re-sends every subscription after a reconnect with the last position seen (`since`), so the hub replays what
 *   was missed, and drops any message it has already delivered (same topic, epoch and an older or equal `seq`);
 * - queues publishes and requests while disconnected, in a bounded queue with a chosen overflow behaviour;
 * - answers the hub's app-level pings, and probes a silent connection itself, closing and reconnecting when the
 *   hub does not answer;
 * - acts on close codes by meaning (see {@link defaultCloseAction}); on 4401 it asks the application for a new
 *   token and reconnects;
 * - matches requests to replies by `request_id`, with a timeout, and rejects with a {@link HubError} carrying the
 *   hub's error `code`.
 *
 * @module
 */

// The module declares the few host APIs it uses instead of relying on the DOM or Node type libraries: compiling it
// with neither proves that it uses nothing else. These declarations shadow the globals inside this module only and
// emit no code.
declare function setTimeout(handler: () => void, ms: number): unknown;
declare function clearTimeout(handle: unknown): void;
declare const URL: new (url: string) => { protocol: string; hash: string; href: string; searchParams: { set(name: string, value: string): void } };

/** The subset of the WHATWG `WebSocket` interface the client uses. The browser's and this package's both fit. */
export interface WebSocketLike {
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  /** The subprotocol the server selected. */
  readonly protocol: string;
  binaryType: string;
  onopen: ((event: any) => unknown) | null;
  onmessage: ((event: any) => unknown) | null;
  onclose: ((event: any) => unknown) | null;
  onerror: ((event: any) => unknown) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WHATWG-style `WebSocket` constructor. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Connection state. See {@link HubClient.state}. */
export type HubClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** A position in one topic's stream: the last sequence number seen in an epoch. */
export interface StreamPosition {
  epoch: string;
  seq: number;
}

/** Where a wildcard subscription resumes: a position per topic, and the tenant stream offset its ack reported. */
export interface PatternSince {
  positions?: Record<string, StreamPosition>;
  offset?: number;
  /**
   * The ack's `offsetEpoch`, sent back with `offset`: when the hub's offsets restarted (a hub without a persistent
   * backplane restarted, a broker lost its data), it replays everything it holds for the matching topics instead
   * of trusting an offset that no longer means anything.
   */
  offsetEpoch?: string;
}

/** A missing range of sequence numbers (inclusive) in a topic's epoch, as the hub reported it. */
export interface GapReport {
  topic: string;
  tenant?: string;
  epoch: string;
  /** First missing sequence number. */
  from: number;
  /**
   * Last missing sequence number, inclusive. `Infinity` when the hub cannot know it: the epoch itself was lost (a
   * broker restarted without persistence; the hub sends 9007199254740991, `Number.MAX_SAFE_INTEGER`). Then
   * everything after `from` in `epoch` is missing, and the topic goes on in a new epoch (its messages arrive
   * with the new epoch, seq from 1).
   */
  to: number;
  /**
   * `'report'`: a `gap` frame (slow-consumer drop, or messages lost between hubs); `'resume'`: listed in a
   * subscribe ack (beyond history).
   */
  source: 'report' | 'resume';
}

/** A message from the hub as the application receives it. */
export interface HubMessage {
  /** The publisher's (or sender's) type. */
  type: string;
  /** The publisher's data. */
  data: unknown;
  /** Set for topic messages; absent for user, connection and broadcast messages. */
  topic?: string;
  tenant?: string;
  /** Sequence number in the topic's epoch (topic messages). */
  seq?: number;
  epoch?: string;
  /** Publication time, ms since 1970 (topic messages). */
  ts?: number;
  /** Who published it, when a client did: set by the hub from the publisher's verified token, never by a client. */
  from?: { user: string };
}

/** What a subscribe ack said. */
export interface SubscribeResult {
  topic: string;
  tenant?: string;
  /** Current position of an exact topic when the hub reports it. */
  epoch?: string;
  seq?: number;
  /** Tenant stream offset (wildcard subscriptions), when the hub reports it. */
  offset?: number;
  /** The epoch of `offset` (wildcard subscriptions), when the hub reports it. */
  offsetEpoch?: string;
  /** Whether everything missed since the `since` position was replayed (true for a fresh subscription). */
  recovered: boolean;
  /** Ranges that could not be replayed. */
  gaps: GapReport[];
  /** Whether this ack answers a re-subscription after a reconnect. */
  resubscribed: boolean;
}

/** Hub error codes (`error` frames) and the client's own. */
export type HubErrorCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'subscription_failed'
  | 'rate_limited'
  | 'internal_error'
  /** No reply within the request timeout. */
  | 'timeout'
  /** The connection dropped after the request was sent; whether the hub acted on it is unknown. */
  | 'connection_lost'
  /** The offline queue was full (see {@link QueueOptions.overflow}). */
  | 'queue_overflow'
  /** The client was closed (by the application or by a close code that stops it) before the request completed. */
  | 'closed'
  /** The token provider or `onTokenExpired` failed. */
  | 'token'
  /** The hub sent something that is not valid protocol. */
  | 'protocol';

/** An error from the hub (an `error` reply, with its `code`) or from the client (timeout, queue, closed, …). */
export class HubError extends Error {
  /** The hub's error code, or the client's (see {@link HubErrorCode}). */
  readonly code: HubErrorCode | (string & {});
  /** The request this error answers, when it answers one. */
  readonly requestId: number | undefined;
  constructor(code: string, message: string, requestId?: number) {
    super(message);
    this.name = 'HubError';
    this.code = code;
    this.requestId = requestId;
  }
}

/** What the client does after a close. */
export type CloseAction = 'reconnect' | 'stop' | 'token';

/** Details of a closed connection, given to the `disconnect` event and to `closeAction`. */
export interface DisconnectInfo {
  code: number;
  reason: string;
  wasClean: boolean;
  /** True when the client itself ended the connection (no answer to its heartbeat probe, or connect timeout). */
  local: boolean;
}

/**
 * The default meaning of close codes:
 * - `1000` normal closure, `4429` too many connections / rate limited → `'stop'`;
 * - `1002`, `1003`, `1007`, `1008`, `1009`, `1010`, `1015` (the client broke a rule, or TLS failed: reconnecting
 *   would fail the same way) and `4403` (forbidden) → `'stop'`;
 * - `4401` (bad or expired token) → `'token'`: ask for a new token, then reconnect;
 * - everything else → `'reconnect'`: 1001 going away, 1005 no status, 1006 dropped, 1011 server error, 1012 restart,
 *   1013 try again later, 1014, 4000 (hub asks to reconnect), and any other application code (4xxx), since an
 *   unknown code more likely names a transient condition and the backoff protects the hub.
 */
export function defaultCloseAction(code: number): CloseAction {
  if (code === 4401) return 'token';
  if (code === 1000 || code === 4429 || code === 4403) return 'stop';
  if (code === 1002 || code === 1003 || code === 1007 || code === 1008 || code === 1009 || code === 1010 || code === 1015) return 'stop';
  return 'reconnect';
}

/** Reconnect timing. */
export interface BackoffOptions {
  /** Ceiling of the first delay, ms. Default: 500. */
  initialDelay?: number;
  /** Largest ceiling, ms. Default: 30,000. */
  maxDelay?: number;
  /** Growth of the ceiling per failed attempt. Default: 2. */
  multiplier?: number;
  /**
   * A connection open at least this long (ms) counts as stable: the next reconnect starts again from attempt 0.
   * Default: 5,000.
   */
  stableAfter?: number;
  /** Consecutive failed attempts before giving up (state `closed`, `error` event). Default: Infinity. */
  maxAttempts?: number;
}

/** Defaults of {@link BackoffOptions}. */
export const BACKOFF_DEFAULTS = { initialDelay: 500, maxDelay: 30_000, multiplier: 2, stableAfter: 5_000, maxAttempts: Infinity } as const;

/**
 * The delay before reconnect attempt `attempt` (0-based), with full jitter: uniformly random in
 * `[0, min(maxDelay, initialDelay × multiplier^attempt))`, so that many clients dropped at once do not return at
 * once. `random` returns a number in [0, 1) (default `Math.random`).
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  checkObject('backoffDelay options', options, OPTION_KEYS.backoff);
  const initial = options.initialDelay ?? BACKOFF_DEFAULTS.initialDelay;
  const max = options.maxDelay ?? BACKOFF_DEFAULTS.maxDelay;
  const multiplier = options.multiplier ?? BACKOFF_DEFAULTS.multiplier;
  const ceiling = Math.min(max, initial * Math.pow(multiplier, Math.min(attempt, 1000)));
  const r = random();
  return Math.floor(ceiling * (r >= 0 && r < 1 ? r : 0));
}

/** The offline queue. */
export interface QueueOptions {
  /** Most publishes and requests held while not connected. 0 makes them fail at once when offline. Default: 100. */
  max?: number;
  /**
   * What happens when the queue is full: `'reject-newest'` (default) rejects the new call with a `queue_overflow`
   * {@link HubError} and keeps what is queued; `'drop-oldest'` rejects the oldest queued call that way and queues
   * the new one.
   */
  overflow?: 'reject-newest' | 'drop-oldest';
}

/** Defaults of {@link QueueOptions}. */
export const QUEUE_DEFAULTS = { max: 100, overflow: 'reject-newest' } as const;

/** Dead-connection detection. */
export interface HeartbeatOptions {
  /**
   * After this many ms without any frame from the hub, the client sends its own `ping`. The hub's app-level pings
   * (every 30 s by default) count as frames. Default: 40,000.
   */
  idle?: number;
  /** Ms to wait for any frame after that probe before the connection is declared dead, closed and re-opened. Default: 10,000. */
  timeout?: number;
}

/** Defaults of {@link HeartbeatOptions}. */
export const HEARTBEAT_DEFAULTS = { idle: 40_000, timeout: 10_000 } as const;

/** A token, or a function giving one (called before every connection attempt). */
export type TokenProvider = string | (() => string | Promise<string>);

/** Options of {@link HubClient}. */
export interface HubClientOptions {
  /** The hub's WebSocket URL (`ws:`/`wss:`; `http:`/`https:` are mapped to them). Required. */
  url: string | { href: string };
  /** The WebSocket constructor. Default: `globalThis.WebSocket` (a TypeError when there is none). */
  WebSocket?: WebSocketConstructor;
  /** Extra subprotocols offered after the token's (`['bearer', token]`). Default: none. */
  protocols?: readonly string[];
  /** The token, or a function called before every connection attempt. Default: none (no authentication). */
  token?: TokenProvider;
  /**
   * How the token is sent: `'subprotocol'` (default) offers `['bearer', token]`, which keeps it out of URLs and
   * logs; `'query'` appends `?<tokenParam>=<token>` (for tokens with characters a subprotocol cannot carry, or
   * one-time tickets); `'message'` sends `{"type":"auth","token"}` first and waits for `auth_ok`.
   */
  tokenPlacement?: 'subprotocol' | 'query' | 'message';
  /** Query parameter for `tokenPlacement: 'query'`. Default: `'token'`. */
  tokenParam?: string;
  /**
   * Called when the hub closes with 4401 (bad or expired token): return (or resolve) a new token to reconnect
   * with, or null/undefined to stop. Without it, a function `token` is simply called again; a fixed string token
   * stops the client (reconnecting with it would be refused again).
   */
  onTokenExpired?: (info: DisconnectInfo) => string | null | undefined | Promise<string | null | undefined>;
  /** Reconnect timing. */
  backoff?: BackoffOptions;
  /** Offline queue. */
  queue?: QueueOptions;
  /** Dead-connection detection, or false to rely on the hub and the WebSocket alone. */
  heartbeat?: HeartbeatOptions | false;
  /** Ms a request (subscribe, unsubscribe, publish, request, refresh) waits for its reply once sent. Default: 10,000. */
  requestTimeout?: number;
  /** Ms the opening handshake (and the `auth` reply) may take before the attempt counts as failed. Default: 10,000. */
  connectTimeout?: number;
  /** Overrides {@link defaultCloseAction}: return an action, or undefined for the default. */
  closeAction?: (info: DisconnectInfo) => CloseAction | undefined;
  /** Topics whose last position is remembered (least recently updated forgotten first). Default: 10,000. */
  maxTrackedTopics?: number;
  /** Random numbers in [0, 1) for the jitter (tests). Default: `Math.random`. */
  random?: () => number;
  /** Clock in ms, used to tell whether a connection was stable (tests). Default: `Date.now`. */
  now?: () => number;
}

/** Events of {@link HubClient}, with their listener signatures. */
export interface HubClientEvents {
  /** A message from the hub, each (topic, epoch, seq) delivered at most once. */
  message: (message: HubMessage) => void;
  /** The connection state changed. */
  state: (state: HubClientState, previous: HubClientState) => void;
  /** Messages the hub could not deliver or replay. */
  gap: (gap: GapReport) => void;
  /** A subscription was acknowledged (first time or after a reconnect). */
  subscribed: (result: SubscribeResult) => void;
  /** The connection closed; `action` says what the client does next, `delay` when it reconnects (ms). */
  disconnect: (info: DisconnectInfo & { action: CloseAction; delay?: number }) => void;
  /** Something went wrong that no promise reports: a bad frame, a failed re-subscription, a token provider error. */
  error: (error: HubError) => void;
  /** A text frame that is not JSON. */
  text: (text: string) => void;
  /** A binary frame (the hub's protocol is text; this is for applications that add their own). */
  binary: (data: ArrayBuffer) => void;
}

/** Per-call options of requests. */
export interface RequestOptions {
  /** Ms to wait for the reply once sent. Default: the client's `requestTimeout`. */
  timeout?: number;
}

/** Options of {@link HubClient.subscribe}. */
export interface SubscribeOptions {
  /** The tenant (default: the hub's, `default`). */
  tenant?: string;
  /** Where to resume from on the first subscribe (see {@link HubClient.position}); later reconnects use the last position delivered. */
  since?: StreamPosition | PatternSince;
  /**
   * Also receive `join` / `leave` events for this topic or pattern (as subscribed): `message` events of type `join`
   * or `leave` with `data: { tenant, topic, user }`, when a user's first connection subscribes or its last one goes
   * (never for the user itself). Ask for the users already there with `request('presence', { topic })`.
   * Default: false.
   */
  presence?: boolean;
}

/** What to publish. */
export interface PublishOptions {
  topic: string;
  /** The message type subscribers receive. */
  type: string;
  data?: unknown;
  tenant?: string;
}

interface Pending {
  id: number;
  resolve: (value: any) => void;
  reject: (error: HubError) => void;
  timer: unknown;
  /** For subscribe requests: the subscription it belongs to. */
  sub?: Subscription;
  auth?: boolean;
}

interface Outgoing {
  /** The frame as JSON, without its request_id (added when sent). */
  text: string;
  timeout: number;
  resolve: (value: any) => void;
  reject: (error: HubError) => void;
}

interface Subscription {
  key: string;
  topic: string;
  tenant: string | undefined;
  pattern: boolean;
  /** Asked for `join`/`leave` events (sent again with every re-subscription). */
  presence: boolean;
  /** The tenant the hub resolved in its ack (for position keys). */
  ackTenant: string | undefined;
  /** Wildcard subscriptions: tenant stream offset from the first ack (of its offset epoch). */
  offset: number | undefined;
  offsetEpoch: string | undefined;
  /** Position given by the application for the first subscribe. */
  since: StreamPosition | PatternSince | undefined;
  acked: boolean;
  /** The last ack, for a repeated subscribe() of a held subscription. */
  last: SubscribeResult | undefined;
  waiters: Array<{ resolve: (r: SubscribeResult) => void; reject: (e: HubError) => void }>;
}

const RESERVED_TYPES = new Set(['subscribe', 'unsubscribe', 'publish', 'auth', 'refresh', 'pong']);

function isPattern(topic: string): boolean {
  return topic.split('.').some((s) => s === '*' || s === '#');
}

/** Whether `topic` matches a subscription `pattern` (`*` one segment, `#` zero or more, `.` separated). */
export function topicMatches(pattern: string, topic: string): boolean {
  if (pattern === topic) return true;
  const p = pattern.split('.');
  const t = topic.split('.');
  const from = (i: number, j: number): boolean => {
    for (; i < p.length; i++, j++) {
      if (p[i] === '#') {
        if (i === p.length - 1) return true;
        for (let k = j; k <= t.length; k++) if (from(i + 1, k)) return true;
        return false;
      }
      if (j >= t.length || (p[i] !== '*' && p[i] !== t[j])) return false;
    }
    return j === t.length;
  };
  return from(0, 0);
}

function positionKey(tenant: string | undefined, topic: string): string {
  return `${tenant ?? ''}\u0000${topic}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value as an error message shows it: type and a short rendering. */
function shown(v: unknown): string {
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'function') return 'a function';
  return `${typeof v} ${String(v)}`;
}

/**
 * `v` must be a plain object whose keys are all in `accepted` (a misspelt or misplaced option is a mistake the
 * application wants to hear about, not a setting silently ignored).
 */
function checkObject(name: string, v: unknown, accepted: readonly string[], or = ''): void {
  if (!isObject(v)) throw new TypeError(`${name} must be an object${or}, got ${shown(v)}`);
  for (const key of Object.keys(v)) {
    if (!accepted.includes(key)) {
      throw new TypeError(`${name}: unknown option "${key}"; ${accepted.length === 0 ? 'it takes no options' : `accepted: ${accepted.join(', ')}`}`);
    }
  }
}

/** A duration in ms (or a count): a number (TypeError otherwise), non-negative and finite unless allowed (RangeError). */
function checkMs(name: string, value: unknown, allowInfinity = false, unit = 'milliseconds'): void {
  if (value === undefined) return;
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number (${unit}${allowInfinity ? ' or Infinity' : ''}), got ${shown(value)}`);
  if (Number.isNaN(value) || value < 0 || (!allowInfinity && !Number.isFinite(value))) {
    throw new RangeError(`${name} must be a non-negative ${allowInfinity ? 'number' : 'finite number'}, got ${String(value)}`);
  }
}

function checkTopic(topic: unknown, name = 'topic'): asserts topic is string {
  if (typeof topic !== 'string' || topic.length === 0) throw new TypeError(`${name} must be a non-empty string, got ${typeof topic === 'string' ? '""' : shown(topic)}`);
}

function checkTenant(tenant: unknown, name = 'tenant'): void {
  if (tenant !== undefined && (typeof tenant !== 'string' || tenant.length === 0)) throw new TypeError(`${name} must be a non-empty string when given, got ${typeof tenant === 'string' ? '""' : shown(tenant)}`);
}

/** Keys of every options object the client takes, for {@link checkObject}. */
const OPTION_KEYS = {
  client: ['url', 'WebSocket', 'protocols', 'token', 'tokenPlacement', 'tokenParam', 'onTokenExpired', 'backoff', 'queue', 'heartbeat', 'requestTimeout', 'connectTimeout', 'closeAction', 'maxTrackedTopics', 'random', 'now'],
  backoff: ['initialDelay', 'maxDelay', 'multiplier', 'stableAfter', 'maxAttempts'],
  queue: ['max', 'overflow'],
  heartbeat: ['idle', 'timeout'],
  subscribe: ['tenant', 'since', 'presence'],
  unsubscribe: ['tenant', 'timeout'],
  publish: ['topic', 'type', 'data', 'tenant'],
  request: ['timeout'],
  position: ['epoch', 'seq'],
  patternSince: ['positions', 'offset', 'offsetEpoch'],
} as const satisfies Record<string, readonly string[]>;

/** Characters of an HTTP token (RFC 9110), which a subprotocol must be. */
const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * A client of the wsengine hub. Create it, add listeners, then `connect()`.
 *
 * States: `closed` (initial, and after `close()` or a close code that stops it) → `connecting` → `open`; a drop
 * moves `open` to `reconnecting` (waiting for the backoff delay, then connecting again) and back to `open`.
 */
export class HubClient {
  private readonly url: string;
  private readonly WS: WebSocketConstructor;
  private readonly protocols: readonly string[];
  private readonly tokenProvider: TokenProvider | undefined;
  private readonly placement: 'subprotocol' | 'query' | 'message';
  private readonly tokenParam: string;
  private readonly onTokenExpired: HubClientOptions['onTokenExpired'];
  private readonly backoff: Required<BackoffOptions>;
  private readonly queueMax: number;
  private readonly overflow: 'reject-newest' | 'drop-oldest';
  private readonly heartbeat: Required<HeartbeatOptions> | null;
  private readonly requestTimeout: number;
  private readonly connectTimeout: number;
  private readonly closeActionOverride: HubClientOptions['closeAction'];
  private readonly maxTracked: number;
  private readonly random: () => number;
  private readonly now: () => number;

  private currentState: HubClientState = 'closed';
  private ws: WebSocketLike | null = null;
  /** Incremented whenever a connection attempt is abandoned, so late callbacks of an old attempt do nothing. */
  private generation = 0;
  private attempt = 0;
  private openedAt = 0;
  private tokenOverride: string | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly queue: Outgoing[] = [];
  private readonly subs = new Map<string, Subscription>();
  private readonly positions = new Map<string, StreamPosition>();
  private readonly listeners = new Map<keyof HubClientEvents, Set<(...args: any[]) => void>>();
  private openWaiters: Array<{ resolve: () => void; reject: (e: HubError) => void }> = [];
  private timers = { reconnect: undefined as unknown, connect: undefined as unknown, idle: undefined as unknown, probe: undefined as unknown };
  private heardFrom = false;
  private readonly counters = { delivered: 0, duplicates: 0, reconnects: 0, connections: 0 };

  constructor(options: HubClientOptions) {
    if (!isObject(options)) throw new TypeError(`HubClient options must be an object with at least { url }, got ${shown(options)}`);
    checkObject('HubClient options', options, OPTION_KEYS.client);
    const rawUrl = typeof options.url === 'string' ? options.url : isObject(options.url) && typeof options.url.href === 'string' ? options.url.href : undefined;
    if (rawUrl === undefined) throw new TypeError(`options.url must be a string or a URL, got ${shown(options.url)}`);
    let parsed;
    try {
      parsed = new URL(rawUrl);
    } catch {
      throw new TypeError(`options.url is not a valid URL: ${rawUrl}`);
    }
    if (parsed.protocol === 'http:') parsed.protocol = 'ws:';
    else if (parsed.protocol === 'https:') parsed.protocol = 'wss:';
    if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw new TypeError(`options.url must use ws:, wss:, http: or https:, got ${parsed.protocol}`);
    if (parsed.hash) throw new TypeError('options.url must not have a #fragment');
    this.url = parsed.href;

    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (options.WebSocket !== undefined && typeof options.WebSocket !== 'function') throw new TypeError(`options.WebSocket must be a WebSocket constructor, got ${shown(options.WebSocket)}`);
    if (typeof WS !== 'function') throw new TypeError('no WebSocket constructor: pass options.WebSocket (in Node: import { WebSocket } from "wsengine")');
    this.WS = WS;

    if (options.protocols !== undefined && (!Array.isArray(options.protocols) || !options.protocols.every((p) => typeof p === 'string' && TOKEN_CHARS.test(p)))) {
      throw new TypeError(`options.protocols must be an array of subprotocol names (HTTP tokens), got ${shown(options.protocols)}`);
    }
    this.protocols = options.protocols ?? [];
    if (options.token !== undefined && typeof options.token !== 'string' && typeof options.token !== 'function') {
      throw new TypeError(`options.token must be a string or a function returning one (or a promise of one), got ${shown(options.token)}`);
    }
    if (typeof options.token === 'string' && options.token.length === 0) throw new TypeError('options.token must not be empty');
    this.tokenProvider = options.token;
    const placement = options.tokenPlacement ?? 'subprotocol';
    if (placement !== 'subprotocol' && placement !== 'query' && placement !== 'message') {
      throw new TypeError(`options.tokenPlacement must be 'subprotocol', 'query' or 'message', got ${shown(placement)}`);
    }
    this.placement = placement;
    if (options.tokenParam !== undefined && (typeof options.tokenParam !== 'string' || options.tokenParam.length === 0)) throw new TypeError(`options.tokenParam must be a non-empty string, got ${shown(options.tokenParam)}`);
    this.tokenParam = options.tokenParam ?? 'token';
    for (const name of ['onTokenExpired', 'closeAction', 'random', 'now'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'function') throw new TypeError(`options.${name} must be a function, got ${shown(options[name])}`);
    }
    this.onTokenExpired = options.onTokenExpired;
    this.closeActionOverride = options.closeAction;

    const b: BackoffOptions = options.backoff ?? {};
    checkObject('options.backoff', b, OPTION_KEYS.backoff);
    checkMs('backoff.initialDelay', b.initialDelay);
    checkMs('backoff.maxDelay', b.maxDelay);
    checkMs('backoff.stableAfter', b.stableAfter);
    checkMs('backoff.maxAttempts', b.maxAttempts, true, 'a count');
    if (b.multiplier !== undefined && typeof b.multiplier !== 'number') throw new TypeError(`backoff.multiplier must be a number >= 1, got ${shown(b.multiplier)}`);
    if (b.multiplier !== undefined && (!(b.multiplier >= 1) || !Number.isFinite(b.multiplier))) {
      throw new RangeError(`backoff.multiplier must be a finite number >= 1, got ${String(b.multiplier)}`);
    }
    this.backoff = { ...BACKOFF_DEFAULTS, ...stripUndefined(b) };
    if (this.backoff.initialDelay > this.backoff.maxDelay) throw new RangeError('backoff.initialDelay must not exceed backoff.maxDelay');

    const q: QueueOptions = options.queue ?? {};
    checkObject('options.queue', q, OPTION_KEYS.queue);
    checkMs('queue.max', q.max, false, 'a count');
    if (q.max !== undefined && !Number.isInteger(q.max)) throw new RangeError(`queue.max must be an integer, got ${q.max}`);
    if (q.overflow !== undefined && q.overflow !== 'reject-newest' && q.overflow !== 'drop-oldest') {
      throw new TypeError(`queue.overflow must be 'reject-newest' or 'drop-oldest', got ${shown(q.overflow)}`);
    }
    this.queueMax = q.max ?? QUEUE_DEFAULTS.max;
    this.overflow = q.overflow ?? QUEUE_DEFAULTS.overflow;

    if (options.heartbeat === false) {
      this.heartbeat = null;
    } else {
      const h: HeartbeatOptions = options.heartbeat ?? {};
      checkObject('options.heartbeat', h, OPTION_KEYS.heartbeat, ' or false');
      checkMs('heartbeat.idle', h.idle);
      checkMs('heartbeat.timeout', h.timeout);
      if (h.idle === 0 || h.timeout === 0) throw new RangeError('heartbeat.idle and heartbeat.timeout must be positive (use heartbeat: false to disable)');
      this.heartbeat = { ...HEARTBEAT_DEFAULTS, ...stripUndefined(h) };
    }
    checkMs('options.requestTimeout', options.requestTimeout);
    checkMs('options.connectTimeout', options.connectTimeout);
    this.requestTimeout = options.requestTimeout ?? 10_000;
    this.connectTimeout = options.connectTimeout ?? 10_000;
    if (options.maxTrackedTopics !== undefined && typeof options.maxTrackedTopics !== 'number') throw new TypeError(`options.maxTrackedTopics must be a positive integer, got ${shown(options.maxTrackedTopics)}`);
    if (options.maxTrackedTopics !== undefined && (!Number.isInteger(options.maxTrackedTopics) || options.maxTrackedTopics < 1)) {
      throw new RangeError(`options.maxTrackedTopics must be a positive integer, got ${String(options.maxTrackedTopics)}`);
    }
    this.maxTracked = options.maxTrackedTopics ?? 10_000;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
  }

  /** The connection state. */
  get state(): HubClientState {
    return this.currentState;
  }

  /**
   * Counters: topic messages delivered, duplicates dropped, connections opened (`connections`) and those after the
   * first (`reconnects`), calls waiting in the offline queue (`queued`) and requests awaiting a reply (`pending`).
   */
  get stats(): { delivered: number; duplicates: number; reconnects: number; connections: number; queued: number; pending: number } {
    return { ...this.counters, queued: this.queue.length, pending: this.pending.size };
  }

  /** The subscriptions (topics or patterns, with their tenant) the client holds and re-sends after a reconnect. */
  get subscriptions(): Array<{ topic: string; tenant?: string }> {
    return [...this.subs.values()].map((s) => (s.tenant === undefined ? { topic: s.topic } : { topic: s.topic, tenant: s.tenant }));
  }

  /** The last position delivered for a topic (to persist and pass as `since` later), or undefined. */
  position(topic: string, tenant?: string): StreamPosition | undefined {
    checkTopic(topic);
    checkTenant(tenant);
    let p = this.positions.get(positionKey(tenant, topic));
    if (p === undefined && tenant === undefined) {
      // The hub names the tenant in its messages even when the subscription did not: accept a single match.
      const found = [...this.positions].filter(([key]) => key.endsWith(`\u0000${topic}`));
      if (found.length === 1) p = found[0][1];
    }
    return p === undefined ? undefined : { ...p };
  }

  /**
   * Adds a listener; returns a function that removes it. Listeners run synchronously in the order added; one that
   * throws does not disturb the client or the other listeners, and its exception is reported like an uncaught one
   * (`reportError` in browsers; in Node it is rethrown from a timer, which ends the process unless handled).
   */
  on<K extends keyof HubClientEvents>(event: K, listener: HubClientEvents[K]): () => void {
    if (typeof listener !== 'function') throw new TypeError(`listener for "${String(event)}" must be a function`);
    if (!EVENTS.has(event)) throw new TypeError(`unknown event "${String(event)}"; events: ${[...EVENTS].join(', ')}`);
    let set = this.listeners.get(event);
    if (set === undefined) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => this.off(event, listener);
  }

  /** Removes a listener. */
  off<K extends keyof HubClientEvents>(event: K, listener: HubClientEvents[K]): void {
    this.listeners.get(event)?.delete(listener);
  }

  private emit<K extends keyof HubClientEvents>(event: K, ...args: Parameters<HubClientEvents[K]>): void {
    const set = this.listeners.get(event);
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (error) {
        // A throwing listener must not corrupt the client's state; report it as the platform reports listener errors.
        const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
        if (typeof report === 'function') report(error);
        else setTimeout(() => { throw error; }, 0);
      }
    }
  }

  private setState(next: HubClientState): void {
    const previous = this.currentState;
    if (previous === next) return;
    this.currentState = next;
    this.emit('state', next, previous);
  }

  /**
   * Starts connecting (when closed) and resolves once the connection is open (at once when it is). Rejects with a
   * `closed` {@link HubError} if the client stops before that (close code that stops it, `close()`, attempts
   * exhausted). Reconnection continues in the background after failed attempts: the promise waits for it. Not
   * awaiting it is fine: a rejection of this promise alone is never reported as unhandled.
   */
  connect(): Promise<void> {
    if (this.currentState === 'open') return Promise.resolve();
    const promise = new Promise<void>((resolve, reject) => this.openWaiters.push({ resolve, reject }));
    // `client.connect()` without await is common: its rejection is also reported by events, so it must not
    // become an unhandled rejection. Awaiting callers still receive it.
    promise.catch(() => {});
    if (this.currentState === 'closed') {
      this.attempt = 0;
      this.setState('connecting');
      void this.open();
    }
    return promise;
  }

  /**
   * Closes the connection (code 1000 by default) and stops reconnecting. Queued and in-flight calls are rejected
   * with `closed`; subscriptions are kept (with their positions) for a later `connect()`, except those never
   * acknowledged, which are dropped with their promises rejected.
   */
  close(code = 1000, reason = ''): void {
    if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) throw new RangeError(`close code must be 1000 or in 3000-4999, got ${code}`);
    if (typeof reason !== 'string') throw new TypeError('close reason must be a string');
    this.stop(new HubError('closed', 'the client was closed'), code, reason);
  }

  /**
   * Subscribes to a topic or a pattern (`*` one segment, `#` zero or more). Resolves with the hub's ack; rejects
   * with the hub's error (the subscription is then dropped), on timeout, or when the client is closed. While
   * disconnected the subscription is recorded and sent on the next connection (the request timeout starts when it
   * is sent). Subscribing again to a held subscription resolves with its last ack (or its first, when pending).
   * `since` starts from a stored position (see {@link HubClient.position}); later reconnects use the last position
   * delivered. `presence: true` adds `join`/`leave` events (see {@link SubscribeOptions.presence}); the options of a
   * repeated subscribe to a held subscription are not applied (unsubscribe first to change them). An unknown option
   * or one of the wrong type throws a TypeError.
   */
  subscribe(topic: string, options: SubscribeOptions = {}): Promise<SubscribeResult> {
    checkTopic(topic);
    checkObject('subscribe options', options, OPTION_KEYS.subscribe);
    checkTenant(options.tenant, 'subscribe options.tenant');
    if (options.presence !== undefined && typeof options.presence !== 'boolean') throw new TypeError(`subscribe options.presence must be true or false, got ${shown(options.presence)}`);
    const pattern = isPattern(topic);
    if (options.since !== undefined) checkSince(options.since, pattern);
    const key = positionKey(options.tenant, topic);
    let sub = this.subs.get(key);
    const promise = new Promise<SubscribeResult>((resolve, reject) => {
      if (sub === undefined) {
        sub = { key, topic, tenant: options.tenant, pattern, presence: options.presence === true, ackTenant: undefined, offset: undefined, offsetEpoch: undefined, since: options.since, acked: false, last: undefined, waiters: [] };
        this.subs.set(key, sub);
        sub.waiters.push({ resolve, reject });
        if (this.currentState === 'open') this.sendSubscribe(sub);
      } else if (sub.last !== undefined) {
        resolve(sub.last);
      } else {
        sub.waiters.push({ resolve, reject });
      }
    });
    return promise;
  }

  /**
   * Unsubscribes. Resolves true when the subscription was held (after the hub's ack when connected), false when
   * there was none. Positions of topics no other subscription covers are forgotten.
   */
  unsubscribe(topic: string, options: { tenant?: string } & RequestOptions = {}): Promise<boolean> {
    checkTopic(topic);
    checkObject('unsubscribe options', options, OPTION_KEYS.unsubscribe);
    checkTenant(options.tenant, 'unsubscribe options.tenant');
    checkMs('unsubscribe options.timeout', options.timeout);
    const sub = this.subs.get(positionKey(options.tenant, topic));
    if (sub === undefined) return Promise.resolve(false);
    this.subs.delete(sub.key);
    for (const w of sub.waiters.splice(0)) w.reject(new HubError('closed', `unsubscribed from ${topic} before the hub acknowledged the subscription`));
    this.forgetPositions(sub);
    if (this.currentState !== 'open') return Promise.resolve(true);
    return this.sendRequest(this.frame('unsubscribe', withTenant({ topic }, sub.tenant)), options.timeout ?? this.requestTimeout).then(() => true);
  }

  /**
   * Publishes to a topic. Resolves with the hub's ack data (`{ seq, epoch }` from the hub). While disconnected
   * the call waits in the offline queue (see {@link QueueOptions}). A publish sent when the connection drops is
   * rejected with `connection_lost` — not re-sent, since the hub may have received it; re-publish if you need to.
   */
  publish(message: PublishOptions, options: RequestOptions = {}): Promise<Record<string, unknown>> {
    if (!isObject(message)) throw new TypeError(`publish takes { topic, type, data, tenant? }, got ${shown(message)}`);
    checkObject('publish message', message, OPTION_KEYS.publish);
    checkTopic(message.topic, 'publish message.topic');
    if (isPattern(message.topic)) throw new TypeError(`cannot publish to a pattern (${message.topic}): "*" and "#" are for subscriptions`);
    if (typeof message.type !== 'string' || message.type.length === 0) throw new TypeError(`publish message.type must be a non-empty string, got ${typeof message.type === 'string' ? '""' : shown(message.type)}`);
    checkTenant(message.tenant, 'publish message.tenant');
    return this.call(this.frame('publish', withTenant({ topic: message.topic, type: message.type, data: message.data ?? null }, message.tenant)), options, 'publish options');
  }

  /**
   * Sends a request of any application type (handed to the hub's `message` handler) and resolves with the ack's
   * data (`{}` when it has none). Queued while disconnected. `subscribe`, `unsubscribe`, `publish`, `auth`,
   * `refresh` and `pong` have their own methods (TypeError here). `request('ping')` resolves on the hub's pong.
   */
  request(type: string, data?: unknown, options: RequestOptions = {}): Promise<Record<string, unknown>> {
    if (typeof type !== 'string' || type.length === 0) throw new TypeError('request type must be a non-empty string');
    if (RESERVED_TYPES.has(type)) throw new TypeError(`use the client's ${type === 'pong' ? 'automatic pong' : type + '()'} instead of request('${type}')`);
    return this.call(this.frame(type, data), options, 'request options');
  }

  /**
   * Gives the hub a new token without reconnecting (`{"type":"refresh","data":{"token"}}`), and uses it for later
   * connections. Without an argument the `token` function is called. When disconnected it only stores the token.
   */
  refreshToken(token?: string, options: RequestOptions = {}): Promise<void> {
    if (token === undefined && typeof this.tokenProvider !== 'function') throw new TypeError('refreshToken() needs a token, or options.token must be a function');
    if (token !== undefined && (typeof token !== 'string' || token.length === 0)) throw new TypeError('refreshToken: the token must be a non-empty string');
    checkObject('refreshToken options', options, OPTION_KEYS.request);
    checkMs('refreshToken options.timeout', options.timeout);
    return this.sendRefresh(token, options.timeout ?? this.requestTimeout);
  }

  private async sendRefresh(token: string | undefined, timeout: number): Promise<void> {
    if (token === undefined) {
      try {
        token = await (this.tokenProvider as () => string | Promise<string>)();
      } catch (error) {
        throw new HubError('token', `the token function failed: ${errorMessage(error)}`);
      }
      if (typeof token !== 'string' || token.length === 0) throw new HubError('token', 'the token function must return a non-empty string');
    }
    this.tokenOverride = token;
    if (this.currentState === 'open') await this.sendRequest(this.frame('refresh', { token }), timeout);
  }

  // --- connection lifecycle ---

  private async open(): Promise<void> {
    const generation = ++this.generation;
    let token: string | undefined;
    try {
      token = await this.obtainToken();
    } catch (error) {
      if (generation !== this.generation) return;
      this.emit('error', new HubError('token', `the token provider failed: ${errorMessage(error)}`));
      this.afterClose({ code: 1006, reason: 'no token', wasClean: false, local: true }, 'reconnect');
      return;
    }
    if (generation !== this.generation) return;
    let url = this.url;
    let protocols = [...this.protocols];
    if (token !== undefined) {
      if (this.placement === 'query') {
        const u = new URL(url);
        u.searchParams.set(this.tokenParam, token);
        url = u.href;
      } else if (this.placement === 'subprotocol') {
        if (!TOKEN_CHARS.test(token)) {
          this.fail(new HubError('token', "the token has characters a subprotocol cannot carry: use tokenPlacement: 'query' or 'message'"));
          return;
        }
        protocols = ['bearer', token, ...protocols];
      }
    }
    let ws: WebSocketLike;
    try {
      ws = protocols.length > 0 ? new this.WS(url, protocols) : new this.WS(url);
    } catch (error) {
      this.fail(new HubError('invalid_request', `the WebSocket constructor refused the connection: ${errorMessage(error)}`));
      return;
    }
    this.ws = ws;
    try {
      ws.binaryType = 'arraybuffer';
    } catch {
      // Some implementations have no binaryType setter; binary frames then arrive as they deliver them.
    }
    this.timers.connect = setTimeout(() => this.abandon(ws, 'connect timeout'), this.connectTimeout);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      if (this.placement === 'message' && token !== undefined) {
        const id = this.nextId++;
        this.pending.set(id, {
          id,
          auth: true,
          timer: undefined,
          resolve: () => this.opened(ws),
          reject: (e) => {
            this.emit('error', e);
            this.abandon(ws, 'authentication refused', 4401);
          },
        });
        this.write(JSON.stringify({ type: 'auth', token, request_id: id }));
      } else {
        this.opened(ws);
      }
    };
    ws.onmessage = (event: { data: unknown }) => {
      if (this.ws === ws) this.receive(event.data);
    };
    ws.onerror = () => {};
    ws.onclose = (event: { code?: number; reason?: string; wasClean?: boolean }) => {
      if (this.ws !== ws) return;
      this.connectionEnded({ code: typeof event.code === 'number' ? event.code : 1006, reason: String(event.reason ?? ''), wasClean: event.wasClean === true, local: false });
    };
  }

  private async obtainToken(): Promise<string | undefined> {
    if (this.tokenOverride !== undefined) {
      const token = this.tokenOverride;
      // A token given by onTokenExpired or refreshToken replaces a fixed token for good; with a provider function
      // it is used once and the provider is asked again next time.
      if (typeof this.tokenProvider === 'function') this.tokenOverride = undefined;
      return token;
    }
    if (typeof this.tokenProvider === 'function') {
      const token = await this.tokenProvider();
      if (typeof token !== 'string' || token.length === 0) throw new TypeError('the token function must return a non-empty string');
      return token;
    }
    return this.tokenProvider;
  }

  private opened(ws: WebSocketLike): void {
    clearTimeout(this.timers.connect);
    if (this.ws !== ws) return;
    this.openedAt = this.now();
    this.counters.connections++;
    if (this.counters.connections > 1) this.counters.reconnects++;
    this.setState('open');
    this.armIdle();
    for (const sub of this.subs.values()) this.sendSubscribe(sub);
    for (const item of this.queue.splice(0)) this.dispatch(item);
    for (const w of this.openWaiters.splice(0)) w.resolve();
  }

  /** Gives up on a socket the client no longer trusts (silent, or slow to open) and handles it as closed. */
  private abandon(ws: WebSocketLike, reason: string, code = 1006): void {
    if (this.ws !== ws) return;
    this.detach(ws);
    try {
      ws.close(4000, reason);
    } catch {
      // Already closing.
    }
    this.connectionEnded({ code, reason, wasClean: false, local: true });
  }

  private detach(ws: WebSocketLike): void {
    ws.onopen = ws.onmessage = ws.onerror = null;
    ws.onclose = null;
  }

  private connectionEnded(info: DisconnectInfo): void {
    const ws = this.ws;
    if (ws !== null) this.detach(ws);
    this.ws = null;
    this.clearConnectionTimers();
    const wasOpen = this.currentState === 'open';
    if (wasOpen && this.now() - this.openedAt >= this.backoff.stableAfter) this.attempt = 0;
    for (const p of [...this.pending.values()]) {
      if (p.sub !== undefined || p.auth) {
        // Subscriptions are re-sent on the next connection; their promises wait for that ack.
        clearTimeout(p.timer);
        this.pending.delete(p.id);
        continue;
      }
      this.settle(p.id, new HubError('connection_lost', `the connection closed (${info.code}) before the reply`, p.id));
    }
    const action = this.closeActionOverride?.(info) ?? defaultCloseAction(info.code);
    this.afterClose(info, action);
  }

  private afterClose(info: DisconnectInfo, action: CloseAction): void {
    if (this.currentState === 'closed') return;
    if (action === 'stop') {
      this.emit('disconnect', { ...info, action });
      this.stop(new HubError('closed', `the hub closed the connection with ${info.code}${info.reason ? ` (${info.reason})` : ''}`));
      return;
    }
    if (action === 'token') {
      this.emit('disconnect', { ...info, action });
      void this.renewToken(info);
      return;
    }
    this.scheduleReconnect(info);
  }

  private async renewToken(info: DisconnectInfo): Promise<void> {
    const generation = ++this.generation;
    this.setState('reconnecting');
    let token: string | null | undefined;
    try {
      if (this.onTokenExpired !== undefined) token = await this.onTokenExpired(info);
      else if (typeof this.tokenProvider === 'function') token = await this.tokenProvider();
      else token = null;
    } catch (error) {
      if (generation !== this.generation) return;
      this.fail(new HubError('token', `onTokenExpired failed: ${errorMessage(error)}`));
      return;
    }
    if (generation !== this.generation) return;
    if (token === null || token === undefined) {
      this.fail(new HubError('unauthorized', `the hub refused the token (${info.code}) and no new token was given`));
      return;
    }
    if (typeof token !== 'string' || token.length === 0) {
      this.fail(new HubError('token', 'onTokenExpired must return a non-empty string, or null to stop'));
      return;
    }
    // Used for the next connection (and, with a fixed token, for every later one).
    this.tokenOverride = token;
    this.scheduleReconnect(null);
  }

  private scheduleReconnect(info: DisconnectInfo | null): void {
    if (this.attempt >= this.backoff.maxAttempts) {
      if (info !== null) this.emit('disconnect', { ...info, action: 'stop' });
      this.fail(new HubError('closed', `gave up after ${this.attempt} failed attempts`));
      return;
    }
    const delay = backoffDelay(this.attempt, this.backoff, this.random);
    this.attempt++;
    if (info !== null) this.emit('disconnect', { ...info, action: 'reconnect', delay });
    const generation = ++this.generation;
    this.setState('reconnecting');
    this.timers.reconnect = setTimeout(() => {
      if (generation === this.generation) void this.open();
    }, delay);
  }

  /** Stops for good with an error event. */
  private fail(error: HubError): void {
    this.emit('error', error);
    this.stop(error);
  }

  private stop(reason: HubError, code = 1000, closeReason = ''): void {
    this.generation++;
    const ws = this.ws;
    this.ws = null;
    if (ws !== null) this.detach(ws);
    this.clearConnectionTimers();
    clearTimeout(this.timers.reconnect);
    for (const id of [...this.pending.keys()]) this.settle(id, new HubError('closed', reason.message, id));
    for (const item of this.queue.splice(0)) item.reject(new HubError('closed', reason.message));
    for (const sub of [...this.subs.values()]) {
      if (sub.acked) {
        for (const w of sub.waiters.splice(0)) w.reject(new HubError('closed', reason.message));
      } else {
        this.subs.delete(sub.key);
        for (const w of sub.waiters.splice(0)) w.reject(new HubError('closed', reason.message));
      }
    }
    this.setState('closed');
    for (const w of this.openWaiters.splice(0)) w.reject(reason);
    if (ws !== null && ws.readyState < 2) {
      try {
        ws.close(code, closeReason);
      } catch {
        // Already closing.
      }
    }
  }

  private clearConnectionTimers(): void {
    clearTimeout(this.timers.connect);
    clearTimeout(this.timers.idle);
    clearTimeout(this.timers.probe);
  }

  // --- heartbeat ---

  private armIdle(): void {
    const hb = this.heartbeat;
    const ws = this.ws;
    if (hb === null || ws === null) return;
    this.heardFrom = false;
    this.timers.idle = setTimeout(() => {
      if (this.ws !== ws) return;
      if (this.heardFrom) return this.armIdle();
      // Silent for a whole idle period: probe, and give up if nothing at all comes back.
      this.write('{"type":"ping","request_id":null}');
      this.timers.probe = setTimeout(() => {
        if (this.ws !== ws) return;
        if (this.heardFrom) this.armIdle();
        else this.abandon(ws, `no frame from the hub for ${hb.idle + hb.timeout} ms`);
      }, hb.timeout);
    }, hb.idle);
  }

  // --- outgoing ---

  /** A frame as JSON text (serialized once; the request_id is spliced in when it is sent). */
  private frame(type: string, data: unknown): string {
    try {
      return JSON.stringify(data === undefined ? { type } : { type, data });
    } catch (error) {
      throw new TypeError(`data must be JSON-serializable: ${errorMessage(error)}`);
    }
  }

  private write(text: string): boolean {
    const ws = this.ws;
    if (ws === null || ws.readyState !== 1) return false;
    try {
      ws.send(text);
      return true;
    } catch {
      return false;
    }
  }

  /** Sends now when open, else queues (bounded). */
  private call(text: string, options: RequestOptions, name: string): Promise<Record<string, unknown>> {
    checkObject(name, options, OPTION_KEYS.request);
    checkMs(`${name}.timeout`, options.timeout);
    const timeout = options.timeout ?? this.requestTimeout;
    return new Promise((resolve, reject) => {
      const item: Outgoing = { text, timeout, resolve, reject };
      if (this.currentState === 'open') return this.dispatch(item);
      if (this.currentState === 'closed') return reject(new HubError('closed', 'the client is closed: call connect() first'));
      if (this.queue.length >= this.queueMax) {
        if (this.overflow === 'reject-newest' || this.queueMax === 0) {
          return reject(new HubError('queue_overflow', `the offline queue is full (${this.queueMax}); the call was rejected`));
        }
        this.queue.shift()!.reject(new HubError('queue_overflow', `the offline queue is full (${this.queueMax}); the oldest call was dropped`));
      }
      this.queue.push(item);
    });
  }

  private dispatch(item: Outgoing): void {
    this.sendRequest(item.text, item.timeout).then(item.resolve, item.reject);
  }

  private sendRequest(text: string, timeout: number, sub?: Subscription): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const timer = setTimeout(() => this.settle(id, new HubError('timeout', `no reply to ${describe(text)} within ${timeout} ms`, id)), timeout);
      this.pending.set(id, { id, resolve, reject, timer, sub });
      if (!this.write(`${text.slice(0, -1)},"request_id":${id}}`)) {
        this.settle(id, new HubError('connection_lost', 'the connection closed before the request could be sent', id));
      }
    });
  }

  private settle(id: number, error: HubError | null, value?: unknown): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (error !== null) p.reject(error);
    else p.resolve(value);
  }

  private sendSubscribe(sub: Subscription): void {
    const data: Record<string, unknown> = withTenant({ topic: sub.topic }, sub.tenant);
    const since = this.sinceFor(sub);
    if (since !== undefined) data.since = since;
    if (sub.presence) data.presence = true;
    this.sendRequest(this.frame('subscribe', data), this.requestTimeout, sub).then(
      (ack) => this.subscribed(sub, ack, sub.acked),
      (error: HubError) => {
        if (this.subs.get(sub.key) !== sub) return;
        if (error.code === 'connection_lost' || error.code === 'closed') return;
        if (error.code === 'timeout' && sub.acked) {
          // A re-subscription with no answer: this connection is not working; start over.
          this.emit('error', error);
          if (this.ws !== null) this.abandon(this.ws, 're-subscription timed out');
          return;
        }
        this.subs.delete(sub.key);
        this.forgetPositions(sub);
        if (error.code === 'timeout' && this.currentState === 'open') this.write(this.frame('unsubscribe', withTenant({ topic: sub.topic }, sub.tenant)));
        if (sub.waiters.length === 0) this.emit('error', error);
        for (const w of sub.waiters.splice(0)) w.reject(error);
      },
    );
  }

  /** The `since` of a (re)subscription: the last positions delivered, else what the application gave. */
  private sinceFor(sub: Subscription): StreamPosition | PatternSince | undefined {
    if (!sub.pattern) {
      for (const tenant of tenantsOf(sub)) {
        const p = this.positions.get(positionKey(tenant, sub.topic));
        if (p !== undefined) return { ...p };
      }
      return sub.since as StreamPosition | undefined;
    }
    const given = (sub.since as PatternSince | undefined) ?? {};
    const positions: Record<string, StreamPosition> = { ...given.positions };
    for (const [topic, p] of this.trackedFor(sub)) positions[topic] = { ...p };
    const offset = sub.offset ?? given.offset;
    const offsetEpoch = sub.offset !== undefined ? sub.offsetEpoch : given.offsetEpoch;
    if (Object.keys(positions).length === 0 && offset === undefined) return undefined;
    if (offset === undefined) return { positions };
    return offsetEpoch === undefined ? { positions, offset } : { positions, offset, offsetEpoch };
  }

  private subscribed(sub: Subscription, ack: Record<string, unknown>, resubscribed: boolean): void {
    if (this.subs.get(sub.key) !== sub) return;
    const tenant = typeof ack.tenant === 'string' ? ack.tenant : sub.tenant;
    sub.ackTenant = tenant;
    const epoch = typeof ack.epoch === 'string' ? ack.epoch : undefined;
    const seq = typeof ack.seq === 'number' ? ack.seq : undefined;
    const offset = typeof ack.offset === 'number' ? ack.offset : undefined;
    const offsetEpoch = typeof ack.offsetEpoch === 'string' ? ack.offsetEpoch : undefined;
    // The first offset stays: topics without a position replay from it, which is right whatever arrived since.
    // Unless the hub's offsets restarted (another offset epoch): it has just replayed everything it holds, so
    // its new offset is where this subscription now stands.
    if (sub.pattern && offset !== undefined && (sub.offset === undefined || (offsetEpoch !== undefined && offsetEpoch !== sub.offsetEpoch))) {
      sub.offset = offset;
      sub.offsetEpoch = offsetEpoch;
    }
    // A fresh exact subscription starts at the hub's current position (so a reconnect before any message still
    // resumes from here). A resumed one does not: the replay that follows carries the positions.
    const key = positionKey(tenant, sub.topic);
    if (!sub.pattern && epoch !== undefined && seq !== undefined && !this.positions.has(key) && sub.since === undefined && !sub.acked) {
      this.track(key, { epoch, seq });
    }
    const gaps: GapReport[] = [];
    if (Array.isArray(ack.gaps)) {
      for (const g of ack.gaps) {
        const gap = toGap(g, 'resume', sub.topic, tenant);
        if (gap !== null) gaps.push(gap);
      }
    }
    sub.acked = true;
    const result: SubscribeResult = { topic: sub.topic, recovered: ack.recovered !== false, gaps, resubscribed };
    if (tenant !== undefined) result.tenant = tenant;
    if (epoch !== undefined) result.epoch = epoch;
    if (seq !== undefined) result.seq = seq;
    if (offset !== undefined) result.offset = offset;
    if (offsetEpoch !== undefined) result.offsetEpoch = offsetEpoch;
    sub.last = result;
    for (const w of sub.waiters.splice(0)) w.resolve(result);
    this.emit('subscribed', result);
    for (const gap of gaps) this.emit('gap', gap);
  }

  private track(key: string, position: StreamPosition): void {
    this.positions.delete(key);
    this.positions.set(key, position);
    if (this.positions.size > this.maxTracked) this.positions.delete(this.positions.keys().next().value as string);
  }

  /** Tracked positions of topics a subscription covers, as [topic, position, key]. */
  private trackedFor(sub: Subscription): Array<[string, StreamPosition, string]> {
    const out: Array<[string, StreamPosition, string]> = [];
    const prefixes = tenantsOf(sub).map((t) => positionKey(t, ''));
    for (const [key, p] of this.positions) {
      const prefix = prefixes.find((x) => key.startsWith(x));
      if (prefix === undefined) continue;
      const topic = key.slice(prefix.length);
      if (topicMatches(sub.topic, topic)) out.push([topic, p, key]);
    }
    return out;
  }

  private forgetPositions(sub: Subscription): void {
    for (const [, , key] of this.trackedFor(sub)) {
      let covered = false;
      for (const other of this.subs.values()) if (this.trackedFor(other).some((e) => e[2] === key)) covered = true;
      if (!covered) this.positions.delete(key);
    }
  }

  // --- incoming ---

  private receive(raw: unknown): void {
    this.heardFrom = true;
    if (typeof raw !== 'string') {
      if (raw instanceof ArrayBuffer) this.emit('binary', raw);
      return;
    }
    let msg: unknown;
    try {
      msg = JSON.parse(raw);
    } catch {
      this.emit('text', raw);
      return;
    }
    if (!isObject(msg) || typeof msg.type !== 'string') {
      this.emit('error', new HubError('protocol', 'the hub sent JSON that is not an object with a string "type"'));
      return;
    }
    const requestId = typeof msg.request_id === 'number' ? msg.request_id : null;
    // Topic messages first: a publisher may use any type, including names the protocol uses for control frames.
    if (typeof msg.topic === 'string' && typeof msg.seq === 'number' && typeof msg.epoch === 'string') return this.deliverTopic(msg);
    switch (msg.type) {
      case 'ack':
      case 'auth_ok':
        if (requestId !== null) this.settle(requestId, null, isObject(msg.data) ? msg.data : {});
        else if (msg.type === 'auth_ok') this.settleAuth(null);
        return;
      case 'pong':
        if (requestId !== null) this.settle(requestId, null, isObject(msg.data) ? msg.data : {});
        return;
      case 'error': {
        const data = isObject(msg.data) ? msg.data : {};
        const code = typeof data.code === 'string' ? data.code : 'internal_error';
        const error = new HubError(code, typeof data.message === 'string' ? data.message : `the hub replied ${code}`, requestId ?? undefined);
        if (requestId !== null && this.pending.has(requestId)) this.settle(requestId, error);
        else if (this.pending.size > 0 && [...this.pending.values()].some((p) => p.auth) && code === 'unauthorized') this.settleAuth(error);
        else this.emit('error', error);
        return;
      }
      case 'ping':
        this.write(requestId !== null ? `{"type":"pong","data":{},"request_id":${requestId}}` : '{"type":"pong","data":{}}');
        return;
      case 'gap': {
        const gap = toGap(msg.data, 'report');
        if (gap !== null) this.emit('gap', gap);
        else this.emit('error', new HubError('protocol', 'the hub sent a malformed gap report'));
        return;
      }
      default:
        this.emit('message', { type: msg.type, data: msg.data });
    }
  }

  private settleAuth(error: HubError | null): void {
    for (const p of this.pending.values()) if (p.auth) return this.settle(p.id, error);
  }

  private deliverTopic(msg: Record<string, unknown>): void {
    const topic = msg.topic as string;
    const seq = msg.seq as number;
    const epoch = msg.epoch as string;
    const tenant = typeof msg.tenant === 'string' ? msg.tenant : undefined;
    const key = positionKey(tenant, topic);
    const last = this.positions.get(key);
    if (last !== undefined && last.epoch === epoch && seq <= last.seq) {
      this.counters.duplicates++;
      return;
    }
    this.track(key, { epoch, seq });
    this.counters.delivered++;
    const out: HubMessage = { type: msg.type as string, data: msg.data, topic, seq, epoch };
    if (tenant !== undefined) out.tenant = tenant;
    if (typeof msg.ts === 'number') out.ts = msg.ts;
    const from = msg.from as { user?: unknown } | undefined;
    if (typeof from === 'object' && from !== null && typeof from.user === 'string') out.from = { user: from.user };
    this.emit('message', out);
  }
}

const EVENTS = new Set<keyof HubClientEvents>(['message', 'state', 'gap', 'subscribed', 'disconnect', 'error', 'text', 'binary']);

/** The tenants under which a subscription's positions may be keyed: the ack's, the one asked for, none. */
function tenantsOf(sub: Subscription): Array<string | undefined> {
  const out: Array<string | undefined> = [];
  for (const t of [sub.ackTenant, sub.tenant, undefined]) if (!out.includes(t)) out.push(t);
  return out;
}

function toGap(v: unknown, source: 'report' | 'resume', topic?: string, tenant?: string): GapReport | null {
  if (!isObject(v)) return null;
  const t = typeof v.topic === 'string' ? v.topic : topic;
  if (t === undefined || typeof v.epoch !== 'string' || typeof v.from !== 'number' || typeof v.to !== 'number') return null;
  const gap: GapReport = { topic: t, epoch: v.epoch, from: v.from, to: v.to >= Number.MAX_SAFE_INTEGER ? Infinity : v.to, source };
  const tn = typeof v.tenant === 'string' ? v.tenant : tenant;
  if (tn !== undefined) gap.tenant = tn;
  return gap;
}

function checkSince(value: unknown, pattern: boolean): void {
  const isPosition = (p: unknown): boolean => isObject(p) && typeof p.epoch === 'string' && typeof p.seq === 'number' && Number.isInteger(p.seq) && p.seq >= 0;
  if (!pattern) {
    checkObject('subscribe options.since (for a topic: { epoch, seq })', value, OPTION_KEYS.position);
    if (!isPosition(value)) throw new TypeError('since for a topic must be { epoch: string, seq: non-negative integer }');
    return;
  }
  checkObject('subscribe options.since (for a pattern: { positions, offset, offsetEpoch })', value, OPTION_KEYS.patternSince);
  const since = value as Record<string, unknown>;
  if (since.positions !== undefined) {
    if (!isObject(since.positions)) throw new TypeError(`since.positions must map topics to { epoch, seq }, got ${shown(since.positions)}`);
    for (const [topic, p] of Object.entries(since.positions)) {
      checkObject(`since.positions[${JSON.stringify(topic)}]`, p, OPTION_KEYS.position);
      if (!isPosition(p)) throw new TypeError('since.positions must map topics to { epoch: string, seq: non-negative integer }');
    }
  }
  if (since.offset !== undefined && (typeof since.offset !== 'number' || !(since.offset >= 0))) throw new TypeError('since.offset must be a non-negative number');
  if (since.offsetEpoch !== undefined && typeof since.offsetEpoch !== 'string') throw new TypeError('since.offsetEpoch must be a string (the offsetEpoch of an earlier ack)');
}

function withTenant(data: Record<string, unknown>, tenant: string | undefined): Record<string, unknown> {
  if (tenant !== undefined) data.tenant = tenant;
  return data;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** The type of a frame, for error messages. */
function describe(text: string): string {
  const m = /^\{"type":("(?:[^"\\]|\\.)*")/.exec(text);
  return m === null ? 'the request' : m[1];
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
