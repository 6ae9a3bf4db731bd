/**
 * Backend hooks through the service (`"hooks"` in `--config`): a real `node:http` backend in this process answers
 * connect, subscribe, publish and refresh; the service runs from dist/ with and without a JWT key. Covers the
 * request bodies and forwarded headers (and only those configured), the secret header, every decision (admit,
 * deny, disconnect, rewrite, extend), and each hook's failures (timeout, 500, bad JSON, too large, connection
 * refused) under both failure policies; the config section's errors (exit status 2 naming the field).
 */
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { api, API_KEY, runBin, serviceArgs, startService, tokenFor } from './helpers/service.js';
import { openSocket, type RecordingSocket } from './helpers/socket.js';

const HOOK_SECRET = 'hook-secret-0123456789';

interface Recorded {
  path: string;
  headers: IncomingMessage['headers'];
  body: any;
}
const calls: Recorded[] = [];
const callsTo = (path: string): Recorded[] => calls.filter((c) => c.path === path);
let refreshCount = 0;

type Reply = { status?: number; body?: unknown; raw?: string } | 'hang';

function onConnect(body: any): Reply {
  const cookie: string = body.headers.cookie ?? '';
  const session = /session=([\w-]+)/.exec(cookie)?.[1];
  switch (session) {
    case 'alice':
      return { body: { user: 'alice' } };
    case 'bob':
      return { body: { user: 'bob', tenants: ['t1'], topics: ['vip.#'], claims: { plan: 'gold' } } };
    case 'short':
    case 'short-deny':
    case 'short-hang':
      return { body: { user: `user-${session}`, expiresAt: Date.now() + 600 } };
    case 'deny':
      return { body: { deny: { message: 'no session' } } };
    case 'unauthorized':
      return { status: 401, body: { error: 'login' } };
    case 'hang':
      return 'hang';
    case 'error':
      return { status: 500, body: { error: 'boom' } };
    case 'badjson':
      return { raw: 'this is not json' };
    case 'noshape':
      return { body: { user: 42 } };
    case 'big':
      return { body: { user: 'alice', claims: { pad: 'x'.repeat(70 * 1024) } } };
    default:
      return { status: 401 };
  }
}

function onAuthorize(body: any, publish: boolean): Reply {
  const topic: string = body.topic;
  const head = topic.split('.')[0];
  switch (head) {
    case 'ok':
    case 'vip':
      return { body: { allow: true } };
    case 'rewrite':
      return publish ? { body: { allow: true, data: { text: String(body.data.text).toUpperCase(), checked: true } } } : { body: { allow: true } };
    case 'denied':
      return { body: { allow: false, message: 'members only' } };
    case 'kick':
      return { body: { allow: false, message: 'go away', disconnect: { code: 4403, reason: 'kicked by the backend' } } };
    case 'forbidden':
      return { status: 403, body: { message: 'forbidden by status' } };
    case 'hang':
      return 'hang';
    case 'err500':
      return { status: 500 };
    case 'bad':
      return { raw: '{"allow": tru' };
    default:
      return { body: { allow: 'maybe' } };
  }
}

function onRefresh(body: any): Reply {
  refreshCount++;
  if (body.user === 'user-short') return { body: { expiresAt: Date.now() + 10_000 } };
  if (body.user === 'user-short-deny') return { body: { deny: { message: 'session ended' } } };
  return 'hang';
}

const backend = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let body: any;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      body = undefined;
    }
    const path = req.url ?? '/';
    calls.push({ path, headers: req.headers, body });
    let reply: Reply;
    if (path === '/connect') reply = onConnect(body);
    else if (path === '/subscribe') reply = onAuthorize(body, false);
    else if (path === '/publish') reply = onAuthorize(body, true);
    else if (path === '/refresh') reply = onRefresh(body);
    else reply = { status: 404 };
    if (reply === 'hang') return; // never answers (the hub's timeout destroys the request)
    const text = reply.raw ?? (reply.body === undefined ? '' : JSON.stringify(reply.body));
    res.writeHead(reply.status ?? 200, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)) });
    res.end(text);
  });
});
backend.listen(0, '127.0.0.1');
await once(backend, 'listening');
const B = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`;
t.teardown(() => {
  backend.closeAllConnections();
  backend.close();
});

/** A port nothing listens on (connection refused). */
const deadPort = await new Promise<number>((resolve) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => {
    const { port } = s.address() as AddressInfo;
    s.close(() => resolve(port));
  });
});
const DEAD = `http://127.0.0.1:${deadPort}`;

