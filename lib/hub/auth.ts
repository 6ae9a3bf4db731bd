/**
 * Finding the credential in a WebSocket upgrade request, one-time tickets, and cookie parsing.
 *
 * Browsers cannot set headers on `new WebSocket(…)`, so a token travels in one of five places; the hub looks in
 * them in a configurable order and hands the first one found to its resolver:
 * - `header`: `Authorization: Bearer <token>` (scheme in any case, RFC 6750 §2.1) — server-side clients (seed 000);
 * - `subprotocol`: `Sec-WebSocket-Protocol: bearer, <token>` (seed 001) or `llps.v1, at.<token>` (seed 000). The
 *   server must echo a real protocol name (`bearer` / `llps.v1`), never the token: {@link TokenLocation.protocol};
 * - `ticket`: `?ticket=<one-time ticket>` issued by the application through a {@link TicketStore} (seed 003);
 * - `query`: `?token=<token>` (seeds 001, 002, 003). Tokens in URLs end up in access logs: prefer the others;
 * - `cookie`: a cookie, `token` by default (seed 003, same-origin pages).
 *
 * The default order, {@link DEFAULT_TOKEN_ORDER}, is what the seeds state: header first, then subprotocol (which
 * "wins over" the query string), then the ticket, the query token and the cookie.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import type { IncomingUpgrade } from '../transport/server.js';

/** Who a connection belongs to, as a resolver returns it. */
export interface Principal {
  /** The user id (with the JWT resolver: `sub`). Every socket of a user shares it. */
  user: string;
  /** Tenants this principal may use; absent: any tenant. */
  tenants?: readonly string[];
  /** When the credential expires, in milliseconds since the epoch; absent: never. */
  expiresAt?: number;
  /** The verified claims, for authorization hooks. */
  claims?: Record<string, unknown>;
}

/** Turns a token into a principal, or `null` to refuse it. May be async. Must not log the token. */
export type TokenResolver = (token: string, request: IncomingUpgrade) => Principal | null | Promise<Principal | null>;

/** Where a token can be found in an upgrade request. */
export type TokenSource = 'header' | 'subprotocol' | 'ticket' | 'query' | 'cookie';

/** The order the seeds state: header, subprotocol, ticket, query, cookie. */
export const DEFAULT_TOKEN_ORDER: readonly TokenSource[] = Object.freeze(['header', 'subprotocol', 'ticket', 'query', 'cookie'] as const);

/** The subprotocol names the hub knows and may echo, in no particular order. */
export const HUB_SUBPROTOCOLS: readonly string[] = Object.freeze(['llps.v1', 'bearer']);

/** A token found in a request. */
export interface TokenLocation {
  /** The token (for `ticket`: the ticket, still to be redeemed with {@link TicketStore.redeem}). Never log it. */
  token: string;
  /** Where it was found. */
  source: TokenSource;
  /** For `subprotocol`: the protocol name to echo in the 101 (`bearer` or `llps.v1`), never the token. */
  protocol?: string;
}

/** Options of {@link extractToken}. */
export interface TokenExtractOptions {
  /** Sources to look in, first match wins; sources not listed are ignored. Default: {@link DEFAULT_TOKEN_ORDER}. */
  order?: readonly TokenSource[];
  /** Query parameter holding a token. Default: `token`. */
  queryParam?: string;
  /** Query parameter holding a one-time ticket. Default: `ticket`. */
  ticketParam?: string;
  /** Cookie holding a token. Default: `token`. */
  cookieName?: string;
}

const SOURCES: ReadonlySet<string> = new Set<TokenSource>(DEFAULT_TOKEN_ORDER);

/** The part of an upgrade request the extraction reads. */
export type TokenRequest = Pick<IncomingUpgrade, 'header' | 'query' | 'protocols'>;

interface ResolvedExtractOptions {
  order: readonly TokenSource[];
  queryParam: string;
  ticketParam: string;
  cookieName: string;
}

function checkName(value: unknown, name: string, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(`${name} must be a non-empty string`);
  return value;
}

/**
 * Checks {@link TokenExtractOptions} once (a hub does this when it is created) and fills in the defaults.
 * Throws a `TypeError` naming the bad option.
 */
export function resolveTokenOptions(options: TokenExtractOptions = {}): Readonly<ResolvedExtractOptions> {
  if (typeof options !== 'object' || options === null) throw new TypeError('token options must be an object');
  let order = DEFAULT_TOKEN_ORDER;
  if (options.order !== undefined) {
    if (!Array.isArray(options.order)) throw new TypeError(`order must be an array of ${[...SOURCES].join(' | ')}`);
    const seen = new Set<string>();
    for (const source of options.order) {
      if (typeof source !== 'string' || !SOURCES.has(source)) {
        throw new TypeError(`unknown token source ${JSON.stringify(source)}; use ${[...SOURCES].join(', ')}`);
      }
      if (seen.has(source)) throw new TypeError(`token source ${source} is listed twice`);
      seen.add(source);
    }
    order = Object.freeze([...options.order]);
  }
  return Object.freeze({
    order,
    queryParam: checkName(options.queryParam, 'queryParam', 'token'),
    ticketParam: checkName(options.ticketParam, 'ticketParam', 'ticket'),
    cookieName: checkName(options.cookieName, 'cookieName', 'token'),
  });
}

