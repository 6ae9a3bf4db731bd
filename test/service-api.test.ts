/**
 * The service's HTTP API against the bin started as a user would (child process, real port): every endpoint, the
 * API key, bad JSON and bad fields, unknown topics and users, one-time tickets (single use, expiry), /health,
 * /metrics, the WebSocket paths, the logs (no secrets), and graceful shutdown on SIGTERM.
 */
import t from 'tap';
import { api, API_KEY, SECRET, serviceArgs, startService, tokenFor } from './helpers/service.js';
import { readExposition } from './helpers/prom.js';
import { openSocket } from './helpers/socket.js';

const service = await startService(serviceArgs(['--max-body-size', '2k']));
t.teardown(() => service.stop('SIGKILL'));

const aliceToken = tokenFor('alice');

async function subscribed(user: string, topic: string, tenant?: string) {
  const s = openSocket(service.wsUrl, ['bearer', tokenFor(user)]);
  await s.opened;
  s.send({ type: 'subscribe', data: { topic, ...(tenant ? { tenant } : {}) }, request_id: 'sub' });
  const ack = await s.next((m) => m.request_id === 'sub');
  if (ack.type !== 'ack') throw new Error(`subscribe failed: ${JSON.stringify(ack)}`);
  return s;
}

t.test('GET /health needs no key', async (t) => {
  const res = await api(service, 'GET', '/health', undefined, null);
  t.equal(res.status, 200);
  t.equal(res.body.status, 'ok');
  t.type(res.body.connections, 'number');
});

t.test('GET /health/live and /health/ready: each check\'s state, no key; other methods 405', async (t) => {
  const live = await api(service, 'GET', '/health/live', undefined, null);
  t.equal(live.status, 200);
  t.match(live.body, { status: 'ok', checks: { event_loop: { status: 'ok' } } });
  t.type(live.body.checks.event_loop.lag_ms, 'number');
  const ready = await api(service, 'GET', '/health/ready', undefined, null);
  t.equal(ready.status, 200);
  t.match(ready.body, { status: 'ready', checks: { backplane: { status: 'up', reachable: true, attempts: 0, error: null }, accepting: { status: 'ok' }, shutdown: { status: 'no' } } });
  t.equal((await api(service, 'POST', '/health/ready', {}, null)).status, 405);
});

t.test('the API key: missing, wrong, or another scheme → 401 on /api/* and /metrics', async (t) => {
  for (const key of [null, 'wrong-key', `${API_KEY}x`, API_KEY.slice(0, -1)]) {
    for (const [method, path, body] of [['POST', '/api/publish', { topic: 'a', type: 't', data: {} }], ['GET', '/api/presence?topic=a'], ['GET', '/metrics']] as const) {
      const res = await api(service, method, path, body, key);
      t.equal(res.status, 401, `${method} ${path} with ${key === null ? 'no key' : 'a wrong key'}`);
      t.equal(res.headers.get('www-authenticate'), 'Bearer');
    }
  }
  const basic = await fetch(new URL('/api/presence?topic=a', service.url), { headers: { Authorization: `Basic ${API_KEY}` } });
  t.equal(basic.status, 401, 'Basic scheme refused');
  await basic.text();
});

t.test('POST /api/publish reaches subscribers as {type, data, topic, seq, epoch}', async (t) => {
  const sub = await subscribed('alice', 'orders.eu.#');
  const other = await subscribed('bob', 'orders.eu.#', 'prod');
  const res = await api(service, 'POST', '/api/publish', { topic: 'orders.eu.created', type: 'order.created', data: { id: 7 } });
  t.equal(res.status, 200);
  t.equal(res.body.seq, 1);
  t.type(res.body.epoch, 'string');
  t.equal(res.body.tenant, 'default');
  const got = await sub.next((m) => m.type === 'order.created');
  t.same(got.data, { id: 7 });
  t.equal(got.topic, 'orders.eu.created');
  t.equal(got.seq, 1);
  t.equal(got.epoch, res.body.epoch);
  const prod = await api(service, 'POST', '/api/publish', { tenant: 'prod', topic: 'orders.eu.paid', type: 'order.paid', data: { id: 8 } });
  t.equal(prod.status, 200);
  const got2 = await other.next((m) => m.type === 'order.paid');
  t.equal(got2.tenant, 'prod');
  await new Promise((r) => setTimeout(r, 100));
  t.notOk(sub.messages.some((m) => m.type === 'order.paid'), 'the default tenant never sees prod');
  t.notOk(other.messages.some((m) => m.type === 'order.created'), 'prod never sees default');
  sub.ws.close();
  other.ws.close();
});

