/**
 * Interop with the `ws` package, a peer written elsewhere: our server against the `ws` client, our client
 * (`connect`) and our WHATWG `WebSocket` against a `ws` WebSocketServer.
 */
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { WebSocket as WsClient, WebSocketServer as WsServer } from 'ws';
import { type CloseEvent, connect, type ServerOptions, WebSocket, type WebSocketConnection } from '../lib/index.js';
import { type Accepted, type Teardown, bytes, Inbox, multibyteText, type Peer, type ServerFixture, startServer, TEXTS, WAIT, watch, withTimeout } from './interop/util.js';

const MiB = 1024 * 1024;

/** An ASCII-only label for a test message: TAP output must not carry U+2028 or a BOM. */
function label(text: string): string {
  return JSON.stringify(text).replace(/[^\x20-\x7e]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}
const UTF8_REASON = 'ünïcödé ✓ 日本 🎉';

// ───────────────────────────── our server ↔ ws client ─────────────────────────────

interface ServerPair {
  fixture: ServerFixture;
  ws: WsClient;
  client: Peer;
  server: Accepted;
}

/** Our server, a `ws` client connected to it, both watched; everything closed at teardown. */
async function ourServerWsClient(
  t: Teardown,
  options: { protocols?: string[]; server?: ServerOptions; path?: string } = {},
): Promise<ServerPair> {
  const fixture = await startServer(options.server);
  const ws = new WsClient(`${fixture.base}${options.path ?? '/'}`, options.protocols ?? [], { maxPayload: 64 * MiB });
  const client = watch(ws, 'ws client');
  t.teardown(async () => {
    if (ws.readyState !== WsClient.CLOSED) ws.terminate();
    await fixture.close();
  });
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    }),
    WAIT,
    'ws client open',
  );
  const server = await fixture.accepted.next();
  return { fixture, ws, client, server };
}

/** Sends with the ws client and waits for the send callback. */
function wsSend(ws: WsClient, data: string | Buffer, options: { binary?: boolean; fin?: boolean } = {}): Promise<void> {
  return withTimeout(
    new Promise<void>((resolve, reject) => ws.send(data, options, (error) => (error ? reject(error) : resolve()))),
    WAIT,
    'ws send callback',
  );
}

