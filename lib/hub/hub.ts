/**
 * The pub/sub hub: topics with `*`/`#` wildcards, tenants, delivery to topics, users, connections and everyone,
 * authentication at the handshake or by first message, authorization hooks, heartbeats, limits, sequence
 * numbers with bounded history and exact resume, presence, graceful shutdown. Built on the engine's server; the
 * state shared between hubs goes through a {@link Backplane} ({@link MemoryBackplane} by default).
 *
 * This file is the facade: the public API, events and stats, the connection lifecycle and the heartbeat. The jobs
 * live beside it: {@link Admission} (who gets in), `rate.ts` (inbound rate), {@link Requests} (what requests do, in
 * order), {@link Registry} (connections, users, subscriptions, interest), `sink.ts` (what arrives from the
 * backplane), {@link Delivery} (the one writer, with the outbound budget and the slow-consumer policy) and
 * {@link Attacher} (attaching the backplane, retried until it succeeds; {@link Hub.health}).
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { WebSocketConnection } from '../transport/connection.js';
import { createServer, type IncomingUpgrade, SERVER_OPTION_HINTS, SERVER_OPTION_NAMES, type WebSocketServer } from '../transport/server.js';
import { checkOptionNames } from '../core/options.js';
import { Admission, type UpgradeVerdict } from './admission.js';
import { Attacher, type HubHealth } from './attach.js';
import { HUB_SUBPROTOCOLS, type Principal, resolveTokenOptions, selectHubProtocol, TicketStore } from './auth.js';
import { type Backplane, type HubEnvelope, MemoryBackplane, type PresenceSnapshot } from './backplane.js';
import { checkType, HubClient, HubError, STATE_CLOSED, STATE_OPEN } from './client.js';
import { Delivery, type DirectFrames } from './delivery.js';
import { createSink } from './sink.js';
import type { PatternSince, StreamPosition } from './history.js';
import { jwtResolver } from './jwt.js';
import { Permissions, subscriptionTokenVerifier } from './permissions.js';
import { checkCloseCode, type HubHeartbeatOptions, type HubOptions, type HubRefusal, type ResolvedLimits, resolveHeartbeat, resolveLimits } from './options.js';
import { parseRequest, serializeData } from './protocol.js';
import { takeToken } from './rate.js';
import { findSub, Registry } from './registry.js';
import { Requests, tenantProblem } from './requests.js';
import type { HistoryPage } from './resume.js';
import { TimerQueue } from './timers.js';
import { checkTopic, isPattern, normalizePattern } from './topics.js';
import type { HubCloseOptions, HubEvents, HubStats, OutgoingMessage, PublishMessage, SubscribeResult } from './types.js';

export { HubClient } from './client.js';
export * from './options.js';
export * from './types.js';
export type { HistoryPage } from './resume.js';
export { ATTACH_BACKOFF, BackplaneUnavailableError, type BackplaneState, type HubHealth } from './attach.js';

/** `Hub` listeners, typed. */
export interface Hub {
  on<K extends keyof HubEvents>(event: K, listener: HubEvents[K]): this;
  once<K extends keyof HubEvents>(event: K, listener: HubEvents[K]): this;
  off<K extends keyof HubEvents>(event: K, listener: HubEvents[K]): this;
  emit<K extends keyof HubEvents>(event: K, ...args: Parameters<HubEvents[K]>): boolean;
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
  /** @internal */
  readonly options: HubOptions;
  /** @internal */
  readonly limits: ResolvedLimits;
  /** @internal */
  readonly registry: Registry;
  /** @internal */
  readonly delivery: Delivery;
  /** @internal */
  readonly timers = new TimerQueue();
  /** @internal */
  readonly counters = { connectionsTotal: 0, messagesIn: 0, bytesIn: 0, publishes: 0, rateLimited: 0, authFailures: 0 };
  private readonly byType: Record<string, number> = Object.create(null) as Record<string, number>;
  /** @internal */
  readonly permissions: Permissions | null;
  private readonly grantVerifier: ((token: string) => { user: string; topic: string } | null | Promise<{ user: string; topic: string } | null>) | null;
  private readonly requests: Requests;
  private readonly admission: Admission;
  private readonly heartbeat: Required<HubHeartbeatOptions> | null;
  private readonly supportedProtocols: readonly string[];
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private nextId = 0;
  private closing: Promise<void> | null = null;
  private readonly attacher: Attacher;
  private readonly closeCounts: Record<string, number> = Object.create(null) as Record<string, number>;