t.test('bad requests get 400/413/415 with a message naming the problem', async (t) => {
  const cases: Array<[string, string, unknown, number, RegExp]> = [
    ['POST', '/api/publish', '{"topic": "a",', 400, /not valid JSON/],
    ['POST', '/api/publish', '[1,2]', 400, /JSON object/],
    ['POST', '/api/publish', { type: 't', data: {} }, 400, /"topic" is required/],
    ['POST', '/api/publish', { topic: 'a', data: {} }, 400, /"type" is required/],
    ['POST', '/api/publish', { topic: 'a', type: 't' }, 400, /"data" is required/],
    ['POST', '/api/publish', { topic: 7, type: 't', data: {} }, 400, /"topic" must be a non-empty string/],
    ['POST', '/api/publish', { topic: 'orders.#', type: 't', data: {} }, 400, /./],
    ['POST', '/api/publish', { topic: 'a..b', type: 't', data: {} }, 400, /./],
    ['POST', '/api/publish', { topic: 'a', type: 't', data: 'x'.repeat(4000) }, 413, /limit/],
    ['POST', '/api/send', { type: 't', data: {} }, 400, /"user" is required/],
    ['POST', '/api/ticket', { user: 'alice', ttl: -5 }, 400, /"ttl" must be an integer/],
    ['POST', '/api/ticket', { user: 'alice', tenants: 'prod' }, 400, /"tenants"/],
    ['POST', '/api/disconnect', { user: 'alice', code: 1001 }, 400, /"code"/],
    ['POST', '/api/disconnect', { user: 'alice', code: 'x' }, 400, /"code"/],
    ['GET', '/api/history', undefined, 400, /"topic" is required/],
    ['GET', '/api/history?topic=a&since=yesterday', undefined, 400, /"since"/],
    ['GET', '/api/history?topic=a&topic=b', undefined, 400, /given 2 times/],
    ['GET', '/api/presence', undefined, 400, /"topic" is required/],
    ['GET', '/api/publish', undefined, 405, /POST/],
    ['POST', '/api/nothing', {}, 404, /no API route/],
  ];
  for (const [method, path, body, status, message] of cases) {
    const res = await api(service, method, path, body);
    t.equal(res.status, status, `${method} ${path} ${typeof body === 'string' ? body : JSON.stringify(body ?? '').slice(0, 60)} → ${status}`);
    t.match(res.body?.error?.message, message);
  }
  const form = await fetch(new URL('/api/publish', service.url), { method: 'POST', headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'text/plain' }, body: 'hi' });
  t.equal(form.status, 415, 'a body that is not JSON by its type → 415');
  await form.text();
  const empty = await api(service, 'POST', '/api/publish', '');
  t.equal(empty.status, 400, 'an empty body → 400');
  const health = await api(service, 'GET', '/health', undefined, null);
  t.equal(health.status, 200, 'the service is still up');
});

t.test('POST /api/send reaches every socket of a user; an unknown user is 404', async (t) => {
  const a1 = openSocket(service.wsUrl, ['bearer', tokenFor('carol')]);
  const a2 = openSocket(`${service.wsUrl}?token=${tokenFor('carol')}`);
  const other = openSocket(service.wsUrl, ['bearer', tokenFor('dave')]);
  await Promise.all([a1.opened, a2.opened, other.opened]);
  const res = await api(service, 'POST', '/api/send', { user: 'carol', type: 'notification', data: { message: 'New comment', level: 'info' } });
  t.equal(res.status, 200);
  t.equal(res.body.sockets, 2);
  for (const s of [a1, a2]) t.same((await s.next((m) => m.type === 'notification')).data, { message: 'New comment', level: 'info' });
  await new Promise((r) => setTimeout(r, 100));
  t.notOk(other.messages.some((m) => m.type === 'notification'), 'another user gets nothing');
  const unknown = await api(service, 'POST', '/api/send', { user: 'nobody', type: 'notification', data: {} });
  t.equal(unknown.status, 404);
  t.match(unknown.body.error.message, /no open connection/);
  for (const s of [a1, a2, other]) s.ws.close();
});

