/**
 * The Redis backplane: several hubs as one through a Redis server (entry point `wsengine/hub/redis`; the `redis`
 * package — node-redis, tested with 5.x — is an optional peer dependency, loaded only by this entry).
 *
 * How it maps the hub onto Redis (all names start with the `prefix` option):
 * - **Topic messages**: one Lua script per publish increments the topic's sequence number and the tenant offset,
 *   appends the message to the topic's Stream (`XADD`, exact `MAXLEN` = history size, id = `<seq>-0`) and
 *   `PUBLISH`es it — atomically, so every subscriber sees a topic's messages in sequence order. The channel is
 *   `<prefix>:t:<tenant>:<topic>`.
 * - **Interest**: a node `SUBSCRIBE`s to the channel of each exact topic its clients want and `PSUBSCRIBE`s one glob
 *   per pattern (Redis's `*` crosses dots, so the glob is broader than the pattern; the hub re-matches locally, and
 *   a message that several globs match is delivered once — de-duplicated by (topic, epoch, seq)). Literal
 *   `? * [ ] \` are escaped. The last local unsubscribe removes the broker subscription.
 * - **History and resume** read the Streams; a node that sees a skipped seq (a network cut, a reconnect) fetches
 *   the missing messages from the Stream before delivering later ones, and reports what the Stream no longer
 *   holds as a gap. node-redis reconnects the command connection (which reads the Streams) and the subscriber
 *   connection independently, so after a restart live messages may arrive while the Streams cannot be read yet:
 *   the read is retried for up to `timeout` ms, holding later messages back, before anything is reported.
 * - **Users** (`<prefix>:uc:<user>`, a sorted set of connection ids by connect time), **presence** (hashes per
 *   topic) and **node liveness** (`<prefix>:nodes`, heartbeats with Redis's clock): entries of a node whose
 *   heartbeats stopped for `nodeTtl` no longer count (per-user limit, presence snapshots), and the next heartbeat
 *   of any live node sweeps them: each node lists what it registered in `<prefix>:own:<nodeId>`, the sweep removes
 *   those entries, keeps the per-user presence counts in step and sends the leave events of the users who had no
 *   other connection. A node that was counted as dead (a long pause, a network cut) registers its entries again
 *   on its next heartbeat. The sweep touches keys it finds in that set, which a standalone server (or a single
 *   primary) allows; Redis Cluster is not supported.
 * - **User / connection / broadcast messages** go through `<prefix>:u:<user>` (subscribed while the user has a
 *   connection on the node), `<prefix>:n:<nodeId>` and `<prefix>:a`.
 *
 * After a Redis restart without persistence every topic starts a new epoch: clients receive messages with the
 * new epoch (seq from 1), a resume from the old epoch answers `recovered: false`, and each node reports, for every
 * topic it was delivering, a gap from its last delivered seq + 1 with `to` = {@link GAP_UNKNOWN_END} (the old
 * epoch's end is unknowable once the broker lost it).
 *
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import type { PresenceSnapshot } from './backplane.js';
import { BrokerBackplane, type BrokerBackplaneOptions, type TopicView, withTimeout } from './broker.js';
import { escapeSegment, ownerNode, redisPatternGlob } from './broker-names.js';
import { type ControlMessage, decodeControl, decodeMessage, encodeControl } from './broker-wire.js';
import type { PublishedMessage, TenantOffset } from './resume-rules.js';
import { matches } from './topics.js';

export { GAP_UNKNOWN_END } from './resume-rules.js';

/**
 * The part of a node-redis client (`redis` 5.x, `createClient()`) this adapter uses. Pass your application's
 * client as `client`: the adapter duplicates it for its subscriber connection and never closes your client.
 */
