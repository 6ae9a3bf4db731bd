/**
 * The request dispatcher: what a client's parsed requests do (subscribe with resume, unsubscribe, publish,
 * presence, history, application messages), in the order the client sent them. Each connection's requests form
 * one queue: a request starts once the one before it is done (its backplane call, authorization hook or
 * application handler settled), so an `unsubscribe` right after a `subscribe` cancels it, whatever the backplane's
 * latency. A subscription's replay is not waited for: it is paced by {@link Delivery} and cancelled by a later
 * `unsubscribe`.
 *
 * @module
 */
import type { Backplane, ResumeAnswer } from './backplane.js';
import { type HubClient, HubError, STATE_CLOSED, STATE_OPEN, type Subscription } from './client.js';
import { type Delivery, isGap } from './delivery.js';
import type { Gap, PatternSince, PublishedMessage, StreamPosition } from './history.js';
import type { AuthorizeDecision, HubOptions, ResolvedLimits } from './options.js';
import { type Dialect, encodeAck, encodeError, encodeHistory, type ErrorCode, type HubRequest, type RequestId, serializeData, truncateReason } from './protocol.js';
import type { Action, Permissions } from './permissions.js';
import { findSub, type Registry, subKey } from './registry.js';
import { capReplay, cutPage, decodeCursor, encodeCursor, type HistoryPage } from './resume.js';
import { checkTopic, isPattern, matches, normalizePattern } from './topics.js';
import type { SubscribeResult } from './types.js';

/** What the dispatcher needs of its hub. */
export interface RequestHost {
  readonly backplane: Backplane;
  readonly registry: Registry;
  readonly delivery: Delivery;
  readonly limits: ResolvedLimits;
  readonly options: HubOptions;
  readonly counters: { publishes: number };
  readonly attached: Promise<void>;
  report(error: Error): void;
  /** Listeners of an application event (`message`, `text`, `binary`). */
  listeners(event: 'message' | 'text' | 'binary'): Function[];
  listenerCount(event: 'message' | 'text' | 'binary'): number;
  firstMessageAuth(client: HubClient, token: string, requestId: RequestId | undefined): Promise<void>;
  closeClient(client: HubClient, code: number, reason: string): void;
  /** The channel permissions, when configured. */
  readonly permissions: Permissions | null;
  /** Verifies a subscription token: the user and topic it grants, or null. */
  verifyGrant(token: string): Promise<{ user: string; topic: string } | null>;
  refresh(client: HubClient, token: string, requestId: RequestId | undefined, kind: 'auth' | 'refresh'): Promise<void>;
}

/** Runs clients' requests in order, one queue per connection. */
export class Requests {
  /** Requests waiting or running, over all connections. */
  pending = 0;
  /** Error replies sent, by code. */
  readonly errorCounts: Record<string, number> = Object.create(null) as Record<string, number>;
  private readonly host: RequestHost;

  constructor(host: RequestHost) {
    this.host = host;
  }

  /**
   * Runs a request in the connection's order: at once when none is running, else after the ones before it. A
   * request that completes synchronously (a ping, an unsubscribe) lets the next start in the same turn.
   */
  enqueue(client: HubClient, r: HubRequest): void {
    const queue = client.queue;
    if (queue === null) return this.run(client, r);
    if (queue.length >= this.host.limits.maxPendingRequests) {
      this.replyError(client, r.dialect, 'rate_limited', `more than ${this.host.limits.maxPendingRequests} requests waiting: wait for their replies`, r.requestId);
      return;
    }
    queue.push(r);
    this.pending++;
  }

  private run(client: HubClient, first: HubRequest): void {
    let r: HubRequest | undefined = first;
    while (r !== undefined) {
      let running: Promise<void> | undefined;
      try {
        running = this.dispatch(client, r);
      } catch (error) {
        this.fail(client, r, error);
      }
      if (running !== undefined) {
        client.queue ??= [];
        const current = r;
        running.then(undefined, (error: unknown) => this.fail(client, current, error)).then(() => this.next(client));
        return;
      }
      r = this.take(client);
    }
  }

