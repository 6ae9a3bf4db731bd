/**
 * What the Redis and NATS backplanes share: naming on the broker (escaping, wildcard mapping), the resume
 * computation over a topic's stream as a broker holds it, and {@link BrokerBackplane} — interest counting,
 * de-duplication by (topic, seq), in-order delivery with gap filling from the broker's stream, and resynchronisation
 * after a reconnect. Imported only by the adapter entry points (`wsengine/hub/redis`, `wsengine/hub/nats`); the hub
 * core never imports this file.
 *
 * @module
 * @internal
 */
import { randomBytes } from 'node:crypto';
import type {
  Backplane,
  BackplaneSink,
  DisconnectTarget,
  HubEnvelope,
  PresenceEvent,
  PresenceSnapshot,
  ResumeAnswer,
} from './backplane.js';
import { GAP_UNKNOWN_END, resumeFromOffset, type Gap, type PatternSince, type PublishedMessage, type ResumeResult, type StreamPosition } from './history.js';
import { isPattern, matches } from './topics.js';

/** Defaults shared by the broker backplanes. */
export const BROKER_DEFAULTS = {
  /** Messages kept per topic in the broker's stream. */
  historySize: 100,
  /** Milliseconds a message stays resumable. */
  historyTtl: 300_000,
  /** Milliseconds a broker call may take before it is failed (the hub then answers the client with an error). */
  timeout: 5_000,
  /** Milliseconds between a node's liveness heartbeats. */
  heartbeat: 5_000,
  /** A node that sent no heartbeat for this long (ms) is dead: its connections and presence no longer count. */
  nodeTtl: 15_000,
  /** Topics whose last delivered position a node remembers for de-duplication and gap filling. */
  maxTracked: 100_000,
} as const;

/** Options every broker backplane accepts. */
export interface BrokerBackplaneOptions {
  /**
   * Prefix of every key, channel, subject and stream the adapter uses, so that several deployments (or test runs)
   * share one broker without seeing each other. Default: `'wsengine'`. Letters, digits, `_` and `-` only.
   */
  prefix?: string;
  /** This node's id (the start of its connection ids). Default: 6 random bytes, base64url. */
  nodeId?: string;
  /** Messages kept per topic on the broker for resume. Default: 100. */
  historySize?: number;
  /** Milliseconds a message stays resumable. Default: 300,000 (5 min). */
  historyTtl?: number;
  /** Milliseconds before a broker call is failed. Default: 5,000. */
  timeout?: number;
  /** Milliseconds between liveness heartbeats of this node. Default: 5,000. */
  heartbeat?: number;
  /** Milliseconds without a heartbeat after which a node counts as dead. Default: 15,000 (3 heartbeats). */
  nodeTtl?: number;
  /** Called with every broker error the adapter survives (connection loss, failed resynchronisation). Default: none. */
  onError?: (error: Error) => void;
}

/** A topic's stream as the broker holds it, normalized for {@link replayView}. */
export interface TopicView {
  epoch: string;
  /** Last sequence number assigned in the epoch. */
  seq: number;
  /** Tenant offset of the last message. */
  lastOffset: number;
  /** Tenant offset just before the epoch's first message. */
  startOffset: number;
  /** Messages still held, oldest first, each with the tenant offset of the message before it in this topic. */
  held: HeldMessage[];
}

/** A tenant's current offset and the epoch of its offsets (which changes when the broker lost the counter). */
export interface TenantOffset {
  offset: number;
  epoch: string;
}

/** A held message and the tenant offset of its predecessor in the topic (0 for seq 1). */
export interface HeldMessage {
  message: PublishedMessage;
  prev: number;
}

export { GAP_UNKNOWN_END } from './history.js';