t.test('POST /api/broadcast reaches everyone (or one tenant)', async (t) => {
  const a = openSocket(service.wsUrl, ['bearer', tokenFor('erin')]);
  const b = openSocket(service.wsUrl, ['bearer', tokenFor('frank', { tenants: ['staging'] })]);
  await Promise.all([a.opened, b.opened]);
  const res = await api(service, 'POST', '/api/broadcast', { type: 'system.announcement', data: { text: 'Server maintenance' } });
  t.equal(res.status, 200);
  t.ok(res.body.sockets >= 2);
  for (const s of [a, b]) t.same((await s.next((m) => m.type === 'system.announcement')).data, { text: 'Server maintenance' });
  const scoped = await api(service, 'POST', '/api/broadcast', { tenant: 'prod', type: 'prod.only', data: {} });
  t.equal(scoped.status, 200);
  await a.next((m) => m.type === 'prod.only');
  await new Promise((r) => setTimeout(r, 100));
  t.notOk(b.messages.some((m) => m.type === 'prod.only'), 'a principal limited to staging does not get a prod broadcast');
  a.ws.close();
  b.ws.close();
});

t.test('POST /api/ticket: a one-time ticket, single use, short-lived', async (t) => {
  const res = await api(service, 'POST', '/api/ticket', { user: 'gina' });
  t.equal(res.status, 200);
  t.match(res.body.ticket, /^[\w-]{20,}$/);
  t.equal(res.body.expires_in, 60_000);
  const first = openSocket(`${service.wsUrl}?ticket=${res.body.ticket}`);
  await first.opened;
  const seen = await api(service, 'POST', '/api/send', { user: 'gina', type: 'hello', data: {} });
  t.equal(seen.body.sockets, 1, 'the ticket authenticated the socket as its user');
  await first.next((m) => m.type === 'hello');
  const again = openSocket(`${service.wsUrl}?ticket=${res.body.ticket}`);
  t.equal((await again.closed).code, 4401, 'a ticket works once');
  const short = await api(service, 'POST', '/api/ticket', { user: 'gina', ttl: 200 });
  await new Promise((r) => setTimeout(r, 500));
  const late = openSocket(`${service.wsUrl}?ticket=${short.body.ticket}`);
  t.equal((await late.closed).code, 4401, 'an expired ticket is refused');
  const forged = openSocket(`${service.wsUrl}?ticket=${'A'.repeat(43)}`);
  t.equal((await forged.closed).code, 4401, 'an unknown ticket is refused');
  first.ws.close();
});

t.test('GET /api/history and GET /api/presence', async (t) => {
  const sub = await subscribed('hank', 'room.42');
  for (let i = 1; i <= 3; i++) await api(service, 'POST', '/api/publish', { topic: 'room.42', type: 'chat', data: { i } });
  const all = await api(service, 'GET', '/api/history?topic=room.42');
  t.equal(all.status, 200);
  t.same(all.body.messages.map((m: any) => [m.seq, m.data.i, m.type]), [[1, 1, 'chat'], [2, 2, 'chat'], [3, 3, 'chat']]);
  t.equal(all.body.seq, 3);
  const after = await api(service, 'GET', '/api/history?topic=room.42&since=2');
  t.same(after.body.messages.map((m: any) => m.seq), [3], 'since=seq: what came after');
  const withEpoch = await api(service, 'GET', `/api/history?topic=room.42&since=${all.body.epoch}:1`);
  t.same(withEpoch.body.messages.map((m: any) => m.seq), [2, 3], 'since=epoch:seq');
  t.equal(withEpoch.body.recovered, true);
  const oldEpoch = await api(service, 'GET', '/api/history?topic=room.42&since=someOtherEpoch:2');
  t.same(oldEpoch.body.messages.map((m: any) => m.seq), [1, 2, 3], 'another epoch: the whole current epoch');
  t.equal(oldEpoch.body.recovered, false, 'and the old epoch is reported lost');
  await api(service, 'POST', '/api/publish', { topic: 'room.43', type: 'chat', data: { i: 4 } });
  const pattern = await api(service, 'GET', '/api/history?topic=room.%2A');
  t.equal(pattern.status, 200);
  t.same(pattern.body.messages.map((m: any) => [m.topic, m.seq]), [['room.42', 1], ['room.42', 2], ['room.42', 3], ['room.43', 1]], 'a wildcard: every matching topic, in publication order');
  t.type(pattern.body.offsetEpoch, 'string');
  const patternAfter = await api(service, 'GET', `/api/history?topic=room.%23&since=${pattern.body.offsetEpoch}:${pattern.body.offset - 1}`);
  t.same(patternAfter.body.messages.map((m: any) => [m.topic, m.seq]), [['room.43', 1]], 'since=offsetEpoch:offset for a pattern');
  const patternStale = await api(service, 'GET', `/api/history?topic=room.%23&since=otherHub:${pattern.body.offset}`);
  t.equal(patternStale.body.messages.length, 4, 'an offset of another offset epoch: everything held');
  const unknown = await api(service, 'GET', '/api/history?topic=never.published');
  t.equal(unknown.status, 200);
  t.same(unknown.body.messages, [], 'a topic never published: no messages');
  t.equal(unknown.body.epoch, null);
  const presence = await api(service, 'GET', '/api/presence?topic=room.42');
  t.equal(presence.status, 200);
  t.same(presence.body.users, { hank: 1 });
  t.equal(presence.body.connections, 1);
  const empty = await api(service, 'GET', '/api/presence?topic=nobody.here&tenant=prod');
  t.same(empty.body, { tenant: 'prod', topic: 'nobody.here', users: {}, connections: 0 });
  sub.ws.close();
});

