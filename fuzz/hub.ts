/**
 * Fuzz targets for the hub.
 *
 * - {@link runHubCampaign}: the message parser and dispatcher: random, mutated and hostile client messages
 *   (malformed JSON, wrong types, huge topic names, deep nesting, prototype keys, both dialects) fed to a hub
 *   through a real engine connection over an in-memory socket. Checked: nothing throws, every message the parser
 *   refuses gets an error reply, and the heap stays bounded.
 * - {@link runHubOrderCampaign}: request ordering: a few clients on real sockets pipeline random batches of
 *   `subscribe`/`unsubscribe`/`refresh`/`publish`/`ping` against a backplane whose calls each wait a random
 *   delay ({@link DelayedBackplane}); each batch is checked against a sequential model of every client's requests.
 *
 * @module
 */
import { Duplex } from 'node:stream';
import { connect } from '../lib/index.js';
import { createHub, type Hub, type HubClient, MemoryBackplane, parseRequest, signJwt } from '../lib/hub/index.js';
import { matches, normalizePattern } from '../lib/hub/topics.js';
import { WebSocketConnection } from '../lib/transport/connection.js';
import { campaignDeadline } from './core.js';

/** Result of {@link runHubCampaign}. */
export interface HubFuzzStats {
  iterations: number;
  errorsReplied: number;
  violations: string[];
  heapGrowthBytes: number;
}

function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

const VALID = [
  '{"type":"subscribe","data":{"topic":"orders.eu.#"},"request_id":1}',
  '{"type":"unsubscribe","data":{"channel":"conversation:conv-123"}}',
  '{"type":"publish","data":{"topic":"a.b","type":"t","data":{"x":1}},"request_id":"p"}',
  '{"type":"ping","data":{}}',
  '{"type":"pong","data":{}}',
  '{"type":"presence","data":{"topic":"a.b"},"request_id":2}',
  '{"type":"history","data":{"topic":"a.b","since":{"epoch":"","seq":0}},"request_id":3}',
  '{"type":"subscribe","data":{"topic":"a.*","since":{"positions":{"a.b":{"epoch":"x","seq":1}},"offset":0}},"request_id":4}',
  '{"type":"refresh","data":{"token":"abc"},"request_id":5}',
  '{"action":"subscribe","tenant":"prod","channel":"orders.eu.#"}',
  '{"action":"publish","tenant":"prod","channel":"orders.eu.created","payload":"..."}',
  '{"type":"chat.message","data":{"room":"r","text":"t"},"request_id":6}',
];

const ATOMS = ['null', 'true', '1e308', '-0', '"x"', '[]', '{}', '"#"', '"*.*.#"', '"__proto__"', '{"__proto__":{"polluted":1}}', '"a..b"', '" "', '1.5', '"\\u0000"'];

function generate(r: (n: number) => number): string {
  switch (r(7)) {
    case 0: {
      // Mutate a valid message byte-wise.
      const base = Buffer.from(VALID[r(VALID.length)]);
      for (let k = 1 + r(4); k > 0; k--) base[r(base.length)] = r(128);
      return base.toString('latin1');
    }
    case 1: {
      // Replace one JSON value with an atom of another type.
      const base = VALID[r(VALID.length)];
      return base.replace(/"[^"]*"|\d+|\{\}/g, (m) => (r(4) === 0 ? ATOMS[r(ATOMS.length)] : m));
    }
    case 2:
      return `{"type":"subscribe","data":{"topic":"${'seg.'.repeat(1 + r(2000))}x"},"request_id":${r(100)}}`;
    case 3: {
      const depth = 1 + r(50_000);
      return r(2) ? '['.repeat(depth) + ']'.repeat(depth) : `{"type":"x","data":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`;
    }
    case 4:
      return VALID[r(VALID.length)].slice(0, r(60));
    case 5:
      return `{"type":${ATOMS[r(ATOMS.length)]},"data":${ATOMS[r(ATOMS.length)]},"request_id":${ATOMS[r(ATOMS.length)]}}`;
    default:
      return VALID[r(VALID.length)];
  }
}

/**
 * Runs the hub target with `seed` for `seconds` or `iterations` inputs, whichever ends first (at least one must be
 * given; a fixed `iterations` makes the run deterministic, whatever the machine's load); returns what it saw.
 */