t.test('our server ↔ ws client', async (t) => {
  t.test('subprotocol: the server selects among those offered', async (t) => {
    const seen: string[][] = [];
    const { ws, server } = await ourServerWsClient(t, {
      protocols: ['chat.v2', 'chat.v1'],
      server: {
        selectProtocol: (offered) => {
          seen.push([...offered]);
          return offered.includes('chat.v1') ? 'chat.v1' : undefined;
        },
      },
    });
    t.same(seen, [['chat.v2', 'chat.v1']], 'selectProtocol saw the offer in the client order');
    t.same(server.request.protocols, ['chat.v2', 'chat.v1']);
    t.equal(server.connection.protocol, 'chat.v1', 'server side protocol');
    t.equal(ws.protocol, 'chat.v1', 'ws client sees the selected protocol');
  });

  t.test('subprotocol: none when none offered', async (t) => {
    let called = false;
    const { ws, server } = await ourServerWsClient(t, {
      server: {
        selectProtocol: () => {
          called = true;
          return 'chat.v1';
        },
      },
    });
    t.equal(called, false, 'selectProtocol not consulted without an offer');
    t.equal(server.request.header('sec-websocket-protocol'), undefined);
    t.equal(server.connection.protocol, '');
    t.equal(ws.protocol, '');
  });

  t.test('the ws client offer of permessage-deflate is declined and messages still flow', async (t) => {
    const { ws, server, client } = await ourServerWsClient(t);
    t.match(server.request.header('sec-websocket-extensions') ?? '', /permessage-deflate/, 'ws offered deflate');
    t.equal(ws.extensions, '', 'nothing negotiated');
    server.connection.send('x'.repeat(4096));
    const m = await client.messages.next();
    t.equal(m.data.toString(), 'x'.repeat(4096));
  });

  t.test('text, including multibyte and emoji, both directions', async (t) => {
    const { ws, server, client } = await ourServerWsClient(t);
    for (const text of TEXTS) server.connection.send(text);
    for (const text of TEXTS) {
      const m = await client.messages.next();
      t.equal(m.isBinary, false);
      t.equal(m.data.toString('utf8'), text, `server → ws: ${label(text)}`);
    }
    for (const text of TEXTS) ws.send(text);
    for (const text of TEXTS) {
      const m = await server.peer.messages.next();
      t.equal(m.isBinary, false);
      t.equal(m.data.toString('utf8'), text, `ws → server: ${label(text)}`);
    }
  });

  t.test('binary both directions, from Buffers, views and ArrayBuffers', async (t) => {
    const { ws, server, client } = await ourServerWsClient(t);
    const a = bytes(1000);
    const backing = bytes(300);
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 17, 200);
    const ab = new Uint8Array(bytes(125)).buffer;
    server.connection.send(a);
    server.connection.send(view);
    server.connection.send(ab);
    server.connection.send(new Uint8Array(Buffer.from([0, 255, 0x88, 0x0a])), { binary: true });
    const expected = [a, Buffer.from(view), Buffer.from(ab), Buffer.from([0, 255, 0x88, 0x0a])];
    for (const [i, e] of expected.entries()) {
      const m = await client.messages.next();
      t.equal(m.isBinary, true, `message ${i} is binary`);
      t.ok(m.data.equals(e), `server → ws binary ${i} (${e.length} bytes)`);
    }
    for (const e of expected) ws.send(e);
    for (const [i, e] of expected.entries()) {
      const m = await server.peer.messages.next();
      t.equal(m.isBinary, true);
      t.ok(m.data.equals(e), `ws → server binary ${i}`);
    }
  });

  t.test('empty messages, text and binary, both directions', async (t) => {
    const { ws, server, client } = await ourServerWsClient(t);
    server.connection.send('');
    server.connection.send(Buffer.alloc(0));
    let m = await client.messages.next();
    t.same([m.isBinary, m.data.length], [false, 0], 'empty text to ws');
    m = await client.messages.next();
    t.same([m.isBinary, m.data.length], [true, 0], 'empty binary to ws');
    ws.send('');
    ws.send(Buffer.alloc(0));
    m = await server.peer.messages.next();
    t.same([m.isBinary, m.data.length], [false, 0], 'empty text from ws');
    m = await server.peer.messages.next();
    t.same([m.isBinary, m.data.length], [true, 0], 'empty binary from ws');
  });

  t.test('large messages: 1 MiB and 16 MiB binary, 100 KB text', async (t) => {
    const { ws, server, client } = await ourServerWsClient(t);
    const one = bytes(MiB);
    const sixteen = bytes(16 * MiB);
    const text = multibyteText(100 * 1024);
    await server.connection.sendAsync(one);
    await server.connection.sendAsync(sixteen);
    await server.connection.sendAsync(text);
    let m = await client.messages.next(30_000);
    t.ok(m.isBinary && m.data.equals(one), 'server → ws 1 MiB');
    m = await client.messages.next(30_000);
    t.ok(m.isBinary && m.data.equals(sixteen), 'server → ws 16 MiB');
    m = await client.messages.next(30_000);
    t.equal(m.isBinary, false);
    t.ok(m.data.toString('utf8') === text, `server → ws ${Buffer.byteLength(text)} bytes of text`);
    await wsSend(ws, one);
    await wsSend(ws, sixteen);
    await wsSend(ws, text);
    m = await server.peer.messages.next(30_000);
    t.ok(m.isBinary && m.data.equals(one), 'ws → server 1 MiB');
    m = await server.peer.messages.next(30_000);
    t.ok(m.isBinary && m.data.equals(sixteen), 'ws → server 16 MiB');
    m = await server.peer.messages.next(30_000);
    t.ok(!m.isBinary && m.data.toString('utf8') === text, 'ws → server 100 KB text');
  });

  t.test('fragmented send from our server (sendFragment)', async (t) => {
    const { server, client } = await ourServerWsClient(t);
    const c = server.connection;
    // Text whose fragments split multibyte characters: 'é' (2 bytes) and '🎉' (4 bytes) across frame boundaries.
    const text = Buffer.from('Hé🎉llo, wörld');
    c.sendFragment(text.subarray(0, 2), false, { binary: false });
    c.ping('between fragments');
    c.sendFragment(text.subarray(2, 5), false);
    c.sendFragment(text.subarray(5, 9), false);
    c.sendFragment(text.subarray(9), true);
    let m = await client.messages.next();
    t.equal(m.isBinary, false, 'fragmented text arrives as text');
    t.equal(m.data.toString('utf8'), 'Hé🎉llo, wörld');
    t.equal((await client.pings.next()).toString(), 'between fragments', 'ping between fragments delivered');
    // Binary in three 64 KiB parts and an empty final fragment.
    const parts = [bytes(65536), bytes(65536), bytes(65536)];
    c.sendFragment(parts[0], false);
    c.sendFragment(parts[1], false);
    c.sendFragment(parts[2], false);
    c.sendFragment(Buffer.alloc(0), true);
    m = await client.messages.next();
    t.equal(m.isBinary, true);
    t.ok(m.data.equals(Buffer.concat(parts)), 'fragmented binary reassembled');
    // String fragments.
    c.sendFragment('abc', false);
    c.sendFragment('déf', true);
    m = await client.messages.next();
    t.same([m.isBinary, m.data.toString()], [false, 'abcdéf']);
    // A normal message after the fragmented ones.
    c.send('after');
    t.equal((await client.messages.next()).data.toString(), 'after');
  });

  t.test('fragmented receive (ws send with fin: false)', async (t) => {
    const { ws, server } = await ourServerWsClient(t);
    const emoji = Buffer.from('x🎉y');
    await wsSend(ws, emoji.subarray(0, 3), { binary: false, fin: false });
    ws.ping('mid-message');
    await wsSend(ws, emoji.subarray(3), { binary: false, fin: true });
    let m = await server.peer.messages.next();
    t.same([m.isBinary, m.data.toString('utf8')], [false, 'x🎉y'], 'text split inside a 4-byte character');
    t.equal((await server.peer.pings.next()).toString(), 'mid-message', 'ping between fragments');
    const parts = [bytes(10), bytes(70000), bytes(1)];
    await wsSend(ws, parts[0], { binary: true, fin: false });
    await wsSend(ws, parts[1], { binary: true, fin: false });
    await wsSend(ws, parts[2], { binary: true, fin: true });
    m = await server.peer.messages.next();
    t.equal(m.isBinary, true);
    t.ok(m.data.equals(Buffer.concat(parts)), 'binary fragments reassembled');
    await wsSend(ws, 'one ', { fin: false });
    await wsSend(ws, 'two ', { fin: false });
    await wsSend(ws, '', { fin: false });
    await wsSend(ws, 'three', { fin: true });
    m = await server.peer.messages.next();
    t.same([m.isBinary, m.data.toString()], [false, 'one two three'], 'text with an empty fragment');
  });

  t.test('ping/pong with payloads, both directions', async (t) => {
    const { ws, server, client } = await ourServerWsClient(t);
    const max = bytes(125);
    for (const payload of ['from-server ✓', '', max]) {
      server.connection.ping(payload);
      const expected = Buffer.from(payload);
      t.ok((await client.pings.next()).equals(expected), `ws saw our ping (${expected.length} bytes)`);
      t.ok((await server.peer.pongs.next()).equals(expected), `ws answered with a pong echoing the payload (${expected.length} bytes)`);
    }
    for (const payload of ['from-ws 🎉', '', max]) {
      ws.ping(payload);
      const expected = Buffer.from(payload);
      t.ok((await server.peer.pings.next()).equals(expected), `server saw the ws ping (${expected.length} bytes)`);
      t.ok((await client.pongs.next()).equals(expected), `we answered the ws ping with its payload (${expected.length} bytes)`);
    }
  });

  for (const [code, reason] of [
    [1000, 'normal'],
    [1001, 'going away'],
    [4000, UTF8_REASON],
  ] as const) {
    t.test(`server-initiated close ${code}`, async (t) => {
      const { ws, server, client } = await ourServerWsClient(t);
      server.connection.close(code, reason);
      const atClient = await client.waitClosed();
      t.same(atClient, { code, reason }, 'ws client got the code and UTF-8 reason');
      const atServer = await server.peer.waitClosed();
      t.equal(atServer.code, code, 'the ws echo carries the code back');
      t.equal(ws.readyState, WsClient.CLOSED);
      t.equal(server.connection.readyState, 3);
    });

    t.test(`client-initiated close ${code}`, async (t) => {
      const { ws, server, client } = await ourServerWsClient(t);
      ws.close(code, reason);
      const atServer = await server.peer.waitClosed();
      t.same(atServer, { code, reason }, 'server got the code and UTF-8 reason');
      const atClient = await client.waitClosed();
      t.equal(atClient.code, code, 'our echo carries the code back');
      t.equal(ws.readyState, WsClient.CLOSED);
    });
  }

  t.test('close without a code is reported as 1005 both ways', async (t) => {
    const { ws, server, client } = await ourServerWsClient(t);
    ws.close();
    t.same(await server.peer.waitClosed(), { code: 1005, reason: '' });
    t.equal((await client.waitClosed()).code, 1005);
  });

  t.test('server shutdown sends 1001 with its reason to the ws client', async (t) => {
    const { fixture, client, server } = await ourServerWsClient(t);
    await withTimeout(fixture.server.close({ code: 1001, reason: 'server shutting down', timeout: 3000 }), WAIT, 'server.close');
    t.same(await client.waitClosed(), { code: 1001, reason: 'server shutting down' });
    t.equal((await server.peer.waitClosed()).code, 1001);
    t.equal(fixture.server.clients.size, 0);
  });
});

