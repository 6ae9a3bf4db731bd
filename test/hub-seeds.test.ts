/**
 * The seed documents' clients, written as the documents show them (same token placement, same messages, same
 * close-code handling), against the hub over real sockets with this project's browser-style WebSocket.
 */
import t from 'tap';
import { open, record, sleep, startHub, token } from './helpers/hub.js';
import { WebSocket } from '../lib/index.js';

t.test('seed 000: Authorization header (server-side client) and ["llps.v1", "at." + token] (browser)', async (t) => {
  const { hub, url } = await startHub();
  t.teardown(() => hub.close());
  // Browser example, as in the document.
  const tokenB = token('browser-user', { tenants: ['prod'] });
  const ws = new WebSocket(url, ['llps.v1', 'at.' + tokenB]);
  const browser = record(ws);
  ws.onopen = () => {
    ws.send(JSON.stringify({ action: 'subscribe', tenant: 'prod', channel: 'orders.eu.#' }));
  };
  await browser.opened;
  t.equal(ws.protocol, 'llps.v1', 'the hub echoes llps.v1, never the token');
  const ack = await browser.next((m) => m.action === 'subscribed');
  t.equal(ack.channel, 'orders.eu.#');
  t.equal(ack.tenant, 'prod');
  // Server-side client: Authorization header.
  const server = await open(url, undefined, { headers: { Authorization: 'Bearer ' + token('backend') } });
  server.send({ action: 'publish', tenant: 'prod', channel: 'orders.eu.created', payload: '...' });
  const published = await server.next((m) => m.action === 'published');
  t.equal(published.seq, 1, 'the publisher gets an ack with the sequence number');
  const msg = await browser.next((m) => m.action === 'message');
  t.same({ tenant: msg.tenant, channel: msg.channel, payload: msg.payload, seq: msg.seq }, { tenant: 'prod', channel: 'orders.eu.created', payload: '...', seq: 1 });
  server.send({ action: 'publish', tenant: 'prod', channel: 'orders.us.created', payload: 'no' });
  server.send({ action: 'publish', tenant: 'staging', channel: 'orders.eu.created', payload: 'other tenant' });
  await server.count((m) => m.action === 'published', 3);
  await sleep(50);
  t.equal(browser.json.filter((m) => m.action === 'message').length, 1, 'non-matching channel and other tenant not delivered');
  // The browser's token only allows tenant prod.
  browser.send({ action: 'subscribe', tenant: 'staging', channel: 'orders.#' });
  const refused = await browser.next((m) => m.action === 'error');
  t.equal(refused.code, 'unauthorized', 'a tenant outside the token is refused with an error, not a disconnect');
  t.equal(ws.readyState, 1, 'still open');
  // Header first, subprotocol as fallback: a bad header token wins over a good subprotocol token.
  const both = record(new WebSocket(url, ['llps.v1', 'at.' + token('x')], { headers: { Authorization: 'Bearer nope' } }));
  t.equal((await both.closed).code, 4401, 'the header is checked first');
  // Expired tokens fail authentication.
  const expired = record(new WebSocket(url, ['llps.v1', 'at.' + token('late', {}, -10)]));
  t.equal((await expired.closed).code, 4401, 'expired token refused');
  ws.close();
  server.ws.close();
});