const dir = mkdtempSync(join(tmpdir(), 'wsengine-hooks-'));
function configFile(name: string, content: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(content));
  return path;
}

// A: no JWT key — the connect hook authenticates; every hook on the backend, failure policy deny.
const serviceA = await startService([
  '--port', '0', '--api-key', API_KEY,
  '--config', configFile('a.json', {
    permissions: { rules: [{ pattern: 'vip.#', subscribe: 'granted', publish: 'granted', history: 'granted', presence: 'granted' }], defaults: { subscribe: 'signed-in', publish: 'signed-in', history: 'signed-in', presence: 'signed-in' } },
    hooks: {
      secret: HOOK_SECRET,
      timeout: '400ms',
      connect: { url: `${B}/connect`, headers: ['cookie', 'X-Tenant', 'authorization'] },
      subscribe: { url: `${B}/subscribe` },
      publish: { url: `${B}/publish` },
      refresh: { url: `${B}/refresh` },
    },
  }),
]);
// B: a JWT key, failure policy allow (publish overrides it with deny; subscribe to a dead backend).
const serviceB = await startService(serviceArgs(['--config', configFile('b.json', {
  hooks: {
    failure: 'allow',
    timeout: 300,
    connect: { url: `${B}/connect` },
    subscribe: { url: `${DEAD}/subscribe` },
    publish: { url: `${B}/publish`, failure: 'deny' },
  },
})]));
// C: a JWT key, a backend that is down, failure policy deny.
const serviceC = await startService(serviceArgs(['--config', configFile('c.json', {
  hooks: { connect: { url: `${DEAD}/connect` }, subscribe: { url: `${DEAD}/subscribe` }, publish: { url: `${DEAD}/publish`, failure: 'allow' } },
})]));
t.teardown(() => Promise.all([serviceA, serviceB, serviceC].map((s) => s.stop('SIGKILL'))));

const sockets: RecordingSocket[] = [];
t.teardown(() => sockets.forEach((s) => s.ws.close()));

function withCookie(url: string, cookie: string, extra: Record<string, string> = {}): RecordingSocket {
  const s = openSocket(url, undefined, 10_000, { headers: { Cookie: cookie, ...extra } });
  sockets.push(s);
  return s;
}

async function signedIn(url: string, cookie: string, extra: Record<string, string> = {}): Promise<RecordingSocket> {
  const s = withCookie(url, cookie, extra);
  await s.opened;
  return s;
}

let id = 0;
/** Sends a request; resolves with the reply (ack or error). */
async function ask(s: RecordingSocket, type: string, data: Record<string, unknown>): Promise<any> {
  const requestId = `r${++id}`;
  s.send({ type, data, request_id: requestId });
  return s.next((m) => m.request_id === requestId && (m.type === 'ack' || m.type === 'error'));
}

/** A raw upgrade request: the HTTP status it got (101 when upgraded) and how long it took. */
function upgradeStatus(port: number, headers: Record<string, string>): Promise<{ status: number; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path: '/ws',
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
    });
    req.on('upgrade', (_res, socket) => {
      socket.destroy();
      resolve({ status: 101, ms: Date.now() - started });
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, ms: Date.now() - started });
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('connect: a cookie and no JWT; the backend names the user; only the configured headers go along, with the secret', async (t) => {
  const before = calls.length;
  const s = withCookie(`${serviceA.wsUrl}?room=1&room=2&lang=en`, 'session=alice; other=1', { 'X-Tenant': 'acme', 'X-Other': 'nope', Authorization: `Bearer ${API_KEY}` });
  await s.opened;
  const call = calls.slice(before).find((c) => c.path === '/connect')!;
  t.ok(call, 'the connect hook was called');
  t.same(call.body, { remote: '127.0.0.1', path: '/ws', query: { room: '1', lang: 'en' }, headers: { cookie: 'session=alice; other=1', 'x-tenant': 'acme' }, protocol: '' }, 'connect body');
  t.equal(call.headers.cookie, 'session=alice; other=1', 'the cookie is a header of the hook request');
  t.equal(call.headers['x-tenant'], 'acme', 'a configured header is forwarded');
  t.notOk(call.headers['x-other'], 'an unconfigured header is not');
  t.notOk(call.headers.authorization, 'a configured header holding the API key is dropped');
  t.equal(call.headers['x-wsengine-hook-secret'], HOOK_SECRET, 'the hook secret arrives');
  t.equal(call.headers['x-wsengine-hook'], 'connect');
  t.match(call.headers['content-type'], /^application\/json/);

  t.equal((await ask(s, 'subscribe', { topic: 'ok.news' })).type, 'ack', 'subscribe allowed by the backend');
  const sub = callsTo('/subscribe').at(-1)!;
  t.match(sub.body, { user: 'alice', tenant: 'default', topic: 'ok.news' });
  t.type(sub.body.client, 'string');
  t.equal(sub.headers.cookie, 'session=alice; other=1', 'subscribe forwards the cookie (the default)');
  t.notOk(sub.headers['x-tenant'], 'but not what only connect forwards');
  t.equal(sub.headers['x-wsengine-hook-secret'], HOOK_SECRET);

  const pub = await ask(s, 'publish', { topic: 'ok.news', type: 'note', data: { text: 'hi' } });
  t.equal(pub.type, 'ack');
  const delivered = await s.next((m) => m.type === 'note');
  t.same(delivered.from, { user: 'alice' }, 'the backend\'s user is the publisher');
  t.match(callsTo('/publish').at(-1)!.body, { user: 'alice', tenant: 'default', topic: 'ok.news', type: 'note', data: { text: 'hi' } });
  t.notMatch(serviceA.output(), /session=alice/, 'cookie values are never logged');
});

