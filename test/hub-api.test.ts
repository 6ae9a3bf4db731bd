/**
 * Hub API additions over real sockets: the `refused` event (token, ticket, auth deadline, origin, connection limit,
 * rate limit) with the request and never the token; the resolver gets the request for first-message auth and
 * refresh; `history()` with a bare seq; `publish()` resolves with `ts`; the rate limit's separate burst.
 */
import t from 'tap';
import type { HubRefusal, Principal } from '../lib/hub/index.js';
import type { IncomingUpgrade } from '../lib/transport/server.js';
import { open, sleep, startHub, token } from './helpers/hub.js';

t.test('refused: bad token, used ticket, auth deadline, origin — with the request, never the token', async (t) => {
  const { hub, url } = await startHub({ limits: { authDeadline: 200 }, origins: ['https://app.example'] });
  t.teardown(() => hub.close());
  const seen: HubRefusal[] = [];
  hub.on('refused', (r) => seen.push(r));
  const origin = { origin: 'https://app.example' };

  const bad = await open(`${url}?token=not-a-jwt&room=1`, undefined, origin);
  t.equal((await bad.closed).code, 4401);
  const ticket = hub.issueTicket({ user: 'tina' });
  const first = await open(`${url}?ticket=${ticket}`, undefined, origin);
  const again = await open(`${url}?ticket=${ticket}`, undefined, origin);
  t.equal((await again.closed).code, 4401, 'a ticket works once');
  const silent = await open(`${url}?silent=1`, undefined, origin);
  t.equal((await silent.closed).code, 4401, 'no auth message in time');
  const foreign = await open(`${url}?token=${token('f')}`, undefined, { origin: 'https://evil.example' }).then(
    () => 'opened',
    () => 'refused',
  );
  t.equal(foreign, 'refused', 'a foreign origin gets no connection');
  await sleep(50);

  t.same(
    seen.map((r) => [r.reason, r.code]),
    [
      ['token', 4401],
      ['ticket', 4401],
      ['auth_deadline', 4401],
      ['origin', 403],
    ],
  );
  t.equal(seen[0].request?.query.get('room'), '1', 'the request of the refused handshake');
  t.equal(seen[2].request?.query.get('silent'), '1', 'the auth-deadline refusal carries its request');
  t.equal(seen[3].request?.origin, 'https://evil.example');
  t.ok(seen.slice(0, 3).every((r) => typeof r.connectionId === 'string'), 'connection ids of the closed connections');
  // The request is as received (a query token is in its url); the refusal itself names no token or ticket.
  const dump = JSON.stringify(seen.map((r) => ({ ...r, request: undefined })));
  t.notMatch(dump, ticket, 'never the ticket');
  t.notMatch(dump, 'not-a-jwt', 'never the token');
  t.ok(seen.every((r) => Object.keys(r).every((k) => ['reason', 'request', 'code', 'connectionId', 'user'].includes(k))), 'no other fields');
  first.ws.close();
});

t.test('refused: connection limit (oldest closed) and repeated rate limiting', async (t) => {
  const { hub, url } = await startHub({ limits: { maxConnectionsPerUser: 1, rate: { messages: 1, interval: 60_000, burst: 3 }, maxRateViolations: 2 } });
  t.teardown(() => hub.close());
  const seen: HubRefusal[] = [];
  hub.on('refused', (r) => seen.push(r));
  const old = await open(`${url}?token=${token('u')}`);
  await sleep(50);
  const oldId = [...hub.server.clients].map((c) => (c.data as { id: string }).id)[0];
  const fresh = await open(`${url}?token=${token('u')}&n=2`);
  t.equal((await old.closed).code, 4429, 'the oldest is closed');
  const limit = seen.find((r) => r.reason === 'connection_limit');
  t.equal(limit?.connectionId, oldId, 'names the closed connection');
  t.equal(limit?.user, 'u');
  t.equal(limit?.request?.query.get('n'), '2', 'with the new connection’s request');

  // burst 3: three pings pass back to back, the fourth and fifth are limited, the fifth closes (2 violations).
  for (let i = 0; i < 5; i++) fresh.send({ type: 'ping', data: {}, request_id: i });
  t.equal((await fresh.closed).code, 4429);
  t.same(
    fresh.json.filter((m) => m.request_id !== undefined && m.type === 'pong').map((m) => m.request_id),
    [0, 1, 2],
    'the burst of 3 was answered',
  );
  t.ok(fresh.json.some((m) => m.type === 'error' && m.data.code === 'rate_limited'), 'then rate_limited');
  t.ok(seen.some((r) => r.reason === 'rate_limit' && r.code === 4429 && r.user === 'u'), 'refused: rate_limit');
});