  /** The request after a finished asynchronous one. */
  private next(client: HubClient): void {
    const r = this.take(client);
    if (r !== undefined) this.run(client, r);
  }

  private take(client: HubClient): HubRequest | undefined {
    const queue = client.queue;
    if (queue === null) return undefined;
    const r = queue.shift();
    if (r === undefined) client.queue = null;
    else this.pending--;
    return r;
  }

  private fail(client: HubClient, r: HubRequest, error: unknown): void {
    if (error instanceof HubError) return this.replyError(client, r.dialect, error.code, error.message, r.requestId);
    this.host.report(error as Error);
    this.replyError(client, r.dialect, 'internal_error', 'the hub failed to handle this request', r.requestId);
  }

  /** An error reply (counted by code). */
  replyError(client: HubClient, dialect: Dialect, code: ErrorCode, message: string, requestId: RequestId | undefined): void {
    this.errorCounts[code] = (this.errorCounts[code] ?? 0) + 1;
    this.host.delivery.reply(client, encodeError(dialect, code, message, requestId));
  }

  /** Does what a request asks; returns a promise only when it has to wait (then the next request waits for it). */
  private dispatch(client: HubClient, r: HubRequest): Promise<void> | undefined {
    if (client.state === STATE_CLOSED) return undefined;
    if (client.state !== STATE_OPEN) {
      if (r.kind === 'auth') return this.host.firstMessageAuth(client, r.token, r.requestId);
      if (r.kind === 'ping') return this.replyPong(client, r.dialect, r.requestId);
      if (r.kind === 'pong') return undefined;
      throw new HubError('unauthorized', 'authenticate first: send {"type":"auth","token":…}');
    }
    switch (r.kind) {
      case 'ping':
        return this.replyPong(client, r.dialect, r.requestId);
      case 'pong':
        return undefined;
      case 'auth':
      case 'refresh':
        return this.host.refresh(client, r.token, r.requestId, r.kind);
      case 'subscribe':
        return this.subscribe(client, r.tenant, r.topic, r.since, r.dialect, r.presence, false, r.requestId, r.token).then(() => undefined);
      case 'unsubscribe': {
        const tenant = this.tenantFor(client, r.tenant);
        const topic = this.checkName(r.topic, true);
        const sub = findSub(client, tenant, topic);
        if (sub !== undefined) this.host.registry.remove(sub);
        this.host.delivery.reply(client, encodeAck(r.dialect, r.requestId, { topic, tenant, ...(r.dialect === 'llps' ? { channel: topic } : {}) }, 'unsubscribed'));
        return undefined;
      }
      case 'publish':
        return this.publish(client, r);
      case 'presence':
        return this.presence(client, r);
      case 'history':
        return this.history(client, r);
      case 'app':
        if (this.host.listenerCount('message') === 0) throw new HubError('invalid_request', `unknown message type ${JSON.stringify(r.type)}`);
        return this.callApp(client, 'message', [client, { type: r.type, data: r.data, requestId: r.requestId, envelope: r.envelope }], r.requestId, r.dialect);
    }
  }

  private async publish(client: HubClient, r: Extract<HubRequest, { kind: 'publish' }>): Promise<void> {
    const tenant = this.tenantFor(client, r.tenant);
    const topic = this.checkName(r.topic, false);
    if (this.host.options.clientPublish === false) throw new HubError('unauthorized', 'clients may not publish on this hub');
    await this.permit('publish', client, tenant, topic, undefined);
    const hook = this.host.options.authorize?.publish;
    let value = r.data;
    if (hook !== undefined) {
      const decided = this.decide(client, await hook({ client, tenant, topic, type: r.type, data: r.data }), `not allowed to publish to ${topic}`);
      if (decided.rewrite) value = decided.data;
    }
    let data: string;
    try {
      data = serializeData(value);
    } catch {
      throw new HubError('invalid_request', 'publish data must be JSON');
    }
    const m = await this.host.backplane.publish(tenant, topic, r.type, data, client.user);
    this.host.counters.publishes++;
    if (r.requestId !== undefined || r.dialect === 'llps') {
      this.host.delivery.reply(client, encodeAck(r.dialect, r.requestId, { topic, tenant, seq: m.seq, epoch: m.epoch, ...(r.dialect === 'llps' ? { channel: topic } : {}) }, 'published'));
    }
  }

