import t from 'tap';
import WsClient from 'ws';
import { createServer, type IncomingUpgrade } from '../lib/index.js';
import {
  DEFAULT_TOKEN_ORDER,
  extractToken,
  HUB_SUBPROTOCOLS,
  parseCookies,
  resolveTokenOptions,
  selectHubProtocol,
  TICKET_DEFAULTS,
  TicketStore,
  type Principal,
  type TokenRequest,
} from '../lib/hub/auth.js';
import { jwtResolver, signJwt } from '../lib/hub/jwt.js';
import { once } from './helpers/net.js';

/** A request as the server parses it: headers by lower-case name, the query, the offered subprotocols. */
function request(init: { headers?: Record<string, string>; url?: string; protocols?: string[] } = {}): TokenRequest {
  const headers = new Map(Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    header: (name) => headers.get(name.toLowerCase()),
    query: new URL(init.url ?? '/', 'http://x').searchParams,
    protocols: init.protocols ?? [],
  };
}

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln';

t.test('each source on its own', async (t) => {
  t.same(extractToken(request({ headers: { Authorization: `Bearer ${JWT}` } })), { token: JWT, source: 'header' });
  t.same(extractToken(request({ headers: { authorization: `bEaReR   ${JWT}  ` } })), { token: JWT, source: 'header' }, 'scheme in any case, extra spaces');
  t.same(extractToken(request({ headers: { authorization: `Bearer\t${JWT}` } })), { token: JWT, source: 'header' }, 'tab');
  t.same(extractToken(request({ protocols: ['bearer', JWT] })), { token: JWT, source: 'subprotocol', protocol: 'bearer' });
  t.same(extractToken(request({ protocols: ['llps.v1', 'at.AT_123'] })), { token: 'AT_123', source: 'subprotocol', protocol: 'llps.v1' });
  t.same(extractToken(request({ protocols: ['at.AT_123', 'llps.v1'] })), { token: 'AT_123', source: 'subprotocol', protocol: 'llps.v1' }, 'either order');
  t.same(extractToken(request({ url: '/ws?ticket=TICKET' })), { token: 'TICKET', source: 'ticket' });
  t.same(extractToken(request({ url: `/ws?token=${JWT}` })), { token: JWT, source: 'query' });
  t.same(extractToken(request({ url: '/ws?token=a%2Bb' })), { token: 'a+b', source: 'query' }, 'percent-decoded');
  t.same(extractToken(request({ headers: { cookie: `theme=dark; token=${JWT}` } })), { token: JWT, source: 'cookie' });
  t.same(extractToken(request({ url: '/ws?jwt=Q', headers: { cookie: 'sess=C' } }), { queryParam: 'jwt', order: ['query'] }), { token: 'Q', source: 'query' }, 'queryParam');
  t.same(extractToken(request({ url: '/ws?t=T' }), { ticketParam: 't' }), { token: 'T', source: 'ticket' }, 'ticketParam');
  t.same(extractToken(request({ headers: { cookie: 'sess=C' } }), { cookieName: 'sess' }), { token: 'C', source: 'cookie' }, 'cookieName');
});

t.test('no token, or nothing usable', async (t) => {
  t.equal(extractToken(request()), null, 'nothing');
  t.equal(extractToken(request({ headers: { authorization: 'Basic dXNlcjpwYXNz' } })), null, 'another scheme');
  t.equal(extractToken(request({ headers: { authorization: 'Bearer' } })), null, 'Bearer without a token');
  t.equal(extractToken(request({ headers: { authorization: 'Bearer    ' } })), null, 'Bearer and spaces');
  t.equal(extractToken(request({ headers: { authorization: 'BearerXYZ' } })), null, 'no space after the scheme');
  t.equal(extractToken(request({ protocols: ['bearer'] })), null, 'bearer without a token');
  t.equal(extractToken(request({ protocols: ['bearer', ''] })), null, 'bearer with an empty entry');
  t.equal(extractToken(request({ protocols: ['llps.v1'] })), null, 'llps.v1 without at.');
  t.equal(extractToken(request({ protocols: ['llps.v1', 'at.'] })), null, 'empty at.');
  t.equal(extractToken(request({ protocols: ['at.AT_1'] })), null, 'at. without llps.v1 (no protocol could be echoed)');
  t.equal(extractToken(request({ protocols: ['chat', 'json'] })), null, 'unrelated protocols');
  t.equal(extractToken(request({ url: '/ws?token=&ticket=' })), null, 'empty query values');
  t.equal(extractToken(request({ headers: { cookie: 'token=; other=1' } })), null, 'empty cookie');
  t.equal(extractToken(request({ headers: { authorization: `Bearer ${JWT}` } }), { order: ['query', 'cookie'] }), null, 'source not in order');
});

