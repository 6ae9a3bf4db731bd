/**
 * Admission and authentication: the handshake's verdict (origin, token from header, subprotocol, ticket, query or
 * cookie), first-message `auth` within the deadline, the per-user connection limit through the backplane, token
 * expiry, and `refresh`, which also revokes what a new token no longer allows (subscriptions in tenants it
 * dropped end at once).
 *
 * @module
 */
import type { IncomingUpgrade } from '../transport/server.js';
import { extractToken, type Principal, type TicketStore, type TokenExtractOptions, type TokenResolver } from './auth.js';
import type { Backplane } from './backplane.js';
import { type HubClient, HubError, STATE_CLOSED, STATE_OPEN, STATE_PENDING_AUTH } from './client.js';
import type { Delivery } from './delivery.js';
import { HUB_CLOSE_CODES, type HubOptions, type HubRefusal, type ResolvedLimits, type UpgradeRefusal } from './options.js';
import { encodeAck, type RequestId, truncateReason } from './protocol.js';
import type { Registry } from './registry.js';
import type { TimerQueue } from './timers.js';

/** The anonymous verdict (no resolver configured). */
export const ANONYMOUS = Symbol('anonymous');
/** A refused handshake token, by where it came from. */
interface Refused {
  refused: 'token' | 'ticket';
  /** The close reason, when `authenticateUpgrade` gave one. */
  reason?: string;
}
/** What the handshake decided: a principal, a refusal, anonymous, or nothing yet (first-message auth). */
export type UpgradeVerdict = Principal | Refused | typeof ANONYMOUS | undefined;

/** What admission needs of its hub. */
export interface AdmissionHost {
  readonly options: HubOptions;
  readonly limits: ResolvedLimits;
  readonly backplane: Backplane;
  readonly registry: Registry;
  readonly delivery: Delivery;
  readonly timers: TimerQueue;
  readonly tickets: TicketStore;
  readonly counters: { authFailures: number };
  report(error: Error): void;
  refused(refusal: HubRefusal): void;
  closeClient(client: HubClient, code: number, reason: string, killAfter?: number): void;
  connected(client: HubClient, request: IncomingUpgrade | undefined): void;
}

/** Decides who gets in, and keeps it true for each connection's lifetime. */
export class Admission {
  /** Connections waiting for first-message auth. */
  pendingAuth = 0;
  /** Whether the resolver takes the request (then each connection keeps it, for `refresh`). */
  readonly keepRequest: boolean;
  private readonly resolver: TokenResolver | null;
  private readonly tokenOptions: TokenExtractOptions;
  private readonly host: AdmissionHost;

  constructor(host: AdmissionHost, resolver: TokenResolver | null, tokenOptions: TokenExtractOptions, keepRequest: boolean) {
    this.host = host;
    this.resolver = resolver;
    this.tokenOptions = tokenOptions;
    this.keepRequest = keepRequest;
  }

  /** Whether tokens are checked at all (else connections are anonymous). */
  get authenticates(): boolean {
    return this.resolver !== null;
  }

  /** The engine's `authenticate` hook: origin, then the token wherever it was found. */
  async upgrade(request: IncomingUpgrade): Promise<{ principal: UpgradeVerdict } | { reject: true; status: number; message: string }> {
    const origins = this.host.options.origins;
    if (origins !== undefined) {
      const o = request.origin?.toLowerCase();
      if (o === undefined || o === 'null' || !origins.some((allowed) => allowed.toLowerCase() === o)) {
        this.host.refused({ reason: 'origin', request, code: 403 });
        return { reject: true, status: 403, message: 'origin not allowed' };
      }
    }
    const location = this.resolver === null ? null : extractToken(request, this.tokenOptions);
    if (location === null) {
      const hook = this.host.options.authenticateUpgrade;
      if (hook !== undefined) {
        let p: Principal | UpgradeRefusal | null | undefined;
        try {
          p = await hook(request);
        } catch (error) {
          this.host.report(new Error(`authenticateUpgrade threw: ${(error as Error)?.message ?? String(error)}`));
          p = null;
        }
        if (typeof p === 'object' && p !== null && (p as UpgradeRefusal).reject === true) {
          const r = p as UpgradeRefusal;
          const message = typeof r.message === 'string' && r.message.length > 0 ? r.message : undefined;
          if (r.status === undefined) return { principal: { refused: 'token', reason: message === undefined ? undefined : truncateReason(message) } };
          const status = Number.isInteger(r.status) && r.status >= 400 && r.status <= 599 ? r.status : 500;
          return { reject: true, status, message: message ?? 'refused' };
        }
        if (p !== undefined) return { principal: validPrincipal(p) ? p : { refused: 'token' } };
      }
      return { principal: this.resolver === null ? ANONYMOUS : undefined };
    }
    let principal: Principal | null = null;
    try {
      principal = location.source === 'ticket' ? this.host.tickets.redeem(location.token) : await this.resolver!(location.token, request);
    } catch (error) {
      this.host.report(new Error(`the token resolver threw: ${(error as Error)?.message ?? String(error)}`));
      principal = null;
    }
    return { principal: validPrincipal(principal) ? principal : { refused: location.source === 'ticket' ? 'ticket' : 'token' } };
  }