  private async presence(client: HubClient, r: Extract<HubRequest, { kind: 'presence' }>): Promise<void> {
    const tenant = this.tenantFor(client, r.tenant);
    const topic = this.checkName(r.topic, true);
    await this.permit('presence', client, tenant, topic, undefined);
    const snapshot = await this.host.backplane.presence(tenant, topic);
    this.host.delivery.reply(client, encodeAck(r.dialect, r.requestId, { ...snapshot }, 'presence'));
  }

  private async history(client: HubClient, r: Extract<HubRequest, { kind: 'history' }>): Promise<void> {
    const tenant = this.tenantFor(client, r.tenant);
    const topic = this.checkName(r.topic, false);
    await this.permit('history', client, tenant, topic, r.token);
    await this.authorizeSubscribe(client, tenant, topic);
    const since = r.since === undefined || r.since === null ? undefined : this.checkPosition(r.since);
    const page = await this.page(tenant, topic, since, r.limit, r.cursor);
    const data: Record<string, unknown> = { topic, tenant, epoch: page.position?.epoch, seq: page.position?.seq, recovered: page.recovered, gaps: page.gaps, more: page.more };
    if (page.next !== undefined) data.next = page.next;
    this.host.delivery.reply(client, encodeHistory(r.dialect, r.requestId, data, page.messages));
  }

  private replyPong(client: HubClient, dialect: Dialect, requestId: RequestId | undefined): undefined {
    this.host.delivery.reply(client, dialect === 'llps' ? `{"action":"pong"${requestId === undefined ? '' : `,"request_id":${JSON.stringify(requestId)}`}}` : `{"type":"pong","data":{},"request_id":${JSON.stringify(requestId ?? null)}}`);
    return undefined;
  }

  /** Calls the application's listeners; the ack (with a `request_id`) waits for the promises they return. */
  callApp(client: HubClient, event: 'message' | 'text' | 'binary', args: unknown[], requestId: RequestId | undefined, dialect: Dialect): Promise<void> | undefined {
    const results: unknown[] = [];
    try {
      for (const listener of this.host.listeners(event)) results.push((listener as (...a: unknown[]) => unknown)(...args));
    } catch (error) {
      this.host.report(error as Error);
      this.replyError(client, dialect, 'internal_error', 'the application failed to handle this message', requestId);
      return undefined;
    }
    const pending = results.filter((r) => r instanceof Promise);
    const done = (): void => {
      if (requestId !== undefined && client.state === STATE_OPEN) this.host.delivery.reply(client, encodeAck(dialect, requestId));
    };
    if (pending.length === 0) {
      done();
      return undefined;
    }
    return Promise.all(pending).then(done, (error: Error) => {
      this.host.report(error);
      this.replyError(client, dialect, 'internal_error', 'the application failed to handle this message', requestId);
    });
  }

  // ─── Names and positions ──────────────────────────────────────────────────────────────────────────────────

  topicLimits(): { maxLength: number; maxSegments: number } {
    return { maxLength: this.host.limits.maxTopicLength, maxSegments: this.host.limits.maxTopicSegments };
  }

  private checkName(topic: unknown, pattern: boolean): string {
    const problem = checkTopic(topic, pattern, this.topicLimits());
    if (problem !== null) throw new HubError('invalid_request', problem);
    return pattern ? normalizePattern(topic as string) : (topic as string);
  }

