/**
 * The hub as the service runs it: created from the {@link ServiceConfig}, with its events turned into log lines and
 * its statistics into Prometheus metrics, and the few calls the HTTP API makes answered in JSON-ready shapes.
 *
 * @module
 */
import { type Backplane, MemoryBackplane } from '../hub/backplane.js';
import type { Principal } from '../hub/auth.js';
import { createHub, type Hub, type HubOptions } from '../hub/hub.js';
import type { Histogram } from '../hub/histogram.js';
import type { PermissionOptions } from '../hub/permissions.js';
import { isPattern } from '../hub/topics.js';
import { ConfigError, type ServiceConfig } from './config.js';
import { type BackendHooks, createBackendHooks, HOOK_NAMES, parseHooks } from './hooks.js';
import type { Logger } from './log.js';
import { histogramSamples, LabelledCounter, type MetricFamily } from './metrics.js';
import { ProcessMetrics } from './process-metrics.js';

/** A topic message as the history endpoint returns it: the envelope a subscriber got, data parsed. */
export interface HistoryMessage {
  type: string;
  data: unknown;
  topic: string;
  tenant: string;
  seq: number;
  epoch: string;
  ts: number;
}

/** The hub, plus what the service adds around it. */
export interface ServiceHub {
  /** The hub itself (for the upgrade handler and application code). */
  readonly hub: Hub;
  /** Whether a broker links this hub to others (user and socket counts are then this process's only). */
  readonly clustered: boolean;
  /** Prometheus metric families: the hub's statistics and the service's own counters. */
  metrics(): MetricFamily[];
  /** Publishes; resolves with the tenant, seq, epoch and time. */
  publish(message: { tenant?: string; topic: string; type: string; data: unknown }): Promise<{ tenant: string; seq: number; epoch: string; ts: number }>;
  /**
   * The held history after `since` (a seq in the current epoch, or an epoch and seq). For a wildcard pattern,
   * every matching topic in publication order; `since` is then a tenant offset (`seq`) of the offset epoch
   * `epoch` (another offset epoch: everything held), and the answer carries the current `offset`/`offsetEpoch`.
   */
  history(tenant: string | undefined, topic: string, since: { epoch?: string; seq: number } | undefined, page?: { limit?: number; cursor?: string }): Promise<{
    tenant: string;
    topic: string;
    /** Exact topics: the current epoch (null before the first publication). Patterns: null. */
    epoch: string | null;
    /** Exact topics: the last sequence number. Patterns: 0. */
    seq: number;
    /** Patterns: the tenant offset and its epoch now (to ask again from). */
    offset?: number;
    offsetEpoch?: string;
    messages: HistoryMessage[];
    gaps: Array<{ topic: string; epoch: string; from: number; to: number }>;
    recovered: boolean;
    /** Whether more is held after this page (at most `limit` messages, default 100, and 256 KiB of them). */
    more: boolean;
    /** With `more`: pass it as `cursor` for the next page. */
    next?: string;
  }>;
  /** Null when the HTTP API may do `action` on `topic` (the channel permissions say `nobody` nowhere it reaches), else why not. */
  serverMay(action: 'publish' | 'history' | 'presence', tenant: string | undefined, topic: string): string | null;
  /** Who is subscribed to a topic name or pattern. */
  presence(tenant: string | undefined, topic: string): Promise<{ tenant: string; topic: string; users: Record<string, number>; connections: number }>;
  /** Closes every socket of a user with `code`; resolves with the number closed. */
  disconnectUser(user: string, code: number, reason: string): Promise<number>;
  sendToUser(user: string, message: { type: string; data: unknown }): Promise<number>;
  broadcast(message: { type: string; data: unknown }, tenant: string | undefined): Promise<number>;
  /** A one-time ticket for `?ticket=`. */
  issueTicket(principal: Principal, ttl: number): string;
  /** Open connections. */
  connections(): number;
  /** Graceful shutdown of the hub (sockets closed with `code`). */
  close(options: { code: 1001 | 1012; timeout: number }): Promise<void>;
}

