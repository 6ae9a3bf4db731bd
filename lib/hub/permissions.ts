/**
 * Channel permissions: who may `subscribe` to, `publish` to, read the `history` of and ask the `presence` of which
 * topics, as rules per topic pattern. Checked for clients' requests only: the application (`hub.publish`,
 * `hub.subscribe`, `hub.history`) and the service's HTTP API act as the server.
 *
 * A rule's `pattern` uses the subscription syntax (`*`, `#`) plus the placeholder segment `{sub}`, which stands for
 * the token's subject (the user): `user.{sub}.#` is every user's private space. Who may do an action:
 *
 * - `signed-in`: any authenticated client (anonymous clients too, when the hub has no authentication);
 * - `owner`: only when the topic is the user's own under the rule's `{sub}` (`user.alice.inbox` for alice);
 * - `granted`: only when the token grants the topic — a pattern in its `topics` (or `channels`) claim that covers
 *   it — or, for `subscribe`, `history` and `presence` of one exact topic, a subscription token for it;
 * - `server`: no client (the application and the HTTP API only);
 * - `nobody`: no client, and the service's HTTP API is refused too (403); {@link Permissions.serverMay} says so
 *   (the library's own `hub.publish`/`hub.history` stay the application's to use).
 *
 * Rules are tried in order; for an exact topic, the first rule whose pattern matches it decides; topics no rule
 * matches use `defaults`. A wildcard request (`subscribe` to `#`) can reach the topics of several rules:
 *
 * - allowed for all of them: allowed;
 * - allowed for none: refused;
 * - allowed for some (`#` while `user.{sub}.#` is owner-only): a wildcard **subscription** is accepted and
 *   *filtered* — each message (live, replayed or a gap report) reaches it only when its topic would be allowed
 *   as an exact subscription (so `#` gets everything but other users' private topics); a wildcard `presence`
 *   request is refused.
 *
 * @module
 */
import { createJwtVerifier, type JwtVerifyOptions } from './jwt.js';
import { isPattern } from './topics.js';

/** Who may do an action (see the module documentation). */
export type Who = 'signed-in' | 'owner' | 'granted' | 'server' | 'nobody';

/** The actions a rule controls. */
export type Action = 'subscribe' | 'publish' | 'history' | 'presence';

const WHO: readonly Who[] = ['signed-in', 'owner', 'granted', 'server', 'nobody'];
const ACTIONS: readonly Action[] = ['subscribe', 'publish', 'history', 'presence'];

/** One rule: a topic pattern (with `{sub}`), optionally one tenant, and who may do each action (unset: `defaults`). */
export interface TopicRule extends Partial<Record<Action, Who>> {
  /** Topic pattern: segments, `*`, `#`, and `{sub}` for the token's subject. */
  pattern: string;
  /** Only in this tenant. Default: every tenant. */
  tenant?: string;
}

/** Options of the permission rules ({@link HubOptions.permissions}). */
export interface PermissionOptions {
  /** The rules, tried in order. Default: none. */
  rules?: readonly TopicRule[];
  /** Who may do what on topics no rule matches. Default: {@link PERMISSION_DEFAULTS}. */
  defaults?: Partial<Record<Action, Who>>;
  /** Claims whose value (an array of topic patterns) grants topics for `granted`. Default: `['topics', 'channels']`. */
  claims?: readonly string[];
  /**
   * Verifies a subscription token (the `token` of a `subscribe` or `history` request): resolves with the user and
   * the one exact topic it grants, or null to refuse. Default with the hub's `jwt` option: a JWT signed like the
   * connection tokens, whose `sub` is the user and whose `topic` (or `channel`) claim is the topic; without `jwt`
   * and without this function, subscription tokens are refused.
   */
  verifySubscriptionToken?: (token: string) => { user: string; topic: string } | null | Promise<{ user: string; topic: string } | null>;
}

/**
 * Defaults of {@link PermissionOptions.defaults} for a hub given `permissions` without `defaults`: signed-in
 * clients may subscribe, read history and presence; publishing is the server's. (A hub given no `permissions` at
 * all keeps the library's historical behaviour: every action open to signed-in clients, subject to
 * `clientPublish` and the `authorize` hooks.)
 */
export const PERMISSION_DEFAULTS: Readonly<Record<Action, Who>> = { subscribe: 'signed-in', publish: 'server', history: 'signed-in', presence: 'signed-in' };

/** Who is asking: the user and the token's claims. */
export interface Asker {
  user: string;
  claims?: Record<string, unknown> | undefined;
}

interface CompiledRule {
  /** Segments; `{sub}` kept as a marker. */
  segments: string[];
  tenant: string | undefined;
  owner: boolean;
  who: Record<Action, Who>;
  source: string;
}

/** Compiled permission rules. */
export class Permissions {
  private readonly rules: CompiledRule[];
  private readonly defaults: Record<Action, Who>;
  private readonly claims: readonly string[];

