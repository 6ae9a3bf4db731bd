/**
 * The Redis and NATS backplanes pair the tenant offset with an offset epoch, against the real brokers
 * (127.0.0.1:6379, 127.0.0.1:4222): a wildcard resume with an offset of another epoch replays everything held for
 * the matching topics; one of the current epoch replays only what came after it.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createHub } from '../lib/hub/index.js';
import { createRedisBackplane } from '../lib/hub/redis.js';
import { createNatsBackplane } from '../lib/hub/nats.js';

for (const broker of ['redis', 'nats'] as const) {
  t.test(`${broker}: the offset epoch of a wildcard resume`, async (t) => {
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const backplane = broker === 'redis' ? createRedisBackplane('redis://127.0.0.1:6379', { prefix }) : createNatsBackplane('nats://127.0.0.1:4222', { prefix });
    const hub = createHub({ backplane });
    await hub.listen(0, '127.0.0.1');
    t.teardown(() => hub.close());
    const tenant = `t${prefix}`;
    const before = await backplane.resume(tenant, 'news.#', null);
    t.type(before.offsetEpoch, 'string', 'the answer carries an offset epoch');
    t.ok(before.offsetEpoch.length > 0);
    for (const topic of ['news.a', 'news.b', 'news.a']) await hub.publish({ tenant, topic, type: 'n', data: {} });
    const now = await backplane.resume(tenant, 'news.#', null);
    t.equal(now.offsetEpoch, before.offsetEpoch, 'stable while the broker keeps its data');
    const current = await backplane.resume(tenant, 'news.#', { offset: before.offset, offsetEpoch: before.offsetEpoch });
    t.same(current.messages.map((m) => [m.topic, m.seq]), [['news.a', 1], ['news.b', 1], ['news.a', 2]], 'same epoch: what came after the offset');
    const mid = await backplane.resume(tenant, 'news.#', { offset: now.offset - 1, offsetEpoch: now.offsetEpoch });
    t.same(mid.messages.map((m) => [m.topic, m.seq]), [['news.a', 2]], 'same epoch, later offset: only the newer message');
    const stale = await backplane.resume(tenant, 'news.#', { offset: now.offset - 1, offsetEpoch: 'another-stream' });
    t.same(stale.messages.map((m) => [m.topic, m.seq]), [['news.a', 1], ['news.b', 1], ['news.a', 2]], 'another epoch: every held message of the matching topics');
    t.same(stale.gaps, []);
  });
}