t.test('precedence, both ways', async (t) => {
  const all = request({
    headers: { authorization: 'Bearer H', cookie: 'token=C' },
    protocols: ['bearer', 'S'],
    url: '/ws?token=Q&ticket=T',
  });
  t.same(DEFAULT_TOKEN_ORDER, ['header', 'subprotocol', 'ticket', 'query', 'cookie']);
  t.equal(extractToken(all)!.source, 'header', 'seed 000: header first');
  const noHeader = request({ protocols: ['llps.v1', 'at.S'], url: '/ws?token=Q', headers: { cookie: 'token=C' } });
  t.same(extractToken(noHeader), { token: 'S', source: 'subprotocol', protocol: 'llps.v1' }, 'seed 000: subprotocol as the fallback');
  t.same(extractToken(request({ protocols: ['bearer', 'S'], url: '/ws?token=Q' })), { token: 'S', source: 'subprotocol', protocol: 'bearer' }, 'seed 001: subprotocol wins over query');
  t.equal(extractToken(request({ url: '/ws?token=Q&ticket=T' }))!.source, 'ticket', 'ticket before query');
  t.equal(extractToken(request({ url: '/ws?token=Q', headers: { cookie: 'token=C' } }))!.source, 'query', 'query before cookie');
  // Reversed order.
  const reversed = ['cookie', 'query', 'ticket', 'subprotocol', 'header'] as const;
  t.same(extractToken(all, { order: reversed }), { token: 'C', source: 'cookie' });
  t.same(extractToken(request({ headers: { authorization: 'Bearer H' }, url: '/?token=Q' }), { order: reversed }), { token: 'Q', source: 'query' });
  t.same(extractToken(request({ headers: { authorization: 'Bearer H' }, protocols: ['bearer', 'S'] }), { order: reversed }), { token: 'S', source: 'subprotocol', protocol: 'bearer' });
  t.same(extractToken(all, { order: ['query', 'header'] }), { token: 'Q', source: 'query' });
});

t.test('options are checked', async (t) => {
  t.throws(() => extractToken(request(), { order: ['header', 'body' as never] }), { name: 'TypeError', message: /body/ });
  t.throws(() => extractToken(request(), { order: ['header', 'header'] }), { name: 'TypeError', message: /twice/ });
  t.throws(() => extractToken(request(), { order: 'header' as never }), TypeError);
  t.throws(() => extractToken(request(), { queryParam: '' }), TypeError);
  t.throws(() => extractToken(request(), { cookieName: 7 as never }), TypeError);
  t.throws(() => resolveTokenOptions(null as never), TypeError);
  t.same(resolveTokenOptions(), { order: DEFAULT_TOKEN_ORDER, queryParam: 'token', ticketParam: 'ticket', cookieName: 'token' });
});

t.test('selectHubProtocol echoes a protocol name, never a token', async (t) => {
  t.equal(selectHubProtocol(['bearer', JWT]), 'bearer');
  t.equal(selectHubProtocol(['llps.v1', 'at.AT_1']), 'llps.v1');
  t.equal(selectHubProtocol(['at.AT_1', 'llps.v1']), 'llps.v1');
  t.equal(selectHubProtocol(['llps.v1']), 'llps.v1', 'header auth with the protocol alone');
  t.equal(selectHubProtocol(['chat']), undefined, 'unknown protocol');
  t.equal(selectHubProtocol([]), undefined);
  // A token that happens to look like a protocol name is still never echoed.
  t.equal(selectHubProtocol(['bearer', 'llps.v1']), 'bearer', 'the entry after bearer is a token');
  t.equal(selectHubProtocol(['bearer', 'chat'], ['chat']), undefined, 'the token slot is skipped even when it matches');
  t.equal(selectHubProtocol(['chat', 'bearer', 'chat'], ['chat']), 'chat', 'a real entry of the same name is fine');
  t.equal(selectHubProtocol(['at.x', 'chat'], ['chat', 'at.x']), 'chat', 'at. entries are never echoed');
  t.equal(selectHubProtocol(['json', 'bearer', JWT], ['json', 'bearer']), 'json', 'client order wins');
  t.same(HUB_SUBPROTOCOLS, ['llps.v1', 'bearer']);
  t.throws(() => selectHubProtocol('bearer' as never), TypeError);
  for (const offered of [['bearer', JWT], ['llps.v1', `at.${JWT}`], [JWT, 'bearer', JWT]]) {
    const chosen = selectHubProtocol(offered);
    t.not(chosen, JWT);
    t.notOk(chosen?.includes(JWT));
  }
});