export async function runHubCampaign(options: { seconds?: number; iterations?: number; seed: number }): Promise<HubFuzzStats> {
  const deadline = campaignDeadline(Date.now(), options);
  const maxIterations = options.iterations ?? Infinity;
  const r = rng(options.seed);
  const hub = createHub({ heartbeat: false, limits: { rate: false, maxSubscriptions: 1000 }, authenticate: (t) => (t === 'abc' ? { user: 'u' } : null) });
  hub.on('message', (_client, m) => {
    if (m.type === 'throws') throw new Error('handler');
  });
  const socket = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  const connection = new WebSocketConnection(socket, 'server', {});
  connection.principal = { user: 'fuzzer' };
  const replies: string[] = [];
  const realSend = connection.send.bind(connection);
  connection.send = ((data: Parameters<typeof realSend>[0], ...rest: never[]) => {
    if (typeof data === 'string') replies.push(data);
    return realSend(data, ...rest);
  }) as typeof connection.send;
  hub.server.emit('connection', connection, { url: '/', path: '/', protocols: [] } as never);
  const violations: string[] = [];
  let iterations = 0;
  let errorsReplied = 0;
  global.gc?.();
  const heapStart = process.memoryUsage().heapUsed;
  while (iterations < maxIterations && Date.now() < deadline) {
    const input = generate(r);
    replies.length = 0;
    const expectError = input !== 'ping' && input.trimStart().startsWith('{') ? parseRequest(input).kind === 'invalid' : true;
    try {
      connection.emit('message', Buffer.from(input, 'latin1'), false);
      await new Promise((resolve) => setImmediate(resolve));
    } catch (error) {
      violations.push(`threw on ${JSON.stringify(input.slice(0, 80))}: ${(error as Error).message}`);
    }
    const gotError = replies.some((x) => x.startsWith('{"type":"error"') || x.startsWith('{"action":"error"'));
    if (gotError) errorsReplied++;
    if (expectError && !gotError && input.trim() !== 'ping') violations.push(`no error reply for ${JSON.stringify(input.slice(0, 80))}`);
    if (connection.readyState !== 1) violations.push(`connection closed by ${JSON.stringify(input.slice(0, 80))}`);
    if (({} as Record<string, unknown>).polluted !== undefined) violations.push('prototype polluted');
    if (violations.length > 20) break;
    iterations++;
  }
  global.gc?.();
  const heapGrowthBytes = process.memoryUsage().heapUsed - heapStart;
  socket.destroy();
  await hub.close();
  return { iterations, errorsReplied, violations, heapGrowthBytes };
}

// ─── Request ordering ─────────────────────────────────────────────────────────────────────────────────────────

/**
 * A {@link MemoryBackplane} whose `subscribe`, `unsubscribe`, `resume`, `publish`, `presence`, `presenceJoin`,
 * `presenceLeave` and `registerConnection` each wait `delay()` ms (0: a microtask only) before doing the real
 * thing, so calls overtake one another the way a broker's answers can.
 */
export class DelayedBackplane extends MemoryBackplane {
  /** Calls waiting or running. */
  pending = 0;
  private readonly delay: () => number;

  constructor(delay: () => number) {
    super();
    this.delay = delay;
  }

  private async later<T>(call: () => Promise<T>): Promise<T> {
    const ms = this.delay();
    this.pending++;
    try {
      if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
      else await undefined;
      return await call();
    } finally {
      this.pending--;
    }
  }

  override subscribe(...a: Parameters<MemoryBackplane['subscribe']>): ReturnType<MemoryBackplane['subscribe']> {
    return this.later(() => super.subscribe(...a));
  }
  override unsubscribe(...a: Parameters<MemoryBackplane['unsubscribe']>): ReturnType<MemoryBackplane['unsubscribe']> {
    return this.later(() => super.unsubscribe(...a));
  }
  override resume(...a: Parameters<MemoryBackplane['resume']>): ReturnType<MemoryBackplane['resume']> {
    return this.later(() => super.resume(...a));
  }
  override publish(...a: Parameters<MemoryBackplane['publish']>): ReturnType<MemoryBackplane['publish']> {
    return this.later(() => super.publish(...a));
  }
  override presence(...a: Parameters<MemoryBackplane['presence']>): ReturnType<MemoryBackplane['presence']> {
    return this.later(() => super.presence(...a));
  }
  override presenceJoin(...a: Parameters<MemoryBackplane['presenceJoin']>): ReturnType<MemoryBackplane['presenceJoin']> {
    return this.later(() => super.presenceJoin(...a));
  }
  override presenceLeave(...a: Parameters<MemoryBackplane['presenceLeave']>): ReturnType<MemoryBackplane['presenceLeave']> {
    return this.later(() => super.presenceLeave(...a));
  }
  override registerConnection(...a: Parameters<MemoryBackplane['registerConnection']>): ReturnType<MemoryBackplane['registerConnection']> {
    return this.later(() => super.registerConnection(...a));
  }
}