t.test('seed 001: ["bearer", jwt] and ?token=, app ping/pong, chat.message handler, send_to, broadcast, close codes', async (t) => {
  const { hub, url } = await startHub({ heartbeat: { interval: 150, timeout: 400 }, limits: { maxConnectionsPerUser: 2 } });
  t.teardown(() => hub.close());
  // The document's server handler, in this hub's API.
  hub.on('message', async (connection, envelope) => {
    if (envelope.type === 'chat.message') {
      const data = envelope.data as { room: string; text: string };
      await hub.publish({ topic: data.room, type: 'chat.message', data: { from: connection.user, text: data.text } });
    }
  });
  const events: string[] = [];
  // The document's JavaScript client.
  function connect(jwtToken: string, useQuery = false): { ws: WebSocket; got: unknown[]; closed: Promise<number> } {
    const ws = useQuery ? new WebSocket(`${url}?token=${jwtToken}`) : new WebSocket(url, ['bearer', jwtToken]);
    const got: unknown[] = [];
    ws.addEventListener('open', () => {
      ws.send(JSON.stringify({ type: 'subscribe', data: { topic: 'chat:lobby' } }));
    });
    ws.addEventListener('message', (event: Event) => {
      const envelope = JSON.parse((event as MessageEvent).data as string);
      if (envelope.type === 'ping') {
        events.push('ping');
        ws.send(JSON.stringify({ type: 'pong', data: {} }));
        return;
      }
      if (envelope.type === 'chat.message') got.push(envelope.data);
    });
    const closed = new Promise<number>((resolve) =>
      ws.addEventListener('close', (event: Event) => {
        const code = (event as unknown as { code: number }).code;
        if (code === 4401) events.push('redirect to /login');
        resolve(code);
      }),
    );
    return { ws, got, closed };
  }
  const alice = connect(token('alice'));
  const bob = connect(token('bob'), true);
  await new Promise((r) => alice.ws.addEventListener('open', r));
  await new Promise((r) => bob.ws.addEventListener('open', r));
  t.equal(alice.ws.protocol, 'bearer', 'the hub echoes "bearer", not the token');
  t.equal(bob.ws.protocol, '', 'no subprotocol for the query-token client');
  await sleep(100); // both subscriptions acked (the client does not wait for acks)
  bob.ws.send(JSON.stringify({ type: 'chat.message', data: { room: 'chat:lobby', text: 'hello' } }));
  const until = Date.now() + 20_000;
  while ((alice.got.length < 1 || bob.got.length < 1) && Date.now() < until) await sleep(10);
  t.same(alice.got, [{ from: 'bob', text: 'hello' }], 'the room broadcast reaches alice');
  t.same(bob.got, [{ from: 'bob', text: 'hello' }], 'and bob');
  // Heartbeat: the clients answer pings and stay connected well past the timeout.
  // Wait for 4 pings (however long a loaded machine takes), not a fixed time: 3 intervals of 150 ms lie between
  // them, past the 400 ms timeout, so the client stayed open because it answered.
  const pings = () => events.filter((e) => e === 'ping').length;
  for (const end = Date.now() + 20_000; pings() < 4 && Date.now() < end; ) await sleep(20);
  t.ok(pings() >= 4, `app-level pings arrive and are answered (${pings()})`);
  t.equal(alice.ws.readyState, 1, 'a client that answers pings stays open past the timeout');
  // A client that answers nothing (no pong envelope; its engine does not even answer protocol pings, like a frozen
  // or half-open peer) is closed with 4408.
  const silent = await open(`${url}?token=${token('carol')}`, undefined, { autoPong: false });
  const silentClose = await silent.closed;
  t.equal(silentClose.code, 4408, 'no pong → 4408');
  t.ok(silent.json.some((m) => m.type === 'ping' && m.request_id === null && JSON.stringify(m.data) === '{}'), 'the ping is {"type":"ping","data":{},"request_id":null}');
  // send_to(user): every socket of the user.
  const alice2 = connect(token('alice'));
  await new Promise((r) => alice2.ws.addEventListener('open', r));
  const a1 = record(alice.ws);
  const a2 = record(alice2.ws);
  t.equal(await hub.sendToUser('alice', { type: 'notification', data: { text: '...' } }), 2, 'two sockets of alice');
  await a1.next((m) => m.type === 'notification');
  await a2.next((m) => m.type === 'notification');
  // broadcast to everyone.
  const b1 = record(bob.ws);
  t.equal(await hub.broadcast({ type: 'system.announcement', data: { text: 'Server maintenance' } }), 3);
  await b1.next((m) => m.type === 'system.announcement');
  // 4429: a third alice socket evicts the oldest.
  const alice3 = connect(token('alice'), true);
  t.equal(await alice.closed, 4429, 'oldest alice socket closed with 4429');
  t.equal(alice2.ws.readyState, 1, 'the newer one stays');
  // 1009: message over 64 KiB.
  const big = connect(token('dave'));
  await new Promise((r) => big.ws.addEventListener('open', r));
  big.ws.send(JSON.stringify({ type: 'chat.message', data: { room: 'chat:lobby', text: 'x'.repeat(70_000) } }));
  t.equal(await big.closed, 1009, 'over 64 KiB → 1009');
  // 4401: bad token, before any message is handled.
  const bad = connect('not-a-jwt');
  t.equal(await bad.closed, 4401);
  t.ok(events.includes('redirect to /login'), 'the client reacts to 4401 as the document says');
  // 1000: normal exit.
  alice2.ws.close(1000);
  t.equal(await alice2.closed, 1000);
  alice3.ws.close();
  bob.ws.close();
  await alice3.closed;
  await bob.closed;
  await sleep(50);
  const stats = hub.stats();
  for (const code of ["1000", "1009", "4401", "4408", "4429"]) t.ok(stats.closeCodes[code] >= 1, `close code ${code} counted in stats: ${JSON.stringify(stats.closeCodes)}`);
});

