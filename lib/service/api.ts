/**
 * The service's HTTP API (`/api/*`, authenticated by the caller with the API key) and its Prometheus metrics.
 *
 * Every answer is JSON. Errors are `{"error": {"code", "message"}}` with status 400 (bad input, named field), 401
 * (key), 404 (unknown route, or a user with no open socket), 405 (method), 413 (body over `--max-body-size`), 415
 * (not JSON), 503 (with `--redis` / `--nats`: the broker refused or did not answer; nothing was done, retry).
 *
 * @module
 */
import type { ServiceConfig } from './config.js';
import { HttpError, intField, readJsonObject, sendJson, stringField, type ServiceRequest, type ServiceResponse } from './http.js';
import type { Logger } from './log.js';
import { renderMetrics } from './metrics.js';
import type { ServiceHub } from './hub-adapter.js';

/** Longest ticket lifetime the API issues, in milliseconds: 10 minutes. */
export const MAX_TICKET_TTL = 600_000;
/** Default ticket lifetime, in milliseconds: 60 s (seed 003: "short-lived (60s)"). */
export const DEFAULT_TICKET_TTL = 60_000;
/** Longest tenant, topic, user and type names the API accepts, in characters. The hub applies its own topic rules. */
const MAX_NAME = 256;

/** The API's request handler and metrics renderer. */
export interface Api {
  /** Answers a request under `/api/` (the key is already checked). */
  handle(req: ServiceRequest, res: ServiceResponse, method: string, path: string, query: URLSearchParams): Promise<void>;
  /** `GET /metrics` body. */
  metricsText(): string;
}

type Route = (req: ServiceRequest, query: URLSearchParams) => Promise<unknown>;

/** Builds the API on a hub. */
export function createApi(hub: ServiceHub, config: ServiceConfig, log: Logger): Api {
  const body = (req: ServiceRequest): Promise<Record<string, unknown>> => readJsonObject(req, config.maxBodySize);
  const message = (b: Record<string, unknown>): { type: string; data: unknown } => {
    const type = stringField(b, 'type', true, MAX_NAME);
    if (!('data' in b)) throw new HttpError(400, 'bad_request', '"data" is required (any JSON value; use {} for none)');
    return { type, data: b.data };
  };

  const routes: Record<string, Record<string, Route>> = {
    '/api/publish': {
      POST: async (req) => {
        const b = await body(req);
        const tenant = stringField(b, 'tenant', false, MAX_NAME);
        const topic = stringField(b, 'topic', true, MAX_NAME);
        const { type, data } = message(b);
        forbidden(hub.serverMay('publish', tenant, topic));
        const published = await hub.publish({ tenant, topic, type, data });
        return { topic, tenant: published.tenant, seq: published.seq, epoch: published.epoch, ts: published.ts };
      },
    },
    '/api/send': {
      POST: async (req) => {
        const b = await body(req);
        const user = stringField(b, 'user', true, MAX_NAME);
        const { type, data } = message(b);
        const sockets = await hub.sendToUser(user, { type, data });
        if (sockets === 0 && !hub.clustered) throw new HttpError(404, 'not_found', `user ${JSON.stringify(user)} has no open connection`);
        return { user, sockets };
      },
    },
    '/api/broadcast': {
      POST: async (req) => {
        const b = await body(req);
        const tenant = stringField(b, 'tenant', false, MAX_NAME);
        const { type, data } = message(b);
        const sockets = await hub.broadcast({ type, data }, tenant);
        return { sockets };
      },
    },
    '/api/ticket': {
      POST: async (req) => {
        const b = await body(req);
        const user = stringField(b, 'user', true, MAX_NAME);
        const ttl = intField(b, 'ttl', 1, MAX_TICKET_TTL) ?? DEFAULT_TICKET_TTL;
        let tenants: string[] | undefined;
        if (b.tenants !== undefined) {
          if (!Array.isArray(b.tenants) || !b.tenants.every((t) => typeof t === 'string' && t.length > 0 && t.length <= MAX_NAME)) {
            throw new HttpError(400, 'bad_request', '"tenants" must be an array of non-empty strings');
          }
          tenants = b.tenants as string[];
        }
        const ticket = hub.issueTicket({ user, ...(tenants ? { tenants } : {}) }, ttl);
        return { ticket, expires_in: ttl };
      },
    },
    '/api/history': {
      GET: async (_req, query) => {
        const topic = queryName(query, 'topic', true)!;
        const tenant = queryName(query, 'tenant', false);
        forbidden(hub.serverMay('history', tenant, topic));
        const since = parseSince(query.get('since'));
        const limit = parseLimit(query.get('limit'));
        const cursor = query.get('cursor') ?? undefined;
        if (cursor !== undefined && since !== undefined) throw new HttpError(400, 'bad_request', 'give either "since" or "cursor" (the "next" of an earlier answer), not both');
        return hub.history(tenant, topic, since, { limit, cursor: cursor === '' ? undefined : cursor });
      },
    },
    '/api/presence': {
      GET: async (_req, query) => {
        const topic = queryName(query, 'topic', true)!;
        const tenant = queryName(query, 'tenant', false);
        forbidden(hub.serverMay('presence', tenant, topic));
        return hub.presence(tenant, topic);
      },
    },
    '/api/disconnect': {
      POST: async (req) => {
        const b = await body(req);
        const user = stringField(b, 'user', true, MAX_NAME);
        const code = intField(b, 'code', 1000, 4999) ?? 4000;
        if (code !== 1000 && code < 3000) throw new HttpError(400, 'bad_request', '"code" must be 1000 or from 3000 to 4999 (codes 1001-2999 are reserved to the protocol)');
        const reason = stringField(b, 'reason', false, 123) ?? '';
        if (Buffer.byteLength(reason) > 123) throw new HttpError(400, 'bad_request', '"reason" is longer than 123 bytes');
        const closed = await hub.disconnectUser(user, code, reason);
        if (closed === 0 && !hub.clustered) throw new HttpError(404, 'not_found', `user ${JSON.stringify(user)} has no open connection`);
        log('info', 'api_disconnect', { user, code, sockets: closed });
        return { user, sockets: closed, code };
      },
    },
  };

  return {
    async handle(req, res, method, path, query) {
      const methods = routes[path];
      if (!methods || !Object.hasOwn(routes, path)) throw new HttpError(404, 'not_found', `no API route ${path}; see the README's "HTTP API"`);
      const route = Object.hasOwn(methods, method) ? methods[method] : undefined;
      if (!route) {
        const allowed = Object.keys(methods).join(', ');
        res.setHeader('Allow', allowed);
        throw new HttpError(405, 'method_not_allowed', `use ${allowed} ${path}`);
      }
      let result: unknown;
      try {
        result = await route(req, query);
      } catch (error) {
        // The hub checks names, types and codes with TypeError / RangeError: the caller's input was wrong.
        if (error instanceof TypeError || error instanceof RangeError) throw new HttpError(400, 'bad_request', error.message);
        // With a broker, anything else is the broker refusing or not answering (down, cut off, timed out):
        // 503, so the caller knows to retry; nothing was published.
        if (hub.clustered && !(error instanceof HttpError)) {
          log('warn', 'broker_unavailable', { path, error: (error as Error).message });
          throw new HttpError(503, 'unavailable', `the broker did not take the request (${(error as Error).message}); retry later`);
        }
        throw error;
      }
      sendJson(res, 200, result);
    },
    metricsText: () => renderMetrics(hub.metrics()),
  };
}

