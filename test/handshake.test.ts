import t from 'tap';
import {
  acceptKey,
  checkUpgradeRequest,
  checkUpgradeResponse,
  HeadError,
  HeadParser,
  isRefusal,
  isValidKey,
  parseExtensions,
  parseHead,
  parseProtocols,
  redirectHeaders,
  upgradeRequest,
  type HttpHead,
} from '../lib/index.js';
import { LINEAR_GROWTH_BOUND, workGrowth } from './helpers/work.js';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

function request(lines: string[], start = 'GET /chat HTTP/1.1'): HttpHead {
  return parseHead(Buffer.from([start, ...lines].join('\r\n') + '\r\n', 'latin1'), 'request');
}

const GOOD = ['Host: example.com', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13'];

t.test('Sec-WebSocket-Accept matches RFC 6455 §1.3', async (t) => {
  t.equal(acceptKey(KEY), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
});

t.test('the one-shot SHA-1 (crypto.hash) and the Hash-object fallback agree', async (t) => {
  const { sha1Base64, sha1Base64Streaming } = await import('../lib/core/handshake.js');
  const crypto = await import('node:crypto');
  t.equal(sha1Base64Streaming(KEY + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=', 'fallback: RFC 6455 §1.3 example');
  t.equal(typeof (crypto as { hash?: unknown }).hash === 'function', sha1Base64 !== sha1Base64Streaming, 'the one-shot path is taken exactly when Node has crypto.hash');
  for (let i = 0; i < 50; i++) {
    const key = crypto.randomBytes(16).toString('base64');
    t.equal(sha1Base64(key), sha1Base64Streaming(key), `key ${key}`);
  }
});

t.test('accept values agree with createHash over random keys, and the plain 101 bytes with acceptResponse', async (t) => {
  const { plainAcceptResponse, sha1Base64Streaming, acceptResponse: response } = await import('../lib/core/handshake.js');
  const crypto = await import('node:crypto');
  const keys = [KEY, 'AAAAAAAAAAAAAAAAAAAAAA==', '//////////////////////==', '++++++++++++++++++++++==', 'x'.repeat(24), '~'.repeat(24)];
  for (let i = 0; i < 2000; i++) keys.push(crypto.randomBytes(16).toString('base64'));
  let mismatches = 0;
  for (const key of keys) {
    if (acceptKey(key) !== sha1Base64Streaming(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')) mismatches++;
  }
  t.equal(mismatches, 0, `${keys.length} keys: acceptKey equals createHash('sha1')…digest('base64')`);
  for (const key of keys.slice(0, 50)) t.equal(plainAcceptResponse(key).toString('latin1'), response(key), `101 for ${key}`);
  // Odd keys (length, non-ASCII) hash the same way.
  for (const key of ['', 'short', KEY + 'x', 'é'.repeat(24), '\u{1F600}'.repeat(12)]) {
    t.equal(acceptKey(key), sha1Base64Streaming(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'), `odd key ${JSON.stringify(key)}`);
  }
});

t.test('header names in any case are found under their lower-case name (known and other names)', async (t) => {
  const head = request([
    'HOST: example.com', 'uPgRaDe: websocket', 'Connection: Upgrade', `SEC-WEBSOCKET-KEY: ${KEY}`, 'Sec-Websocket-Version: 13',
    'X-Custom-Thing: 1', 'x-custom-thing: 2', 'Hosts: not-host', 'Origi: x',
  ]);
  t.same([...head.headers.keys()], ['host', 'upgrade', 'connection', 'sec-websocket-key', 'sec-websocket-version', 'x-custom-thing', 'hosts', 'origi']);
  t.same(head.headers.get('x-custom-thing'), ['1', '2']);
  t.notOk(isRefusal(checkUpgradeRequest(head)));
  t.throws(() => request(['Ho(t: example.com']), { status: 400, message: 'invalid header name' });
  t.throws(() => request(['Hos\u00e9: example.com']), { status: 400, message: 'invalid header name' });
});

t.test('a valid request is accepted with its protocols, extensions and origin', async (t) => {
  const r = checkUpgradeRequest(
    request([...GOOD, 'Origin: https://app.example', 'Sec-WebSocket-Protocol: chat, superchat', 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo']),
  );
  t.notOk(isRefusal(r));
  if (isRefusal(r)) return;
  t.same(r.protocols, ['chat', 'superchat']);
  t.same(r.extensions, [{ name: 'permessage-deflate', params: [['client_max_window_bits', true]] }, { name: 'x-foo', params: [] }]);
  t.equal(r.origin, 'https://app.example');
  t.equal(r.key, KEY);
});

t.test('refusals carry the right status (attack cases 16, 21)', async (t) => {
  const without = (name: string): string[] => GOOD.filter((l) => !l.toLowerCase().startsWith(name.toLowerCase()));
  const cases: Array<[string, HttpHead, number]> = [
    ['POST', request(GOOD, 'POST /chat HTTP/1.1'), 405],
    ['HTTP/1.0', request(GOOD, 'GET /chat HTTP/1.0'), 400],
    ['no Host', request(without('Host')), 400],
    ['two Hosts', request([...GOOD, 'Host: other']), 400],
    ['no Upgrade', request(without('Upgrade')), 400],
    ['Upgrade: h2c', request([...without('Upgrade'), 'Upgrade: h2c']), 400],
    ['duplicated Upgrade', request([...GOOD, 'Upgrade: websocket']), 400],
    ['no Connection', request(without('Connection')), 400],
    ['Connection: keep-alive', request([...without('Connection'), 'Connection: keep-alive']), 400],
    ['no key', request(without('Sec-WebSocket-Key')), 400],
    ['duplicated key', request([...GOOD, `Sec-WebSocket-Key: ${KEY}`]), 400],
    ['key of 15 bytes', request([...without('Sec-WebSocket-Key'), `Sec-WebSocket-Key: ${Buffer.alloc(15).toString('base64')}`]), 400],
    ['key of 17 bytes', request([...without('Sec-WebSocket-Key'), `Sec-WebSocket-Key: ${Buffer.alloc(17).toString('base64')}`]), 400],
    ['key not base64', request([...without('Sec-WebSocket-Key'), 'Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==']), 400],
    ['no version', request(without('Sec-WebSocket-Version')), 400],
    ['version 8', request([...without('Sec-WebSocket-Version'), 'Sec-WebSocket-Version: 8']), 426],
    ['duplicated version', request([...GOOD, 'Sec-WebSocket-Version: 13']), 400],
    ['bad protocol list', request([...GOOD, 'Sec-WebSocket-Protocol: a b']), 400],
    ['duplicated protocol', request([...GOOD, 'Sec-WebSocket-Protocol: a, a']), 400],
    ['bad extensions', request([...GOOD, 'Sec-WebSocket-Extensions: permessage-deflate; ="x"']), 400],
  ];
  for (const [name, head, status] of cases) {
    const r = checkUpgradeRequest(head);
    t.equal(isRefusal(r) ? r.status : 101, status, name);
    if (status === 426 && isRefusal(r)) t.equal(r.headers['Sec-WebSocket-Version'], '13', '426 names version 13');
  }
  t.ok(isValidKey(KEY));
  t.notOk(isValidKey(KEY.slice(0, 23)));
});

t.test('origin allow-list: missing, null and foreign origins get 403 (attack case 26)', async (t) => {
  const origins = ['https://app.example'];
  t.notOk(isRefusal(checkUpgradeRequest(request([...GOOD, 'Origin: https://APP.example']), { origins })), 'case-insensitive match');
  for (const lines of [GOOD, [...GOOD, 'Origin: null'], [...GOOD, 'Origin: https://evil.example']]) {
    const r = checkUpgradeRequest(request(lines), { origins });
    t.equal(isRefusal(r) && r.status, 403);
  }
});

t.test('head parser: any chunking, limits, malformed heads', async (t) => {
  const raw = Buffer.from(['GET /a?b=1 HTTP/1.1', ...GOOD, '', 'EXTRA'].join('\r\n'), 'latin1');
  for (let size = 1; size <= raw.length; size++) {
    const p = new HeadParser('request');
    let head: HttpHead | null = null;
    for (let at = 0; at < raw.length && head === null; at += size) head = p.push(raw.subarray(at, at + size));
    if (head === null || head.target !== '/a?b=1' || head.headers.get('upgrade')?.[0] !== 'websocket') {
      t.fail(`chunks of ${size}`);
      break;
    }
    // Bytes after the head are kept for the protocol, whatever the split.
    const rest = Buffer.concat([p.rest, raw.subarray(Math.ceil((raw.indexOf('\r\n\r\n') + 4) / size) * size)]);
    if (rest.toString() !== 'EXTRA') t.fail(`rest with chunks of ${size}: ${JSON.stringify(rest.toString())}`);
  }
  t.pass('every chunk size parses the same head');
  const statusOf = (fn: () => unknown): number | string => {
    try {
      fn();
      return 'no throw';
    } catch (e) {
      return e instanceof HeadError ? e.status : String(e);
    }
  };
  const big = new HeadParser('request', { maxHeadSize: 1024 });
  t.equal(statusOf(() => big.push(Buffer.alloc(1025, 0x61))), 431, 'head over the limit → 431');
  const many = ['GET / HTTP/1.1', ...Array.from({ length: 2001 }, (_, i) => `X-${i}: y`), '', ''].join('\r\n');
  t.equal(statusOf(() => new HeadParser('request', { maxHeadSize: 1 << 20 }).push(Buffer.from(many))), 431, '2,001 header lines → 431');
  const bad = ['GET / HTTP/1.1\r\n folded: x\r\n\r\n', 'GET / HTTP/1.1\r\nno colon\r\n\r\n', 'GET  HTTP/1.1\r\n\r\n', 'GET / HTTP/2.0\r\n\r\n', 'GET / HTTP/1.1\r\nBad Name: x\r\n\r\n', 'GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n'];
  for (const b of bad) t.equal(statusOf(() => new HeadParser('request').push(Buffer.from(b))), 400, JSON.stringify(b));
});

t.test('tokenizers: linear time on hostile 64 KB values (attack case 17)', async (t) => {
  // Counted work, not the clock (test/helpers/work.ts): characters read, spans searched, bytes copied. 10× the
  // input costs ~10× the work when linear and ~100× when quadratic, the same on an idle or a loaded machine.
  const patterns = [' ', ',', '\\', '"', ';', 'a;', 'a=', 'a="\\', ', ;'];
  for (const p of patterns) {
    const { small, large, ratio } = workGrowth((n) => {
      const s = p.repeat(Math.ceil(n / p.length));
      return () => {
        parseExtensions(s);
        parseProtocols(s);
        parseExtensions('x; a="' + s);
      };
    }, 65536, 655360);
    t.ok(ratio < LINEAR_GROWTH_BOUND, `${JSON.stringify(p)}: 10× input costs ${ratio.toFixed(1)}× the work (${small} → ${large}), < ${LINEAR_GROWTH_BOUND}`);
  }
});

t.test('tokenizers: names like __proto__ stay plain data (attack case 18)', async (t) => {
  const parsed = parseExtensions('__proto__; constructor=1; toString, constructor; __proto__="x"');
  t.same(parsed, [
    { name: '__proto__', params: [['constructor', '1'], ['tostring', true]] },
    { name: 'constructor', params: [['__proto__', 'x']] },
  ]);
  t.equal(({} as Record<string, unknown>).constructor, Object, 'Object.prototype untouched');
  const head = request([...GOOD, '__proto__: polluted', 'constructor: x']);
  t.same(head.headers.get('__proto__'), ['polluted']);
  t.equal(({} as Record<string, unknown>).polluted, undefined);
});

t.test('extension and protocol syntax', async (t) => {
  t.same(parseExtensions('a; b="c", d'), [{ name: 'a', params: [['b', 'c']] }, { name: 'd', params: [] }]);
  t.same(parseExtensions('a; b="c\\d"'), [{ name: 'a', params: [['b', 'cd']] }], 'quoted-pair');
  t.same(parseExtensions(' , a , '), [{ name: 'a', params: [] }], 'empty list elements ignored');
  for (const bad of ['a;', 'a; b="x', 'a; b="a b"', 'a b', ';a', 'a; b=', 'a,,b c']) t.equal(parseExtensions(bad), null, JSON.stringify(bad));
  t.same(parseProtocols(' chat ,superchat'), ['chat', 'superchat']);
  t.equal(parseProtocols('a/b'), null);
  t.equal(parseProtocols(' , '), null);
});

t.test('client side: the request, and every check of the 101', async (t) => {
  const req = upgradeRequest(new URL('wss://example.com:8443/p?q=1'), KEY, { protocols: ['a', 'b'], origin: 'https://o', headers: { Authorization: 'Bearer x' } });
  t.match(req, /^GET \/p\?q=1 HTTP\/1\.1\r\nHost: example\.com:8443\r\n/);
  t.match(req, /Sec-WebSocket-Protocol: a, b\r\n/);
  t.match(req, /Authorization: Bearer x\r\n\r\n$/);
  t.throws(() => upgradeRequest(new URL('ws://h/'), KEY, { headers: { X: 'a\r\nInjected: 1' } }), TypeError, 'header injection refused');
  const response = (lines: string[], status = 'HTTP/1.1 101 Switching Protocols'): HttpHead => parseHead(Buffer.from([status, ...lines].join('\r\n') + '\r\n'), 'response');
  const ok = ['Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${acceptKey(KEY)}`];
  t.same((checkUpgradeResponse(response(ok), KEY, [], []) as { protocol: string }).protocol, '');
  t.equal((checkUpgradeResponse(response([...ok, 'Sec-WebSocket-Protocol: b']), KEY, ['a', 'b'], []) as { protocol: string }).protocol, 'b');
  const failures: Array<[string, HttpHead, string[]]> = [
    ['status 200', response(ok, 'HTTP/1.1 200 OK'), []],
    ['no upgrade', response(ok.slice(1)), []],
    ['no connection', response([ok[0], ok[2]]), []],
    ['wrong accept', response([...ok.slice(0, 2), 'Sec-WebSocket-Accept: x']), []],
    ['protocol not offered', response([...ok, 'Sec-WebSocket-Protocol: c']), ['a']],
    ['protocol when none offered', response([...ok, 'Sec-WebSocket-Protocol: a']), []],
    ['extension not offered', response([...ok, 'Sec-WebSocket-Extensions: permessage-deflate']), []],
  ];
  for (const [name, head, offered] of failures) t.type(checkUpgradeResponse(head, KEY, offered, []), 'string', name);
});

t.test('redirects drop credentials across origins and on wss → ws (attack case 31)', async (t) => {
  const headers = { Authorization: 'Bearer secret', cookie: 'a=b', 'X-Trace': '1' };
  t.same(redirectHeaders(new URL('wss://a.example/x'), new URL('wss://a.example:443/y'), headers), headers, 'same origin keeps them');
  t.same(redirectHeaders(new URL('wss://a.example/x'), new URL('wss://b.example/x'), headers), { 'X-Trace': '1' }, 'other host');
  t.same(redirectHeaders(new URL('wss://a.example/x'), new URL('ws://a.example/x'), headers), { 'X-Trace': '1' }, 'wss → ws');
  t.same(redirectHeaders(new URL('ws://a.example:1/x'), new URL('ws://a.example:2/x'), headers), { 'X-Trace': '1' }, 'other port');
});

t.test('head parser: a line ending in a bare LF is refused at once (400), in any chunking', async (t) => {
  const heads = ['GET / HTTP/1.1\nHost: x\n\n', 'GET / HTTP/1.1\r\nHost: x\nUpgrade: websocket\r\n\r\n', 'GET / HTTP/1.1\r\nHost: x\r\n\n'];
  for (const text of heads) {
    const bytes = Buffer.from(text, 'latin1');
    for (const size of [1, 2, 5, bytes.length]) {
      const p = new HeadParser('request');
      let status: number | string = 'no throw';
      try {
        for (let at = 0; at < bytes.length; at += size) p.push(bytes.subarray(at, at + size));
      } catch (e) {
        status = e instanceof HeadError ? e.status : String(e);
      }
      t.equal(status, 400, `${JSON.stringify(text)} in chunks of ${size}`);
    }
  }
  // CR LF split between chunks is no bare LF.
  const ok = new HeadParser('request');
  t.equal(ok.push(Buffer.from('GET / HTTP/1.1\r')), null);
  t.equal(ok.push(Buffer.from('\nHost: x\r')), null);
  t.equal(ok.push(Buffer.from('\n\r\n'))?.headers.get('host')?.[0], 'x');
});

t.test('server: a bare-LF header line gets its 400 promptly, not after the handshake timeout', async (t) => {
  const { createServer } = await import('../lib/index.js');
  const { rawConnect } = await import('./helpers/net.js');
  const server = createServer({ heartbeat: false, handshakeTimeout: 30_000 }, () => {});
  const { port } = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close({ timeout: 100 }));
  // No blank CR LF CR LF ever comes: before, the server waited for the handshake timeout.
  const raw = await rawConnect(port, `GET / HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Key: ${KEY}\nSec-WebSocket-Version: 13\n\n`);
  const took = await raw.closed;
  t.match(raw.all().toString('latin1'), /^HTTP\/1\.1 400 /, 'answered 400');
  t.ok(took < 20_000, `closed after ${took} ms (the handshake timeout is 30 s)`);
});

t.test('more than 32 extension offers: ignored by a server with compression off, 400 with it on', async (t) => {
  const offers = Array.from({ length: 40 }, (_, i) => `x-ext-${i}`).join(', ');
  const head = request([...GOOD, `Sec-WebSocket-Extensions: ${offers}`]);
  const off = checkUpgradeRequest(head, { negotiatesExtensions: false });
  t.notOk(isRefusal(off), 'accepted when extensions are not negotiated');
  t.same(isRefusal(off) ? null : off.extensions, [], 'the header is ignored');
  const on = checkUpgradeRequest(head);
  t.equal(isRefusal(on) ? on.status : 101, 400, 'refused when they would be negotiated');
  const { createServer } = await import('../lib/index.js');
  const { rawUpgrade } = await import('./helpers/net.js');
  for (const deflate of [false, true]) {
    const server = createServer({ heartbeat: false, perMessageDeflate: deflate }, () => {});
    const { port } = await server.listen(0, '127.0.0.1');
    t.teardown(() => server.close({ timeout: 100 }));
    const raw = await rawUpgrade(port, '/', [`Sec-WebSocket-Extensions: ${offers}`]);
    t.equal(raw.head.status, deflate ? 400 : 101, `server with perMessageDeflate ${deflate}: ${raw.head.status}`);
    t.equal(raw.head.headers.get('sec-websocket-extensions'), undefined, 'no extension accepted');
    raw.socket.destroy();
  }
});