const PREFIX_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** Checks the common options; throws TypeError/RangeError saying what to do. */
export function checkBrokerOptions(options: BrokerBackplaneOptions): Required<Omit<BrokerBackplaneOptions, 'onError'>> & Pick<BrokerBackplaneOptions, 'onError'> {
  if (options === null || typeof options !== 'object') throw new TypeError('backplane options must be an object');
  const prefix = options.prefix ?? 'wsengine';
  if (typeof prefix !== 'string' || !PREFIX_RE.test(prefix)) throw new TypeError(`prefix must be 1–64 letters, digits, "_" or "-", got ${JSON.stringify(prefix)}`);
  const nodeId = options.nodeId ?? randomBytes(6).toString('base64url');
  if (typeof nodeId !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(nodeId)) throw new TypeError(`nodeId must be 1–64 letters, digits, "_" or "-", got ${JSON.stringify(nodeId)}`);
  const num = (name: string, v: number | undefined, d: number, min: number): number => {
    const x = v ?? d;
    if (typeof x !== 'number' || !Number.isFinite(x) || x < min) throw new RangeError(`${name} must be a finite number ≥ ${min}, got ${String(x)}`);
    return Math.floor(x);
  };
  if (options.onError !== undefined && typeof options.onError !== 'function') throw new TypeError('onError must be a function');
  const heartbeat = num('heartbeat', options.heartbeat, BROKER_DEFAULTS.heartbeat, 100);
  return {
    prefix,
    nodeId,
    historySize: num('historySize', options.historySize, BROKER_DEFAULTS.historySize, 0),
    historyTtl: num('historyTtl', options.historyTtl, BROKER_DEFAULTS.historyTtl, 1),
    timeout: num('timeout', options.timeout, BROKER_DEFAULTS.timeout, 1),
    heartbeat,
    nodeTtl: num('nodeTtl', options.nodeTtl, Math.max(BROKER_DEFAULTS.nodeTtl, heartbeat * 3), heartbeat * 2),
    onError: options.onError,
  };
}

/**
 * Percent-escapes the characters of one name segment that a broker gives meaning to (and `%` itself), so
 * `a*`, `>` or `[x]` are plain text on every broker. `extra` lists further characters to escape.
 */
export function escapeSegment(segment: string, extra: string): string {
  let out = '';
  for (const ch of segment) {
    if (ch === '%' || extra.includes(ch)) out += '%' + ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0');
    else out += ch;
  }
  return out;
}

/** Inverse of {@link escapeSegment}. */
export function unescapeSegment(segment: string): string {
  return segment.includes('%') ? segment.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))) : segment;
}

/**
 * Maps a hub pattern (`*` one segment, `#` zero or more) onto NATS subject suffixes (after `<base>.`): `*` stays
 * `*`; a trailing `#` becomes the prefix itself plus `prefix.>`; `#` alone becomes `>`; a `#` anywhere else
 * truncates the subject there with `>` (broader — the hub filters locally). Segments are escaped with `esc`.
 */
export function natsPatternSubjects(pattern: string, esc: (s: string) => string): string[] {
  const segs = pattern.split('.');
  const out: string[] = [];
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i];
    if (s === '#') {
      if (i === segs.length - 1 && i > 0) return [out.join('.'), [...out, '>'].join('.')];
      out.push('>');
      return [out.join('.')];
    }
    out.push(s === '*' ? '*' : esc(s));
  }
  return [out.join('.')];
}

/**
 * Maps a hub pattern onto one Redis glob (after `<base>`): literal characters `? * [ ] \` are escaped with a
 * backslash; `*` becomes `*` (which in Redis also crosses dots: broader, filtered locally); `#` becomes `*` and
 * absorbs one neighbouring dot so that "zero segments" still matches (`a.#` → `a*`, `a.#.b` → `a.*b`, `#.b` → `*b`).
 */
export function redisPatternGlob(pattern: string, esc: (s: string) => string): string {
  const segs = pattern.split('.');
  let out = '';
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i];
    const last = i === segs.length - 1;
    if (s === '#') {
      out = out.endsWith('.') && last ? out.slice(0, -1) + '*' : out + '*';
      continue; // `#` absorbs the following dot.
    }
    out += (s === '*' ? '*' : esc(s).replace(/[?*[\]\\]/g, (c) => '\\' + c)) + (last ? '' : '.');
  }
  return out;
}

/**
 * What a client that saw up to seq `after` of the view's epoch missed: the held messages after it, and the exact
 * range no longer held. `epochLost`: the client's position was in an epoch that no longer exists.
 */
export function replayView(tenant: string, topic: string, view: TopicView, after: number, epochLost: boolean): ResumeResult {
  const droppedSeq = view.held.length > 0 ? view.held[0].message.seq - 1 : view.seq;
  const gaps: Gap[] = [];
  if (after < droppedSeq) gaps.push({ tenant, topic, epoch: view.epoch, from: after + 1, to: droppedSeq });
  const messages: PublishedMessage[] = [];
  for (const h of view.held) if (h.message.seq > after) messages.push(h.message);
  return { messages, gaps, recovered: gaps.length === 0 && !epochLost };
}

