/**
 * The hub's public data types: what its events carry, what `subscribe` answers, the stats snapshot, and the
 * messages the application sends.
 *
 * @module
 */
import type { IncomingUpgrade } from '../transport/server.js';
import type { HubHealth } from './attach.js';
import type { PresenceEvent } from './backplane.js';
import type { HubClient } from './client.js';
import type { HistogramSnapshot } from './histogram.js';
import type { Gap } from './history.js';
import type { HubRefusal, SlowConsumerPolicy } from './options.js';
import type { RequestId } from './protocol.js';

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
  /** Resume replays in progress (paced: each waits for its connection to drain). */
  replays: number;
  /** Resumes that asked for more than `maxReplayMessages`/`maxReplayBytes`: answered with gaps instead. */
  replaysRefused: number;
  /** Client requests waiting for the ones before them (the per-connection order). */
  pendingRequests: number;
  /** Bytes of the messages received from clients (payloads). */
  bytesIn: number;
  /** Bytes of the frames written to clients. */
  bytesOut: number;
  /**
   * Messages received, by kind: the request types (`subscribe`, `unsubscribe`, `publish`, `ping`, `pong`, `auth`,
   * `refresh`, `presence`, `history`), `app` (other JSON types), `text`, `binary`, `invalid`, `rate_limited`.
   */
  messagesByType: Record<string, number>;
  /** Seconds from a topic message's publication to its socket writes on this hub, per publication delivered. */
  deliveryLatency: HistogramSnapshot;
  /** Bytes of history the backplane holds, when it says (the {@link MemoryBackplane} does; brokers hold theirs). */
  historyBytes?: number;
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

/** What the `slowConsumer` event carries. */
export interface SlowConsumerInfo {
  /** The policy applied. */
  policy: SlowConsumerPolicy;
  /** The connection's unsent bytes at that moment. */
  bufferedAmount: number;
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
  /**
   * The slow-consumer policy hit this client: its unsent data would have passed `limits.maxBufferedBytes`.
   * `disconnect`: it is being closed with 1008 (emitted once per connection). `drop`: a message for it was
   * skipped (emitted on the first drop after it last caught up, not per message). For logs and alerts.
   */
  slowConsumer: (client: HubClient, info: SlowConsumerInfo) => void;
  /**
   * An application handler failed, or the backplane rejected (every failed attach attempt too, with the delay
   * before the next). Never emitted without a listener.
   */
  error: (error: Error) => void;
  /**
   * `hub.health().backplane` changed: `'up'` once attached (also after failed attempts) or when the broker is back,
   * `'down'` when an attach attempt failed or the adapter reported its broker unreachable. For logs and readiness.
   */
  backplane: (health: HubHealth) => void;
}
