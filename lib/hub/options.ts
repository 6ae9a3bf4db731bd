/**
 * The hub's options: limits with their defaults, heartbeat timing, authorization hooks, close codes, and their
 * validation (a bad value is a TypeError or RangeError at `createHub`, never silently ignored).
 *
 * @module
 */
import type { IncomingUpgrade, ServerOptions } from '../transport/server.js';
import type { Principal, TokenExtractOptions, TokenResolver, TokenSource } from './auth.js';
import type { Backplane } from './backplane.js';
import type { HubClient } from './client.js';
import type { HistoryOptions } from './history.js';
import type { JwtResolverOptions } from './jwt.js';
import type { PermissionOptions } from './permissions.js';

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
  /** A resume replays at most 1,000 messages; beyond it, nothing is replayed and the ack reports the exact gaps. */
  maxReplayMessages: 1_000,
  /** A resume replays at most 8 MiB of messages (their JSON frames); beyond it, as for `maxReplayMessages`. */
  maxReplayBytes: 8 * 1024 * 1024,
  /** A `history` answer holds 100 messages unless the request asks for another `limit`. */
  historyLimit: 100,
  /** The largest `limit` a `history` request may ask for: 1,000 messages. */
  maxHistoryLimit: 1_000,
  /** A `history` answer holds at most 256 KiB of messages (at least one); the rest is behind its cursor. */
  maxHistoryBytes: 256 * 1024,
  /** 64 requests of one connection in flight (waiting for the backplane or the application); more get `rate_limited`. */
  maxPendingRequests: 64,
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
  /**
   * Most messages one resume (`subscribe` with `since`) replays. A resume that would replay more replays nothing:
   * its ack says `recovered: false` and lists the exact missed ranges as `gaps`, the client refetches its state
   * (from the `history` request, page by page, or its own backend) and live delivery starts at once.
   * Replays within the cap are paced: sent as the connection drains, never queued whole. Default: 1,000.
   */
  maxReplayMessages?: number;
  /** Most bytes (the messages' JSON frames) one resume replays; beyond it, as for `maxReplayMessages`. Default: 8 MiB. */
  maxReplayBytes?: number;
  /** Messages in a `history` answer when the request gives no `limit`. Default: 100. */
  historyLimit?: number;
  /** The largest `limit` a `history` request may ask for (more is `invalid_request`). Default: 1,000. */
  maxHistoryLimit?: number;
  /**
   * Bytes of messages (their JSON) in one `history` answer, over the socket and `GET /api/history`; an answer
   * always holds at least one message, and what does not fit is behind its `next` cursor. Default: 256 KiB.
   */
  maxHistoryBytes?: number;
  /**
   * Requests of one connection in flight. Requests take effect in the order they were sent (an `unsubscribe`
   * right after a `subscribe` cancels it), so a request waits for the ones before it (the backplane, an
   * authorization hook, an application handler); beyond this many waiting, a request gets `rate_limited`. Default: 64.
   */
  maxPendingRequests?: number;
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
   * Milliseconds of silence after which a client is closed with 4408 and destroyed 1 s later. Default: 60,000.
   *
   * What counts as a sign of life depends on the client's dialect (seed 001's promise):
   * - a client that gets the app-level ping (see `appPing`): only a data message counts — its `{"type":"pong"}`,
   *   or any other message. Protocol pongs do not: browsers send them by themselves, without the application, so
   *   they say nothing about whether the page still handles the hub's messages;
   * - a client that gets no app-level ping (`llps.v1`, seed 000's `action` dialect, which has no app heartbeat;
   *   or every client with `appPing: 'none'`): any message or protocol pong counts.
   * A dead TCP connection is found either way: the engine's protocol ping goes to every client.
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

/**
 * What an authorization hook answers: `true` (allow), `false` (refuse: the client gets `unauthorized`), or a
 * decision — `{ allow: false, message }` (refuse with that message), `{ allow: false, disconnect: { code, reason } }`
 * (refuse and close the connection with a code of 4000–4999), or, for `publish`, `{ allow: true, data }` (publish
 * `data` instead of what the client sent).
 */
export type AuthorizeDecision = boolean | { allow: boolean; message?: string; data?: unknown; disconnect?: { code: number; reason?: string } };

/**
 * What {@link HubOptions.authenticateUpgrade} answers to refuse with more than `null`: an HTTP status (400–599) for
 * the handshake, or (no `status`) a 4401 close with `message` as its reason (at most 120 bytes are sent).
 */
export interface UpgradeRefusal {
  reject: true;
  /** Answer the handshake with this HTTP status instead of opening the WebSocket. */
  status?: number;
  /** The HTTP body, or the 4401 close reason. */
  message?: string;
}