/** Resume of one exact topic from `since` against its view (null: the broker holds no stream for it). */
export function resumeTopic(tenant: string, topic: string, view: TopicView | null, since: StreamPosition): ResumeResult {
  if (view === null) return { messages: [], gaps: [], recovered: since.seq === 0 };
  const same = since.epoch === view.epoch;
  const after = same ? Math.min(Math.max(0, Math.floor(since.seq)), view.seq) : 0;
  return replayView(tenant, topic, view, after, !same && since.seq > 0);
}

/**
 * Resume of a pattern subscription from the views of the topics concerned (those named in `since.positions` and
 * those published after `since.offset`), with the same rules as the in-memory history: a topic with a position
 * resumes from it; one without resumes from the tenant offset.
 */
export function resumePattern(tenant: string, pattern: string, views: Map<string, TopicView>, since: PatternSince, current: TenantOffset): ResumeResult {
  const result: ResumeResult = { messages: [], gaps: [], recovered: true };
  const fromOffset = resumeFromOffset(since, current);
  const positions = since.positions ?? {};
  for (const [topic, view] of views) {
    if (!matches(pattern, topic)) continue;
    const known = Object.hasOwn(positions, topic) ? positions[topic] : undefined;
    let part: ResumeResult;
    if (known !== undefined) part = resumeTopic(tenant, topic, view, known);
    else if (fromOffset === Infinity || view.seq === 0) continue;
    else if (view.startOffset >= fromOffset) part = replayView(tenant, topic, view, 0, false);
    else {
      let after = 0;
      for (const h of view.held) {
        if (h.message.offset > fromOffset) break;
        after = h.message.seq;
      }
      if (after === 0) {
        const droppedOffset = view.held.length > 0 ? view.held[0].prev : view.lastOffset;
        const droppedSeq = view.held.length > 0 ? view.held[0].message.seq - 1 : view.seq;
        if (droppedOffset <= fromOffset) after = droppedSeq;
      }
      part = replayView(tenant, topic, view, after, false);
    }
    for (const m of part.messages) result.messages.push(m);
    for (const g of part.gaps) result.gaps.push(g);
    if (!part.recovered) result.recovered = false;
  }
  result.messages.sort((a, b) => a.offset - b.offset);
  return result;
}

/** Rejects with a clear error when `promise` has not settled within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: the broker did not answer within ${ms} ms`)), ms);
    timer.unref?.();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Last delivered position of a topic on this node, and messages held back while a gap is being filled. */
interface Tracked {
  epoch: string;
  seq: number;
  /** Non-null while the gap before these messages is fetched from the broker's stream. */
  waiting: PublishedMessage[] | null;
  /**
   * Set by {@link BrokerBackplane.resync} while a fill is already running: that fill's stream read may predate the
   * renewed broker subscription, so another fill follows it.
   */
  again?: boolean;
}

/** A message between nodes that is not a topic message (user, connection, broadcast, disconnect, presence). */
export type ControlMessage =
  | { k: 'user'; user: string; env: HubEnvelope }
  | { k: 'conn'; id: string; env: HubEnvelope }
  | { k: 'bcast'; tenant?: string; env: HubEnvelope }
  | { k: 'disc'; target: DisconnectTarget; code: number; reason: string }
  | { k: 'pres'; event: PresenceEvent };

/**
 * The broker-independent half of a broker backplane. A subclass provides the broker operations; this class keeps
 * the contract of {@link Backplane}: exactly once per hub and in sequence order per topic (duplicates from
 * overlapping broker subscriptions dropped by (topic, epoch, seq); a skipped seq fetched from the stream before
 * later messages are delivered, or reported as a gap), interest reference-counted per broker subscription, and
 * after a reconnect every tracked topic brought up to date from the stream.
 */
export abstract class BrokerBackplane implements Backplane {
  readonly nodeId: string;
  protected readonly opts: ReturnType<typeof checkBrokerOptions>;
  protected sink: BackplaneSink | null = null;
  /** Broker subscription key → number of hub patterns needing it. */
  private readonly brokerRefs = new Map<string, { n: number; ready: Promise<void> }>();
  /** Per tenant: the hub patterns subscribed (for forgetting tracked topics on unsubscribe). */
  private readonly patterns = new Map<string, Set<string>>();
  /** Per tenant, per topic: the last position delivered to the hub. */
  private readonly tracked = new Map<string, Map<string, Tracked>>();
  private trackedCount = 0;
  /**
   * Per tenant, per exact topic subscribed on this node that no message reached yet: the oldest position a
   * resume handed out for it (the starting point of a client's subscription; epoch `''`: the broker held no
   * stream then). Without it, a topic whose first messages were published during a broker cut would start at
   * the first live message after the reconnect, and the ones before it would be lost without a gap report. It
   * becomes the topic's tracked position at the first message or at a resync. Wildcard subscriptions have no
   * baseline: a topic first published during a cut starts at its first live message.
   */
  private readonly baselines = new Map<string, Map<string, StreamPosition>>();
  protected closed = false;
  /**
   * Counters since start: topic messages received from the broker (`received`, every copy), duplicates dropped,
   * messages fetched from the stream to fill a skipped seq (`filled`), gaps reported.
   */
  readonly counters = { received: 0, duplicates: 0, filled: 0, gaps: 0 };

