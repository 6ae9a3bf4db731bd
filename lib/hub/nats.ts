/**
 * The NATS backplane: several hubs as one through a NATS server with JetStream (entry point `wsengine/hub/nats`;
 * the `nats` package, tested with 2.29 against nats-server 2.9, is an optional peer dependency loaded only here).
 *
 * How it maps the hub onto NATS (all names start with the `prefix` option):
 * - **Topic messages** are stored in one JetStream stream (`<prefix>_hub`, subjects `<prefix>.s.<tenant>.<topic>`,
 *   at most `historySize` messages per subject). The stream **republishes** every stored message to
 *   `<prefix>.m.<tenant>.<topic>`, which is what nodes subscribe to (core NATS): only stored messages are
 *   delivered, in stream order.
 * - **Per-topic contiguous sequence numbers**: the seq, epoch and the previous message's stream sequence travel in
 *   the message; a publisher writes seq n+1 with `expect.lastSubjectSequence` = the stream sequence of seq n (from
 *   its cache, or read with a direct get of the subject's last message). When another node published first, the
 *   stream refuses (`wrong last sequence`) and the publisher re-reads and retries — so seq is contiguous with no
 *   lock and, for one publisher per topic, one round trip. The tenant offset is the stream sequence.
 * - **Interest**: `*` maps to `*`; `a.#` to `a` plus `a.>`; `#` elsewhere to a broader `>` subscription; the hub
 *   re-matches locally and the adapter de-duplicates by (topic, epoch, seq). Subscriptions are confirmed with a
 *   flush (the server has processed the SUB) before the hub acknowledges its client.
 * - **Users** (KV bucket `<prefix>_users`, one entry per user with its connection ids oldest first, updated by
 *   compare-and-set), **presence** (KV `<prefix>_presence`, one entry per topic) and **node liveness** (KV
 *   `<prefix>_nodes` with a TTL of `nodeTtl`, refreshed every `heartbeat`): a dead node's entries stop counting at
 *   once, and the heartbeat after a node's entry disappeared sweeps both buckets — its connections are removed and
 *   the leave events of users who had no other subscriber there are sent. A node whose own entry had expired (a
 *   long pause, a network cut) registers its connections and presence again.
 *
 * With file storage (the default) JetStream survives a server restart: epochs and history are kept, and nodes
 * fetch from the stream whatever was published while they were cut off. With `storage: 'memory'` a restart loses
 * the stream: topics start new epochs and each node reports open-ended gaps, as the Redis backplane does.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { PresenceSnapshot } from './backplane.js';
import { BrokerBackplane, type BrokerBackplaneOptions, type TopicView, withTimeout } from './broker.js';
import { PROBE_TIMEOUT } from './broker-nodes.js';
import { b64, casUpdate, direct, escToken, escTopic, isNotFound, isWrongLastSequence, sweepBuckets, unescape } from './nats-kv.js';
import { natsPatternSubjects, ownerNode } from './broker-names.js';
import { type ControlMessage, decodeControl, decodeMessage, encodeControl, encodeMessage } from './broker-wire.js';
import type { PublishedMessage, TenantOffset } from './resume-rules.js';
import { matches } from './topics.js';

export { GAP_UNKNOWN_END } from './resume-rules.js';

type Nats = typeof import('nats');
type NatsConnection = import('nats').NatsConnection;
type KV = import('nats').KV;
type Subscription = import('nats').Subscription;

/** Options of {@link NatsBackplane}: exactly one of `url` or `connection`. */
export interface NatsBackplaneOptions extends BrokerBackplaneOptions {
  /** `nats://host:port` (or several, comma-separated): the adapter connects (and closes) itself. */
  url?: string;
  /** Your connection from the `nats` package's `connect()`; the adapter never closes it. */
  connection?: NatsConnection;
  /** JetStream storage of the stream and buckets. Default: `'file'` (survives a server restart). */
  storage?: 'file' | 'memory';
  /** Milliseconds an idle topic keeps its epoch and sequence counter (the stream's max age). Default: 86,400,000 (24 h). */
  topicTtl?: number;
}


interface LastState {
  streamSeq: number;
  seq: number;
  epoch: string;
  start: number;
}