t.test('the resolver gets the upgrade request for first-message auth and refresh', async (t) => {
  const calls: Array<{ token: string; path: string | undefined }> = [];
  const { hub, url } = await startHub({
    authenticate: (tok: string, request: IncomingUpgrade): Principal | null => {
      calls.push({ token: tok, path: request?.url });
      return tok.startsWith('good') ? { user: 'r' } : null;
    },
  });
  t.teardown(() => hub.close());
  const c = await open(`${url}?first=1`);
  c.send({ type: 'auth', token: 'good-1' });
  await c.next((m) => m.type === 'auth_ok');
  c.send({ type: 'refresh', data: { token: 'good-2' }, request_id: 'r' });
  await c.next((m) => m.request_id === 'r');
  t.same(calls, [
    { token: 'good-1', path: '/ws?first=1' },
    { token: 'good-2', path: '/ws?first=1' },
  ]);
  c.ws.close();
});

t.test('history with a bare seq, or none; publish resolves with ts', async (t) => {
  const { hub } = await startHub();
  t.teardown(() => hub.close());
  const before = Date.now();
  const p = [];
  for (let i = 1; i <= 5; i++) p.push(await hub.publish({ topic: 'h', type: 'n', data: { i } }));
  t.ok(p.every((x) => x.ts >= before && x.ts <= Date.now()), 'ts is the publication time');
  const all = await hub.history('h');
  t.same(
    all.messages.map((m) => [m.seq, m.ts]),
    p.map((x) => [x.seq, x.ts]),
    'no since: everything held, with the same ts',
  );
  const after3 = await hub.history('h', { since: 3 });
  t.same(
    after3.messages.map((m) => m.seq),
    [4, 5],
    'a bare seq is in the current epoch',
  );
  t.equal(after3.recovered, true);
  t.equal(after3.position?.epoch, p[0].epoch);
  const otherEpoch = await hub.history('h', { since: { epoch: 'gone', seq: 3 } });
  t.equal(otherEpoch.recovered, false, 'another epoch cannot be resumed');
  await t.rejects(hub.history('h', { since: -1 }), RangeError);
  await t.rejects(hub.history('h', { since: { epoch: 1 } as never }), TypeError);
});

t.test('history of a wildcard pattern: every matching topic in publication order, with gaps per topic', async (t) => {
  const { hub } = await startHub({ history: { size: 2 } });
  t.teardown(() => hub.close());
  for (const topic of ['orders.eu', 'orders.us', 'other', 'orders.eu', 'orders.eu.x', 'orders.eu']) await hub.publish({ topic, type: 'o', data: { topic } });
  await hub.publish({ topic: 'orders.eu', tenant: 'staging', type: 'o', data: {} });
  const star = await hub.history('orders.*');
  t.same(star.messages.map((m) => [m.topic, m.seq, m.offset]), [['orders.us', 1, 2], ['orders.eu', 2, 4], ['orders.eu', 3, 6]], 'offset order across topics; no other tenant');
  t.same(star.gaps.map((g) => [g.topic, g.from, g.to]), [['orders.eu', 1, 1]], 'the message no longer held, named with its topic');
  t.equal(star.recovered, false);
  t.equal(star.position, undefined, 'no single position for a pattern');
  t.equal(star.offset, 6, 'the tenant offset now');
  t.type(star.offsetEpoch, 'string');
  const hash = await hub.history('orders.#');
  t.same(hash.messages.map((m) => m.topic), ['orders.us', 'orders.eu', 'orders.eu.x', 'orders.eu'], '# matches deeper topics and the prefix itself');
  const after = await hub.history('orders.#', { since: 4 });
  t.same(after.messages.map((m) => [m.topic, m.seq]), [['orders.eu.x', 1], ['orders.eu', 3]], 'a bare number is a tenant offset');
  t.same(after.gaps, []);
  const positions = await hub.history('orders.#', { since: { positions: { 'orders.eu': { epoch: star.messages[1].epoch, seq: 2 } } } });
  t.same(positions.messages.map((m) => [m.topic, m.seq]), [['orders.eu', 3]], 'positions alone: only the topics named');
  const stale = await hub.history('orders.*', { since: { offset: 5, offsetEpoch: 'another-hub' } });
  t.same(stale.messages.length, 3, 'an offset of another offset epoch: everything held');
  await t.rejects(hub.history('orders.*', { since: -1 }), RangeError);
  await t.rejects(hub.history('orders.*', { since: {} }), TypeError);
  await t.rejects(hub.history('orders.*', { since: { offset: 'x' } as never }), TypeError);
  await t.rejects(hub.history('orders.#.#.', {}), RangeError);
});

t.test('limits.rate.burst is validated', async (t) => {
  await t.rejects(startHub({ limits: { rate: { messages: 10, interval: 1000, burst: 0 } } }), RangeError);
  await t.rejects(startHub({ limits: { rate: { messages: 10, interval: 1000, burst: 0.5 } } }), RangeError);
});