  constructor(options: BrokerBackplaneOptions) {
    this.opts = checkBrokerOptions(options);
    this.nodeId = this.opts.nodeId;
  }

  // ---- what a broker provides -------------------------------------------------------------------------------

  /** The broker subscriptions (opaque keys) a hub pattern (or exact topic) of a tenant needs. */
  protected abstract brokerKeys(tenant: string, pattern: string): string[];
  /** Subscribes on the broker; resolves once the broker confirmed it. */
  protected abstract brokerSubscribe(key: string): Promise<void>;
  /** Unsubscribes on the broker. */
  protected abstract brokerUnsubscribe(key: string): Promise<void>;
  /** The topic's stream as held by the broker, or null when none. */
  protected abstract loadView(tenant: string, topic: string): Promise<TopicView | null>;
  /** Topics of the tenant matching `pattern` published after tenant offset `offset`. */
  protected abstract topicsSince(tenant: string, pattern: string, offset: number): Promise<string[]>;
  /** The tenant's current offset, and the epoch of its offsets (a new one whenever the broker's counter restarted). */
  protected abstract tenantOffset(tenant: string): Promise<TenantOffset>;
  /** Sends a control message to every node (`node` undefined), or to one node, or to the nodes interested in a user. */
  protected abstract sendControl(to: { node: string } | { user: string } | 'all', message: ControlMessage): Promise<void>;
  abstract publish(tenant: string, topic: string, type: string, data: string): Promise<PublishedMessage>;
  abstract registerConnection(user: string, connectionId: string): Promise<string[]>;
  abstract unregisterConnection(user: string, connectionId: string): Promise<void>;
  abstract presenceJoin(tenant: string, topic: string, user: string, connectionId: string): Promise<void>;
  abstract presenceLeave(tenant: string, topic: string, user: string, connectionId: string): Promise<void>;
  abstract presence(tenant: string, topic: string): Promise<PresenceSnapshot>;
  /** Connects to the broker (subclass), after the sink is set. */
  protected abstract start(): Promise<void>;
  /** Releases the broker connections the adapter created (subclass). */
  protected abstract stop(): Promise<void>;

  // ---- Backplane ----------------------------------------------------------------------------------------------

  async attach(sink: BackplaneSink): Promise<void> {
    if (this.sink !== null) throw new Error('this backplane is already attached to a hub (one hub per backplane instance)');
    if (this.closed) throw new Error('this backplane is closed');
    this.sink = sink;
    await this.start();
  }

  async subscribe(tenant: string, pattern: string): Promise<void> {
    let set = this.patterns.get(tenant);
    if (set === undefined) this.patterns.set(tenant, (set = new Set()));
    set.add(pattern);
    const waits: Promise<void>[] = [];
    for (const key of this.brokerKeys(tenant, pattern)) {
      let ref = this.brokerRefs.get(key);
      if (ref === undefined) {
        const ready = withTimeout(this.brokerSubscribe(key), this.opts.timeout, `subscribing to ${tenant}/${pattern}`);
        ref = { n: 0, ready };
        this.brokerRefs.set(key, ref);
        ready.catch(() => {
          // A failed subscription must not count as held: the next subscribe tries again.
          if (this.brokerRefs.get(key) === ref) this.brokerRefs.delete(key);
        });
      }
      ref.n++;
      waits.push(ref.ready);
    }
    try {
      await Promise.all(waits);
    } catch (error) {
      await this.unsubscribe(tenant, pattern).catch(() => {});
      throw error;
    }
  }

  async unsubscribe(tenant: string, pattern: string): Promise<void> {
    const set = this.patterns.get(tenant);
    if (set === undefined || !set.delete(pattern)) return;
    if (set.size === 0) this.patterns.delete(tenant);
    this.forgetTracked(tenant, pattern);
    const work: Promise<void>[] = [];
    for (const key of this.brokerKeys(tenant, pattern)) {
      const ref = this.brokerRefs.get(key);
      if (ref === undefined || --ref.n > 0) continue;
      this.brokerRefs.delete(key);
      work.push(withTimeout(this.brokerUnsubscribe(key), this.opts.timeout, `unsubscribing from ${tenant}/${pattern}`));
    }
    await Promise.all(work);
  }