/** Result of {@link runHubOrderCampaign}. */
export interface HubOrderStats {
  batches: number;
  /** Requests sent (the trailing ping of each client's batch included, the fences not). */
  requests: number;
  /** Publishes the model expected to succeed. */
  publishes: number;
  /** Topic messages received. */
  deliveries: number;
  /** Exact delivery checks: a client's own publishes (received iff subscribed at that point in its order). */
  selfChecks: number;
  /** Delivery checks across clients whose outcome the batch determined (subscribed, or not, all batch long). */
  crossChecks: number;
  violations: string[];
  elapsedMs: number;
}

/** Options of {@link runHubOrderCampaign}. */
export interface HubOrderOptions {
  seed: number;
  /** Stop after this many seconds (checked between batches). */
  seconds?: number;
  /** Stop after this many batches. */
  batches?: number;
  /** Clients (connections, one user each). Default 3. */
  clients?: number;
  /** Most requests per client per batch, before its trailing ping. Default 8. */
  maxBatch?: number;
  /** Most ms a backplane call waits. Default 5. */
  maxDelayMs?: number;
  /** Most ms to wait for a batch's replies before reporting them missing (and stopping). Default 5,000. */
  replyTimeoutMs?: number;
  /**
   * Also check, once the backplane's delayed calls are done, that its presence holds exactly the subscriptions
   * (a leave must never overtake its join). Default: true.
   */
  checkPresence?: boolean;
  progressMs?: number;
  onProgress?: (stats: HubOrderStats) => void;
}

const ORDER_SECRET = 'fuzz-hub-order-secret-0123456789abcdef';
const ORDER_TENANTS = ['default', 'x', 'y'];
const ORDER_TOPICS = ['a', 'a.b', 'a.c', 'b.c', 'a.b.c'];
const ORDER_PATTERNS = ['a.*', 'a.#', '#', '*.c', 'b.#', 'a.#.#', '*'];

type ModelSubs = ReadonlyMap<string, { tenant: string; topic: string }>;
type Json = Record<string, any>;

/** What one client's connection is, in the model: its subscriptions and the tenants its token allows. */
interface ClientModel {
  subs: ModelSubs;
  /** undefined: any tenant. */
  tenants: readonly string[] | undefined;
}

/** An expected reply: its `type`, `request_id` and, for errors, the code. */
interface ExpectedReply {
  type: 'ack' | 'error' | 'pong';
  requestId: string | number | null;
  code?: string;
  /** For a refresh: the subscription keys it revokes. */
  revoked?: string[];
  /** For subscribe/unsubscribe acks: the tenant and (normalized) topic they name. */
  tenant?: string;
  topic?: string;
}

/** One planned request of one client, with what the model says it does. */
interface Planned {
  text: string;
  what: string;
  reply: ExpectedReply | null;
  /** The model after this request. */
  after: ClientModel;
  /** For a publish the model expects to succeed: its message id, tenant and topic. */
  publish?: { id: number; tenant: string; topic: string };
  /** For a publish refused by the model: its message id (nobody may receive it). */
  refusedId?: number;
}

const subKeyOf = (tenant: string, topic: string): string => `${tenant}\0${topic}`;
const showKey = (key: string): string => key.replace('\0', '/');
const showSubs = (subs: ModelSubs): string => `[${[...subs.keys()].map(showKey).sort().join(', ')}]`;

function subscribedTo(subs: ModelSubs, tenant: string, topic: string): boolean {
  for (const s of subs.values()) if (s.tenant === tenant && matches(s.topic, topic)) return true;
  return false;
}

/** A client's connection in the campaign: what it received, in order. */
class OrderClient {
  readonly inbox: Json[] = [];
  /** Replies (messages with a `request_id`) received. */
  replies = 0;
  closed: string | null = null;
  model: ClientModel;
  /** Message ids of every topic message received (for duplicates). */
  readonly seen = new Set<number>();
  private wake: (() => void) | null = null;

