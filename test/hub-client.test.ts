/**
 * The hub client (lib/hub-client) in Node, over this package's WebSocket, against the protocol-faithful fake hub
 * in test/helpers/fake-hub.ts; plus the pure pieces (backoff, close-code meanings, topic matching), misuse, and the
 * browser-ESM guarantee (compiled without Node types, no imports, runs in a bare vm context).
 */
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from '../lib/index.js';
import {
  backoffDelay,
  defaultCloseAction,
  HubClient,
  HubError,
  topicMatches,
  type HubClientOptions,
  type HubMessage,
  type DisconnectInfo,
  type CloseAction,
  type GapReport,
} from '../lib/hub-client/index.js';
import { FakeStore, startFakeHub, type FakeHub } from './helpers/fake-hub.js';
import { until } from './helpers/net.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A client with fast timings for tests, closed at teardown. */
function client(t: Test, options: Partial<HubClientOptions> & { url: string }): HubClient {
  const c = new HubClient({ WebSocket, backoff: { initialDelay: 50, maxDelay: 200 }, requestTimeout: 2000, ...options });
  t.teardown(() => c.close());
  return c;
}

/** Records a client's events. */
function record(c: HubClient) {
  const messages: HubMessage[] = [];
  const states: string[] = [];
  const disconnects: Array<DisconnectInfo & { action: CloseAction; delay?: number }> = [];
  const gaps: GapReport[] = [];
  const errors: HubError[] = [];
  c.on('message', (m) => messages.push(m));
  c.on('state', (s) => states.push(s));
  c.on('disconnect', (d) => disconnects.push(d));
  c.on('gap', (g) => gaps.push(g));
  c.on('error', (e) => errors.push(e));
  return { messages, states, disconnects, gaps, errors };
}

async function hubFor(t: Test, options: Parameters<typeof startFakeHub>[0] = {}): Promise<FakeHub> {
  const hub = await startFakeHub(options);
  t.teardown(() => hub.kill());
  return hub;
}

const seqs = (messages: HubMessage[], topic: string): number[] => messages.filter((m) => m.topic === topic).map((m) => m.seq!);
const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i);

t.test('backoff: full jitter within [0, min(max, initial × 2^attempt))', async (t) => {
  const opts = { initialDelay: 100, maxDelay: 1000, multiplier: 2 };
  const ceilings = [100, 200, 400, 800, 1000, 1000, 1000];
  ceilings.forEach((ceiling, attempt) => {
    t.equal(backoffDelay(attempt, opts, () => 0), 0, `attempt ${attempt}: random 0 → 0`);
    const top = backoffDelay(attempt, opts, () => 0.999999);
    t.ok(top < ceiling && top >= ceiling - 1, `attempt ${attempt}: random → 1 gives just under ${ceiling} (${top})`);
    t.equal(backoffDelay(attempt, opts, () => 0.5), Math.floor(ceiling / 2));
  });
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(3, opts);
    t.ok(d >= 0 && d < 800, 'Math.random stays in bounds');
  }
  t.equal(backoffDelay(5000, { initialDelay: 500, maxDelay: 30_000 }, () => 0.5), 15_000, 'huge attempts do not overflow');
  t.equal(backoffDelay(0, {}, () => 0.999999), 499, 'defaults: 500 ms first ceiling');
});

t.test('close codes by meaning', async (t) => {
  t.equal(defaultCloseAction(4401), 'token');
  for (const code of [1000, 4429, 1008, 1002]) t.equal(defaultCloseAction(code), 'stop', `${code} stops`);
  for (const code of [4000, 1012, 1013, 1001, 1006, 1011, 1005, 4999]) t.equal(defaultCloseAction(code), 'reconnect', `${code} reconnects`);
});

t.test('topic patterns: * is one segment, # zero or more', async (t) => {
  t.ok(topicMatches('a.*.c', 'a.b.c'));
  t.notOk(topicMatches('a.*.c', 'a.b.x.c'));
  t.ok(topicMatches('a.#', 'a'));
  t.ok(topicMatches('a.#', 'a.b.c'));
  t.ok(topicMatches('a.#.z', 'a.b.c.z'));
  t.notOk(topicMatches('a.#.z', 'a.b.c'));
  t.ok(topicMatches('#', 'x.y'));
});