/**
 * The service's channel permissions when the config file has none (and not `--dev`, which leaves every topic open):
 * `user.{sub}.#` is each user's own (only its owner subscribes, publishes, reads history and presence there); every
 * other topic is open to signed-in clients. Every client publication carries its publisher (`from`), so no one can
 * write as someone else.
 */
export const SERVICE_PERMISSIONS: PermissionOptions = {
  rules: [{ pattern: 'user.{sub}.#', subscribe: 'owner', publish: 'owner', history: 'owner', presence: 'owner' }],
  defaults: { subscribe: 'signed-in', publish: 'signed-in', history: 'signed-in', presence: 'signed-in' },
};

/**
 * The hub options a configuration stands for (exported for tests); `hooks`: the backend hooks' options. Without a
 * JWT key (a deployment whose connect hook authenticates), only one-time tickets are looked for in upgrades and
 * every other upgrade goes to the connect hook; tokens (first-message `auth`, `refresh`) are refused.
 */
export function hubOptions(config: ServiceConfig, backplane: Backplane | undefined, onJwtReject: (reason: string) => void, hooks?: BackendHooks['options']): HubOptions {
  const jwtKey = config.jwtPublicKey !== undefined ? { publicKey: config.jwtPublicKey } : { secret: config.jwtSecret };
  const withoutJwt = config.jwtPublicKey === undefined && config.jwtSecret === undefined && hooks?.authenticateUpgrade !== undefined;
  const options: HubOptions = {
    ...(withoutJwt
      ? { authenticate: () => null, tokenOrder: ['ticket'] as const }
      : {
          jwt: {
            ...jwtKey,
            ...(config.jwtAudience ? { audience: config.jwtAudience } : {}),
            ...(config.jwtIssuer ? { issuer: config.jwtIssuer } : {}),
            onReject: (error: { reason: string }) => onJwtReject(error.reason),
          },
        }),
    ...hooks,
    heartbeat: { interval: config.heartbeatInterval, timeout: config.heartbeatTimeout },
    limits: {
      maxMessageSize: config.maxMessageSize,
      maxConnectionsPerUser: config.maxConnectionsPerUser,
      maxSubscriptions: config.maxSubscriptions,
      rate: config.inboundRate === 0 ? false : { messages: config.inboundRate, interval: 1000 },
      maxBufferedBytes: config.maxBuffered,
      slowConsumer: config.slowConsumer,
      authDeadline: config.authDeadline,
      maxReplayMessages: config.maxReplayMessages,
      maxReplayBytes: config.maxReplayBytes,
      historyLimit: config.historyLimit,
      maxHistoryLimit: config.maxHistoryLimit,
      maxHistoryBytes: config.maxHistoryBytes,
    },
    ...(config.origins ? { origins: config.origins } : {}),
  };
  const permissions = config.permissions ?? (config.dev ? undefined : SERVICE_PERMISSIONS);
  if (permissions !== undefined) options.permissions = permissions;
  if (backplane) options.backplane = backplane;
  else options.history = { size: config.historySize, ttl: config.historyTtl, maxBytes: config.historyMaxBytes, maxTopicBytes: config.historyTopicMaxBytes };
  return options;
}