  constructor(
    readonly index: number,
    readonly user: string,
    readonly connection: WebSocketConnection,
    readonly hubClient: HubClient,
    tenants: readonly string[] | undefined,
  ) {
    this.model = { subs: new Map(), tenants };
    connection.on('message', (data: Buffer) => {
      let m: unknown;
      try {
        m = JSON.parse(data.toString());
      } catch {
        m = { unparsable: data.toString().slice(0, 80) };
      }
      const message = (typeof m === 'object' && m !== null ? m : { unparsable: String(m) }) as Json;
      this.inbox.push(message);
      if (Object.hasOwn(message, 'request_id')) this.replies++;
      this.wake?.();
    });
    connection.on('close', (code: number, reason: string) => {
      this.closed = `${code} ${reason}`;
      this.wake?.();
    });
  }

  /** Resolves true once `done()` holds, false after `ms` or when the connection closed. */
  until(done: () => boolean, ms: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(false), ms);
      const finish = (ok: boolean): void => {
        clearTimeout(timer);
        this.wake = null;
        resolve(ok);
      };
      this.wake = () => {
        if (done()) finish(true);
        else if (this.closed !== null) finish(false);
      };
    });
  }
}

/** A token for `user` allowing `tenants` (undefined: no `tenants` claim, so any tenant). */
function orderToken(user: string, tenants: readonly string[] | undefined): string {
  return signJwt({ sub: user, ...(tenants === undefined ? {} : { tenants: [...tenants] }) }, ORDER_SECRET, { expiresIn: 3600 });
}

/** Random tenants for a token: none claimed (any tenant) a third of the time, else a random subset. */
function randomTenants(r: (n: number) => number): readonly string[] | undefined {
  if (r(3) === 0) return undefined;
  return ORDER_TENANTS.filter(() => r(3) !== 0);
}

/**
 * Plans `count` random requests of one client (then a ping), from its model `start`, with what the hub must do for
 * each if it runs them one after the other in this order: the reply, and the model after it.
 */