t.test('misuse throws at once', async (t) => {
  const url = 'ws://127.0.0.1:1/';
  t.throws(() => new HubClient(undefined as never), TypeError);
  t.throws(() => new HubClient({ url: 42 as never, WebSocket }), TypeError);
  t.throws(() => new HubClient({ url: 'ftp://x/', WebSocket }), TypeError);
  t.throws(() => new HubClient({ url: 'ws://x/#frag', WebSocket }), TypeError);
  t.throws(() => new HubClient({ url, WebSocket: 'nope' as never }), TypeError);
  t.throws(() => new HubClient({ url, WebSocket, token: 7 as never }), TypeError);
  t.throws(() => new HubClient({ url, WebSocket, tokenPlacement: 'header' as never }), TypeError);
  t.throws(() => new HubClient({ url, WebSocket, backoff: { initialDelay: -1 } }), RangeError);
  t.throws(() => new HubClient({ url, WebSocket, backoff: { multiplier: 0.5 } }), RangeError);
  t.throws(() => new HubClient({ url, WebSocket, backoff: { initialDelay: 5000, maxDelay: 10 } }), RangeError);
  t.throws(() => new HubClient({ url, WebSocket, queue: { max: 1.5 } }), RangeError);
  t.throws(() => new HubClient({ url, WebSocket, queue: { overflow: 'drop-newest' as never } }), TypeError);
  t.throws(() => new HubClient({ url, WebSocket, heartbeat: { idle: 0 } }), RangeError);
  t.throws(() => new HubClient({ url, WebSocket, requestTimeout: Infinity }), RangeError);
  t.throws(() => new HubClient({ url, WebSocket, protocols: ['has space'] }), TypeError);
  const c = new HubClient({ url, WebSocket });
  t.throws(() => c.subscribe(''), TypeError);
  t.throws(() => c.subscribe('a', { since: { epoch: 1, seq: 1 } as never }), TypeError);
  t.throws(() => c.subscribe('a.#', { since: { positions: { 'a.b': { seq: 1 } } } as never }), TypeError);
  t.throws(() => c.publish({ topic: 'a.*', type: 't' }), TypeError);
  t.throws(() => c.publish({ topic: 'a', type: '' }), TypeError);
  t.throws(() => c.publish({ topic: 'a', type: 't', data: { n: 1n } }), TypeError);
  t.throws(() => c.publish({ topic: 'a', type: 't' }, { timeout: -5 }), RangeError);
  t.throws(() => c.request('subscribe', {}), TypeError);
  t.throws(() => c.request(''), TypeError);
  t.throws(() => c.unsubscribe('a', { tenant: '' }), TypeError);
  t.throws(() => c.refreshToken(), TypeError, 'no token and no token function');
  t.throws(() => (c.on as (e: string, l: () => void) => void)('nope', () => {}), TypeError);
  t.throws(() => c.on('message', 'x' as never), TypeError);
  t.throws(() => c.close(1001), RangeError, 'the WHATWG API allows 1000 and 3000-4999');
  await t.rejects(c.publish({ topic: 'a', type: 't' }), { code: 'closed' }, 'publishing before connect() is rejected');
  if ((globalThis as { WebSocket?: unknown }).WebSocket === undefined) t.throws(() => new HubClient({ url }), /options\.WebSocket/, 'no global WebSocket: says to pass one');
});

