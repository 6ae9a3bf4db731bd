/**
 * The scale-out suite, run per broker by test/scale-redis.test.ts and test/scale-nats.test.ts.
 *
 * Several hubs as one, against the real brokers: hub processes — the package's bin, `wsengine hub --redis URL` or
 * `--nats URL`, on real ports — sharing a Redis or NATS server; messages are published through each hub's HTTP API
 * and received by WebSocket clients. Uses Redis at 127.0.0.1:6379 and NATS at 127.0.0.1:4222 (REDIS_URL / NATS_URL override), and throw-away
 * servers on spare ports for the checks that count broker subscriptions or restart the broker. Never skipped: a
 * missing broker fails the tests.
 */
import t from 'tap';
t.setTimeout(300_000);
import {
  apiOk,
  checkSequence,
  cleanupBroker,
  Client,
  NATS_URL,
  natsSubscriptions,
  metric,
  OwnBroker,
  presenceOf,
  publish,
  REDIS_URL,
  redisCommand,
  runPrefix,
  startNode,
  type HubNode,
} from './scale.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Registers the scale-out tests of one broker (test/scale-redis.test.ts, test/scale-nats.test.ts). */
export function scaleTests(broker: 'redis' | 'nats'): void {
  const url = broker === 'redis' ? REDIS_URL : NATS_URL;

  t.test(`${broker}: three hubs as one`, async (t) => {
    const prefix = runPrefix(broker);
    const nodes: HubNode[] = await Promise.all([0, 1, 2].map(() => startNode(broker, url, prefix, { maxPerUser: 2 })));
    const clients: Client[] = [];
    const open = async (i: number, user: string) => {
      const c = await Client.open(nodes[i].port, user);
      clients.push(c);
      return c;
    };
    t.teardown(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all(nodes.map((n) => n.stop()));
      await cleanupBroker(broker, url, prefix);
    });

    await t.test('a message published on one hub reaches subscribers on the two others', async (t) => {
      const s1 = await open(1, 's1');
      const s2 = await open(2, 's2');
      await s1.subscribe('news');
      await s2.subscribe('news');
      for (let i = 1; i <= 20; i++) await publish(nodes[0], 'news', { i });
      for (const s of [s1, s2]) {
        await s.until((c) => c.messages('news').length >= 20, '20 messages');
        t.same(s.messages('news').map((m) => m.seq), Array.from({ length: 20 }, (_, i) => i + 1), 'every seq once, in order');
        t.same(s.messages('news').map((m) => m.data.i), Array.from({ length: 20 }, (_, i) => i + 1));
      }
    });

    await t.test('overlapping wildcard subscriptions across hubs: each message once', async (t) => {
      const all = await open(1, 'w1');
      const one = await open(1, 'w2');
      const root = await open(2, 'w3');
      await all.subscribe('a.#');
      await all.subscribe('a.*.c');
      await all.subscribe('a.b.c');
      await one.subscribe('a.*.c');
      await root.subscribe('#');
      for (let i = 0; i < 5; i++) await publish(nodes[0], 'a.b.c', { i });
      for (let i = 0; i < 3; i++) await publish(nodes[0], 'a.x', { i });
      await publish(nodes[0], 'b.c', { i: 0 });
      await all.until((c) => c.messages().length >= 8, '8 messages');
      await one.until((c) => c.messages().length >= 5, '5 messages');
      await root.until((c) => c.messages().length >= 9, '9 messages');
      await sleep(300); // anything duplicated would have arrived by now
      t.same(all.messages('a.b.c').map((m) => m.seq), [1, 2, 3, 4, 5]);
      t.same(all.messages('a.x').map((m) => m.seq), [1, 2, 3]);
      t.equal(all.messages().length, 8, 'no duplicate, nothing outside the patterns');
      t.same(one.messages().map((m) => `${m.topic}/${m.seq}`), ['a.b.c/1', 'a.b.c/2', 'a.b.c/3', 'a.b.c/4', 'a.b.c/5']);
      t.equal(root.messages().length, 9, '# receives everything once');
    });

    await t.test('sending to a user reaches their sockets on every hub', async (t) => {
      const a1 = await open(0, 'alice');
      const a2 = await open(2, 'alice');
      const b = await open(1, 'bob');
      await sleep(200);
      await apiOk(nodes[1], '/api/send', { user: 'alice', type: 'direct', data: { hello: 1 } });
      for (const a of [a1, a2]) await a.until((c) => c.frames.some((f) => f.type === 'direct'), 'the direct message');
      t.same(a1.frames.filter((f) => f.type === 'direct').map((f) => f.data), [{ hello: 1 }]);
      t.same(a2.frames.filter((f) => f.type === 'direct').map((f) => f.data), [{ hello: 1 }]);
      t.equal(b.frames.filter((f) => f.type === 'direct').length, 0, 'not to other users');
      await apiOk(nodes[1], '/api/broadcast', { type: 'announce', data: { x: 1 } });
      for (const c of [a1, a2, b]) await c.until((c) => c.frames.some((f) => f.type === 'announce'), 'the broadcast');
    });

    await t.test('resume on a different hub gets exactly what was missed', async (t) => {
      const first = await open(1, 'r1');
      const ack = await first.subscribe('room');
      t.equal(ack.data.seq, 0);
      for (let i = 1; i <= 3; i++) await publish(nodes[0], 'room', { i });
      await first.until((c) => c.messages('room').length >= 3, '3 messages');
      const last = first.messages('room')[2];
      await first.close();
      for (let i = 4; i <= 7; i++) await publish(nodes[0], 'room', { i });
      const again = await open(2, 'r1');
      const ack2 = await again.subscribe('room', { since: { epoch: last.epoch, seq: last.seq } });
      t.equal(ack2.data.recovered, true);
      await publish(nodes[0], 'room', { i: 8 });
      await again.until((c) => c.messages('room').length >= 5, '5 messages');
      t.same(again.messages('room').map((m) => m.seq), [4, 5, 6, 7, 8], 'the missed ones, then live, no duplicate');
      t.same(again.messages('room').map((m) => m.data.i), [4, 5, 6, 7, 8]);
    });

    await t.test('wildcard resume on a different hub', async (t) => {
      const first = await open(1, 'r2');
      const ack = await first.subscribe('shop.#');
      await publish(nodes[0], 'shop.eu', { i: 1 });
      await publish(nodes[0], 'shop.us', { i: 2 });
      await first.until((c) => c.messages().length >= 2, '2 messages');
      const positions = Object.fromEntries(first.messages().map((m) => [m.topic, { epoch: m.epoch, seq: m.seq }]));
      await first.close();
      await publish(nodes[0], 'shop.eu', { i: 3 });
      await publish(nodes[0], 'shop.asia', { i: 4 });
      const again = await open(2, 'r2');
      const ack2 = await again.subscribe('shop.#', { since: { positions, offset: ack.data.offset } });
      t.equal(ack2.data.recovered, true);
      await again.until((c) => c.messages().length >= 2, '2 replayed');
      t.same(again.messages().map((m) => `${m.topic}/${m.seq}/${m.data.i}`), ['shop.eu/2/3', 'shop.asia/1/4']);
    });

    await t.test('the per-user connection limit holds across hubs (oldest closed with 4429)', async (t) => {
      const c1 = await open(0, 'carol');
      await sleep(100);
      const c2 = await open(1, 'carol');
      await sleep(100);
      const c3 = await open(2, 'carol');
      await c1.until((c) => c.closeCode !== null, 'the oldest to be closed');
      t.equal(c1.closeCode, 4429);
      await sleep(300);
      t.equal(c2.closeCode, null, 'the second stays');
      t.equal(c3.closeCode, null, 'the newest stays');
    });
  });

  t.test(`${broker}: broker subscriptions follow local interest`, async (t) => {
    const own = await OwnBroker.create(broker);
    const prefix = runPrefix(broker);
    const nodes = await Promise.all([startNode(broker, own.url, prefix), startNode(broker, own.url, prefix), startNode(broker, own.url, prefix)]);
    const clients: Client[] = [];
    t.teardown(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all(nodes.map((n) => n.stop()));
      await own.destroy();
    });
    const topicSubs = async (): Promise<{ channels: string[]; patterns: number }> => {
      if (broker === 'redis') {
        const channels = await redisCommand<string[]>(own.url, ['PUBSUB', 'CHANNELS', `${prefix}:t:*`]);
        const patterns = await redisCommand<number>(own.url, ['PUBSUB', 'NUMPAT']);
        return { channels: channels.sort(), patterns };
      }
      const subjects = (await natsSubscriptions(own.monitorPort)).map((s) => s.subject).filter((s) => s.startsWith(`${prefix}.m.`));
      return { channels: subjects.filter((s) => !s.includes('*') && !s.includes('>')).sort(), patterns: subjects.filter((s) => s.includes('*') || s.includes('>')).length };
    };
    t.same(await topicSubs(), { channels: [], patterns: 0 }, 'nothing subscribed before any client');
    const a = await Client.open(nodes[1].port, 'u1');
    const b = await Client.open(nodes[1].port, 'u2');
    clients.push(a, b);
    await a.subscribe('x.y');
    await b.subscribe('x.y');
    await a.subscribe('w.*');
    const held = await topicSubs();
    t.equal(held.channels.length, 1, 'one broker subscription for the exact topic, though two local subscribers');
    t.equal(held.patterns, 1, 'one for the pattern');
    await a.request('unsubscribe', { topic: 'x.y' });
    await sleep(200);
    t.equal((await topicSubs()).channels.length, 1, 'kept while a local subscriber is left');
    await b.request('unsubscribe', { topic: 'x.y' });
    await a.request('unsubscribe', { topic: 'w.*' });
    await sleep(300);
    t.same(await topicSubs(), { channels: [], patterns: 0 }, 'the last local unsubscribe removes the broker subscription');

    // Broker traffic: three hubs, subscribers on one only → one broker message per publish reaches a hub.
    await b.subscribe('only.here');
    const before = await receivedByHubs(nodes);
    const natsBefore = broker === 'nats' ? await natsTopicDeliveries(own, prefix) : 0;
    for (let i = 0; i < 50; i++) await publish(nodes[0], 'only.here', { i });
    await b.until((c) => c.messages('only.here').length >= 50, '50 messages');
    await sleep(200);
    t.equal((await receivedByHubs(nodes)) - before, 50, 'one broker message per publish reaches the hubs (not three)');
    if (broker === 'nats') {
      // The server's own count: messages it delivered on the hubs' topic subscriptions.
      t.equal((await natsTopicDeliveries(own, prefix)) - natsBefore, 50, 'the NATS server delivered 50 topic messages to hubs, not 150');
    }
  });

  t.test(`${broker}: a hub killed with SIGKILL stops counting after the node TTL`, async (t) => {
    const prefix = runPrefix(broker);
    // Short liveness settings through the bin's flags; the default TTL is 15 s.
    const options = { maxPerUser: 2, heartbeat: 200, nodeTtl: 1000 };
    const [victim, survivor] = await Promise.all([startNode(broker, url, prefix, options), startNode(broker, url, prefix, options)]);
    const clients: Client[] = [];
    const open = async (node: HubNode, user: string) => {
      const c = await Client.open(node.port, user);
      clients.push(c);
      return c;
    };
    t.teardown(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all([victim.kill(), survivor.stop()]);
      await cleanupBroker(broker, url, prefix);
    });
    const events = (c: Client, kind: 'join' | 'leave', user: string) => c.frames.filter((f) => f.type === kind && f.data?.user === user).length;

    const watcher = await open(survivor, 'watcher');
    await watcher.subscribe('room', { presence: true });
    const daveOld = await open(survivor, 'dave');
    await daveOld.subscribe('room');
    await sleep(100);
    const daveDoomed = await open(victim, 'dave');
    await daveDoomed.subscribe('room');
    const erinDoomed = await open(victim, 'erin');
    await erinDoomed.subscribe('room');
    await watcher.until((c) => events(c, 'join', 'erin') === 1, "erin's join");
    t.same(await presenceOf(survivor, 'room'), { tenant: 'default', topic: 'room', users: { watcher: 1, dave: 2, erin: 1 }, connections: 4 }, 'both hubs counted');

    await victim.kill();
    const killedAt = Date.now();
    const deadline = killedAt + 15_000;
    let snapshot = await presenceOf(survivor, 'room');
    while (snapshot.connections !== 2 && Date.now() < deadline) {
      await sleep(100);
      snapshot = await presenceOf(survivor, 'room');
    }
    t.comment(`presence without the dead hub after ${Date.now() - killedAt} ms (node TTL 1000 ms, heartbeat 200 ms)`);
    t.same(snapshot.users, { watcher: 1, dave: 1 }, "the dead hub's connections no longer count in presence");
    await watcher.until((c) => events(c, 'leave', 'erin') === 1, "erin's leave, sent for the dead hub", 15_000);
    t.equal(events(watcher, 'leave', 'dave'), 0, 'no leave for dave: his socket on the live hub is still subscribed');

    // The per-user limit (2): dave's socket on the dead hub no longer counts, so a second one keeps the first…
    const daveNew = await open(survivor, 'dave');
    await sleep(500);
    t.equal(daveOld.closeCode, null, "the dead hub's socket does not count toward the limit");
    // …and the limit still holds: a third closes the oldest with 4429.
    await open(survivor, 'dave');
    await daveOld.until((c) => c.closeCode !== null, 'the oldest to be closed').catch((e) => {
      // Say what the hub reported (a failed registration is logged as hub_error).
      throw new Error(`${(e as Error).message}; hub errors: ${survivor.output().split('\n').filter((l) => l.includes('level=error')).join(' | ')}`);
    });
    t.equal(daveOld.closeCode, 4429);
    t.equal(daveNew.closeCode, null);
    // daveOld was dave's last subscriber of the room: a leave (his count was not left stuck by the dead socket).
    await watcher.until((c) => events(c, 'leave', 'dave') === 1, "dave's leave");
    // erin comes back on the live hub: a join again (her count was cleaned, not left at one).
    const erinBack = await open(survivor, 'erin');
    await erinBack.subscribe('room');
    await watcher.until((c) => events(c, 'join', 'erin') === 2, "erin's second join");
    t.same((await presenceOf(survivor, 'room')).users, { watcher: 1, erin: 1 });
  });

  t.test(`${broker}: a broker restarted mid-stream`, async (t) => {
    const own = await OwnBroker.create(broker);
    const prefix = runPrefix(broker);
    const nodes = await Promise.all([startNode(broker, own.url, prefix), startNode(broker, own.url, prefix)]);
    const clients: Client[] = [];
    t.teardown(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all(nodes.map((n) => n.stop()));
      await own.destroy();
    });
    const sub = await Client.open(nodes[1].port, 'sub');
    const local = await Client.open(nodes[1].port, 'local');
    clients.push(sub, local);
    await sub.subscribe('live');
    let ok = 0;
    let failed = 0;
    // Every acknowledged publish as `epoch/seq` (the hub's answer): each must be delivered once. The Stream holds
    // all of the new epoch's (21 < the history size), so none may be left to a gap report.
    const acked: string[] = [];
    // 200: acknowledged (must be delivered once); 503: refused by a hub that cannot reach the broker.
    const publishSome = async (n: number) => {
      for (let i = 0; i < n; i++) {
        try {
          const r = await publish(nodes[0], 'live', { n: ok + failed });
          acked.push(`${r.epoch}/${r.seq}`);
          ok++;
        } catch (error) {
          if ((error as { status?: number }).status !== 503) throw error;
          failed++;
          await sleep(50);
        }
      }
    };
    await publishSome(20);
    // Delivered before the broker goes: Redis here keeps nothing across a restart, so a message acknowledged in the
    // instant before the kill, which the other hub had not read yet, is lost with the broker (the hub then reports
    // it as a gap). That loss is the broker's, not what this test checks: the stream goes on across the restart.
    const before = acked.length;
    await sub.until((c) => c.messages('live').length >= before, `the ${before} messages published before the restart`, 20_000);
    await own.stop();
    await publishSome(5);
    // Local delivery keeps working while the broker is down: a user message on the same hub (the answer may be 503,
    // the broker not taking the copy for other hubs; the local socket is reached either way).
    await apiOk(nodes[1], '/api/send', { user: 'local', type: 'direct', data: { during: 'cut' } }).catch(() => {});
    await local.until((c) => c.frames.some((f) => f.type === 'direct'), 'local delivery during the cut');
    await own.start();
    // Publishing works again once the hubs reconnected.
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      try {
        const r = await publish(nodes[0], 'live', { n: 'probe' });
        acked.push(`${r.epoch}/${r.seq}`);
        ok++;
        break;
      } catch (error) {
        if ((error as { status?: number }).status !== 503) throw error;
        await sleep(200);
      }
    }
    await publishSome(20);
    const missing = (): string[] => {
      const got = new Set(sub.messages('live').map((m) => `${m.epoch}/${m.seq}`));
      return acked.filter((k) => !got.has(k));
    };
    try {
      await sub.until(() => missing().length === 0, `${ok} acknowledged messages`, 20_000);
    } catch (error) {
      // Say what is missing and what did arrive (seqs per epoch, gap reports), so a failure here can be explained
      // from the log alone.
      const received = sub.messages('live').map((m) => `${m.epoch}/${m.seq}`).join(' ');
      throw new Error(`${(error as Error).message.split('; got')[0]}; missing ${missing().join(' ')}; received ${sub.messages('live').length}: ${received}; gaps ${JSON.stringify(sub.gaps().map((g) => g.data))}`);
    }
    const check = checkSequence(sub, 'live');
    t.equal(check.duplicates, 0, 'no duplicate');
    t.equal(check.holes, 0, 'every hole is reported as a gap (or none)');
    t.equal(check.delivered, ok, 'every acknowledged publish delivered');
    t.ok(failed > 0, `publishes during the outage are refused, not lost silently (${failed} refused)`);
    t.equal(nodes[0].proc.exitCode, null, 'the publishing hub survived');
    t.equal(nodes[1].proc.exitCode, null, 'the subscribing hub survived');
    t.equal(sub.closeCode, null, 'the subscriber stayed connected');
    if (broker === 'redis') t.equal(check.epochs, 2, 'Redis without persistence: a new epoch after the restart');
    else t.equal(check.epochs, 1, 'JetStream file storage: the same epoch continues');
  });
}

/** Topic messages the hubs' adapters received from the broker (every copy), summed over the hubs' /metrics. */
async function receivedByHubs(nodes: HubNode[]): Promise<number> {
  let total = 0;
  for (const n of nodes) total += await metric(n, 'wsengine_backplane_received_total');
  return total;
}

/** Messages the NATS server delivered on the hubs' topic subscriptions (its monitoring endpoint). */
async function natsTopicDeliveries(own: OwnBroker, prefix: string): Promise<number> {
  return (await natsSubscriptions(own.monitorPort)).filter((s) => s.subject.startsWith(`${prefix}.m.`)).reduce((n, s) => n + s.msgs, 0);
}
