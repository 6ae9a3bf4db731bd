/**
 * What the Redis and NATS backplanes share: their options, a topic's stream as a broker holds it ({@link TopicView},
 * read by the resume rules of resume-rules.ts), and {@link BrokerBackplane} — interest counting, de-duplication by
 * (topic, seq), in-order delivery with gap filling from the broker's stream, and resynchronisation after a
 * reconnect. Naming on the broker is in broker-names.ts, the messages between nodes in broker-wire.ts. Imported
 * only by the adapter entry points (`wsengine/hub/redis`, `wsengine/hub/nats`); the hub core never imports this file.
 *
 * @module
 * @internal
 */
import { randomBytes } from 'node:crypto';
import type { Backplane, BackplaneSink, DisconnectTarget, HubEnvelope, PresenceSnapshot, ResumeAnswer } from './backplane.js';
import { ownerNode } from './broker-names.js';
import type { ControlMessage, HeldMessage } from './broker-wire.js';
import {
  GAP_UNKNOWN_END,
  type Gap,
  type PatternSince,
  type PublishedMessage,
  replayAfter,
  resumeFromOffset,
  resumePattern,
  resumeTopic,
  type ResumeView,
  type StreamPosition,
  type TenantOffset,
} from './resume-rules.js';
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

/** A topic's stream as the broker holds it (what {@link BrokerBackplane.loadView} reads). */
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

/**
 * A {@link TopicView} as the resume rules read it. The broker drops a topic's oldest messages first, so what was
 * dropped ends right before the oldest held message (its seq - 1, and its predecessor's offset `prev`), or, with
 * nothing held, at the epoch's last message.
 */
export function resumeView(view: TopicView): ResumeView {
  const first = view.held.length > 0 ? view.held[0] : undefined;
  return {
    epoch: view.epoch,
    seq: view.seq,
    droppedSeq: first !== undefined ? first.message.seq - 1 : view.seq,
    droppedOffset: first !== undefined ? first.prev : view.lastOffset,
    startOffset: view.startOffset,
    held: () => view.held.map((h) => h.message),
  };
}

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
  abstract publish(tenant: string, topic: string, type: string, data: string, from?: string): Promise<PublishedMessage>;
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
      const result = since === null ? { messages: [], gaps: [], recovered: true } : resumeTopic(tenant, name, view === null ? null : resumeView(view), since as StreamPosition);
      return { ...result, position, offset: current.offset, offsetEpoch: current.epoch };
    }
    const current = await withTimeout(this.tenantOffset(tenant), t, 'reading the tenant offset');
    const offsets = { offset: current.offset, offsetEpoch: current.epoch };
    if (since === null) return { messages: [], gaps: [], recovered: true, ...offsets };
    const ps = since as PatternSince;
    const topics = new Set<string>();
    for (const topic of Object.keys(ps.positions ?? {})) if (matches(name, topic)) topics.add(topic);
    const from = resumeFromOffset(ps, current);
    if (from !== Infinity) for (const topic of await withTimeout(this.topicsSince(tenant, name, from), t, 'listing topics')) if (matches(name, topic)) topics.add(topic);
    // In the order the reads complete; null: the broker holds no stream for the topic (a position in it is lost).
    const views = new Map<string, ResumeView | null>();
    await Promise.all([...topics].map(async (topic) => {
      const v = await withTimeout(this.loadView(tenant, topic), t, `reading the history of ${tenant}/${topic}`);
      views.set(topic, v === null ? null : resumeView(v));
    }));
    const result = resumePattern(tenant, views, ps, current);
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
      const r = replayAfter(tenant, topic, resumeView(view), after, false);
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