t.test('every options object refuses unknown keys and wrong types with a TypeError naming the key and what is accepted', async (t) => {
  const url = 'ws://127.0.0.1:1/';
  const bad = (what: string, fn: () => unknown, message: RegExp, type: new (...a: any[]) => Error = TypeError): void => {
    t.throws(fn, type, what);
    t.throws(fn, { message }, `${what}: the message names the key and what is accepted`);
  };
  // The constructor and its nested objects.
  bad('constructor: presence is not a client option', () => new HubClient({ url, WebSocket, presence: true } as never), /HubClient options: unknown option "presence"; accepted: url, WebSocket, protocols, token, .*maxTrackedTopics, random, now/);
  bad('constructor: a misspelt option', () => new HubClient({ url, WebSocket, requestTimout: 5 } as never), /unknown option "requestTimout".*requestTimeout/);
  bad('backoff: unknown key', () => new HubClient({ url, WebSocket, backoff: { initialDelay: 10, jitter: true } as never }), /options\.backoff: unknown option "jitter"; accepted: initialDelay, maxDelay, multiplier, stableAfter, maxAttempts/);
  bad('queue: unknown key', () => new HubClient({ url, WebSocket, queue: { size: 10 } as never }), /options\.queue: unknown option "size"; accepted: max, overflow/);
  bad('heartbeat: unknown key', () => new HubClient({ url, WebSocket, heartbeat: { interval: 10 } as never }), /options\.heartbeat: unknown option "interval"; accepted: idle, timeout/);
  bad('heartbeat: true is not an object', () => new HubClient({ url, WebSocket, heartbeat: true as never }), /options\.heartbeat must be an object or false, got boolean true/);
  bad('backoff: not an object', () => new HubClient({ url, WebSocket, backoff: 500 as never }), /options\.backoff must be an object, got number 500/);
  bad('requestTimeout: a string', () => new HubClient({ url, WebSocket, requestTimeout: '5000' as never }), /options\.requestTimeout must be a number \(milliseconds\), got the string "5000"/);
  bad('backoff.initialDelay: a string', () => new HubClient({ url, WebSocket, backoff: { initialDelay: '1s' as never } }), /backoff\.initialDelay must be a number/);
  bad('backoff.multiplier: a string', () => new HubClient({ url, WebSocket, backoff: { multiplier: '2' as never } }), /backoff\.multiplier must be a number >= 1, got the string "2"/);
  bad('backoff.maxAttempts: a string', () => new HubClient({ url, WebSocket, backoff: { maxAttempts: 'forever' as never } }), /backoff\.maxAttempts must be a number \(a count or Infinity\)/);
  bad('queue.max: a string', () => new HubClient({ url, WebSocket, queue: { max: '10' as never } }), /queue\.max must be a number \(a count\)/);
  bad('maxTrackedTopics: a string', () => new HubClient({ url, WebSocket, maxTrackedTopics: '10' as never }), /options\.maxTrackedTopics must be a positive integer, got the string "10"/);
  bad('onTokenExpired: not a function', () => new HubClient({ url, WebSocket, onTokenExpired: 'renew' as never }), /options\.onTokenExpired must be a function, got the string "renew"/);
  bad('WebSocket: not a constructor', () => new HubClient({ url, WebSocket: {} as never }), /options\.WebSocket must be a WebSocket constructor, got an object/);
  bad('tokenPlacement: unknown value', () => new HubClient({ url, WebSocket, tokenPlacement: 'header' as never }), /tokenPlacement must be 'subprotocol', 'query' or 'message', got the string "header"/);
  t.throws(() => new HubClient({ url, WebSocket, backoff: { initialDelay: -1 } }), RangeError, 'a number out of range stays a RangeError');
  t.doesNotThrow(() => new HubClient({ url, WebSocket, backoff: { initialDelay: 10, maxDelay: 100, multiplier: 1.5, stableAfter: 10, maxAttempts: Infinity }, queue: { max: 0, overflow: 'drop-oldest' }, heartbeat: { idle: 10, timeout: 10 }, requestTimeout: 1, connectTimeout: 1, maxTrackedTopics: 1, tokenPlacement: 'query', tokenParam: 't', token: 'x', protocols: ['p'], random: Math.random, now: Date.now, closeAction: () => undefined, onTokenExpired: () => null }), 'every documented option is accepted');
  t.doesNotThrow(() => new HubClient({ url: new URL(url), WebSocket, heartbeat: false }), 'a URL object and heartbeat: false');

  // The methods' options.
  const c = new HubClient({ url, WebSocket });
  bad('subscribe: unknown option', () => c.subscribe('a', { presense: true } as never), /subscribe options: unknown option "presense"; accepted: tenant, since, presence/);
  bad('subscribe: timeout is not a subscribe option', () => c.subscribe('a', { timeout: 5 } as never), /subscribe options: unknown option "timeout"/);
  bad('subscribe: presence must be a boolean', () => c.subscribe('a', { presence: 'yes' as never }), /subscribe options\.presence must be true or false, got the string "yes"/);
  bad('subscribe: tenant must be a string', () => c.subscribe('a', { tenant: 7 as never }), /subscribe options\.tenant must be a non-empty string when given, got number 7/);
  bad('subscribe: options must be an object', () => c.subscribe('a', 'prod' as never), /subscribe options must be an object, got the string "prod"/);
  bad('subscribe: since for a topic has epoch and seq only', () => c.subscribe('a', { since: { epoch: 'e', seq: 1, topic: 'a' } as never }), /since \(for a topic: \{ epoch, seq \}\): unknown option "topic"; accepted: epoch, seq/);
  bad('subscribe: since for a pattern', () => c.subscribe('a.#', { since: { offset: 1, epoch: 'e' } as never }), /since \(for a pattern: \{ positions, offset, offsetEpoch \}\): unknown option "epoch"; accepted: positions, offset, offsetEpoch/);
  bad('subscribe: a position in since.positions', () => c.subscribe('a.#', { since: { positions: { 'a.b': { epoch: 'e', seq: 1, ts: 5 } } } as never }), /since\.positions\["a\.b"\]: unknown option "ts"; accepted: epoch, seq/);
  bad('unsubscribe: unknown option', () => c.unsubscribe('a', { presence: true } as never), /unsubscribe options: unknown option "presence"; accepted: tenant, timeout/);
  bad('unsubscribe: timeout must be a number', () => c.unsubscribe('a', { timeout: '1s' as never }), /unsubscribe options\.timeout must be a number \(milliseconds\)/);
  bad('publish: unknown key in the message', () => c.publish({ topic: 'a', type: 't', presence: true } as never), /publish message: unknown option "presence"; accepted: topic, type, data, tenant/);
  bad('publish: a misplaced request option in the message', () => c.publish({ topic: 'a', type: 't', timeout: 5 } as never), /publish message: unknown option "timeout"/);
  bad('publish: type must be a string', () => c.publish({ topic: 'a', type: 5 as never }), /publish message\.type must be a non-empty string, got number 5/);
  bad('publish: topic must be a string', () => c.publish({ topic: ['a'] as never, type: 't' }), /publish message\.topic must be a non-empty string, got an array/);
  bad('publish: unknown request option', () => c.publish({ topic: 'a', type: 't' }, { retries: 3 } as never), /publish options: unknown option "retries"; accepted: timeout/);
  bad('publish: timeout must be a number', () => c.publish({ topic: 'a', type: 't' }, { timeout: '5' as never }), /publish options\.timeout must be a number/);
  bad('request: unknown option', () => c.request('hello', {}, { tenant: 'x' } as never), /request options: unknown option "tenant"; accepted: timeout/);
  bad('refreshToken: unknown option', () => c.refreshToken('tok', { force: true } as never), /refreshToken options: unknown option "force"; accepted: timeout/);
  bad('backoffDelay: unknown option', () => backoffDelay(1, { initial: 5 } as never), /backoffDelay options: unknown option "initial"; accepted: initialDelay/);
  t.same(c.subscriptions, [], 'nothing refused was recorded');
  t.doesNotThrow(() => void c.subscribe('a', { tenant: 'x', presence: false, since: { epoch: 'e', seq: 0 } }).catch(() => {}), 'documented subscribe options are accepted');
  c.close();
});