  /** Number of broker subscriptions held (for tests and leak checks). */
  get brokerSubscriptions(): number {
    return this.brokerRefs.size;
  }

  async resume(tenant: string, name: string, since: StreamPosition | PatternSince | null): Promise<ResumeAnswer> {
    const t = this.opts.timeout;
    if (!isPattern(name)) {
      const view = await withTimeout(this.loadView(tenant, name), t, `reading the history of ${tenant}/${name}`);
      const current = await withTimeout(this.tenantOffset(tenant), t, 'reading the tenant offset');
      const position = view === null ? { epoch: '', seq: 0 } : { epoch: view.epoch, seq: view.seq };
      this.noteBaseline(tenant, name, position);
      const result = since === null ? { messages: [], gaps: [], recovered: true } : resumeTopic(tenant, name, view, since as StreamPosition);
      return { ...result, position, offset: current.offset, offsetEpoch: current.epoch };
    }
    const current = await withTimeout(this.tenantOffset(tenant), t, 'reading the tenant offset');
    const offsets = { offset: current.offset, offsetEpoch: current.epoch };
    if (since === null) return { messages: [], gaps: [], recovered: true, ...offsets };
    const ps = since as PatternSince;
    const topics = new Set<string>();
    for (const topic of Object.keys(ps.positions ?? {})) if (matches(name, topic)) topics.add(topic);
    const from = resumeFromOffset(ps, current);
    if (from !== Infinity) for (const topic of await withTimeout(this.topicsSince(tenant, name, from), t, 'listing topics')) topics.add(topic);
    const views = new Map<string, TopicView>();
    const missing: string[] = [];
    await Promise.all([...topics].map(async (topic) => {
      const v = await withTimeout(this.loadView(tenant, topic), t, `reading the history of ${tenant}/${topic}`);
      if (v !== null) views.set(topic, v);
      else missing.push(topic);
    }));
    const result = resumePattern(tenant, name, views, ps, current);
    // A topic the client knew in an epoch the broker no longer holds at all: not recovered.
    for (const topic of missing) if ((ps.positions?.[topic]?.seq ?? 0) > 0) result.recovered = false;
    return { ...result, ...offsets };
  }

  async sendToUser(user: string, envelope: HubEnvelope): Promise<number> {
    const here = this.target().user(user, envelope);
    await withTimeout(this.sendControl({ user }, { k: 'user', user, env: envelope }), this.opts.timeout, 'sending to a user');
    return here;
  }

  async sendToConnection(connectionId: string, envelope: HubEnvelope): Promise<boolean> {
    const node = ownerNode(connectionId);
    if (node === this.nodeId) return this.target().connection(connectionId, envelope);
    if (node === null) return false;
    await withTimeout(this.sendControl({ node }, { k: 'conn', id: connectionId, env: envelope }), this.opts.timeout, 'sending to a connection');
    return false;
  }

  async broadcast(envelope: HubEnvelope, tenant?: string): Promise<number> {
    const here = this.target().broadcast(envelope, tenant);
    await withTimeout(this.sendControl('all', { k: 'bcast', tenant, env: envelope }), this.opts.timeout, 'broadcasting');
    return here;
  }

  async disconnect(target: DisconnectTarget, code: number, reason: string): Promise<number> {
    if ('connectionId' in target) {
      const node = ownerNode(target.connectionId);
      if (node === this.nodeId) return this.target().disconnect(target, code, reason);
      if (node !== null) await withTimeout(this.sendControl({ node }, { k: 'disc', target, code, reason }), this.opts.timeout, 'disconnecting');
      return 0;
    }
    const here = this.target().disconnect(target, code, reason);
    await withTimeout(this.sendControl({ user: target.user }, { k: 'disc', target, code, reason }), this.opts.timeout, 'disconnecting');
    return here;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.brokerRefs.clear();
    this.patterns.clear();
    this.tracked.clear();
    this.baselines.clear();
    this.trackedCount = 0;
    await this.stop();
    this.sink = null;
  }

  // ---- for subclasses ---------------------------------------------------------------------------------------

  protected target(): BackplaneSink {
    if (this.sink === null) throw new Error('the backplane is not attached to a hub');
    return this.sink;
  }

