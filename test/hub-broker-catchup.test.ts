/**
 * Catch-up of the Redis backplane after a broker restart when its two connections come back at different times,
 * against the real Redis (127.0.0.1:6379, REDIS_URL overrides).
 *
 * node-redis reconnects the adapter's command connection and its subscriber connection independently, each with
 * its own jittered back-off, so after a restart the subscriber may be back (renewed subscriptions, live messages)
 * while the command connection, which reads the Streams, still refuses commands. The restart and the reconnects
 * are staged here with a wrapper around real node-redis clients: "the cut" drops what the subscriber connection
 * receives and makes the command connection refuse commands (as node-redis does with `disableOfflineQueue`);
 * deleting the run's keys is what a Redis without persistence loses; the subscriber's `ready` event is emitted
 * as node-redis emits it once a reconnect renewed the subscriptions.
 *
 * What must hold (issue 12): every message published in the new epoch is delivered from the Stream, which holds
 * it, and never reported as a gap because the Stream was read before it could be; the old epoch ends with one
 * open-ended gap; nothing twice, in order. Before the fix these failed: a fill whose Stream read failed reported
 * the new epoch's first messages as a gap (the CI failure of test/scale-redis.test.ts "a broker restarted
 * mid-stream": new-epoch seqs 1–3 reported as a gap although the Stream held them), and a resynchronisation whose
 * read failed, with no later live message, left them undelivered and unreported.
 */
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { createClient } from 'redis';
import type { BackplaneSink } from '../lib/hub/backplane.js';
import type { Gap, PublishedMessage } from '../lib/hub/history.js';
import { cleanupBroker } from './helpers/scale.js';
import { createRedisBackplane, GAP_UNKNOWN_END, type RedisBackplane, type RedisClientLike } from '../lib/hub/redis.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Switches shared by the wrapped connections of one backplane. */
interface Cut {
  /** The subscriber connection delivers nothing (it is down). */
  subDown: boolean;
  /** The command connection refuses commands (it is down). */
  pubDown: boolean;
  /** Commands refused while `pubDown`. */
  refused: number;
  /** Topic messages the subscriber connection dropped while `subDown`. */
  dropped: number;
  /** Emits `ready` on the subscriber connection, as node-redis does after a reconnect. */
  subReady(): void;
}

/** A node-redis client whose connection can be "down" (see {@link Cut}); everything else goes to the real client. */
function wrap(real: RedisClientLike, cut: Cut, role: 'pub' | 'sub'): RedisClientLike {
  const readyListeners: Array<() => void> = [];
  const listen = (listener: (message: string, channel: string) => void) => (message: string, channel: string) => {
    if (cut.subDown) cut.dropped++;
    else listener(message, channel);
  };
  const w: RedisClientLike = {
    get isOpen() {
      return real.isOpen;
    },
    connect: () => real.connect(),
    duplicate: (overrides) => wrap(real.duplicate(overrides), cut, 'sub'),
    sendCommand<T>(args: ReadonlyArray<string>): Promise<T> {
      if (role === 'pub' && cut.pubDown) {
        cut.refused++;
        return Promise.reject(new Error('The client is offline (staged)'));
      }
      return real.sendCommand<T>(args);
    },
    subscribe: (channels, listener) => real.subscribe(channels, listen(listener)),
    unsubscribe: (channels) => real.unsubscribe(channels),
    pSubscribe: (patterns, listener) => real.pSubscribe(patterns, listen(listener)),
    pUnsubscribe: (patterns) => real.pUnsubscribe(patterns),
    on(event, listener) {
      if (event === 'ready' && role === 'sub') readyListeners.push(listener);
      return real.on(event, listener);
    },
    close: () => (real.close ? real.close() : Promise.resolve()),
  };
  if (role === 'sub') cut.subReady = () => { for (const l of readyListeners) l(); };
  return w;
}

/** A sink recording topic messages and gaps in the order the backplane hands them over. */
function recorder(): BackplaneSink & { events: Array<{ m: PublishedMessage } | { g: Gap }> } {
  const events: Array<{ m: PublishedMessage } | { g: Gap }> = [];
  return {
    events,
    message: (m) => void events.push({ m }),
    gap: (g) => void events.push({ g }),
    user: () => 0,
    connection: () => false,
    broadcast: () => 0,
    disconnect: () => 0,
    presence: () => {},
  };
}

const describe = (e: { m: PublishedMessage } | { g: Gap }, epochs: Map<string, string>): string => {
  const name = (epoch: string) => epochs.get(epoch) ?? epoch;
  if ('m' in e) return `${name(e.m.epoch)}/${e.m.seq}`;
  return `gap ${name(e.g.epoch)} ${e.g.from}-${e.g.to === GAP_UNKNOWN_END ? 'end' : e.g.to}`;
};