/**
 * A {@link Backplane} over NATS + JetStream. See the module documentation; create it with
 * {@link createNatsBackplane} or `new NatsBackplane({ url })` and pass it to `createHub({ backplane })`.
 */
export class NatsBackplane extends BrokerBackplane {
  private nats: Nats | null = null;
  private nc: NatsConnection | null;
  private readonly ownsConnection: boolean;
  private readonly url: string | undefined;
  private readonly storage: 'file' | 'memory';
  private readonly topicTtl: number;
  private readonly subs = new Map<string, Subscription>();
  private readonly userSubs = new Map<string, { n: number; sub: Subscription }>();
  private readonly last = new Map<string, LastState>();
  private users: KV | null = null;
  private presenceKv: KV | null = null;
  private nodes: KV | null = null;
  private alive = new Set<string>();
  /**
   * Nodes seen alive at one heartbeat and gone at a later one. Only these count as dead between sweeps: a node
   * that started after this node's last listing is not in `alive` yet, and its entries must not be dropped.
   */
  private readonly dead = new Set<string>();
  /** Whether the dead-node sweep ran once (every node sweeps at its first heartbeat, for nodes that died unseen). */
  private swept = false;
  /** This node's registered connections (id → user) and presence entries (key → entry), to register them again. */
  private readonly ownedUsers = new Map<string, string>();
  private readonly ownedPresence = new Map<string, { tenant: string; topic: string; user: string; connectionId: string }>();
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private connected = false;
  private readonly enc = new TextEncoder();
  private readonly dec = new TextDecoder();

  constructor(options: NatsBackplaneOptions) {
    super(options);
    const hasUrl = options.url !== undefined;
    const hasConn = options.connection !== undefined;
    if (hasUrl === hasConn) throw new TypeError('NatsBackplane needs exactly one of { url } or { connection }');
    if (hasUrl && typeof options.url !== 'string') throw new TypeError('url must be a string such as "nats://127.0.0.1:4222"');
    if (hasConn && typeof options.connection!.jetstream !== 'function') throw new TypeError('connection must be a connection from connect() of the "nats" package');
    const storage = options.storage ?? 'file';
    if (storage !== 'file' && storage !== 'memory') throw new TypeError(`storage must be "file" or "memory", got ${JSON.stringify(storage)}`);
    const ttl = options.topicTtl ?? 86_400_000;
    if (typeof ttl !== 'number' || !(ttl >= 1000)) throw new RangeError(`topicTtl must be ≥ 1000 ms, got ${String(ttl)}`);
    this.topicTtl = Math.floor(Math.max(ttl, this.opts.historyTtl));
    this.storage = storage;
    this.url = options.url;
    this.nc = options.connection ?? null;
    this.ownsConnection = !hasConn;
  }

  private get stream(): string {
    return `${this.opts.prefix}_hub`;
  }

  private subject(kind: 's' | 'm', tenant: string, topic: string): string {
    return `${this.opts.prefix}.${kind}.${escToken(tenant)}.${topic.split('.').map(escTopic).join('.')}`;
  }

  private conn(): NatsConnection {
    if (this.nc === null) throw new Error('the NATS backplane is not started (attach it to a hub first)');
    return this.nc;
  }

  /** A KV bucket opened by `start`; a clear error (not a TypeError) when called before `attach` finished. */
  private kv(bucket: KV | null): KV {
    if (bucket === null) throw new Error('the NATS backplane is not started yet (wait for attach to finish)');
    return bucket;
  }

