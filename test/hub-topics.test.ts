/** Topic names, wildcard matching tables, the trie against the direct matcher, pruning, history/resume arithmetic. */
import t from 'tap';
import { checkTopic, HistoryStore, matches, normalizePattern, TopicTrie } from '../lib/hub/index.js';

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
