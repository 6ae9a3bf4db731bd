/**
 * The registry: who is connected (by id and by user), which subscriptions exist (a topic trie per tenant), and
 * this hub's interest in the backplane per (tenant, pattern), reference counted. Adding and removing here is the
 * only way subscriptions come and go, so the counts, tries, interest and presence always agree.
 *
 * @module
 */
import type { Backplane } from './backplane.js';
import { type HubClient, STATE_OPEN, type Subscription } from './client.js';
import { TopicTrie } from './topics.js';

interface Interest {
  count: number;
  /** The backplane subscription while it is being set up (or failed); null once it is live. */
  ready: Promise<void> | null;
}

/** Connections, users, subscriptions and backplane interest of one hub. */
export class Registry {
  readonly clients = new Map<string, HubClient>();
  /** Open clients by user: the client itself while the user has one connection here, a Set from the second on. */
  readonly users = new Map<string, HubClient | Set<HubClient>>();
  private readonly tries = new Map<string, TopicTrie<Subscription>>();
  private readonly interest = new Map<string, Interest>();
  /** Subscriptions of all connections. */
  subscriptions = 0;
  private readonly backplane: Backplane;
  private readonly report: (error: Error) => void;

  constructor(backplane: Backplane, report: (error: Error) => void) {
    this.backplane = backplane;
    this.report = report;
  }

  /** Distinct (tenant, pattern) entries in the tries. */
  get patterns(): number {
    let n = 0;
    for (const trie of this.tries.values()) n += trie.size;
    return n;
  }

  /** Records an authenticated client under its user. */
  addUser(client: HubClient, user: string): void {
    const held = this.users.get(user);
    if (held === undefined) this.users.set(user, client);
    else if (held instanceof Set) held.add(client);
    else this.users.set(user, new Set([held, client]));
  }

  removeUser(client: HubClient, user: string): void {
    const held = this.users.get(user);
    if (held === client) this.users.delete(user);
    else if (held instanceof Set) {
      held.delete(client);
      if (held.size === 1) this.users.set(user, held.values().next().value as HubClient);
    }
  }

  /** The open clients of a user on this hub. */
  ofUser(user: string): HubClient[] {
    const held = this.users.get(user);
    return held === undefined ? [] : held instanceof Set ? [...held] : [held];
  }

  /** Every open client (allowed to use `tenant`, when given). */
  *open(tenant?: string): IterableIterator<HubClient> {
    for (const client of this.clients.values()) {
      if (client.state !== STATE_OPEN) continue;
      const allowed = client.principal?.tenants;
      if (tenant !== undefined && allowed !== undefined && !allowed.includes(tenant)) continue;
      yield client;
    }
  }

  /**
   * Adds a subscription (in set-up: its buffer is not null) to its client, the tenant's trie and the interest
   * count. Resolves once the backplane delivers the pattern to this hub.
   */
  add(sub: Subscription): Promise<void> {
    (sub.client.subs ??= []).push(sub);
    this.subscriptions++;
    let trie = this.tries.get(sub.tenant);
    if (trie === undefined) {
      trie = new TopicTrie();
      this.tries.set(sub.tenant, trie);
    }
    trie.add(sub.topic, sub);
    let interest = this.interest.get(sub.key);
    if (interest === undefined) {
      const created: Interest = { count: 0, ready: null };
      created.ready = this.backplane.subscribe(sub.tenant, sub.topic).then(() => {
        created.ready = null;
      });
      interest = created;
      this.interest.set(sub.key, interest);
    }
    interest.count++;
    return interest.ready ?? Promise.resolve();
  }

  /** Removes a subscription (idempotent); the last one of a pattern withdraws the interest; a live one leaves presence. */
  remove(sub: Subscription): void {
    if (sub.cancelled) return;
    sub.cancelled = true;
    const client = sub.client;
    const subs = client.subs;
    if (subs !== null) {
      const i = subs.indexOf(sub);
      if (i !== -1) subs.splice(i, 1);
      if (subs.length === 0) client.subs = null;
    }
    this.subscriptions--;
    const trie = this.tries.get(sub.tenant);
    if (trie !== undefined) {
      trie.delete(sub.topic, sub);
      if (trie.size === 0) this.tries.delete(sub.tenant);
    }
    const interest = this.interest.get(sub.key);
    if (interest !== undefined && --interest.count === 0) {
      this.interest.delete(sub.key);
      const { tenant, topic } = sub;
      void (interest.ready ?? Promise.resolve()).then(() => this.backplane.unsubscribe(tenant, topic)).catch(this.report);
    }
    if (sub.buffer === null) {
      const { tenant, topic } = sub;
      this.presenceCall(client, () => this.backplane.presenceLeave(tenant, topic, client.user, client.id));
    }
  }

  /**
   * Runs a presence call of a connection after its earlier ones have settled: a leave that overtook its join (or a
   * join the leave before it) would leave the backplane's presence wrong.
   */
  presenceCall(client: HubClient, call: () => Promise<void>): void {
    const run = (client.presence ?? Promise.resolve()).then(call).catch(this.report);
    client.presence = run;
    void run.then(() => {
      if (client.presence === run) client.presence = null;
    });
  }

  /**
   * Open, authenticated connections by tenant they may use (a principal with a `tenants` list counts under each;
   * one without it, which may use any tenant, under `*`), at most `max` tenants (the largest; the rest summed
   * under `other`). Walks the connections: for metrics scrapes, not hot paths.
   */
  connectionsByTenant(max = 50): Record<string, number> {
    const counts = new Map<string, number>();
    for (const client of this.open()) {
      const tenants = client.principal?.tenants;
      if (tenants === undefined) counts.set('*', (counts.get('*') ?? 0) + 1);
      else for (const t of tenants) counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    const sorted = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const out: Record<string, number> = Object.create(null) as Record<string, number>;
    for (const [tenant, n] of sorted.slice(0, max)) out[tenant] = n;
    if (sorted.length > max) out.other = sorted.slice(max).reduce((sum, [, n]) => sum + n, 0);
    return out;
  }

  /** Appends the subscription sets whose pattern matches `topic` in `tenant` (live sets: use them at once). */
  match(tenant: string, topic: string, out: Array<ReadonlySet<Subscription>>): void {
    this.tries.get(tenant)?.collect(topic, out);
  }

  /** The subscriptions to exactly `topic` (the same spelling) in `tenant`. */
  exact(tenant: string, topic: string): ReadonlySet<Subscription> | undefined {
    return this.tries.get(tenant)?.get(topic);
  }
}

/** A client's subscription to `topic` (as spelled when subscribing) in `tenant`. */
export function findSub(client: HubClient, tenant: string, topic: string): Subscription | undefined {
  const subs = client.subs;
  if (subs === null) return undefined;
  for (let i = 0; i < subs.length; i++) if (subs[i].topic === topic && subs[i].tenant === tenant) return subs[i];
  return undefined;
}

/** The key of a (tenant, topic) pair. */
export function subKey(tenant: string, topic: string): string {
  return `${tenant}\0${topic}`;
}
