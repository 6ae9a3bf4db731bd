/**
 * The pub/sub hub: topics with `*`/`#` wildcards, tenants, delivery to topics, users, connections and everyone,
 * authentication at the handshake or by first message, authorization hooks, heartbeats, limits, sequence
 * numbers with bounded history and exact resume, presence, graceful shutdown. Built on the engine's server; the
 * state shared between hubs goes through a {@link Backplane} ({@link MemoryBackplane} by default).
 *
 * This file is the facade: the public API, events and stats, the connection lifecycle and the heartbeat. The jobs
 * live beside it: {@link Admission} (who gets in), `rate.ts` (inbound rate), {@link Requests} (what requests do,
 * in order), {@link Registry} (connections, users, subscriptions, interest) and {@link Delivery} (the one writer,
 * with the outbound budget and the slow-consumer policy).
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { WebSocketConnection } from '../transport/connection.js';
import { createServer, type IncomingUpgrade, type WebSocketServer } from '../transport/server.js';
import { Admission, type UpgradeVerdict } from './admission.js';
import { HUB_SUBPROTOCOLS, type Principal, resolveTokenOptions, selectHubProtocol, TicketStore } from './auth.js';
import { type Backplane, type BackplaneSink, type DisconnectTarget, type HubEnvelope, MemoryBackplane, type PresenceEvent, type PresenceSnapshot } from './backplane.js';
import { checkType, HubClient, HubError, STATE_CLOSED, STATE_OPEN, type Subscription } from './client.js';
import { Delivery, type DirectFrames } from './delivery.js';
import type { Gap, PatternSince, PublishedMessage, StreamPosition } from './history.js';
import { jwtResolver } from './jwt.js';
import { checkCloseCode, type HubHeartbeatOptions, type HubOptions, type HubRefusal, type ResolvedLimits, resolveHeartbeat, resolveLimits } from './options.js';
import { APP_PING, encodeDirect, parseRequest, serializeData } from './protocol.js';
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
  readonly attached: Promise<void>;
  /** @internal */
  readonly counters = { connectionsTotal: 0, messagesIn: 0, publishes: 0, rateLimited: 0, authFailures: 0 };
  private readonly requests: Requests;
  private readonly admission: Admission;
  private readonly heartbeat: Required<HubHeartbeatOptions> | null;
  private readonly supportedProtocols: readonly string[];
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private nextId = 0;
  private readonly matchScratch: Array<ReadonlySet<Subscription>> = [];
  private closing: Promise<void> | null = null;
  /** Whether the backplane's `attach` settled: `null` while it runs, then `'ok'` or `'failed'`. */
  private attachState: 'ok' | 'failed' | null = null;
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
    this.server = createServer(
      {
        ...options.server,
        maxMessageSize: this.limits.maxMessageSize,
        path: options.path,
        heartbeat: false,
        authenticate: (request) => this.admission.upgrade(request),
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
    const since = await this.historySince(tenant, name, pattern, options.since);
    try {
      return await this.requests.page(tenant, name, since, options.limit, options.cursor);
    } catch (error) {
      if (error instanceof HubError) throw new RangeError(error.message);
      throw error;
    }
  }

  private async historySince(tenant: string, name: string, pattern: boolean, since: StreamPosition | PatternSince | number | undefined): Promise<StreamPosition | PatternSince | undefined> {
    if (since === undefined) return undefined;
    if (typeof since === 'number') {
      if (!Number.isInteger(since) || since < 0) throw new RangeError(`since must be a non-negative integer ${pattern ? 'tenant offset' : 'sequence number'}, got ${String(since)}`);
      if (pattern) return { offset: since };
      await this.attached;
      const now = await this.backplane.resume(tenant, name, null);
      return { epoch: now.position?.epoch ?? '', seq: since };
    }
    if (pattern) {
      let checked: PatternSince;
      try {
        checked = this.requests.checkPatternSince(since);
      } catch (error) {
        throw new TypeError(`since for a pattern must be a tenant offset or { positions?, offset?, offsetEpoch? }: ${(error as Error).message}`);
      }
      if (checked.offset === undefined && checked.positions === undefined) throw new TypeError('since for a pattern needs positions or an offset');
      return checked;
    }
    const position = since as Partial<StreamPosition> | null;
    if (typeof position !== 'object' || position === null || typeof position.epoch !== 'string' || !Number.isInteger(position.seq) || position.seq! < 0) {
      throw new TypeError('since for a topic must be a sequence number or { epoch: string, seq: non-negative integer }');
    }
    return { epoch: position.epoch, seq: position.seq! };
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
      const rate = this.limits.rate as { messages: number; interval: number };
      // The reply names the request it refuses, so that a client waiting for it learns at once.
      const parsed = isBinary ? null : parseRequest(data.toString());
      return requests.replyError(client, parsed?.dialect ?? client.dialect, 'rate_limited', `more than ${rate.messages} messages per ${rate.interval} ms: slow down`, parsed?.requestId);
    }
    if (isBinary) {
      if (client.state !== STATE_OPEN) return requests.replyError(client, client.dialect, 'unauthorized', 'authenticate first: send {"type":"auth","token":…}', undefined);
      if (this.listenerCount('binary') === 0) return requests.replyError(client, client.dialect, 'invalid_request', 'binary messages are not accepted here', undefined);
      void requests.callApp(client, 'binary', [client, data], undefined, client.dialect);
      return;
    }
    const text = data.toString();
    if (text === 'ping') {
      this.delivery.reply(client, 'pong');
      return;
    }
    if (text.charCodeAt(0) !== 0x7b /* { */ && text.trimStart().charCodeAt(0) !== 0x7b) {
      if (client.state !== STATE_OPEN) return requests.replyError(client, client.dialect, 'unauthorized', 'authenticate first: send {"type":"auth","token":…}', undefined);
      if (this.listenerCount('text') === 0) return requests.replyError(client, client.dialect, 'invalid_request', 'expected a JSON object {"type": string, "data": object, "request_id"?: string | number}', undefined);
      void requests.callApp(client, 'text', [client, text], undefined, client.dialect);
      return;
    }
    const request = parseRequest(text);
    if (request.kind === 'invalid') return requests.replyError(client, request.dialect, request.code, request.message, request.requestId);
    if (request.kind === 'pong') return;
    requests.enqueue(client, request);
  }

  /** @internal {@link Admission} and {@link Requests} call these. */
  firstMessageAuth(client: HubClient, token: string, requestId: string | number | null | undefined): Promise<void> {
    return this.admission.firstMessageAuth(client, token, requestId);
  }

  /** @internal */
  refresh(client: HubClient, token: string, requestId: string | number | null | undefined, kind: 'auth' | 'refresh'): Promise<void> {
    return this.admission.refresh(client, token, requestId, kind);
  }

  // ─── From the backplane ───────────────────────────────────────────────────────────────────────────────────

  /** @internal A message without a sequence number for one client (`client.send` too). */
  deliverDirect(client: HubClient, message: HubEnvelope, frames: DirectFrames | null): boolean {
    return this.delivery.direct(client, message, frames);
  }

  private sink(): BackplaneSink {
    const { registry, delivery } = this;
    return {
      message: (m) => this.onTopicMessage(m),
      user: (user, message) => {
        let n = 0;
        const frames: DirectFrames = {};
        for (const client of registry.ofUser(user)) if (delivery.direct(client, message, frames)) n++;
        return n;
      },
      connection: (id, message) => {
        const client = registry.clients.get(id);
        return client !== undefined && delivery.direct(client, message, null);
      },
      broadcast: (message, tenant) => {
        let n = 0;
        const frames: DirectFrames = {};
        for (const client of registry.open(tenant)) if (delivery.direct(client, message, frames)) n++;
        return n;
      },
      disconnect: (target: DisconnectTarget, code, reason) => {
        const list = 'user' in target ? registry.ofUser(target.user) : [registry.clients.get(target.connectionId)].filter((c) => c !== undefined);
        for (const client of list) this.closeClient(client, code, reason);
        return list.length;
      },
      presence: (event) => this.onPresence(event),
      gap: (gap) => this.onBackplaneGap(gap),
    };
  }

  private onTopicMessage(m: PublishedMessage): void {
    const sets = this.matchScratch;
    this.registry.match(m.tenant, m.topic, sets);
    if (sets.length === 0) return;
    try {
      this.delivery.publish(m, sets);
    } finally {
      sets.length = 0;
    }
  }

  /**
   * A loss reported by the backplane: one `gap` frame per dialect, sent to every connection with a live
   * subscription matching the topic (once per connection, however many of its patterns match). Subscriptions
   * still being set up keep it in their buffer, in order with the messages.
   */
  private onBackplaneGap(gap: Gap): void {
    if (typeof gap !== 'object' || gap === null || typeof gap.topic !== 'string' || typeof gap.tenant !== 'string') return;
    const sets: Array<ReadonlySet<Subscription>> = [];
    this.registry.match(gap.tenant, gap.topic, sets);
    // Per connection, one subscription: a live one when there is one.
    const chosen = new Map<HubClient, Subscription>();
    for (const set of sets) {
      for (const sub of set) {
        const held = chosen.get(sub.client);
        if (held === undefined || (held.buffer !== null && sub.buffer === null)) chosen.set(sub.client, sub);
      }
    }
    for (const [client, sub] of chosen) {
      if (sub.buffer !== null) this.delivery.hold(sub, gap);
      else if (client.state === STATE_OPEN) this.delivery.gap(client, sub.dialect, gap);
    }
  }

  private onPresence(event: PresenceEvent): void {
    if (this.listenerCount('presence') > 0) this.emit('presence', event);
    const subs = this.registry.exact(event.tenant, event.topic);
    if (subs === undefined) return;
    const data = serializeData({ tenant: event.tenant, topic: event.topic, user: event.user });
    for (const sub of subs) {
      if (!sub.presence || sub.buffer !== null || sub.client.user === event.user) continue;
      this.delivery.reply(sub.client, sub.dialect === 'llps' ? `{"action":${JSON.stringify(event.kind)},"channel":${JSON.stringify(event.topic)},"tenant":${JSON.stringify(event.tenant)},"user":${JSON.stringify(event.user)}}` : encodeDirect('native', event.kind, data));
    }
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
        client.connection.ping();
        if (client.appPing) this.delivery.reply(client, APP_PING);
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