t.test('connects, subscribes, publishes, receives; answers the hub ping', async (t) => {
  const hub = await hubFor(t);
  const c = client(t, { url: hub.url, token: 'tok-1' });
  const ev = record(c);
  await c.connect();
  t.equal(c.state, 'open');
  t.equal(hub.history[0].token, 'tok-1', 'token sent as the bearer subprotocol');
  const ack = await c.subscribe('chat.lobby');
  t.match(ack, { topic: 'chat.lobby', tenant: 'default', recovered: true, resubscribed: false });
  const published = await c.publish({ topic: 'chat.lobby', type: 'say', data: { text: 'hi' } });
  t.same(published, { seq: 1, epoch: hub.store.stream('default', 'chat.lobby')!.epoch });
  await until(() => ev.messages.length === 1);
  t.match(ev.messages[0], { type: 'say', data: { text: 'hi' }, topic: 'chat.lobby', seq: 1, tenant: 'default' });
  t.type(ev.messages[0].ts, 'number');
  t.same(c.position('chat.lobby', 'default'), { epoch: published.epoch, seq: 1 });
  t.same(c.position('chat.lobby'), { epoch: published.epoch, seq: 1 }, 'the hub named the tenant; the single match is found');
  t.same(await c.subscribe('chat.lobby'), ack, 'subscribing again resolves with the last ack at once');
  t.equal(hub.history[0].frames.filter((f) => f.type === 'subscribe').length, 1, 'without a second subscribe frame');

  hub.sendAll({ type: 'ping', data: {}, request_id: null });
  await until(() => hub.history[0].frames.some((f) => f.type === 'pong'));
  t.same(hub.history[0].frames.find((f) => f.type === 'pong'), { type: 'pong', data: {} }, 'pong answers the ping');

  hub.sendAll({ type: 'notice', data: { n: 1 } });
  await until(() => ev.messages.length === 2);
  t.same(ev.messages[1], { type: 'notice', data: { n: 1 } }, 'user/broadcast messages have no topic');

  t.same(await c.request('echo-me', { a: 1 }), { echo: { a: 1 } }, 'request() resolves with the ack data');
  await t.rejects(c.request('fail'), { name: 'HubError', code: 'invalid_request', message: 'this request always fails' });
  await t.rejects(c.subscribe('forbidden.x'), { code: 'subscription_failed' });
  t.same(c.subscriptions, [{ topic: 'chat.lobby' }], 'a refused subscription is dropped');
  t.equal(await c.unsubscribe('chat.lobby'), true);
  t.equal(await c.unsubscribe('chat.lobby'), false);
  t.equal(hub.history[0].subscriptions.size, 0, 'the hub got the unsubscribe');
  t.same(ev.states, ['connecting', 'open']);
  t.same(ev.errors, []);
});

t.test('hub restarted with its offsets lost: the wildcard resume sends the old offset epoch and gets every held message', async (t) => {
  const before = new FakeStore();
  let hub = await startFakeHub({ store: before });
  const port = hub.port;
  t.teardown(() => hub.kill());
  const c = client(t, { url: hub.url, token: 'tok' });
  const ev = record(c);
  await c.connect();
  for (let i = 1; i <= 8; i++) hub.publish('noise', 'msg', { i }); // the old offset ends up ahead of the new store's
  const first = await c.subscribe('feed.#');
  t.same([first.offset, first.offsetEpoch], [8, before.offsetEpoch], 'the ack carries the offset and its epoch');
  hub.publish('feed.a', 'msg', { i: 1 });
  await until(() => ev.messages.length === 1);
  await hub.kill();
  await until(() => c.state === 'reconnecting');
  const after = new FakeStore(); // a restarted hub without a persistent backplane: offsets start again
  for (let i = 1; i <= 3; i++) after.publish('default', 'feed.c', 'msg', { i }); // offsets 1..3, all "before" 8
  hub = await startFakeHub({ store: after, port });
  await until(() => c.state === 'open', 10_000, 'reconnect');
  await until(() => ev.messages.filter((m) => m.topic === 'feed.c').length === 3, 5000, 'replay of feed.c');
  const resub = hub.history[0].frames.find((f) => f.type === 'subscribe' && f.data.topic === 'feed.#')!;
  t.same([resub.data.since.offset, resub.data.since.offsetEpoch], [8, before.offsetEpoch], 'the first ack\'s offset went back with its epoch');
  t.same(seqs(ev.messages, 'feed.c'), [1, 2, 3], 'a topic never seen, published at offsets below the old one: every message');
  // The client now stands at the new store's offset: a second reconnect resumes from it, in the new epoch.
  await hub.kill();
  await until(() => c.state === 'reconnecting');
  after.publish('default', 'feed.c', 'msg', { i: 4 });
  hub = await startFakeHub({ store: after, port });
  await until(() => seqs(ev.messages, 'feed.c').length === 4, 10_000, 'second resume');
  const again = hub.history[0].frames.find((f) => f.type === 'subscribe' && f.data.topic === 'feed.#')!;
  t.same([again.data.since.offset, again.data.since.offsetEpoch], [3, after.offsetEpoch], 'the offset of the new epoch is kept');
  t.same(seqs(ev.messages, 'feed.c'), [1, 2, 3, 4], 'no duplicate');
});

t.test('server killed and restarted on the same port: reconnect, resume with no gap and no duplicate', async (t) => {
  const store = new FakeStore();
  // replayOverlap makes the hub re-send messages the client already has: the client must drop them.
  let hub = await startFakeHub({ store, replayOverlap: 2 });
  const port = hub.port;
  t.teardown(() => hub.kill());
  const c = client(t, { url: hub.url, token: 'tok' });
  const ev = record(c);
  await c.connect();
  await c.subscribe('chat.room1');
  await c.subscribe('feed.#');
  for (let i = 1; i <= 5; i++) {
    hub.publish('chat.room1', 'msg', { i });
    hub.publish('feed.a', 'msg', { i });
  }
  await until(() => ev.messages.length === 10);

  await hub.kill();
  await until(() => c.state === 'reconnecting');
  // Published while the client is away (by the application, through another node sharing the store).
  for (let i = 6; i <= 10; i++) {
    store.publish('default', 'chat.room1', 'msg', { i });
    store.publish('default', 'feed.a', 'msg', { i });
  }
  store.publish('default', 'feed.b', 'msg', { first: true }); // a topic first published while away
  await sleep(100); // some reconnect attempts fail while nothing listens
  hub = await startFakeHub({ store, replayOverlap: 2, port });
  await until(() => c.state === 'open', 10_000, 'reconnect');
  await until(() => ev.messages.length === 21, 5000, 'replay');
  hub.publish('chat.room1', 'msg', { i: 11 });
  await until(() => ev.messages.length === 22);

  t.same(seqs(ev.messages, 'chat.room1'), range(1, 11), 'chat.room1: every message once, in order');
  t.same(seqs(ev.messages, 'feed.a'), range(1, 10), 'feed.a (via feed.#): every message once');
  t.same(seqs(ev.messages, 'feed.b'), [1], 'feed.b, first published while away, replayed from the subscription offset');
  t.ok(c.stats.duplicates >= 4, `replayed duplicates were dropped (${c.stats.duplicates})`);
  const resub = hub.history[0].frames.filter((f) => f.type === 'subscribe');
  const room = resub.find((f) => f.data.topic === 'chat.room1')!;
  t.same(room.data.since, { epoch: store.stream('default', 'chat.room1')!.epoch, seq: 5 }, 'resubscribed with the last position');
  const feed = resub.find((f) => f.data.topic === 'feed.#')!;
  t.same(feed.data.since.positions, { 'feed.a': { epoch: store.stream('default', 'feed.a')!.epoch, seq: 5 } });
  t.equal(typeof feed.data.since.offset, 'number', 'wildcard resume carries the offset from the first ack');
  t.equal(feed.data.since.offsetEpoch, store.offsetEpoch, 'and its offset epoch');
  t.same(ev.gaps, [], 'no gap');
  t.equal(c.stats.reconnects, 1);
  t.match(ev.disconnects[0], { code: 1006, action: 'reconnect' });
  t.ok(ev.states.includes('reconnecting'));
});

