/**
 * Hostile and failing clients over real sockets (issue findings 7, 9 and 10): a `refresh` to a token with fewer
 * tenants revokes what it no longer allows; `pendingAuth` settles for connections closed before authenticating;
 * the `slowConsumer` event names the slow client; the app-level heartbeat rule per dialect (seed 001).
 */
import t from 'tap';
import type { HubClient, SlowConsumerPolicy } from '../lib/hub/index.js';
import { WebSocket } from '../lib/index.js';
import { open, record, type Recorder, sleep, startHub, token } from './helpers/hub.js';
import { rawUpgrade, until } from './helpers/net.js';

/** A masked client text frame (payload under 126 bytes), for raw sockets. */
function frame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  const out = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) out[i] = payload[i] ^ mask[i % 4];
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, out]);
}

/** The close code, or 'open' when the socket is still open after `ms` (generous: a deadline, not a timing check). */
async function closedWithin(r: Recorder, ms: number): Promise<number | 'open'> {
  let timer: NodeJS.Timeout | undefined;
  const open = new Promise<'open'>((resolve) => (timer = setTimeout(() => resolve('open'), ms)));
  const result = await Promise.race([r.closed.then((c) => c.code), open]);
  clearTimeout(timer);
  return result;
}

t.test('finding 7: refresh to a token with fewer tenants revokes the subscriptions in the tenants it dropped', async (t) => {
  const { hub, url } = await startHub();
  t.teardown(() => hub.close());
  const c = await open(`${url}?token=${token('ten', { tenants: ['red', 'blue'] })}`);
  c.send({ type: 'subscribe', data: { topic: 'feed', tenant: 'red' }, request_id: 'r' });
  c.send({ type: 'subscribe', data: { topic: 'feed.#', tenant: 'blue' }, request_id: 'b' });
  await c.count((m) => m.type === 'ack', 2);
  await hub.publish({ topic: 'feed.eu', tenant: 'blue', type: 'm', data: { n: 'before' } });
  await c.next((m) => m.type === 'm' && m.tenant === 'blue');
  t.same((await hub.presence('feed.#', 'blue')).users, { ten: 1 }, 'in blue presence before');

  c.send({ type: 'refresh', data: { token: token('ten', { tenants: ['red'] }) }, request_id: 'refresh' });
  const ack = await c.next((m) => m.request_id === 'refresh');
  t.equal(ack.type, 'ack', 'the refresh is accepted');
  t.same(ack.data.revoked, [{ tenant: 'blue', topic: 'feed.#' }], 'the ack lists the revoked subscription');

  await hub.publish({ topic: 'feed.eu', tenant: 'blue', type: 'm', data: { n: 'after' } });
  await hub.publish({ topic: 'feed', tenant: 'red', type: 'm', data: { n: 'red' } });
  await c.next((m) => m.type === 'm' && m.tenant === 'red');
  await hub.sendToUser('ten', { type: 'marker' });
  await c.next((m) => m.type === 'marker');
  t.same(c.json.filter((m) => m.type === 'm').map((m) => `${m.tenant}:${m.data.n}`), ['blue:before', 'red:red'], 'blue stops at once, red keeps delivering');
  t.same((await hub.presence('feed.#', 'blue')).connections, 0, 'gone from blue presence');
  t.same((await hub.presence('feed', 'red')).users, { ten: 1 }, 'still in red presence');
  t.equal(hub.stats().subscriptions, 1, 'one subscription left');
  c.send({ type: 'subscribe', data: { topic: 'feed.#', tenant: 'blue' }, request_id: 'again' });
  t.equal((await c.next((m) => m.request_id === 'again')).data.code, 'unauthorized', 'and blue cannot be subscribed again');
  c.ws.close();
});

t.test('finding 9: pendingAuth returns to 0 for connections closed before authenticating', async (t) => {
  const { hub, url } = await startHub({ limits: { authDeadline: 200 } });
  t.teardown(() => hub.close());
  const idle = await Promise.all(Array.from({ length: 4 }, () => open(url)));
  t.equal(hub.stats().pendingAuth, 4, 'four waiting for first-message auth');
  for (const c of idle) t.equal((await c.closed).code, 4401, 'closed at the auth deadline with 4401');
  await until(() => hub.stats().connections === 0, 10_000, 'the hub to release the closed connections');
  t.equal(hub.stats().pendingAuth, 0, 'pendingAuth back to 0 after deadline closes');
  // The other ways out of the pending state: a refused first-message token, the client closing first.
  const refused = await open(url);
  refused.send({ type: 'auth', token: 'not-a-token' });
  t.equal((await refused.closed).code, 4401, 'a refused first-message token closes with 4401');
  const leaving = await open(url);
  leaving.ws.close(1000);
  await leaving.closed;
  const admitted = await open(url);
  admitted.send({ type: 'auth', token: token('late'), request_id: 'a' });
  await admitted.next((m) => m.type === 'auth_ok');
  await until(() => hub.stats().connections === 1, 10_000, 'only the admitted connection left');
  t.equal(hub.stats().pendingAuth, 0, 'pendingAuth 0 after every close path, and after admission');
  admitted.ws.close();
});