/**
 * A subscribing backplane (wrapped connections) and a publishing one on a fresh prefix, then Redis "restarts":
 * both connections down, the keys gone. Before the restart (`first`): the subscriber received seqs 1–3 of the
 * first epoch (`'received'`, the default), or it subscribed when seqs 1–2 were already published and received
 * nothing (`'published'`), or nothing was published (`'none'`). The subscription is set up as the hub sets it up:
 * `subscribe`, then `resume(null)` for the starting position.
 */
async function restartedCluster(t: Test, options: { timeout?: number; first?: 'received' | 'published' | 'none' } = {}) {
  const first = options.first ?? 'received';
  const prefix = `tcatchup${randomBytes(4).toString('hex')}`;
  const cut: Cut = { subDown: false, pubDown: false, refused: 0, dropped: 0, subReady: () => {} };
  const real = createClient({ url: REDIS_URL, disableOfflineQueue: true }) as unknown as RedisClientLike;
  const subscriber: RedisBackplane = createRedisBackplane(wrap(real, cut, 'pub'), { prefix, nodeId: 'sub', heartbeat: 60_000, timeout: options.timeout });
  const publisher: RedisBackplane = createRedisBackplane(REDIS_URL, { prefix, nodeId: 'pub', heartbeat: 60_000 });
  const sink = recorder();
  t.teardown(async () => {
    cut.pubDown = false;
    await subscriber.close();
    await publisher.close();
    await (real.close?.() ?? Promise.resolve());
    await cleanupBroker('redis', REDIS_URL, prefix);
  });
  await subscriber.attach(sink);
  await publisher.attach(recorder());
  const publish = async (n: number) => {
    const out: PublishedMessage[] = [];
    for (let i = 0; i < n; i++) out.push(await publisher.publish('ten', 'live', 'msg', JSON.stringify(i)));
    return out;
  };
  const epochs = new Map<string, string>();
  if (first === 'published') epochs.set((await publish(2))[0].epoch, 'E1');
  await subscriber.subscribe('ten', 'live');
  const start = await subscriber.resume('ten', 'live', null);
  t.equal(start.position?.seq, first === 'published' ? 2 : 0, 'the starting position');
  if (first === 'received') {
    epochs.set((await publish(3))[0].epoch, 'E1');
    await until(() => sink.events.length >= 3, 'the first epoch');
  }
  // The restart: both of the subscriber's connections are down, and Redis lost the topic.
  cut.subDown = true;
  cut.pubDown = true;
  await cleanupBroker('redis', REDIS_URL, prefix);
  /** Publishes `n` messages that the subscriber misses (the ones Redis delivers to it are dropped: it is away). */
  const publishMissed = async (n: number) => {
    const dropped = cut.dropped;
    const out = await publish(n);
    await until(() => cut.dropped >= dropped + n, 'the missed messages to reach the (away) subscriber connection');
    epochs.set(out[0].epoch, 'E2');
    return out;
  };
  return { cut, sink, publish, publishMissed, epochs };
}

async function until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

t.test('redis: the subscriber connection back before the command connection, live messages arriving', async (t) => {
  const { cut, sink, publish, publishMissed, epochs } = await restartedCluster(t);
  // Published in the new epoch while the subscriber is away: only the Stream has them.
  await publishMissed(3);
  // The subscriber connection is back (subscriptions renewed), the command connection not yet.
  cut.subDown = false;
  cut.subReady();
  await publish(2); // live: seqs 4, 5 of the new epoch, arriving while the Stream cannot be read
  await until(() => cut.refused >= 2, 'a refused Stream read');
  await sleep(100);
  t.same(sink.events.slice(3).map((e) => describe(e, epochs)), [], 'nothing released while the Stream cannot be read yet');
  cut.pubDown = false; // the command connection is back
  await until(() => sink.events.length >= 9, 'the new epoch', 10_000).catch((e) => {
    throw new Error(`${(e as Error).message}: ${sink.events.map((x) => describe(x, epochs)).join(', ')}`);
  });
  await sleep(200); // anything duplicated or late would be here by now
  t.same(sink.events.map((e) => describe(e, epochs)), ['E1/1', 'E1/2', 'E1/3', 'gap E1 4-end', 'E2/1', 'E2/2', 'E2/3', 'E2/4', 'E2/5'],
    'the new epoch from the Stream, then the live messages; the old epoch ends with one open gap');
});