  /** Validates and compiles; TypeError/RangeError naming the rule and field at fault. */
  constructor(options: PermissionOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('permissions must be { rules?, defaults?, claims? }');
    for (const key of Object.keys(options)) if (!['rules', 'defaults', 'claims', 'verifySubscriptionToken'].includes(key)) throw new TypeError(`permissions.${key} is not an option (rules, defaults, claims, verifySubscriptionToken)`);
    if (options.verifySubscriptionToken !== undefined && typeof options.verifySubscriptionToken !== 'function') throw new TypeError('permissions.verifySubscriptionToken must be a function (token) => { user, topic } | null');
    this.defaults = { ...PERMISSION_DEFAULTS, ...checkWho(options.defaults ?? {}, 'permissions.defaults') };
    const claims = options.claims ?? ['topics', 'channels'];
    if (!Array.isArray(claims) || !claims.every((c) => typeof c === 'string' && c.length > 0)) throw new TypeError('permissions.claims must be an array of claim names');
    this.claims = claims;
    const rules = options.rules ?? [];
    if (!Array.isArray(rules)) throw new TypeError('permissions.rules must be an array of { pattern, subscribe?, publish?, history?, presence?, tenant? }');
    this.rules = rules.map((rule, i) => this.compile(rule, `permissions.rules[${i}]`));
  }

  private compile(rule: TopicRule, where: string): CompiledRule {
    if (typeof rule !== 'object' || rule === null) throw new TypeError(`${where} must be an object { pattern, subscribe?, publish?, history?, presence?, tenant? }`);
    const { pattern, tenant, ...actions } = rule;
    if (typeof pattern !== 'string' || pattern.length === 0 || pattern.length > 256) throw new TypeError(`${where}.pattern must be a topic pattern (a non-empty string of at most 256 characters)`);
    const segments = pattern.split('.');
    for (const s of segments) {
      if (s.length === 0) throw new RangeError(`${where}.pattern ${JSON.stringify(pattern)} has an empty segment`);
      if (s !== '{sub}' && (s.includes('{') || s.includes('}'))) throw new RangeError(`${where}.pattern: the only placeholder is a whole segment {sub}, got ${JSON.stringify(s)}`);
      if (/[\s]/.test(s) || ((s.includes('*') || s.includes('#')) && s.length > 1)) throw new RangeError(`${where}.pattern: "*" and "#" must be whole segments, and no whitespace`);
    }
    if (tenant !== undefined && (typeof tenant !== 'string' || tenant.length === 0)) throw new TypeError(`${where}.tenant must be a non-empty string`);
    const who = checkWho(actions, where);
    const owner = segments.includes('{sub}');
    for (const action of ACTIONS) if (who[action] === 'owner' && !owner) throw new RangeError(`${where}.${action} is "owner" but the pattern has no {sub} segment to name the owner`);
    return { segments, tenant, owner, who: { ...this.defaults, ...who }, source: pattern };
  }

  /**
   * Whether a client may do `action` on `topic` (an exact topic, or a pattern for `subscribe`/`presence`) in
   * `tenant`. `grant` is a verified subscription token's topic, when the request carried one. Returns null when
   * allowed, else why not.
   */
  check(action: Action, asker: Asker, tenant: string, topic: string, grant?: string): string | null {
    const v = this.verdict(action, asker, tenant, topic, grant);
    return v.verdict === 'allow' ? null : v.verdict === 'filter' ? `not allowed to ${action} every topic of ${topic} (${v.reason})` : v.reason;
  }

  /**
   * The decision on a request: `allow`; `deny` with the reason (naming the rule); or, for a wildcard reaching
   * topics some of which are allowed and some not, `filter` (see the module documentation).
   */
  verdict(action: Action, asker: Asker, tenant: string, topic: string, grant?: string): { verdict: 'allow' | 'filter' | 'deny'; reason: string } {
    const request = topic.split('.');
    const wildcard = isPattern(topic);
    let allowedSome = false;
    let denied: string | null = null;
    for (const rule of this.rules) {
      if (rule.tenant !== undefined && rule.tenant !== tenant) continue;
      const generic = rule.owner ? rule.segments.map((s) => (s === '{sub}' ? '*' : s)) : rule.segments;
      if (!overlaps(generic, request)) continue;
      const allowed = this.allows(rule.who[action], rule, asker, request, topic, grant);
      const why = `not allowed to ${action} ${topic} (rule ${JSON.stringify(rule.source)}: ${rule.who[action]})`;
      if (!wildcard) return allowed ? { verdict: 'allow', reason: '' } : { verdict: 'deny', reason: why };
      if (allowed) allowedSome = true;
      else denied ??= why;
      if (covers(generic, request)) return mixed(allowedSome, denied);
    }
    const who = this.defaults[action];
    if (this.allows(who, null, asker, request, topic, grant)) allowedSome = true;
    else denied ??= `not allowed to ${action} ${topic} (${wildcard ? 'topics of no rule: ' : ''}default: ${who})`;
    return mixed(allowedSome, denied);
  }

