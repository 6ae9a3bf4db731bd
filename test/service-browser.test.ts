/**
 * Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) against the service started as a user
 * starts it (the bin, a real port):
 * - the seed documents' browser snippets, as written — only the service URL and the token filled in, and a
 *   recording listener added beside them;
 * - the demo page: two pages chat; the service restarts; both reconnect and nothing is lost or duplicated.
 * A screenshot of the demo page is saved to test-artifacts/ (git-ignored).
 */
import { accessSync, constants, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { BrowserContext, Page } from 'playwright-core';
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
      await page.fill('#name', name);
      await page.click('#signin');
      await page.waitForSelector('#state[data-state="open"]');
      await page.click('#subscribe');
      await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#subscriptions li').length === 1);
    };
    await signIn(alice, 'alice');
    await signIn(bob, 'bob');
    const say = async (page: Page, text: string): Promise<void> => {
      await page.fill('#text', text);
      await page.click('#publish');
    };
    const lines = (page: Page): Promise<Array<{ topic: string; seq: string; text: string }>> =>
      page.$$eval('#messages li', (items) => items.map((li) => ({ topic: (li as any).dataset.topic ?? '', seq: (li as any).dataset.seq ?? '', text: li.querySelector('.body')?.textContent ?? '' })));
    const waitForText = (page: Page, text: string): Promise<unknown> =>
      page.waitForFunction((text) => [...(globalThis as any).document.querySelectorAll('#messages .body')].some((e: any) => e.textContent === text), text, { timeout: 30_000 });

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
    }
    t.same(pageErrors, [], 'no script errors on the pages');
    const shots = join(ROOT, 'test-artifacts');
    mkdirSync(shots, { recursive: true });
    await alice.screenshot({ path: join(shots, 'demo-page.png'), fullPage: true });
    t.pass(`screenshot saved to ${join('test-artifacts', 'demo-page.png')}`);
    await alice.close();
    await bob.close();
  });
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
