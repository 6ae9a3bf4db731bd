/**
 * Hub behaviour over real sockets: overlapping subscriptions, tenants, every error code, resume (exact, wildcard,
 * too old), slow consumers (both policies), presence, refresh, shutdown, and attack cases 22-24, 26-29, 33.
 */
import t from 'tap';
import { open, record, sleep, startHub, token } from './helpers/hub.js';
import { WebSocket } from '../lib/index.js';
import { rawUpgrade } from './helpers/net.js';

t.test('overlapping subscriptions deliver once; tenants are isolated', async (t) => {
  const { hub, url } = await startHub();
  t.teardown(() => hub.close());
  const a = await open(`${url}?token=${token('a')}`);
  for (const [i, topic] of ['orders.eu.#', 'orders.*.created', 'orders.eu.created', '#'].entries()) a.send({ type: 'subscribe', data: { topic }, request_id: i });
  await a.count((m) => m.type === 'ack', 4);
  const staging = await open(`${url}?token=${token('s')}`);
  staging.send({ type: 'subscribe', data: { topic: '#', tenant: 'staging' }, request_id: 1 });
  await staging.next((m) => m.type === 'ack');
  await hub.publish({ topic: 'orders.eu.created', type: 'order', data: { n: 1 } });
  await hub.publish({ topic: 'orders.eu.created', tenant: 'staging', type: 'order', data: { n: 2 } });
  await sleep(100);
  t.same(a.json.filter((m) => m.type === 'order').map((m) => m.data.n), [1], 'four matching patterns, one delivery; not the staging message');
  t.same(staging.json.filter((m) => m.type === 'order').map((m) => [m.tenant, m.data.n]), [['staging', 2]], 'staging sees only staging');
  const limited = await open(`${url}?token=${token('l', { tenants: ['prod'] })}`);
  limited.send({ type: 'subscribe', data: { topic: 'x' }, request_id: 'd' });
  t.equal((await limited.next((m) => m.request_id === 'd')).data.code, 'unauthorized', 'a token limited to prod cannot use the default tenant');
  for (const r of [a, staging, limited]) r.ws.close();
});

t.test('every error code, each with its request_id, connection stays usable', async (t) => {
  const { hub, url } = await startHub({
    limits: { maxSubscriptions: 2, rate: { messages: 30, interval: 60_000 }, maxRateViolations: 5 },
    authorize: { subscribe: ({ topic }) => !topic.startsWith('secret') },
  });
  t.teardown(() => hub.close());
  hub.on('message', (_client, m) => {
    if (m.type === 'boom') throw new Error('handler bug');
  });
  const c = await open(`${url}?token=${token('e')}`);
  const ask = async (msg: Record<string, unknown>, id: string): Promise<string> => {
    c.send({ ...msg, request_id: id });
    const reply = await c.next((m) => m.request_id === id);
    return reply.type === 'error' ? reply.data.code : reply.type;
  };
  t.equal(await ask({ type: 'subscribe', data: { topic: 'a..b' } }, 'i1'), 'invalid_request', 'bad topic');
  t.equal(await ask({ type: 'subscribe', data: 'x' }, 'i2'), 'invalid_request', 'data not an object');
  t.equal(await ask({ type: 'publish', data: { topic: 'a.#', type: 't', data: 1 } }, 'i3'), 'invalid_request', 'wildcard publish');
  t.equal(await ask({ type: 'subscribe', data: { topic: 'secret.x' } }, 'u1'), 'unauthorized', 'authorize hook refusal');
  t.equal(await ask({ type: 'subscribe', data: { topic: 'a' } }, 's1'), 'ack');
  t.equal(await ask({ type: 'subscribe', data: { topic: 'b' } }, 's2'), 'ack');
  t.equal(await ask({ type: 'subscribe', data: { topic: 'c' } }, 's3'), 'subscription_failed', 'over maxSubscriptions');
  t.equal(await ask({ type: 'boom', data: {} }, 'x1'), 'internal_error', 'a failing app handler');
  t.equal(await ask({ type: 'ping', data: {} }, 'p1'), 'pong', 'still usable after errors');
  // rate_limited: 30 tokens per minute; 9 used so far.
  for (let i = 0; i < 21; i++) c.send({ type: 'ping', data: {} });
  c.send({ type: 'ping', data: {}, request_id: 'r1' });
  const limited = await c.next((m) => m.type === 'error' && m.data.code === 'rate_limited');
  t.match(limited.data.message, /slow down/);
  t.equal(c.ws.readyState, 1, 'rate limiting answers with errors first');
  for (let i = 0; i < 10; i++) c.send({ type: 'ping', data: {} });
  t.equal((await c.closed).code, 4429, 'then closes with 4429');
  const stats = hub.stats();
  for (const code of ['invalid_request', 'unauthorized', 'subscription_failed', 'internal_error', 'rate_limited']) t.ok(stats.errors[code] >= 1, `${code} counted`);
});