t.test('redis: the subscriber connection back before the command connection, nothing published afterwards', async (t) => {
  const { cut, sink, publishMissed, epochs } = await restartedCluster(t);
  await publishMissed(3);
  cut.subDown = false;
  cut.subReady(); // the resynchronisation reads the Stream: refused at first
  await until(() => cut.refused >= 1, 'a refused Stream read');
  await sleep(100);
  cut.pubDown = false;
  await until(() => sink.events.length >= 7, 'the new epoch', 10_000).catch((e) => {
    throw new Error(`${(e as Error).message}: ${sink.events.map((x) => describe(x, epochs)).join(', ')}`);
  });
  await sleep(200);
  t.same(sink.events.map((e) => describe(e, epochs)), ['E1/1', 'E1/2', 'E1/3', 'gap E1 4-end', 'E2/1', 'E2/2', 'E2/3'],
    'caught up from the Stream without a later live message');
});

t.test('redis: a Stream that stays unreadable for `timeout` ms: the held messages go out after an exact gap', async (t) => {
  const { cut, sink, publish, publishMissed, epochs } = await restartedCluster(t, { timeout: 1000 });
  await publishMissed(3);
  cut.subDown = false;
  cut.subReady();
  await publish(1); // live: seq 4 of the new epoch
  await until(() => sink.events.length >= 6, 'the held message', 10_000).catch((e) => {
    throw new Error(`${(e as Error).message}: ${sink.events.map((x) => describe(x, epochs)).join(', ')}`);
  });
  t.ok(cut.refused >= 4, `the read was retried (25, 50, 100, 200, 400 ms apart) before giving up (${cut.refused} refused)`);
  t.same(sink.events.map((e) => describe(e, epochs)), ['E1/1', 'E1/2', 'E1/3', 'gap E1 4-end', 'gap E2 1-3', 'E2/4'],
    'what could not be read is reported exactly, then the held message');
});

t.test('redis: a subscribed topic that no message reached before the restart starts from the subscription', async (t) => {
  await t.test('the topic had messages when the client subscribed', async (t) => {
    const { cut, sink, publish, publishMissed, epochs } = await restartedCluster(t, { first: 'published' });
    await publishMissed(3);
    cut.subDown = false;
    cut.pubDown = false;
    cut.subReady();
    await publish(1); // live: seq 4 of the new epoch
    await until(() => sink.events.length >= 5, 'the new epoch').catch((e) => {
      throw new Error(`${(e as Error).message}: ${sink.events.map((x) => describe(x, epochs)).join(', ')}`);
    });
    await sleep(200);
    t.same(sink.events.map((e) => describe(e, epochs)), ['gap E1 3-end', 'E2/1', 'E2/2', 'E2/3', 'E2/4'],
      'the old epoch after the starting position as an open gap, the new one from the Stream');
  });
  await t.test('the topic had no stream when the client subscribed; nothing published after the reconnect', async (t) => {
    const { cut, sink, publishMissed, epochs } = await restartedCluster(t, { first: 'none' });
    await publishMissed(3);
    cut.subDown = false;
    cut.pubDown = false;
    cut.subReady();
    await until(() => sink.events.length >= 3, 'the new epoch').catch((e) => {
      throw new Error(`${(e as Error).message}: ${sink.events.map((x) => describe(x, epochs)).join(', ')}`);
    });
    await sleep(200);
    t.same(sink.events.map((e) => describe(e, epochs)), ['E2/1', 'E2/2', 'E2/3'], 'every message from the Stream, no gap');
  });
});

t.test('redis: a subscription with no message yet, no cut: live delivery from seq 1 and no gap', async (t) => {
  const prefix = `tcatchup${randomBytes(4).toString('hex')}`;
  const a = createRedisBackplane(REDIS_URL, { prefix, nodeId: 'a', heartbeat: 60_000 });
  const b = createRedisBackplane(REDIS_URL, { prefix, nodeId: 'b', heartbeat: 60_000 });
  t.teardown(async () => {
    await a.close();
    await b.close();
    await cleanupBroker('redis', REDIS_URL, prefix);
  });
  const sink = recorder();
  await a.attach(sink);
  await b.attach(recorder());
  await a.subscribe('ten', 'fresh');
  await a.resume('ten', 'fresh', null);
  for (let i = 0; i < 3; i++) await b.publish('ten', 'fresh', 'msg', '0');
  await until(() => sink.events.length >= 3, 'three messages');
  await sleep(100);
  t.same(sink.events.map((e) => ('m' in e ? e.m.seq : 'gap')), [1, 2, 3]);
});