t.test('resume beyond history: the gap is reported, not hidden', async (t) => {
  const store = new FakeStore(3);
  let hub = await startFakeHub({ store });
  const port = hub.port;
  t.teardown(() => hub.kill());
  const c = client(t, { url: hub.url });
  const ev = record(c);
  await c.connect();
  await c.subscribe('news');
  hub.publish('news', 'n', 1);
  await until(() => ev.messages.length === 1);
  await hub.kill();
  for (let i = 2; i <= 8; i++) store.publish('default', 'news', 'n', i); // history keeps 6..8
  hub = await startFakeHub({ store, port });
  await until(() => ev.messages.length === 4, 10_000);
  t.same(seqs(ev.messages, 'news'), [1, 6, 7, 8]);
  t.match(ev.gaps, [{ topic: 'news', from: 2, to: 5, source: 'resume' }]);
  hub.sendAll({ type: 'gap', data: { topic: 'news', tenant: 'default', epoch: 'e1', from: 9, to: 12 } });
  await until(() => ev.gaps.length === 2);
  t.match(ev.gaps[1], { topic: 'news', from: 9, to: 12, source: 'report' }, 'gap frames surface as gap events');
});

t.test('offline queue: bounded, reject-newest or drop-oldest, flushed on reconnect', async (t) => {
  for (const overflow of ['reject-newest', 'drop-oldest'] as const) {
    await t.test(overflow, async (t) => {
      let hub = await startFakeHub();
      const port = hub.port;
      t.teardown(() => hub.kill());
      const c = client(t, { url: hub.url, queue: { max: 2, overflow } });
      await c.connect();
      await hub.kill();
      await until(() => c.state === 'reconnecting');
      const results = [1, 2, 3].map((n) => c.publish({ topic: 'q', type: 't', data: n }).then((v) => ({ ok: v }), (e: HubError) => ({ err: e.code })));
      t.equal(c.stats.queued, 2, 'two queued');
      hub = await startFakeHub({ port });
      const settled = await Promise.all(results);
      if (overflow === 'reject-newest') {
        t.match(settled, [{ ok: { seq: 1 } }, { ok: { seq: 2 } }, { err: 'queue_overflow' }]);
      } else {
        t.match(settled, [{ err: 'queue_overflow' }, { ok: { seq: 1 } }, { ok: { seq: 2 } }]);
      }
      t.same(hub.store.stream('default', 'q')!.entries.map((m) => m.data), overflow === 'reject-newest' ? [1, 2] : [2, 3]);
    });
  }
  await t.test('max 0 fails at once when offline; close() rejects what is queued', async (t) => {
    const hub = await hubFor(t);
    const c0 = client(t, { url: hub.url, queue: { max: 0 } });
    const c1 = client(t, { url: hub.url });
    void c0.connect();
    void c1.connect();
    await t.rejects(c0.publish({ topic: 'q', type: 't' }), { code: 'queue_overflow' });
    const queued = c1.publish({ topic: 'q', type: 't' });
    c1.close();
    await t.rejects(queued, { code: 'closed' });
  });
});

t.test('4401: asks for a new token, reconnects with it; refresh without reconnecting', async (t) => {
  const hub = await hubFor(t, { acceptToken: (tok) => tok === 'good-1' || tok === 'good-2' });
  const asked: DisconnectInfo[] = [];
  const c = client(t, {
    url: hub.url,
    token: 'expired',
    onTokenExpired: async (info) => {
      asked.push(info);
      return 'good-1';
    },
  });
  const ev = record(c);
  await c.connect(); // the hub accepts the upgrade, then closes with 4401 before any message (hub-spec.md)
  await until(() => hub.history.length === 2 && c.state === 'open');
  t.same(hub.history.map((h) => h.token), ['expired', 'good-1']);
  t.match(asked, [{ code: 4401, reason: 'invalid token' }]);
  t.match(ev.disconnects, [{ code: 4401, action: 'token' }]);
  await c.refreshToken('good-2');
  t.same(hub.history[1].tokensRefreshed, ['good-2'], 'refresh frame sent on the open connection');
  t.equal(hub.history.length, 2, 'no reconnect for a refresh');
  hub.closeAll(4000, 'please reconnect');
  await until(() => hub.history.length === 3 && c.state === 'open');
  t.equal(hub.history[2].token, 'good-2', 'later connections use the refreshed token');
});