t.test('resume: kill the socket mid-stream, reconnect with the last position: every message once, in order', async (t) => {
  const { hub, url } = await startHub({ history: { size: 1000 } });
  t.teardown(() => hub.close());
  for (const [topic, publishTo] of [['feed.x', ['feed.x']], ['feed.*', ['feed.a', 'feed.b']]] as const) {
    let c = await open(`${url}?token=${token('r')}`);
    c.send({ type: 'subscribe', data: { topic }, request_id: 1 });
    const ack = await c.next((m) => m.type === 'ack');
    let publishing = true;
    const total = 300;
    const publisher = (async () => {
      for (let i = 1; i <= total; i++) {
        await hub.publish({ topic: publishTo[i % publishTo.length], type: 'tick', data: { i } });
        if (i % 20 === 0) await sleep(1);
      }
      publishing = false;
    })();
    while (c.json.filter((m) => m.type === 'tick').length < 50) await sleep(1);
    c.ws.close(4000); // gone mid-stream
    const got = c.json.filter((m) => m.type === 'tick');
    const positions: Record<string, { epoch: string; seq: number }> = {};
    for (const m of got) positions[m.topic] = { epoch: m.epoch, seq: m.seq };
    await sleep(20);
    c = await open(`${url}?token=${token('r')}`);
    const since = topic === 'feed.x' ? positions['feed.x'] : { positions, offset: ack.data.offset };
    c.send({ type: 'subscribe', data: { topic, since }, request_id: 2 });
    const ack2 = await c.next((m) => m.type === 'ack');
    t.equal(ack2.data.recovered, true, `${topic}: recovered`);
    await publisher;
    t.notOk(publishing);
    await c.count((m) => m.type === 'tick', total - got.length, 5000);
    await sleep(50);
    const all = [...got, ...c.json.filter((m) => m.type === 'tick')].map((m) => m.data.i);
    t.same(all, Array.from({ length: total }, (_, k) => k + 1), `${topic}: all ${total} messages exactly once, in order`);
    c.ws.close();
  }
});

t.test('resume beyond the history: what is held plus the exact missing range', async (t) => {
  const { hub, url } = await startHub({ history: { size: 10 } });
  t.teardown(() => hub.close());
  let last = { seq: 0, epoch: '' };
  for (let i = 1; i <= 5; i++) last = await hub.publish({ topic: 'old', type: 'm', data: { i } });
  for (let i = 6; i <= 40; i++) await hub.publish({ topic: 'old', type: 'm', data: { i } });
  for (const [topic, since] of [['old', { epoch: last.epoch, seq: 5 }], ['ol*', null]] as const) {
    const c = await open(`${url}?token=${token('g')}`);
    const s = topic === 'old' ? since : { positions: { old: { epoch: last.epoch, seq: 5 } } };
    c.send({ type: 'subscribe', data: { topic: topic === 'ol*' ? '*' : topic, since: s }, request_id: 1 });
    const ack = await c.next((m) => m.type === 'ack');
    t.equal(ack.data.recovered, false, 'not recovered');
    t.same(ack.data.gaps.map((g: { from: number; to: number }) => [g.from, g.to]), [[6, 30]], 'exactly 6..30 are lost');
    const gap = await c.next((m) => m.type === 'gap');
    t.same([gap.data.from, gap.data.to, gap.data.topic], [6, 30, 'old'], 'and a gap message says so');
    const replayed = await c.count((m) => m.type === 'm', 10);
    t.same(replayed.map((m) => m.data.i), [31, 32, 33, 34, 35, 36, 37, 38, 39, 40], 'then the 10 held messages');
    c.ws.close();
  }
});