/** Creates the hub for a configuration and wires logs and metrics. */
export function createServiceHub(config: ServiceConfig, backplane: Backplane | undefined, log: Logger): ServiceHub {
  const refusals = new LabelledCounter();
  let hooks: BackendHooks | null = null;
  try {
    const specs = parseHooks(config.hooks);
    if (specs !== undefined) {
      hooks = createBackendHooks(specs, { log, apiKey: config.apiKey });
      log('info', 'hooks', Object.fromEntries(HOOK_NAMES.filter((h) => specs[h]).map((h) => [h, `${redactUrl(specs[h]!.url)} timeout=${specs[h]!.timeout}ms failure=${specs[h]!.failure}`])));
    }
  } catch (error) {
    throw error instanceof TypeError ? new ConfigError(`--config ${config.config ?? ''}: ${error.message}`) : error;
  }
  // Refused tokens are logged with the verifier's reason (onJwtReject); the hub's `refused` event names the other
  // refusals (tickets, missed auth deadlines, the connection and rate limits) with their request.
  const hub = createHub(
    hubOptions(
      config,
      backplane,
      (reason) => {
        refusals.inc(`token_${reason}`);
        log('warn', 'handshake_refused', { reason: `token_${reason}` });
      },
      hooks?.options,
    ),
  );
  hooks?.attach(hub);
  hub.on('refused', (refusal) => {
    // JWT refusals were counted with their reason above; origin refusals are logged from the server's `rejected`.
    if (refusal.reason === 'token' || refusal.reason === 'origin') return;
    const handshake = refusal.reason === 'ticket' || refusal.reason === 'auth_deadline';
    if (handshake) refusals.inc(refusal.reason);
    // The connection named is the one closed (for connection_limit: the user's oldest, evicted for a new one, whose
    // address is `by_remote`); the user is the closed connection's.
    log('warn', handshake ? 'handshake_refused' : 'connection_closed_by_policy', {
      reason: refusal.reason,
      code: refusal.code,
      ...(refusal.connectionId ? { connection: refusal.connectionId } : {}),
      ...(refusal.user ? { user: refusal.user } : {}),
      ...(refusal.reason === 'connection_limit' ? { by_remote: refusal.request?.remoteAddress } : { remote: refusal.request?.remoteAddress }),
    });
  });
  hub.server.on('rejected', (status: number, message: string, remote: string | undefined) => {
    refusals.inc(`http_${status}`);
    log('warn', 'handshake_refused', { status, reason: message, remote });
  });
  // Logged as the policy hits the client, naming it: `disconnect` once per connection (as it is closed with 1008),
  // `drop` on its first dropped message after it last caught up (not per message; the count is wsengine_drops_total).
  hub.on('slowConsumer', (client, info) => {
    log('warn', 'slow_consumer', { policy: info.policy, user: client.user, connection: client.id, buffered: info.bufferedAmount });
  });
  hub.on('disconnect', (client, code) => {
    if (code === 4401) log('info', 'auth_closed', { connection: client.id, code });
  });
  hub.on('error', (error) => log('error', 'hub_error', { error: error.message }));
  // Attach retries and broker outages: each failed attempt is a hub_error above; this says when the state changes.
  hub.on('backplane', (h) => log(h.backplane === 'up' ? 'info' : 'warn', 'backplane', { state: h.backplane, attempts: h.attempts, error: h.error ?? undefined }));
  const processMetrics = new ProcessMetrics();

  const toMessage = (m: { type: string; data: string; topic: string; tenant: string; seq: number; epoch: string; ts: number }): HistoryMessage => ({
    type: m.type,
    data: JSON.parse(m.data) as unknown,
    topic: m.topic,
    tenant: m.tenant,
    seq: m.seq,
    epoch: m.epoch,
    ts: m.ts,
  });

  return {
    hub,
    clustered: backplane !== undefined,
    metrics: () => [...metricFamilies(hub, refusals), ...historyFamilies(hub.backplane), ...backplaneFamilies(hub, backplane), ...(hooks?.metrics() ?? []), ...processMetrics.families()],
    async publish(message) {
      const tenant = message.tenant ?? 'default';
      const published = await hub.publish({ ...message, tenant });
      return { tenant, seq: published.seq, epoch: published.epoch, ts: published.ts };
    },
    async history(tenantIn, topic, since, page = {}) {
      const tenant = tenantIn ?? 'default';
      const pattern = isPattern(topic);
      const from = since === undefined ? undefined : since.epoch === undefined ? since.seq : pattern ? { offset: since.seq, offsetEpoch: since.epoch } : { epoch: since.epoch, seq: since.seq };
      const answer = await hub.history(topic, { tenant, since: from, limit: page.limit, cursor: page.cursor });
      return {
        tenant,
        topic,
        epoch: answer.position?.epoch || null,
        seq: answer.position?.seq ?? 0,
        ...(pattern ? { offset: answer.offset, offsetEpoch: answer.offsetEpoch } : {}),
        messages: answer.messages.map(toMessage),
        gaps: answer.gaps.map((g) => ({ topic: g.topic, epoch: g.epoch, from: g.from, to: g.to })),
        recovered: answer.recovered,
        more: answer.more,
        ...(answer.next !== undefined ? { next: answer.next } : {}),
      };
    },
    serverMay: (action, tenant, topic) => hub.permissions?.serverMay(action, tenant ?? 'default', topic) ?? null,
    async presence(tenantIn, topic) {
      const snapshot = await hub.presence(topic, tenantIn ?? 'default');
      return { tenant: snapshot.tenant, topic: snapshot.topic, users: { ...snapshot.users }, connections: snapshot.connections };
    },
    disconnectUser: (user, code, reason) => hub.disconnectUser(user, code, reason),
    sendToUser: (user, message) => hub.sendToUser(user, message),
    broadcast: (message, tenant) => hub.broadcast(message, tenant === undefined ? {} : { tenant }),
    issueTicket: (principal, ttl) => hub.issueTicket(principal, ttl),
    connections: () => hub.stats().connections,
    async close(options) {
      processMetrics.close();
      await hub.close({ code: options.code, timeout: options.timeout });
      hooks?.close();
    },
  };
}