  protected async start(): Promise<void> {
    try {
      this.nats = await import('nats');
    } catch (error) {
      throw new Error(`wsengine/hub/nats needs the "nats" package (npm install nats): ${(error as Error).message}`);
    }
    const N = this.nats;
    if (this.nc === null) {
      this.nc = await withTimeout(N.connect({ servers: this.url!.split(','), maxReconnectAttempts: -1, reconnectTimeWait: 250, name: `wsengine-hub-${this.nodeId}` }), this.opts.timeout, 'connecting to NATS');
    }
    const nc = this.nc;
    this.connected = !nc.isClosed();
    if (this.watching !== nc) {
      this.watching = nc;
      void this.watchStatus(nc);
    }
    const jsm = await nc.jetstreamManager({ timeout: this.opts.timeout });
    const storage = this.storage === 'file' ? N.StorageType.File : N.StorageType.Memory;
    const config = {
      name: this.stream,
      subjects: [`${this.opts.prefix}.s.>`],
      max_msgs_per_subject: Math.max(1, this.opts.historySize),
      max_age: N.nanos(this.topicTtl),
      storage,
      allow_direct: true,
      republish: { src: `${this.opts.prefix}.s.>`, dest: `${this.opts.prefix}.m.>` },
    };
    try {
      await jsm.streams.info(this.stream);
      await jsm.streams.update(this.stream, config);
    } catch (error) {
      if (!isNotFound(error)) throw error;
      await jsm.streams.add(config).catch(async (e) => {
        // Another node created it meanwhile.
        if (!String((e as Error).message).includes('already in use')) throw e;
      });
    }
    const js = nc.jetstream({ timeout: this.opts.timeout });
    const kvStorage = storage;
    this.users = await js.views.kv(`${this.opts.prefix}_users`, { history: 1, storage: kvStorage, ttl: this.topicTtl });
    this.presenceKv = await js.views.kv(`${this.opts.prefix}_presence`, { history: 1, storage: kvStorage, ttl: this.topicTtl });
    this.nodes = await js.views.kv(`${this.opts.prefix}_nodes`, { history: 1, storage: kvStorage, ttl: this.opts.nodeTtl });
    const onControl = (err: Error | null, msg: import('nats').Msg): void => {
      if (err !== null) return this.error(err);
      // A probe (probeNode): answering is all it asks.
      if (msg.reply) return void msg.respond();
      const c = decodeControl(this.dec.decode(msg.data));
      if (c !== null && c.from !== this.nodeId) this.control(c.message, c.from);
    };
    this.controlSubs = [nc.subscribe(`${this.opts.prefix}.a`, { callback: onControl }), nc.subscribe(`${this.opts.prefix}.n.${this.nodeId}`, { callback: onControl })];
    this.onControlMsg = onControl;
    await nc.flush();
    await this.beat();
    this.heartbeatTimer = setInterval(() => void this.timed(this.beat()).catch((e) => this.error(e)), this.opts.heartbeat);
    this.heartbeatTimer.unref();
  }

  private onControlMsg: ((err: Error | null, msg: import('nats').Msg) => void) | null = null;
  private controlSubs: Subscription[] = [];
  /** The connection whose status events are followed (once per connection, whatever the attach attempts). */
  private watching: NatsConnection | null = null;

  /** The connection is up, per nats.js's status events. */
  get reachable(): boolean {
    return !this.closed && this.nc !== null && this.connected;
  }