t.test('wildcard resume after a hub restart (offsets start again): the old offset epoch makes every held message replay', async (t) => {
  const first = await startHub();
  const c1 = await open(`${first.url}?token=${token('w')}`);
  for (let i = 1; i <= 2; i++) await first.hub.publish({ topic: 'noise', type: 'n', data: { i } });
  c1.send({ type: 'subscribe', data: { topic: 'news.#' }, request_id: 1 });
  const ack1 = await c1.next((m) => m.type === 'ack');
  t.equal(ack1.data.offset, 2, 'the ack carries the tenant offset');
  t.type(ack1.data.offsetEpoch, 'string', 'and its epoch');
  c1.ws.close();
  await first.hub.close();

  // The restarted hub: a new MemoryBackplane, offsets from 1 again, so news.* sits at offsets the client "passed".
  const second = await startHub({ history: { size: 2 } });
  t.teardown(() => second.hub.close());
  const published: Array<[string, number]> = [];
  for (const topic of ['news.a', 'news.b', 'news.a', 'noise', 'news.a', 'news.b']) {
    const m = await second.hub.publish({ topic, type: 'n', data: { topic } });
    if (topic !== 'noise') published.push([topic, m.seq]);
  }
  const resume = async (since: Record<string, unknown>) => {
    const c = await open(`${second.url}?token=${token('w')}`);
    c.send({ type: 'subscribe', data: { topic: 'news.#', since }, request_id: 2 });
    const ack = await c.next((m) => m.type === 'ack');
    await sleep(50);
    c.ws.close();
    return { ack, got: c.json.filter((m) => m.type === 'n').map((m) => [m.topic, m.seq]), gaps: c.json.filter((m) => m.type === 'gap').map((m) => m.data) };
  };
  const withEpoch = await resume({ offset: ack1.data.offset, offsetEpoch: ack1.data.offsetEpoch });
  t.same(withEpoch.got, [['news.b', 1], ['news.a', 2], ['news.a', 3], ['news.b', 2]], 'every held message of every matching topic, in publication order');
  t.same(withEpoch.gaps.map((g: { topic: string; from: number; to: number }) => [g.topic, g.from, g.to]), [['news.a', 1, 1]], 'and the one message no longer held, reported exactly');
  t.equal(withEpoch.ack.data.recovered, false, 'not recovered (one message is gone)');
  t.not(withEpoch.ack.data.offsetEpoch, ack1.data.offsetEpoch, 'the new ack carries the new offset epoch');
  t.equal(withEpoch.ack.data.offset, 6);
  const without = await resume({ offset: ack1.data.offset });
  t.same(without.got, [['news.a', 2], ['news.a', 3], ['news.b', 2]], 'without the epoch, the stale offset 2 hides news.b seq 1 (published at offset 2 of the new stream): why the epoch is needed');
  t.same(without.gaps, [], '…and silently');
  const same = await resume({ offset: 4, offsetEpoch: withEpoch.ack.data.offsetEpoch });
  t.same(same.got, [['news.a', 3], ['news.b', 2]], 'an offset of the current epoch is still honoured');
  t.same(same.gaps, []);
  const ahead = await resume({ offset: 50 });
  t.same(ahead.got.length, 4, 'an offset ahead of the stream cannot be from it: everything held');
});

t.test('slow consumer that never reads: others get everything; policy disconnect → 1008, drop → exact gap', async (t) => {
  for (const policy of ['disconnect', 'drop'] as const) {
    const { hub, url, port } = await startHub({ limits: { slowConsumer: policy, maxBufferedBytes: 256 * 1024, rate: false } });
    const fast = await Promise.all(Array.from({ length: 10 }, (_, i) => open(`${url}?token=${token('f' + i)}`)));
    for (const f of fast) f.send({ type: 'subscribe', data: { topic: 'hot' }, request_id: 1 });
    for (const f of fast) await f.next((m) => m.type === 'ack');
    // The slow one: a raw socket that subscribes and then never reads.
    const slow = await rawUpgrade(port, `/ws?token=${token('slow')}`);
    const frame = (text: string): Buffer => {
      const payload = Buffer.from(text);
      const mask = Buffer.from([1, 2, 3, 4]);
      const out = Buffer.alloc(payload.length);
      for (let i = 0; i < payload.length; i++) out[i] = payload[i] ^ mask[i % 4];
      return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, out]);
    };
    slow.socket.write(frame('{"type":"subscribe","data":{"topic":"hot"}}'));
    await sleep(100);
    slow.socket.pause();
    // Enough bytes to fill the kernel's socket buffers of the non-reading peer, then the hub's cap.
    const total = 5000;
    const body = 'x'.repeat(4000);
    for (let i = 1; i <= total; i++) {
      await hub.publish({ topic: 'hot', type: 'm', data: { i, body } });
      // The subscribers live in this process: let them read between bursts (40 KB per subscriber per burst).
      if (i % 10 === 0) await sleep(1);
    }
    for (const f of fast) await f.count((m) => m.type === 'm', total, 20_000);
    t.pass(`${policy}: 10 other subscribers received all ${total} messages`);
    const stats = hub.stats();
    if (policy === 'disconnect') {
      t.equal(stats.slowConsumerDisconnects, 1, 'the slow one was disconnected');
      const start = Date.now();
      while (hub.stats().connections > fast.length && Date.now() - start < 30_000) await sleep(20);
      t.equal(hub.stats().closeCodes['1008'], 1, 'with 1008, and destroyed (it never reads its close frame)');
      slow.socket.destroy();
    } else {
      t.ok(stats.drops > 0, `messages dropped for the slow one (${stats.drops})`);
      slow.socket.resume();
      await sleep(500);
      const text = slow.received().toString('latin1');
      const gaps = [...text.matchAll(/"type":"gap","data":\{[^}]*"from":(\d+),"to":(\d+)/g)].map((g) => [Number(g[1]), Number(g[2])]);
      const seqs = [...text.matchAll(/"type":"m","data":\{"i":(\d+)/g)].map((g) => Number(g[1]));
      t.ok(gaps.length >= 1, 'the slow one is told which seqs it missed');
      const missed = new Set<number>();
      for (const [from, to] of gaps) for (let s = from; s <= to; s++) missed.add(s);
      const covered = seqs.length + missed.size;
      t.equal(covered, total, 'delivered + reported missing = every seq');
      t.notOk(seqs.some((s) => missed.has(s)), 'no seq both delivered and reported missing');
      slow.socket.destroy();
    }
    for (const f of fast) f.ws.close();
    await hub.close();
  }
});