function queryName(query: URLSearchParams, name: string, required: boolean): string | undefined {
  const values = query.getAll(name);
  if (values.length > 1) throw new HttpError(400, 'bad_request', `"${name}" is given ${values.length} times`);
  const value = values[0];
  if (value === undefined || value === '') {
    if (required) throw new HttpError(400, 'bad_request', `the query parameter "${name}" is required`);
    return undefined;
  }
  if (value.length > MAX_NAME) throw new HttpError(400, 'bad_request', `"${name}" is longer than ${MAX_NAME} characters`);
  return value;
}

/** 403 when the channel permissions say `nobody` for what the API is asked. */
function forbidden(refusal: string | null): void {
  if (refusal !== null) throw new HttpError(403, 'forbidden', refusal);
}

/** `limit` of `GET /api/history`: a positive integer (the hub checks its maximum). */
function parseLimit(text: string | null): number | undefined {
  if (text === null || text === '') return undefined;
  if (!/^\d{1,9}$/.test(text)) throw new HttpError(400, 'bad_request', '"limit" must be a positive integer');
  return Number(text);
}

/**
 * `since` of `GET /api/history`: absent (everything held), a sequence number in the current epoch (`since=41`), or
 * `epoch:seq` (`since=Xk3…:41`) as a client saw it. For a wildcard `topic` (`orders.%23`), the number is a tenant
 * offset and the epoch an offset epoch (`offsetEpoch:offset`, as a wildcard subscription's ack reports them).
 */
function parseSince(text: string | null): { epoch?: string; seq: number } | undefined {
  if (text === null || text === '') return undefined;
  const match = /^(?:([A-Za-z0-9_-]{1,64}):)?(\d{1,15})$/.exec(text);
  if (!match) throw new HttpError(400, 'bad_request', '"since" must be a sequence number (41) or epoch:seq (Xk3abc:41)');
  return match[1] === undefined ? { seq: Number(match[2]) } : { epoch: match[1], seq: Number(match[2]) };
}