// ───────────────────────────── our client ↔ ws server ─────────────────────────────

interface WsAccepted {
  ws: WsClient;
  request: IncomingMessage;
  peer: Peer;
}

interface WsServerFixture {
  wss: WsServer;
  base: string;
  accepted: Inbox<WsAccepted>;
}

async function startWsServer(t: Teardown, options: ConstructorParameters<typeof WsServer>[0] = {}): Promise<WsServerFixture> {
  const wss = new WsServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * MiB, ...options });
  const accepted = new Inbox<WsAccepted>('ws server connection');
  wss.on('connection', (ws, request) => accepted.push({ ws, request, peer: watch(ws, 'ws server') }));
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      wss.once('listening', resolve);
      wss.once('error', reject);
    }),
    WAIT,
    'ws server listening',
  );
  t.teardown(
    () =>
      withTimeout(
        new Promise<void>((resolve) => {
          for (const ws of wss.clients) ws.terminate();
          wss.close(() => resolve());
        }),
        WAIT,
        'ws server close',
      ),
  );
  const { port } = wss.address() as AddressInfo;
  return { wss, base: `ws://127.0.0.1:${port}`, accepted };
}

interface ClientPair {
  wsFixture: WsServerFixture;
  connection: WebSocketConnection;
  client: Peer;
  server: WsAccepted;
}