t.test('presence on request and opt-in join/leave events', async (t) => {
  const { hub, url } = await startHub();
  t.teardown(() => hub.close());
  const watcher = await open(`${url}?token=${token('w')}`);
  watcher.send({ type: 'subscribe', data: { topic: 'room.1', presence: true }, request_id: 1 });
  await watcher.next((m) => m.type === 'ack');
  const joiner = await open(`${url}?token=${token('j')}`);
  joiner.send({ type: 'subscribe', data: { topic: 'room.1' }, request_id: 1 });
  t.same((await watcher.next((m) => m.type === 'join')).data, { tenant: 'default', topic: 'room.1', user: 'j' });
  joiner.send({ type: 'presence', data: { topic: 'room.1' }, request_id: 'p' });
  const p = await joiner.next((m) => m.request_id === 'p');
  t.same([p.data.users, p.data.connections], [{ w: 1, j: 1 }, 2]);
  t.same((await hub.presence('room.1')).connections, 2);
  joiner.ws.close();
  t.same((await watcher.next((m) => m.type === 'leave')).data.user, 'j');
  watcher.ws.close();
});

t.test('token refresh without reconnecting; a refresh for another user is refused', async (t) => {
  const { hub, url } = await startHub();
  t.teardown(() => hub.close());
  const c = await open(`${url}?token=${token('ref', {}, 1)}`);
  c.send({ type: 'refresh', data: { token: token('other') }, request_id: 'o' });
  t.equal((await c.next((m) => m.request_id === 'o')).data.code, 'unauthorized');
  c.send({ type: 'refresh', data: { token: token('ref', {}, 60) }, request_id: 'r' });
  t.equal((await c.next((m) => m.request_id === 'r')).type, 'ack');
  await sleep(1500);
  t.equal(c.ws.readyState, 1, 'still open after the first token expired');
  c.ws.close();
});

t.test('graceful shutdown: 1001 (and 1012), disconnect events, empty registry', async (t) => {
  for (const code of [1001, 1012] as const) {
    const { hub, url } = await startHub();
    const clients = await Promise.all([1, 2, 3].map((i) => open(`${url}?token=${token('z' + i)}`)));
    for (const c of clients) c.send({ type: 'subscribe', data: { topic: 'a.#' } });
    await sleep(50);
    let disconnects = 0;
    hub.on('disconnect', () => disconnects++);
    await hub.close({ code });
    for (const c of clients) t.equal((await c.closed).code, code, `client sees ${code}`);
    t.equal(disconnects, 3, 'every disconnect event ran');
    const s = hub.stats();
    t.same([s.connections, s.subscriptions, s.users, s.patterns, s.deadlines, s.heartbeatRunning], [0, 0, 0, 0, 0, false], 'registry empty, no timers');
    const late = record(new WebSocket(url));
    await late.closed;
    t.equal(late.ws.readyState, 3, 'no longer accepting');
  }
});