t.test('4401 with a fixed token and no callback stops; a token function is simply called again', async (t) => {
  const hub = await hubFor(t, { acceptToken: (tok) => tok === 'fresh' });
  const fixed = client(t, { url: hub.url, token: 'stale' });
  const ev = record(fixed);
  await fixed.connect();
  await until(() => fixed.state === 'closed');
  t.match(ev.disconnects, [{ code: 4401, action: 'token' }]);
  t.match(ev.errors, [{ code: 'unauthorized' }]);
  t.equal(hub.history.length, 1, 'no reconnect with a token known to be refused');
  const tokens = ['stale', 'fresh'];
  const fn = client(t, { url: hub.url, token: () => tokens.shift()! });
  await fn.connect();
  await until(() => hub.history.length === 3 && fn.state === 'open');
  t.same(hub.history.slice(1).map((h) => h.token), ['stale', 'fresh']);
  const stop = client(t, { url: hub.url, token: 'stale', onTokenExpired: () => null });
  await stop.connect();
  await until(() => stop.state === 'closed');
  t.equal(hub.history.length, 4, 'onTokenExpired returning null stops');
});

t.test('4429 and 1000 stop; 4000 and 1012 reconnect', async (t) => {
  for (const [code, action] of [[4429, 'stop'], [1000, 'stop'], [4000, 'reconnect'], [1012, 'reconnect']] as const) {
    const hub = await hubFor(t, { ignore: ['never'] });
    const c = client(t, { url: hub.url });
    const ev = record(c);
    await c.connect();
    await c.subscribe('x');
    const pending = c.request('never', {}, { timeout: 5000 }); // never answered: in flight when the close comes
    await until(() => hub.history[0].frames.some((f) => f.type === 'never'));
    hub.closeAll(code, 'bye');
    const outcome = await pending.then(() => 'ok', (e: HubError) => e.code);
    await until(() => ev.disconnects.length === 1);
    t.equal(ev.disconnects[0].action, action, `${code} → ${action}`);
    if (action === 'stop') {
      await sleep(300); // longer than the largest backoff
      t.equal(c.state, 'closed');
      t.equal(hub.history.length, 1, `${code}: no reconnect attempt`);
    } else {
      // The client is open once the upgrade completes; its resubscribe is the next frame the fake hub reads.
      await until(() => c.state === 'open' && hub.history.length === 2 && hub.history[1].frames.length > 0);
      t.same(hub.history[1].frames.map((f) => f.type), ['subscribe'], `${code}: reconnected and resubscribed`);
    }
    t.equal(outcome, 'connection_lost', `${code}: the in-flight request is rejected, not left hanging`);
  }
});

t.test('request timeout', async (t) => {
  const hub = await hubFor(t, { ignore: ['slow'] });
  const c = client(t, { url: hub.url });
  await c.connect();
  const started = Date.now();
  const error = await c.request('slow', {}, { timeout: 150 }).catch((e: unknown) => e);
  t.type(error, HubError);
  t.match(error, { code: 'timeout', message: /"slow" within 150 ms/ });
  t.ok(Date.now() - started >= 140, 'not before the timeout');
  t.equal(c.stats.pending, 0, 'nothing left pending');
});

t.test('dead connection: a silent hub is probed, abandoned, and reconnected', async (t) => {
  const hub = await hubFor(t);
  const c = client(t, { url: hub.url, heartbeat: { idle: 150, timeout: 150 } });
  const ev = record(c);
  await c.connect();
  await sleep(400);
  t.equal(hub.history.length, 1, 'a live hub answers the probe: no reconnect');
  t.ok(hub.history[0].frames.some((f) => f.type === 'ping'), 'the client probed with ping');
  hub.mute = true;
  await until(() => ev.disconnects.length === 1, 3000, 'dead connection detected');
  t.match(ev.disconnects[0], { local: true, action: 'reconnect', reason: /no frame from the hub/ });
  hub.mute = false;
  await until(() => c.state === 'open' && hub.history.length === 2, 3000);
  t.pass('reconnected');
});

t.test('reconnect delays follow the backoff, and reset after a stable connection', async (t) => {
  let hub = await startFakeHub();
  const port = hub.port;
  t.teardown(() => hub.kill());
  let now = 0;
  const c = client(t, {
    url: hub.url,
    random: () => 0.999,
    now: () => now,
    backoff: { initialDelay: 20, maxDelay: 80, stableAfter: 1000 },
  });
  const ev = record(c);
  await c.connect();
  await hub.kill();
  await until(() => ev.disconnects.length >= 5, 20_000);
  const delays = ev.disconnects.map((d) => d.delay);
  t.same(delays.slice(0, 5), [19, 39, 79, 79, 79], 'ceilings 20, 40, 80 (max), with random 0.999');
  hub = await startFakeHub({ port });
  await until(() => c.state === 'open', 20_000);
  const before = ev.disconnects.length;
  hub.closeAll(4000);
  await until(() => ev.disconnects.length === before + 1 && c.state === 'open', 20_000);
  t.ok(ev.disconnects[before].delay! >= 79, 'a connection that was not stable keeps growing the delay');
  now += 1000; // this connection has now been open for stableAfter
  hub.closeAll(4000);
  await until(() => ev.disconnects.length === before + 2, 5000);
  t.equal(ev.disconnects[before + 1].delay, 19, 'after a stable connection the backoff starts over');
});

t.test('token in the query string, and first-message auth', async (t) => {
  const hub = await hubFor(t);
  const q = client(t, { url: hub.url, token: 'a b/c', tokenPlacement: 'query' });
  await q.connect();
  t.equal(hub.history[0].token, 'a b/c', 'characters a subprotocol cannot carry go in the query');
  const bad = client(t, { url: hub.url, token: 'a b/c' });
  const ev = record(bad);
  await t.rejects(bad.connect(), { code: 'token' });
  t.match(ev.errors, [{ code: 'token', message: /tokenPlacement/ }]);

  const authHub = await hubFor(t, { messageAuth: true, acceptToken: (tok) => tok === 'ok' });
  const m = client(t, { url: authHub.url, token: 'ok', tokenPlacement: 'message' });
  await m.connect();
  await m.subscribe('after-auth');
  t.same(authHub.history[0].frames.map((f) => f.type), ['auth', 'subscribe'], 'auth first, then the rest');
});

