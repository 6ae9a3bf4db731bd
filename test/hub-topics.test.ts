/** Topic names, wildcard matching tables, the trie against the direct matcher, pruning, history/resume arithmetic. */
import t from 'tap';
import { checkTopic, HISTORY_DEFAULTS, HISTORY_ENTRY_OVERHEAD, historyEntryBytes, historySweepInterval, HistoryStore, matches, MemoryBackplane, normalizePattern, TopicTrie } from '../lib/hub/index.js';

const TABLE: Array<[string, string, boolean]> = [
  ['orders.eu.#', 'orders.eu', true],
  ['orders.eu.#', 'orders.eu.created', true],
  ['orders.eu.#', 'orders.eu.created.x', true],
  ['orders.eu.#', 'orders.us.created', false],
  ['orders.eu.#', 'orders', false],
  ['orders.*', 'orders.eu', true],
  ['orders.*', 'orders', false],
  ['orders.*', 'orders.eu.created', false],
  ['*.eu.*', 'orders.eu.created', true],
  ['*.eu.*', 'orders.eu', false],
  ['#', 'a', true],
  ['#', 'a.b.c', true],
  ['#.created', 'created', true],
  ['#.created', 'orders.eu.created', true],
  ['#.created', 'orders.eu.created.x', false],
  ['a.#.b', 'a.b', true],
  ['a.#.b', 'a.x.y.b', true],
  ['a.#.b', 'a.x.y.c', false],
  ['a.#.b.#', 'a.b', true],
  ['a.#.b.#', 'a.q.b.r.s', true],
  ['a.*.#', 'a', false],
  ['a.*.#', 'a.x', true],
  ['a.*.#', 'a.x.y.z', true],
  ['*', 'chat:lobby', true],
  ['*', 'a.b', false],
  ['chat:lobby', 'chat:lobby', true],
  ['conversation:conv-123', 'conversation:conv-123', true],
  ['conversation:conv-123', 'conversation:conv-124', false],
  ['a.b', 'a.b.c', false],
  ['a.b.c', 'a.b', false],
  // A one-segment topic against its own prefix pattern (the trie's single-segment shortcut once missed `news.#`).
  ['news.#', 'news', true],
  ['news.#', 'news.x', true],
  ['news.#.x', 'news', false],
  ['news.*', 'news', false],
  ['news.*.#', 'news', false],
];

t.test('wildcard table: matches() and the trie agree with the expected results', async (t) => {
  for (const [pattern, topic, expected] of TABLE) {
    t.equal(matches(pattern, topic), expected, `matches(${pattern}, ${topic})`);
    const trie = new TopicTrie<string>();
    trie.add(pattern, 'v');
    const seen: string[] = [];
    trie.match(topic, (v) => seen.push(v));
    t.equal(seen.length > 0, expected, `trie: ${pattern} vs ${topic}`);
  }
});

t.test('a trie of many random patterns matches exactly the patterns matches() accepts', async (t) => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const words = ['a', 'b', 'c', '*', '#'];
  const patterns = new Set<string>();
  while (patterns.size < 400) {
    const n = 1 + rnd(4);
    patterns.add(normalizePattern(Array.from({ length: n }, () => words[rnd(5)]).join('.')));
  }
  // Also a trie without root-level wildcards, where single-segment topics take the trie's shortcut.
  const rooted = new TopicTrie<string>();
  const rootedPatterns = [...patterns].filter((p) => p[0] !== '*' && p[0] !== '#');
  for (const p of rootedPatterns) rooted.add(p, p);
  for (const topic of ['a', 'b', 'c', 'a.b', 'c.a.b']) {
    const got = new Set<string>();
    rooted.match(topic, (v) => got.add(v));
    t.same([...got].sort(), rootedPatterns.filter((p) => matches(p, topic)).sort(), `trie without root wildcards vs matches() for ${topic}`);
  }
  const trie = new TopicTrie<string>();
  for (const p of patterns) trie.add(p, p);
  let mismatches = 0;
  for (let i = 0; i < 300; i++) {
    const topic = Array.from({ length: 1 + rnd(5) }, () => 'abc'[rnd(3)]).join('.');
    const got = new Set<string>();
    trie.match(topic, (v) => got.add(v));
    const want = [...patterns].filter((p) => matches(p, topic));
    if (got.size !== want.length || !want.every((p) => got.has(p))) mismatches++;
  }
  t.equal(mismatches, 0, 'no topic where the trie and the direct matcher disagree');
  for (const p of patterns) trie.delete(p, p);
  t.equal(trie.size, 0, 'every entry removed');
  t.equal(trie.nodeCount, 0, 'every node pruned');
});

