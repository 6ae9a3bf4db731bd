/**
 * A ws chat app with only its import swapped: test/fixtures/ws-chat/app.ts is written against `ws`; it runs here as
 * it is, and as a copy whose `from 'ws'` is the one line changed (to wsengine/ws). Every check passes on both:
 * `{ server, path }`, async `verifyClient`, `handleProtocols`, `req.socket.remoteAddress`, a broadcast over
 * `clients`, close codes and reasons (Buffers), `maxPayload`, the ws-style client, and `close(cb)` at shutdown.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import t from 'tap';
import { next, WAIT } from './helpers/ws-compat.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
type App = typeof import('./fixtures/ws-chat/app.js');

/** The app as written (on ws), and the copy with its import swapped. */
async function load(variant: 'ws' | 'wsengine/ws'): Promise<App> {
  if (variant === 'ws') return import('./fixtures/ws-chat/app.js');
  const source = readFileSync(join(root, 'test/fixtures/ws-chat/app.ts'), 'utf8');
  const swapped = source.replace("from 'ws';", `from '${pathToFileURL(join(root, 'lib/ws/index.ts')).href}';`);
  if (swapped === source || swapped.split('\n').filter((line, i) => line !== source.split('\n')[i]).length !== 1) {
    throw new Error('the swap must change exactly one line');
  }
  const dir = mkdtempSync(join(tmpdir(), 'wsengine-chat-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'app.ts'), swapped);
  return import(pathToFileURL(join(dir, 'app.ts')).href) as Promise<App>;
}

for (const variant of ['ws', 'wsengine/ws'] as const) {
  t.test(`the chat app on ${variant}`, async (t) => {
    const { startChat, join: joinChat } = await load(variant);
    const chat = await startChat();
    let stopped = false;
    t.teardown(() => (stopped ? undefined : chat.stop()));
    const base = `http://127.0.0.1:${chat.port}`;

    t.equal(await (await fetch(`${base}/`)).text(), 'chat home', '{ server }: the page is still served');

    const intruder = joinChat(chat.port, 'mallory', 'wrong');
    intruder.ws.on('error', () => {});
    const [, refused] = await next<[unknown, IncomingMessage]>(intruder.ws, 'unexpected-response');
    t.equal(refused.statusCode, 401, 'verifyClient refuses a bad token');
    refused.resume();
    intruder.ws.terminate();

    const alice = joinChat(chat.port, 'alice');
    await next(alice.ws, 'open');
    t.equal(alice.ws.protocol, 'chat.v1', 'handleProtocols chose the subprotocol');
    const bob = joinChat(chat.port, 'bob');
    await next(bob.ws, 'open');
    const deadline = Date.now() + WAIT;
    while ((alice.said.length < 2 || bob.said.length < 1) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    t.match(alice.said[0], { type: 'welcome', name: 'alice', protocol: 'chat.v1' });
    t.match(String(alice.said[0].ip), /127\.0\.0\.1/, 'req.socket.remoteAddress');
    t.same(alice.said[1], { type: 'joined', name: 'bob' }, 'broadcast over wss.clients');

    const heard = next<[Buffer]>(bob.ws, 'message');
    alice.ws.send(JSON.stringify({ text: 'hi bob' }));
    t.same(JSON.parse((await heard)[0].toString()), { type: 'said', name: 'alice', text: 'hi bob' });

    const bobClosed = next<[number, Buffer]>(bob.ws, 'close');
    bob.ws.send(Buffer.from([1, 2, 3]));
    const [code, reason] = await bobClosed;
    t.equal(code, 1003, 'a binary message closes with 1003');
    t.ok(Buffer.isBuffer(reason) && reason.toString() === 'text only', 'the reason, a Buffer');

    const carol = joinChat(chat.port, 'carol');
    await next(carol.ws, 'open');
    carol.ws.on('error', () => {});
    const carolClosed = next<[number]>(carol.ws, 'close');
    carol.ws.send(JSON.stringify({ text: 'x'.repeat(70 * 1024) }));
    t.equal((await carolClosed)[0], 1009, 'maxPayload: 1009');

    const wrongPath = new (alice.ws.constructor as typeof import('ws').WebSocket)(`ws://127.0.0.1:${chat.port}/elsewhere?token=secret`, 'chat.v1');
    wrongPath.on('error', () => {});
    const [, other] = await next<[unknown, IncomingMessage]>(wrongPath, 'unexpected-response');
    t.equal(other.statusCode, 400, 'path: other paths are not handled');
    other.resume();
    wrongPath.terminate();

    const aliceClosed = next<[number, Buffer]>(alice.ws, 'close');
    await chat.stop();
    stopped = true;
    const [aliceCode, aliceReason] = await aliceClosed;
    t.same([aliceCode, aliceReason.toString()], [1001, 'server going down'], 'shutdown: close(cb) after closing the clients');
  });
}