  protected error(error: unknown): void {
    const e = error instanceof Error ? error : new Error(String(error));
    try {
      this.opts.onError?.(e);
    } catch {
      // The application's error handler must not take the adapter down.
    }
  }

  /** A control message from another node (the adapter drops its own echoes before calling this). */
  protected control(message: ControlMessage): void {
    const sink = this.sink;
    if (sink === null) return;
    switch (message.k) {
      case 'user': sink.user(message.user, message.env); break;
      case 'conn': sink.connection(message.id, message.env); break;
      case 'bcast': sink.broadcast(message.env, message.tenant); break;
      case 'disc': sink.disconnect(message.target, message.code, message.reason); break;
      case 'pres': sink.presence(message.event); break;
    }
  }

  /**
   * A topic message from the broker. Delivered to the hub once per (topic, epoch, seq), in order: a message
   * after a skipped seq waits while the skipped ones are fetched from the stream (or reported as a gap).
   */
  protected incoming(m: PublishedMessage): void {
    if (this.sink === null) return;
    this.counters.received++;
    let byTopic = this.tracked.get(m.tenant);
    if (byTopic === undefined) this.tracked.set(m.tenant, (byTopic = new Map()));
    let t = byTopic.get(m.topic);
    if (t === undefined) {
      if (this.trackedCount >= BROKER_DEFAULTS.maxTracked) this.evictOneTracked();
      const base = this.takeBaseline(m.tenant, m.topic);
      if (base === undefined) {
        byTopic.set(m.topic, { epoch: m.epoch, seq: m.seq, waiting: null });
        this.trackedCount++;
        this.sink.message(m);
        return;
      }
      // A client's starting point is known: the message is checked against it like any other.
      t = { epoch: base.epoch, seq: base.seq, waiting: null };
      byTopic.set(m.topic, t);
      this.trackedCount++;
    }
    if (t.waiting !== null) {
      t.waiting.push(m);
      return;
    }
    if (t.epoch === m.epoch) {
      if (m.seq <= t.seq) {
        this.counters.duplicates++; // overlapping broker subscriptions, or a message already replayed from the stream
        return;
      } 
      if (m.seq === t.seq + 1) {
        t.seq = m.seq;
        this.sink.message(m);
        return;
      }
    } else if (m.seq === 1) {
      // A new epoch starting: the old one is gone (a broker restart without persistence, or an expired topic).
      this.epochEnded(m.tenant, m.topic, t);
      t.epoch = m.epoch;
      t.seq = 1;
      this.sink.message(m);
      return;
    }
    t.waiting = [m];
    void this.fill(m.tenant, m.topic, t);
  }

  /** The epoch `t` was in is gone: report what this node cannot know it delivered as a gap with an open end. */
  private epochEnded(tenant: string, topic: string, t: Tracked): void {
    if (t.epoch === '') return; // a baseline taken when the broker held no stream for the topic: nothing was missed
    this.reportGap({ tenant, topic, epoch: t.epoch, from: t.seq + 1, to: GAP_UNKNOWN_END });
  }

  protected reportGap(gap: Gap): void {
    this.counters.gaps++;
    this.sink?.gap?.(gap);
  }