t.test('over a socket: the token rides in the subprotocol, the 101 echoes only the name', async (t) => {
  const secret = 'subprotocol-test-secret-32-bytes';
  const resolve = jwtResolver({ secret });
  const tickets = new TicketStore();
  t.teardown(() => tickets.close());
  const seen: Array<{ user: string; source: string; protocol: string }> = [];
  const server = createServer({
    heartbeat: false,
    selectProtocol: (offered) => selectHubProtocol(offered),
    authenticate: (req: IncomingUpgrade) => {
      const found = extractToken(req);
      if (!found) return { reject: true, status: 401 };
      const principal = found.source === 'ticket' ? tickets.redeem(found.token) : resolve(found.token);
      if (!principal) return { reject: true, status: 401 };
      return { principal: { ...principal, source: found.source } };
    },
  }, (conn) => {
    const p = conn.principal as Principal & { source: string };
    seen.push({ user: p.user, source: p.source, protocol: conn.protocol });
    conn.close(1000);
  });
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 200 }));
  const jwt = signJwt({ sub: 'alice' }, secret, { expiresIn: 60 });

  // ws validates the echoed protocol exactly like a browser: it fails the connection on a wrong one.
  const open = async (url: string, protocols: string[], headers?: Record<string, string>) => {
    const ws = new WsClient(url, protocols, { headers });
    const [opened] = await Promise.race([once<[]>(ws, 'open').then(() => [true]), once<[Error]>(ws, 'error').then(() => [false])]);
    const protocol = ws.protocol;
    ws.terminate();
    return { opened, protocol };
  };
  t.same(await open(`ws://127.0.0.1:${port}/`, ['bearer', jwt]), { opened: true, protocol: 'bearer' });
  t.same(await open(`ws://127.0.0.1:${port}/`, ['llps.v1', `at.${jwt}`]), { opened: true, protocol: 'llps.v1' });
  t.same(await open(`ws://127.0.0.1:${port}/`, ['llps.v1'], { authorization: `Bearer ${jwt}` }), { opened: true, protocol: 'llps.v1' });
  const ticket = tickets.issue({ user: 'bob' });
  t.same(await open(`ws://127.0.0.1:${port}/?ticket=${ticket}`, []), { opened: true, protocol: '' });
  t.same(await open(`ws://127.0.0.1:${port}/?ticket=${ticket}`, []), { opened: false, protocol: '' }, 'ticket used twice');
  t.same(await open(`ws://127.0.0.1:${port}/`, ['bearer', `${jwt}x`]), { opened: false, protocol: '' }, 'bad token refused');
  t.same(seen.map((s) => `${s.user}/${s.source}/${s.protocol}`), [
    'alice/subprotocol/bearer',
    'alice/subprotocol/llps.v1',
    'alice/header/llps.v1',
    'bob/ticket/',
  ]);
});

