/**
 * Backend hooks: the service asks the application's backend, by JSON over HTTP POST, who a connection is
 * (`connect`), whether a client may subscribe (`subscribe`) or publish, and what (`publish`), and whether an
 * expiring connection goes on (`refresh`). Configured in the config file's `"hooks"` section:
 *
 * ```json
 * "hooks": {
 *   "connect":   { "url": "http://backend/ws/connect", "timeout": "2s", "headers": ["cookie", "x-forwarded-for"] },
 *   "subscribe": { "url": "http://backend/ws/subscribe" },
 *   "publish":   { "url": "http://backend/ws/publish", "failure": "allow" },
 *   "refresh":   { "url": "http://backend/ws/refresh" },
 *   "secret": "…", "failure": "deny"
 * }
 * ```
 *
 * Per hook: `url` (http or https, required), `timeout` (ms or `250ms`/`2s`; default 2 s; connect at most 9 s, the
 * others at most 30 s), `headers` (names of the WebSocket upgrade's request headers sent along, as HTTP headers of
 * the hook request, default `["cookie"]`), `secret` (sent as `X-Wsengine-Hook-Secret` so the backend can tell the
 * hub from anyone else), `failure` (`deny`, the default, or `allow`). `timeout`, `headers`, `secret` and `failure`
 * may also be given once at the top of the section for every hook. A forwarded header whose value holds the
 * service's API key is never sent; the handshake's own headers (`host`, `connection`, `upgrade`, `sec-websocket-*`,
 * …) cannot be forwarded. For `subscribe`, `publish` and `refresh`, which run after the handshake, each connection
 * keeps the values of the headers they forward (the cookie, by default) for its lifetime.
 *
 * Every request is a POST with a JSON body, `Content-Type: application/json`, `X-Wsengine-Hook: <hook>`; keep-alive
 * connections are reused. Answers:
 * - **2xx** with a JSON object: the decision (below);
 * - **401 / 403**: deny (as `{"deny": {}}`, or the hook's `allow: false`);
 * - anything else — another status, no answer within the timeout, a refused or reset connection, a body that is
 *   not a JSON object or that is over 64 KiB, a decision of the wrong shape — is a **failure**, handled by the
 *   hook's failure policy and logged (`hook_failed`: hook, error, status, duration; never header values).
 *
 * | hook | request body | answer |
 * |---|---|---|
 * | connect | `{remote, path, query, headers, protocol}` | `{user, tenants?, topics?, expiresAt?, claims?}` or `{deny: {message?}}` |
 * | subscribe | `{client, user, tenant, topic}` | `{allow: true}` or `{allow: false, message?, disconnect?: {code, reason?}}` |
 * | publish | `{client, user, tenant, topic, type, data}` | as subscribe, plus `data` with `allow: true` to publish that instead |
 * | refresh | `{client, user, expiresAt}` | `{expiresAt, tenants?, topics?, claims?}` or `{deny: {message?}}` |
 *
 * What each decision does, and the failure policies:
 * - `connect` runs during the handshake of an upgrade without a token (a JWT still works as before; the connection
 *   has no id yet, so its body has no `client`). Admitted: `user`; `tenants` (absent: any); `topics`, patterns that
 *   become the `topics` claim the channel permissions' `granted` reads; `expiresAt` (ms since 1970: then `refresh`
 *   is asked at that time, or the connection closes with 4401); `claims`. Denied: close 4401 with the message.
 *   Failure, `deny`: the handshake is answered 503 (no WebSocket; clients retry later). Failure, `allow` (unsafe):
 *   the client is admitted as an anonymous user of its own, `anonymous:<id>`, to whom `signed-in` rules apply.
 * - `subscribe` (also asked before a `history` read) and `publish` run after the channel permissions allowed the
 *   request, in request order (a slow backend delays the connection's later requests). Denied: the client gets an
 *   `unauthorized` error with the message, and with `disconnect` the connection is closed with that code
 *   (4000–4999). Failure, `deny`: `unauthorized`, "the backend is unavailable"; `allow` (unsafe): allowed.
 * - `refresh` runs when a connection admitted by the connect hook reaches its `expiresAt` (JWT connections expire
 *   as before). Answered: the connection goes on until the new `expiresAt` (omitted fields keep their values).
 *   Denied: close 4401. Failure, `deny`: close 1013 (try again later: clients reconnect, and `connect` decides);
 *   `allow` (unsafe): the connection goes on and `refresh` is asked again 30 s later.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { Agent as HttpAgent, type ClientRequest, type IncomingHttpHeaders, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Principal } from '../hub/auth.js';
import { selectHubProtocol } from '../hub/auth.js';
import type { HubClient } from '../hub/client.js';
import type { Hub } from '../hub/hub.js';
import type { AuthorizeDecision, HubOptions, UpgradeRefusal } from '../hub/options.js';
import { truncateReason } from '../hub/protocol.js';
import type { IncomingUpgrade } from '../transport/server.js';
import type { Logger } from './log.js';
import type { MetricFamily } from './metrics.js';

/** The hooks, in the order the config section and the metrics list them. */
export const HOOK_NAMES = ['connect', 'subscribe', 'publish', 'refresh'] as const;
export type HookName = (typeof HOOK_NAMES)[number];

