/**
 * The backplane: everything a hub shares with other hubs when several processes or hosts serve one deployment.
 * {@link MemoryBackplane} (the default) serves one process; adapters for Redis or NATS implement the same
 * {@link Backplane} interface.
 *
 * ## For adapter authors
 *
 * A hub calls {@link Backplane.attach} with its {@link BackplaneSink}, then the other methods. When `attach`
 * rejects (the broker is not up yet), the hub calls it again with backoff until it resolves or the hub closes: a
 * failed `attach` must release whatever it had set up, so that the next one starts afresh. Every method that a
 * broker would answer asynchronously returns a promise; the hub awaits it where ordering matters:
 *
 * - **Publishing** ({@link Backplane.publish}) assigns the topic's next sequence number (contiguous from 1 in its
 *   epoch), the tenant stream offset, keeps the message in the topic's bounded history, and delivers it to the
 *   `message` sink of every hub that declared interest in a matching pattern of that tenant — this hub included,
 *   exactly once per hub even when several of its patterns match. Messages of one topic must reach each sink in
 *   sequence order. The promise resolves with the message once it is stored (and, for the memory backplane, after
 *   local delivery).
 * - **Interest** ({@link Backplane.subscribe}/{@link Backplane.unsubscribe}) is per (tenant, pattern), reference
 *   counted by the hub (called once per pattern per hub). `subscribe` resolves only once messages published
 *   afterwards are certain to reach this hub's sink: the hub acknowledges a client's subscription after that, so
 *   nothing published after an ack is missed. Patterns use `*` (one segment) and `#` (zero or more segments); a
 *   broker without these semantics subscribes more broadly and the hub filters locally (it re-matches every
 *   message against its own trie and drops what no local subscription wants).
 * - **Resume** ({@link Backplane.resume}) answers from the history: messages after a position, plus the exact
 *   missing ranges, and the current position/offset (read in the same step, so the hub can de-duplicate the
 *   messages that also arrive live). The offset comes with an offset epoch that changes whenever the offsets
 *   restart; a pattern resume whose `offsetEpoch` differs replays every matching topic from 0
 *   ({@link resumeFromOffset}).
 * - **Users**: {@link Backplane.registerConnection} returns every open connection of the user across the cluster,
 *   oldest first, so the per-user connection limit holds cluster-wide; the hub asks for the oldest to be closed
 *   with {@link Backplane.disconnect}, delivered to the sink of the hub that owns it. Connection ids start with
 *   the owning hub's `nodeId` and a dot, which is how an adapter routes to one connection.
 * - **Presence**: join/leave per (tenant, subscription name) and user; `presence` events reach every hub.
 * - **Gaps**: when the broker lost messages that the hub's subscribers were receiving live (a skipped sequence
 *   number the stream no longer holds, an epoch ended by a broker restart), report them with
 *   {@link BackplaneSink.gap} so that clients learn exactly what they missed instead of only seeing a new epoch.
 *
 * Failures: a rejected promise makes the hub answer the client with an error (`subscription_failed`,
 * `internal_error`); adapters should reject rather than hang, time out broker calls themselves, and reject at once
 * while their broker connection is known to be lost. An adapter that knows its connection state exposes it as
 * {@link Backplane.reachable} (and tells the sink's `status` when it changes): while it is false, the hub refuses
 * upgrades (503) and publishes at once. An adapter that knows which nodes are alive implements
 * {@link Backplane.liveConnections}, so that connections of a crashed node never make the hub close a live one.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { type Gap, type GAP_UNKNOWN_END, HistoryStore, type resumeFromOffset, type HistoryOptions, type PatternSince, type PublishedMessage, type ResumeResult, type StreamPosition } from './history.js';
import { isPattern } from './topics.js';

/** A message for users, one connection or everyone: a type and its data serialized as JSON text. */
export interface HubEnvelope {
  type: string;
  /** JSON text. */
  data: string;
}

/** Who is subscribed to a topic (or pattern) name: per user, the number of their connections. */
export interface PresenceSnapshot {
  tenant: string;
  topic: string;
  /** Distinct users. */
  users: Record<string, number>;
  /** Connections in total. */
  connections: number;
}

/** A user's first connection joined a topic's subscribers, or their last one left. */
export interface PresenceEvent {
  kind: 'join' | 'leave';
  tenant: string;
  topic: string;
  user: string;
}