t.test('tickets: random, single use, expiring, bounded', async (t) => {
  let now = 1_000_000;
  const store = new TicketStore({ now: () => now, ttl: 1000, max: 3 });
  const alice: Principal = { user: 'alice', tenants: ['prod'] };
  const a = store.issue(alice);
  t.match(a, /^[A-Za-z0-9_-]{43}$/, '32 random bytes in base64url');
  t.equal(Buffer.from(a, 'base64url').length, 32);
  t.equal(store.size, 1);
  t.equal(store.redeem(a), alice, 'first redeem');
  t.equal(store.redeem(a), null, 'second redeem');
  t.equal(store.size, 0);

  const b = store.issue(alice);
  now += 999;
  t.equal(store.redeem(b), alice, 'just before expiry');
  const c = store.issue(alice);
  now += 1000;
  t.equal(store.redeem(c), null, 'at expiry');
  const d = store.issue(alice, 5000);
  now += 4999;
  t.equal(store.redeem(d), alice, 'per-ticket ttl');

  // Lazy sweep: expired tickets leave the store without any timer.
  store.issue(alice);
  store.issue(alice);
  t.equal(store.size, 2);
  now += 1000;
  t.equal(store.size, 0, 'expired tickets swept');

  // Bounded: the fourth ticket evicts the oldest.
  const t1 = store.issue({ user: 'u1' });
  const t2 = store.issue({ user: 'u2' });
  const t3 = store.issue({ user: 'u3' });
  const t4 = store.issue({ user: 'u4' });
  t.equal(store.size, 3, 'never more than max');
  t.equal(store.redeem(t1), null, 'the oldest was dropped');
  t.same([store.redeem(t2)?.user, store.redeem(t3)?.user, store.redeem(t4)?.user], ['u2', 'u3', 'u4']);
  // When full of expired tickets, issuing sweeps them instead of evicting a live one.
  store.issue({ user: 'long' }, 10_000);
  store.issue({ user: 'short' }, 10);
  store.issue({ user: 'short' }, 10);
  now += 20;
  const live = store.issue({ user: 'new' });
  t.equal(store.size, 2, 'expired swept, long-lived kept');
  t.equal(store.redeem(live)?.user, 'new');

  // Distinct tickets.
  const many = new Set(Array.from({ length: 1000 }, () => new TicketStore().issue(alice)));
  t.equal(many.size, 1000, 'no repeats');

  // Untrusted input never throws.
  for (const bad of [undefined, null, 42, '', 'x'.repeat(43), 'x'.repeat(10_000), {}, a.slice(0, 42)]) {
    t.equal(store.redeem(bad as string), null, `redeem(${typeof bad})`);
  }
  store.close();
  t.equal(store.size, 0, 'close forgets everything');
  t.throws(() => store.issue(alice), /closed/);
  store.close();

  t.throws(() => new TicketStore({ ttl: 0 }), RangeError);
  t.throws(() => new TicketStore({ max: 1.5 }), RangeError);
  t.throws(() => new TicketStore({ max: -1 }), RangeError);
  t.throws(() => new TicketStore({ now: 5 as never }), TypeError);
  const fresh = new TicketStore();
  t.throws(() => fresh.issue({ user: '' }), TypeError);
  t.throws(() => fresh.issue(null as never), TypeError);
  t.throws(() => fresh.issue(alice, Number.NaN), RangeError);
  t.equal(TICKET_DEFAULTS.ttl, 60_000);
  t.equal(TICKET_DEFAULTS.max, 10_000);
});

t.test('a default-clock ticket store creates no timer', async (t) => {
  const timers = () => process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;
  const before = timers();
  const store = new TicketStore({ ttl: 30 });
  const ticket = store.issue({ user: 'u' });
  for (let i = 0; i < 100; i++) store.issue({ user: `u${i}` });
  t.equal(timers(), before, 'issuing tickets starts no timer');
  t.equal(store.size, 101);
  await new Promise((resolve) => setTimeout(resolve, 60));
  t.equal(store.redeem(ticket), null, 'expired by the real clock');
  t.equal(store.size, 0);
  store.close();
});

t.test('parseCookies', async (t) => {
  const plain = (value: Record<string, string>) => ({ ...value });
  t.same(plain(parseCookies('a=1; b=2')), { a: '1', b: '2' });
  t.same(plain(parseCookies('a=1;b=2;  c = 3 ')), { a: '1', b: '2', c: '3' }, 'spacing');
  t.same(plain(parseCookies('a="quoted value"')), { a: 'quoted value' }, 'quotes');
  t.same(plain(parseCookies('a=x=y=z')), { a: 'x=y=z' }, '= in the value');
  t.same(plain(parseCookies('a=%E2%82%AC; b=%ZZ; c=100%')), { a: '€', b: '%ZZ', c: '100%' }, 'escapes, and malformed ones kept');
  t.same(plain(parseCookies('a=1; a=2')), { a: '1' }, 'first wins');
  t.same(plain(parseCookies('novalue; =nameless; ;;; b=2; c=')), { b: '2', c: '' }, 'junk skipped');
  t.same(plain(parseCookies('')), {});
  t.same(plain(parseCookies(undefined)), {});
  t.same(plain(parseCookies(42 as never)), {}, 'non-string');

  const hostile = parseCookies('__proto__=polluted; constructor=c; toString=t; hasOwnProperty=h; token=T');
  t.equal(Object.getPrototypeOf(hostile), null, 'no prototype');
  t.notOk(Object.hasOwn(hostile, '__proto__'), '__proto__ ignored');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
  t.equal(hostile.constructor, 'c', 'constructor is just a cookie');
  t.equal(hostile.toString, 't');
  t.equal(hostile.token, 'T');
  const empty = parseCookies('x=1');
  t.equal(empty.constructor, undefined, 'no inherited names');
  t.equal(empty.__proto__, undefined, 'no inherited __proto__');
  t.equal(extractToken(request({ headers: { cookie: '__proto__=x' } }), { cookieName: '__proto__' }), null);
  t.equal(extractToken(request({ headers: { cookie: 'a=1' } }), { cookieName: 'toString' }), null, 'inherited names are not cookies');

  const long = `${'k=v; '.repeat(20_000)}token=last`;
  t.equal(parseCookies(long).token, 'last', 'a long header');
});