  /**
   * Reads a topic's stream for a fill, retrying a failed read (25 ms, doubling, at most 500 ms apart) until
   * `timeout` ms after the first attempt. `undefined`: every read failed (each failure goes to `onError`).
   *
   * Why retry: after a broker restart the adapter's connections come back one by one (node-redis reconnects its
   * command and subscriber connections independently, with jittered back-off; a JetStream server may answer before
   * its streams are ready). Live messages, or the resynchronisation, can thus start a fill while the stream cannot
   * be read yet; failing at once would report as a gap messages the stream still holds.
   */
  private async readForFill(tenant: string, topic: string): Promise<TopicView | null | undefined> {
    const deadline = Date.now() + this.opts.timeout;
    let delay = 25;
    for (;;) {
      try {
        return await withTimeout(this.loadView(tenant, topic), this.opts.timeout, `reading the history of ${tenant}/${topic}`);
      } catch (error) {
        this.error(error);
      }
      if (this.closed || this.sink === null || Date.now() + delay > deadline) return undefined;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 500);
    }
  }

  /**
   * Brings a tracked topic up to date from the broker's stream, then releases the messages held back. A stream
   * that stays unreadable (see {@link readForFill}) is handled as one that holds nothing: what is missing before
   * the held-back messages is reported as a gap.
   */
  private async fill(tenant: string, topic: string, t: Tracked): Promise<void> {
    t.again = false;
    const view = (await this.readForFill(tenant, topic)) ?? null;
    const sink = this.sink;
    const waiting = t.waiting ?? [];
    t.waiting = null;
    if (sink === null) return;
    this.release(tenant, topic, t, view, waiting, sink);
    if (t.again && !this.closed) {
      // A resynchronisation came while this fill was reading: read again, now that the subscription is renewed.
      t.waiting = [];
      void this.fill(tenant, topic, t);
    }
  }

  /** Delivers what `view` holds after `t`'s position, then the held-back live messages, reporting what is missing. */
  private release(tenant: string, topic: string, t: Tracked, view: TopicView | null, waiting: PublishedMessage[], sink: BackplaneSink): void {
    if (view !== null) {
      let after = t.seq;
      if (view.epoch !== t.epoch) {
        this.epochEnded(tenant, topic, t);
        after = 0;
        t.epoch = view.epoch;
        t.seq = 0;
      }
      const r = replayView(tenant, topic, view, after, false);
      for (const g of r.gaps) this.reportGap(g);
      if (r.gaps.length > 0) t.seq = r.gaps[r.gaps.length - 1].to;
      t.seq = Math.max(t.seq, after);
      for (const m of r.messages) {
        if (m.seq <= t.seq) continue;
        t.seq = m.seq;
        this.counters.filled++;
        sink.message(m);
      }
    }
    // Held-back live messages: in order; anything still missing before them is reported (the stream had less).
    waiting.sort((a, b) => (a.epoch === b.epoch ? a.seq - b.seq : 0));
    for (const m of waiting) {
      if (m.epoch !== t.epoch) {
        if (view !== null) continue; // an epoch the stream no longer has: superseded
        this.epochEnded(tenant, topic, t);
        t.epoch = m.epoch;
        t.seq = 0;
      }
      if (m.seq <= t.seq) continue;
      if (m.seq > t.seq + 1) this.reportGap({ tenant, topic, epoch: m.epoch, from: t.seq + 1, to: m.seq - 1 });
      t.seq = m.seq;
      sink.message(m);
    }
  }

  /**
   * After the broker connection came back (and the subscriptions were renewed): every tracked topic is compared
   * with its stream, and what was published meanwhile is delivered, or reported as a gap.
   */
  protected resync(): void {
    // Subscribed topics that no message reached yet start from their baseline: what the stream holds after it
    // was published while the subscription was being renewed.
    for (const [tenant, byTopic] of this.baselines) {
      let tracked = this.tracked.get(tenant);
      if (tracked === undefined) this.tracked.set(tenant, (tracked = new Map()));
      for (const [topic, base] of byTopic) {
        if (tracked.has(topic)) continue;
        tracked.set(topic, { epoch: base.epoch, seq: base.seq, waiting: null });
        this.trackedCount++;
      }
    }
    this.baselines.clear();
    for (const [tenant, byTopic] of this.tracked) {
      for (const [topic, t] of byTopic) {
        if (t.waiting !== null) {
          t.again = true; // the running fill may have read the stream before the subscription was renewed
          continue;
        }
        t.waiting = [];
        void this.fill(tenant, topic, t);
      }
    }
  }

  /** Records `position` as the baseline of a subscribed exact topic no message reached yet (the oldest one wins). */
  private noteBaseline(tenant: string, topic: string, position: StreamPosition): void {
    if (this.patterns.get(tenant)?.has(topic) !== true || this.tracked.get(tenant)?.has(topic) === true) return;
    let byTopic = this.baselines.get(tenant);
    if (byTopic === undefined) this.baselines.set(tenant, (byTopic = new Map()));
    const old = byTopic.get(topic);
    // Another epoch: the older baseline stays (a client starting there is owed the new epoch from its start).
    if (old === undefined || (old.epoch === position.epoch && position.seq < old.seq)) byTopic.set(topic, position);
  }

  private takeBaseline(tenant: string, topic: string): StreamPosition | undefined {
    const byTopic = this.baselines.get(tenant);
    const base = byTopic?.get(topic);
    if (base === undefined) return undefined;
    byTopic!.delete(topic);
    if (byTopic!.size === 0) this.baselines.delete(tenant);
    return base;
  }

  private forgetTracked(tenant: string, pattern: string): void {
    const remainingPatterns = this.patterns.get(tenant);
    const bases = this.baselines.get(tenant);
    if (bases !== undefined) {
      for (const topic of bases.keys()) if (remainingPatterns?.has(topic) !== true) bases.delete(topic);
      if (bases.size === 0) this.baselines.delete(tenant);
    }
    const byTopic = this.tracked.get(tenant);
    if (byTopic === undefined) return;
    const remaining = this.patterns.get(tenant);
    for (const topic of byTopic.keys()) {
      if (!matches(pattern, topic)) continue;
      let still = false;
      if (remaining !== undefined) for (const p of remaining) if (matches(p, topic)) { still = true; break; }
      if (still) continue;
      byTopic.delete(topic);
      this.trackedCount--;
    }
    if (byTopic.size === 0) this.tracked.delete(tenant);
  }

  private evictOneTracked(): void {
    for (const [tenant, byTopic] of this.tracked) {
      for (const [topic, t] of byTopic) {
        if (t.waiting !== null) continue;
        byTopic.delete(topic);
        this.trackedCount--;
        if (byTopic.size === 0) this.tracked.delete(tenant);
        return;
      }
    }
  }
}