t.test('connect: tenants and topics from the backend (topics become the granted claim)', async (t) => {
  const bob = await signedIn(serviceA.wsUrl, 'session=bob');
  const alice = await signedIn(serviceA.wsUrl, 'session=alice');
  t.equal((await ask(bob, 'subscribe', { topic: 'vip.lounge', tenant: 't1' })).type, 'ack', 'bob: vip.# granted by the backend\'s topics');
  t.match(await ask(bob, 'subscribe', { topic: 'ok.x', tenant: 't2' }), { type: 'error', data: { code: 'unauthorized' } }, 'bob: only tenant t1');
  t.match(await ask(alice, 'subscribe', { topic: 'vip.lounge' }), { type: 'error', data: { code: 'unauthorized' } }, 'alice: no granted topics');
});

t.test('connect: denied (deny answer, 401) → 4401; a ticket still works without a JWT key', async (t) => {
  const denied = withCookie(serviceA.wsUrl, 'session=deny');
  t.same(await denied.closed, { code: 4401, reason: 'no session' }, 'deny with a message');
  t.equal((await withCookie(serviceA.wsUrl, 'session=unauthorized').closed).code, 4401, 'HTTP 401');
  t.equal((await withCookie(serviceA.wsUrl, 'session=nobody').closed).code, 4401, 'no session at all');

  const ticket = await api(serviceA, 'POST', '/api/ticket', { user: 'carol' });
  t.equal(ticket.status, 200);
  const before = callsTo('/connect').length;
  const s = openSocket(`${serviceA.wsUrl}?ticket=${ticket.body.ticket}`);
  sockets.push(s);
  await s.opened;
  t.equal(callsTo('/connect').length, before, 'a ticket needs no connect hook');
});

t.test('connect failures, policy deny: 503 on the handshake, one log line each', async (t) => {
  for (const [session, error] of [['hang', 'timeout'], ['error', 'status'], ['badjson', 'bad_response'], ['noshape', 'bad_response'], ['big', 'bad_response']]) {
    const { status, ms } = await upgradeStatus(serviceA.port, { Cookie: `session=${session}; private=c00kie-${session}` });
    t.equal(status, 503, `${session}: 503`);
    if (session === 'hang') t.ok(ms >= 350 && ms < 3000, `timed out after the hook timeout (${ms} ms)`);
    await serviceA.waitForOutput(new RegExp(`event=hook_failed hook=connect error=${error}`));
  }
  t.match(serviceA.output(), /event=hook_failed hook=connect error=status status=500 duration_ms=\d+ policy=deny/);
  t.notMatch(serviceA.output(), /c00kie/, 'no cookie value in the logs');
});

t.test('subscribe: allowed, denied with a message, 403, disconnect with a code', async (t) => {
  const s = await signedIn(serviceA.wsUrl, 'session=alice');
  t.equal((await ask(s, 'subscribe', { topic: 'ok.a' })).type, 'ack');
  t.match(await ask(s, 'subscribe', { topic: 'denied.a' }), { type: 'error', data: { code: 'unauthorized', message: 'members only' } });
  t.match(await ask(s, 'subscribe', { topic: 'forbidden.a' }), { type: 'error', data: { code: 'unauthorized', message: 'forbidden by status' } });
  t.match(await ask(s, 'history', { topic: 'denied.a' }), { type: 'error', data: { code: 'unauthorized', message: 'members only' } }, 'history asks the subscribe hook');
  t.match(await ask(s, 'subscribe', { topic: 'kick.a' }), { type: 'error', data: { code: 'unauthorized', message: 'go away' } });
  t.same(await s.closed, { code: 4403, reason: 'kicked by the backend' }, 'closed with the backend\'s code');
});

