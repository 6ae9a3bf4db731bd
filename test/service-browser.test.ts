/**
 * Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) against the service started as a user
 * starts it (the bin, a real port):
 * - the seed documents' browser snippets, as written — only the service URL and the token filled in, and a
 *   recording listener added beside them;
 * - the demo page: two pages chat; the service restarts; both reconnect and nothing is lost or duplicated (and
 *   nothing is said to be); who is online; sign-in with a token alone, a refused token (controls stay disabled), a
 *   refused subscription, a pattern as a publish topic, the verified sender, reported gaps, long messages, a narrow
 *   screen, sign-out.
 * Screenshots of the demo page are saved to test-artifacts/ (git-ignored).
 */
import { accessSync, constants, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { BrowserContext, Page, WebSocketRoute } from 'playwright-core';
import { HubClient, type HubMessage } from '../lib/hub-client/index.js';
import { WebSocket } from '../lib/index.js';
import { api, ROOT, serviceArgs, startService, tokenFor, type ServiceProcess } from './helpers/service.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const inCI = Boolean(process.env.CI) && process.env.CI !== 'false' && process.env.CI !== '0';
let chromiumFound = true;
try {
  accessSync(CHROMIUM, constants.X_OK);
} catch {
  chromiumFound = false;
}

if (!chromiumFound && inCI) {
  t.fail(`${CHROMIUM} is missing: CI must install chromium (apt-get install -y chromium) before the tests`);
} else if (!chromiumFound) {
  t.test('service ↔ headless Chromium', { skip: `chromium is not installed at ${CHROMIUM} (apt-get install -y chromium); skipped outside CI` }, () => undefined);
} else {
  await run();
}

async function launch(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const { chromium } = await import('playwright-core');
  const profile = await mkdtemp(join(tmpdir(), 'wsengine-service-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    },
  };
}

/** A page of the service's origin with `window.__got` recording, and its console lines. */
async function servicePage(context: BrowserContext, service: ServiceProcess): Promise<{ page: Page; consoleLines: string[] }> {
  const page = await context.newPage();
  const consoleLines: string[] = [];
  page.on('console', (m) => consoleLines.push(m.text()));
  await page.goto(new URL('/health', service.url).href);
  await page.evaluate(() => {
    (globalThis as any).__got = [];
    (globalThis as any).__closes = [];
  });
  return { page, consoleLines };
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeout = 20_000): Promise<T> {
  const end = Date.now() + timeout;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const got = (page: Page): Promise<string[]> => page.evaluate(() => (globalThis as any).__got as string[]);

async function run(): Promise<void> {
  const browser = await launch();
  t.teardown(() => browser.close());

  t.test('seed 000: new WebSocket(url, ["llps.v1", "at." + token]), subscribe to tenant prod, orders.eu.#', async (t) => {
    const service = await startService(serviceArgs());
    t.teardown(() => service.stop('SIGKILL'));
    const { page } = await servicePage(browser.context, service);
    const token = tokenFor('seed000', { tenants: ['prod'] });
    // The seed's browser example, with the service's URL and a real token.
    await page.addScriptTag({
      content: `
const token = ${JSON.stringify(token)};
const ws = new WebSocket(${JSON.stringify(service.url.replace(/^http/, 'ws'))}, [
  "llps.v1",
  "at." + token
]);

ws.onopen = () => {
  ws.send(JSON.stringify({
    action: "subscribe",
    tenant: "prod",
    channel: "orders.eu.#"
  }));
};

ws.onmessage = (e) => { /* handle message */ };
ws.addEventListener("message", (e) => window.__got.push(e.data));
window.__ws = ws;
`,
    });
    await until('the subscription ack', async () => (await got(page)).length > 0);
    t.equal(await page.evaluate(() => (globalThis as any).__ws.protocol), 'llps.v1', 'the hub echoed llps.v1, not the token');
    const ack = JSON.parse((await got(page))[0]);
    t.equal(ack.action, 'subscribed', `answered in the seed's own shape: ${JSON.stringify(ack)}`);
    t.equal(ack.channel, 'orders.eu.#');
    const published = await api(service, 'POST', '/api/publish', { tenant: 'prod', topic: 'orders.eu.created', type: 'order.created', data: { id: 1 } });
    t.equal(published.status, 200);
    await api(service, 'POST', '/api/publish', { tenant: 'staging', topic: 'orders.eu.created', type: 'order.created', data: { id: 2 } });
    await api(service, 'POST', '/api/publish', { tenant: 'prod', topic: 'orders.us.created', type: 'order.created', data: { id: 3 } });
    await api(service, 'POST', '/api/publish', { tenant: 'prod', topic: 'orders.eu.paid.card', type: 'order.paid', data: { id: 4 } });
    const messages = await until('two messages', async () => {
      const m = (await got(page)).map((s) => JSON.parse(s)).filter((m) => m.action === 'message');
      return m.length >= 2 ? m : undefined;
    });
    t.same(messages.map((m: any) => [m.channel, m.payload.id]), [['orders.eu.created', 1], ['orders.eu.paid.card', 4]], 'orders.eu.# in tenant prod only');
    // Publish from the browser, in the seed's shape.
    await page.evaluate(() => (globalThis as any).__ws.send(JSON.stringify({ action: 'publish', tenant: 'prod', channel: 'orders.eu.created', payload: 'from the browser' })));
    const echo = await until('the browser publish', async () => (await got(page)).map((s) => JSON.parse(s)).find((m) => m.payload === 'from the browser'));
    t.equal(echo.channel, 'orders.eu.created');
    await page.close();
  });

  t.test('seed 001: ["bearer", jwt], ping → pong keeps it open, chat.message, 4000 → reconnect, 4401 → /login', async (t) => {
    const service = await startService(serviceArgs(['--heartbeat-interval', '300ms', '--heartbeat-timeout', '1s']));
    t.teardown(() => service.stop('SIGKILL'));
    const { page, consoleLines } = await servicePage(browser.context, service);
    const script = (jwt: string): string => `
let attempts = 0;
const jwtToken = ${JSON.stringify(jwt)};
function connect() {
// Preferred — subprotocol bearer
const ws = new WebSocket(${JSON.stringify(service.wsUrl)}, ["bearer", jwtToken]);

ws.addEventListener("open", () => {
  ws.send(JSON.stringify({ type: "subscribe", data: { topic: "chat:lobby" } }));
});

ws.addEventListener("message", (event) => {
  const envelope = JSON.parse(event.data);

  // Heartbeat — reply immediately or the server drops you in 60s
  if (envelope.type === "ping") {
    ws.send(JSON.stringify({ type: "pong", data: {} }));
    return;
  }

  // Your app
  if (envelope.type === "chat.message") {
    console.log("got", envelope.data);
  }
});

// Reconnect with exponential backoff
ws.addEventListener("close", (event) => {
  const code = event.code;
  if (code === 4401) {
    // bad/expired token → redirect to login
    window.location.href = "/login";
    return;
  }
  setTimeout(() => connect(), Math.min(30_000, 1_000 * 2 ** attempts++));
});
ws.addEventListener("message", (e) => window.__got.push(e.data));
ws.addEventListener("close", (e) => window.__closes.push(e.code));
window.__ws = ws;
}
connect();
`;
    await page.addScriptTag({ content: script(tokenFor('seed001')) });
    await until('the subscription', async () => (await got(page)).some((s) => JSON.parse(s).type === 'ack'));
    t.equal(await page.evaluate(() => (globalThis as any).__ws.protocol), 'bearer');
    // Several heartbeat timeouts pass: the snippet's pongs keep the socket open.
    await new Promise((r) => setTimeout(r, 3000));
    const pings = (await got(page)).filter((s) => JSON.parse(s).type === 'ping').length;
    t.ok(pings >= 4, `app-level pings arrived (${pings}) and were answered`);
    t.same(await page.evaluate(() => (globalThis as any).__closes), [], 'still open after 3 heartbeat timeouts');
    await api(service, 'POST', '/api/publish', { topic: 'chat:lobby', type: 'chat.message', data: { from: 'server', text: 'hi lobby' } });
    await until('console "got"', async () => consoleLines.some((l) => l.startsWith('got')));
    t.ok(consoleLines.some((l) => l.startsWith('got')), 'the snippet logged the chat.message');
    // 4000: the snippet reconnects after its backoff (1 s) and subscribes again.
    const disconnected = await api(service, 'POST', '/api/disconnect', { user: 'seed001' });
    t.equal(disconnected.status, 200);
    await until('the reconnect', async () => (await page.evaluate(() => (globalThis as any).__closes.length)) === 1 && (await api(service, 'GET', '/api/presence?topic=chat:lobby')).body.connections === 1);
    t.same(await page.evaluate(() => (globalThis as any).__closes), [4000]);
    await api(service, 'POST', '/api/publish', { topic: 'chat:lobby', type: 'chat.message', data: { text: 'after reconnect' } });
    await until('the second chat.message', async () => consoleLines.filter((l) => l.startsWith('got')).length >= 2);
    await page.close();
    // A bad token: 4401 before any message, and the snippet goes to /login.
    const second = await servicePage(browser.context, service);
    await second.page.addScriptTag({ content: script(`${tokenFor('seed001')}x`) });
    await second.page.waitForURL('**/login', { timeout: 10_000 });
    t.pass('4401 sent the snippet to /login');
    await second.page.close();
  });

  t.test('seed 002: ?token= client, channel subscribe, ping → pong, events, error codes, token expiry', async (t) => {
    const service = await startService(serviceArgs());
    t.teardown(() => service.stop('SIGKILL'));
    const { page } = await servicePage(browser.context, service);
    const token = tokenFor('seed002', { expiresIn: 4 });
    await page.addScriptTag({
      content: `
const ws = new WebSocket(${JSON.stringify(service.wsUrl)} + "?token=" + ${JSON.stringify(token)});
ws.onopen = () => {
  ws.send(JSON.stringify({ type: "subscribe", data: { channel: "conversation:conv-123" } }));
  ws.send(JSON.stringify({ type: "ping", data: {} }));
  ws.send(JSON.stringify({ type: "subscribe", data: {} }));
};
ws.onmessage = (event) => { window.__got.push(event.data); };
ws.onclose = (event) => { window.__closes.push(event.code); };
window.__ws = ws;
`,
    });
    const replies = await until('three replies', async () => {
      const r = (await got(page)).map((s) => JSON.parse(s));
      return r.length >= 3 ? r : undefined;
    });
    t.ok(replies.some((m: any) => m.type === 'pong'), 'ping answered with pong');
    const error = replies.find((m: any) => m.type === 'error');
    t.equal(error?.data?.code, 'invalid_request', 'a subscribe without a channel: invalid_request');
    for (const [type, data] of [
      ['notification', { message: 'New comment on your post', level: 'info' }],
      ['chat_message', { conversation_id: 'conv-123', sender_id: 'user-456', content: 'Hello there!' }],
      ['status_update', { entity_type: 'task', entity_id: 'task-789', status: 'completed' }],
    ] as const) {
      await api(service, 'POST', '/api/publish', { topic: 'conversation:conv-123', type, data });
      const m = await until(type, async () => (await got(page)).map((s) => JSON.parse(s)).find((m) => m.type === type));
      t.same(m.data, data, `${type} arrives as {"type","data"}`);
    }
    await page.evaluate(() => (globalThis as any).__ws.send(JSON.stringify({ type: 'unsubscribe', data: { channel: 'conversation:conv-123' } })));
    await until('unsubscribed', async () => (await api(service, 'GET', '/api/presence?topic=conversation:conv-123')).body.connections === 0);
    const closes = await until('the close at token expiry', async () => {
      const c = await page.evaluate(() => (globalThis as any).__closes as number[]);
      return c.length > 0 ? c : undefined;
    }, 15_000);
    t.same(closes, [4401], 'the connection is terminated when the token expires');
    await page.close();
  });

  t.test('seed 003: reconnecting, queued and heartbeat clients; first-message auth; ticket', async (t) => {
    const service = await startService(serviceArgs(['--history-size', '50']));
    let current = service;
    t.teardown(() => current.stop('SIGKILL'));
    const { page, consoleLines } = await servicePage(browser.context, service);
    const url = `${service.wsUrl}?token=${tokenFor('seed003')}`;
    await page.addScriptTag({ content: SEED003_CLASSES });
    await page.evaluate((url) => {
      const w = globalThis as any;
      const ws = new w.ReconnectingWebSocket(url, { maxRetries: 10, baseDelay: 1000, maxDelay: 30000 });
      ws.on('open', () => w.__got.push('open'));
      ws.on('message', (e: any) => w.__got.push(e.data));
      w.__rws = ws;
      const q = new w.QueuedWebSocket(url, { maxRetries: 10, baseDelay: 1000, maxDelay: 30000 });
      w.__qws = q;
      const hb = new w.HeartbeatWebSocket(url);
      // Shorter than the guide's 25 s / 35 s so the test runs in seconds; set before the socket opens.
      hb.heartbeatInterval = 300;
      hb.heartbeatTimeout = 1500;
      hb.ws.addEventListener('message', (e: any) => w.__hb = (w.__hb ?? 0) + (e.data === 'pong' ? 1 : 0));
      w.__hbws = hb;
    }, url);
    await until('the reconnecting client to open', async () => (await got(page)).includes('open'));
    await page.evaluate(() => (globalThis as any).__rws.send('hello hub'));
    await until('text pongs', async () => (await page.evaluate(() => (globalThis as any).__hb ?? 0)) >= 3);
    t.notOk(consoleLines.some((l) => l.includes('Connection appears dead')), 'the heartbeat client sees its pongs');
    t.equal(await page.evaluate(() => (globalThis as any).__hbws.ws.readyState), 1, 'the heartbeat client is open');

    // The service dies (no close frame: wasClean false) and comes back on the same port.
    await service.stop('SIGKILL');
    // The browser learns of the dead peer asynchronously; the seed's QueuedWebSocket queues only once its socket is
    // no longer OPEN, so wait for that before sending (sending earlier would go into the dead socket, by design).
    await until('the queued client to see the connection drop', async () => (await page.evaluate(() => (globalThis as any).__qws.ws.readyState)) !== 1, 15_000);
    await page.evaluate(() => (globalThis as any).__qws.send(JSON.stringify({ type: 'publish', data: { topic: 'chat.queued', type: 'chat', data: { text: 'sent while offline' } } })));
    t.equal(await page.evaluate(() => (globalThis as any).__qws.queue.length), 1, 'the queued client buffered the message');
    current = await startService(serviceArgs(['--history-size', '50'], service.port));
    await until('the reconnecting client to reopen', async () => (await got(page)).filter((m) => m === 'open').length === 2, 30_000);
    const history = await until('the queued publish', async () => {
      const h = await api(current, 'GET', '/api/history?topic=chat.queued');
      return h.body.messages?.length ? h.body.messages : undefined;
    }, 30_000);
    t.same(history.map((m: any) => m.data), [{ text: 'sent while offline' }], 'the queue was flushed once on reconnect');

    // First-message authentication and the one-time ticket.
    const ticket = (await api(current, 'POST', '/api/ticket', { user: 'seed003' })).body.ticket as string;
    // Seed 003's first-message client and ticket client, as page source (the guide's code, URL and token filled in).
    const results = (await page.evaluate(`(async () => {
      const wsUrl = ${JSON.stringify(current.wsUrl)};
      const ticket = ${JSON.stringify(ticket)};
      const getAuthToken = () => ${JSON.stringify(tokenFor('seed003'))};
      const first = await new Promise((resolve) => {
        const ws = new WebSocket(wsUrl);
        ws.onopen = () => {
          ws.send(JSON.stringify({
            type: 'auth',
            token: getAuthToken()
          }));
        };
        ws.onmessage = (e) => { resolve(e.data); ws.close(); };
        ws.onclose = (e) => resolve('closed ' + e.code);
      });
      const viaTicket = await new Promise((resolve) => {
        const ws = new WebSocket(\`\${wsUrl}?ticket=\${ticket}\`);
        ws.onopen = () => { resolve('open'); ws.close(); };
        ws.onclose = (e) => resolve('closed ' + e.code);
      });
      const reused = await new Promise((resolve) => {
        const ws = new WebSocket(\`\${wsUrl}?ticket=\${ticket}\`);
        ws.onclose = (e) => resolve('closed ' + e.code);
      });
      return { first, viaTicket, reused };
    })()`)) as { first: string; viaTicket: string; reused: string };
    t.same(JSON.parse(results.first), { type: 'auth_ok' }, 'first-message auth answered auth_ok');
    t.equal(results.viaTicket, 'open', 'the ticket opens a connection');
    t.equal(results.reused, 'closed 4401', 'a used ticket is refused');
    await page.evaluate(() => {
      const w = globalThis as any;
      w.__rws.close();
      w.__qws.close();
      w.__hbws.ws.close();
      w.__hbws.stopHeartbeat();
    });
    await page.close();
  });

  t.test('the demo page: two pages chat, one survives a service restart without losing a message', async (t) => {
    const args = serviceArgs(['--dev']);
    let service = await startService(args);
    t.teardown(() => service.stop('SIGKILL'));
    const port = service.port;
    const alice = await browser.context.newPage();
    const bob = await browser.context.newPage();
    const pageErrors: string[] = [];
    for (const p of [alice, bob]) p.on('pageerror', (e) => pageErrors.push(e.message));
    const signIn = async (page: Page, name: string): Promise<void> => {
      await page.goto(service.url);
      t.ok(await page.isDisabled('#subscribe') && await page.isDisabled('#publish'), `${name}: subscribe and publish disabled before signing in`);
      await page.fill('#name', name);
      await page.click('#signin');
      await page.waitForSelector('#state[data-state="open"]');
      await page.waitForSelector('#subscribe:not([disabled])');
      t.equal(await page.textContent('#who'), name, `${name}: the header names the user`);
      await page.click('#subscribe');
      await page.waitForSelector('#subscriptions li[data-topic="chat.#"][data-state="active"]');
    };
    await signIn(alice, 'alice');
    await signIn(bob, 'bob');
    await waitForOnline(alice, ['alice', 'bob']);
    t.pass('alice sees bob online (presence)');
    const say = async (page: Page, text: string): Promise<void> => {
      await page.fill('#text', text);
      await page.click('#publish');
    };
    await say(alice, 'hello bob');
    await waitForText(bob, 'alice: hello bob');
    await say(bob, 'hi alice');
    await waitForText(alice, 'bob: hi alice');
    const before = await lines(alice);
    t.same(before.map((l) => [l.topic, l.seq, l.text]), [['chat.lobby', '1', 'alice: hello bob'], ['chat.lobby', '2', 'bob: hi alice']], 'topic and sequence number shown');

    // Restart: SIGTERM (1001: the pages reconnect), then the same port.
    t.same(await service.stop('SIGTERM'), { code: 0, signal: null });
    await alice.waitForSelector('#state:not([data-state="open"])');
    await say(bob, 'sent while the hub was down');
    service = await startService(serviceArgs(['--dev'], port));
    // Published from the server while the pages may still be reconnecting: the resume replays it.
    await api(service, 'POST', '/api/publish', { topic: 'chat.lobby', type: 'chat', data: { from: 'server', text: 'published during the restart' } });
    await alice.waitForSelector('#state[data-state="open"]', { timeout: 30_000 });
    await waitForText(alice, 'bob: sent while the hub was down');
    await waitForText(alice, 'server: published during the restart');
    await say(alice, 'back again');
    await waitForText(bob, 'alice: back again');
    await waitForText(alice, 'alice: back again');
    await new Promise((r) => setTimeout(r, 300));
    for (const [name, page] of [['alice', alice], ['bob', bob]] as const) {
      const texts = (await lines(page)).map((l) => l.text);
      for (const text of ['alice: hello bob', 'bob: hi alice', 'bob: sent while the hub was down', 'server: published during the restart', 'alice: back again']) {
        t.equal(texts.filter((x) => x === text).length, 1, `${name} has "${text}" exactly once`);
      }
      t.equal(texts.length, 5, `${name}: nothing else, no duplicate`);
      // The hub restarted with a new history (the resume says recovered: false) but reported no gap: nothing was lost.
      const log = (await page.textContent('#log')) ?? '';
      t.match(log, 'subscribed chat.# again, nothing missing', `${name}: the resume after the restart says nothing is missing`);
      t.notMatch(log, /lost|gaps? reported/, `${name}: no loss claimed`);
      t.equal(await page.locator('#messages li.gap').count(), 0, `${name}: no gap shown`);
      await waitForOnline(page, ['alice', 'bob']);
    }
    t.same(pageErrors, [], 'no script errors on the pages');
    await alice.screenshot({ path: join(shots(), 'demo-page.png'), fullPage: true });
    t.pass(`screenshot saved to ${join('test-artifacts', 'demo-page.png')}`);
    await alice.close();
    await bob.close();
  });

  t.test('the demo page: token sign-in, refused token and subscription, patterns, verified sender, gaps, long messages, narrow screens, presence, sign-out', async (t) => {
    const service = await startService(serviceArgs(['--dev']));
    t.teardown(() => service.stop('SIGKILL'));
    const pageErrors: string[] = [];
    const open = async (): Promise<Page> => {
      const page = await browser.context.newPage();
      page.on('pageerror', (e) => pageErrors.push(e.message));
      return page;
    };
    const alice = await open();
    await alice.goto(service.url);
    await alice.fill('#name', 'alice');
    await alice.click('#signin');
    await alice.waitForSelector('#subscribe:not([disabled])');
    await alice.click('#subscribe');
    await alice.waitForSelector('#subscriptions li[data-topic="chat.#"][data-state="active"]');

    // A refused token: an error in the sign-in box, and the controls stay disabled.
    const carol = await open();
    await carol.goto(service.url);
    await carol.fill('#token', `${tokenFor('carol')}x`);
    await carol.click('#token-signin');
    await carol.waitForFunction(() => ((globalThis as any).document.querySelector('#signin-error').textContent as string).length > 0, undefined, { timeout: 20_000 });
    t.match(await carol.textContent('#signin-error'), /refused this token/, 'a refused token is reported in the sign-in box');
    await new Promise((r) => setTimeout(r, 300));
    t.ok(await carol.isDisabled('#subscribe'), 'subscribe stays disabled after a refused token');
    t.ok(await carol.isDisabled('#publish'), 'publish stays disabled after a refused token');
    t.ok(await carol.isVisible('#signin-box'), 'the sign-in box stays');
    t.notOk(await carol.isVisible('#signout'), 'nothing to sign out of');

    // A token alone (no name): signed in as the token's user.
    await carol.fill('#token', tokenFor('carol'));
    t.equal(await carol.inputValue('#name'), '', 'no name given');
    await carol.click('#token-signin');
    await carol.waitForSelector('#subscribe:not([disabled])');
    t.equal(await carol.textContent('#who'), 'carol', 'signed in with the token alone, as its user');
    t.equal(await carol.textContent('#signin-error'), '', 'the earlier error is gone');
    t.notOk(await carol.isVisible('#signin-box'), 'the sign-in box is hidden while signed in');
    await waitForOnline(alice, ['alice', 'carol']);
    t.pass('alice sees carol join');
    await waitForOnline(carol, ['alice', 'carol']);
    t.equal(await carol.textContent('#online li[data-self="true"]'), 'carol(you)', 'carol is marked as herself');

    // A refused subscription is marked refused, with the hub's reason, and is not counted as active.
    await carol.fill('#pattern', 'chat..bad');
    await carol.click('#subscribe');
    await carol.waitForSelector('#subscriptions li[data-topic="chat..bad"][data-state="refused"]');
    t.match(await carol.textContent('#subscriptions li[data-topic="chat..bad"] .status'), /^refused: /, 'marked refused');
    t.match(await carol.textContent('#subscribe-error'), /The hub refused chat\.\.bad: /, 'and explained');
    await carol.fill('#pattern', 'chat.#');
    await carol.click('#subscribe');
    await carol.waitForSelector('#subscriptions li[data-topic="chat.#"][data-state="active"]');
    t.equal(await carol.locator('#subscriptions li[data-state="active"]').count(), 1, 'one active subscription');
    await carol.click('#subscriptions li[data-topic="chat..bad"] button');
    t.equal(await carol.locator('#subscriptions li').count(), 1, 'the refused one dismissed');

    // Publishing to a pattern is refused in the page, and the text is kept; a concrete topic sends it.
    await carol.fill('#topic', 'chat.#');
    await carol.fill('#text', 'meant for the lobby');
    await carol.click('#publish');
    t.match(await carol.textContent('#publish-error'), /chat\.# is a pattern.*concrete topic, e\.g\. chat\.lobby/, 'a pattern is refused with a clear message');
    t.equal(await carol.inputValue('#text'), 'meant for the lobby', 'the message is kept');
    await carol.fill('#topic', 'chat.lobby');
    await carol.click('#publish');
    await waitForText(alice, 'carol: meant for the lobby');
    t.equal(await carol.textContent('#publish-error'), '', 'the error is cleared');
    t.equal(await carol.inputValue('#text'), '', 'sent: the box is emptied');

    // The sender: the hub's verified from.user when present, else the name inside the message, marked unverified.
    // Dave's page gets from.user added in flight (as a hub that verifies senders sends it), plus two gap reports.
    const dave = await open();
    let daveSocket: WebSocketRoute | undefined;
    await dave.routeWebSocket(/\/ws$/, (ws) => {
      daveSocket = ws;
      const server = ws.connectToServer();
      server.onMessage((message) => {
        const frame = JSON.parse(String(message));
        if (frame.topic !== undefined && frame.from === undefined && frame.data?.text === 'I am alice') frame.from = { user: 'mallory' };
        ws.send(JSON.stringify(frame));
      });
    });
    await dave.goto(service.url);
    await dave.fill('#name', 'dave');
    await dave.click('#signin');
    await dave.waitForSelector('#subscribe:not([disabled])');
    await dave.click('#subscribe');
    await dave.waitForSelector('#subscriptions li[data-topic="chat.#"][data-state="active"]');
    const mallory = new HubClient({ url: service.wsUrl, WebSocket: WebSocket as never, token: tokenFor('mallory') });
    t.teardown(() => mallory.close());
    const seen: HubMessage[] = [];
    mallory.on('message', (m) => seen.push(m));
    await mallory.connect();
    await mallory.subscribe('chat.lobby');
    await mallory.publish({ topic: 'chat.lobby', type: 'chat', data: { from: 'alice', text: 'I am alice' } });
    await until('mallory\'s own copy', async () => seen.some((m) => (m.data as { text?: string }).text === 'I am alice'));
    const hubFrom = seen.find((m) => (m.data as { text?: string }).text === 'I am alice')!.from;
    await waitForText(dave, 'mallory: I am alice');
    t.same(await senderOf(dave, 'I am alice'), { sender: 'mallory', verified: 'true', className: 'sender verified' }, 'the verified sender is shown, not the name in the message');
    await waitForText(alice, hubFrom ? 'mallory: I am alice' : 'alice: I am alice');
    t.same(
      await senderOf(alice, 'I am alice'),
      hubFrom ? { sender: hubFrom.user, verified: 'true', className: 'sender verified' } : { sender: 'alice', verified: 'false', className: 'sender unverified' },
      hubFrom ? 'this hub verifies senders: shown' : 'this hub does not name the sender: the claimed name, marked unverified',
    );
    daveSocket!.send(JSON.stringify({ type: 'gap', data: { topic: 'chat.lobby', tenant: 'default', epoch: 'e', from: 50, to: 52 } }));
    daveSocket!.send(JSON.stringify({ type: 'gap', data: { topic: 'chat.lobby', tenant: 'default', epoch: 'e', from: 7, to: Number.MAX_SAFE_INTEGER } }));
    await dave.waitForFunction(() => (globalThis as any).document.querySelectorAll('#messages li.gap').length === 2);
    t.same(await dave.$$eval('#messages li.gap', (items) => items.map((li) => li.textContent)), [
      'chat.lobby: 3 messages lost (#50–#52, no longer held by the hub)',
      'chat.lobby: messages after #6 of its earlier history may be lost (the hub lost that history)',
    ], 'a reported gap is shown where it happened');

    // Long messages wrap; nothing scrolls sideways.
    const long = `${'x'.repeat(3000)} ${'a long line with spaces '.repeat(40)}`;
    await carol.fill('#text', long);
    await carol.click('#publish');
    await waitForText(alice, `carol: ${long}`);
    for (const [name, page] of [['alice', alice], ['carol', carol]] as const) {
      await waitForText(page, `carol: ${long}`);
      const fit = await noSidewaysOverflow(page, long);
      t.ok(fit.ok, `${name}: a 3,000-character word and a long line wrap inside the message list (${JSON.stringify(fit)})`);
    }

    // A narrow screen: one column, nothing wider than the screen.
    await alice.setViewportSize({ width: 375, height: 812 });
    const narrow = await alice.evaluate(() => {
      const d = (globalThis as any).document;
      const publish = d.querySelector('#publish-form').getBoundingClientRect();
      const messages = d.querySelector('#messages').getBoundingClientRect();
      return {
        columns: (globalThis as any).getComputedStyle(d.querySelector('main')).gridTemplateColumns.split(' ').length,
        scrollWidth: d.documentElement.scrollWidth,
        publishLeft: publish.left,
        messagesLeft: messages.left,
        messagesBelow: messages.top > publish.bottom,
      };
    });
    t.equal(narrow.columns, 1, 'one column on a 375 px screen');
    t.ok(narrow.scrollWidth <= 375, `no sideways scrolling (${narrow.scrollWidth} px)`);
    t.ok(narrow.messagesBelow && Math.abs(narrow.messagesLeft - narrow.publishLeft) < 20, 'the messages are stacked below the forms');
    t.ok((await noSidewaysOverflow(alice, long)).ok, 'long messages still wrap');
    await alice.screenshot({ path: join(shots(), 'demo-page-narrow.png'), fullPage: true });
    t.pass(`screenshot saved to ${join('test-artifacts', 'demo-page-narrow.png')}`);
    await alice.setViewportSize({ width: 1280, height: 720 });

    // Sign-out: the others see carol leave; her page is back to signed out with the controls disabled.
    await waitForOnline(alice, ['alice', 'carol', 'dave']);
    await carol.click('#signout');
    await waitForOnline(alice, ['alice', 'dave']);
    t.pass('alice sees carol leave');
    t.equal(await carol.textContent('#state'), 'signed out');
    t.equal(await carol.textContent('#who'), '');
    t.ok(await carol.isDisabled('#subscribe') && await carol.isDisabled('#publish'), 'controls disabled after signing out');
    t.ok(await carol.isVisible('#signin-box'), 'the sign-in box is back');
    t.equal(await carol.locator('#subscriptions li').count(), 0, 'no subscription listed');
    t.same(pageErrors, [], 'no script errors on the pages');
    await dave.screenshot({ path: join(shots(), 'demo-page-features.png'), fullPage: true });
    t.pass(`screenshot saved to ${join('test-artifacts', 'demo-page-features.png')}`);
    for (const p of [alice, carol, dave]) await p.close();
  });
}

/** test-artifacts/ (git-ignored), created when needed. */
function shots(): string {
  const dir = join(ROOT, 'test-artifacts');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The demo page's message rows (not gap reports). */
function lines(page: Page): Promise<Array<{ topic: string; seq: string; text: string }>> {
  return page.$$eval('#messages li:not(.gap)', (items) => items.map((li) => ({ topic: (li as any).dataset.topic ?? '', seq: (li as any).dataset.seq ?? '', text: li.querySelector('.body')?.textContent ?? '' })));
}

function waitForText(page: Page, text: string): Promise<unknown> {
  return page.waitForFunction((text) => [...(globalThis as any).document.querySelectorAll('#messages .body')].some((e: any) => e.textContent === text), text, { timeout: 30_000 });
}

/** Waits until the page's "Online" list is exactly `users`. */
function waitForOnline(page: Page, users: string[]): Promise<unknown> {
  return page.waitForFunction((users) => [...(globalThis as any).document.querySelectorAll('#online li')].map((li: any) => li.dataset.user).join(',') === users.join(','), users, { timeout: 30_000 });
}

/** How the page shows the sender of the message whose text ends with `text`. */
function senderOf(page: Page, text: string): Promise<{ sender: string; verified: string; className: string }> {
  return page.$$eval('#messages li:not(.gap)', (items, text) => {
    const li = items.find((l) => (l.querySelector('.body')?.textContent ?? '').endsWith(`: ${text}`)) as any;
    return { sender: li.dataset.sender, verified: li.dataset.verified, className: li.querySelector('.sender').className };
  }, text);
}

/** Whether the message with `text` fits in the message list and the page does not scroll sideways. */
function noSidewaysOverflow(page: Page, text: string): Promise<{ ok: boolean; page: number; viewport: number; body: number; list: number; height: number }> {
  return page.$$eval('#messages li:not(.gap)', (items, text) => {
    const d = (globalThis as any).document;
    const li = items.find((l) => (l.querySelector('.body')?.textContent ?? '').endsWith(text)) as any;
    const body = li.querySelector('.body').getBoundingClientRect();
    const list = d.querySelector('#messages').getBoundingClientRect();
    const result = { page: d.documentElement.scrollWidth, viewport: d.documentElement.clientWidth, body: Math.round(body.right), list: Math.round(list.right), height: Math.round(body.height) };
    return { ok: result.page <= result.viewport && result.body <= result.list + 1 && result.height > 100, ...result };
  }, text);
}

/** Seed 003's ReconnectingWebSocket, HeartbeatWebSocket and QueuedWebSocket classes, as the guide writes them. */
const SEED003_CLASSES = `
class ReconnectingWebSocket {
  constructor(url, options = {}) {
    this.url = url;
    this.maxRetries = options.maxRetries ?? Infinity;
    this.baseDelay = options.baseDelay ?? 1000;
    this.maxDelay = options.maxDelay ?? 30000;
    this.retryCount = 0;
    this.handlers = { message: [], open: [], close: [] };
    this.connect();
  }

  connect() {
    this.ws = new WebSocket(this.url);

    this.ws.onopen = () => {
      this.retryCount = 0; // Reset on success
      this.handlers.open.forEach(fn => fn());
    };

    this.ws.onmessage = (e) => {
      this.handlers.message.forEach(fn => fn(e));
    };

    this.ws.onclose = (e) => {
      this.handlers.close.forEach(fn => fn(e));
      if (!e.wasClean && this.retryCount < this.maxRetries) {
        this.scheduleReconnect();
      }
    };

    this.ws.onerror = () => {}; // onclose will fire after
  }

  scheduleReconnect() {
    // Exponential backoff with jitter
    const delay = Math.min(
      this.baseDelay * Math.pow(2, this.retryCount)
        + Math.random() * 1000,
      this.maxDelay
    );
    console.log(\`Reconnecting in \${Math.round(delay)}ms...\`);
    this.retryCount++;
    setTimeout(() => this.connect(), delay);
  }

  send(data) {
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(data);
    }
  }

  on(event, fn) { this.handlers[event].push(fn); }

  close() {
    this.maxRetries = 0; // Prevent reconnection
    this.ws.close(1000, 'Client closing');
  }
}

class HeartbeatWebSocket {
  constructor(url) {
    this.url = url;
    this.heartbeatInterval = 25000; // 25s
    this.heartbeatTimeout = 35000;  // 35s to detect dead
    this.connect();
  }

  connect() {
    this.ws = new WebSocket(this.url);

    this.ws.onopen = () => {
      this.startHeartbeat();
    };

    this.ws.onmessage = (e) => {
      this.resetTimeout(); // Any message resets the timer
      if (e.data === 'pong') return; // Heartbeat response
      // Handle actual messages...
    };

    this.ws.onclose = () => {
      this.stopHeartbeat();
    };
  }

  startHeartbeat() {
    this.pingTimer = setInterval(() => {
      if (this.ws.readyState === WebSocket.OPEN) {
        this.ws.send('ping');
      }
    }, this.heartbeatInterval);
    this.resetTimeout();
  }

  resetTimeout() {
    clearTimeout(this.deadTimer);
    this.deadTimer = setTimeout(() => {
      console.warn('Connection appears dead, closing');
      this.ws.close(4000, 'Heartbeat timeout');
    }, this.heartbeatTimeout);
  }

  stopHeartbeat() {
    clearInterval(this.pingTimer);
    clearTimeout(this.deadTimer);
  }
}

class QueuedWebSocket extends ReconnectingWebSocket {
  constructor(url, options) {
    super(url, options);
    this.queue = [];
  }

  send(data) {
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(data);
    } else {
      this.queue.push(data); // Buffer while disconnected
    }
  }

  connect() {
    super.connect();
    const origOnOpen = this.ws.onopen;
    this.ws.onopen = (e) => {
      origOnOpen?.(e);
      // Flush queued messages
      while (this.queue.length > 0) {
        this.ws.send(this.queue.shift());
      }
    };
  }
}
window.ReconnectingWebSocket = ReconnectingWebSocket;
window.HeartbeatWebSocket = HeartbeatWebSocket;
window.QueuedWebSocket = QueuedWebSocket;
`;
