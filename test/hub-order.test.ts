/**
 * Request order and reply shapes over real sockets (issue findings 5, 6 and 8): a pipelined `unsubscribe` cancels
 * the `subscribe` before it whatever the backplane's latency; `x.#` receives `x`; `rate_limited` names the request;
 * an `unsubscribe` without a `request_id` is acknowledged.
 */
import t from 'tap';
import { MemoryBackplane, type PatternSince, type PublishedMessage, type ResumeAnswer, type StreamPosition } from '../lib/hub/index.js';
import { open, sleep, startHub, token } from './helpers/hub.js';

/** The memory backplane, answering `subscribe`, `resume` and `publish` only after `delay` ms (as a broker would). */
class LaggingBackplane extends MemoryBackplane {
  constructor(private readonly delay: number) {
    super();
  }

  override async subscribe(tenant: string, pattern: string): Promise<void> {
    await sleep(this.delay);
    return super.subscribe(tenant, pattern);
  }

  override async resume(tenant: string, name: string, since: StreamPosition | PatternSince | null): Promise<ResumeAnswer> {
    await sleep(this.delay);
    return super.resume(tenant, name, since);
  }

  override async publish(tenant: string, topic: string, type: string, data: string): Promise<PublishedMessage> {
    await sleep(this.delay);
    return super.publish(tenant, topic, type, data);
  }
}

/** The request ids of the replies (acks, errors, pongs) received, in order. */
const replyIds = (json: Array<Record<string, any>>): unknown[] => json.filter((m) => m.type === 'ack' || m.type === 'error' || m.type === 'pong').map((m) => m.request_id);

t.test('finding 5: subscribe and unsubscribe sent back to back, backplane with latency: acks in order, the subscription never goes live', async (t) => {
  const { hub, url } = await startHub({ backplane: new LaggingBackplane(20) });
  t.teardown(() => hub.close());
  const c = await open(`${url}?token=${token('pipe')}`);
  // Same tick: both frames leave together; the unsubscribe reaches the hub while the subscribe waits for the backplane.
  c.send({ type: 'subscribe', data: { topic: 'room.1' }, request_id: 1 });
  c.send({ type: 'unsubscribe', data: { topic: 'room.1' }, request_id: 2 });
  await c.count((m) => m.request_id === 1 || m.request_id === 2, 2);
  t.same(replyIds(c.json), [1, 2], 'the replies come in request order');
  t.same(c.json.map((m) => [m.type, m.request_id]), [['ack', 1], ['ack', 2]], 'both acknowledged');

  await hub.publish({ topic: 'room.1', type: 'chat', data: { n: 1 } });
  // A direct message after the publication: it is written to the same socket after anything the publication sent.
  await hub.sendToUser('pipe', { type: 'marker' });
  await c.next((m) => m.type === 'marker');
  t.notOk(c.json.some((m) => m.type === 'chat'), 'nothing delivered after the unsubscribe ack');
  const presence = await hub.presence('room.1');
  t.same([presence.connections, presence.users], [0, {}], 'not in presence');
  t.equal(hub.stats().subscriptions, 0, 'no subscription held');
  t.equal(hub.stats().pendingRequests, 0, 'no request left waiting');
  c.ws.close();
});

t.test('finding 5: 300 pipelined subscribe/unsubscribe pairs under maxSubscriptions 5 never fail', async (t) => {
  const { hub, url } = await startHub({ backplane: new LaggingBackplane(2), limits: { maxSubscriptions: 5, rate: false } });
  t.teardown(() => hub.close());
  const c = await open(`${url}?token=${token('loop')}`);
  const pairs = 300;
  const batch = 25; // 50 requests in flight: under the default maxPendingRequests (64)
  const sent: string[] = [];
  for (let start = 0; start < pairs; start += batch) {
    for (let i = start; i < start + batch; i++) {
      c.send({ type: 'subscribe', data: { topic: `loop.${i % 7}` }, request_id: `s${i}` });
      c.send({ type: 'unsubscribe', data: { topic: `loop.${i % 7}` }, request_id: `u${i}` });
      sent.push(`s${i}`, `u${i}`);
    }
    await c.count((m) => m.type === 'ack' || m.type === 'error', sent.length, 20_000);
  }
  const errors = c.json.filter((m) => m.type === 'error');
  t.same(errors.map((m) => m.data.code), [], 'no subscription_failed (nor any other error)');
  t.same(replyIds(c.json), sent, 'every reply in request order');
  t.equal(hub.stats().subscriptions, 0, 'no subscription left');
  for (let k = 0; k < 7; k++) t.equal((await hub.presence(`loop.${k}`)).connections, 0, `loop.${k}: presence empty`);
  c.send({ type: 'subscribe', data: { topic: 'after' }, request_id: 'after' });
  t.equal((await c.next((m) => m.request_id === 'after')).type, 'ack', 'a later subscription still fits');
  c.ws.close();
});

