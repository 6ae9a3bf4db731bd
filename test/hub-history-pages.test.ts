/**
 * `history` answers are pages, over real sockets and through `hub.history`: at most `limit` messages (default
 * `historyLimit` 100, at most `maxHistoryLimit` 1,000) and `maxHistoryBytes` (256 KiB) of them, with `more` and an
 * opaque `next` cursor; paging with the cursor yields every held message exactly once, with exact gaps for what
 * was dropped (also between pages); bad limits and cursors are `invalid_request`; and every answer goes through
 * the connection's outbound budget, so a client that asks for a lot and never reads is closed with 1008 instead
 * of making the hub queue it all (before: 100 requests queued 158 MB).
 */
import t from 'tap';
import { open, type Recorder, startHub, token } from './helpers/hub.js';
import { fillHistory, nextConnection, payload, rawHubClient, settled, watchBuffered } from './helpers/raw-hub.js';

const MIB = 1024 * 1024;

/** Sends a `history` request and resolves with its answer (ack or error). */
async function ask(c: Recorder, data: Record<string, unknown>, id: string): Promise<Record<string, any>> {
  c.send({ type: 'history', data, request_id: id });
  return c.next((m) => m.request_id === id, 10_000);
}

/** Pages through `topic` from `first` (the first page's fields) with `cursor`; resolves with every page. */
async function pageThrough(c: Recorder, first: Record<string, unknown>, prefix: string, between?: (n: number) => Promise<void>): Promise<Array<Record<string, any>>> {
  const pages: Array<Record<string, any>> = [];
  let data: Record<string, unknown> = first;
  for (;;) {
    const page = await ask(c, data, `${prefix}-${pages.length}`);
    if (page.type !== 'ack') throw new Error(`page ${pages.length}: ${JSON.stringify(page)}`);
    pages.push(page);
    if (!page.data.more || pages.length > 100) return pages;
    await between?.(pages.length);
    const { since: _since, ...rest } = first;
    data = { ...rest, cursor: page.data.next };
  }
}

t.test('100 history requests from a client that never reads: closed with 1008, the unsent data within the budget + reply headroom', async (t) => {
  const { hub, port } = await startHub({ heartbeat: false });
  t.teardown(() => hub.close({ timeout: 100 }));
  await fillHistory(hub, ['big'], 100, 16_000); // 1.6 MB per full answer: 160 MB for 100
  const accepted = nextConnection(hub);
  const client = await rawHubClient(port, token('hoarder'));
  t.teardown(() => client.destroy());
  const server = await accepted;
  const watch = watchBuffered(server.connection);
  for (let i = 0; i < 100; i++) client.send({ type: 'history', data: { topic: 'big', limit: 1000 }, request_id: i });
  client.stopReading();
  const start = Date.now();
  while (hub.client(server.id) !== undefined && Date.now() - start < 10_000) await new Promise((r) => setTimeout(r, 50));
  await settled(watch, 200);
  t.ok(watch.peak <= MIB + 64 * 1024 + 16, `unsent data never passed 1 MiB + 64 KiB (peak ${watch.peak} bytes)`);
  t.ok(hub.client(server.id) === undefined, 'the connection is closed');
  t.equal(hub.stats().closeCodes['1008'], 1, 'with 1008');
  t.equal(hub.stats().slowConsumerDisconnects, 1, 'as a slow consumer');
});