async function ourClientWsServer(t: Teardown, options: { protocols?: string[]; wss?: ConstructorParameters<typeof WsServer>[0] } = {}): Promise<ClientPair> {
  const wsFixture = await startWsServer(t, options.wss);
  const connection = await withTimeout(connect(`${wsFixture.base}/`, { protocols: options.protocols, maxMessageSize: 64 * MiB }), WAIT, 'connect');
  const client = watch(connection, 'our client');
  t.teardown(() => {
    if (connection.readyState !== 3) connection.terminate();
  });
  const server = await wsFixture.accepted.next();
  return { wsFixture, connection, client, server };
}

t.test('our client ↔ ws server', async (t) => {
  t.test('subprotocol: the ws server selects among those offered', async (t) => {
    const offers: string[][] = [];
    const { connection, server } = await ourClientWsServer(t, {
      protocols: ['chat.v2', 'chat.v1'],
      wss: {
        handleProtocols: (protocols: Set<string>) => {
          offers.push([...protocols]);
          return protocols.has('chat.v1') ? 'chat.v1' : false;
        },
      },
    });
    t.same(offers, [['chat.v2', 'chat.v1']], 'ws parsed our offer in order');
    t.equal(server.request.headers['sec-websocket-protocol'], 'chat.v2, chat.v1');
    t.equal(server.ws.protocol, 'chat.v1');
    t.equal(connection.protocol, 'chat.v1', 'our client reports the selected protocol');
  });

  t.test('subprotocol: none when none offered', async (t) => {
    const { connection, server } = await ourClientWsServer(t, { wss: { handleProtocols: () => 'never' } });
    t.equal(server.request.headers['sec-websocket-protocol'], undefined);
    t.equal(server.ws.protocol, '');
    t.equal(connection.protocol, '');
  });

  t.test('text, including multibyte and emoji, both directions', async (t) => {
    const { connection, server, client } = await ourClientWsServer(t);
    for (const text of TEXTS) connection.send(text);
    for (const text of TEXTS) {
      const m = await server.peer.messages.next();
      t.same([m.isBinary, m.data.toString('utf8')], [false, text], `client → ws: ${label(text)}`);
    }
    for (const text of TEXTS) server.ws.send(text);
    for (const text of TEXTS) {
      const m = await client.messages.next();
      t.same([m.isBinary, m.data.toString('utf8')], [false, text], `ws → client: ${label(text)}`);
    }
  });

  t.test('binary and empty messages both directions', async (t) => {
    const { connection, server, client } = await ourClientWsServer(t);
    const payloads = [bytes(1), bytes(125), bytes(126), bytes(65535), bytes(65536), Buffer.alloc(0)];
    for (const p of payloads) connection.send(p);
    connection.send('');
    for (const p of payloads) {
      const m = await server.peer.messages.next();
      t.ok(m.isBinary && m.data.equals(p), `client → ws ${p.length} bytes (masked frames unmasked correctly)`);
    }
    let m = await server.peer.messages.next();
    t.same([m.isBinary, m.data.length], [false, 0], 'empty text to ws');
    for (const p of payloads) server.ws.send(p, { binary: true });
    server.ws.send('');
    for (const p of payloads) {
      m = await client.messages.next();
      t.ok(m.isBinary && m.data.equals(p), `ws → client ${p.length} bytes`);
    }
    m = await client.messages.next();
    t.same([m.isBinary, m.data.length], [false, 0], 'empty text from ws');
  });

  t.test('large messages: 1 MiB and 16 MiB binary, 100 KB text', async (t) => {
    const { connection, server, client } = await ourClientWsServer(t);
    const one = bytes(MiB);
    const sixteen = bytes(16 * MiB);
    const text = multibyteText(100 * 1024);
    await connection.sendAsync(one);
    await connection.sendAsync(sixteen);
    await connection.sendAsync(text);
    let m = await server.peer.messages.next(30_000);
    t.ok(m.isBinary && m.data.equals(one), 'client → ws 1 MiB');
    m = await server.peer.messages.next(30_000);
    t.ok(m.isBinary && m.data.equals(sixteen), 'client → ws 16 MiB');
    m = await server.peer.messages.next(30_000);
    t.ok(!m.isBinary && m.data.toString('utf8') === text, 'client → ws 100 KB text');
    await wsSend(server.ws, one);
    await wsSend(server.ws, sixteen);
    await wsSend(server.ws, text);
    m = await client.messages.next(30_000);
    t.ok(m.isBinary && m.data.equals(one), 'ws → client 1 MiB');
    m = await client.messages.next(30_000);
    t.ok(m.isBinary && m.data.equals(sixteen), 'ws → client 16 MiB');
    m = await client.messages.next(30_000);
    t.ok(!m.isBinary && m.data.toString('utf8') === text, 'ws → client 100 KB text');
  });

  t.test('fragmented send from our client (sendFragment)', async (t) => {
    const { connection, server } = await ourClientWsServer(t);
    const text = Buffer.from('ab🎉cd');
    connection.sendFragment(text.subarray(0, 4), false, { binary: false });
    connection.ping('between');
    connection.sendFragment(text.subarray(4), true);
    let m = await server.peer.messages.next();
    t.same([m.isBinary, m.data.toString('utf8')], [false, 'ab🎉cd']);
    t.equal((await server.peer.pings.next()).toString(), 'between');
    const parts = [bytes(200), bytes(70000)];
    connection.sendFragment(parts[0], false);
    connection.sendFragment(parts[1], true);
    m = await server.peer.messages.next();
    t.ok(m.isBinary && m.data.equals(Buffer.concat(parts)), 'binary fragments reassembled by ws');
  });

  t.test('fragmented receive (ws server send with fin: false)', async (t) => {
    const { server, client } = await ourClientWsServer(t);
    const text = Buffer.from('日本🎉');
    await wsSend(server.ws, text.subarray(0, 4), { binary: false, fin: false });
    server.ws.ping('mid');
    await wsSend(server.ws, text.subarray(4, 8), { binary: false, fin: false });
    await wsSend(server.ws, text.subarray(8), { binary: false, fin: true });
    let m = await client.messages.next();
    t.same([m.isBinary, m.data.toString('utf8')], [false, '日本🎉']);
    t.equal((await client.pings.next()).toString(), 'mid');
    const parts = [bytes(65536), bytes(3)];
    await wsSend(server.ws, parts[0], { binary: true, fin: false });
    await wsSend(server.ws, parts[1], { binary: true, fin: true });
    m = await client.messages.next();
    t.ok(m.isBinary && m.data.equals(Buffer.concat(parts)));
  });

  t.test('ping/pong with payloads, both directions', async (t) => {
    const { connection, server, client } = await ourClientWsServer(t);
    for (const payload of ['client ping ✓', '', bytes(125)]) {
      const expected = Buffer.from(payload);
      connection.ping(payload);
      t.ok((await server.peer.pings.next()).equals(expected), `ws server saw our ping (${expected.length} bytes)`);
      t.ok((await client.pongs.next()).equals(expected), `ws server ponged the payload back (${expected.length} bytes)`);
    }
    for (const payload of ['server ping 🎉', '', bytes(125)]) {
      const expected = Buffer.from(payload);
      server.ws.ping(payload);
      t.ok((await client.pings.next()).equals(expected), `we saw the ws ping (${expected.length} bytes)`);
      t.ok((await server.peer.pongs.next()).equals(expected), `our client ponged the payload back (${expected.length} bytes)`);
    }
  });

  for (const [code, reason] of [
    [1000, 'normal'],
    [1001, 'going away'],
    [4000, UTF8_REASON],
  ] as const) {
    t.test(`client-initiated close ${code}`, async (t) => {
      const { connection, server, client } = await ourClientWsServer(t);
      connection.close(code, reason);
      t.same(await server.peer.waitClosed(), { code, reason }, 'ws server got the code and UTF-8 reason');
      t.equal((await client.waitClosed()).code, code, 'the ws echo carries the code back');
      t.equal(connection.readyState, 3);
    });

    t.test(`server-initiated close ${code}`, async (t) => {
      const { connection, server, client } = await ourClientWsServer(t);
      server.ws.close(code, reason);
      t.same(await client.waitClosed(), { code, reason }, 'our client got the code and UTF-8 reason');
      t.equal((await server.peer.waitClosed()).code, code, 'our echo carries the code back');
      t.equal(connection.readyState, 3);
    });
  }
});