const BEARER = /^bearer[ \t]+(.*)$/is;

/** The token of an `Authorization: Bearer …` value, or undefined for another scheme or an empty token. */
function fromHeader(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const match = BEARER.exec(value.trim());
  const token = match?.[1].trim();
  return token ? token : undefined;
}

/** A token carried in the offered subprotocols, and the protocol to echo. */
function fromSubprotocols(offered: readonly string[] | undefined): TokenLocation | undefined {
  if (!offered || offered.length === 0) return undefined;
  const bearer = offered.indexOf('bearer');
  if (bearer !== -1 && bearer + 1 < offered.length && offered[bearer + 1].length > 0) {
    return { token: offered[bearer + 1], source: 'subprotocol', protocol: 'bearer' };
  }
  if (offered.includes('llps.v1')) {
    const carrier = offered.find((name) => name.length > 3 && name.startsWith('at.'));
    if (carrier !== undefined) return { token: carrier.slice(3), source: 'subprotocol', protocol: 'llps.v1' };
  }
  return undefined;
}

function nonEmpty(value: string | null | undefined): string | undefined {
  return value ? value : undefined;
}

/**
 * Finds the token of an upgrade request: the first source in `order` that carries a non-empty one. An
 * `Authorization` header with another scheme (e.g. `Basic` for a proxy) does not count as a token. A ticket is
 * returned as found; redeem it with {@link TicketStore.redeem}.
 *
 * Subprotocol forms: `['bearer', token, …]` (the entry right after `bearer`) → protocol `bearer`;
 * `['llps.v1', 'at.' + token]` (both offered, in any order) → protocol `llps.v1`.
 *
 * @returns where the token was found, or `null` when there is none (the hub then waits for a first-message `auth`).
 */
export function extractToken(request: TokenRequest, options?: TokenExtractOptions): TokenLocation | null {
  const resolved = resolveTokenOptions(options);
  for (const source of resolved.order) {
    let token: string | undefined;
    switch (source) {
      case 'header':
        token = fromHeader(request.header('authorization'));
        break;
      case 'subprotocol': {
        const found = fromSubprotocols(request.protocols);
        if (found) return found;
        break;
      }
      case 'ticket':
        token = nonEmpty(request.query.get(resolved.ticketParam));
        break;
      case 'query':
        token = nonEmpty(request.query.get(resolved.queryParam));
        break;
      case 'cookie':
        token = nonEmpty(parseCookies(request.header('cookie'))[resolved.cookieName]);
        break;
    }
    if (token !== undefined) return { token, source };
  }
  return null;
}

/**
 * The subprotocol to echo in the 101 response: the first offered name that is in `supported` and is not a token
 * carrier (the entry after `bearer`, or an `at.` entry). Never returns a token, so a browser never sees its token
 * echoed (and never fails the connection for it).
 *
 * @param offered - the client's subprotocols, in its order.
 * @param supported - names the server speaks. Default: {@link HUB_SUBPROTOCOLS} (`llps.v1`, `bearer`).
 * @returns the name to echo, or undefined to echo none.
 */
export function selectHubProtocol(offered: readonly string[], supported: readonly string[] = HUB_SUBPROTOCOLS): string | undefined {
  if (!Array.isArray(offered)) throw new TypeError('offered must be an array of subprotocol names');
  const bearer = offered.indexOf('bearer');
  for (let i = 0; i < offered.length; i++) {
    const name = offered[i];
    if (bearer !== -1 && i === bearer + 1) continue;
    if (name.startsWith('at.')) continue;
    if (supported.includes(name)) return name;
  }
  return undefined;
}

/** Defaults of {@link TicketStore}. */
export const TICKET_DEFAULTS = Object.freeze({
  /** How long a ticket is valid, in milliseconds: 60,000 (seed 003: "short-lived (60s)"). */
  ttl: 60_000,
  /** Most tickets outstanding at once: 10,000. */
  max: 10_000,
});

/** Options of {@link TicketStore}. */
export interface TicketStoreOptions {
  /** Validity of a ticket, in milliseconds. Default: 60,000. */
  ttl?: number;
  /**
   * Most unredeemed tickets held. Default: 10,000. When full, expired tickets are swept; if none expired, the
   * oldest outstanding ticket is dropped to make room (a flood of issuance cannot block new tickets, and honest
   * tickets are redeemed within seconds). Rate-limit the endpoint that issues tickets.
   */
  max?: number;
  /** The clock, in milliseconds. Default: `Date.now`. For tests. */
  now?: () => number;
}

interface TicketEntry {
  principal: Principal;
  expires: number;
}