/**
 * The history the in-memory backplane holds (bytes as counted against `--history-max-bytes`, and messages). With
 * `--redis`/`--nats` the broker holds the history: not reported here.
 */
function historyFamilies(backplane: Backplane): MetricFamily[] {
  if (!(backplane instanceof MemoryBackplane)) return [];
  const gauge = (name: string, help: string, value: number): MetricFamily => ({ name, type: 'gauge', help, samples: [{ value }] });
  return [
    gauge('wsengine_history_bytes', 'Bytes of topic history held in memory (as counted against --history-max-bytes).', backplane.history.bytes),
    gauge('wsengine_history_messages', 'Topic messages held in memory for resume.', backplane.history.messageCount),
  ];
}

/** Counters the broker backplanes keep (lib/hub/broker.ts); absent on the in-memory one. */
interface BrokerCounters {
  received: number;
  duplicates: number;
  filled: number;
  gaps: number;
}

/**
 * The backplane's state for every hub (`wsengine_backplane_up`: 1 while attached and reachable); with a broker also
 * what this hub received from it (every copy), duplicates dropped, messages fetched to fill a skipped seq, gaps
 * reported, and the broker's round-trip latency (its heartbeats).
 */
function backplaneFamilies(hub: Hub, backplane: Backplane | undefined): MetricFamily[] {
  const health = hub.health();
  const up: MetricFamily[] = [
    { name: 'wsengine_backplane_up', type: 'gauge', help: 'Whether the backplane is attached and its broker reachable (1) or not (0).', samples: [{ value: health.backplane === 'up' ? 1 : 0 }] },
    { name: 'wsengine_backplane_attach_failures_total', type: 'counter', help: 'Failed attempts to attach the backplane (connect to its broker).', samples: [{ value: health.attempts }] },
  ];
  const c = (backplane as { counters?: BrokerCounters } | undefined)?.counters;
  if (c === undefined) return up;
  const counter = (name: string, help: string, value: number): MetricFamily => ({ name, type: 'counter', help, samples: [{ value }] });
  const rtt = (backplane as { rtt?: Histogram }).rtt;
  return [
    ...up,
    ...(rtt === undefined ? [] : [{ name: 'wsengine_backplane_rtt_seconds', type: 'histogram' as const, help: 'Round trip of the hub\'s liveness heartbeats on the broker, in seconds.', samples: histogramSamples(rtt.snapshot()) }]),
    counter('wsengine_backplane_received_total', 'Topic messages received from the broker (every copy, before de-duplication).', c.received),
    counter('wsengine_backplane_duplicates_total', 'Topic messages from the broker dropped as duplicates (overlapping subscriptions, replays).', c.duplicates),
    counter('wsengine_backplane_filled_total', 'Topic messages fetched from the broker\'s stream to fill a skipped sequence number.', c.filled),
    counter('wsengine_backplane_gaps_total', 'Gaps reported to subscribers (what the broker no longer held).', c.gaps),
  ];
}