/** What a hook failure does: refuse (`deny`) or let the request through (`allow`, unsafe). */
export type HookFailurePolicy = 'deny' | 'allow';

/** Defaults and bounds of the `"hooks"` section. */
export const HOOK_DEFAULTS = Object.freeze({
  /** 2 s per call. */
  timeout: 2_000,
  /** The longest `connect` timeout: 9 s (the handshake itself times out after 10 s). */
  maxConnectTimeout: 9_000,
  /** The longest timeout of the other hooks: 30 s. */
  maxTimeout: 30_000,
  /** Only the cookie is forwarded unless `headers` says otherwise. */
  headers: Object.freeze(['cookie']) as readonly string[],
  failure: 'deny' as HookFailurePolicy,
  /** A larger answer is a failure: 64 KiB. */
  maxResponseBytes: 64 * 1024,
  /** With `failure: "allow"`, a refresh that failed is asked again after 30 s. */
  refreshRetry: 30_000,
  /** Concurrent connections to a backend (per protocol); more calls wait, within their timeout. */
  maxSockets: 256,
});

/** The header carrying a hook's `secret`. */
export const HOOK_SECRET_HEADER = 'x-wsengine-hook-secret';

/** One hook as validated. */
export interface HookSpec {
  url: string;
  /** Milliseconds. */
  timeout: number;
  /** Lower-case names of upgrade request headers to send along. */
  headers: readonly string[];
  secret: string | undefined;
  failure: HookFailurePolicy;
}

/** The validated `"hooks"` section: the hooks configured. */
export type HookSpecs = Partial<Record<HookName, HookSpec>>;

/** Request headers a hook may not forward: the handshake's own and those that frame the hook request. */
const UNFORWARDABLE = new Set(['host', 'connection', 'upgrade', 'content-length', 'content-type', 'transfer-encoding', 'keep-alive', 'te', 'trailer', 'expect', 'proxy-connection', 'x-wsengine-hook', HOOK_SECRET_HEADER]);
const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
const SECTION_KEYS = [...HOOK_NAMES, 'timeout', 'headers', 'secret', 'failure'];
const HOOK_KEYS = ['url', 'timeout', 'headers', 'secret', 'failure'];

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `2000`, `"2000"`, `"250ms"`, `"2s"`, `"1.5s"` → milliseconds; undefined when malformed. */
function durationMs(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s)?$/i.exec(value.trim());
  if (!match) return undefined;
  return Math.round(Number(match[1]) * (match[2]?.toLowerCase() === 's' ? 1000 : 1));
}

/**
 * Validates the config file's `"hooks"` section (undefined: no hooks). Throws a TypeError whose message names the
 * field (`hooks.connect.url: …`); the service turns it into a configuration error (exit status 2).
 */