// ───────────────────────────── our WHATWG WebSocket ↔ ws server ─────────────────────────────

function event<E extends Event>(target: EventTarget, type: string, label = type): Promise<E> {
  return withTimeout(new Promise<E>((resolve) => target.addEventListener(type, (e) => resolve(e as E), { once: true })), WAIT, `WebSocket ${label}`);
}

t.test('our WebSocket (WHATWG) ↔ ws server', async (t) => {
  t.test('onopen / onmessage / onclose, protocol and readyState', async (t) => {
    const { base, accepted } = await startWsServer(t, { handleProtocols: (p: Set<string>) => (p.has('chat.v1') ? 'chat.v1' : false) });
    const socket = new WebSocket(`${base}/path?x=1`, ['chat.v1', 'other']);
    t.teardown(() => socket.close());
    t.equal(socket.readyState, WebSocket.CONNECTING);
    const events: string[] = [];
    const opened = new Promise<void>((resolve) => {
      socket.onopen = () => {
        events.push('open');
        resolve();
      };
    });
    const messages = new Inbox<MessageEvent>('WebSocket message');
    socket.onmessage = (e) => messages.push(e);
    const closed = new Promise<CloseEvent>((resolve) => {
      socket.onclose = (e) => resolve(e as CloseEvent);
    });
    await withTimeout(opened, WAIT, 'onopen');
    const server = await accepted.next();
    t.equal(server.request.url, '/path?x=1');
    t.equal(socket.readyState, WebSocket.OPEN);
    t.equal(socket.protocol, 'chat.v1');
    socket.send('héllo 🎉');
    const got = await server.peer.messages.next();
    t.same([got.isBinary, got.data.toString()], [false, 'héllo 🎉']);
    server.ws.send('reply ✓');
    const m = await messages.next();
    t.equal(m.data, 'reply ✓', 'text arrives as a string');
    t.equal(m.origin, base);
    server.ws.close(1000, 'done');
    const c = await withTimeout(closed, WAIT, 'onclose');
    t.same([c.code, c.reason, c.wasClean], [1000, 'done', true]);
    t.equal(socket.readyState, WebSocket.CLOSED);
    t.same(events, ['open']);
  });

  t.test("binaryType 'arraybuffer'", async (t) => {
    const { base, accepted } = await startWsServer(t);
    const socket = new WebSocket(`${base}/`);
    t.teardown(() => socket.close());
    socket.binaryType = 'arraybuffer';
    await event(socket, 'open');
    const server = await accepted.next();
    const payload = bytes(4096);
    const got = event<MessageEvent>(socket, 'message');
    server.ws.send(payload);
    const m = await got;
    t.ok(m.data instanceof ArrayBuffer, 'an ArrayBuffer');
    t.ok(Buffer.from(m.data as ArrayBuffer).equals(payload), 'with the bytes sent');
    t.equal((m.data as ArrayBuffer).byteLength, 4096, 'exactly the message, not a pooled slab');
    socket.send(new Uint8Array(payload).buffer);
    const back = await server.peer.messages.next();
    t.ok(back.isBinary && back.data.equals(payload), 'ArrayBuffer sent as binary');
  });

  t.test("binaryType 'blob' (the default)", async (t) => {
    const { base, accepted } = await startWsServer(t);
    const socket = new WebSocket(`${base}/`);
    t.teardown(() => socket.close());
    t.equal(socket.binaryType, 'blob');
    await event(socket, 'open');
    const server = await accepted.next();
    const payload = bytes(1000);
    const got = event<MessageEvent>(socket, 'message');
    server.ws.send(payload);
    const m = await got;
    t.ok(m.data instanceof Blob, 'a Blob');
    const blob = m.data as Blob;
    t.equal(blob.size, 1000);
    t.ok(Buffer.from(await blob.arrayBuffer()).equals(payload), 'with the bytes sent');
    socket.send(new Blob([payload]));
    const back = await server.peer.messages.next();
    t.ok(back.isBinary && back.data.equals(payload), 'a Blob sent as binary');
  });

  t.test('close(4000, reason) from our WebSocket', async (t) => {
    const { base, accepted } = await startWsServer(t);
    const socket = new WebSocket(`${base}/`);
    t.teardown(() => socket.close());
    await event(socket, 'open');
    const server = await accepted.next();
    const closed = event<CloseEvent>(socket, 'close');
    socket.close(4000, UTF8_REASON);
    t.equal(socket.readyState, WebSocket.CLOSING);
    t.same(await server.peer.waitClosed(), { code: 4000, reason: UTF8_REASON });
    const c = await closed;
    t.same([c.code, c.wasClean], [4000, true]);
  });

  t.test('ws server closes with 1001', async (t) => {
    const { base, accepted } = await startWsServer(t);
    const socket = new WebSocket(`${base}/`);
    t.teardown(() => socket.close());
    await event(socket, 'open');
    const server = await accepted.next();
    const closed = event<CloseEvent>(socket, 'close');
    server.ws.close(1001, 'going away');
    const c = await closed;
    t.same([c.code, c.reason, c.wasClean], [1001, 'going away', true]);
  });
});