export interface RedisClientLike {
  readonly isOpen: boolean;
  /** Connected and ready for commands (node-redis); when absent, `isOpen` is taken instead. */
  readonly isReady?: boolean;
  connect(): Promise<unknown>;
  duplicate(overrides?: Record<string, unknown>): RedisClientLike;
  sendCommand<T = unknown>(args: ReadonlyArray<string>): Promise<T>;
  subscribe(channels: string, listener: (message: string, channel: string) => void): Promise<void>;
  unsubscribe(channels: string): Promise<void>;
  pSubscribe(patterns: string, listener: (message: string, channel: string) => void): Promise<void>;
  pUnsubscribe(patterns: string): Promise<void>;
  on(event: string, listener: (...args: any[]) => void): unknown;
  close?(): Promise<unknown>;
  quit?(): Promise<unknown>;
  destroy?(): unknown;
}

/** Options of {@link RedisBackplane}: exactly one of `url` or `client`. */
export interface RedisBackplaneOptions extends BrokerBackplaneOptions {
  /** `redis://[user:password@]host:port[/db]`: the adapter creates (and closes) its own connections. */
  url?: string;
  /** Your node-redis client (connected or not); the adapter adds one duplicate connection for subscriptions. */
  client?: RedisClientLike;
  /** Milliseconds an idle topic keeps its epoch and sequence counter in Redis. Default: 86,400,000 (24 h). */
  topicTtl?: number;
}

const PUBLISH_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local offset = redis.call('INCR', KEYS[3])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local prev, start
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  start = offset - 1
  prev = 0
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'start', start, 'seq', 0)
else
  start = tonumber(redis.call('HGET', KEYS[1], 'start'))
  prev = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'last', offset)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
local payload = '[' .. ARGV[2] .. ',"' .. epoch .. '"' .. string.format(',%d,%d,%d,%d,%d', seq, now, offset, prev, start) .. ARGV[10] .. ']\\n' .. ARGV[3]
if tonumber(ARGV[4]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], string.format('%d-0', seq), 'm', payload)
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
redis.call('ZADD', KEYS[4], offset, ARGV[8])
if redis.call('ZCARD', KEYS[4]) > tonumber(ARGV[9]) then redis.call('ZPOPMIN', KEYS[4]) end
redis.call('PUBLISH', ARGV[6], payload)
return {epoch, seq, now, offset}
`;

/** KEYS: tenant offset counter, its epoch; ARGV: a candidate epoch. Returns [offset, epoch]. */
const OFFSET_LUA = `
redis.call('SET', KEYS[2], ARGV[1], 'NX')
return redis.call('MGET', KEYS[1], KEYS[2])
`;

/** KEYS: meta hash, stream. Returns [[epoch, seq, last, start], entries]. */
const VIEW_LUA = `
return {redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'last', 'start'), redis.call('XRANGE', KEYS[2], '-', '+')}
`;

/** Alive-node filter shared by the scripts: KEYS[1] = nodes zset, ARGV[1] = node ttl ms. */
const ALIVE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local alive = {}
local function isAlive(node)
  if alive[node] == nil then
    local s = redis.call('ZSCORE', KEYS[1], node)
    alive[node] = (s ~= false and s ~= nil and tonumber(s) > now - tonumber(ARGV[1]))
  end
  return alive[node]
end
local function nodeOf(id)
  local dot = string.find(id, '.', 1, true)
  if dot == nil then return id end
  return string.sub(id, 1, dot - 1)
end
`;

/**
 * KEYS: nodes, user zset, the owning node's set. ARGV: nodeTtl, connectionId, key ttl, owned-set member. Returns
 * the alive connection ids, oldest first (a dead node's ids no longer count; the sweep removes them).
 */
const REGISTER_LUA = ALIVE_LUA + `
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  if isAlive(nodeOf(id)) then table.insert(out, id) end
end
return out
`;

/**
 * KEYS: nodes, presence hash (conn → user), per-user count hash, the owning node's set. ARGV: nodeTtl, conn, user,
 * key ttl, join(1)/leave(0), owned-set member. Returns 1 when the user's first connection joined / last one left.
 */
const PRESENCE_LUA = ALIVE_LUA + `
if ARGV[5] == '1' then
  if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
  redis.call('SADD', KEYS[4], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  return redis.call('HINCRBY', KEYS[3], ARGV[3], 1) == 1 and 1 or 0
end
redis.call('SREM', KEYS[4], ARGV[6])
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[3], ARGV[3], -1) <= 0 then redis.call('HDEL', KEYS[3], ARGV[3]) return 1 end
return 0
`;