t.test('subscribe failures, policy deny: unauthorized, the backend is unavailable', async (t) => {
  const s = await signedIn(serviceA.wsUrl, 'session=alice');
  for (const [topic, error] of [['hang.a', 'timeout'], ['err500.a', 'status'], ['bad.a', 'bad_response'], ['other.a', 'bad_response']]) {
    const started = Date.now();
    const reply = await ask(s, 'subscribe', { topic });
    t.match(reply, { type: 'error', data: { code: 'unauthorized', message: /backend is unavailable/ } }, topic);
    if (error === 'timeout') t.ok(Date.now() - started >= 350, 'after the timeout');
    await serviceA.waitForOutput(new RegExp(`event=hook_failed hook=subscribe error=${error}`));
  }
  t.equal((await ask(s, 'subscribe', { topic: 'ok.after' })).type, 'ack', 'the connection goes on');
});

t.test('publish: allowed, denied, rewritten (subscribers get the backend\'s data, with from)', async (t) => {
  const alice = await signedIn(serviceA.wsUrl, 'session=alice');
  const reader = await signedIn(serviceA.wsUrl, 'session=alice');
  t.equal((await ask(reader, 'subscribe', { topic: 'rewrite.#' })).type, 'ack');
  t.equal((await ask(alice, 'publish', { topic: 'rewrite.x', type: 'chat', data: { text: 'hello' } })).type, 'ack');
  const got = await reader.next((m) => m.type === 'chat');
  t.same(got.data, { text: 'HELLO', checked: true }, 'the rewritten data');
  t.same(got.from, { user: 'alice' });
  t.match(await ask(alice, 'publish', { topic: 'denied.x', type: 'chat', data: {} }), { type: 'error', data: { code: 'unauthorized', message: 'members only' } });
  t.match(await ask(alice, 'publish', { topic: 'hang.x', type: 'chat', data: {} }), { type: 'error', data: { code: 'unauthorized', message: /backend is unavailable/ } }, 'timeout, deny');
  t.match(await ask(alice, 'publish', { topic: 'bad.x', type: 'chat', data: {} }), { type: 'error', data: { code: 'unauthorized', message: /backend is unavailable/ } }, 'bad JSON, deny');
});

t.test('refresh: extends a connection at its expiresAt; deny closes 4401; a failure closes 1013', async (t) => {
  const kept = await signedIn(serviceA.wsUrl, 'session=short');
  const ended = await signedIn(serviceA.wsUrl, 'session=short-deny');
  const stalled = await signedIn(serviceA.wsUrl, 'session=short-hang');
  t.same(await ended.closed, { code: 4401, reason: 'session ended' }, 'refresh denied');
  t.equal((await stalled.closed).code, 1013, 'refresh timed out (policy deny): try again later');
  await new Promise((r) => setTimeout(r, 400));
  t.equal((await ask(kept, 'subscribe', { topic: 'ok.still' })).type, 'ack', 'the extended connection is open past its first expiresAt');
  const call = callsTo('/refresh').find((c) => c.body.user === 'user-short')!;
  t.match(call.body, { user: 'user-short' });
  t.type(call.body.client, 'string');
  t.type(call.body.expiresAt, 'number');
  t.equal(call.headers['x-wsengine-hook-secret'], HOOK_SECRET);
  t.equal(call.headers.cookie, 'session=short', 'refresh forwards the cookie');
  await serviceA.waitForOutput(/event=hook_failed hook=refresh error=timeout/);
});