t.test('topic validation', async (t) => {
  t.equal(checkTopic('orders.eu.created', false), null);
  t.equal(checkTopic('orders.eu.#', true), null);
  t.equal(checkTopic('conversation:conv-123', false), null);
  t.match(checkTopic('orders.eu.#', false), /only allowed in subscriptions/);
  t.match(checkTopic('a..b', true), /empty segment/);
  t.match(checkTopic('.a', true), /empty segment/);
  t.match(checkTopic('a.', true), /empty segment/);
  t.match(checkTopic('a.b#', true), /whole segment/);
  t.match(checkTopic('a b', true), /whitespace/);
  t.match(checkTopic('x'.repeat(257), true), /limit is 256/);
  t.match(checkTopic(Array(40).fill('a').join('.'), true), /segments/);
  t.match(checkTopic(42, true), /must be a string/);
  t.match(checkTopic('', true), /empty/);
  t.equal(normalizePattern('a.#.#.b.#.#'), 'a.#.b.#');
});

t.test('history: seq from 1, bounded by count and age, exact gaps, epochs', async (t) => {
  let now = 1_000_000;
  const h = new HistoryStore({ size: 3, ttl: 1000 }, () => now);
  const first = h.append('default', 'x', 'm', '1');
  t.equal(first.seq, 1);
  for (let i = 2; i <= 5; i++) h.append('default', 'x', 'm', String(i));
  const epoch = first.epoch;
  let r = h.since('default', 'x', { epoch, seq: 3 });
  t.same(r.messages.map((m) => m.seq), [4, 5], 'held messages after the position');
  t.same(r.gaps, [], 'no gap');
  t.equal(r.recovered, true);
  r = h.since('default', 'x', { epoch, seq: 0 });
  t.same(r.messages.map((m) => m.seq), [3, 4, 5]);
  t.same(r.gaps.map((g) => [g.from, g.to]), [[1, 2]], 'exactly 1..2 are lost');
  t.equal(r.recovered, false);
  now += 2000;
  h.append('default', 'x', 'm', '6');
  r = h.since('default', 'x', { epoch, seq: 2 });
  t.same(r.messages.map((m) => m.seq), [6], 'older ones expired by age');
  t.same(r.gaps.map((g) => [g.from, g.to]), [[3, 5]]);
  r = h.since('default', 'x', { epoch: 'other', seq: 4 });
  t.equal(r.recovered, false, 'an unknown epoch is not recovered');
  t.same(r.messages.map((m) => m.seq), [6]);
});

t.test('history: sweep() drops what expired in every topic, without a publish; resume reports the exact gap', async (t) => {
  let now = 1_000_000;
  const h = new HistoryStore({ size: 100, ttl: 1000 }, () => now);
  const a = [1, 2, 3].map((i) => h.append('default', 'a', 'm', String(i)));
  now += 500;
  h.append('default', 'b', 'm', '1');
  h.append('other', 'b', 'm', '2');
  t.equal(h.messageCount, 5);
  t.equal(h.bytes, 5 * historyEntryBytes('a', 'm', '1'), 'bytes: 2 per UTF-16 unit of data, type and topic, plus the overhead');
  t.equal(h.sweep(), 0, 'nothing expired yet');
  now += 700;
  t.equal(h.sweep(), 3, "a's three messages expired; b's (in both tenants) not yet");
  t.equal(h.messageCount, 2);
  t.equal(h.bytes, 2 * historyEntryBytes('b', 'm', '1'));
  t.equal(h.topicCount, 3, 'a topic left without messages keeps its stream');
  let r = h.since('default', 'a', { epoch: a[0].epoch, seq: 1 });
  t.same(r.messages, []);
  t.same(r.gaps.map((g) => [g.topic, g.from, g.to]), [['a', 2, 3]], 'exactly 2..3 are lost');
  t.equal(r.recovered, false);
  t.same(h.since('default', 'b', { epoch: '', seq: 0 }).messages.map((m) => m.data), ['1']);
  now += 1000;
  t.equal(h.sweep(now), 2, 'the rest expired, across tenants');
  t.equal(h.messageCount, 0);
  t.equal(h.bytes, 0, 'bytes back to 0');
  r = h.since('other', 'b', { epoch: '', seq: 0 });
  t.same(r.gaps.map((g) => [g.from, g.to]), [[1, 1]]);
  const next = h.append('default', 'a', 'm', '4');
  t.same([next.seq, next.epoch], [4, a[0].epoch], 'the stream continues in the same epoch');
  r = h.sincePattern('default', '#', { offset: 0 });
  t.same(r.messages.map((m) => `${m.topic}:${m.seq}`), ['a:4']);
  t.same(r.gaps.map((g) => [g.topic, g.from, g.to]).sort(), [['a', 1, 3], ['b', 1, 1]], 'the pattern resume names both exact gaps');
});

