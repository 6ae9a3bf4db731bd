/**
 * What the Redis and NATS backplanes share: {@link BrokerBackplane} — interest counting, de-duplication by
 * (topic, seq), in-order delivery with gap filling from the broker's stream, resynchronisation after a reconnect,
 * attach attempts that leave nothing behind when they fail, the broker connection's state
 * ({@link BrokerBackplane.reachable}), and which nodes answer ({@link BrokerBackplane.liveConnections}). The options
 * and a topic's stream as a broker holds it ({@link TopicView}) are in broker-options.ts, naming on the broker in
 * broker-names.ts, the messages between nodes in broker-wire.ts, node probes in broker-nodes.ts. Imported only by
 * the adapter entry points (`wsengine/hub/redis`, `wsengine/hub/nats`); the hub core never imports this file.
 *
 * Internal to the hub, not a package entry point. Not tagged internal here: in a file's first comment the tag
 * attaches to the first statement, which `stripInternal` then drops from the declarations.
 *
 * @module
 */
import { BackplaneUnavailableError } from './attach.js';
import type { Backplane, BackplaneSink, DisconnectTarget, HubEnvelope, PresenceSnapshot, ResumeAnswer } from './backplane.js';
import { ownerNode } from './broker-names.js';
import { NodeProbes, PROBE_TIMEOUT } from './broker-nodes.js';
import { BROKER_DEFAULTS, checkBrokerOptions, resumeView, type BrokerBackplaneOptions, type TopicView, withTimeout } from './broker-options.js';
import type { ControlMessage } from './broker-wire.js';
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
import { Histogram } from './histogram.js';
import { isPattern, matches } from './topics.js';

export { BROKER_DEFAULTS, checkBrokerOptions, resumeView, withTimeout, type BrokerBackplaneOptions, type TopicView } from './broker-options.js';

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
  /** Seconds each liveness heartbeat took on the broker (a write and a read, round trip): the broker's latency. */
  readonly rtt = new Histogram();

  /** Times a heartbeat into {@link BrokerBackplane.rtt} (successful ones only). */
  protected async timed(beat: Promise<void>): Promise<void> {
    const start = performance.now();
    await beat;
    this.rtt.observe((performance.now() - start) / 1000);
  }
  /** Which other nodes answer, for {@link liveConnections}. */
  private readonly probes: NodeProbes;
  /** {@link reachable} as the sink was last told. */
  private told = false;

  constructor(options: BrokerBackplaneOptions) {
    this.opts = checkBrokerOptions(options);
    this.nodeId = this.opts.nodeId;
    this.probes = new NodeProbes(this.nodeId, (node) => this.probeNode(node));
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
  /**
   * Sends a control message to every node, to one node, or to the nodes interested in a user. Resolves with the
   * number of connections that received it when the broker says (Redis), else with nothing.
   */
  protected abstract sendControl(to: { node: string } | { user: string } | 'all', message: ControlMessage): Promise<number | void>;
  /**
   * Whether the broker answers now, from the client library's connection events: false before attach, from a lost
   * connection until it is back, and after close. While false, calls that need the broker reject at once.
   */
  abstract get reachable(): boolean;
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

  /**
   * Connects to the broker. When that fails (the broker is not up yet), whatever the attempt set up is released
   * and the error thrown: the hub calls `attach` again with backoff until it succeeds.
   */
  async attach(sink: BackplaneSink): Promise<void> {
    if (this.sink !== null) throw new Error('this backplane is already attached to a hub (one hub per backplane instance)');
    if (this.closed) throw new Error('this backplane is closed');
    this.sink = sink;
    try {
      await this.start();
      if (this.closed) throw new Error('the backplane was closed while attaching');
    } catch (error) {
      await withTimeout(this.stop(), this.opts.timeout, 'releasing a failed attach').catch(() => {});
      this.sink = null;
      throw error;
    }
    this.told = this.reachable;
    if (!this.told) this.sink.status?.(false);
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
    this.requireLink('reading the history');
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

  /**
   * `ids` without the connections of other nodes that do not answer now (see broker-nodes.ts): a crashed node's
   * connections must not make the hub close a live one for the per-user limit while they await the sweep.
   */
  liveConnections(_user: string, ids: string[]): Promise<string[]> {
    return this.probes.filter(ids);
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

  /** Subclasses call it on their client library's connection events: tells the sink when {@link reachable} changed. */
  protected linkChanged(error?: unknown): void {
    const now = this.reachable;
    if (now === this.told || this.sink === null || this.closed) return;
    this.told = now;
    this.sink.status?.(now, error === undefined ? undefined : error instanceof Error ? error : new Error(String(error)));
  }

  /** Throws at once while the broker is known to be unreachable (rather than waiting for a call's timeout). */
  protected requireLink(what: string): void {
    if (!this.reachable) throw new BackplaneUnavailableError(`${what}: the broker is unreachable (the connection is lost; reconnecting), retry later`);
  }

  /**
   * Whether `node` answers now: a `ping` it must answer with a `pong` within {@link PROBE_TIMEOUT} ms; a broker
   * that says nobody received the ping (Redis's `PUBLISH` count) is a no at once. NATS overrides it.
   */
  protected async probeNode(node: string): Promise<boolean> {
    const { nonce, answered } = this.probes.ping(PROBE_TIMEOUT);
    try {
      const receivers = await withTimeout(this.sendControl({ node }, { k: 'ping', n: nonce }), PROBE_TIMEOUT, 'probing a node');
      if (receivers === 0) this.probes.cancel(nonce);
    } catch {
      this.probes.cancel(nonce);
    }
    return answered;
  }

  protected error(error: unknown): void {
    const e = error instanceof Error ? error : new Error(String(error));
    try {
      this.opts.onError?.(e);
    } catch {
      // The application's error handler must not take the adapter down.
    }
  }

  /** A control message from another node `from` (the adapter drops its own echoes before calling this). */
  protected control(message: ControlMessage, from?: string): void {
    const sink = this.sink;
    if (sink === null) return;
    switch (message.k) {
      case 'ping':
        if (from !== undefined) this.sendControl({ node: from }, { k: 'pong', n: message.n }).catch((e: unknown) => this.error(e));
        break;
      case 'pong': this.probes.pong(message.n); break;
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