t.test('JWT connections skip the connect hook; failure policy allow (and a per-hook deny)', async (t) => {
  const before = callsTo('/connect').length;
  const jwt = openSocket(serviceB.wsUrl, ['bearer', tokenFor('dave')]);
  sockets.push(jwt);
  await jwt.opened;
  t.equal(callsTo('/connect').length, before, 'no connect call for a token');
  t.equal((await ask(jwt, 'subscribe', { topic: 'any.topic' })).type, 'ack', 'subscribe: backend down, policy allow → allowed');
  await serviceB.waitForOutput(/event=hook_failed hook=subscribe error=network detail=ECONNREFUSED .*policy=allow/);
  t.match(await ask(jwt, 'publish', { topic: 'err500.x', type: 'n', data: {} }), { type: 'error', data: { code: 'unauthorized' } }, 'publish overrides the policy with deny');
  t.equal((await ask(jwt, 'publish', { topic: 'ok.x', type: 'n', data: {} })).type, 'ack');

  const anon = await signedIn(serviceB.wsUrl, 'session=hang');
  t.equal((await ask(anon, 'subscribe', { topic: 'ok.anon' })).type, 'ack', 'connect timed out, policy allow → admitted');
  t.equal((await ask(anon, 'publish', { topic: 'ok.anon', type: 'n', data: {} })).type, 'ack');
  const msg = await anon.next((m) => m.type === 'n');
  t.match(msg.from.user, /^anonymous:/, 'as an anonymous user');
  const named = await signedIn(serviceB.wsUrl, 'session=alice');
  t.equal((await ask(named, 'publish', { topic: 'ok.named', type: 'n', data: {} })).type, 'ack', 'with a JWT key, the connect hook still admits cookies');
});

t.test('backend down (connection refused), policy deny: 503 / unauthorized; publish with allow goes through', async (t) => {
  t.equal((await upgradeStatus(serviceC.port, { Cookie: 'session=alice' })).status, 503, 'connect → 503');
  const s = openSocket(serviceC.wsUrl, ['bearer', tokenFor('erin')]);
  sockets.push(s);
  await s.opened;
  t.match(await ask(s, 'subscribe', { topic: 'x.y' }), { type: 'error', data: { code: 'unauthorized', message: /backend is unavailable/ } });
  t.equal((await ask(s, 'publish', { topic: 'x.y', type: 'n', data: {} })).type, 'ack');
  t.match(serviceC.output(), /event=hook_failed hook=connect error=network detail=ECONNREFUSED/);
});

t.test('metrics: calls by hook and result, time spent', async (t) => {
  const res = await api(serviceA, 'GET', '/metrics');
  t.equal(res.status, 200);
  const text = String(res.body);
  for (const line of ['wsengine_hook_calls_total{hook="connect",result="allow"}', 'wsengine_hook_calls_total{hook="connect",result="deny"}', 'wsengine_hook_calls_total{hook="connect",result="timeout"}', 'wsengine_hook_calls_total{hook="subscribe",result="bad_response"}', 'wsengine_hook_calls_total{hook="publish",result="allow"}', 'wsengine_hook_calls_total{hook="refresh",result="allow"}', 'wsengine_hook_seconds_total{hook="connect"}']) {
    t.ok(text.includes(line), line);
  }
  t.ok(refreshCount >= 3);
});

t.test('the "hooks" section: errors name the field (exit 2); a JWT key is needed unless a connect hook authenticates', async (t) => {
  const cases: Array<[unknown, RegExp, boolean?]> = [
    [{ connect: { url: 'ftp://backend/x' } }, /hooks\.connect\.url: must be an http:\/\/ or https:\/\/ URL/],
    [{ connect: {} }, /hooks\.connect\.url: required/],
    [{ connect: { url: 'http://b/c', method: 'GET' } }, /hooks\.connect\.method: unknown key/],
    [{ connect: { url: 'http://b/c', timeout: '20s' } }, /hooks\.connect\.timeout: must be a duration from 1ms to 9s/],
    [{ publish: { url: 'http://b/c', headers: ['Sec-WebSocket-Key'] } }, /hooks\.publish\.headers: "Sec-WebSocket-Key" cannot be forwarded/],
    [{ subscribe: { url: 'http://b/c' }, failure: 'maybe' }, /hooks\.failure: must be "deny" or "allow"/],
    [{ subscribe: { url: 'http://b/c' }, secret: 'with space' }, /hooks\.secret: must be 1 to 1024 visible ASCII/],
    [{ hooks: 1 }, /hooks\.hooks: unknown key/],
    [[], /hooks: must be an object/],
    [{ subscribe: { url: 'http://b/c' } }, /--jwt-secret or --jwt-public-key is required .*connect hook/, true],
  ];
  const runs = await Promise.all(
    cases.map(([hooks, , withoutJwt], i) => {
      const path = configFile(`bad-${i}.json`, { hooks });
      return runBin(withoutJwt ? ['hub', '--port', '0', '--config', path] : ['hub', ...serviceArgs(['--config', path])]);
    }),
  );
  cases.forEach(([hooks, message], i) => {
    t.equal(runs[i].code, 2, `${JSON.stringify(hooks)}: exit 2`);
    t.match(runs[i].stderr, message);
  });
});
