/**
 * Losses a backplane detects reach the clients: `BackplaneSink.gap` → a `gap` frame (native and seed-000 shapes) to
 * every connection whose subscription matches, once per connection; the hub client turns an unknown end into
 * `Infinity`. Over real sockets, with a backplane that wraps {@link MemoryBackplane} and reports gaps on command.
 */
import t from 'tap';
import { GAP_UNKNOWN_END, MemoryBackplane, type BackplaneSink, type Gap } from '../lib/hub/index.js';
import { HubClient, type GapReport } from '../lib/hub-client/index.js';
import { WebSocket } from '../lib/index.js';
import { open, sleep, startHub, token } from './helpers/hub.js';

/** A memory backplane that can report a gap the way a broker adapter does. */
class GapBackplane extends MemoryBackplane {
  private hubSink: BackplaneSink | null = null;
  override async attach(sink: BackplaneSink): Promise<void> {
    this.hubSink = sink;
    return super.attach(sink);
  }
  lose(gap: Gap): void {
    if (this.hubSink?.gap === undefined) throw new Error('the hub implements no gap sink');
    this.hubSink.gap(gap);
  }
}

t.test('a backplane gap reaches matching subscribers once per connection, in both dialects, not other topics or tenants', async (t) => {
  const backplane = new GapBackplane();
  const { hub, url } = await startHub({ backplane });
  t.teardown(() => hub.close());
  const subscribe = async (user: string, topics: string[], tenant?: string) => {
    const c = await open(`${url}?token=${token(user)}`);
    for (const [i, topic] of topics.entries()) c.send({ type: 'subscribe', data: { topic, ...(tenant ? { tenant } : {}) }, request_id: i });
    await c.count((m) => m.type === 'ack', topics.length);
    return c;
  };
  const exact = await subscribe('exact', ['room.a']);
  const wildcard = await subscribe('wild', ['room.*']);
  const both = await subscribe('both', ['room.a', 'room.#', '#']);
  const other = await subscribe('other', ['room.b']);
  const staging = await subscribe('staging', ['room.a', 'room.#'], 'staging');
  const llps = await open(url, ['llps.v1', 'at.' + token('llps')]);
  llps.send({ action: 'subscribe', tenant: 'default', channel: 'room.a' });
  await llps.next((m) => m.action === 'subscribed');

  const before = hub.stats().gapReports;
  backplane.lose({ tenant: 'default', topic: 'room.a', epoch: 'E1', from: 3, to: 7 });
  // Markers published after the gap: once each client has its marker, everything sent before it has arrived.
  await hub.publish({ topic: 'room.a', type: 'marker', data: {} });
  await hub.publish({ topic: 'room.b', type: 'marker', data: {} });
  await hub.publish({ topic: 'room.a', tenant: 'staging', type: 'marker', data: {} });
  for (const c of [exact, wildcard, both, other, staging]) await c.next((m) => m.type === 'marker');
  await llps.next((m) => m.action === 'message' && m.type === 'marker');

  const gapsOf = (c: typeof exact) => c.json.filter((m) => m.type === 'gap');
  const expected = { topic: 'room.a', tenant: 'default', epoch: 'E1', from: 3, to: 7 };
  t.same(gapsOf(exact).map((m) => m.data), [expected], 'exact subscriber: one native gap frame');
  t.same(gapsOf(wildcard).map((m) => m.data), [expected], 'wildcard subscriber: the same frame');
  t.same(gapsOf(both).map((m) => m.data), [expected], 'three matching subscriptions on one connection: one frame');
  t.same(gapsOf(other), [], 'a subscriber of another topic gets nothing');
  t.same(gapsOf(staging), [], 'the same topic in another tenant gets nothing');
  const llpsGaps = llps.json.filter((m) => m.action === 'gap');
  t.same(llpsGaps, [{ action: 'gap', channel: 'room.a', ...expected }], 'seed-000 subscriber: the gap in its own shape');
  const gapIndex = exact.json.findIndex((m) => m.type === 'gap');
  const markerIndex = exact.json.findIndex((m) => m.type === 'marker');
  t.ok(gapIndex >= 0 && gapIndex < markerIndex, 'the gap arrives before the messages published after it');
  t.equal(hub.stats().gapReports - before, 4, 'stats count one report per recipient connection');

  // Unknown end (the Redis/NATS adapters after a broker lost the epoch): the number goes on the wire as is.
  backplane.lose({ tenant: 'default', topic: 'room.a', epoch: 'E1', from: 8, to: GAP_UNKNOWN_END });
  const open_ = await exact.next((m) => m.type === 'gap' && m.data.from === 8);
  t.equal(open_.data.to, Number.MAX_SAFE_INTEGER, 'an unknown end is sent as Number.MAX_SAFE_INTEGER');
  for (const c of [exact, wildcard, both, other, staging, llps]) c.ws.close();
});

t.test('a gap reported while a subscription is being set up is sent after its ack when it lies past the start', async (t) => {
  let release: () => void = () => {};
  class SlowBackplane extends GapBackplane {
    override async subscribe(tenant: string, pattern: string): Promise<void> {
      await super.subscribe(tenant, pattern);
      if (pattern === 'slow.#') await new Promise<void>((r) => (release = r));
    }
  }
  const backplane = new SlowBackplane();
  const { hub, url } = await startHub({ backplane });
  t.teardown(() => hub.close());
  await hub.publish({ topic: 'slow.x', type: 'm', data: { i: 1 } });
  const c = await open(`${url}?token=${token('s')}`);
  c.send({ type: 'subscribe', data: { topic: 'slow.#' }, request_id: 1 });
  await sleep(50);
  const epoch = (await hub.history('slow.x')).position!.epoch;
  backplane.lose({ tenant: 'default', topic: 'slow.x', epoch, from: 5, to: 6 });
  release();
  await c.next((m) => m.type === 'ack');
  const gap = await c.next((m) => m.type === 'gap');
  t.same([gap.data.topic, gap.data.from, gap.data.to], ['slow.x', 5, 6], 'held back during setup, sent after the ack');
  t.equal(c.json.filter((m) => m.type === 'gap').length, 1, 'once');
  c.ws.close();
});

t.test('hub client: a gap with an unknown end surfaces as to = Infinity', async (t) => {
  const backplane = new GapBackplane();
  const { hub, url } = await startHub({ backplane });
  t.teardown(() => hub.close());
  const client = new HubClient({ url: `${url}?token=${token('hc')}`, WebSocket, requestTimeout: 2000 });
  t.teardown(() => client.close());
  const gaps: GapReport[] = [];
  client.on('gap', (g) => gaps.push(g));
  await client.connect();
  await client.subscribe('feed.*');
  backplane.lose({ tenant: 'default', topic: 'feed.x', epoch: 'old', from: 4, to: GAP_UNKNOWN_END });
  backplane.lose({ tenant: 'default', topic: 'feed.y', epoch: 'E', from: 2, to: 3 });
  const deadline = Date.now() + 5000;
  while (gaps.length < 2 && Date.now() < deadline) await sleep(10);
  t.same(gaps, [
    { topic: 'feed.x', tenant: 'default', epoch: 'old', from: 4, to: Infinity, source: 'report' },
    { topic: 'feed.y', tenant: 'default', epoch: 'E', from: 2, to: 3, source: 'report' },
  ]);
});