/** The node that owns a connection id (`${nodeId}.${n}`), or null for a malformed id. */
export function ownerNode(connectionId: string): string | null {
  if (typeof connectionId !== 'string') return null;
  const dot = connectionId.indexOf('.');
  return dot > 0 ? connectionId.slice(0, dot) : null;
}

/** Serializes a topic message for the wire between nodes: a JSON header line, then the data's JSON text. */
export function encodeMessage(m: PublishedMessage, prev: number, start: number): string {
  return JSON.stringify([m.tenant, m.topic, m.type, m.epoch, m.seq, m.ts, m.offset, prev, start]) + '\n' + m.data;
}

/** Inverse of {@link encodeMessage}; null when the text is not one (foreign traffic on our prefix). */
export function decodeMessage(text: string): HeldMessage & { start: number } | null {
  const nl = text.indexOf('\n');
  if (nl < 0) return null;
  let h: unknown;
  try {
    h = JSON.parse(text.slice(0, nl));
  } catch {
    return null;
  }
  if (!Array.isArray(h) || h.length !== 9) return null;
  const [tenant, topic, type, epoch, seq, ts, offset, prev, start] = h as unknown[];
  if (typeof tenant !== 'string' || typeof topic !== 'string' || typeof type !== 'string' || typeof epoch !== 'string') return null;
  if (!isCount(seq) || !isCount(ts) || !isCount(offset) || !isCount(prev) || !isCount(start)) return null;
  return { message: { tenant, topic, type, data: text.slice(nl + 1), seq, epoch, ts, offset }, prev, start };
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Encodes a control message. */
export function encodeControl(from: string, message: ControlMessage): string {
  return JSON.stringify({ from, ...message });
}

/** Decodes a control message; null when malformed. Returns the sending node's id too. */
export function decodeControl(text: string): { from: string; message: ControlMessage } | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object') return null;
  const o = v as Record<string, unknown>;
  if (typeof o.from !== 'string' || typeof o.k !== 'string') return null;
  const env = o.env as HubEnvelope | undefined;
  const envOk = env !== undefined && env !== null && typeof env.type === 'string' && typeof env.data === 'string';
  switch (o.k) {
    case 'user': if (typeof o.user === 'string' && envOk) return { from: o.from, message: { k: 'user', user: o.user, env: env! } }; break;
    case 'conn': if (typeof o.id === 'string' && envOk) return { from: o.from, message: { k: 'conn', id: o.id, env: env! } }; break;
    case 'bcast': if ((o.tenant === undefined || typeof o.tenant === 'string') && envOk) return { from: o.from, message: { k: 'bcast', tenant: o.tenant as string | undefined, env: env! } }; break;
    case 'disc': {
      const t = o.target as Record<string, unknown> | null;
      const target = t !== null && typeof t === 'object' ? (typeof t.connectionId === 'string' ? { connectionId: t.connectionId } : typeof t.user === 'string' ? { user: t.user } : null) : null;
      if (target !== null && typeof o.code === 'number' && typeof o.reason === 'string') return { from: o.from, message: { k: 'disc', target, code: o.code, reason: o.reason } };
      break;
    }
    case 'pres': {
      const e = o.event as Record<string, unknown> | null;
      if (e !== null && typeof e === 'object' && (e.kind === 'join' || e.kind === 'leave') && typeof e.tenant === 'string' && typeof e.topic === 'string' && typeof e.user === 'string') {
        return { from: o.from, message: { k: 'pres', event: { kind: e.kind, tenant: e.tenant, topic: e.topic, user: e.user } } };
      }
      break;
    }
  }
  return null;
}