  /** A new connection with the handshake's verdict: refused (4401), admitted, or waiting for first-message auth. */
  start(client: HubClient, verdict: UpgradeVerdict, request: IncomingUpgrade): void {
    const { host } = this;
    if (verdict !== undefined && verdict !== ANONYMOUS && 'refused' in verdict) {
      host.counters.authFailures++;
      client.state = STATE_CLOSED;
      host.refused({ reason: verdict.refused, request, code: 4401, connectionId: client.id });
      host.closeClient(client, 4401, verdict.reason ?? (verdict.refused === 'ticket' ? 'unknown, expired or already used ticket' : 'invalid or expired token'));
      return;
    }
    if (this.keepRequest) client.request = request;
    if (verdict === ANONYMOUS) return this.admit(client, { user: `anonymous:${client.id}` }, request);
    if (verdict !== undefined) return this.admit(client, verdict, request);
    this.pendingAuth++;
    client.pendingCounted = true;
    client.request = request;
    client.deadline = host.timers.schedule(host.limits.authDeadline, () => {
      client.deadline = null;
      if (client.state !== STATE_PENDING_AUTH) return;
      host.counters.authFailures++;
      host.refused({ reason: 'auth_deadline', request: client.request, code: 4401, connectionId: client.id });
      host.closeClient(client, 4401, 'authentication timeout: send {"type":"auth","token":…} first');
    });
  }

  /** The connection leaves the pending count (admitted or closed). */
  settle(client: HubClient): void {
    if (!client.pendingCounted) return;
    client.pendingCounted = false;
    this.pendingAuth--;
  }

  private admit(client: HubClient, principal: Principal, request: IncomingUpgrade | undefined): void {
    const { host } = this;
    this.settle(client);
    if (!this.keepRequest) client.request = undefined;
    host.timers.cancel(client.deadline);
    client.deadline = null;
    client.principal = principal;
    client.state = STATE_OPEN;
    const user = principal.user;
    host.registry.addUser(client, user);
    this.armExpiry(client);
    const registered: Promise<unknown> = host.backplane.registerConnection(user, client.id).then(
      (ids) => {
        if (client.registered === registered) client.registered = null;
        if (ids.length > host.limits.maxConnectionsPerUser) void this.enforceLimit(client, user, ids, request);
      },
      (error: Error) => {
        if (client.registered === registered) client.registered = null;
        host.report(error);
        // Never leave a connection open that the cluster does not count (the per-user limit would not hold).
        if (client.state === STATE_OPEN) host.closeClient(client, HUB_CLOSE_CODES.TRY_AGAIN, 'could not register the connection with the backplane: try again later');
      },
    );
    client.registered = registered;
    host.connected(client, request);
  }

  /**
   * The user has more connections than the limit: closes the oldest beyond it with 4429 — counting only live ones.
   * A ghost (a connection of this hub that is already closed but still registered, or one of a node that does not
   * answer: crashed, awaiting the heartbeat sweep) must never make a live connection close, so those are left out
   * first (this hub's from its registry, other nodes' through {@link Backplane.liveConnections}). When the
   * backplane cannot tell, nothing is closed (the error is reported): the limit waits rather than cut a user off.
   */
  private async enforceLimit(client: HubClient, user: string, all: string[], request: IncomingUpgrade | undefined): Promise<void> {
    const { host } = this;
    const max = host.limits.maxConnectionsPerUser;
    const here = `${host.backplane.nodeId}.`;
    let ids = all.filter((id) => !id.startsWith(here) || id === client.id || host.registry.clients.has(id));
    if (ids.length > max && host.backplane.liveConnections !== undefined) {
      try {
        ids = await host.backplane.liveConnections(user, ids);
      } catch (error) {
        host.report(error as Error);
        return;
      }
    }
    const excess = ids.length - max;
    for (let i = 0; i < excess; i++) {
      if (ids[i] === client.id) continue;
      host.refused({ reason: 'connection_limit', request, code: 4429, connectionId: ids[i], user });
      void host.backplane.disconnect({ connectionId: ids[i] }, 4429, 'too many connections for this user: oldest closed').catch((e: Error) => host.report(e));
    }
  }