  /** The tenant a request uses: given or `default`, and one the principal may use. */
  tenantFor(client: HubClient, tenant: unknown): string {
    if (tenant === undefined || tenant === null) tenant = 'default';
    const problem = tenantProblem(tenant);
    if (problem !== null) throw new HubError('invalid_request', problem);
    const allowed = client.principal?.tenants;
    if (allowed !== undefined && !allowed.includes(tenant as string)) throw new HubError('unauthorized', `not allowed to use tenant ${JSON.stringify(tenant)}`);
    return tenant as string;
  }

  /**
   * The channel permissions (when configured) for a client's request; `token`: the request's subscription token,
   * if any. Throws `unauthorized` naming the rule.
   */
  private async permit(action: Action, client: HubClient, tenant: string, topic: string, token: unknown): Promise<((topic: string) => boolean) | null> {
    const permissions = this.host.permissions;
    if (permissions === null) return null;
    let grant: string | undefined;
    if (token !== undefined && token !== null) {
      if (typeof token !== 'string' || token.length === 0 || token.length > 16_384) throw new HubError('invalid_request', 'token must be a subscription token (a non-empty string)');
      const granted = await this.host.verifyGrant(token);
      if (granted === null || granted.user !== client.user) throw new HubError('unauthorized', 'the subscription token is invalid, expired, or for another user');
      grant = granted.topic;
    }
    const v = permissions.verdict(action, { user: client.user, claims: client.principal?.claims }, tenant, topic, grant);
    if (v.verdict === 'allow') return null;
    if (v.verdict === 'deny' || action !== 'subscribe') throw new HubError('unauthorized', v.verdict === 'deny' ? v.reason : permissions.check(action, client, tenant, topic, grant)!);
    return topicFilter(permissions, client, tenant);
  }

  private async authorizeSubscribe(client: HubClient, tenant: string, topic: string): Promise<void> {
    const hook = this.host.options.authorize?.subscribe;
    if (hook !== undefined) this.decide(client, await hook({ client, tenant, topic }), `not allowed to subscribe to ${topic}`);
  }

  /**
   * An authorization hook's answer ({@link AuthorizeDecision}): returns when allowed (with data to publish instead,
   * when given); throws `unauthorized` (with the hook's message) when not, after closing the connection when the
   * hook asked for it.
   */
  private decide(client: HubClient, result: AuthorizeDecision, refused: string): { rewrite: boolean; data?: unknown } {
    if (result === true) return { rewrite: false };
    if (typeof result === 'object' && result !== null && result.allow === true) return Object.hasOwn(result, 'data') ? { rewrite: true, data: result.data } : { rewrite: false };
    const message = typeof result === 'object' && result !== null && typeof result.message === 'string' && result.message.length > 0 ? result.message.slice(0, 256) : refused;
    const disconnect = typeof result === 'object' && result !== null ? result.disconnect : undefined;
    if (disconnect !== undefined && Number.isInteger(disconnect.code) && disconnect.code >= 4000 && disconnect.code <= 4999) {
      // The error reply goes first, then the close frame.
      setImmediate(() => this.host.closeClient(client, disconnect.code, typeof disconnect.reason === 'string' ? truncateReason(disconnect.reason) : ''));
    }
    throw new HubError('unauthorized', message);
  }