t.test('finding 9: the slowConsumer event names the slow client, never the one that closes normally', async (t) => {
  const { hub, url, port } = await startHub({ limits: { maxBufferedBytes: 256 * 1024, rate: false } });
  t.teardown(() => hub.close());
  const events: Array<{ user: string; policy: SlowConsumerPolicy }> = [];
  hub.on('slowConsumer', (client: HubClient, info) => events.push({ user: client.user, policy: info.policy }));
  const closes: Array<[string, number]> = [];
  hub.on('disconnect', (client: HubClient, code) => closes.push([client.user, code]));
  // alice subscribes over a raw socket, then never reads again.
  const alice = await rawUpgrade(port, `/ws?token=${token('alice')}`);
  t.teardown(() => alice.socket.destroy());
  alice.socket.write(frame('{"type":"subscribe","data":{"topic":"hot"},"request_id":1}'));
  await until(() => alice.received().includes('"type":"ack"'), 5000, "alice's ack");
  alice.socket.pause();
  const bob = await open(`${url}?token=${token('bob')}`);
  bob.send({ type: 'subscribe', data: { topic: 'hot' }, request_id: 1 });
  await bob.next((m) => m.type === 'ack');
  // Publish until alice's unsent data passes the budget (after the kernel's socket buffers fill); bob reads each
  // batch before the next, so he never comes near it.
  const body = 'x'.repeat(32 * 1024);
  let sent = 0;
  while (events.length === 0 && sent < 1000) {
    for (let k = 0; k < 4; k++) await hub.publish({ topic: 'hot', type: 'm', data: { i: ++sent, body } });
    await bob.count((m) => m.type === 'm', sent, 10_000);
  }
  t.same(events, [{ user: 'alice', policy: 'disconnect' }], `alice is the slow consumer (after ${sent} messages)`);
  bob.ws.close(1000);
  t.equal((await bob.closed).code, 1000, 'bob closes normally');
  await until(() => hub.stats().connections === 0, 10_000, 'alice to be destroyed');
  t.same(events, [{ user: 'alice', policy: 'disconnect' }], 'one event, for alice only');
  t.same(closes.map(([user]) => user).sort(), ['alice', 'bob'], 'both disconnected');
  const codes = hub.stats().closeCodes;
  t.same([codes['1008'], codes['1000']], [1, 1], 'alice counted under 1008, bob under 1000');
});

t.test('slowConsumer drop: after an episode of dropped direct messages, the next episode is reported and its gaps sent once drained', async (t) => {
  const { hub, port } = await startHub({ limits: { maxBufferedBytes: 256 * 1024, slowConsumer: 'drop', rate: false } });
  t.teardown(() => hub.close());
  const events: SlowConsumerPolicy[] = [];
  hub.on('slowConsumer', (client: HubClient, info) => {
    if (client.user === 'carol') events.push(info.policy);
  });
  let id = '';
  hub.on('connection', (client: HubClient) => {
    if (client.user === 'carol') id = client.id;
  });
  const carol = await rawUpgrade(port, `/ws?token=${token('carol')}`);
  t.teardown(() => carol.socket.destroy());
  carol.socket.write(frame('{"type":"subscribe","data":{"topic":"hot"},"request_id":1}'));
  await until(() => carol.received().includes('"type":"ack"'), 5000, "carol's ack");
  const body = 'x'.repeat(32 * 1024);
  const drained = async (): Promise<void> => {
    carol.socket.resume();
    await until(() => hub.client(id)!.connection.bufferedAmount === 0, 10_000, "carol's socket to drain");
    await sleep(300); // the hub's checks of stalled connections (every 100 ms) and drain listeners ran
    carol.socket.pause();
  };
  // Episode 1: only direct messages are dropped.
  carol.socket.pause();
  for (let i = 0; events.length === 0 && i < 1000; i++) await hub.sendToUser('carol', { type: 'direct', data: { i, body } });
  t.same(events, ['drop'], 'episode 1 (direct messages) reported');
  await drained();
  // Episode 2: topic messages are dropped.
  const before = hub.stats().drops;
  let published = 0;
  while (hub.stats().drops === before && published < 1000) {
    await hub.publish({ topic: 'hot', type: 'm', data: { i: ++published, body } });
    if (published % 8 === 0) await sleep(1);
  }
  t.ok(hub.stats().drops > before, `episode 2: topic messages dropped (after ${published})`);
  t.same(events, ['drop', 'drop'], 'episode 2 reported as well');
  // Nothing more is published: carol reads, and the gap of episode 2 must come by itself once her socket drains.
  const at = carol.received().length;
  carol.socket.resume();
  await until(() => carol.received().subarray(at).includes('"type":"gap"'), 5000, 'the gap report of episode 2').then(
    () => t.pass('the gap report of episode 2 came once carol drained'),
    (error: Error) => t.fail(error.message),
  );
});