  private armExpiry(client: HubClient): void {
    const { timers } = this.host;
    timers.cancel(client.deadline);
    client.deadline = null;
    const expiresAt = client.principal?.expiresAt;
    if (expiresAt === undefined) return;
    client.deadline = timers.schedule(Math.max(0, expiresAt - Date.now()), () => {
      client.deadline = null;
      if (client.state !== STATE_OPEN) return;
      const hook = this.host.options.onExpiry;
      if (hook === undefined) return this.host.closeClient(client, 4401, 'token expired');
      const principal = client.principal;
      void (async () => hook(client))().then(
        (next) => this.extend(client, principal, next),
        (error: unknown) => {
          this.host.report(new Error(`onExpiry threw: ${(error as Error)?.message ?? String(error)}`));
          this.extend(client, principal, null);
        },
      );
    });
  }

  /** After `onExpiry`: a new principal of the same user keeps the connection; anything else closes it (4401). */
  private extend(client: HubClient, was: Principal | null, next: Principal | null): void {
    if (client.state !== STATE_OPEN || client.closeCode !== 0 || client.principal !== was) return; // closed (or closing), or refreshed meanwhile
    if (next === null || !validPrincipal(next) || next.user !== client.user) return this.host.closeClient(client, 4401, 'token expired');
    client.principal = next;
    this.armExpiry(client);
  }

  /** `{"type":"auth","token"}` from a connection whose handshake carried no token. */
  async firstMessageAuth(client: HubClient, token: string, requestId: RequestId | undefined): Promise<void> {
    const request = client.request;
    const principal = await this.resolve(token, request);
    if (client.state !== STATE_PENDING_AUTH) return;
    if (principal === null) {
      this.host.counters.authFailures++;
      this.host.refused({ reason: 'token', request, code: 4401, connectionId: client.id });
      this.host.closeClient(client, 4401, 'invalid or expired token');
      return;
    }
    this.admit(client, principal, request);
    this.host.delivery.reply(client, requestId === undefined ? '{"type":"auth_ok"}' : `{"type":"auth_ok","request_id":${JSON.stringify(requestId)}}`);
  }

  /**
   * A new token for an open connection (same user). It replaces the principal: a later expiry is re-armed, and
   * subscriptions in tenants the new token does not allow end at once (listed in the ack as `revoked`).
   */
  async refresh(client: HubClient, token: string, requestId: RequestId | undefined, kind: 'auth' | 'refresh'): Promise<void> {
    if (this.resolver === null) throw new HubError('invalid_request', 'this hub has no authentication: nothing to refresh');
    const principal = await this.resolve(token, client.request);
    if (client.state !== STATE_OPEN) return;
    if (principal === null) throw new HubError('unauthorized', 'the new token is invalid or expired; the current one stays in force');
    if (principal.user !== client.user) throw new HubError('unauthorized', 'the new token is for another user');
    client.principal = principal;
    this.armExpiry(client);
    const revoked: Array<{ tenant: string; topic: string }> = [];
    const allowed = principal.tenants;
    if (allowed !== undefined && client.subs !== null) {
      for (const sub of [...client.subs]) {
        if (allowed.includes(sub.tenant)) continue;
        this.host.registry.remove(sub);
        revoked.push({ tenant: sub.tenant, topic: sub.topic });
      }
    }
    const delivery = this.host.delivery;
    if (kind === 'auth') delivery.reply(client, requestId === undefined ? '{"type":"auth_ok"}' : `{"type":"auth_ok","request_id":${JSON.stringify(requestId)}}`);
    else delivery.reply(client, encodeAck('native', requestId, { expiresAt: principal.expiresAt ?? null, ...(revoked.length > 0 ? { revoked } : {}) }));
  }

  private async resolve(token: string, request: IncomingUpgrade | undefined): Promise<Principal | null> {
    if (this.resolver === null) return null;
    try {
      const p = await this.resolver(token, request as IncomingUpgrade);
      return validPrincipal(p) ? p : null;
    } catch (error) {
      this.host.report(new Error(`the token resolver threw: ${(error as Error)?.message ?? String(error)}`));
      return null;
    }
  }
}

function validPrincipal(p: unknown): p is Principal {
  if (typeof p !== 'object' || p === null) return false;
  const principal = p as Principal;
  if (typeof principal.user !== 'string' || principal.user.length === 0) return false;
  if (principal.expiresAt !== undefined && !(principal.expiresAt > Date.now())) return false;
  return true;
}