t.test('history: maxBytes drops the store\'s oldest message (across topics and tenants) with exact gaps', async (t) => {
  const one = historyEntryBytes('a', 'm', '1');
  t.equal(one, 2 * 3 + HISTORY_ENTRY_OVERHEAD);
  const h = new HistoryStore({ maxBytes: 3 * one });
  h.append('default', 'a', 'm', '1'); // offset 1
  h.append('default', 'b', 'm', '1'); // offset 2
  h.append('default', 'a', 'm', '2'); // offset 3
  t.equal(h.bytes, 3 * one, 'at the cap: nothing dropped');
  h.append('default', 'b', 'm', '2'); // offset 4: a1 goes
  h.append('default', 'a', 'm', '3'); // offset 5: b1 goes
  t.equal(h.messageCount, 3);
  t.equal(h.bytes, 3 * one);
  let r = h.since('default', 'a', { epoch: '', seq: 0 });
  t.same(r.messages.map((m) => m.seq), [2, 3]);
  t.same(r.gaps.map((g) => [g.from, g.to]), [[1, 1]]);
  r = h.since('default', 'b', { epoch: '', seq: 0 });
  t.same(r.messages.map((m) => m.seq), [2]);
  t.same(r.gaps.map((g) => [g.from, g.to]), [[1, 1]]);
  // A client that saw offset 1 (a1): a is complete from there, b1 (offset 2) is lost.
  r = h.sincePattern('default', '#', { offset: 1 });
  t.same(r.messages.map((m) => `${m.topic}:${m.seq}`), ['a:2', 'b:2', 'a:3'], 'held messages in publication order');
  t.same(r.gaps.map((g) => [g.topic, g.from, g.to]), [['b', 1, 1]], 'only the lost one is a gap');
  // Another tenant's publications push the oldest out too: the cap is the store's.
  h.append('other', 'c', 'm', '1');
  t.same(h.since('default', 'a', { epoch: '', seq: 0 }).messages.map((m) => m.seq), [3], 'a2 was the oldest of the store');
  h.clear();
  t.same([h.bytes, h.messageCount], [0, 0], 'clear() empties the counts');
});

t.test('history: maxTopicBytes drops the topic\'s oldest; a message larger than it is not kept', async (t) => {
  const one = historyEntryBytes('a', 'm', '1');
  const h = new HistoryStore({ maxTopicBytes: 2 * one });
  for (let i = 1; i <= 3; i++) h.append('default', 'a', 'm', String(i));
  h.append('default', 'b', 'm', '1');
  let r = h.since('default', 'a', { epoch: '', seq: 0 });
  t.same(r.messages.map((m) => m.seq), [2, 3]);
  t.same(r.gaps.map((g) => [g.from, g.to]), [[1, 1]]);
  t.same(h.since('default', 'b', { epoch: '', seq: 0 }).messages.map((m) => m.seq), [1], 'other topics untouched');
  const big = h.append('default', 'a', 'm', JSON.stringify('x'.repeat(one)));
  t.equal(big.seq, 4, 'a message over the cap still gets its seq');
  r = h.since('default', 'a', { epoch: '', seq: 0 });
  t.same(r.messages, [], 'it pushed out the older ones and was not kept');
  t.same(r.gaps.map((g) => [g.from, g.to]), [[1, 4]]);
  t.equal(h.bytes, one, 'only b1 is held');
  h.append('default', 'a', 'm', '5');
  t.same(h.since('default', 'a', { epoch: big.epoch, seq: 3 }).gaps.map((g) => [g.from, g.to]), [[4, 4]]);
});

