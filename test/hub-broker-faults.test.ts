/**
 * Faults that must not leave users cut off (issue 17), against real Redis and NATS servers of our own on spare
 * ports, with hub processes (the package's bin, `wsengine hub --redis|--nats`) so that `kill -9` is real:
 *
 * 1. A hub started before its broker keeps attaching (backoff) and serves once the broker is up — no restart;
 *    meanwhile upgrades get 503 with Retry-After, publishes 503 at once, and `/health` says 503 `unavailable`.
 * 2. A hub killed with SIGKILL: its dead connections, still registered until `--node-ttl`, never make the surviving
 *    hub close a live connection of the same user (4429); beyond the limit among live ones, the oldest still goes.
 * 3. With the broker down, the HTTP API answers 503 at once (not after the broker call's 5 s timeout), and
 *    `/health` says so; when the broker is back, everything works again.
 *
 * The bin comes from dist/: run `npm run build` first (`npm test` does).
 */
import t from 'tap';
import { createHub, MemoryBackplane, type BackplaneSink, type HubHealth } from '../lib/hub/index.js';
import { rawUpgrade } from './helpers/net.js';
import { Client, OwnBroker, publish, runPrefix, startNode, type HubNode } from './helpers/scale.js';
import { api, tokenFor } from './helpers/service.js';

t.setTimeout(600_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 200 ms until it returns true; fails with `what` (and the last value seen) after `ms`. */
async function eventually(what: string, ms: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check().catch(() => false)) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(200);
  }
}

/** One API call, timed. */
async function timed(node: HubNode, method: string, path: string, body?: unknown): Promise<{ status: number; ms: number; body: any }> {
  const start = Date.now();
  const r = await api(node, method, path, body);
  return { status: r.status, ms: Date.now() - start, body: r.body };
}

/** The answer to a WebSocket upgrade on the hub's `/ws` (status and Retry-After). */
async function upgrade(node: HubNode, user: string): Promise<{ status: number; retryAfter: string | undefined }> {
  const peer = await rawUpgrade(node.port, `/ws?token=${encodeURIComponent(tokenFor(user))}`);
  peer.socket.destroy();
  return { status: peer.head.status, retryAfter: peer.head.headers.get('retry-after')?.[0] };
}

/** Most the HTTP API may take to refuse while the broker is known to be down (the broker calls time out at 5 s). */
const AT_ONCE = 2_500;

// ─── In process: the retry loop itself ──────────────────────────────────────────────────────────────────────────

/** A memory backplane whose first `failures` attach attempts fail. */
class FlakyBackplane extends MemoryBackplane {
  attempts: number[] = [];
  constructor(private failures: number) {
    super();
  }
  override async attach(sink: BackplaneSink): Promise<void> {
    this.attempts.push(Date.now());
    if (this.attempts.length <= this.failures) throw new Error(`broker down (attempt ${this.attempts.length})`);
    return super.attach(sink);
  }
}

t.test('attach is retried with growing delays until it succeeds; the hub then serves', async (t) => {
  const backplane = new FlakyBackplane(3);
  const hub = createHub({ backplane });
  const errors: string[] = [];
  const states: string[] = [];
  hub.on('error', (e) => errors.push(e.message));
  hub.on('backplane', (h: HubHealth) => states.push(h.backplane));
  t.teardown(() => hub.close());
  t.equal(hub.health().backplane, 'attaching');
  const address = await hub.listen(0, '127.0.0.1');
  t.ok(address.port > 0, 'listen resolves after a failed first attempt');
  t.match(hub.health(), { backplane: 'down', attached: false, accepting: false, attempts: 1, error: 'broker down (attempt 1)' });
  const start = Date.now();
  await t.rejects(hub.publish({ topic: 'a', type: 't', data: {} }), { name: 'BackplaneUnavailableError', code: 'backplane_unavailable' });
  t.ok(Date.now() - start < 100, 'publish is refused at once');
  const deadline = Date.now() + 10_000;
  while (hub.health().backplane !== 'up' && Date.now() < deadline) await sleep(20);
  t.match(hub.health(), { backplane: 'up', attached: true, reachable: true, accepting: true, attempts: 3, error: null, retryIn: null });
  t.equal(backplane.attempts.length, 4, 'three failures, then success');
  const gaps = backplane.attempts.slice(1).map((at, i) => at - backplane.attempts[i]);
  t.ok(gaps[0] >= 40 && gaps[2] >= gaps[0], `delays grow (${gaps.join(', ')} ms)`);
  t.equal(errors.length, 3, 'every failed attempt is reported');
  t.match(errors[2], /attempt 3, next in \d+ ms\): broker down \(attempt 3\)/);
  t.same(states, ['down', 'up'], 'the backplane event says when the state changed');
  t.match(await hub.publish({ topic: 'a', type: 't', data: {} }), { seq: 1 }, 'publishing works without a restart');
});