t.test('a reading client pages through a topic with limit and cursor: every held message once, exact gaps, byte-capped pages', async (t) => {
  const { hub, url } = await startHub({ heartbeat: false, history: { size: 250 } });
  t.teardown(() => hub.close({ timeout: 100 }));
  // 260 messages (1..10 dropped): every 10th is 100 KB, so some pages are cut by maxHistoryBytes before the limit.
  let epoch = '';
  for (let i = 1; i <= 260; i++) epoch = (await hub.publish({ topic: 'feed', type: 'h', data: payload(`m${i}`, i % 10 === 0 ? 100_000 : 500) })).epoch;
  const c = await open(`${url}?token=${token('pager')}`);
  t.teardown(() => c.ws.close());

  const pages = await pageThrough(c, { topic: 'feed', since: { epoch, seq: 0 }, limit: 30 }, 'feed');
  const seqs = pages.flatMap((p) => p.messages.map((m: any) => m.seq));
  t.same(seqs, Array.from({ length: 250 }, (_, i) => 11 + i), 'every held message (11..260) once, in order');
  t.same(pages.flatMap((p) => p.messages.map((m: any) => m.data)), seqs.map((s) => payload(`m${s}`, s % 10 === 0 ? 100_000 : 500)), 'with their data');
  t.ok(pages.every((p) => p.messages.length >= 1 && p.messages.length <= 30), 'every page holds 1 to 30 messages');
  for (const [i, p] of pages.entries()) {
    const bytes = p.messages.reduce((n: number, m: any) => n + JSON.stringify(m).length, 0);
    if (p.messages.length > 1) t.ok(bytes <= 256 * 1024 + 1024, `page ${i}: ${p.messages.length} messages, ${bytes} bytes`);
  }
  t.ok(pages.some((p) => p.data.more && p.messages.length < 30), 'some pages were cut by bytes, before the limit');
  t.same(pages[0].data.gaps, [{ tenant: 'default', topic: 'feed', epoch, from: 1, to: 10 }], 'the first page reports the dropped range');
  t.equal(pages[0].data.recovered, false, 'and says recovered: false');
  t.ok(pages.slice(1).every((p) => p.data.gaps.length === 0 && p.data.recovered === true), 'later pages: nothing more missing');
  t.ok(pages.slice(0, -1).every((p) => p.data.more === true && typeof p.data.next === 'string'), 'every page but the last: more, with a cursor');
  t.equal(pages.at(-1)!.data.more, false, 'the last page: no more');
  t.notOk('next' in pages.at(-1)!.data, 'and no cursor');
  t.ok(pages.every((p) => p.data.seq === 260 && p.data.epoch === epoch), 'each page carries the topic’s position');

  // Default limit 100; at most maxHistoryLimit (1,000).
  for (let i = 1; i <= 150; i++) await hub.publish({ topic: 'small', type: 'h', data: i });
  const byDefault = await ask(c, { topic: 'small' }, 'default');
  t.equal(byDefault.messages.length, 100, 'no limit: historyLimit (100) messages');
  t.equal(byDefault.data.more, true, 'and more');
  const rest = await ask(c, { topic: 'small', cursor: byDefault.data.next }, 'rest');
  t.same(rest.messages.map((m: any) => m.seq), Array.from({ length: 50 }, (_, i) => 101 + i), 'the cursor continues after it');
  const max = await ask(c, { topic: 'small', limit: 1000 }, 'max');
  t.equal(max.messages.length, 150, 'limit 1000 is allowed');
  t.equal(max.data.more, false, 'and no more');
});

t.test('messages published and dropped between pages: the next page carries them, or the exact gap', async (t) => {
  const { hub, url } = await startHub({ heartbeat: false, history: { size: 50 } });
  t.teardown(() => hub.close({ timeout: 100 }));
  let epoch = '';
  for (let i = 1; i <= 50; i++) epoch = (await hub.publish({ topic: 'roll', type: 'h', data: i })).epoch;
  const c = await open(`${url}?token=${token('roller')}`);
  t.teardown(() => c.ws.close());
  const pages = await pageThrough(c, { topic: 'roll', since: { epoch, seq: 0 }, limit: 20 }, 'roll', async (n) => {
    // After the first page (1..20): 30 more, which drops 1..30 (21..30 were not sent yet).
    if (n === 1) for (let i = 51; i <= 80; i++) await hub.publish({ topic: 'roll', type: 'h', data: i });
  });
  const seqs = pages.flatMap((p) => p.messages.map((m: any) => m.seq));
  const gaps = pages.flatMap((p) => p.data.gaps);
  t.same(seqs, [...Array.from({ length: 20 }, (_, i) => 1 + i), ...Array.from({ length: 50 }, (_, i) => 31 + i)], '1..20, then 31..80, once each');
  t.same(gaps, [{ tenant: 'default', topic: 'roll', epoch, from: 21, to: 30 }], 'what was dropped before it was paged: one exact gap');
  t.equal(pages.at(-1)!.data.more, false, 'up to the newest message');
});