t.test('history: evicting a topic (maxTopics) releases its bytes; options are validated', async (t) => {
  const h = new HistoryStore({ maxTopics: 2 });
  for (const topic of ['a', 'b', 'c']) h.append('default', topic, 'm', '1');
  t.equal(h.topicCount, 2);
  t.same([h.messageCount, h.bytes], [2, 2 * historyEntryBytes('a', 'm', '1')]);
  t.equal(HISTORY_DEFAULTS.maxBytes, 64 * 1024 * 1024);
  t.equal(HISTORY_DEFAULTS.maxTopicBytes, 8 * 1024 * 1024);
  t.same([new HistoryStore().maxBytes, new HistoryStore({ maxBytes: Infinity }).maxBytes], [HISTORY_DEFAULTS.maxBytes, Infinity]);
  for (const bad of [-1, NaN, '1k' as unknown as number]) {
    t.throws(() => new HistoryStore({ maxBytes: bad }), { name: 'RangeError', message: /^history\.maxBytes must be a non-negative number/ });
    t.throws(() => new HistoryStore({ maxTopicBytes: bad }), { name: 'RangeError', message: /^history\.maxTopicBytes must be a non-negative number/ });
  }
  const none = new HistoryStore({ maxBytes: 0 });
  none.append('default', 'a', 'm', '1');
  t.same([none.messageCount, none.bytes], [0, 0], 'maxBytes 0 keeps nothing');
  t.same(none.since('default', 'a', { epoch: '', seq: 0 }).gaps.map((g) => [g.from, g.to]), [[1, 1]]);
});

t.test('MemoryBackplane sweeps its history on a timer from attach to close', async (t) => {
  t.same([historySweepInterval(500), historySweepInterval(8000), historySweepInterval(300_000), historySweepInterval(Infinity)], [1000, 2000, 60_000, undefined]);
  let now = 1_000_000;
  const backplane = new MemoryBackplane({ history: { ttl: 100 }, now: () => now });
  const sink = { message() {}, user: () => 0, connection: () => false, broadcast: () => 0, disconnect: () => 0, presence() {} };
  await backplane.attach(sink);
  for (let i = 0; i < 10; i++) await backplane.publish('default', `t${i}`, 'm', '1');
  t.equal(backplane.counts.historyBytes, 10 * historyEntryBytes('t0', 'm', '1'));
  now += 1000;
  // No publish and no resume: only the timer (every 1 s here) can drop them.
  const deadline = Date.now() + 20_000;
  while (backplane.history.messageCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.equal(backplane.history.messageCount, 0, 'swept');
  t.equal(backplane.counts.historyBytes, 0);
  t.equal(backplane.counts.topics, 10, 'the streams are kept');
  await backplane.close();
});

t.test('a wildcard resume with a position in a topic the store forgot is not recovered (as for an exact topic and on the brokers)', async (t) => {
  const store = new HistoryStore({ maxTopics: 1 });
  const x = store.append('default', 'a.x', 'm', '1');
  store.append('default', 'a.y', 'm', '2'); // evicts a.x's stream
  const forgotten = store.sincePattern('default', 'a.*', { positions: { 'a.x': { epoch: x.epoch, seq: 1 } } });
  t.equal(forgotten.recovered, false, 'a.x is gone: what came after seq 1 cannot be known');
  t.equal(store.since('default', 'a.x', { epoch: x.epoch, seq: 1 }).recovered, false, 'the exact resume agrees');
  const fresh = store.sincePattern('default', 'a.*', { positions: { 'a.z': { epoch: '', seq: 0 } } });
  t.equal(fresh.recovered, true, 'a position at 0 in an unknown topic loses nothing');
  const other = store.sincePattern('default', 'a.*', { positions: { 'b.q': { epoch: 'e', seq: 5 } } });
  t.equal(other.recovered, true, 'a position in a topic the pattern does not match is not this resume\'s business');
  const empty = new HistoryStore().sincePattern('nobody', 'a.*', { positions: { 'a.x': { epoch: 'e', seq: 2 } } });
  t.equal(empty.recovered, false, 'also in a tenant the store never saw');
});