t.test('unsubscribe while disconnected and after close; connect() again resumes', async (t) => {
  let hub = await startFakeHub();
  const port = hub.port;
  t.teardown(() => hub.kill());
  const c = client(t, { url: hub.url });
  const ev = record(c);
  await c.connect();
  await c.subscribe('keep');
  await c.subscribe('drop');
  hub.publish('keep', 'k', 1);
  await until(() => ev.messages.length === 1);
  c.close();
  t.equal(c.state, 'closed');
  t.equal(await c.unsubscribe('drop'), true, 'unsubscribing while closed is local');
  hub.publish('keep', 'k', 2);
  await hub.kill();
  hub = await startFakeHub({ store: hub.store, port });
  await c.connect();
  await until(() => ev.messages.length === 2);
  t.same(hub.history[0].frames.map((f) => [f.type, f.data.topic, f.data.since?.seq]), [['subscribe', 'keep', 1]]);
  t.same(seqs(ev.messages, 'keep'), [1, 2]);
});

t.test('presence: true is sent with the subscription and again after a reconnect; join/leave and the verified sender arrive', async (t) => {
  let hub = await startFakeHub();
  const port = hub.port;
  t.teardown(() => hub.kill());
  const c = client(t, { url: hub.url });
  const ev = record(c);
  await c.connect();
  await c.subscribe('room.1', { presence: true });
  await c.subscribe('room.2');
  const subscribes = (h: FakeHub): unknown[] => h.history.at(-1)!.frames.filter((f) => f.type === 'subscribe').map((f) => [f.data.topic, f.data.presence]);
  t.same(subscribes(hub), [['room.1', true], ['room.2', undefined]], 'presence only where asked');
  hub.sendAll({ type: 'join', data: { tenant: 'default', topic: 'room.1', user: 'bob' } });
  hub.sendAll({ type: 'say', data: { text: 'hi' }, topic: 'room.1', tenant: 'default', seq: 1, epoch: 'e1', ts: 1, from: { user: 'bob' } });
  hub.sendAll({ type: 'say', data: { text: 'from the server' }, topic: 'room.1', tenant: 'default', seq: 2, epoch: 'e1', ts: 2 });
  hub.sendAll({ type: 'say', data: { text: 'odd' }, topic: 'room.1', tenant: 'default', seq: 3, epoch: 'e1', ts: 3, from: 'bob' });
  await until(() => ev.messages.length === 4);
  t.same(ev.messages[0], { type: 'join', data: { tenant: 'default', topic: 'room.1', user: 'bob' } }, 'a join arrives as a message of type join');
  t.same(ev.messages[1].from, { user: 'bob' }, 'the hub\'s verified sender is passed on');
  t.equal(ev.messages[2].from, undefined, 'no sender: none made up');
  t.equal(ev.messages[3].from, undefined, 'a malformed sender is dropped');
  await hub.kill();
  hub = await startFakeHub({ store: hub.store, port });
  await until(() => c.state === 'open' && hub.history.length === 1 && subscribes(hub).length === 2, 10_000);
  t.same(subscribes(hub), [['room.1', true], ['room.2', undefined]], 're-subscribed with presence after the reconnect');
});

/** Compiles lib/hub-client alone, with no Node or DOM types, to a temporary directory. */
function compileForBrowser(out: string): Promise<string> {
  // lib/tsc.js, not bin/tsc: tap's process tracking re-adds its loader hooks, and they cannot load an extensionless ES module.
  const tsc = join(root, 'node_modules', 'typescript', 'lib', 'tsc.js');
  const args = ['--ignoreConfig', '--outDir', out, '--target', 'es2022', '--module', 'es2022', '--moduleResolution', 'bundler', '--lib', 'es2023', '--types', '', '--strict', '--skipLibCheck', 'false', join(root, 'lib/hub-client/index.ts')];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [tsc, ...args], { cwd: root, timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '' } }, (error, stdout, stderr) => (error ? reject(new Error(`${stdout}${stderr}`)) : resolve(stdout)));
  });
}

