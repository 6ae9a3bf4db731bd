/**
 * Channel permissions over real sockets: every rule kind (signed-in, owner, granted by claim or subscription token,
 * server, nobody, the defaults) × every action (subscribe, publish, history, presence), wildcard requests that reach
 * several rules, and the publisher's verified identity (`from`) on client publishes.
 */
import t from 'tap';
import { signJwt } from '../lib/hub/index.js';
import { open, type Recorder, SECRET, startHub, token } from './helpers/hub.js';

const { hub, url } = await startHub({
  permissions: {
    rules: [
      { pattern: 'user.{sub}.#', subscribe: 'owner', publish: 'owner', history: 'owner', presence: 'owner' },
      { pattern: 'news.#', subscribe: 'signed-in', publish: 'server', history: 'signed-in', presence: 'nobody' },
      { pattern: 'vip.#', subscribe: 'granted', publish: 'granted', history: 'granted', presence: 'granted' },
      { pattern: 'secret.#', subscribe: 'nobody', publish: 'nobody', history: 'nobody', presence: 'nobody' },
      { pattern: 'open.#', subscribe: 'signed-in', publish: 'signed-in', history: 'signed-in', presence: 'signed-in' },
    ],
  },
});
t.teardown(() => hub.close());

const alice = await open(`${url}?token=${token('alice')}`);
const bob = await open(`${url}?token=${token('bob', { topics: ['vip.gold.#'] })}`);
let nextId = 1;

/** Sends a request and resolves with 'ok' (ack) or the error code. */
async function ask(client: Recorder, type: string, data: Record<string, unknown>): Promise<string> {
  const id = nextId++;
  client.send({ type, data, request_id: id });
  const reply = await client.next((m) => m.request_id === id && (m.type === 'ack' || m.type === 'error'));
  return reply.type === 'ack' ? 'ok' : reply.data.code;
}

const grant = (sub: string, topic: string, expiresIn = 600): string => signJwt({ sub, topic }, SECRET, { expiresIn });

const TABLE: Array<[who: 'alice' | 'bob', action: string, topic: string, expected: string, extra?: Record<string, unknown>]> = [
  // owner: only the user's own space under {sub}
  ['alice', 'subscribe', 'user.alice.inbox', 'ok'],
  ['alice', 'subscribe', 'user.alice.#', 'ok'],
  ['alice', 'subscribe', 'user.bob.inbox', 'unauthorized'],
  ['alice', 'subscribe', 'user.*.inbox', 'unauthorized'],
  ['alice', 'publish', 'user.alice.inbox', 'ok'],
  ['alice', 'publish', 'user.bob.inbox', 'unauthorized'],
  ['alice', 'history', 'user.alice.inbox', 'ok'],
  ['alice', 'history', 'user.bob.inbox', 'unauthorized'],
  ['alice', 'presence', 'user.alice.inbox', 'ok'],
  ['alice', 'presence', 'user.bob.inbox', 'unauthorized'],
  // signed-in / server / nobody per action
  ['alice', 'subscribe', 'news.eu', 'ok'],
  ['alice', 'subscribe', 'news.*', 'ok'],
  ['alice', 'publish', 'news.eu', 'unauthorized'],
  ['alice', 'history', 'news.eu', 'ok'],
  ['alice', 'presence', 'news.eu', 'unauthorized'],
  // granted: by the token's topics claim…
  ['bob', 'subscribe', 'vip.gold.room', 'ok'],
  ['bob', 'subscribe', 'vip.gold.#', 'ok'],
  ['bob', 'publish', 'vip.gold.room', 'ok'],
  ['bob', 'history', 'vip.gold.room', 'ok'],
  ['bob', 'presence', 'vip.gold.room', 'ok'],
  ['bob', 'subscribe', 'vip.silver.room', 'unauthorized'],
  ['bob', 'subscribe', 'vip.#', 'unauthorized'],
  ['alice', 'subscribe', 'vip.gold.room', 'unauthorized'],
  // …or by a subscription token for one exact topic
  ['alice', 'subscribe', 'vip.silver.room', 'ok', { token: grant('alice', 'vip.silver.room') }],
  ['alice', 'history', 'vip.silver.room', 'ok', { token: grant('alice', 'vip.silver.room') }],
  ['alice', 'subscribe', 'vip.silver.other', 'unauthorized', { token: grant('alice', 'vip.silver.room') }],
  ['alice', 'subscribe', 'vip.silver.room', 'unauthorized', { token: grant('bob', 'vip.silver.room') }],
  ['alice', 'subscribe', 'vip.silver.room', 'unauthorized', { token: signJwt({ sub: 'alice', topic: 'vip.silver.room' }, 'another-secret-0123456789abcdef!') }],
  ['alice', 'subscribe', 'vip.silver.room', 'invalid_request', { token: 42 }],
  // nobody
  ['alice', 'subscribe', 'secret.x', 'unauthorized'],
  ['alice', 'publish', 'secret.x', 'unauthorized'],
  ['alice', 'history', 'secret.x', 'unauthorized'],
  ['alice', 'presence', 'secret.x', 'unauthorized'],
  // signed-in everywhere
  ['alice', 'subscribe', 'open.x', 'ok'],
  ['alice', 'publish', 'open.x', 'ok'],
  ['alice', 'history', 'open.x', 'ok'],
  ['alice', 'presence', 'open.x', 'ok'],
  // no rule: the defaults (publishing is the server's)
  ['alice', 'subscribe', 'misc.topic', 'ok'],
  ['alice', 'publish', 'misc.topic', 'unauthorized'],
  ['alice', 'history', 'misc.topic', 'ok'],
  ['alice', 'presence', 'misc.topic', 'ok'],
  // wildcards reaching several rules: all allowed → ok; none allowed → refused; some → accepted and filtered
  ['alice', 'subscribe', 'open.#', 'ok'],
  ['alice', 'subscribe', 'secret.*', 'unauthorized'],
  ['alice', 'subscribe', '#', 'ok'],
  ['alice', 'subscribe', '*.x', 'ok'],
  ['alice', 'presence', '#', 'unauthorized'],
];