export function parseHooks(raw: unknown): HookSpecs | undefined {
  if (raw === undefined) return undefined;
  if (!isObject(raw)) throw new TypeError('hooks: must be an object ({ "connect": { "url": … }, … })');
  for (const key of Object.keys(raw)) {
    if (!SECTION_KEYS.includes(key)) throw new TypeError(`hooks.${key}: unknown key (${SECTION_KEYS.join(', ')})`);
  }
  const shared = {
    timeout: raw.timeout,
    headers: raw.headers,
    secret: raw.secret,
    failure: raw.failure,
  };
  const specs: HookSpecs = {};
  for (const name of HOOK_NAMES) {
    const hook = raw[name];
    if (hook === undefined) continue;
    if (!isObject(hook)) throw new TypeError(`hooks.${name}: must be an object ({ "url": "http://…" , … })`);
    for (const key of Object.keys(hook)) {
      if (!HOOK_KEYS.includes(key)) throw new TypeError(`hooks.${name}.${key}: unknown key (${HOOK_KEYS.join(', ')})`);
    }
    specs[name] = {
      url: checkUrl(`hooks.${name}.url`, hook.url),
      timeout: checkTimeout(hook.timeout !== undefined ? `hooks.${name}.timeout` : 'hooks.timeout', hook.timeout ?? shared.timeout, name === 'connect' ? HOOK_DEFAULTS.maxConnectTimeout : HOOK_DEFAULTS.maxTimeout),
      headers: checkHeaders(hook.headers !== undefined ? `hooks.${name}.headers` : 'hooks.headers', hook.headers ?? shared.headers),
      secret: checkSecret(hook.secret !== undefined ? `hooks.${name}.secret` : 'hooks.secret', hook.secret ?? shared.secret),
      failure: checkFailure(hook.failure !== undefined ? `hooks.${name}.failure` : 'hooks.failure', hook.failure ?? shared.failure),
    };
  }
  if (Object.keys(specs).length === 0) throw new TypeError(`hooks: no hook configured (${HOOK_NAMES.join(', ')})`);
  // Shared values are checked even when every hook overrides them.
  if (shared.timeout !== undefined) checkTimeout('hooks.timeout', shared.timeout, HOOK_DEFAULTS.maxTimeout);
  if (shared.headers !== undefined) checkHeaders('hooks.headers', shared.headers);
  if (shared.secret !== undefined) checkSecret('hooks.secret', shared.secret);
  if (shared.failure !== undefined) checkFailure('hooks.failure', shared.failure);
  return specs;
}