  checkPosition(since: unknown): StreamPosition {
    if (typeof since !== 'object' || since === null) throw new HubError('invalid_request', 'since must be {"epoch": string, "seq": number}');
    const { epoch, seq } = since as Record<string, unknown>;
    if (typeof epoch !== 'string' || epoch.length > 64) throw new HubError('invalid_request', 'since.epoch must be a string');
    if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0) throw new HubError('invalid_request', 'since.seq must be a non-negative integer');
    return { epoch, seq };
  }

  checkPatternSince(since: unknown): PatternSince {
    if (typeof since !== 'object' || since === null || Array.isArray(since)) throw new HubError('invalid_request', 'since for a wildcard subscription must be {"positions": {topic: {"epoch","seq"}}, "offset": number, "offsetEpoch": string}');
    const s = since as Record<string, unknown>;
    const out: PatternSince = {};
    if (s.offset !== undefined) {
      if (typeof s.offset !== 'number' || !Number.isInteger(s.offset) || s.offset < 0) throw new HubError('invalid_request', 'since.offset must be a non-negative integer');
      out.offset = s.offset;
    }
    if (s.offsetEpoch !== undefined) {
      if (typeof s.offsetEpoch !== 'string' || s.offsetEpoch.length > 64) throw new HubError('invalid_request', "since.offsetEpoch must be a string (the offsetEpoch of the subscription's ack)");
      out.offsetEpoch = s.offsetEpoch;
    }
    if (s.positions !== undefined) {
      if (typeof s.positions !== 'object' || s.positions === null || Array.isArray(s.positions)) throw new HubError('invalid_request', 'since.positions must be an object {topic: {"epoch","seq"}}');
      const entries = Object.entries(s.positions);
      if (entries.length > this.host.limits.maxResumePositions) throw new HubError('invalid_request', `since.positions has more than ${this.host.limits.maxResumePositions} topics`);
      const positions: Record<string, StreamPosition> = Object.create(null) as Record<string, StreamPosition>;
      for (const [topic, position] of entries) positions[topic] = this.checkPosition(position);
      out.positions = positions;
    }
    return out;
  }

  // ─── History pages ────────────────────────────────────────────────────────────────────────────────────────

  /**
   * One page of a topic's or pattern's history (see `Hub.history`): from `since` (checked already: a position for a
   * topic, a {@link PatternSince} for a pattern; undefined: everything held), or from a `cursor` of an earlier
   * page (then `since` must be absent), at most `limit` messages (default `historyLimit`, at most
   * `maxHistoryLimit`) and `maxHistoryBytes`.
   */
  async page(tenant: string, name: string, since: StreamPosition | PatternSince | undefined, rawLimit: unknown, rawCursor: unknown): Promise<HistoryPage> {
    const { limits, backplane } = this.host;
    let limit = limits.historyLimit;
    if (rawLimit !== undefined && rawLimit !== null) {
      if (typeof rawLimit !== 'number' || !Number.isInteger(rawLimit) || rawLimit < 1 || rawLimit > limits.maxHistoryLimit) {
        throw new HubError('invalid_request', `limit must be an integer from 1 to ${limits.maxHistoryLimit}`);
      }
      limit = rawLimit;
    }
    const pattern = isPattern(name);
    let after: number | null = null;
    let from: StreamPosition | PatternSince;
    if (rawCursor !== undefined && rawCursor !== null) {
      if (since !== undefined) throw new HubError('invalid_request', 'give either since or cursor, not both');
      const cursor = decodeCursor(rawCursor);
      if (typeof cursor === 'string') throw new HubError('invalid_request', cursor);
      if (cursor.tenant !== tenant || cursor.name !== name) throw new HubError('invalid_request', 'this cursor belongs to another topic or tenant');
      if (pattern) {
        from = cursor.since === null ? { offset: 0 } : this.checkPatternSince(cursor.since);
        after = cursor.after;
      } else from = this.checkPosition(cursor.since);
    } else from = since ?? (pattern ? { offset: 0 } : { epoch: '', seq: 0 });
    await this.host.attached;
    const answer = await backplane.resume(tenant, name, from);
    return cutPage(answer, limit, limits.maxHistoryBytes, after, (last) =>
      encodeCursor(pattern ? { tenant, name, since: from, after: last.offset } : { tenant, name, since: { epoch: last.epoch, seq: last.seq }, after: 0 }),
    );
  }

  /**
   * The `since` of `hub.history` (the application's call: a TypeError or RangeError for a bad one) as a page's
   * start: a bare number is a sequence number of the topic's current epoch, or a tenant offset for a pattern.
   */
  async historySince(tenant: string, name: string, pattern: boolean, since: StreamPosition | PatternSince | number | undefined): Promise<StreamPosition | PatternSince | undefined> {
    if (since === undefined) return undefined;
    if (typeof since === 'number') {
      if (!Number.isInteger(since) || since < 0) throw new RangeError(`since must be a non-negative integer ${pattern ? 'tenant offset' : 'sequence number'}, got ${String(since)}`);
      if (pattern) return { offset: since };
      await this.host.attached;
      const now = await this.host.backplane.resume(tenant, name, null);
      return { epoch: now.position?.epoch ?? '', seq: since };
    }
    if (pattern) {
      let checked: PatternSince;
      try {
        checked = this.checkPatternSince(since);
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

  // ─── Subscriptions ────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Subscribes: registers the subscription (buffering live messages), waits until the backplane delivers it,
   * reads the resume, acks, then replays (paced; or, beyond the replay cap, reports the gaps instead) and goes
   * live with what arrived meanwhile, without duplicates.
   */
  async subscribe(
    client: HubClient,
    rawTenant: unknown,
    rawTopic: unknown,
    rawSince: unknown,
    dialect: Dialect,
    presence: boolean,
    fromApp: boolean,
    requestId?: RequestId,
    token?: unknown,
  ): Promise<SubscribeResult> {
    const { registry, delivery, backplane, limits } = this.host;
    const tenant = this.tenantFor(client, rawTenant);
    const topic = this.checkName(rawTopic, true);
    const pattern = isPattern(topic);
    const since = rawSince === undefined || rawSince === null ? null : pattern ? this.checkPatternSince(rawSince) : this.checkPosition(rawSince);
    let filter: ((topic: string) => boolean) | null = null;
    if (!fromApp) {
      filter = await this.permit('subscribe', client, tenant, topic, token);
      await this.authorizeSubscribe(client, tenant, topic);
    }
    if (client.state !== STATE_OPEN) throw new HubError('unauthorized', 'the connection is closed');
    const existing = findSub(client, tenant, topic);
    if (existing !== undefined && since === null) {
      // Idempotent: already subscribed.
      const result: SubscribeResult = { topic, tenant, recovered: true, replayed: 0 };
      if (!fromApp) delivery.reply(client, encodeAck(dialect, requestId, ackData(result, dialect), 'subscribed'));
      return result;
    }
    if (existing !== undefined) registry.remove(existing);
    if ((client.subs?.length ?? 0) >= limits.maxSubscriptions) throw new HubError('subscription_failed', `subscription limit reached (${limits.maxSubscriptions} per connection)`);
    const sub: Subscription = { client, connection: client.connection, tenant, topic, key: subKey(tenant, topic), dialect, pattern, presence, buffer: [], bufferBytes: 0, filter, cancelled: false };
    let answer: ResumeAnswer;
    try {
      await registry.add(sub);
      answer = await backplane.resume(tenant, topic, since);
    } catch (error) {
      registry.remove(sub);
      this.host.report(error as Error);
      throw new HubError('subscription_failed', 'the subscription could not be set up; try again');
    }
    if (sub.cancelled) throw new HubError('subscription_failed', 'unsubscribed or disconnected while subscribing');
    if (filter !== null) answer = { ...answer, messages: answer.messages.filter((m) => filter(m.topic)), gaps: answer.gaps.filter((g) => filter(g.topic)) };
    const capped = capReplay(answer, limits.maxReplayMessages, limits.maxReplayBytes);
    if (capped !== null) delivery.counters.replaysRefused++;
    const gaps = capped?.gaps ?? answer.gaps;
    const replay = capped === null ? answer.messages : [];
    const result: SubscribeResult = {
      topic,
      tenant,
      recovered: capped === null && answer.recovered,
      replayed: replay.length,
      ...(pattern ? { offset: answer.offset, offsetEpoch: answer.offsetEpoch } : { epoch: answer.position?.epoch ?? '', seq: answer.position?.seq ?? 0 }),
      ...(gaps.length > 0 ? { gaps } : {}),
    };
    if (!fromApp) delivery.reply(client, encodeAck(dialect, requestId, ackData(result, dialect), 'subscribed'));
    // Per topic, the newest seq the client has (replayed, or reported as a gap): live messages kept meanwhile
    // are delivered only when newer.
    const last = new Map<string, number>();
    if (!pattern && answer.position !== undefined) last.set(topic, answer.position.seq);
    for (const m of answer.messages) last.set(m.topic, m.seq);
    delivery.replay(sub, gaps.length === 0 ? replay : [...replay, ...gaps], () => this.goLive(sub, answer, last));
    return result;
  }

  /**
   * After a replay round: what arrived live meanwhile (only what is newer than what the client has), written as
   * one more paced round while newer messages keep waiting; once a round finds nothing waiting, live delivery.
   */
  private goLive(sub: Subscription, answer: ResumeAnswer, last: Map<string, number>): void {
    const { delivery, backplane } = this.host;
    const client = sub.client;
    const kept = sub.buffer!;
    const next: Array<PublishedMessage | Gap> = [];
    for (const m of kept) {
      if (isGap(m)) {
        // A loss the backplane reported while this subscription was being set up: sent unless the client's
        // starting point (the ack's position, or what was replayed) is already past it.
        const position = answer.position;
        const before = sub.pattern ? (last.get(m.topic) ?? 0) >= m.to : position === undefined || m.epoch !== position.epoch || m.to <= position.seq;
        if (!before && !coveredElsewhere(sub, m)) next.push(m);
        continue;
      }
      if (sub.pattern && m.offset <= answer.offset && !last.has(m.topic)) continue;
      const seen = last.get(m.topic);
      if (seen !== undefined && m.seq <= seen && (sub.pattern || m.epoch === answer.position?.epoch)) continue;
      if (coveredElsewhere(sub, m)) continue;
      last.set(m.topic, m.seq);
      next.push(m);
    }
    if (next.length > 0) {
      // Another paced round; the subscription keeps waiting (and keeping what arrives) until one comes up empty.
      sub.buffer = [];
      sub.bufferBytes = 0;
      delivery.replay(sub, next, () => this.goLive(sub, answer, last));
      return;
    }
    sub.buffer = null;
    sub.bufferBytes = 0;
    const { tenant, topic } = sub;
    this.host.registry.presenceCall(client, () => backplane.presenceJoin(tenant, topic, client.user, client.id));
  }
}

/**
 * The filter of a wildcard subscription that reaches topics the client may not read: per topic, what an exact
 * subscription would be told (with the client's current claims), remembered for up to 1,024 topics while the
 * principal stays the same (a refresh starts over).
 */
function topicFilter(permissions: Permissions, client: HubClient, tenant: string): (topic: string) => boolean {
  let seen = new Map<string, boolean>();
  let principal = client.principal;
  return (topic) => {
    if (client.principal !== principal || seen.size >= 1024) {
      seen = new Map();
      principal = client.principal;
    }
    let ok = seen.get(topic);
    if (ok === undefined) {
      ok = permissions.verdict('subscribe', { user: client.user, claims: client.principal?.claims }, tenant, topic).verdict === 'allow';
      seen.set(topic, ok);
    }
    return ok;
  };
}

/** Whether another live subscription of the same client matches the message (it was delivered through that one). */
function coveredElsewhere(sub: Subscription, m: { tenant: string; topic: string }): boolean {
  const subs = sub.client.subs;
  if (subs === null || subs.length < 2) return false;
  for (const other of subs) {
    if (other !== sub && other.buffer === null && other.tenant === m.tenant && matches(other.topic, m.topic)) return true;
  }
  return false;
}

/** Why a tenant name is refused, or null. */
export function tenantProblem(tenant: unknown): string | null {
  if (typeof tenant !== 'string' || tenant.length === 0 || tenant.length > 128 || /[\s\0]/.test(tenant)) {
    return 'tenant must be a non-empty string of at most 128 characters without whitespace';
  }
  return null;
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