t.test('seed 002: ?token=, subscribe/unsubscribe by channel, ping, events, errors, expiry', async (t) => {
  const { hub, url } = await startHub();
  t.teardown(() => hub.close());
  const ws = record(new WebSocket(`${url}?token=${token('user-456', {}, 2)}`));
  await ws.opened;
  ws.send({ type: 'subscribe', data: { channel: 'conversation:conv-123' } });
  await sleep(50);
  await hub.publish({ topic: 'conversation:conv-123', type: 'chat_message', data: { conversation_id: 'conv-123', sender_id: 'user-456', content: 'Hello there!' } });
  const chat = await ws.next((m) => m.type === 'chat_message');
  t.same(chat.data, { conversation_id: 'conv-123', sender_id: 'user-456', content: 'Hello there!' }, 'event type and data at the top level');
  await hub.sendToUser('user-456', { type: 'notification', data: { message: 'New comment on your post', level: 'info' } });
  t.same((await ws.next((m) => m.type === 'notification')).data, { message: 'New comment on your post', level: 'info' });
  await hub.broadcast({ type: 'status_update', data: { entity_type: 'task', entity_id: 'task-789', status: 'completed' } });
  await ws.next((m) => m.type === 'status_update');
  ws.send({ type: 'ping', data: {} });
  t.same(await ws.next((m) => m.type === 'pong'), { type: 'pong', data: {}, request_id: null });
  ws.send({ type: 'unsubscribe', data: { channel: 'conversation:conv-123' } });
  await sleep(50);
  await hub.publish({ topic: 'conversation:conv-123', type: 'chat_message', data: { content: 'after' } });
  await sleep(50);
  t.equal(ws.json.filter((m) => m.type === 'chat_message').length, 1, 'nothing after unsubscribe');
  ws.send('{not json');
  t.equal((await ws.next((m) => m.type === 'error')).data.code, 'invalid_request');
  // The token (2 s) expires: the connection is terminated with 4401.
  const closed = await ws.closed;
  t.equal(closed.code, 4401, 'token expiry closes with 4401');
  t.match(closed.reason, /expired/);
});

t.test('seed 003: query token, first-message auth, text ping/pong, plain text and binary to the app, ticket, cookie', async (t) => {
  const { hub, url } = await startHub({ limits: { authDeadline: 300 } });
  t.teardown(() => hub.close());
  const texts: string[] = [];
  const binaries: number[] = [];
  hub.on('text', (client, text) => {
    texts.push(text);
    client.connection.send('echo: ' + text);
  });
  hub.on('binary', (_client, data) => {
    binaries.push(data.length);
  });
  // Query token.
  const q = record(new WebSocket(`${url}?token=${token('u1')}`));
  await q.opened;
  q.ws.send('Hello server');
  q.ws.send(new Uint8Array([0x01, 0x02, 0x03]));
  await q.ws.send('ping');
  await sleep(100);
  t.ok(q.texts.includes('pong'), 'text ping → text pong');
  t.ok(q.texts.includes('echo: Hello server'), 'plain text handed to the application');
  t.same(texts, ['Hello server']);
  t.same(binaries, [3], 'binary handed to the application');
  // First-message authentication, as the document's client does it.
  const ws = new WebSocket(url);
  const first = record(ws);
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: 'auth', token: token('u2') }));
  };
  t.same(await first.next((m) => m.type === 'auth_ok'), { type: 'auth_ok' });
  // No auth within the deadline → 4401.
  const idle = await open(url);
  t.equal((await idle.closed).code, 4401, 'no auth message within the deadline → 4401');
  // Bad first-message token → 4401.
  const wrong = record(new WebSocket(url));
  await wrong.opened;
  wrong.send({ type: 'auth', token: 'garbage' });
  t.equal((await wrong.closed).code, 4401);
  // Ticket (one-time).
  const ticket = hub.issueTicket({ user: 'u3' });
  const tk = await open(`${url}?ticket=${ticket}`);
  tk.send({ type: 'ping', data: {}, request_id: 7 });
  t.equal((await tk.next((m) => m.type === 'pong')).request_id, 7, 'ticket accepted');
  const replay = record(new WebSocket(`${url}?ticket=${ticket}`));
  t.equal((await replay.closed).code, 4401, 'a ticket works once');
  // Cookie.
  const ck = await open(url, undefined, { headers: { Cookie: `theme=dark; token=${token('u4')}` } });
  ck.send({ type: 'ping', data: {} });
  await ck.next((m) => m.type === 'pong');
  ws.close(1000, 'Normal closure');
  for (const r of [q, tk, ck]) r.ws.close();
  t.equal((await first.closed).code, 1000);
});