const TICKET_BYTES = 32;
/** Length of a ticket: 32 random bytes in unpadded base64url. */
const TICKET_LENGTH = 43;

function checkPositive(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a finite number > 0`);
  return value;
}

/**
 * One-time tickets for `?ticket=` (seed 003): the application authenticates a REST call, issues a ticket for the
 * principal, the browser connects with it, and the hub redeems it — once.
 *
 * Tickets are 32 bytes from `crypto.randomBytes` in base64url (43 characters), single use, valid for `ttl`
 * milliseconds. The store holds no timer at all: expired tickets are swept lazily (from the oldest end on every
 * `issue` and `redeem`, fully when the store is full or `size` is read), so an idle store costs nothing and never
 * keeps the process alive. This store lives in one process; with several hubs, keep tickets in a shared store.
 */
export class TicketStore {
  private readonly tickets = new Map<string, TicketEntry>();
  private readonly ttl: number;
  private readonly max: number;
  private readonly now: () => number;
  private closed = false;

  constructor(options: TicketStoreOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new TypeError('TicketStore options must be an object');
    this.ttl = checkPositive(options.ttl, 'ttl', TICKET_DEFAULTS.ttl);
    const max = checkPositive(options.max, 'max', TICKET_DEFAULTS.max);
    if (!Number.isInteger(max)) throw new RangeError('max must be an integer > 0');
    this.max = max;
    if (options.now !== undefined && typeof options.now !== 'function') throw new TypeError('now must be a function returning milliseconds');
    this.now = options.now ?? Date.now;
  }

  /**
   * Issues a ticket for a principal.
   *
   * @param ttl - validity in milliseconds. Default: the store's `ttl`.
   * @returns the ticket, 43 base64url characters, to put in `?ticket=`.
   */
  issue(principal: Principal, ttl?: number): string {
    if (this.closed) throw new Error('TicketStore is closed');
    if (typeof principal !== 'object' || principal === null || typeof principal.user !== 'string' || principal.user.length === 0) {
      throw new TypeError('issue needs a principal with a non-empty user string');
    }
    const lifetime = checkPositive(ttl, 'ttl', this.ttl);
    const now = this.now();
    this.sweepOldest(now);
    if (this.tickets.size >= this.max) {
      this.sweepAll(now);
      if (this.tickets.size >= this.max) this.tickets.delete(this.tickets.keys().next().value!);
    }
    const ticket = randomBytes(TICKET_BYTES).toString('base64url');
    this.tickets.set(ticket, { principal, expires: now + lifetime });
    return ticket;
  }

  /**
   * Redeems a ticket: its principal the first time, within its validity; `null` afterwards, after expiry, for an
   * unknown ticket or any non-string input. Never throws.
   */
  redeem(ticket: string): Principal | null {
    if (typeof ticket !== 'string' || ticket.length !== TICKET_LENGTH) return null;
    const entry = this.tickets.get(ticket);
    if (entry === undefined) return null;
    this.tickets.delete(ticket);
    const now = this.now();
    this.sweepOldest(now);
    return now < entry.expires ? entry.principal : null;
  }

  /** Tickets outstanding and not expired (sweeps expired ones first: O(n), n ≤ `max`). */
  get size(): number {
    this.sweepAll(this.now());
    return this.tickets.size;
  }

  /** Forgets every ticket; `issue` then throws and `redeem` returns null. Idempotent. */
  close(): void {
    this.closed = true;
    this.tickets.clear();
  }

  /** Drops expired tickets from the oldest end, stopping at the first live one: amortized O(1). */
  private sweepOldest(now: number): void {
    for (const [ticket, entry] of this.tickets) {
      if (now < entry.expires) return;
      this.tickets.delete(ticket);
    }
  }

  private sweepAll(now: number): void {
    for (const [ticket, entry] of this.tickets) {
      if (now >= entry.expires) this.tickets.delete(ticket);
    }
  }
}

/**
 * Parses a `Cookie` header into an object without a prototype (`Object.create(null)`), so a cookie named
 * `constructor` or `toString` is just a cookie. Tolerant: pairs without `=` or with an empty name are skipped,
 * surrounding double quotes are removed, `%XX` sequences are decoded when valid (kept as sent otherwise), the first
 * occurrence of a name wins (RFC 6265 §5.4 sends the most specific first). A cookie named `__proto__` is ignored.
 *
 * @returns name → value; empty for a missing header.
 */
export function parseCookies(header: string | undefined): Record<string, string> {
  const cookies: Record<string, string> = Object.create(null);
  if (typeof header !== 'string' || header.length === 0) return cookies;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq === -1) continue;
    const name = pair.slice(0, eq).trim();
    if (name.length === 0 || name === '__proto__' || Object.hasOwn(cookies, name)) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (value.includes('%')) {
      try {
        value = decodeURIComponent(value);
      } catch {
        // Malformed escapes: keep the value as sent.
      }
    }
    cookies[name] = value;
  }
  return cookies;
}