  constructor(options: HubOptions = {}) {
    super();
    if (typeof options !== 'object' || options === null) throw new TypeError('hub options must be an object');
    this.options = options;
    if (options.authenticate !== undefined && typeof options.authenticate !== 'function') throw new TypeError('options.authenticate must be a function (token, request) => principal | null');
    if (options.authenticate && options.jwt) throw new TypeError('give either options.authenticate or options.jwt, not both');
    const resolver = options.authenticate ?? (options.jwt ? jwtResolver(options.jwt) : null);
    const tokenOptions = { ...options.tokenNames, order: options.tokenOrder };
    resolveTokenOptions(tokenOptions);
    this.limits = resolveLimits(options.limits ?? {});
    this.heartbeat = options.heartbeat === false ? null : resolveHeartbeat(options.heartbeat ?? {});
    this.supportedProtocols = [...HUB_SUBPROTOCOLS, ...(options.protocols ?? [])];
    this.tickets = new TicketStore({ ttl: options.ticketTtl });
    if (options.backplane && options.history) throw new TypeError('options.history configures the default MemoryBackplane; configure history on your backplane instead');
    this.backplane = options.backplane ?? new MemoryBackplane({ history: options.history });
    for (const [name, fn] of Object.entries(options.authorize ?? {})) {
      if (typeof fn !== 'function') throw new TypeError(`options.authorize.${name} must be a function`);
    }
    this.permissions = options.permissions === undefined ? null : new Permissions(options.permissions);
    this.grantVerifier = options.permissions?.verifySubscriptionToken ?? (options.jwt ? subscriptionTokenVerifier(options.jwt) : null);
    const report = (error: Error): void => this.report(error);
    this.registry = new Registry(this.backplane, report);
    this.delivery = new Delivery(
      { maxBufferedBytes: this.limits.maxBufferedBytes, slowConsumer: this.limits.slowConsumer, compress: options.compress === true },
      {
        close: (client, code, reason, killAfter) => this.closeClient(client, code, reason, killAfter),
        slow: (client, policy, bufferedAmount) => {
          if (this.listenerCount('slowConsumer') > 0) this.emit('slowConsumer', client, { policy, bufferedAmount });
        },
      },
    );
    this.admission = new Admission(this, resolver, tokenOptions, options.authenticate !== undefined && options.authenticate.length >= 2);
    this.requests = new Requests(this);
    if (options.server !== undefined) checkServerOptions(options.server);
    this.server = createServer(
      {
        ...options.server,
        maxMessageSize: this.limits.maxMessageSize,
        path: options.path,
        heartbeat: false,
        authenticate: (request) => this.attacher.upgradeRefusal() ?? this.admission.upgrade(request),
        selectProtocol: (offered) => selectHubProtocol(offered, this.supportedProtocols),
      },
      (connection, request) => this.accept(connection, request),
    );
    const sink = createSink(this.registry, this.delivery, {
      close: (client, code, reason) => this.closeClient(client, code, reason),
      presence: (event) => {
        if (this.listenerCount('presence') > 0) this.emit('presence', event);
      },
    });
    this.attacher = new Attacher(this.backplane, sink, {
      report: (error) => this.report(error),
      changed: (health) => {
        if (this.listenerCount('backplane') > 0) this.emit('backplane', health);
      },
      closing: () => this.closing !== null,
    });
  }

  /**
   * @internal Resolves when the backplane can be used: at once when it is up, after the first attach attempt while
   * that runs; rejects at once with a {@link BackplaneUnavailableError} while it is down.
   */
  get attached(): Promise<void> {
    return this.attacher.ready();
  }