t.test('browser ESM: compiles without Node types, imports nothing, runs in a bare vm context', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'hub-client-browser-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  await compileForBrowser(out);
  const files = readdirSync(out).filter((f) => f.endsWith('.js'));
  t.same(files, ['index.js']);
  // Any use of a Node global (Buffer, process, require, …) would have failed that compilation: it had no Node types.

  // The built package too, when it has been built (npm test builds before running tests).
  const dist = join(root, 'dist', 'hub-client');
  let built: string[] = [];
  try {
    built = readdirSync(dist).filter((f) => f.endsWith('.js')).map((f) => join(dist, f));
  } catch {
    // Not built in this checkout.
  }
  // A fresh vm context has only the JavaScript built-ins: give it setTimeout, URL and a scripted WebSocket, nothing
  // from Node. Needs --experimental-vm-modules, so it runs in a child process.
  const script = join(out, 'run.mjs');
  writeFileSync(
    script,
    `import vm from 'node:vm';
import { readFileSync } from 'node:fs';
const sent = [];
class FakeSocket {
  constructor(url, protocols) { this.url = url; this.protocols = protocols; this.readyState = 0; this.protocol = ''; this.binaryType = 'blob';
    this.onopen = this.onmessage = this.onclose = this.onerror = null; FakeSocket.last = this;
    setTimeout(() => { this.readyState = 1; this.onopen?.({}); }, 1); }
  send(data) { sent.push(JSON.parse(data)); }
  close() { this.readyState = 3; }
}
const context = vm.createContext({ setTimeout, clearTimeout, URL, FakeSocket, sent });
const mod = new vm.SourceTextModule(readFileSync(${JSON.stringify(join(out, 'index.js'))}, 'utf8'), { context });
await mod.link(() => { throw new Error('the module imports something'); });
const imports = {};
for (const file of JSON.parse(process.argv[2])) imports[file] = new vm.SourceTextModule(readFileSync(file, 'utf8'), { identifier: file }).dependencySpecifiers;
await mod.evaluate();
context.HubClient = mod.namespace.HubClient;
const result = await vm.runInContext(\`(async () => {
  if (typeof Buffer !== 'undefined' || typeof process !== 'undefined' || typeof require !== 'undefined') throw new Error('Node globals leaked');
  const c = new HubClient({ url: 'wss://hub.example/ws', WebSocket: FakeSocket, token: 'jwt.a.b' });
  const got = [];
  c.on('message', (m) => got.push(m));
  await c.connect();
  FakeSocket.last.onmessage({ data: JSON.stringify({ type: 'ping', data: {}, request_id: null }) });
  const sub = c.subscribe('t');
  FakeSocket.last.onmessage({ data: JSON.stringify({ type: 'ack', request_id: sent.at(-1).request_id, data: { topic: 't', epoch: 'e', seq: 0, recovered: true } }) });
  await sub;
  FakeSocket.last.onmessage({ data: JSON.stringify({ type: 'x', data: 1, topic: 't', seq: 1, epoch: 'e', ts: 1 }) });
  FakeSocket.last.onmessage({ data: JSON.stringify({ type: 'x', data: 1, topic: 't', seq: 1, epoch: 'e', ts: 1 }) });
  c.close();
  return { protocols: FakeSocket.last.protocols, sent, got: got.length, state: c.state };
})()\`, context);
console.log(JSON.stringify({ ...result, imports }));
`,
  );
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--experimental-vm-modules', '--no-warnings', script, JSON.stringify([join(out, 'index.js'), ...built])], { timeout: 20_000, env: { ...process.env, NODE_OPTIONS: '' } }, (error, so, se) => (error ? reject(new Error(se)) : resolve(so)));
  });
  const result = JSON.parse(stdout);
  t.same(result.imports[join(out, 'index.js')], [], 'the module imports nothing (parsed by V8)');
  for (const file of built) {
    const specifiers: string[] = result.imports[file];
    t.ok(specifiers.every((s) => s.startsWith('./') && !s.includes('..')), `${file}: imports only beside itself (${specifiers.join(', ') || 'none'})`);
  }
  t.same(result.protocols, ['bearer', 'jwt.a.b']);
  t.same(result.sent[0], { type: 'pong', data: {} }, 'answered the ping');
  t.match(result.sent[1], { type: 'subscribe', data: { topic: 't' } });
  t.equal(result.got, 1, 'the duplicate was dropped');
  t.equal(result.state, 'closed');
});

t.test('package.json exports wsengine/hub-client with types, import and default', async (t) => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  t.same(pkg.exports['./hub-client'], { types: './dist/hub-client/index.d.ts', import: './dist/hub-client/index.js', default: './dist/hub-client/index.js' });
});

t.test('README "Hub client" example: the same as examples/hub-client.ts, and it runs against a hub', async (t) => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const at = readme.indexOf('## Hub client');
  const start = readme.indexOf('```ts\n', at) + 6;
  const snippet = readme.slice(start, readme.indexOf('```', start));
  const example = readFileSync(join(root, 'examples', 'hub-client.ts'), 'utf8');
  const asPackage = example
    .slice(example.indexOf('\n') + 1)
    .replace("from '../lib/index.js'", "from 'wsengine'")
    .replace("from '../lib/hub-client/index.js'", "from 'wsengine/hub-client'");
  t.equal(snippet, asPackage, 'README snippet = examples/hub-client.ts with package imports (type-checked by tsc -p tsconfig.json)');

  const hub = await hubFor(t, { acceptToken: (tok) => tok === 'readme-token' });
  const store = hub.store;
  const out = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(root, 'examples', 'hub-client.ts')],
      { cwd: root, timeout: 20_000, env: { ...process.env, NODE_OPTIONS: '', HUB_URL: hub.url, HUB_TOKEN: 'readme-token' } },
      (error, stdout, stderr) => (error ? reject(new Error(`${stdout}${stderr}`)) : resolve(stdout)),
    );
  });
  t.match(out, /state: open/);
  t.match(out, /subscribed, recovered: true/);
  t.match(out, /published as seq 1/);
  t.match(out, /message: chat\.lobby 1 say \{"text":"hello"\}/, 'its own publish came back through chat.#');
  t.match(out, /state: closed/);
  t.same(store.stream('default', 'chat.lobby')!.entries.map((m) => m.data), [{ text: 'hello' }]);
});

t.test('gives up after backoff.maxAttempts consecutive failures', async (t) => {
  const hub = await startFakeHub();
  const url = hub.url;
  await hub.kill(); // nothing listens on this port now
  const c = client(t, { url, backoff: { initialDelay: 10, maxDelay: 20, maxAttempts: 3 } });
  const ev = record(c);
  await t.rejects(c.connect(), { code: 'closed', message: /gave up after 3 failed attempts/ });
  t.equal(c.state, 'closed');
  t.equal(ev.disconnects.filter((d) => d.action === 'reconnect').length, 3);
  t.match(ev.disconnects.at(-1), { action: 'stop', code: 1006 });
});