function planRequests(r: (n: number) => number, client: OrderClient, start: ClientModel, count: number, batch: number, nextId: () => number): Planned[] {
  const out: Planned[] = [];
  let model = start;
  const allowed = (tenant: string): boolean => model.tenants === undefined || model.tenants.includes(tenant);
  const rid = (k: number): string => `b${batch}.c${client.index}.${k}`;
  const pickTenant = (): { field: Json; tenant: string } => {
    const i = r(ORDER_TENANTS.length + 1);
    return i === ORDER_TENANTS.length ? { field: {}, tenant: 'default' } : { field: { tenant: ORDER_TENANTS[i] }, tenant: ORDER_TENANTS[i] };
  };
  const refuse = (id: string | null, tenant: string): ExpectedReply => ({ type: 'error', requestId: id, code: 'unauthorized', tenant });
  for (let k = 0; k <= count; k++) {
    const id = rid(k);
    const roll = k === count ? -1 : r(100);
    if (roll < 0 || roll < 8) {
      // The trailing ping ends every batch: its pong says that all before it ran.
      out.push({ text: JSON.stringify({ type: 'ping', data: {}, request_id: id }), what: `ping ${id}`, reply: { type: 'pong', requestId: id }, after: model });
    } else if (roll < 38) {
      const { field, tenant } = pickTenant();
      const names = [...ORDER_TOPICS, ...ORDER_PATTERNS];
      const raw = names[r(names.length)];
      const topic = normalizePattern(raw);
      const text = JSON.stringify({ type: 'subscribe', data: { topic: raw, ...field }, request_id: id });
      const what = `subscribe ${tenant}/${raw} (${id})`;
      if (!allowed(tenant)) {
        out.push({ text, what, reply: refuse(id, tenant), after: model });
        continue;
      }
      const subs = new Map(model.subs);
      subs.set(subKeyOf(tenant, topic), { tenant, topic });
      model = { subs, tenants: model.tenants };
      out.push({ text, what, reply: { type: 'ack', requestId: id, tenant, topic }, after: model });
    } else if (roll < 58) {
      const { field, tenant: randomTenant } = pickTenant();
      // Mostly one of its subscriptions, as a client would.
      const held = [...model.subs.values()];
      const target = held.length > 0 && r(4) !== 0 ? held[r(held.length)] : null;
      const tenant = target?.tenant ?? randomTenant;
      const tenantField = target === null ? field : target.tenant === 'default' && r(2) === 0 ? {} : { tenant };
      const names = [...ORDER_TOPICS, ...ORDER_PATTERNS];
      const raw = target?.topic ?? names[r(names.length)];
      const topic = normalizePattern(raw);
      const text = JSON.stringify({ type: 'unsubscribe', data: { topic: raw, ...tenantField }, request_id: id });
      const what = `unsubscribe ${tenant}/${raw} (${id})`;
      if (!allowed(tenant)) {
        out.push({ text, what, reply: refuse(id, tenant), after: model });
        continue;
      }
      const subs = new Map(model.subs);
      subs.delete(subKeyOf(tenant, topic));
      model = { subs, tenants: model.tenants };
      out.push({ text, what, reply: { type: 'ack', requestId: id, tenant, topic }, after: model });
    } else if (roll < 86) {
      const { field, tenant } = pickTenant();
      const topic = ORDER_TOPICS[r(ORDER_TOPICS.length)];
      const messageId = nextId();
      // Now and then without a request_id: no ack then (an error still comes, with request_id null).
      const withId = r(6) !== 0;
      const text = JSON.stringify({ type: 'publish', data: { topic, ...field, type: 'm', data: { id: messageId } }, ...(withId ? { request_id: id } : {}) });
      const what = `publish ${tenant}/${topic} #${messageId}${withId ? ` (${id})` : ''}`;
      if (!allowed(tenant)) {
        out.push({ text, what, reply: refuse(withId ? id : null, tenant), after: model, refusedId: messageId });
        continue;
      }
      out.push({ text, what, reply: withId ? { type: 'ack', requestId: id } : null, after: model, publish: { id: messageId, tenant, topic } });
    } else {
      const tenants = randomTenants(r);
      const text = JSON.stringify({ type: 'refresh', data: { token: orderToken(client.user, tenants) }, request_id: id });
      const what = `refresh to ${tenants === undefined ? 'any tenant' : `[${tenants.join(', ')}]`} (${id})`;
      const subs = new Map(model.subs);
      const revoked: string[] = [];
      if (tenants !== undefined) {
        for (const [key, s] of model.subs) {
          if (tenants.includes(s.tenant)) continue;
          subs.delete(key);
          revoked.push(key);
        }
      }
      model = { subs, tenants };
      out.push({ text, what, reply: { type: 'ack', requestId: id, revoked }, after: model });
    }
  }
  return out;
}

/** Why a received reply is not the expected one, or null. */
function replyProblem(got: Json, want: ExpectedReply): string | null {
  if (got.request_id !== want.requestId) return `request_id ${JSON.stringify(got.request_id)} instead of ${JSON.stringify(want.requestId)}`;
  if (got.type !== want.type) return `${JSON.stringify(got.type)}${got.type === 'error' ? ` (${got.data?.code}: ${got.data?.message})` : ''} instead of ${want.type}${want.code ? ` ${want.code}` : ''}`;
  if (want.type === 'error' && got.data?.code !== want.code) return `error ${got.data?.code} instead of ${want.code}`;
  if (want.type === 'ack' && want.topic !== undefined && (got.data?.topic !== want.topic || got.data?.tenant !== want.tenant)) {
    return `ack for ${got.data?.tenant}/${got.data?.topic} instead of ${want.tenant}/${want.topic}`;
  }
  if (want.revoked !== undefined) {
    const revoked = ((got.data?.revoked ?? []) as Array<{ tenant: string; topic: string }>).map((s) => subKeyOf(s.tenant, s.topic)).sort();
    const expected = [...want.revoked].sort();
    if (revoked.join('\n') !== expected.join('\n')) return `revoked [${revoked.map(showKey).join(', ')}] instead of [${expected.map(showKey).join(', ')}]`;
  }
  return null;
}