/** Authorization hooks: return (or resolve) a {@link AuthorizeDecision}. */
export interface HubAuthorize {
  /** May this client subscribe? Default: yes, within the principal's tenants. */
  subscribe?: (request: AuthorizationRequest) => AuthorizeDecision | Promise<AuthorizeDecision>;
  /**
   * May this client publish (and what)? `request.data` is what the client sent. Default: yes, within the
   * principal's tenants (`clientPublish: false` refuses all).
   */
  publish?: (request: AuthorizationRequest & { type: string; data: unknown }) => AuthorizeDecision | Promise<AuthorizeDecision>;
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
  /**
   * Called for an upgrade that carried no token at all (no header, subprotocol, ticket, query or cookie token):
   * resolve with a principal to admit it (e.g. from its session cookie, through your backend), `null` to refuse
   * (4401), `undefined` to let it authenticate by first message as usual, or an {@link UpgradeRefusal}: with a
   * `status`, the handshake is answered with that HTTP status and no WebSocket opens (e.g. 503 while the backend
   * that decides is unavailable: clients retry later); without, the connection is closed with 4401 and `message`
   * as its reason. Default: none (first-message auth).
   */
  authenticateUpgrade?: (request: IncomingUpgrade) => Principal | UpgradeRefusal | null | undefined | Promise<Principal | UpgradeRefusal | null | undefined>;
  /**
   * Called when a connection's principal expires (`expiresAt`), before it is closed: resolve with a new principal
   * of the same user to keep the connection (its new `expiresAt` is armed), or `null` to close it with 4401
   * (`token expired`) as without this hook. A hook that closed the client itself (`client.close(code, reason)`,
   * e.g. 1013 to have it retry later) resolves `null`: that close stands. Default: none.
   */
  onExpiry?: (client: HubClient) => Principal | null | Promise<Principal | null>;
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
  /** History of the default {@link MemoryBackplane}: per topic count and age, byte caps per topic and in all (see {@link HistoryOptions}). Default: 100 messages, 5 min, 8 MiB per topic, 64 MiB in all. */
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
  /**
   * Engine options (TLS, permessage-deflate, handshake timeout, …). `heartbeat`, `authenticate`, `selectProtocol`,
   * `origins`, `path`, `port` and `maxMessageSize` are the hub's (set them on the hub: `limits.maxMessageSize`,
   * `hub.listen(port)`); given here they, like a name the engine does not know, are a TypeError.
   */
  server?: Omit<ServerOptions, 'heartbeat' | 'authenticate' | 'selectProtocol' | 'origins' | 'path' | 'port' | 'maxMessageSize'>;
  /**
   * Channel permissions: rules per topic pattern for who may subscribe, publish, read history and presence
   * (see {@link Permissions}). Default: none — every action open to signed-in clients, subject to
   * `clientPublish` and `authorize`. With rules, topics no rule matches use their `defaults` (publishing: the
   * server only).
   */
  permissions?: PermissionOptions;
  /** Frame topic messages compressed once as well, for clients that negotiated permessage-deflate without context takeover. Default: false. */
  compress?: boolean;
}



export function checkCloseCode(code: number): void {
  if (!Number.isInteger(code) || !(code === 1000 || (code >= 3000 && code <= 4999) || code === 1001 || code === 1008 || code === 1012 || code === 1013)) {
    throw new RangeError(`close code must be 1000, 1001, 1008, 1012, 1013 or 3000-4999, got ${String(code)}`);
  }
}

export function positiveNumber(name: string, value: unknown): number {
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) throw new RangeError(`${name} must be a positive number, got ${String(value)}`);
  return value;
}

function nonNegativeNumber(name: string, value: unknown): number {
  if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) throw new RangeError(`${name} must be a non-negative number, got ${String(value)}`);
  return value;
}

export type ResolvedLimits = Required<Omit<HubLimits, 'rate'>> & { rate: Required<HubRate> | false };

export function resolveLimits(l: HubLimits): ResolvedLimits {
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
    maxReplayMessages: nonNegativeNumber('limits.maxReplayMessages', l.maxReplayMessages ?? d.maxReplayMessages),
    maxReplayBytes: nonNegativeNumber('limits.maxReplayBytes', l.maxReplayBytes ?? d.maxReplayBytes),
    historyLimit: positiveNumber('limits.historyLimit', l.historyLimit ?? d.historyLimit),
    maxHistoryLimit: positiveNumber('limits.maxHistoryLimit', l.maxHistoryLimit ?? d.maxHistoryLimit),
    maxHistoryBytes: positiveNumber('limits.maxHistoryBytes', l.maxHistoryBytes ?? d.maxHistoryBytes),
    maxPendingRequests: positiveNumber('limits.maxPendingRequests', l.maxPendingRequests ?? d.maxPendingRequests),
  };
}

export function resolveHeartbeat(h: HubHeartbeatOptions): Required<HubHeartbeatOptions> {
  if (typeof h !== 'object' || h === null) throw new TypeError('options.heartbeat must be an object or false');
  const appPing = h.appPing ?? 'native';
  if (appPing !== 'native' && appPing !== 'all' && appPing !== 'none') throw new TypeError(`heartbeat.appPing must be 'native', 'all' or 'none'`);
  return {
    interval: positiveNumber('heartbeat.interval', h.interval ?? HUB_HEARTBEAT_DEFAULTS.interval),
    timeout: positiveNumber('heartbeat.timeout', h.timeout ?? HUB_HEARTBEAT_DEFAULTS.timeout),
    appPing,
  };
}