  /**
   * Whether the hub can serve, for readiness checks: the backplane's state (`'attaching'` at startup, `'up'`, or
   * `'down'` while attach is retried or the broker is unreachable), whether new connections are accepted, the
   * failed attach attempts and the last error. See {@link HubHealth}; the `backplane` event announces changes.
   */
  health(): HubHealth {
    return this.attacher.health();
  }

  // ─── Attaching ────────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Completes an upgrade from a `node:http`/`https` server's `upgrade` event. An upgrade that arrives during the
   * first attach attempt (startup, connecting to the broker) waits for it, since a connection cannot be registered
   * (per-user limit, presence) before. While the backplane is down (attach failed and is being retried, or the
   * broker is unreachable) upgrades are answered `503 Service Unavailable` with `Retry-After`; once it is up they
   * are accepted again, without a restart.
   */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const first = this.attacher.pending;
    if (first === null) return this.server.handleUpgrade(request, socket, head);
    void first.then(() => {
      if (!socket.destroyed) this.server.handleUpgrade(request, socket, head);
    });
  }

  /**
   * Completes a WebSocket over HTTP/2 (RFC 8441): an extended CONNECT stream (`:protocol` websocket) from a
   * `node:http2` server, as {@link handleUpgrade} completes an HTTP/1.1 upgrade — the same authentication, limits
   * and backplane wait; the engine answers 200 instead of 101 (see `WebSocketServer.handleStream`). The hub treats
   * the connection exactly like one over TCP.
   */
  handleStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const first = this.attacher.pending;
    if (first === null) return this.server.handleStream(stream, headers);
    void first.then(() => {
      if (!stream.destroyed) this.server.handleStream(stream, headers);
    });
  }

  /**
   * Listens standalone (ws, or wss with `server.tls`). Resolves with the bound address, after the first attach
   * attempt: when it failed, the hub listens anyway, answers upgrades 503 and keeps attaching (see {@link health}).
   */
  async listen(port = 0, host?: string): Promise<AddressInfo> {
    await this.attacher.first;
    return this.server.listen(port, host);
  }

  // ─── Application API ──────────────────────────────────────────────────────────────────────────────────────

  /**
   * Publishes a topic message to every subscriber of a matching pattern (each connection once). Resolves with its
   * sequence number, epoch and timestamp (`ts`, ms since 1970, as subscribers receive it) once the backplane stored it. TypeError/RangeError for a bad topic, tenant or type.
   * While the backplane is down (see {@link health}) it rejects at once with a {@link BackplaneUnavailableError}.
   */
  async publish(message: PublishMessage): Promise<{ seq: number; epoch: string; ts: number }> {
    if (typeof message !== 'object' || message === null) throw new TypeError('publish needs { topic, type, data, tenant? }');
    checkType(message.type);
    const tenant = message.tenant ?? 'default';
    checkTenantName(tenant);
    const problem = checkTopic(message.topic, false, this.requests.topicLimits());
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
    return this.backplane.sendToUser(user, envelope(message));
  }

  /** Sends `{type, data}` to one connection by id (wherever it is). Resolves true when it was on this hub and sent. */
  async sendToConnection(connectionId: string, message: OutgoingMessage): Promise<boolean> {
    if (typeof connectionId !== 'string') throw new TypeError('connectionId must be a string');
    return this.backplane.sendToConnection(connectionId, envelope(message));
  }

  /** Sends `{type, data}` to every connection (of `tenant` only: those allowed to use it). Resolves with the sockets reached here. */
  async broadcast(message: OutgoingMessage, options: { tenant?: string } = {}): Promise<number> {
    if (options.tenant !== undefined) checkTenantName(options.tenant);
    return this.backplane.broadcast(envelope(message), options.tenant);
  }

  /** Closes every connection of `user` (default 4000: the client should reconnect). Resolves with those closed here. */
  async disconnectUser(user: string, code = 4000, reason = ''): Promise<number> {
    if (typeof user !== 'string' || user.length === 0) throw new TypeError('user must be a non-empty string');
    checkCloseCode(code);
    return this.backplane.disconnect({ user }, code, reason);
  }

  /**
   * Subscribes a connection of this hub from application code (seed 001's `hub.subscribe(connection_id, topic)`).
   * Resolves once the subscription is registered and its resume read (no ack is sent to the client); a replay
   * then follows at the connection's pace, before live messages. Rejects with a RangeError for an unknown
   * connection or a bad topic, and with an Error for a refused tenant.
   */
  async subscribe(connectionId: string, topic: string, options: { tenant?: string; since?: StreamPosition | PatternSince } = {}): Promise<SubscribeResult> {
    const client = this.registry.clients.get(connectionId);
    if (client === undefined || client.state !== STATE_OPEN) throw new RangeError(`no open, authenticated connection ${String(connectionId)} on this hub`);
    try {
      return await this.requests.subscribe(client, options.tenant, topic, options.since, 'native', false, true);
    } catch (error) {
      if (error instanceof HubError) throw error.code === 'invalid_request' ? new RangeError(error.message) : new Error(error.message);
      throw error;
    }
  }

  /** Ends a subscription made by the client or by {@link Hub.subscribe}. Resolves false when there was none. */
  async unsubscribe(connectionId: string, topic: string, options: { tenant?: string } = {}): Promise<boolean> {
    const client = this.registry.clients.get(connectionId);
    if (client === undefined) return false;
    const sub = findSub(client, options.tenant ?? 'default', normalizePattern(topic));
    if (sub === undefined) return false;
    this.registry.remove(sub);
    return true;
  }

  /** Who is subscribed to `topic` (the exact name or pattern subscribed to) in `tenant` (default `default`). */
  presence(topic: string, tenant = 'default'): Promise<PresenceSnapshot> {
    return this.backplane.presence(tenant, topic);
  }

  /**
   * A page of the held history of a topic after `since`, with exact gaps. `since`: absent (everything held), a
   * sequence number in the topic's current epoch, or `{ epoch, seq }` (another epoch: everything held,
   * `recovered: false`). `position` in the answer is the topic's current epoch and last sequence number.
   *
   * A wildcard pattern (`orders.*`, `orders.#`) answers for every matching topic with a stream, messages in
   * publication order (tenant offset) across topics and gaps per topic (each names its topic). `since`: absent
   * (everything held), a tenant offset of the current offset epoch (what came after it), or a
   * {@link PatternSince} `{ positions?, offset?, offsetEpoch? }` as a wildcard subscription resumes (an offset of
   * another offset epoch: everything held). The answer has no `position`; its `offset`/`offsetEpoch` are the
   * tenant's current ones, to ask again from.
   *
   * Pages: at most `limit` messages (default `limits.historyLimit`, 100; at most `limits.maxHistoryLimit`, 1,000)
   * and `limits.maxHistoryBytes` (256 KiB) of them. `more: true` says more is held: pass `cursor: answer.next`
   * (instead of `since`) for the next page. See {@link cutPage} for how gaps appear on later pages.
   */
  async history(topic: string, options: { tenant?: string; since?: StreamPosition | PatternSince | number; limit?: number; cursor?: string } = {}): Promise<HistoryPage> {
    const pattern = typeof topic === 'string' && isPattern(topic);
    const problem = checkTopic(topic, pattern, this.requests.topicLimits());
    if (problem !== null) throw new RangeError(problem);
    const tenant = options.tenant ?? 'default';
    checkTenantName(tenant);
    const name = pattern ? normalizePattern(topic) : topic;
    const since = await this.requests.historySince(tenant, name, pattern, options.since);
    try {
      return await this.requests.page(tenant, name, since, options.limit, options.cursor);
    } catch (error) {
      if (error instanceof HubError) throw new RangeError(error.message);
      throw error;
    }
  }

  /** Issues a one-time ticket for `?ticket=` (single use, `ttl` ms, default `ticketTtl`). */
  issueTicket(principal: Principal, ttl?: number): string {
    return this.tickets.issue(principal, ttl);
  }

  /** The client with this id on this hub. */
  client(connectionId: string): HubClient | undefined {
    return this.registry.clients.get(connectionId);
  }

  /** Metrics snapshot, for `/metrics`. */
  stats(): HubStats {
    const { registry, delivery } = this;
    const held = this.backplane instanceof MemoryBackplane ? (this.backplane.counts as { historyBytes?: number }).historyBytes : undefined;
    return {
      connections: registry.clients.size,
      pendingAuth: this.admission.pendingAuth,
      users: registry.users.size,
      subscriptions: registry.subscriptions,
      patterns: registry.patterns,
      connectionsTotal: this.counters.connectionsTotal,
      messagesIn: this.counters.messagesIn,
      messagesOut: delivery.counters.messagesOut,
      bytesIn: this.counters.bytesIn,
      bytesOut: delivery.counters.bytesOut,
      messagesByType: { ...this.byType },
      deliveryLatency: delivery.latency.snapshot(),
      publishes: this.counters.publishes,
      deliveries: delivery.counters.deliveries,
      drops: delivery.counters.drops,
      gapReports: delivery.counters.gapReports,
      slowConsumerDisconnects: delivery.counters.slowConsumerDisconnects,
      rateLimited: this.counters.rateLimited,
      authFailures: this.counters.authFailures,
      errors: { ...this.requests.errorCounts },
      closeCodes: { ...this.closeCounts },
      deadlines: this.timers.size,
      heartbeatRunning: this.heartbeatTimer !== null,
      replays: delivery.replaying,
      replaysRefused: delivery.counters.replaysRefused,
      pendingRequests: this.requests.pending,
      ...(held !== undefined ? { historyBytes: held } : {}),
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
    this.attacher.stop();
    for (const c of this.registry.clients.values()) if (c.closeCode === 0) c.closeCode = code;
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

  private accept(connection: WebSocketConnection, request: IncomingUpgrade): void {
    const now = Date.now();
    const id = `${this.backplane.nodeId}.${(++this.nextId).toString(36)}`;
    const rate = this.limits.rate;
    const client = new HubClient(this, id, connection, now, rate === false ? 0 : rate.burst);
    const hb = this.heartbeat;
    client.appPing = hb !== null && (hb.appPing === 'all' || (hb.appPing === 'native' && client.protocol !== 'llps.v1'));
    connection.data = client;
    connection.on('message', onConnectionMessage);
    connection.on('close', onConnectionClose);
    connection.on('error', onConnectionError);
    if (!client.appPing) connection.on('pong', onConnectionPong);
    this.registry.clients.set(id, client);
    this.counters.connectionsTotal++;
    this.startHeartbeat();
    this.admission.start(client, connection.principal as UpgradeVerdict, request);
  }

  /** @internal admission admitted a client. */
  connected(client: HubClient, request: IncomingUpgrade | undefined): void {
    this.emit('connection', client, request);
  }

  /** @internal Closes a client with a code the hub chose (counted under that code). */
  closeClient(client: HubClient, code: number, reason: string, killAfter = 0): void {
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
    const wasOpen = client.state === STATE_OPEN;
    client.state = STATE_CLOSED;
    this.admission.settle(client);
    this.timers.cancel(client.deadline);
    this.timers.cancel(client.kill);
    client.deadline = null;
    client.kill = null;
    client.request = undefined;
    this.delivery.release(client);
    this.registry.clients.delete(client.id);
    if (client.subs !== null) {
      for (const sub of [...client.subs]) this.registry.remove(sub);
      client.subs = null;
    }
    const principal = client.principal;
    if (wasOpen && principal !== null) {
      this.registry.removeUser(client, principal.user);
      const registered = client.registered ?? Promise.resolve();
      client.registered = null;
      void registered.then(() => this.backplane.unregisterConnection(principal.user, client.id)).catch((e: Error) => this.report(e));
    }
    const counted = client.closeCode !== 0 ? client.closeCode : code;
    this.closeCounts[counted] = (this.closeCounts[counted] ?? 0) + 1;
    if (this.registry.clients.size === 0) this.stopHeartbeat();
    if (wasOpen) this.emit('disconnect', client, code, reason);
  }

  // ─── Inbound ──────────────────────────────────────────────────────────────────────────────────────────────

  /** @internal Every message a client sends: a sign of life, then the rate limit, then its handler (in order). */
  onMessage(client: HubClient, data: Buffer, isBinary: boolean): void {
    if (client.state === STATE_CLOSED) return;
    this.counters.messagesIn++;
    this.counters.bytesIn += data.length;
    const now = Date.now();
    client.lastSeen = now;
    const requests = this.requests;
    const verdict = takeToken(client, this.limits.rate, this.limits.maxRateViolations, now);
    if (verdict !== 'ok') {
      this.counters.rateLimited++;
      if (verdict === 'close') {
        if (client.closeCode === 0) this.refused({ reason: 'rate_limit', request: client.request, code: 4429, connectionId: client.id, user: client.principal?.user });
        this.closeClient(client, 4429, 'rate limit exceeded repeatedly', 1000);
        return;
      }
      this.countType('rate_limited');
      const rate = this.limits.rate as { messages: number; interval: number };
      // The reply names the request it refuses, so that a client waiting for it learns at once.
      const parsed = isBinary ? null : parseRequest(data.toString());
      return requests.replyError(client, parsed?.dialect ?? client.dialect, 'rate_limited', `more than ${rate.messages} messages per ${rate.interval} ms: slow down`, parsed?.requestId);
    }
    if (isBinary) {
      this.countType('binary');
      if (client.state !== STATE_OPEN) return requests.replyError(client, client.dialect, 'unauthorized', 'authenticate first: send {"type":"auth","token":…}', undefined);
      if (this.listenerCount('binary') === 0) return requests.replyError(client, client.dialect, 'invalid_request', 'binary messages are not accepted here', undefined);
      void requests.callApp(client, 'binary', [client, data], undefined, client.dialect);
      return;
    }
    const text = data.toString();
    if (text === 'ping') {
      this.countType('ping');
      this.delivery.reply(client, 'pong');
      return;
    }
    if (text.charCodeAt(0) !== 0x7b /* { */ && text.trimStart().charCodeAt(0) !== 0x7b) {
      this.countType('text');
      if (client.state !== STATE_OPEN) return requests.replyError(client, client.dialect, 'unauthorized', 'authenticate first: send {"type":"auth","token":…}', undefined);
      if (this.listenerCount('text') === 0) return requests.replyError(client, client.dialect, 'invalid_request', 'expected a JSON object {"type": string, "data": object, "request_id"?: string | number}', undefined);
      void requests.callApp(client, 'text', [client, text], undefined, client.dialect);
      return;
    }
    const request = parseRequest(text);
    this.countType(request.kind);
    if (request.kind === 'invalid') return requests.replyError(client, request.dialect, request.code, request.message, request.requestId);
    if (request.kind === 'pong') return;
    requests.enqueue(client, request);
  }

  /** Counts an inbound message by kind (a fixed set of names: the cardinality is bounded). */
  private countType(kind: string): void {
    this.byType[kind] = (this.byType[kind] ?? 0) + 1;
  }

  /** Open connections by tenant, for metrics: see {@link Registry.connectionsByTenant}. */
  connectionsByTenant(max = 50): Record<string, number> {
    return this.registry.connectionsByTenant(max);
  }

  /** @internal {@link Admission} and {@link Requests} call these. */
  firstMessageAuth(client: HubClient, token: string, requestId: string | number | null | undefined): Promise<void> {
    return this.admission.firstMessageAuth(client, token, requestId);
  }

  /** @internal A subscription token's user and topic, or null (invalid, expired, or no way to verify it). */
  async verifyGrant(token: string): Promise<{ user: string; topic: string } | null> {
    if (this.grantVerifier === null) return null;
    try {
      const g = await this.grantVerifier(token);
      return g !== null && typeof g === 'object' && typeof g.user === 'string' && typeof g.topic === 'string' ? g : null;
    } catch (error) {
      this.report(new Error(`the subscription token verifier threw: ${(error as Error)?.message ?? String(error)}`));
      return null;
    }
  }

  /** @internal */
  refresh(client: HubClient, token: string, requestId: string | number | null | undefined, kind: 'auth' | 'refresh'): Promise<void> {
    return this.admission.refresh(client, token, requestId, kind);
  }

  /** @internal A message without a sequence number for one client (`client.send` too). */
  deliverDirect(client: HubClient, message: HubEnvelope, frames: DirectFrames | null): boolean {
    return this.delivery.direct(client, message, frames);
  }

  /** @internal */
  refused(refusal: HubRefusal): void {
    if (this.listenerCount('refused') === 0) return;
    try {
      this.emit('refused', refusal);
    } catch (error) {
      this.report(error as Error);
    }
  }

  /** @internal */
  report(error: Error): void {
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

  /**
   * Pings every `interval` (the protocol ping to all; the app-level ping to those that get it) and closes with
   * 4408 who stayed silent for `timeout` (see {@link HubHeartbeatOptions.timeout} for what counts, per dialect).
   */
  private sweep(): void {
    const hb = this.heartbeat!;
    const now = Date.now();
    for (const client of this.registry.clients.values()) {
      if (client.state === STATE_CLOSED || client.closeCode !== 0) continue;
      if (now - client.lastSeen >= hb.timeout) {
        this.closeClient(client, 4408, client.appPing ? 'heartbeat timeout: no pong' : 'heartbeat timeout: nothing received', 1000);
        continue;
      }
      if (now - client.lastPing >= hb.interval) {
        client.lastPing = now;
        this.delivery.ping(client);
      }
    }
  }
}

function onConnectionMessage(this: WebSocketConnection, data: Buffer, isBinary: boolean): void {
  const client = this.data as HubClient;
  (client.hub as Hub).onMessage(client, data, isBinary);
}

function onConnectionClose(this: WebSocketConnection, code: number, reason: string): void {
  const client = this.data as HubClient;
  (client.hub as Hub).onClose(client, code, reason);
}

/** Protocol errors close the connection with their code (1009, 1002, 1007…); remember it for the close counts. */
function onConnectionError(this: WebSocketConnection, error: Error): void {
  const client = this.data as HubClient;
  const code = (error as { closeCode?: unknown }).closeCode;
  if (typeof code === 'number' && client.closeCode === 0) client.closeCode = code;
}

/** Protocol pongs count as signs of life for clients without the app-level ping (see the heartbeat rule). */
function onConnectionPong(this: WebSocketConnection): void {
  (this.data as HubClient).lastSeen = Date.now();
}

function envelope(message: OutgoingMessage): HubEnvelope {
  if (typeof message !== 'object' || message === null) throw new TypeError('message must be { type, data }');
  checkType(message.type);
  return { type: message.type, data: serializeData(message.data ?? {}) };
}

function checkTenantName(tenant: unknown): asserts tenant is string {
  const problem = tenantProblem(tenant);
  if (problem !== null) throw new TypeError(problem);
}

/** Creates a hub. Attach it with `hub.handleUpgrade` or start it with `await hub.listen(port)`. */
export function createHub(options: HubOptions = {}): Hub {
  return new Hub(options);
}

/** The engine options the hub sets itself, with where a hub application sets them. */
const HUB_OWNED_SERVER_OPTIONS: Readonly<Record<string, string>> = {
  heartbeat: 'the hub runs its own heartbeat: use options.heartbeat of createHub',
  authenticate: 'the hub authenticates: use options.authenticate (token, request) or options.jwt of createHub',
  selectProtocol: "the hub selects the subprotocol: list extra names in createHub's options.protocols",
  origins: 'use options.origins of createHub',
  path: 'use options.path of createHub',
  port: 'call hub.listen(port)',
  maxMessageSize: 'use options.limits.maxMessageSize of createHub',
};
const HUB_SERVER_OPTION_NAMES: ReadonlySet<string> = new Set([...SERVER_OPTION_NAMES].filter((name) => !Object.hasOwn(HUB_OWNED_SERVER_OPTIONS, name)));
const HUB_SERVER_HINTS = { ...SERVER_OPTION_HINTS, ...HUB_OWNED_SERVER_OPTIONS };

/**
 * `options.server` holds engine options only, and none the hub sets itself (a TypeError names where those go): an
 * option the hub would override, or a name the engine does not know, is never silently ignored.
 */
function checkServerOptions(server: object): void {
  if (typeof server !== 'object' || server === null) throw new TypeError('options.server must be an object of engine options');
  checkOptionNames('createHub options.server', server, HUB_SERVER_OPTION_NAMES, HUB_SERVER_HINTS);
}