  /**
   * Whether the server side (the service's HTTP API) may do `action` on an exact topic or pattern: yes unless a rule
   * it reaches (or, for topics no rule covers, the default) says `nobody`. Returns null when allowed, else why not.
   */
  serverMay(action: Action, tenant: string, topic: string): string | null {
    const request = topic.split('.');
    for (const rule of this.rules) {
      if (rule.tenant !== undefined && rule.tenant !== tenant) continue;
      const generic = rule.owner ? rule.segments.map((s) => (s === '{sub}' ? '*' : s)) : rule.segments;
      if (!overlaps(generic, request)) continue;
      if (rule.who[action] === 'nobody') return `nobody may ${action} ${topic} (rule ${JSON.stringify(rule.source)})`;
      if (covers(generic, request)) return null;
    }
    return this.defaults[action] === 'nobody' ? `nobody may ${action} ${topic} (default)` : null;
  }

  private allows(who: Who, rule: CompiledRule | null, asker: Asker, request: string[], topic: string, grant: string | undefined): boolean {
    switch (who) {
      case 'signed-in':
        return true;
      case 'owner': {
        if (rule === null || !ownerSafe(asker.user)) return false;
        return covers(rule.segments.map((s) => (s === '{sub}' ? asker.user : s)), request);
      }
      case 'granted':
        if (grant !== undefined && grant === topic) return true;
        for (const name of this.claims) {
          const value = asker.claims?.[name];
          if (!Array.isArray(value)) continue;
          for (const p of value) if (typeof p === 'string' && p.length > 0 && covers(p.split('.'), request)) return true;
        }
        return false;
      default:
        return false;
    }
  }
}

function mixed(allowedSome: boolean, denied: string | null): { verdict: 'allow' | 'filter' | 'deny'; reason: string } {
  if (denied === null) return { verdict: 'allow', reason: '' };
  return { verdict: allowedSome ? 'filter' : 'deny', reason: denied };
}

/** A user id usable as a `{sub}` segment: one plain segment. */
function ownerSafe(user: string): boolean {
  return user.length > 0 && !user.includes('.') && user !== '*' && user !== '#';
}

function checkWho(actions: Record<string, unknown>, where: string): Partial<Record<Action, Who>> {
  if (typeof actions !== 'object' || actions === null) throw new TypeError(`${where} must be an object`);
  const out: Partial<Record<Action, Who>> = {};
  for (const [key, value] of Object.entries(actions)) {
    if (!(ACTIONS as readonly string[]).includes(key)) throw new TypeError(`${where}.${key} is not an action (subscribe, publish, history, presence; or pattern, tenant)`);
    if (!(WHO as readonly string[]).includes(value as string)) throw new RangeError(`${where}.${key} must be one of ${WHO.join(', ')}, got ${JSON.stringify(value)}`);
    out[key as Action] = value as Who;
  }
  return out;
}

/** Whether pattern `a` matches every topic pattern `b` matches (`#` zero or more segments, `*` one). */
export function covers(a: readonly string[], b: readonly string[]): boolean {
  return walk(a, b, (i, j, go) => {
    if (i < a.length && a[i] === '#') return go(i + 1, j) || (j < b.length && go(i, j + 1));
    if (j === b.length) return i === a.length;
    if (i === a.length || b[j] === '#') return false;
    if (b[j] === '*') return a[i] === '*' && go(i + 1, j + 1);
    return (a[i] === '*' || a[i] === b[j]) && go(i + 1, j + 1);
  });
}

/** Whether some topic matches both patterns. */
export function overlaps(a: readonly string[], b: readonly string[]): boolean {
  return walk(a, b, (i, j, go) => {
    if (i < a.length && a[i] === '#') return go(i + 1, j) || (j < b.length && go(i, j + 1));
    if (j < b.length && b[j] === '#') return go(i, j + 1) || (i < a.length && go(i + 1, j));
    if (i === a.length || j === b.length) return i === a.length && j === b.length;
    return (a[i] === '*' || b[j] === '*' || a[i] === b[j]) && go(i + 1, j + 1);
  });
}

/** A walk over two segment lists from (0, 0), each (i, j) decided once (memoized: `#` would make it exponential). */
function walk(a: readonly string[], b: readonly string[], step: (i: number, j: number, go: (i: number, j: number) => boolean) => boolean): boolean {
  const memo = new Map<number, boolean>();
  const go = (i: number, j: number): boolean => {
    const key = i * (b.length + 1) + j;
    let r = memo.get(key);
    if (r === undefined) {
      r = step(i, j, go);
      memo.set(key, r);
    }
    return r;
  };
  return go(0, 0);
}

/** Subscription tokens as JWTs signed like the connection tokens: `sub` the user, `topic` (or `channel`) the topic. */
export function subscriptionTokenVerifier(options: JwtVerifyOptions): (token: string) => { user: string; topic: string } | null {
  const verify = createJwtVerifier(options);
  return (token) => {
    let payload: Record<string, unknown>;
    try {
      payload = verify(token) as Record<string, unknown>;
    } catch {
      return null; // a bad signature, an expired token, a wrong algorithm: refused like any other
    }
    const topic = payload.topic ?? payload.channel;
    return typeof payload.sub === 'string' && typeof topic === 'string' ? { user: payload.sub, topic } : null;
  };
}