/**
 * The request-ordering campaign: `clients` connections (one user each, JWT auth with `tenants` claims) on a hub
 * over a {@link DelayedBackplane} with delays of 0–`maxDelayMs` ms. Each batch, every client pipelines 0–`maxBatch`
 * random `subscribe`/`unsubscribe`/`refresh`/`publish`/`ping` requests (then a ping), the clients' sends
 * interleaved at random with a few short pauses; once every reply came, a fence ping per client flushes what was
 * delivered to it. Checked against a sequential model of each client's requests:
 *
 * - the replies (acks, errors, pongs) come in request order, each the one the model expects (an `unauthorized`
 *   error for a tenant the current token does not allow; a refresh's `revoked` list);
 * - every topic message a client receives matches a subscription of the model as of the last reply before it
 *   (nothing arrives after the unsubscribe's or the refresh's ack that ended the subscription, nor before the ack
 *   of the one that started it), and arrives once;
 * - a client receives its own publish iff the model has it subscribed to a matching pattern at that point;
 *   another client receives it iff subscribed all batch long (not checked when its subscriptions changed);
 * - after the batch, `hub.client(id).subscriptions` is the model's set and `hub.stats().subscriptions` the sum.
 *
 * The model then takes the hub's state (so that one violation does not cascade). Stops early after 50 violations
 * or when replies stop coming.
 */
export async function runHubOrderCampaign(options: HubOrderOptions): Promise<HubOrderStats> {
  const started = Date.now();
  const deadline = campaignDeadline(started, { seconds: options.seconds, iterations: options.batches });
  const maxBatches = options.batches ?? Infinity;
  const clientCount = options.clients ?? 3;
  const maxBatch = options.maxBatch ?? 8;
  const maxDelay = options.maxDelayMs ?? 5;
  const replyTimeout = options.replyTimeoutMs ?? 5000;
  const r = rng(options.seed);
  const delays = rng((options.seed ^ 0x9e3779b9) >>> 0);
  const backplane = new DelayedBackplane(() => delays(maxDelay + 1));
  const hub = createHub({
    jwt: { secret: ORDER_SECRET },
    backplane,
    heartbeat: false,
    limits: { rate: false, maxSubscriptions: 1000, maxConnectionsPerUser: 100 },
  });
  const stats: HubOrderStats = { batches: 0, requests: 0, publishes: 0, deliveries: 0, selfChecks: 0, crossChecks: 0, violations: [], elapsedMs: 0 };
  const violations = stats.violations;
  hub.on('error', (error) => violations.push(`the hub reported an error: ${error.message}`));
  const address = await hub.listen(0, '127.0.0.1');
  const clients: OrderClient[] = [];
  let nextMessageId = 0;
  let lastProgress = started;
  try {
    for (let i = 0; i < clientCount; i++) {
      const user = `u${i}`;
      const tenants = randomTenants(r);
      const admitted = new Promise<HubClient>((resolve) => hub.once('connection', (c) => resolve(c)));
      const connection = await connect(`ws://127.0.0.1:${address.port}/?token=${orderToken(user, tenants)}`);
      clients.push(new OrderClient(i, user, connection, await admitted, tenants));
    }
    batches: while (stats.batches < maxBatches && Date.now() < deadline && violations.length < 50) {
      const batch = stats.batches;
      const plans = clients.map((c) => planRequests(r, c, c.model, r(maxBatch + 1), batch, () => ++nextMessageId));
      const marks = clients.map((c) => ({ inbox: c.inbox.length, replies: c.replies }));
      // Pipelined: every client's requests back to back, interleaved across clients, a few short pauses.
      const sent = clients.map(() => 0);
      for (let left = plans.reduce((n, p) => n + p.length, 0); left > 0; left--) {
        let i = r(clients.length);
        while (sent[i] === plans[i].length) i = (i + 1) % clients.length;
        clients[i].connection.send(plans[i][sent[i]++].text);
        stats.requests++;
        if (r(12) === 0) await new Promise((resolve) => (r(2) === 0 ? setImmediate(resolve) : setTimeout(resolve, r(maxDelay + 1))));
      }
      // Every reply (each plan ends with a ping, so every publish ran, and was delivered, by now).
      for (const [i, c] of clients.entries()) {
        const want = plans[i].filter((p) => p.reply !== null).length;
        if (!(await c.until(() => c.replies - marks[i].replies >= want, replyTimeout))) {
          violations.push(
            `batch ${batch}, client ${i}: ${c.closed !== null ? `connection closed (${c.closed})` : `timed out`} with ${c.replies - marks[i].replies} of ${want} replies; ` +
              `requests: ${plans[i].map((p) => p.what).join('; ')}`,
          );
          break batches;
        }
      }
      // A fence per client: what was written to it before comes before the pong.
      for (const c of clients) c.connection.send(JSON.stringify({ type: 'ping', data: {}, request_id: `fence${batch}` }));
      for (const [i, c] of clients.entries()) {
        const want = plans[i].filter((p) => p.reply !== null).length + 1;
        if (!(await c.until(() => c.replies - marks[i].replies >= want, replyTimeout))) {
          violations.push(`batch ${batch}, client ${i}: no pong for the fence ping${c.closed !== null ? ` (connection closed: ${c.closed})` : ''}`);
          break batches;
        }
      }
      checkBatch(batch, clients, plans, marks, hub.stats().subscriptions, stats);
      if (options.checkPresence !== false) await checkPresence(batch, hub, backplane, clients, violations);
      for (const c of clients) {
        // Resynchronize with the hub, so that one violation does not cascade into the next batches.
        const subs = new Map<string, { tenant: string; topic: string }>();
        for (const s of c.hubClient.subscriptions) subs.set(subKeyOf(s.tenant, s.topic), { tenant: s.tenant, topic: s.topic });
        c.model = { subs, tenants: c.hubClient.tenants };
      }
      stats.batches++;
      if (options.onProgress && options.progressMs !== undefined && Date.now() - lastProgress >= options.progressMs) {
        lastProgress = Date.now();
        stats.elapsedMs = lastProgress - started;
        options.onProgress(stats);
      }
    }
  } finally {
    for (const c of clients) c.connection.terminate();
    await hub.close();
  }
  stats.elapsedMs = Date.now() - started;
  return stats;
}