t.test('GET /api/history answers in pages: limit, cursor, a byte cap, and 400 for a bad limit or cursor', async (t) => {
  const text = 'x'.repeat(1000);
  for (let i = 1; i <= 100; i++) {
    for (const topic of ['paged.a', 'paged.b', 'paged.c']) {
      const r = await api(service, 'POST', '/api/publish', { topic, type: 'chat', data: { i, text } });
      t.equal(r.status, 200, `publish ${topic} ${i}`);
      if (r.status !== 200) return;
    }
  }
  // An exact topic, 7 at a time: every message exactly once, in order, then no more.
  const seen: number[] = [];
  let page = await api(service, 'GET', '/api/history?topic=paged.a&limit=7');
  let pages = 1;
  t.equal(page.body.messages.length, 7, 'limit=7: seven messages');
  t.equal(page.body.more, true);
  for (;;) {
    seen.push(...page.body.messages.map((m: any) => m.seq));
    if (!page.body.more) break;
    page = await api(service, 'GET', `/api/history?topic=paged.a&limit=7&cursor=${encodeURIComponent(page.body.next)}`);
    t.equal(page.status, 200);
    if (++pages > 30) break;
  }
  t.same(seen, Array.from({ length: 100 }, (_, i) => i + 1), 'the pages together: seq 1..100, once each');
  t.equal(page.body.next, undefined, 'the last page has no cursor');
  // A pattern over 300 KB of history with the largest limit: the byte cap (256 KiB) cuts the page, the cursor goes on.
  const first = await api(service, 'GET', '/api/history?topic=paged.%23&limit=1000');
  t.equal(first.status, 200);
  t.ok(first.body.messages.length > 10 && first.body.messages.length < 300, `the first page stops at the byte cap (${first.body.messages.length} messages)`);
  t.ok(JSON.stringify(first.body.messages).length < 300 * 1024, 'no answer much larger than the cap');
  const all = [...first.body.messages];
  let next = first.body.next;
  for (let i = 0; next !== undefined && i < 10; i++) {
    const p = await api(service, 'GET', `/api/history?topic=paged.%23&limit=1000&cursor=${encodeURIComponent(next)}`);
    all.push(...p.body.messages);
    next = p.body.next;
  }
  t.equal(all.length, 300, 'every message of the three topics');
  t.equal(new Set(all.map((m: any) => `${m.topic}:${m.seq}`)).size, 300, 'each once');
  t.ok(all.every((m: any, i: number) => i === 0 || m.offset === undefined || m.offset > all[i - 1].offset), 'in publication order');
  // Bad input.
  for (const [query, why] of [
    ['topic=paged.a&limit=0', /"limit"|limit must be/],
    ['topic=paged.a&limit=5000', /limit must be an integer from 1 to 1000/],
    ['topic=paged.a&limit=abc', /"limit"/],
    ['topic=paged.a&cursor=not-a-cursor', /cursor/],
    [`topic=paged.b&cursor=${encodeURIComponent(first.body.next)}`, /cursor belongs to another topic/],
    [`topic=paged.a&since=3&cursor=${encodeURIComponent(first.body.next)}`, /either "since" or "cursor"/],
  ] as Array<[string, RegExp]>) {
    const r = await api(service, 'GET', `/api/history?${query}`);
    t.equal(r.status, 400, `${query}: 400`);
    t.match(r.body?.error?.message ?? JSON.stringify(r.body), why, `${query}: says why`);
  }
});