  /**
   * Follows the connection's status. The flag changes as the events come (never behind an await: a publish must
   * not wait for the confirmation of an earlier reconnect to learn that the connection is lost again).
   */
  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        this.connected = false;
        this.linkChanged(new Error(`NATS connection lost (${String(s.data)})`));
      } else if (s.type === 'reconnect') {
        this.connected = true;
        this.linkChanged();
        void this.afterReconnect(nc);
      } else if (s.type === 'error') this.error(new Error(String(s.data)));
    }
    if (this.watching === nc) this.watching = null;
  }

  private async afterReconnect(nc: NatsConnection): Promise<void> {
    // nats.js re-sends every SUB on reconnect; a flush proves the server has them, then catch up from the stream.
    try {
      await withTimeout(nc.flush(), this.opts.timeout, 'confirming subscriptions after a reconnect');
    } catch (error) {
      this.error(error);
    }
    this.resync();
    void this.timed(this.beat()).catch((e) => this.error(e));
  }

  protected async stop(): Promise<void> {
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    for (const s of [...this.subs.values(), ...this.controlSubs]) s.unsubscribe();
    for (const u of this.userSubs.values()) u.sub.unsubscribe();
    this.subs.clear();
    this.userSubs.clear();
    this.controlSubs = [];
    const nc = this.nc;
    const up = this.connected;
    if (this.ownsConnection) this.nc = null; // the next attach attempt connects afresh
    this.connected = false;
    if (nc === null || nc.isClosed()) return;
    if (this.nodes !== null && up) await withTimeout(this.nodes.delete(this.nodeId), this.opts.timeout, 'leaving').catch(() => {});
    // A connection that is down is closed at once (draining would wait for a server that is not there).
    if (this.ownsConnection) await (up ? nc.drain() : nc.close()).catch(() => nc.close());
  }

  /** A probe of another node: its control subscription answers a request; none ("no responders") or late: no. */
  protected override async probeNode(node: string): Promise<boolean> {
    this.requireLink('probing a node');
    const asked = this.conn().request(`${this.opts.prefix}.n.${node}`, new Uint8Array(0), { timeout: PROBE_TIMEOUT });
    return asked.then(() => true, () => false);
  }

  /**
   * Refreshes this node's liveness entry and the set of live nodes. When a node disappeared since the last beat
   * (its entry expired after `nodeTtl`, or it left), sweeps the user and presence buckets: its connections are
   * removed and a leave event is sent for every user whose last subscriber of a topic was there. When this node's
   * own entry had expired (a long pause, a network cut), it registers its connections and presence again.
   */
  private async beat(): Promise<void> {
    const nodes = this.nodes;
    if (nodes === null || !this.connected) return;
    const mine = await nodes.get(this.nodeId);
    const stale = mine === null || mine.operation !== 'PUT';
    await nodes.put(this.nodeId, this.enc.encode(String(Date.now())));
    const alive = new Set<string>();
    for await (const k of await nodes.keys()) alive.add(k);
    alive.add(this.nodeId);
    let gone = !this.swept;
    for (const n of this.alive) {
      if (!alive.has(n)) {
        gone = true;
        this.dead.add(n);
      }
    }
    for (const n of alive) this.dead.delete(n);
    this.alive = alive;
    if (gone) {
      await this.sweep();
      this.swept = true;
      // Their entries are gone now; a node id is never reused, so nothing of theirs comes back.
      this.dead.clear();
    }
    if (stale && this.swept) await this.registerAgain();
  }

  /** Removes dead nodes' connections from every user and presence entry (compare-and-set, so concurrent sweeps agree). */
  private async sweep(): Promise<void> {
    await sweepBuckets(this.kv(this.users), this.kv(this.presenceKv), (id) => this.isSwept(id), this.opts.timeout, async (tenant, topic, user) => {
      const message: ControlMessage = { k: 'pres', event: { kind: 'leave', tenant, topic, user } };
      this.control(message);
      await this.sendControl('all', message);
    });
  }

  /** After this node counted as dead for a while: its connections and presence entries, registered again. */
  private async registerAgain(): Promise<void> {
    for (const [connectionId, user] of [...this.ownedUsers]) {
      if (this.ownedUsers.get(connectionId) !== user) continue;
      await withTimeout(this.casUpdate<[string, number][]>(this.kv(this.users), b64(user), [], (v) => (v.some(([id]) => id === connectionId) ? v : [...v, [connectionId, Date.now()]])), this.opts.timeout, 'registering a connection again');
    }
    for (const p of [...this.ownedPresence.values()]) await this.presenceChange(p.tenant, p.topic, p.user, p.connectionId, true);
  }

  /**
   * Whether a connection's node counts as alive: it was listed at the last heartbeat, or it is not known to be
   * dead (a node that started since the last listing). The sweep alone is strict ({@link isSwept}).
   */
  private isAlive(connectionId: string): boolean {
    const node = ownerNode(connectionId);
    return node !== null && (this.alive.has(node) || !this.dead.has(node));
  }

  /**
   * For the sweep: a connection whose node was not listed at this heartbeat and is known to be gone — or, at this
   * node's first sweep, any node not listed (left by nodes that died before this one started).
   */
  private isSwept(connectionId: string): boolean {
    const node = ownerNode(connectionId);
    return node === null || (!this.alive.has(node) && (this.dead.has(node) || !this.swept));
  }

  // ---- interest ---------------------------------------------------------------------------------------------

  protected brokerKeys(tenant: string, pattern: string): string[] {
    return natsPatternSubjects(pattern, escTopic).map((s) => `${this.opts.prefix}.m.${escToken(tenant)}.${s}`);
  }

  protected async brokerSubscribe(key: string): Promise<void> {
    const nc = this.conn();
    this.requireLink('subscribing');
    const sub = nc.subscribe(key, {
      callback: (err, msg) => {
        if (err !== null) return this.error(err);
        const d = decodeMessage(this.dec.decode(msg.data));
        const streamSeq = Number(msg.headers?.get('Nats-Sequence'));
        if (d === null || !(streamSeq > 0)) return;
        const m = d.message;
        m.offset = streamSeq;
        this.remember(m.tenant, m.topic, { streamSeq, seq: m.seq, epoch: m.epoch, start: m.seq === 1 ? streamSeq - 1 : d.start });
        this.incoming(m);
      },
    });
    this.subs.set(key, sub);
    await nc.flush();
  }

  protected async brokerUnsubscribe(key: string): Promise<void> {
    const sub = this.subs.get(key);
    this.subs.delete(key);
    sub?.unsubscribe();
  }

  // ---- publishing and history ---------------------------------------------------------------------------------

  private remember(tenant: string, topic: string, s: LastState): void {
    const k = `${tenant}\0${topic}`;
    const old = this.last.get(k);
    if (old !== undefined && old.streamSeq >= s.streamSeq) return;
    this.last.delete(k);
    if (this.last.size >= 10_000) this.last.delete(this.last.keys().next().value!);
    this.last.set(k, s);
  }

  /** The subject's last stored message, decoded, or null when the stream holds none. */
  private async readLast(subject: string): Promise<{ state: LastState; held: ReturnType<typeof decodeMessage> } | null> {
    this.requireLink('reading a stream');
    const jsm = await this.conn().jetstreamManager({ timeout: this.opts.timeout });
    let sm: import('nats').StoredMsg;
    try {
      sm = await direct(jsm).getMessage(this.stream, { last_by_subj: subject });
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
    const d = decodeMessage(this.dec.decode(sm.data));
    if (d === null) return null;
    d.message.offset = sm.seq;
    const start = d.message.seq === 1 ? sm.seq - 1 : d.start;
    d.start = start;
    return { state: { streamSeq: sm.seq, seq: d.message.seq, epoch: d.message.epoch, start }, held: d };
  }

  /** Per topic, the tail of this node's publishes: a node publishes to one topic one at a time (seq n+1 needs n's ack). */
  private readonly chains = new Map<string, Promise<unknown>>();

  publish(tenant: string, topic: string, type: string, data: string, from?: string): Promise<PublishedMessage> {
    const k = `${tenant}\0${topic}`;
    const run = (this.chains.get(k) ?? Promise.resolve()).then(() => this.publishNow(tenant, topic, type, data, from));
    const tail = run.catch(() => {});
    this.chains.set(k, tail);
    void tail.then(() => {
      if (this.chains.get(k) === tail) this.chains.delete(k);
    });
    return run;
  }

  private async publishNow(tenant: string, topic: string, type: string, data: string, from: string | undefined): Promise<PublishedMessage> {
    const nc = this.conn();
    this.requireLink('publishing (the message was not published)');
    const js = nc.jetstream({ timeout: this.opts.timeout });
    const subject = this.subject('s', tenant, topic);
    let state: LastState | null = this.last.get(`${tenant}\0${topic}`) ?? null;
    let fresh = false;
    if (state === null) {
      state = (await this.readLast(subject))?.state ?? null;
      fresh = true;
    }
    for (let attempt = 0; attempt < 32; attempt++) {
      const seq = state === null ? 1 : state.seq + 1;
      const epoch = state === null ? randomBytes(8).toString('base64url') : state.epoch;
      const prev = state === null ? 0 : state.streamSeq;
      const start = state === null ? 0 : state.start;
      const message: PublishedMessage = { tenant, topic, type, data, seq, epoch, ts: Date.now(), offset: 0 };
      if (from !== undefined) message.from = from;
      try {
        const ack = await js.publish(subject, this.enc.encode(encodeMessage(message, prev, start)), { expect: { lastSubjectSequence: prev } });
        message.offset = ack.seq;
        this.remember(tenant, topic, { streamSeq: ack.seq, seq, epoch, start: seq === 1 ? ack.seq - 1 : start });
        return message;
      } catch (error) {
        if (!isWrongLastSequence(error)) throw error;
        // Someone else published first (or our cache was stale): read the subject's last message and try again.
        if (fresh && attempt > 0) await new Promise((r) => setTimeout(r, Math.random() * 2 * attempt));
        state = (await this.readLast(subject))?.state ?? null;
        fresh = true;
      }
    }
    throw new Error(`publishing to ${tenant}/${topic}: too many concurrent publishers, try again`);
  }

  protected async loadView(tenant: string, topic: string): Promise<TopicView | null> {
    const subject = this.subject('s', tenant, topic);
    const last = await this.readLast(subject);
    if (last === null) return null;
    const { state } = last;
    const view: TopicView = { epoch: state.epoch, seq: state.seq, lastOffset: state.streamSeq, startOffset: state.start, held: [] };
    if (this.opts.historySize === 0) return view;
    const jsm = await this.conn().jetstreamManager({ timeout: this.opts.timeout });
    const oldest = Date.now() - this.opts.historyTtl;
    // The subject holds at most historySize messages: walk them in stream order.
    let from = 1;
    for (let i = 0; i <= this.opts.historySize; i++) {
      let sm: import('nats').StoredMsg;
      try {
        sm = await direct(jsm).getMessage(this.stream, { seq: from, next_by_subj: subject });
      } catch (error) {
        if (isNotFound(error)) break;
        throw error;
      }
      from = sm.seq + 1;
      const d = decodeMessage(this.dec.decode(sm.data));
      if (d === null) continue;
      d.message.offset = sm.seq;
      if (d.message.epoch !== state.epoch || d.message.ts < oldest) continue;
      view.held.push({ message: d.message, prev: d.prev });
      if (sm.seq >= state.streamSeq) break;
    }
    return view;
  }

  protected async topicsSince(tenant: string, pattern: string, offset: number): Promise<string[]> {
    const jsm = await this.conn().jetstreamManager({ timeout: this.opts.timeout });
    const topics: string[] = [];
    const base = `${this.opts.prefix}.s.${escToken(tenant)}.`;
    for (const filter of natsPatternSubjects(pattern, escTopic)) {
      const info = await jsm.streams.info(this.stream, { subjects_filter: base + filter });
      for (const subject of Object.keys(info.state.subjects ?? {})) {
        const topic = subject.slice(base.length).split('.').map(unescape).join('.');
        if (!matches(pattern, topic)) continue;
        const last = await this.readLast(subject);
        if (last !== null && last.state.streamSeq > offset) topics.push(topic);
      }
    }
    return topics;
  }

  protected async tenantOffset(_tenant: string): Promise<TenantOffset> {
    this.requireLink('reading the tenant offset');
    // The tenant offset is the stream sequence (shared by all tenants: monotonic per tenant, not contiguous); its
    // epoch is the stream's creation time in ms, base 36 (a stream lost and created again restarts its sequence).
    const jsm = await this.conn().jetstreamManager({ timeout: this.opts.timeout });
    const info = await jsm.streams.info(this.stream);
    const created = Date.parse(info.created);
    return { offset: info.state.last_seq, epoch: Number.isFinite(created) ? created.toString(36) : String(info.created) };
  }

  protected async sendControl(to: { node: string } | { user: string } | 'all', message: ControlMessage): Promise<void> {
    this.requireLink('sending to other nodes (the message reached this node only)');
    const subject = to === 'all' ? `${this.opts.prefix}.a` : 'node' in to ? `${this.opts.prefix}.n.${to.node}` : `${this.opts.prefix}.u.${b64(to.user)}`;
    this.conn().publish(subject, this.enc.encode(encodeControl(this.nodeId, message)));
  }

  // ---- users and presence ------------------------------------------------------------------------------------

  /** {@link casUpdate} of nats-kv.ts, refused at once while NATS is unreachable. */
  private casUpdate<T>(kv: KV, key: string, empty: T, change: (v: T) => T | null): Promise<T | null> {
    this.requireLink('updating users or presence');
    return casUpdate(kv, key, empty, change);
  }

  async registerConnection(user: string, connectionId: string): Promise<string[]> {
    this.requireLink('registering a connection');
    const u = this.userSubs.get(user);
    if (u !== undefined) u.n++;
    else {
      const sub = this.conn().subscribe(`${this.opts.prefix}.u.${b64(user)}`, { callback: this.onControlMsg! });
      this.userSubs.set(user, { n: 1, sub });
    }
    if (ownerNode(connectionId) === this.nodeId) this.ownedUsers.set(connectionId, user);
    try {
      await withTimeout(this.conn().flush(), this.opts.timeout, 'subscribing to a user');
      const list = await withTimeout(this.casUpdate<[string, number][]>(this.kv(this.users), b64(user), [], (v) => [
        ...v.filter(([id]) => id !== connectionId && this.isAlive(id)),
        [connectionId, Date.now()],
      ]), this.opts.timeout, 'registering a connection');
      return list!.map(([id]) => id);
    } catch (error) {
      await this.unregisterConnection(user, connectionId).catch(() => {});
      throw error;
    }
  }

  async unregisterConnection(user: string, connectionId: string): Promise<void> {
    this.ownedUsers.delete(connectionId);
    const u = this.userSubs.get(user);
    if (u === undefined) return;
    if (--u.n <= 0) {
      this.userSubs.delete(user);
      u.sub.unsubscribe();
    }
    await withTimeout(this.casUpdate<[string, number][]>(this.kv(this.users), b64(user), [], (v) => {
      const rest = v.filter(([id]) => id !== connectionId && this.isAlive(id));
      return rest.length > 0 ? rest : null;
    }), this.opts.timeout, 'unregistering a connection');
  }

  private async presenceChange(tenant: string, topic: string, user: string, connectionId: string, join: boolean): Promise<void> {
    const owner = ownerNode(connectionId);
    if (owner === null) throw new TypeError(`connection id ${JSON.stringify(connectionId)} does not start with a node id and a dot`);
    if (owner === this.nodeId) {
      const k = JSON.stringify([tenant, topic, connectionId]);
      if (join) this.ownedPresence.set(k, { tenant, topic, user, connectionId });
      else this.ownedPresence.delete(k);
    }
    let changed = false;
    await withTimeout(this.casUpdate<Record<string, string>>(this.kv(this.presenceKv), `${b64(tenant)}.${b64(topic)}`, {}, (v) => {
      const next: Record<string, string> = {};
      let others = 0;
      for (const [id, u] of Object.entries(v)) {
        if (id === connectionId || !this.isAlive(id)) continue;
        next[id] = u;
        if (u === user) others++;
      }
      const had = Object.hasOwn(v, connectionId);
      if (join) next[connectionId] = user;
      changed = join ? !had && others === 0 : had && others === 0;
      return Object.keys(next).length > 0 ? next : null;
    }), this.opts.timeout, 'updating presence');
    if (!changed) return;
    const message: ControlMessage = { k: 'pres', event: { kind: join ? 'join' : 'leave', tenant, topic, user } };
    this.control(message);
    await this.sendControl('all', message);
  }

  presenceJoin(tenant: string, topic: string, user: string, connectionId: string): Promise<void> {
    return this.presenceChange(tenant, topic, user, connectionId, true);
  }

  presenceLeave(tenant: string, topic: string, user: string, connectionId: string): Promise<void> {
    return this.presenceChange(tenant, topic, user, connectionId, false);
  }

  async presence(tenant: string, topic: string): Promise<PresenceSnapshot> {
    this.requireLink('reading presence');
    const e = await withTimeout(this.kv(this.presenceKv).get(`${b64(tenant)}.${b64(topic)}`), this.opts.timeout, 'reading presence');
    const users: Record<string, number> = Object.create(null) as Record<string, number>;
    let connections = 0;
    if (e !== null && e.operation === 'PUT') {
      for (const [id, u] of Object.entries(JSON.parse(this.dec.decode(e.value)) as Record<string, string>)) {
        if (!this.isAlive(id)) continue;
        users[u] = (users[u] ?? 0) + 1;
        connections++;
      }
    }
    return { tenant, topic, users, connections };
  }
}

/** Creates a {@link NatsBackplane} from a URL (`nats://127.0.0.1:4222`) or your `nats` connection. */
export function createNatsBackplane(urlOrConnection: string | NatsConnection, options: Omit<NatsBackplaneOptions, 'url' | 'connection'> = {}): NatsBackplane {
  return typeof urlOrConnection === 'string' ? new NatsBackplane({ ...options, url: urlOrConnection }) : new NatsBackplane({ ...options, connection: urlOrConnection });
}