/** Checks one settled batch (see {@link runHubOrderCampaign}); pushes violations to `stats.violations`. */
function checkBatch(batch: number, clients: OrderClient[], plans: Planned[][], marks: Array<{ inbox: number }>, hubSubscriptions: number, stats: HubOrderStats): void {
  const violations = stats.violations;
  const published = new Map<number, { from: number; tenant: string; topic: string; k: number }>();
  const refused = new Set<number>();
  for (const [i, plan] of plans.entries()) {
    for (const [k, p] of plan.entries()) {
      if (p.publish !== undefined) published.set(p.publish.id, { from: i, k, tenant: p.publish.tenant, topic: p.publish.topic });
      if (p.refusedId !== undefined) refused.add(p.refusedId);
    }
  }
  stats.publishes += published.size;
  /** Per client, the message ids received this batch. */
  const received = clients.map(() => new Map<number, number>());
  /** Per client, whether its replies came as expected (then every message it received was checked against them). */
  const ordered = clients.map(() => true);
  for (const [i, c] of clients.entries()) {
    const plan = plans[i];
    const start = c.model;
    const expected = plan.flatMap((p, k) => (p.reply === null ? [] : [{ k, reply: p.reply }]));
    const where = `batch ${batch}, client ${i}`;
    const requests = (): string => plan.map((p) => p.what).join('; ');
    /** The model as of the last reply received: before the first, the batch's start. */
    let model = start;
    let replies = 0;
    for (const m of c.inbox.slice(marks[i].inbox)) {
      if (Object.hasOwn(m, 'request_id')) {
        if (replies >= expected.length) {
          if (replies > expected.length || m.request_id !== `fence${batch}` || m.type !== 'pong') violations.push(`${where}: unexpected reply ${JSON.stringify(m).slice(0, 160)}; requests: ${requests()}`);
          replies++;
          continue;
        }
        const want = expected[replies++];
        const problem = ordered[i] ? replyProblem(m, want.reply) : null;
        if (problem !== null) {
          violations.push(`${where}: reply ${replies} (to ${plan[want.k].what}) is ${problem}; requests: ${requests()}`);
          // The replies no longer tell where in its order the client is: no more checks on its stream.
          ordered[i] = false;
        }
        model = plan[want.k].after;
        continue;
      }
      if (typeof m.topic !== 'string' || typeof m.tenant !== 'string' || typeof m.data?.id !== 'number') {
        violations.push(`${where}: unexpected message ${JSON.stringify(m).slice(0, 160)}`);
        continue;
      }
      stats.deliveries++;
      const id = m.data.id as number;
      received[i].set(id, (received[i].get(id) ?? 0) + 1);
      if (c.seen.has(id)) violations.push(`${where}: message #${id} on ${m.tenant}/${m.topic} received twice`);
      c.seen.add(id);
      if (refused.has(id)) violations.push(`${where}: received message #${id} on ${m.tenant}/${m.topic}, whose publish should have been refused`);
      else if (ordered[i] && !subscribedTo(model.subs, m.tenant, m.topic)) {
        violations.push(
          `${where}: received #${id} on ${m.tenant}/${m.topic} after reply ${replies} while subscribed (by its requests) to ${showSubs(model.subs)}; requests: ${requests()}`,
        );
      }
    }
    if (ordered[i] && replies < expected.length) violations.push(`${where}: ${expected.length - replies} replies missing; requests: ${requests()}`);
    // The hub's subscriptions are the model's.
    const final = plan.length > 0 ? plan[plan.length - 1].after : start;
    const actual = c.hubClient.subscriptions.map((s) => subKeyOf(s.tenant, s.topic)).sort();
    const want = [...final.subs.keys()].sort();
    if (actual.join('\n') !== want.join('\n')) {
      violations.push(`${where}: subscribed to [${actual.map(showKey).join(', ')}] instead of ${showSubs(final.subs)}; started with ${showSubs(start.subs)}; requests: ${requests()}`);
    }
  }
  // Who must (or must not) have received each publish.
  for (const [id, p] of published) {
    for (const [i, c] of clients.entries()) {
      const plan = plans[i];
      let must: boolean;
      if (i === p.from) {
        // In its own order: subscribed as of the request before the publish.
        must = subscribedTo((p.k === 0 ? c.model : plan[p.k - 1].after).subs, p.tenant, p.topic);
        stats.selfChecks++;
      } else {
        const states = [c.model, ...plan.map((q) => q.after)];
        const all = states.every((s) => subscribedTo(s.subs, p.tenant, p.topic));
        const none = states.every((s) => !subscribedTo(s.subs, p.tenant, p.topic));
        if (!all && !none) continue;
        must = all;
        stats.crossChecks++;
      }
      const got = received[i].get(id) ?? 0;
      if (must && got === 0) {
        violations.push(
          `batch ${batch}, client ${i}: did not receive #${id} on ${p.tenant}/${p.topic} (published by client ${p.from}${i === p.from ? ' itself' : ''}) ` +
            `though subscribed (by its requests); started with ${showSubs(c.model.subs)}; requests: ${plan.map((q) => q.what).join('; ')}`,
        );
      } else if (!must && got > 0 && !ordered[i]) {
        // (With its replies in order, this was reported above with the reply it came after.)
        violations.push(`batch ${batch}, client ${i}: received #${id} on ${p.tenant}/${p.topic} (published by client ${p.from}${i === p.from ? ' itself' : ''}) though not subscribed to it`);
      }
    }
  }
  const total = clients.reduce((n, c) => n + (plans[c.index].length > 0 ? plans[c.index][plans[c.index].length - 1].after : c.model).subs.size, 0);
  if (hubSubscriptions !== total) violations.push(`batch ${batch}: hub.stats().subscriptions is ${hubSubscriptions}, the clients' subscriptions add up to ${total}`);
}

/** The backplane's presence (after its pending calls) against the hub's subscriptions: see {@link HubOrderOptions.checkPresence}. */
async function checkPresence(batch: number, hub: Hub, backplane: DelayedBackplane, clients: OrderClient[], violations: string[]): Promise<void> {
  while (backplane.pending > 0) await new Promise((resolve) => setTimeout(resolve, 1));
  const subscribed = new Map<string, number>();
  for (const c of clients) for (const s of c.hubClient.subscriptions) subscribed.set(subKeyOf(s.tenant, s.topic), (subscribed.get(subKeyOf(s.tenant, s.topic)) ?? 0) + 1);
  if (backplane.counts.presence !== subscribed.size) violations.push(`batch ${batch}: the backplane holds presence for ${backplane.counts.presence} names, the clients are subscribed to ${subscribed.size}`);
  for (const [key, n] of subscribed) {
    const [tenant, topic] = key.split('\0');
    const snapshot = await hub.presence(topic, tenant);
    if (snapshot.connections !== n) violations.push(`batch ${batch}: presence of ${tenant}/${topic} counts ${snapshot.connections} connections, ${n} are subscribed`);
  }
}