/** What a resume answers: the messages and gaps, and the stream's current position read in the same step. */
export interface ResumeAnswer extends ResumeResult {
  /** For an exact topic: its current epoch and last sequence number. */
  position?: StreamPosition;
  /** The tenant stream offset at the time of the answer (what a wildcard subscription resumes from next time). */
  offset: number;
  /** The epoch of `offset`: it changes when the offsets restart (a new memory backplane, a broker that lost its data). */
  offsetEpoch: string;
}

/** A target for {@link Backplane.disconnect}. */
export type DisconnectTarget = { connectionId: string } | { user: string };

/** How the backplane hands incoming traffic to its hub. Implemented by the hub. */
export interface BackplaneSink {
  /** A topic message for this hub's subscribers (called in sequence order per topic). */
  message(message: PublishedMessage): void;
  /** A message for every connection of `user` on this hub. Returns the number of sockets reached. */
  user(user: string, envelope: HubEnvelope): number;
  /** A message for one connection of this hub (ignored when it is not here). */
  connection(connectionId: string, envelope: HubEnvelope): boolean;
  /** A message for every connection on this hub (of `tenant` only, when given). */
  broadcast(envelope: HubEnvelope, tenant: string | undefined): number;
  /** Close a connection (or every connection of a user) on this hub. */
  disconnect(target: DisconnectTarget, code: number, reason: string): number;
  /** A presence change somewhere in the cluster. */
  presence(event: PresenceEvent): void;
  /**
   * Messages of a topic that this hub's subscribers will never get: the adapter saw a sequence number skipped
   * and could not fetch the missing ones from its stream, or the topic's epoch ended (then `to` is
   * {@link GAP_UNKNOWN_END}). The hub sends a `gap` report to every local connection with a live subscription
   * matching `gap.topic` in `gap.tenant` (exact or wildcard, once per connection). Call it in order with
   * {@link BackplaneSink.message}: before the first message after the gap. Optional for hubs (sinks built by
   * tests may leave it out): adapters call it as `sink.gap?.(gap)`.
   */
  gap?(gap: Gap): void;
  /**
   * The broker connection was lost (`reachable` false, with the error when the adapter has one) or is back. Set
   * by the hub; adapters call it as `sink.status?.(…)` when {@link Backplane.reachable} changes after attach.
   */
  status?(reachable: boolean, error?: Error): void;
}

/** The interface every backplane implements. See the module documentation for the contract. */
export interface Backplane {
  /** This hub's id in the cluster; connection ids are `${nodeId}.${n}`. */
  readonly nodeId: string;
  /**
   * Connects the hub's sink, before anything else. Called again (with backoff) after it rejected, until it
   * resolves: a failed attempt must leave nothing behind.
   */
  attach(sink: BackplaneSink): Promise<void>;
  /**
   * Optional: whether the broker answers now. `false` from the moment the client library reports the connection
   * lost until it is back (and before attach); adapters without a broker leave it out. The hub reads it for
   * `hub.health()` and refuses upgrades (503) and publishes at once while it is false.
   */
  readonly reachable?: boolean;
  /** Assigns seq/epoch/offset, stores in history, delivers to interested hubs. */
  publish(tenant: string, topic: string, type: string, data: string, from?: string): Promise<PublishedMessage>;
  /** Declares this hub's interest in (tenant, pattern); resolves once live. */
  subscribe(tenant: string, pattern: string): Promise<void>;
  /** Withdraws the interest. */
  unsubscribe(tenant: string, pattern: string): Promise<void>;
  /**
   * Messages after `since` on `name` (an exact topic with a {@link StreamPosition}, or a pattern with a
   * {@link PatternSince}), with exact gaps; `since: null` only reads the current position/offset.
   */
  resume(tenant: string, name: string, since: StreamPosition | PatternSince | null): Promise<ResumeAnswer>;
  /** Delivers to every connection of `user` across the cluster; resolves with the sockets reached on this hub. */
  sendToUser(user: string, envelope: HubEnvelope): Promise<number>;
  /** Delivers to one connection wherever it is; resolves true when it was on this hub and open. */
  sendToConnection(connectionId: string, envelope: HubEnvelope): Promise<boolean>;
  /** Delivers to every connection of the cluster (of one tenant, when given); resolves with the sockets reached here. */
  broadcast(envelope: HubEnvelope, tenant?: string): Promise<number>;
  /** Closes a connection or a user's connections wherever they are; resolves with the number closed on this hub. */
  disconnect(target: DisconnectTarget, code: number, reason: string): Promise<number>;
  /** Records an open connection of `user`; resolves with all of the user's connection ids, oldest first. */
  registerConnection(user: string, connectionId: string): Promise<string[]>;
  /**
   * Optional. Called by the hub when {@link Backplane.registerConnection} answered more connections than the
   * per-user limit allows, before it closes any: `ids` (in the same order) without the connections of nodes that
   * do not answer now (crashed, cut off from the broker, silent), which must not count. The hub then closes the
   * oldest of what is left beyond the limit. Without it, every id counts.
   */
  liveConnections?(user: string, ids: string[]): Promise<string[]>;
  /** Forgets a connection (every close path calls it once). */
  unregisterConnection(user: string, connectionId: string): Promise<void>;
  /** A connection of `user` subscribed to `topic` (a name or pattern, as subscribed). */
  presenceJoin(tenant: string, topic: string, user: string, connectionId: string): Promise<void>;
  /** That subscription ended. */
  presenceLeave(tenant: string, topic: string, user: string, connectionId: string): Promise<void>;
  /** Who is subscribed to `topic` (the exact subscription name) in `tenant`. */
  presence(tenant: string, topic: string): Promise<PresenceSnapshot>;
  /** Releases the broker connections. */
  close(): Promise<void>;
}