t.test('close() stops the retries', async (t) => {
  const backplane = new FlakyBackplane(Infinity);
  const hub = createHub({ backplane });
  hub.on('error', () => {});
  await sleep(400);
  await hub.close();
  const n = backplane.attempts.length;
  t.ok(n >= 2, `retried before close (${n} attempts)`);
  await sleep(1_500);
  t.equal(backplane.attempts.length, n, 'no attempt after close');
});

// ─── Against real brokers ───────────────────────────────────────────────────────────────────────────────────────

for (const broker of ['redis', 'nats'] as const) {
  t.test(`${broker}: a hub started before its broker serves once the broker is up`, async (t) => {
    const own = await OwnBroker.create(broker, { start: false });
    const prefix = runPrefix(broker);
    const node = await startNode(broker, own.url, prefix);
    const clients: Client[] = [];
    t.teardown(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await node.kill();
      await own.destroy();
    });

    // The first attempt fails (nothing listens on the port; Redis's takes its 5 s connect timeout).
    await eventually('a publish to be refused', 30_000, async () => (await api(node, 'POST', '/api/publish', { topic: 'news', type: 'n', data: {} })).status === 503);
    const health = await api(node, 'GET', '/health', undefined, null);
    t.equal(health.status, 503, '/health: 503 while the backplane is down');
    t.match(health.body, { status: 'unavailable', backplane: 'down' });
    const notReady = await api(node, 'GET', '/health/ready', undefined, null);
    t.equal(notReady.status, 503, '/health/ready: 503 before the broker is up');
    t.match(notReady.body, { status: 'not_ready', checks: { backplane: { status: 'down', reachable: false }, accepting: { status: 'no' } } });
    const alive = await api(node, 'GET', '/health/live', undefined, null);
    t.equal(alive.status, 200, '/health/live: 200 all the same (the process is fine; restarting it would not help)');
    t.match(alive.body, { status: 'ok', checks: { event_loop: { status: 'ok' } } });
    const refused = await timed(node, 'POST', '/api/publish', { topic: 'news', type: 'n', data: {} });
    t.equal(refused.status, 503, 'publish: 503');
    t.ok(refused.ms < AT_ONCE, `at once (${refused.ms} ms)`);
    const early = await upgrade(node, 'early');
    t.equal(early.status, 503, 'upgrade: 503');
    t.match(early.retryAfter, /^\d+$/, 'with Retry-After');

    await sleep(2_000); // a few attempts fail meanwhile
    await own.start();
    const took = await eventually('a publish to be accepted after the broker came up', 40_000, async () => (await api(node, 'POST', '/api/publish', { topic: 'probe', type: 'n', data: {} })).status === 200);
    t.comment(`${broker}: serving ${took} ms after the broker came up (attach backoff at most 5 s)`);
    t.match((await api(node, 'GET', '/health', undefined, null)).body, { status: 'ok', backplane: 'up' }, '/health: ok');
    const ready = await api(node, 'GET', '/health/ready', undefined, null);
    t.equal(ready.status, 200, '/health/ready: 200 once the broker is up');
    t.match(ready.body, { status: 'ready', checks: { backplane: { status: 'up', reachable: true }, accepting: { status: 'ok' }, shutdown: { status: 'no' } } });
    const c = await Client.open(node.port, 'late');
    clients.push(c);
    await c.subscribe('news');
    const sent = await publish(node, 'news', { hello: 1 });
    await c.until((x) => x.messages('news').length === 1, 'the message');
    t.equal(c.messages('news')[0].seq, sent.seq, 'a subscriber gets what is published: the hub works without a restart');
    t.match(node.output(), /event=hub_error error="the backplane could not attach \(attempt \d+, next in \d+ ms\)/, 'the retries are logged');
    t.match(node.output(), /event=backplane state=up/, 'and the recovery');
  });

  t.test(`${broker}: a hub killed with SIGKILL never makes another close a live connection`, async (t) => {
    const own = await OwnBroker.create(broker);
    const prefix = runPrefix(broker);
    // A long node TTL: the dead hub's connections stay registered through the whole reconnect.
    const nodeTtl = 10_000;
    const options = { maxPerUser: 5, heartbeat: 2_000, nodeTtl };
    const [survivor, victim] = await Promise.all([startNode(broker, own.url, prefix, options), startNode(broker, own.url, prefix, options)]);
    const clients: Client[] = [];
    const open = async (node: HubNode): Promise<Client> => {
      const c = await Client.open(node.port, 'ursula');
      clients.push(c);
      return c;
    };
    t.teardown(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all([victim.kill(), survivor.stop()]);
      await own.destroy();
    });

    // The user's two oldest connections on the survivor, three on the victim: five, the limit.
    const live = [await open(survivor)];
    await sleep(100);
    live.push(await open(survivor));
    const doomed: Client[] = [];
    for (let i = 0; i < 3; i++) {
      await sleep(100);
      doomed.push(await open(victim));
    }
    await sleep(500);
    t.same([...live, ...doomed].map((c) => c.closeCode), [null, null, null, null, null], 'five connections, none over the limit');

    await victim.kill();
    const killedAt = Date.now();
    // The victim's clients reconnect to the survivor, one by one; the dead hub's three are still registered.
    for (const c of doomed) {
      await c.until((x) => x.closeCode !== null, 'the dead hub connection to close');
      live.push(await open(survivor));
      await sleep(200);
    }
    await sleep(1_500);
    t.same(live.map((c) => c.closeCode), [null, null, null, null, null], 'no live connection closed for the dead hub\'s ghosts');

    // A sixth live connection while the ghosts are still registered: the limit holds among the live ones.
    t.ok(Date.now() - killedAt < nodeTtl - 2_000, 'still within the node TTL');
    const sixth = await open(survivor);
    await live[0].until((x) => x.closeCode !== null, 'the oldest live connection to be closed', 15_000);
    t.equal(live[0].closeCode, 4429, 'the oldest live connection is closed with 4429');
    live.shift();
    live.push(sixth);

    // Until the node TTL has passed and then some: nobody else is closed.
    while (Date.now() < killedAt + nodeTtl + 5_000) {
      const closed = live.filter((c) => c.closeCode !== null);
      if (closed.length > 0) t.fail(`a live connection was closed (${closed.map((c) => c.closeCode).join(', ')}) ${Date.now() - killedAt} ms after the kill`);
      if (closed.length > 0) break;
      await sleep(200);
    }
    t.same(live.map((c) => c.closeCode), [null, null, null, null, null], `the five live connections stay open until node TTL + 5 s`);
  });

  t.test(`${broker}: with the broker down the HTTP API answers 503 at once, and recovers`, async (t) => {
    const own = await OwnBroker.create(broker);
    const prefix = runPrefix(broker);
    const node = await startNode(broker, own.url, prefix);
    t.teardown(async () => {
      await node.kill();
      await own.destroy();
    });
    await publish(node, 'known', { i: 1 });
    t.match((await api(node, 'GET', '/health', undefined, null)).body, { status: 'ok', backplane: 'up' });

    await own.stop();
    await eventually('a publish to be refused', 15_000, async () => (await api(node, 'POST', '/api/publish', { topic: 'known', type: 'n', data: {} })).status === 503);
    await sleep(500);
    t.match((await api(node, 'GET', '/health', undefined, null)).body, { status: 'unavailable', backplane: 'down' }, '/health: 503 unavailable');
    t.equal((await api(node, 'GET', '/health/ready', undefined, null)).status, 503, '/health/ready: 503 when the broker goes away');
    t.equal((await api(node, 'GET', '/health/live', undefined, null)).status, 200, '/health/live: still 200');
    const calls: Array<[string, string, unknown?]> = [
      ['POST', '/api/publish', { topic: 'known', type: 'n', data: {} }],
      ['POST', '/api/publish', { topic: 'unknown.so.far', type: 'n', data: {} }],
      ['GET', '/api/history?topic=known'],
      ['GET', '/api/history?topic=kn.%23'],
      ['GET', '/api/presence?topic=known'],
    ];
    for (let round = 0; round < 2; round++) {
      for (const [method, path, body] of calls) {
        const r = await timed(node, method, path, body);
        t.equal(r.status, 503, `${method} ${path}: 503`);
        t.ok(r.ms < AT_ONCE, `${method} ${path}: at once (${r.ms} ms)`);
      }
      await sleep(1_000);
    }
    const refused = await upgrade(node, 'u');
    t.equal(refused.status, 503, 'an upgrade gets 503 while the broker is unreachable');
    t.match(refused.retryAfter, /^\d+$/);

    await own.start();
    await eventually('a publish to be accepted after the broker came back', 40_000, async () => (await api(node, 'POST', '/api/publish', { topic: 'known', type: 'n', data: {} })).status === 200);
    t.match((await api(node, 'GET', '/health', undefined, null)).body, { status: 'ok', backplane: 'up' }, '/health: ok again');
    t.equal((await api(node, 'GET', '/health/ready', undefined, null)).status, 200, '/health/ready: 200 again');
    const metrics = (await api(node, 'GET', '/metrics')).body as string;
    t.match(metrics, /^wsengine_backplane_up 1$/m, 'metrics: the backplane is up');
    // Heartbeats every 500 ms; the first ones after the restart may not have completed yet.
    await eventually('a broker heartbeat to be timed', 15_000, async () => /^wsengine_backplane_rtt_seconds_count [1-9]/m.test((await api(node, 'GET', '/metrics')).body as string));
    t.pass('metrics: the broker round trip is measured');
    t.equal((await timed(node, 'GET', '/api/history?topic=known')).status, 200, 'history works again');
    t.match(node.output(), /event=backplane state=down[^\n]*\n[^]*event=backplane state=up/, 'the outage and the recovery are logged');
  });
}