function checkUrl(field: string, value: unknown): string {
  if (value === undefined) throw new TypeError(`${field}: required (an http:// or https:// URL)`);
  let url: URL;
  try {
    if (typeof value !== 'string') throw new Error();
    url = new URL(value);
  } catch {
    throw new TypeError(`${field}: must be an http:// or https:// URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`${field}: must be an http:// or https:// URL, got ${url.protocol}//`);
  if (url.hash) throw new TypeError(`${field}: must not have a #fragment`);
  return url.href;
}

function checkTimeout(field: string, value: unknown, max: number): number {
  if (value === undefined) return HOOK_DEFAULTS.timeout;
  const ms = durationMs(value);
  if (ms === undefined || ms < 1 || ms > max) throw new TypeError(`${field}: must be a duration from 1ms to ${max / 1000}s (2000, "250ms", "2s")`);
  return ms;
}

function checkHeaders(field: string, value: unknown): readonly string[] {
  if (value === undefined) return HOOK_DEFAULTS.headers;
  if (!Array.isArray(value)) throw new TypeError(`${field}: must be an array of request header names (["cookie", "authorization"])`);
  const names: string[] = [];
  for (const item of value) {
    if (typeof item !== 'string' || !HEADER_NAME.test(item.toLowerCase())) throw new TypeError(`${field}: ${JSON.stringify(item)} is not a header name`);
    const name = item.toLowerCase();
    if (UNFORWARDABLE.has(name) || name.startsWith('sec-websocket-')) throw new TypeError(`${field}: ${JSON.stringify(item)} cannot be forwarded (a header of the handshake or of the hook request itself)`);
    if (!names.includes(name)) names.push(name);
  }
  return names;
}

function checkSecret(field: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^[\x21-\x7e]{1,1024}$/.test(value)) throw new TypeError(`${field}: must be 1 to 1024 visible ASCII characters`);
  return value;
}

function checkFailure(field: string, value: unknown): HookFailurePolicy {
  if (value === undefined) return HOOK_DEFAULTS.failure;
  if (value !== 'deny' && value !== 'allow') throw new TypeError(`${field}: must be "deny" or "allow", got ${JSON.stringify(value)}`);
  return value;
}

/** How a call went, as the `result` label of `wsengine_hook_calls_total` counts it. */
export type HookResult = 'allow' | 'deny' | 'timeout' | 'network' | 'status' | 'bad_response';

/** A call's answer: a decision body, a denial (401/403), or a failure. */
type Answer =
  | { kind: 'body'; body: Record<string, unknown> }
  | { kind: 'denied'; body: Record<string, unknown> | undefined }
  | { kind: 'failed'; error: Exclude<HookResult, 'allow' | 'deny'>; status?: number; detail?: string };

/** A decision that did not have the documented shape: a failure (`bad_response`). */
class BadResponse extends Error {}

/** What the service's hub gets from the hooks. */
export interface BackendHooks {
  /** The hub options that call the backend. */
  readonly options: Pick<HubOptions, 'authenticateUpgrade' | 'onExpiry' | 'authorize'>;
  /** Keeps each connection's forwarded headers for the hooks that send them after the handshake. */
  attach(hub: Hub): void;
  /** `wsengine_hook_calls_total{hook,result}` and `wsengine_hook_seconds_total{hook}`. */
  metrics(): MetricFamily[];
  /** Aborts calls in flight and closes the keep-alive connections. */
  close(): void;
}

/** Options of {@link createBackendHooks}. */
export interface BackendHooksOptions {
  log: Logger;
  /** The service's API key: a forwarded header whose value holds it is dropped. */
  apiKey?: string | undefined;
}

/** The hub options and the rest for the hooks configured (see the module documentation). */
export function createBackendHooks(specs: HookSpecs, { log, apiKey }: BackendHooksOptions): BackendHooks {
  const agents = {
    http: new HttpAgent({ keepAlive: true, maxSockets: HOOK_DEFAULTS.maxSockets }),
    https: new HttpsAgent({ keepAlive: true, maxSockets: HOOK_DEFAULTS.maxSockets }),
  };
  const inFlight = new Set<ClientRequest>();
  const calls = new Map<string, number>();
  const seconds = new Map<HookName, number>();
  /** Forwarded headers per connection, for subscribe/publish/refresh (kept only when one of them forwards any). */
  const kept = new WeakMap<HubClient, Record<string, string>>();
  /** Principals the connect (or refresh) hook made: only their connections are refreshed through the backend. */
  const fromHook = new WeakSet<Principal>();
  let closed = false;

  const count = (hook: HookName, result: HookResult, ms: number): void => {
    const key = `${hook} ${result}`;
    calls.set(key, (calls.get(key) ?? 0) + 1);
    seconds.set(hook, (seconds.get(hook) ?? 0) + ms / 1000);
  };

  const forward = (names: readonly string[], headers: IncomingHttpHeaders): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const name of names) {
      const v = headers[name];
      const value = Array.isArray(v) ? v.join(', ') : v;
      if (value === undefined || (apiKey !== undefined && apiKey.length > 0 && value.includes(apiKey))) continue;
      out[name] = value;
    }
    return out;
  };

  /** One POST: the answer, never a rejection. */
  const post = (hook: HookName, spec: HookSpec, payload: unknown, forwarded: Record<string, string>): Promise<Answer> => {
    if (closed) return Promise.resolve({ kind: 'failed', error: 'network', detail: 'service closing' });
    let body: Buffer;
    try {
      body = Buffer.from(JSON.stringify(payload));
    } catch {
      return Promise.resolve({ kind: 'failed', error: 'bad_response', detail: 'request not serialisable' });
    }
    const url = new URL(spec.url);
    const https = url.protocol === 'https:';
    const headers: Record<string, string> = {
      'user-agent': 'wsengine-hub',
      ...forwarded,
      'content-type': 'application/json',
      accept: 'application/json',
      'content-length': String(body.length),
      'x-wsengine-hook': hook,
    };
    if (spec.secret !== undefined) headers[HOOK_SECRET_HEADER] = spec.secret;
    return new Promise<Answer>((resolve) => {
      let settled = false;
      const finish = (answer: Answer): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        inFlight.delete(req);
        resolve(answer);
      };
      const req = (https ? httpsRequest : httpRequest)(url, { method: 'POST', headers, agent: https ? agents.https : agents.http }, (res) => {
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > HOOK_DEFAULTS.maxResponseBytes) {
            finish({ kind: 'failed', error: 'bad_response', status, detail: `answer over ${HOOK_DEFAULTS.maxResponseBytes} bytes` });
            req.destroy();
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', () => finish({ kind: 'failed', error: 'network', status, detail: 'answer cut short' }));
        res.on('close', () => finish({ kind: 'failed', error: 'network', status, detail: 'answer cut short' }));
        res.on('end', () => {
          let parsed: unknown;
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            parsed = text.length === 0 ? undefined : JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          if (status === 401 || status === 403) return finish({ kind: 'denied', body: isObject(parsed) ? parsed : undefined });
          if (status < 200 || status > 299) return finish({ kind: 'failed', error: 'status', status });
          if (!isObject(parsed)) return finish({ kind: 'failed', error: 'bad_response', status, detail: 'not a JSON object' });
          finish({ kind: 'body', body: parsed });
        });
      });
      inFlight.add(req);
      req.on('error', (error: NodeJS.ErrnoException) => finish({ kind: 'failed', error: 'network', detail: error.code ?? 'request failed' }));
      const timer = setTimeout(() => {
        finish({ kind: 'failed', error: 'timeout' });
        req.destroy();
      }, spec.timeout);
      req.end(body);
    });
  };

  /**
   * Calls a hook and turns its answer into a decision with `decide` (which throws {@link BadResponse} for a
   * decision of the wrong shape): `onDeny` for 401/403, `onFailure` for every failure, each logged and counted.
   */
  const run = async <T>(
    hook: HookName,
    payload: unknown,
    forwarded: Record<string, string>,
    context: Record<string, string | undefined>,
    handlers: { decide: (body: Record<string, unknown>) => { result: 'allow' | 'deny'; value: T }; onDeny: (body: Record<string, unknown> | undefined) => T; onFailure: (policy: HookFailurePolicy) => T },
  ): Promise<T> => {
    const spec = specs[hook]!;
    const started = performance.now();
    const answer = await post(hook, spec, payload, forwarded);
    const ms = performance.now() - started;
    let failure: Extract<Answer, { kind: 'failed' }> | undefined;
    if (answer.kind === 'denied') {
      count(hook, 'deny', ms);
      return handlers.onDeny(answer.body);
    }
    if (answer.kind === 'body') {
      try {
        const decided = handlers.decide(answer.body);
        count(hook, decided.result, ms);
        return decided.value;
      } catch (error) {
        if (!(error instanceof BadResponse)) throw error;
        failure = { kind: 'failed', error: 'bad_response', status: 200, detail: error.message };
      }
    } else failure = answer;
    count(hook, failure.error, ms);
    log('warn', 'hook_failed', {
      hook,
      error: failure.error,
      status: failure.status,
      detail: failure.detail,
      duration_ms: Math.round(ms),
      policy: spec.failure,
      ...context,
    });
    return handlers.onFailure(spec.failure);
  };

  const options: BackendHooks['options'] = {};
  const connect = specs.connect;
  if (connect !== undefined) {
    options.authenticateUpgrade = (request: IncomingUpgrade) => {
      const forwarded = forward(connect.headers, request.headers);
      const payload = {
        remote: request.remoteAddress ?? null,
        path: request.path,
        query: firstValues(request.query),
        headers: forwarded,
        protocol: selectHubProtocol(request.protocols) ?? '',
      };
      return run<Principal | UpgradeRefusal>('connect', payload, forwarded, { remote: request.remoteAddress }, {
        decide(body) {
          if (body.deny !== undefined) return { result: 'deny', value: refusal(body.deny) };
          const principal = principalFrom(body, undefined);
          fromHook.add(principal);
          return { result: 'allow', value: principal };
        },
        onDeny: (body) => refusal(body?.deny),
        onFailure: (policy) => (policy === 'allow' ? { user: `anonymous:${randomBytes(9).toString('base64url')}` } : { reject: true, status: 503, message: 'the backend is unavailable: try again later' }),
      });
    };
  }

  const authorize: NonNullable<HubOptions['authorize']> = {};
  const subscribe = specs.subscribe;
  if (subscribe !== undefined) {
    authorize.subscribe = ({ client, tenant, topic }) =>
      run<AuthorizeDecision>('subscribe', { client: client.id, user: client.user, tenant, topic }, pick(kept.get(client), subscribe.headers), { connection: client.id }, {
        decide: (body) => decision(body, false),
        onDeny: (body) => denied(body),
        onFailure: unavailable,
      });
  }
  const publish = specs.publish;
  if (publish !== undefined) {
    authorize.publish = ({ client, tenant, topic, type, data }) =>
      run<AuthorizeDecision>('publish', { client: client.id, user: client.user, tenant, topic, type, data }, pick(kept.get(client), publish.headers), { connection: client.id }, {
        decide: (body) => decision(body, true),
        onDeny: (body) => denied(body),
        onFailure: unavailable,
      });
  }
  if (subscribe !== undefined || publish !== undefined) options.authorize = authorize;

  const refresh = specs.refresh;
  if (refresh !== undefined) {
    options.onExpiry = async (client: HubClient) => {
      const was = client.principal;
      if (was === null || !fromHook.has(was)) return null; // a JWT connection: expires as before
      return run<Principal | null>('refresh', { client: client.id, user: client.user, expiresAt: was.expiresAt ?? null }, pick(kept.get(client), refresh.headers), { connection: client.id }, {
        decide(body) {
          if (body.deny !== undefined) {
            client.close(4401, truncateReason(denyMessage(body.deny) ?? 'session expired'));
            return { result: 'deny', value: null };
          }
          if (body.expiresAt === undefined) throw new BadResponse('expiresAt is required');
          const next = principalFrom(body, was);
          fromHook.add(next);
          return { result: 'allow', value: next };
        },
        onDeny(body) {
          client.close(4401, truncateReason(denyMessage(body?.deny) ?? 'session expired'));
          return null;
        },
        onFailure(policy) {
          if (policy === 'allow') {
            const next = { ...was, expiresAt: Date.now() + HOOK_DEFAULTS.refreshRetry };
            fromHook.add(next);
            return next;
          }
          client.close(1013, 'the backend is unavailable: reconnect later');
          return null;
        },
      });
    };
  }

  const keptNames = [...new Set([subscribe, publish, refresh].flatMap((spec) => spec?.headers ?? []))];

  return {
    options,
    attach(hub) {
      if (keptNames.length === 0) return;
      hub.on('connection', (client: HubClient, request: IncomingUpgrade | undefined) => {
        if (request === undefined) return;
        const headers = forward(keptNames, request.headers);
        if (Object.keys(headers).length > 0) kept.set(client, headers);
      });
    },
    metrics() {
      const callSamples = [...calls.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([key, value]) => {
          const [hook, result] = key.split(' ');
          return { labels: { hook, result }, value };
        });
      return [
        { name: 'wsengine_hook_calls_total', type: 'counter', help: 'Backend hook calls, by hook and result (allow, deny, timeout, network, status, bad_response).', samples: callSamples },
        {
          name: 'wsengine_hook_seconds_total',
          type: 'counter',
          help: 'Seconds spent waiting for backend hooks, by hook (divide by the calls for the mean).',
          samples: HOOK_NAMES.filter((h) => seconds.has(h)).map((hook) => ({ labels: { hook }, value: Math.round(seconds.get(hook)! * 1e6) / 1e6 })),
        },
      ];
    },
    close() {
      closed = true;
      for (const req of inFlight) req.destroy();
      inFlight.clear();
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}

/** The query as an object, the first value of each parameter. */
function firstValues(query: URLSearchParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of query) if (!Object.hasOwn(out, key)) out[key] = value;
  return out;
}