/** Options of {@link MemoryBackplane}. */
export interface MemoryBackplaneOptions {
  /** History kept per topic. Default: {@link HISTORY_DEFAULTS}. */
  history?: HistoryOptions;
  /** This node's id. Default: 6 random bytes, base64url. */
  nodeId?: string;
  /** Clock, ms (for tests). Default: `Date.now`. */
  now?: () => number;
}

/**
 * Milliseconds between two sweeps of a {@link MemoryBackplane}'s history for a TTL of `ttl` ms: a quarter of the
 * TTL, at least 1 s and at most 60 s (so an expired message is held at most 60 s, or 25% of the TTL, longer; with
 * the default 5 min TTL, 60 s). No sweep (undefined) when messages never expire.
 */
export function historySweepInterval(ttl: number): number | undefined {
  if (ttl === Infinity) return undefined;
  return Math.min(60_000, Math.max(1000, Math.floor(ttl / 4)));
}

/**
 * The single-process backplane: history, user registry and presence in memory; every call completes at once
 * (the promises resolve in the same turn). Counts of what it holds are exposed for leak checks.
 *
 * From {@link MemoryBackplane.attach} to {@link MemoryBackplane.close}, an unref'd timer sweeps the history every
 * {@link historySweepInterval} (a quarter of the TTL, 1–60 s), so expired messages are freed even when nothing is
 * published or resumed any more.
 */
export class MemoryBackplane implements Backplane {
  readonly nodeId: string;
  readonly history: HistoryStore;
  private sink: BackplaneSink | null = null;
  private sweeper: ReturnType<typeof setInterval> | null = null;
  /** Connection ids per user, oldest first. */
  private readonly users = new Map<string, string[]>();
  /** Per (tenant, topic): per user, the subscribed connection id (a Set from the user's second connection on). */
  private readonly presenceMap = new Map<string, Map<string, string | Set<string>>>();
  private readonly interest = new Map<string, number>();

  constructor(options: MemoryBackplaneOptions = {}) {
    this.nodeId = options.nodeId ?? randomBytes(6).toString('base64url');
    this.history = new HistoryStore(options.history, options.now);
  }

  /**
   * Entries held (for leak checks): users with connections, presence keys, interest keys, topics with a stream, and
   * the bytes of held history ({@link HistoryStore.bytes}).
   */
  get counts(): { users: number; presence: number; interest: number; topics: number; historyBytes: number } {
    return { users: this.users.size, presence: this.presenceMap.size, interest: this.interest.size, topics: this.history.topicCount, historyBytes: this.history.bytes };
  }

  async attach(sink: BackplaneSink): Promise<void> {
    if (this.sink !== null) throw new Error('this MemoryBackplane is already attached to a hub (one hub per MemoryBackplane)');
    this.sink = sink;
    const interval = historySweepInterval(this.history.ttl);
    if (interval !== undefined && this.sweeper === null) {
      this.sweeper = setInterval(() => this.history.sweep(), interval);
      this.sweeper.unref();
    }
  }

  private target(): BackplaneSink {
    if (this.sink === null) throw new Error('the backplane is not attached to a hub');
    return this.sink;
  }