t.test('POST /api/disconnect closes a user\'s sockets (default 4000)', async (t) => {
  const a = openSocket(service.wsUrl, ['bearer', tokenFor('ivan')]);
  const b = openSocket(service.wsUrl, ['bearer', tokenFor('ivan')]);
  const c = openSocket(service.wsUrl, ['bearer', tokenFor('judy')]);
  await Promise.all([a.opened, b.opened, c.opened]);
  const res = await api(service, 'POST', '/api/disconnect', { user: 'ivan' });
  t.equal(res.status, 200);
  t.equal(res.body.sockets, 2);
  t.equal((await a.closed).code, 4000);
  t.equal((await b.closed).code, 4000);
  const custom = await api(service, 'POST', '/api/disconnect', { user: 'judy', code: 4003, reason: 'banned' });
  t.equal(custom.status, 200);
  t.same(await c.closed, { code: 4003, reason: 'banned' });
  const unknown = await api(service, 'POST', '/api/disconnect', { user: 'ivan' });
  t.equal(unknown.status, 404, 'no socket left: 404');
});

t.test('GET /metrics: Prometheus text with connections, messages, deliveries, close codes', async (t) => {
  const res = await fetch(new URL('/metrics', service.url), { headers: { Authorization: `Bearer ${API_KEY}` } });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  for (const name of ['wsengine_connections', 'wsengine_subscriptions', 'wsengine_messages_in_total', 'wsengine_messages_out_total', 'wsengine_deliveries_total', 'wsengine_drops_total', 'wsengine_slow_consumer_disconnects_total', 'wsengine_closes_total']) {
    t.match(text, new RegExp(`^# TYPE ${name} (counter|gauge)$`, 'm'), `${name} declared`);
  }
  t.match(text, /^wsengine_closes_total\{code="4000"\} 2$/m, 'the two 4000 closes above are counted');
  t.match(text, /^wsengine_closes_total\{code="4401"\} [1-9]/m, 'refused tickets are counted');
  const deliveries = Number(/^wsengine_deliveries_total (\d+)$/m.exec(text)?.[1]);
  t.ok(deliveries >= 5, `deliveries counted (${deliveries})`);
  t.match(text, /^# TYPE wsengine_history_bytes gauge$/m, 'history bytes declared (in-memory backplane)');
  const heldMessages = Number(/^wsengine_history_messages (\d+)$/m.exec(text)?.[1]);
  const heldBytes = Number(/^wsengine_history_bytes (\d+)$/m.exec(text)?.[1]);
  t.ok(heldMessages >= 3, `the messages published above are held (${heldMessages})`);
  t.ok(heldBytes >= heldMessages * 192, `and counted in bytes (${heldBytes})`);
  t.same(readExposition(text).problems, [], 'well-formed exposition (the strict checker of test/helpers/prom.ts)');
});

t.test('WebSocket paths: / and /ws upgrade, others get 404', async (t) => {
  const root = openSocket(service.url.replace(/^http/, 'ws'), ['bearer', aliceToken]);
  await root.opened;
  t.equal(root.ws.protocol, 'bearer', 'the subprotocol echoed is bearer, never the token');
  root.ws.close();
  const wrong = openSocket(service.url.replace(/^http/, 'ws') + 'elsewhere', ['bearer', aliceToken]);
  t.equal((await wrong.closed).code, 1006, 'no upgrade on another path');
  const page = await fetch(service.url);
  t.equal(page.status, 200);
  t.match(await page.text(), /<title>wsengine hub demo<\/title>/);
  const notFound = await fetch(new URL('/nothing', service.url));
  t.equal(notFound.status, 404);
  await notFound.text();
});

t.test('SIGTERM: close 1001 to every socket, exit status 0; the logs never show a secret', async (t) => {
  const s = openSocket(service.wsUrl, ['bearer', aliceToken]);
  await s.opened;
  const exit = await service.stop('SIGTERM');
  t.same(exit, { code: 0, signal: null });
  t.equal((await s.closed).code, 1001);
  const out = service.output();
  t.match(out, /event=start /);
  t.match(out, /event=config summary=/);
  t.match(out, /event=handshake_refused /, 'refused handshakes are logged');
  t.match(out, /event=shutdown signal=SIGTERM/);
  t.match(out, /event=stopped/);
  t.notOk(out.includes(SECRET), 'no JWT secret in the logs');
  t.notOk(out.includes(API_KEY), 'no API key in the logs');
  t.notOk(out.includes(aliceToken), 'no token in the logs');
  t.notOk(/eyJ[\w-]+\.[\w-]+\./.test(out), 'nothing that looks like a JWT');
  for (const line of out.trim().split('\n')) t.match(line, /^time=\S+ level=(info|warn|error) event=\w+/, 'one logfmt line per event');
});