/** The forwarded headers a hook sends, out of those kept for its connection. */
function pick(headers: Record<string, string> | undefined, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  if (headers === undefined) return out;
  for (const name of names) if (headers[name] !== undefined) out[name] = headers[name];
  return out;
}

function denyMessage(deny: unknown): string | undefined {
  return isObject(deny) && typeof deny.message === 'string' && deny.message.length > 0 ? deny.message : undefined;
}

/** A connect denial: close 4401 with the backend's message, or the hub's. */
function refusal(deny: unknown): UpgradeRefusal {
  const message = denyMessage(deny);
  return message === undefined ? { reject: true, message: 'refused by the backend' } : { reject: true, message };
}

const STRINGS = (value: unknown): value is string[] => Array.isArray(value) && value.every((v) => typeof v === 'string' && v.length > 0);

/** The principal a connect (or, over `was`, a refresh) answer stands for; BadResponse when malformed. */
function principalFrom(body: Record<string, unknown>, was: Principal | undefined): Principal {
  const { user, tenants, topics, expiresAt, claims } = body;
  if (was === undefined) {
    if (typeof user !== 'string' || user.length === 0 || user.length > 256) throw new BadResponse('user must be a string of 1 to 256 characters');
  } else if (user !== undefined && user !== was.user) throw new BadResponse('user must be the connection\'s user');
  if (tenants !== undefined && !STRINGS(tenants)) throw new BadResponse('tenants must be an array of tenant names');
  if (topics !== undefined && !STRINGS(topics)) throw new BadResponse('topics must be an array of topic patterns');
  if (expiresAt !== undefined && (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt))) throw new BadResponse('expiresAt must be a time in milliseconds since 1970');
  if (claims !== undefined && !isObject(claims)) throw new BadResponse('claims must be an object');
  const principal: Principal = { user: was?.user ?? (user as string) };
  const nextTenants = (tenants as string[] | undefined) ?? was?.tenants;
  if (nextTenants !== undefined) principal.tenants = nextTenants;
  const nextExpiry = (expiresAt as number | undefined) ?? (was === undefined ? undefined : was.expiresAt);
  if (nextExpiry !== undefined) principal.expiresAt = nextExpiry;
  const nextClaims = { ...(was?.claims ?? {}), ...((claims as Record<string, unknown> | undefined) ?? {}), ...(topics !== undefined ? { topics } : {}) };
  if (Object.keys(nextClaims).length > 0) principal.claims = nextClaims;
  return principal;
}