t.test('finding 6: a pattern x.# receives x itself, end to end', async (t) => {
  const { hub, url } = await startHub();
  t.teardown(() => hub.close());
  const c = await open(`${url}?token=${token('hash')}`);
  c.send({ type: 'subscribe', data: { topic: 'news.#' }, request_id: 1 });
  c.send({ type: 'subscribe', data: { topic: 'a.b.#' }, request_id: 2 });
  await c.count((m) => m.type === 'ack', 2);
  for (const topic of ['news', 'newsroom', 'news.eu', 'a', 'a.b', 'a.bc', 'a.b.c.d']) await hub.publish({ topic, type: 'm', data: { topic } });
  await hub.sendToUser('hash', { type: 'marker' });
  await c.next((m) => m.type === 'marker');
  t.same(c.json.filter((m) => m.type === 'm').map((m) => m.topic), ['news', 'news.eu', 'a.b', 'a.b.c.d'], 'news.# gets news and news.eu; a.b.# gets a.b and a.b.c.d; nothing else');
  c.ws.close();
});

t.test('finding 8: rate_limited carries the request_id', async (t) => {
  const { hub, url } = await startHub({ limits: { rate: { messages: 1, interval: 60_000, burst: 2 } } });
  t.teardown(() => hub.close());
  const c = await open(`${url}?token=${token('rl')}`);
  for (const id of ['p1', 'p2', 'p3', 'p4', 5]) c.send({ type: 'ping', data: {}, request_id: id });
  const replies = await c.count(() => true, 5);
  t.same(replies.map((m) => [m.type, m.request_id]), [['pong', 'p1'], ['pong', 'p2'], ['error', 'p3'], ['error', 'p4'], ['error', 5]], 'a burst of 2, then refusals naming each request');
  t.ok(replies.slice(2).every((m) => m.data.code === 'rate_limited'), 'as rate_limited');
  c.send({ type: 'subscribe', data: { topic: 'a..b' }, request_id: 'bad' });
  t.same((await c.next((m) => m.request_id === 'bad')).data.code, 'rate_limited', 'also for a request that would be invalid');
  c.ws.close();
});

t.test('finding 8: an unsubscribe without request_id is acknowledged', async (t) => {
  const { hub, url } = await startHub();
  t.teardown(() => hub.close());
  const c = await open(`${url}?token=${token('un')}`);
  c.send({ type: 'subscribe', data: { topic: 'x' }, request_id: 's' });
  await c.next((m) => m.request_id === 's');
  c.send({ type: 'unsubscribe', data: { topic: 'x' } });
  const ack = await c.next((m) => m.type === 'ack' && m.request_id === null, 5000);
  t.same(ack.data, { topic: 'x', tenant: 'default' }, 'the ack names the topic, with request_id null');
  t.ok(c.texts.some((s) => s.startsWith('{"type":"ack","request_id":null')), 'request_id: null on the wire');
  t.equal(hub.stats().subscriptions, 0, 'and the subscription is gone');
  c.send({ type: 'unsubscribe', data: { topic: 'never.subscribed' } });
  t.same((await c.count((m) => m.type === 'ack' && m.request_id === null, 2))[1].data.topic, 'never.subscribed', 'an unsubscribe of nothing is acknowledged too');
  c.ws.close();
});