t.test('finding 10: native clients that only answer protocol pings are closed with 4408', async (t) => {
  const { hub, url } = await startHub({ heartbeat: { interval: 100, timeout: 400 } });
  t.teardown(() => hub.close());
  // Every client of this engine answers protocol pings by itself; these never send {"type":"pong"}.
  const silent = await open(`${url}?token=${token('silent')}`);
  const silentBearer = await open(url, ['bearer', token('silent2')]);
  t.equal(silentBearer.ws.protocol, 'bearer', 'the token-subprotocol client negotiated bearer (native dialect)');
  t.equal(await closedWithin(silent, 10_000), 4408, 'native, no subprotocol: closed with 4408');
  t.equal(await closedWithin(silentBearer, 10_000), 4408, 'native, bearer subprotocol: closed with 4408');
  t.ok(silent.json.some((m) => m.type === 'ping'), 'after getting app-level pings');
  await until(() => hub.stats().connections === 0, 10_000, 'the hub to release both');
  t.equal(hub.stats().closeCodes['4408'], 2, 'counted under 4408');
});

t.test('finding 10: pong replies, any data message, llps.v1 and appPing none keep a connection open', async (t) => {
  // A longer timeout than above, so that a stall of this (loaded) process does not pass for silence; the clients
  // are watched for more than three timeouts.
  const heartbeat = { interval: 100, timeout: 1200 };
  const watch = 4000;
  const native = await startHub({ heartbeat });
  t.teardown(() => native.hub.close());
  const none = await startHub({ heartbeat: { ...heartbeat, appPing: 'none' } });
  t.teardown(() => none.hub.close());
  const ponging = record(new WebSocket(`${native.url}?token=${token('ponging')}`));
  ponging.ws.addEventListener('message', (e: Event) => {
    const data = (e as MessageEvent).data;
    if (typeof data === 'string' && data.startsWith('{"type":"ping"')) ponging.send({ type: 'pong', data: {} });
  });
  await ponging.opened;
  const chatty = await open(`${native.url}?token=${token('chatty')}`);
  const chatter = setInterval(() => chatty.send({ type: 'presence', data: { topic: 'x' } }), 100);
  t.teardown(() => clearInterval(chatter));
  const llps = await open(`${native.url}?token=${token('llps')}`, 'llps.v1');
  t.equal(llps.ws.protocol, 'llps.v1', 'the llps client negotiated llps.v1');
  const quiet = await open(`${none.url}?token=${token('quiet')}`);
  const quietLlps = await open(`${none.url}?token=${token('quiet2')}`, 'llps.v1');
  const clients: Array<[Recorder, string]> = [
    [ponging, 'a native client answering {"type":"ping"} with {"type":"pong"}'],
    [chatty, 'a native client sending other messages (never a pong): any data message counts'],
    [llps, 'an llps.v1 client answering only protocol pings'],
    [quiet, "appPing 'none': a native client answering only protocol pings"],
    [quietLlps, "appPing 'none': an llps.v1 client answering only protocol pings"],
  ];
  const codes = await Promise.all(clients.map(([r]) => closedWithin(r, watch)));
  for (const [k, [, what]] of clients.entries()) t.equal(codes[k], 'open', `${what}: open after ${watch} ms`);
  t.ok(ponging.json.filter((m) => m.type === 'ping').length >= 3, 'the ponging client got (and answered) several app-level pings');
  t.notOk(llps.texts.some((s) => s.includes('"ping"')), 'llps.v1 gets no app-level ping');
  t.notOk(quiet.texts.some((s) => s.includes('"ping"')), "appPing 'none': no app-level ping sent");
  clearInterval(chatter);
  for (const [r] of clients) r.ws.close();
  t.notOk(native.hub.stats().closeCodes['4408'], 'nobody timed out');
  t.notOk(none.hub.stats().closeCodes['4408'], "nobody timed out (appPing 'none')");
});