t.test('bad limits and cursors are invalid_request; the connection stays usable', async (t) => {
  const { hub, url } = await startHub({ heartbeat: false });
  t.teardown(() => hub.close({ timeout: 100 }));
  let epoch = '';
  for (let i = 1; i <= 30; i++) epoch = (await hub.publish({ topic: 'a', type: 'h', data: i })).epoch;
  for (let i = 1; i <= 30; i++) await hub.publish({ topic: 'b', type: 'h', data: i });
  for (let i = 1; i <= 30; i++) await hub.publish({ topic: 'a', tenant: 'other', type: 'h', data: i });
  const c = await open(`${url}?token=${token('bad')}`);
  t.teardown(() => c.ws.close());
  const cursorOfB = (await ask(c, { topic: 'b', limit: 10 }, 'b')).data.next;
  const cursorOfOtherTenant = (await ask(c, { topic: 'a', tenant: 'other', limit: 10 }, 'other')).data.next;
  t.type(cursorOfB, 'string', 'a first page of b has a cursor');
  const bad: Array<[string, Record<string, unknown>]> = [
    ['limit 0', { topic: 'a', limit: 0 }],
    ['limit 5000', { topic: 'a', limit: 5000 }],
    ['limit 1001', { topic: 'a', limit: 1001 }],
    ['limit 1.5', { topic: 'a', limit: 1.5 }],
    ['limit "10"', { topic: 'a', limit: '10' }],
    ['a garbage cursor', { topic: 'a', cursor: 'not-a-cursor!!' }],
    ['base64 of something else', { topic: 'a', cursor: Buffer.from('{"v":2}').toString('base64url') }],
    ['an empty cursor', { topic: 'a', cursor: '' }],
    ['a cursor of another topic', { topic: 'a', cursor: cursorOfB }],
    ['a cursor of another tenant', { topic: 'a', cursor: cursorOfOtherTenant }],
    ['since and cursor together', { topic: 'b', since: { epoch, seq: 0 }, cursor: cursorOfB }],
  ];
  for (const [what, data] of bad) {
    const answer = await ask(c, data, what);
    t.equal(answer.type, 'error', `${what}: an error`);
    t.equal(answer.data?.code, 'invalid_request', `${what}: invalid_request (${answer.data?.message})`);
  }
  const good = await ask(c, { topic: 'b', cursor: cursorOfB, limit: 1000 }, 'good');
  t.same(good.messages.map((m: any) => m.seq), Array.from({ length: 20 }, (_, i) => 11 + i), 'the same connection still pages with a good cursor');
  t.equal(c.ws.readyState, 1, 'still open');
});

t.test('hub.history pages too: a wildcard pattern across topics in publication order, an exact topic, and the same refusals', async (t) => {
  const { hub } = await startHub({ heartbeat: false, history: { size: 100 } });
  t.teardown(() => hub.close({ timeout: 100 }));
  const published = await fillHistory(hub, ['p.a', 'p.b', 'p.c'], 120, 50); // per topic 1..20 dropped
  await fillHistory(hub, ['q.z'], 10, 50);
  const held = published.filter((p) => p.seq > 20);
  const epochOf = (topic: string): string => published.find((p) => p.topic === topic)!.epoch;

  const pages = [];
  let page = await hub.history('p.#', { limit: 70 });
  pages.push(page);
  while (page.more && pages.length < 20) {
    t.type(page.next, 'string', 'a page with more has a cursor');
    page = await hub.history('p.#', { limit: 70, cursor: page.next });
    pages.push(page);
  }
  t.ok(pages.every((p) => p.messages.length <= 70), 'no page above its limit');
  t.equal(pages.length, Math.ceil(held.length / 70), `${pages.length} pages`);
  t.same(pages.flatMap((p) => p.messages.map((m) => `${m.topic}#${m.seq}`)), held.map((p) => `${p.topic}#${p.seq}`), 'every held message of the pattern once, in publication order');
  t.same([...pages[0].gaps].sort((a, b) => a.topic.localeCompare(b.topic)).map((g) => [g.topic, g.epoch, g.from, g.to]), ['p.a', 'p.b', 'p.c'].map((topic) => [topic, epochOf(topic), 1, 20]), 'the first page: the dropped range of each topic');
  t.equal(pages.at(-1)!.more, false, 'the last page has no more');

  const exact = [];
  let e = await hub.history('p.b', { since: 20, limit: 40 });
  exact.push(...e.messages.map((m) => m.seq));
  while (e.more) {
    e = await hub.history('p.b', { cursor: e.next, limit: 40 });
    exact.push(...e.messages.map((m) => m.seq));
  }
  t.same(exact, Array.from({ length: 100 }, (_, i) => 21 + i), 'an exact topic from a bare seq, page by page');

  const byDefault = await hub.history('p.a');
  t.equal(byDefault.messages.length, 100, 'default limit 100');
  await t.rejects(hub.history('p.a', { limit: 0 }), RangeError, 'limit 0');
  await t.rejects(hub.history('p.a', { limit: 5000 }), RangeError, 'limit 5000');
  await t.rejects(hub.history('p.a', { cursor: 'garbage' }), RangeError, 'a garbage cursor');
  const cursorOfB = (await hub.history('p.b', { limit: 1 })).next!;
  await t.rejects(hub.history('p.a', { cursor: cursorOfB }), RangeError, 'a cursor of another topic');
  await t.rejects(hub.history('p.#', { cursor: cursorOfB }), RangeError, 'a topic cursor for a pattern');
  await t.rejects(hub.history('p.b', { since: 3, cursor: cursorOfB }), RangeError, 'since and cursor together');
});