/** A subscribe/publish answer as the hub's {@link AuthorizeDecision}; BadResponse when malformed. */
function decision(body: Record<string, unknown>, publish: boolean): { result: 'allow' | 'deny'; value: AuthorizeDecision } {
  const { allow, message, disconnect } = body;
  if (typeof allow !== 'boolean') throw new BadResponse('allow must be true or false');
  if (allow) {
    if (publish && Object.hasOwn(body, 'data')) return { result: 'allow', value: { allow: true, data: body.data } };
    return { result: 'allow', value: true };
  }
  if (message !== undefined && typeof message !== 'string') throw new BadResponse('message must be a string');
  const out: Exclude<AuthorizeDecision, boolean> = { allow: false };
  if (typeof message === 'string' && message.length > 0) out.message = message;
  if (disconnect !== undefined) {
    if (!isObject(disconnect) || !Number.isInteger(disconnect.code) || (disconnect.code as number) < 4000 || (disconnect.code as number) > 4999) {
      throw new BadResponse('disconnect.code must be an integer from 4000 to 4999');
    }
    if (disconnect.reason !== undefined && typeof disconnect.reason !== 'string') throw new BadResponse('disconnect.reason must be a string');
    out.disconnect = { code: disconnect.code as number, reason: truncateReason((disconnect.reason as string | undefined) ?? '') };
  }
  return { result: 'deny', value: out };
}

/** A subscribe/publish 401/403: refused, with the body's `message` when it has one. */
function denied(body: Record<string, unknown> | undefined): AuthorizeDecision {
  const message = body !== undefined && typeof body.message === 'string' && body.message.length > 0 ? body.message : undefined;
  return message === undefined ? false : { allow: false, message };
}

/** The subscribe/publish failure policies. */
function unavailable(policy: HookFailurePolicy): AuthorizeDecision {
  return policy === 'allow' ? true : { allow: false, message: 'the backend is unavailable: try again later' };
}