function metricFamilies(hub: Hub, refusals: LabelledCounter): MetricFamily[] {
  const s = hub.stats();
  const one = (name: string, type: 'counter' | 'gauge', help: string, value: number): MetricFamily => ({ name, type, help, samples: [{ value }] });
  const byLabel = (name: string, help: string, label: string, counts: Record<string, number>): MetricFamily => ({
    name,
    type: 'counter',
    help,
    samples: Object.keys(counts)
      .sort()
      .map((key) => ({ labels: { [label]: key }, value: counts[key] })),
  });
  return [
    one('wsengine_connections', 'gauge', 'Open WebSocket connections.', s.connections),
    one('wsengine_connections_pending_auth', 'gauge', 'Connections waiting for first-message authentication.', s.pendingAuth),
    one('wsengine_users', 'gauge', 'Distinct users with an open connection.', s.users),
    one('wsengine_subscriptions', 'gauge', 'Subscriptions of all connections.', s.subscriptions),
    one('wsengine_connections_total', 'counter', 'Connections accepted since start.', s.connectionsTotal),
    one('wsengine_messages_in_total', 'counter', 'Messages received from clients.', s.messagesIn),
    one('wsengine_messages_out_total', 'counter', 'Frames sent to clients (replies, deliveries, pings).', s.messagesOut),
    one('wsengine_publishes_total', 'counter', 'Topic messages published through this hub.', s.publishes),
    one('wsengine_deliveries_total', 'counter', 'Messages delivered to sockets.', s.deliveries),
    one('wsengine_drops_total', 'counter', 'Messages dropped for slow consumers (policy drop).', s.drops),
    one('wsengine_slow_consumer_disconnects_total', 'counter', 'Connections closed as slow consumers (policy disconnect).', s.slowConsumerDisconnects),
    one('wsengine_rate_limited_total', 'counter', 'Inbound messages refused by the rate limiter.', s.rateLimited),
    one('wsengine_auth_failures_total', 'counter', 'Refused tokens and missed authentication deadlines.', s.authFailures),
    byLabel('wsengine_errors_total', 'Error replies sent, by error code.', 'code', s.errors),
    byLabel('wsengine_closes_total', 'Closed connections, by close code.', 'code', s.closeCodes),
    { name: 'wsengine_handshakes_refused_total', type: 'counter', help: 'Refused WebSocket handshakes, by reason.', samples: refusals.samples('reason') },
    one('wsengine_bytes_in_total', 'counter', 'Bytes of the messages received from clients (payloads).', s.bytesIn),
    one('wsengine_bytes_out_total', 'counter', 'Bytes of the frames written to clients.', s.bytesOut),
    byLabel('wsengine_messages_received_total', 'Messages received from clients, by type (request types, app, text, binary, invalid, rate_limited).', 'type', s.messagesByType),
    { name: 'wsengine_delivery_latency_seconds', type: 'histogram', help: 'Seconds from a topic message\'s publication to its socket writes on this hub, per publication delivered.', samples: histogramSamples(s.deliveryLatency) },
    {
      name: 'wsengine_tenant_connections',
      type: 'gauge',
      help: 'Open connections by tenant they may use (* for tokens without a tenants claim; the 50 largest, the rest under other).',
      samples: Object.entries(hub.connectionsByTenant(50)).map(([tenant, value]) => ({ labels: { tenant }, value })),
    },
    one('wsengine_replays', 'gauge', 'Resume replays in progress (paced by their connection).', s.replays),
    one('wsengine_replays_refused_total', 'counter', 'Resumes over the replay cap, answered with gaps instead.', s.replaysRefused),
    one('wsengine_requests_pending', 'gauge', 'Client requests waiting behind earlier ones of their connection.', s.pendingRequests),
  ];
}

/** A hook URL for the log: without its password, query and fragment. */
function redactUrl(text: string): string {
  const url = new URL(text);
  if (url.password) url.password = '***';
  url.search = '';
  return url.href;
}