t.test('every rule kind × action, over a socket', async (t) => {
  for (const [who, action, topic, expected, extra] of TABLE) {
    const client = who === 'alice' ? alice : bob;
    const data = action === 'publish' ? { topic, type: 'note', data: { n: 1 }, ...extra } : { topic, ...extra };
    t.equal(await ask(client, action, data), expected, `${who} ${action} ${topic}${extra ? ' with ' + Object.keys(extra).join(',') : ''}`);
  }
});

t.test('the server publishes where clients may not; client publishes carry the verified publisher', async (t) => {
  t.equal(await ask(bob, 'subscribe', { topic: 'news.eu' }), 'ok');
  t.equal(await ask(bob, 'subscribe', { topic: 'open.chat' }), 'ok');
  await hub.publish({ topic: 'news.eu', type: 'headline', data: { text: 'server news' } });
  const news = await bob.next((m) => m.type === 'headline');
  t.equal(news.from, undefined, 'a server publication has no from');
  alice.send({ type: 'publish', data: { topic: 'open.chat', type: 'chat', data: { text: 'hi', from: { user: 'mallory' } } }, request_id: 'p1' });
  const chat = await bob.next((m) => m.type === 'chat');
  t.same(chat.from, { user: 'alice' }, 'the hub sets from to the publisher\'s verified user');
  t.same(chat.data.from, { user: 'mallory' }, 'what the client wrote stays inside data, never in the envelope');
  const history = await hub.history('open.chat');
  t.equal(history.messages[0].from, 'alice', 'history keeps the publisher');
});

t.test('a wildcard subscription reaching private topics is filtered: live, replayed, and never another user\'s', async (t) => {
  const carol = await open(`${url}?token=${token('carol')}`);
  t.teardown(() => carol.ws.close());
  await hub.publish({ topic: 'user.bob.inbox', type: 'dm', data: { n: 'old-bob' } });
  await hub.publish({ topic: 'user.carol.inbox', type: 'dm', data: { n: 'old-carol' } });
  await hub.publish({ topic: 'misc.old', type: 'dm', data: { n: 'old-misc' } });
  const id = nextId++;
  carol.send({ type: 'subscribe', data: { topic: 'user.#', since: { offset: 0 } }, request_id: id });
  const ack = await carol.next((m) => m.request_id === id);
  t.equal(ack.type, 'ack', 'user.# is accepted (carol may read her own part of it)');
  t.equal(await ask(carol, 'subscribe', { topic: '#' }), 'ok', '# too');
  await hub.publish({ topic: 'user.bob.inbox', type: 'dm', data: { n: 'live-bob' } });
  await hub.publish({ topic: 'user.carol.inbox', type: 'dm', data: { n: 'live-carol' } });
  await hub.publish({ topic: 'secret.plan', type: 'dm', data: { n: 'live-secret' } });
  await hub.publish({ topic: 'misc.new', type: 'dm', data: { n: 'live-misc' } });
  await carol.next((m) => m.type === 'dm' && m.data.n === 'live-misc');
  const got = carol.json.filter((m) => m.type === 'dm').map((m) => m.data.n);
  t.ok(got.includes('old-carol'), 'her own old message was replayed');
  t.ok(got.includes('live-carol'), 'her own live message arrived');
  t.notOk(got.some((n: string) => n.includes('bob')), 'nothing of bob\'s private topic, replayed or live');
  t.notOk(got.includes('live-secret'), 'nothing of a nobody topic');
  t.equal(got.filter((n: string) => n === 'live-carol').length, 1, 'once, though two of her subscriptions match');
});

t.test('bad rules are refused at createHub with the rule and field named', async (t) => {
  const { createHub } = await import('../lib/hub/index.js');
  t.throws(() => createHub({ permissions: { rules: [{ pattern: 'a.#', subscribe: 'everyone' as never }] } }), /rules\[0\]\.subscribe must be one of/);
  t.throws(() => createHub({ permissions: { rules: [{ pattern: 'a.#', publish: 'owner' }] } }), /no \{sub\} segment/);
  t.throws(() => createHub({ permissions: { rules: [{ pattern: 'a.{user}' }] } }), /only placeholder is a whole segment \{sub\}/);
  t.throws(() => createHub({ permissions: { rules: [{ pattern: 'a', read: 'signed-in' } as never] } }), /rules\[0\]\.read is not an action/);
  t.throws(() => createHub({ permissions: { rule: [] } as never }), /permissions\.rule is not an option/);
});