  async publish(tenant: string, topic: string, type: string, data: string, from?: string): Promise<PublishedMessage> {
    const message = this.history.append(tenant, topic, type, data, undefined, from);
    this.target().message(message);
    return message;
  }

  async subscribe(tenant: string, pattern: string): Promise<void> {
    const key = `${tenant}\0${pattern}`;
    this.interest.set(key, (this.interest.get(key) ?? 0) + 1);
  }

  async unsubscribe(tenant: string, pattern: string): Promise<void> {
    const key = `${tenant}\0${pattern}`;
    const n = (this.interest.get(key) ?? 0) - 1;
    if (n > 0) this.interest.set(key, n);
    else this.interest.delete(key);
  }

  async resume(tenant: string, name: string, since: StreamPosition | PatternSince | null): Promise<ResumeAnswer> {
    const h = this.history;
    if (!isPattern(name)) {
      const position = h.position(tenant, name);
      const result = since === null ? { messages: [], gaps: [], recovered: true } : h.since(tenant, name, since as StreamPosition);
      return { ...result, position, offset: h.offset(tenant), offsetEpoch: h.offsetEpoch };
    }
    const result = since === null ? { messages: [], gaps: [], recovered: true } : h.sincePattern(tenant, name, since as PatternSince);
    return { ...result, offset: h.offset(tenant), offsetEpoch: h.offsetEpoch };
  }

  async sendToUser(user: string, envelope: HubEnvelope): Promise<number> {
    return this.target().user(user, envelope);
  }

  async sendToConnection(connectionId: string, envelope: HubEnvelope): Promise<boolean> {
    return this.target().connection(connectionId, envelope);
  }

  async broadcast(envelope: HubEnvelope, tenant?: string): Promise<number> {
    return this.target().broadcast(envelope, tenant);
  }

  async disconnect(target: DisconnectTarget, code: number, reason: string): Promise<number> {
    return this.target().disconnect(target, code, reason);
  }

  async registerConnection(user: string, connectionId: string): Promise<string[]> {
    const ids = this.users.get(user);
    if (ids === undefined) {
      this.users.set(user, [connectionId]);
      return [connectionId];
    }
    if (!ids.includes(connectionId)) ids.push(connectionId);
    return [...ids];
  }

  async unregisterConnection(user: string, connectionId: string): Promise<void> {
    const ids = this.users.get(user);
    if (ids === undefined) return;
    const i = ids.indexOf(connectionId);
    if (i !== -1) ids.splice(i, 1);
    if (ids.length === 0) this.users.delete(user);
  }

  async presenceJoin(tenant: string, topic: string, user: string, connectionId: string): Promise<void> {
    const key = `${tenant}\0${topic}`;
    let byUser = this.presenceMap.get(key);
    if (byUser === undefined) {
      byUser = new Map();
      this.presenceMap.set(key, byUser);
    }
    const ids = byUser.get(user);
    if (ids === undefined) {
      byUser.set(user, connectionId);
      this.target().presence({ kind: 'join', tenant, topic, user });
    } else if (typeof ids === 'string') {
      if (ids !== connectionId) byUser.set(user, new Set([ids, connectionId]));
    } else ids.add(connectionId);
  }

  async presenceLeave(tenant: string, topic: string, user: string, connectionId: string): Promise<void> {
    const key = `${tenant}\0${topic}`;
    const byUser = this.presenceMap.get(key);
    const ids = byUser?.get(user);
    if (ids === undefined) return;
    if (typeof ids === 'string') {
      if (ids !== connectionId) return;
    } else {
      if (!ids.delete(connectionId)) return;
      if (ids.size === 1) byUser!.set(user, ids.values().next().value as string);
      return;
    }
    byUser!.delete(user);
    if (byUser!.size === 0) this.presenceMap.delete(key);
    this.target().presence({ kind: 'leave', tenant, topic, user });
  }

  async presence(tenant: string, topic: string): Promise<PresenceSnapshot> {
    const users: Record<string, number> = Object.create(null) as Record<string, number>;
    let connections = 0;
    const byUser = this.presenceMap.get(`${tenant}\0${topic}`);
    if (byUser !== undefined) {
      for (const [user, ids] of byUser) {
        const n = typeof ids === 'string' ? 1 : ids.size;
        users[user] = n;
        connections += n;
      }
    }
    return { tenant, topic, users, connections };
  }

  async close(): Promise<void> {
    this.sink = null;
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
  }
}