/**
 * KEYS: nodes, presence hash. ARGV: nodeTtl. Returns [conn, user, ...] of alive nodes. Only filters: the entries
 * of a dead node are removed by the sweep (HEARTBEAT_LUA), which keeps the per-user counts in step.
 */
const PRESENCE_READ_LUA = ALIVE_LUA + `
local all = redis.call('HGETALL', KEYS[2])
local out = {}
for i = 1, #all, 2 do
  if isAlive(nodeOf(all[i])) then table.insert(out, all[i]) table.insert(out, all[i + 1]) end
end
return out
`;

/**
 * KEYS: nodes. ARGV: nodeId, nodeTtl, owned-set key prefix (\`<prefix>:own:\`), owned-set ttl. Records a heartbeat
 * with Redis's clock, then sweeps the nodes whose last heartbeat is nodeTtl old: every presence entry and user
 * connection a dead node owned is removed (up to 1,000 per node per beat; the rest on the next beats), and the
 * node is forgotten once nothing is left. Returns [stale, events]: stale = 1 when this node was absent or counted
 * as dead (its entries may have been swept: it registers them again); events = tenant, topic, user triples of the
 * users whose last subscriber left with the dead node (presence leave events).
 */
const HEARTBEAT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = now - tonumber(ARGV[2])
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
local stale = (old == false or old == nil or tonumber(old) <= limit) and 1 or 0
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', ARGV[3] .. ARGV[1], ARGV[4])
local events = {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', limit, 'LIMIT', 0, 16)) do
  local own = ARGV[3] .. node
  for _, m in ipairs(redis.call('SPOP', own, 1000)) do
    local e = cjson.decode(m)
    if e[1] == 'p' then
      if redis.call('HDEL', e[2], e[4]) == 1 and redis.call('HINCRBY', e[3], e[5], -1) <= 0 then
        redis.call('HDEL', e[3], e[5])
        table.insert(events, e[6]) table.insert(events, e[7]) table.insert(events, e[5])
      end
    else
      redis.call('ZREM', e[2], e[3])
    end
  end
  if redis.call('SCARD', own) == 0 then redis.call('ZREM', KEYS[1], node) end
end
return {stale, events}
`;

const esc = (s: string): string => escapeSegment(s, ':{}');

/**
 * A {@link Backplane} over Redis (standalone server or a single primary). See the module documentation for the
 * mapping; create it with {@link createRedisBackplane} or `new RedisBackplane({ url })` and pass it to
 * `createHub({ backplane })`.
 */
export class RedisBackplane extends BrokerBackplane {
  private readonly url: string | undefined;
  private readonly topicTtl: number;
  private pub: RedisClientLike | null;
  private sub: RedisClientLike | null = null;
  private readonly ownsPub: boolean;
  private readonly shas = new Map<string, string>();
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private readonly userRefs = new Map<string, number>();
  /** This node's registered connections and presence entries (owned-set member → how to register it again). */
  private readonly owned = new Map<string, { kind: 'u'; user: string; connectionId: string } | { kind: 'p'; tenant: string; topic: string; user: string; connectionId: string }>();
  private readonly onMessage = (raw: string): void => {
    const d = decodeMessage(raw);
    if (d !== null) this.incoming(d.message);
  };
  private readonly onControl = (raw: string): void => {
    const c = decodeControl(raw);
    if (c !== null && c.from !== this.nodeId) this.control(c.message, c.from);
  };
  private everReady = false;
  /** Whether the listeners are on `pub` (your client survives failed attach attempts: added once). */
  private pubWatched = false;
  private readonly onLink = (error?: unknown): void => this.linkChanged(error);

  constructor(options: RedisBackplaneOptions) {
    super(options);
    const hasUrl = options.url !== undefined;
    const hasClient = options.client !== undefined;
    if (hasUrl === hasClient) throw new TypeError('RedisBackplane needs exactly one of { url } or { client }');
    if (hasUrl && (typeof options.url !== 'string' || !/^rediss?:\/\//.test(options.url))) throw new TypeError(`url must start with redis:// or rediss://, got ${JSON.stringify(options.url)}`);
    if (hasClient && (typeof options.client!.duplicate !== 'function' || typeof options.client!.sendCommand !== 'function')) {
      throw new TypeError('client must be a node-redis client (from createClient() of the "redis" package)');
    }
    const ttl = options.topicTtl ?? 86_400_000;
    if (typeof ttl !== 'number' || !(ttl >= 1000)) throw new RangeError(`topicTtl must be ≥ 1000 ms, got ${String(ttl)}`);
    this.topicTtl = Math.floor(ttl);
    this.url = options.url;
    this.pub = options.client ?? null;
    this.ownsPub = !hasClient;
  }

  private key(tenant: string, kind: string, topic?: string): string {
    return `${this.opts.prefix}:{${esc(tenant)}}:${kind}${topic === undefined ? '' : ':' + topic}`;
  }

  private channel(tenant: string, topic: string): string {
    return `${this.opts.prefix}:t:${esc(tenant)}:${topic}`;
  }

  private get nodesKey(): string {
    return `${this.opts.prefix}:nodes`;
  }

  /** The set of everything a node registered (user connections, presence entries), swept when the node dies. */
  private ownKey(node: string): string {
    return `${this.opts.prefix}:own:${node}`;
  }

  private userChannel(user: string): string {
    return `${this.opts.prefix}:u:${user}`;
  }

  /** Both connections (commands and subscriptions) are ready, per node-redis. */
  get reachable(): boolean {
    const ready = (c: RedisClientLike | null): boolean => c !== null && (c.isReady ?? c.isOpen);
    return !this.closed && ready(this.pub) && ready(this.sub);
  }

  protected async start(): Promise<void> {
    if (this.pub === null) {
      let mod: { createClient(options: Record<string, unknown>): RedisClientLike };
      try {
        mod = (await import('redis')) as unknown as typeof mod;
      } catch (error) {
        throw new Error(`wsengine/hub/redis needs the "redis" package (npm install redis): ${(error as Error).message}`);
      }
      this.pub = mod.createClient({ url: this.url, disableOfflineQueue: true });
    }
    const pub = this.pub;
    if (!this.pubWatched) {
      this.pubWatched = true;
      pub.on('error', (e: Error) => {
        this.error(e);
        this.onLink(e);
      });
      for (const event of ['ready', 'end', 'reconnecting']) pub.on(event, () => this.onLink());
    }
    if (!pub.isOpen) await withTimeout(pub.connect(), this.opts.timeout, 'connecting to Redis');
    const sub = pub.duplicate({ disableOfflineQueue: true });
    this.sub = sub;
    sub.on('error', (e: Error) => {
      this.error(e);
      this.onLink(e);
    });
    for (const event of ['end', 'reconnecting']) sub.on(event, () => this.onLink());
    sub.on('ready', () => {
      this.onLink();
      if (!this.everReady) {
        this.everReady = true;
        return;
      }
      // Reconnected: node-redis renews the subscriptions; once they are confirmed, catch up from the Streams.
      void this.afterReconnect();
    });
    await withTimeout(sub.connect(), this.opts.timeout, 'connecting to Redis');
    this.everReady = true;
    await Promise.all([
      sub.subscribe(`${this.opts.prefix}:a`, this.onControl),
      sub.subscribe(`${this.opts.prefix}:n:${this.nodeId}`, this.onControl),
    ]);
    await this.beat();
    this.heartbeatTimer = setInterval(() => void this.timed(this.beat()).catch((e) => this.error(e)), this.opts.heartbeat);
    this.heartbeatTimer.unref();
  }

  private async afterReconnect(): Promise<void> {
    // The renewed SUBSCRIBE commands were sent first on the subscriber connection; a round trip on it proves
    // they were processed (Redis answers in order), then the Streams are read.
    try {
      await withTimeout(this.sub!.sendCommand(['PING']), this.opts.timeout, 'checking the subscriber connection');
    } catch (error) {
      this.error(error);
    }
    this.resync();
    void this.timed(this.beat()).catch((e) => this.error(e));
  }

  protected async stop(): Promise<void> {
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    const pub = this.pub;
    const sub = this.sub;
    this.sub = null;
    if (pub !== null && pub.isOpen) {
      // Leave the cluster at once: marked dead, so other nodes stop counting this node's connections and the next
      // sweep removes whatever it still had registered.
      await withTimeout(pub.sendCommand(['ZADD', this.nodesKey, '0', this.nodeId]), this.opts.timeout, 'leaving').catch(() => {});
    }
    this.everReady = false;
    await closeClient(sub);
    if (this.ownsPub) {
      // A new client for the next attach attempt (a failed one may still be reconnecting: it is closed here).
      this.pub = null;
      this.pubWatched = false;
      await closeClient(pub);
    }
  }

  private async beat(): Promise<void> {
    const [stale, events] = await this.script<[number, string[]]>(HEARTBEAT_LUA, [this.nodesKey], [
      this.nodeId, String(this.opts.nodeTtl), `${this.opts.prefix}:own:`, String(this.topicTtl),
    ]);
    for (let i = 0; i + 2 < events.length; i += 3) {
      const message: ControlMessage = { k: 'pres', event: { kind: 'leave', tenant: events[i], topic: events[i + 1], user: events[i + 2] } };
      this.control(message);
      await this.sendControl('all', message);
    }
    // Counted as dead for a while (a long pause, a network cut): others may have swept this node's entries.
    if (Number(stale) === 1 && this.owned.size > 0) await this.registerAgain();
  }

  /** Registers this node's connections and presence entries again after they may have been swept. */
  private async registerAgain(): Promise<void> {
    for (const [member, o] of [...this.owned]) {
      if (this.owned.get(member) !== o) continue; // removed meanwhile
      if (o.kind === 'u') await this.registerScript(o.user, o.connectionId, member);
      else await this.presenceScript(o.tenant, o.topic, o.user, o.connectionId, true, member);
    }
  }

  private registerScript(user: string, connectionId: string, member: string): Promise<string[]> {
    return this.script<string[]>(REGISTER_LUA, [this.nodesKey, `${this.opts.prefix}:uc:${user}`, this.ownKey(this.nodeId)], [String(this.opts.nodeTtl), connectionId, String(this.topicTtl), member]);
  }

  /** The presence script; when a user's first connection joined or last left, the event goes to every node. */
  private async presenceScript(tenant: string, topic: string, user: string, connectionId: string, join: boolean, member: string): Promise<void> {
    const changed = await this.script<number>(PRESENCE_LUA, [this.nodesKey, this.key(tenant, 'p', topic), this.key(tenant, 'pu', topic), this.ownKey(ownerNode(connectionId)!)], [
      String(this.opts.nodeTtl), connectionId, user, String(this.topicTtl), join ? '1' : '0', member,
    ]);
    if (Number(changed) !== 1) return;
    const message: ControlMessage = { k: 'pres', event: { kind: join ? 'join' : 'leave', tenant, topic, user } };
    this.control(message);
    await this.sendControl('all', message);
  }

  /** Runs a Lua script by its SHA, loading it on first use (or after a Redis restart emptied the script cache). */
  private async script<T>(source: string, keys: string[], args: string[]): Promise<T> {
    const pub = this.pub;
    if (pub === null) throw new Error('the Redis backplane is not started');
    let sha = this.shas.get(source);
    if (sha === undefined) {
      sha = createHash('sha1').update(source).digest('hex');
      this.shas.set(source, sha);
    }
    const argv = ['EVALSHA', sha, String(keys.length), ...keys, ...args];
    try {
      return await withTimeout(pub.sendCommand<T>(argv), this.opts.timeout, 'running a Redis script');
    } catch (error) {
      if (!String((error as Error).message).includes('NOSCRIPT')) throw error;
      return await withTimeout(pub.sendCommand<T>(['EVAL', source, String(keys.length), ...keys, ...args]), this.opts.timeout, 'running a Redis script');
    }
  }

  protected brokerKeys(tenant: string, pattern: string): string[] {
    const base = `${this.opts.prefix}:t:${esc(tenant).replace(/[?*[\]\\]/g, (c) => '\\' + c)}:`;
    const glob = redisPatternGlob(pattern, (s) => s);
    // A pattern whose glob has no wildcard left is an exact channel (SUBSCRIBE is cheaper than PSUBSCRIBE).
    if (!/(^|[^\\])[*?[]/.test(glob)) return ['c' + this.channel(tenant, pattern)];
    return ['p' + base + glob];
  }

  protected async brokerSubscribe(key: string): Promise<void> {
    const sub = this.requireSub();
    if (key[0] === 'c') await sub.subscribe(key.slice(1), this.onMessage);
    else await sub.pSubscribe(key.slice(1), this.onMessage);
  }

  protected async brokerUnsubscribe(key: string): Promise<void> {
    const sub = this.sub;
    if (sub === null) return;
    if (key[0] === 'c') await sub.unsubscribe(key.slice(1));
    else await sub.pUnsubscribe(key.slice(1));
  }

  private requireSub(): RedisClientLike {
    if (this.sub === null) throw new Error('the Redis backplane is not started (attach it to a hub first)');
    return this.sub;
  }

  async publish(tenant: string, topic: string, type: string, data: string, from?: string): Promise<PublishedMessage> {
    const head = `${JSON.stringify(tenant)},${JSON.stringify(topic)},${JSON.stringify(type)}`;
    const keys = [this.key(tenant, 'm', topic), this.key(tenant, 's', topic), this.key(tenant, 'o'), this.key(tenant, 'z')];
    const epochCandidate = randomBytes(8).toString('base64url');
    const r = await this.script<[string, number, number, number]>(PUBLISH_LUA, keys, [
      epochCandidate, head, data, String(this.opts.historySize), String(this.opts.historyTtl), this.channel(tenant, topic),
      String(this.topicTtl), topic, '100000', from === undefined ? '' : `,${JSON.stringify(from)}`,
    ]);
    const message: PublishedMessage = { tenant, topic, type, data, epoch: String(r[0]), seq: Number(r[1]), ts: Number(r[2]), offset: Number(r[3]) };
    if (from !== undefined) message.from = from;
    return message;
  }

  protected async loadView(tenant: string, topic: string): Promise<TopicView | null> {
    // One script: the counters and the Stream read in one atomic step.
    const [meta, entries] = await this.script<[(string | null)[], [string, string[]][]]>(VIEW_LUA, [this.key(tenant, 'm', topic), this.key(tenant, 's', topic)], []);
    const [epoch, seq, last, start] = meta;
    if (epoch === null || epoch === undefined) return null;
    const oldest = Date.now() - this.opts.historyTtl;
    const held: TopicView['held'] = [];
    for (const [, fields] of entries) {
      const d = decodeMessage(fields[1]);
      if (d === null || d.message.epoch !== epoch || d.message.ts < oldest) continue;
      held.push({ message: d.message, prev: d.prev });
    }
    return { epoch, seq: Number(seq), lastOffset: Number(last ?? 0), startOffset: Number(start ?? 0), held };
  }

  protected async topicsSince(tenant: string, pattern: string, offset: number): Promise<string[]> {
    const topics = await this.pub!.sendCommand<string[]>(['ZRANGEBYSCORE', this.key(tenant, 'z'), `(${Math.max(0, Math.floor(offset))}`, '+inf']);
    return topics.filter((t) => matches(pattern, t));
  }

  protected async tenantOffset(tenant: string): Promise<TenantOffset> {
    // The offset epoch lives beside the counter (neither expires): lost together, so a new one marks new offsets.
    const [offset, epoch] = await this.script<[string | null, string]>(OFFSET_LUA, [this.key(tenant, 'o'), this.key(tenant, 'oe')], [randomBytes(8).toString('base64url')]);
    return { offset: Number(offset ?? 0), epoch: String(epoch) };
  }

  /** Resolves with the number of subscriber connections that received it (Redis's `PUBLISH` answer). */
  protected async sendControl(to: { node: string } | { user: string } | 'all', message: ControlMessage): Promise<number> {
    const channel = to === 'all' ? `${this.opts.prefix}:a` : 'node' in to ? `${this.opts.prefix}:n:${to.node}` : this.userChannel(to.user);
    return Number(await this.pub!.sendCommand(['PUBLISH', channel, encodeControl(this.nodeId, message)]));
  }

  async registerConnection(user: string, connectionId: string): Promise<string[]> {
    const n = this.userRefs.get(user) ?? 0;
    this.userRefs.set(user, n + 1);
    try {
      if (n === 0) await withTimeout(this.requireSub().subscribe(this.userChannel(user), this.onControl), this.opts.timeout, 'subscribing to a user');
      const member = JSON.stringify(['u', `${this.opts.prefix}:uc:${user}`, connectionId]);
      if (ownerNode(connectionId) === this.nodeId) this.owned.set(member, { kind: 'u', user, connectionId });
      return await this.registerScript(user, connectionId, member);
    } catch (error) {
      await this.unregisterConnection(user, connectionId).catch(() => {});
      throw error;
    }
  }

  async unregisterConnection(user: string, connectionId: string): Promise<void> {
    const n = this.userRefs.get(user);
    if (n === undefined) return;
    if (n <= 1) this.userRefs.delete(user);
    else this.userRefs.set(user, n - 1);
    const member = JSON.stringify(['u', `${this.opts.prefix}:uc:${user}`, connectionId]);
    this.owned.delete(member);
    const work: Promise<unknown>[] = [
      this.pub!.sendCommand(['ZREM', `${this.opts.prefix}:uc:${user}`, connectionId]),
      this.pub!.sendCommand(['SREM', this.ownKey(ownerNode(connectionId) ?? this.nodeId), member]),
    ];
    if (n <= 1 && this.sub !== null) work.push(this.sub.unsubscribe(this.userChannel(user)));
    await withTimeout(Promise.all(work), this.opts.timeout, 'unregistering a connection');
  }

  private async presenceChange(tenant: string, topic: string, user: string, connectionId: string, join: boolean): Promise<void> {
    const owner = ownerNode(connectionId);
    if (owner === null) throw new TypeError(`connection id ${JSON.stringify(connectionId)} does not start with a node id and a dot`);
    const member = JSON.stringify(['p', this.key(tenant, 'p', topic), this.key(tenant, 'pu', topic), connectionId, user, tenant, topic]);
    if (owner === this.nodeId) {
      if (join) this.owned.set(member, { kind: 'p', tenant, topic, user, connectionId });
      else this.owned.delete(member);
    }
    await this.presenceScript(tenant, topic, user, connectionId, join, member);
  }

  presenceJoin(tenant: string, topic: string, user: string, connectionId: string): Promise<void> {
    return this.presenceChange(tenant, topic, user, connectionId, true);
  }

  presenceLeave(tenant: string, topic: string, user: string, connectionId: string): Promise<void> {
    return this.presenceChange(tenant, topic, user, connectionId, false);
  }

  async presence(tenant: string, topic: string): Promise<PresenceSnapshot> {
    const flat = await this.script<string[]>(PRESENCE_READ_LUA, [this.nodesKey, this.key(tenant, 'p', topic)], [String(this.opts.nodeTtl)]);
    const users: Record<string, number> = Object.create(null) as Record<string, number>;
    for (let i = 1; i < flat.length; i += 2) users[flat[i]] = (users[flat[i]] ?? 0) + 1;
    return { tenant, topic, users, connections: flat.length / 2 };
  }
}

async function closeClient(c: RedisClientLike | null): Promise<void> {
  if (c === null || !c.isOpen) return;
  try {
    if (typeof c.close === 'function') await c.close();
    else if (typeof c.quit === 'function') await c.quit();
    else c.destroy?.();
  } catch {
    c.destroy?.();
  }
}

/** Creates a {@link RedisBackplane} from a URL (`redis://127.0.0.1:6379`) or your node-redis client. */
export function createRedisBackplane(urlOrClient: string | RedisClientLike, options: Omit<RedisBackplaneOptions, 'url' | 'client'> = {}): RedisBackplane {
  return typeof urlOrClient === 'string' ? new RedisBackplane({ ...options, url: urlOrClient }) : new RedisBackplane({ ...options, client: urlOrClient });
}