t.test('attack 22, 23, 26, 27, 28, 33', async (t) => {
  const { hub, url, port } = await startHub({ origins: ['https://app.example'], limits: { authDeadline: 200, maxConnectionsPerUser: 2 }, heartbeat: { interval: 100, timeout: 300 } });
  t.teardown(() => hub.close());
  const origin = { headers: { Origin: 'https://app.example' } };
  // 26: missing, null, foreign origin → 403.
  for (const headers of [{}, { Origin: 'null' }, { Origin: 'https://evil.example' }]) {
    const r = await rawUpgrade(port, `/ws?token=${token('o')}`, Object.entries(headers).map(([k, v]) => `${k}: ${v}`));
    t.match(r.head.status, 403, `origin ${JSON.stringify(headers)} → 403`);
    r.socket.destroy();
  }
  // 22: upgraded, never authenticates → closed at the deadline.
  const idle = await open(url, undefined, origin);
  const started = Date.now();
  t.equal((await idle.closed).code, 4401);
  // The bound only tells the configured 200 ms deadline from the 5 s default, with room for a loaded machine.
  t.ok(Date.now() - started < 4000, `closed at the deadline (authDeadline 200 ms, default 5 s): after ${Date.now() - started} ms`);
  // 23: half-open peer (stops reading and answering) → detected within interval + timeout, destroyed.
  const half = await rawUpgrade(port, `/ws?token=${token('h')}`, ['Origin: https://app.example']);
  half.socket.pause(); // never reads again: the hub's pings go unanswered (the peer cannot see its FIN either)
  const halfStart = Date.now();
  // Waits up to 30 s (a loaded machine): still well before the default heartbeat (30 s interval + 60 s timeout).
  while (hub.stats().connections > 0 && Date.now() - halfStart < 30_000) await sleep(20);
  t.equal(hub.stats().connections, 0, `half-open peer closed and destroyed after ${Date.now() - halfStart} ms (interval 100 + timeout 300 + 1 s kill)`);
  t.equal(hub.stats().closeCodes['4408'], 1, 'as a heartbeat timeout (4408)');
  half.socket.destroy();
  // 27: malformed, wrong signature, alg none, expired; header, subprotocol and query → 4401.
  const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}.`;
  const forged = token('x').slice(0, -3) + 'AAA';
  for (const bad of ['garbage', none, forged, token('x', {}, -5)]) {
    for (const how of ['header', 'subprotocol', 'query'] as const) {
      const ws =
        how === 'header'
          ? new WebSocket(url, undefined, { headers: { ...origin.headers, Authorization: `Bearer ${bad}` } })
          : how === 'subprotocol'
            ? new WebSocket(url, ['bearer', bad], origin)
            : new WebSocket(`${url}?token=${encodeURIComponent(bad)}`, undefined, origin);
      t.equal((await record(ws).closed).code, 4401, `${how}: ${bad.slice(0, 12)}… → 4401`);
    }
  }
  // 28: over the per-user limit → oldest closed 4429; counters released (a new one fits after closes).
  const u = await Promise.all([1, 2].map(() => open(`${url}?token=${token('lim')}`, undefined, origin)));
  const third = await open(`${url}?token=${token('lim')}`, undefined, origin);
  t.equal((await u[0].closed).code, 4429, 'oldest closed with 4429');
  u[1].ws.close();
  third.ws.close();
  await u[1].closed;
  await third.closed;
  await sleep(50);
  const fresh = await Promise.all([1, 2].map(() => open(`${url}?token=${token('lim')}`, undefined, origin)));
  await sleep(100);
  t.ok(fresh.every((f) => f.ws.readyState === 1), 'the counter was released: two new connections fit');
  // 33: malformed JSON, unknown types, wrong field types, huge topics, deep nesting → error reply, still usable.
  const c = await open(`${url}?token=${token('fz')}`, undefined, origin);
  const bad = ['{', '[]', 'null', '{"type":5}', '{"type":"subscribe","data":{"topic":' + JSON.stringify('a'.repeat(5000)) + '}}', '{"type":"unknown.thing","data":{}}', '['.repeat(20000), '{"a":' + '['.repeat(30000) + ']'.repeat(30000) + '}', '{"type":"subscribe","data":{"topic":["x"]}}', '{"type":"publish","data":{"topic":"a"}}', '{"action":"explode"}'];
  for (const b of bad) c.send(b);
  const errors = await c.count((m) => m.type === 'error' || m.action === 'error', bad.length);
  t.equal(errors.length, bad.length, 'every bad message got an error reply');
  c.send({ type: 'ping', data: {}, request_id: 'alive' });
  t.equal((await c.next((m) => m.request_id === 'alive')).type, 'pong', 'connection still usable');
  for (const f of fresh) f.ws.close();
  c.ws.close();
});
