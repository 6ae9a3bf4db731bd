// Child process for test/interop-undici.test.ts: drives Node's own WebSocket client (undici) against our server.
// Usage: node [--experimental-websocket] undici-child.mjs PORT [SCENARIO...]
// Prints one JSON line per scenario on stdout ({ scenario, ... }), then {"done":true}. Binary data is base64.
import { createHash } from 'node:crypto';

const port = Number(process.argv[2]);
const base = `ws://127.0.0.1:${port}`;
const only = process.argv.slice(3);

// Never outlive the parent's patience: a hang here must end the process.
const hardStop = setTimeout(() => {
  emit({ scenario: 'fatal', error: 'child timed out after 40 s' });
  process.exit(2);
}, 40_000);

function emit(object) {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

function bounded(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Opens a WebSocket and returns helpers that queue its messages and its close event. */
function open(path, protocols) {
  const ws = protocols === undefined ? new WebSocket(`${base}${path}`) : new WebSocket(`${base}${path}`, protocols);
  ws.binaryType = 'arraybuffer';
  const queue = [];
  const waiters = [];
  ws.addEventListener('message', (e) => {
    const w = waiters.shift();
    if (w) w(e.data);
    else queue.push(e.data);
  });
  const errors = [];
  ws.addEventListener('error', (e) => errors.push(String(e.error?.message ?? e.message ?? e.type)));
  const closed = new Promise((resolve) => {
    ws.addEventListener('close', (e) => resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean }));
  });
  const opened = new Promise((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('close', (e) => reject(new Error(`closed before open (${path}): code ${e.code}, errors: ${errors.join('; ')}`)));
  });
  return {
    ws,
    errors,
    opened: () => bounded(opened, 10_000, `open ${path}`),
    closed: () => bounded(closed, 10_000, `close ${path}`),
    next: () => bounded(queue.length > 0 ? Promise.resolve(queue.shift()) : new Promise((resolve) => waiters.push(resolve)), 10_000, `message on ${path}`),
  };
}

function describe(data) {
  if (typeof data === 'string') return { type: 'string', text: data };
  if (data instanceof ArrayBuffer) return { type: 'arraybuffer', length: data.byteLength, base64: Buffer.from(data).toString('base64') };
  return { type: Object.prototype.toString.call(data) };
}

const scenarios = {
  // Echo: subprotocol, text, binary, 1 MiB, empty text, then a close from the client with 4000 and a reason.
  async echo() {
    const c = open('/echo', ['chat.v2', 'chat.v1']);
    await c.opened();
    const result = { protocol: c.ws.protocol, extensions: c.ws.extensions };
    c.ws.send('héllo 🎉 日本');
    result.text = describe(await c.next());
    const small = new Uint8Array(256).map((_, i) => i);
    c.ws.send(small);
    result.binary = describe(await c.next());
    const big = new Uint8Array(1024 * 1024).map((_, i) => (i * 31 + 7) & 0xff);
    c.ws.send(big.buffer);
    const echoed = await c.next();
    result.big = { type: describe(echoed).type, length: echoed.byteLength, sha256: sha256(new Uint8Array(echoed)), sentSha256: sha256(big) };
    c.ws.send('');
    result.empty = describe(await c.next());
    c.ws.close(4000, 'client bye ✓ 日本');
    result.close = await c.closed();
    result.errors = c.errors;
    return result;
  },
  // The server speaks first: a text, a binary, a ping (undici must answer), then it closes with 4001.
  async serverClose() {
    const c = open('/server-close', ['chat.v1']);
    await c.opened();
    const result = { protocol: c.ws.protocol };
    result.first = describe(await c.next());
    result.second = describe(await c.next());
    result.close = await c.closed();
    result.errors = c.errors;
    return result;
  },
  // No subprotocol offered; close without a code.
  async plain() {
    const c = open('/plain');
    await c.opened();
    const result = { protocol: c.ws.protocol };
    c.ws.close();
    result.close = await c.closed();
    return result;
  },
  // A subprotocol offered that the server does not select. The WHATWG spec (and so browsers and undici) fail the
  // connection then, though RFC 6455 lets the server select none: report what happened.
  async unselected() {
    const ws = new WebSocket(`${base}/plain`, ['x.unknown']);
    const outcome = await bounded(
      new Promise((resolve) => {
        ws.addEventListener('open', () => resolve('open'));
        ws.addEventListener('error', (e) => resolve(`error: ${e.error?.message ?? e.message ?? ''}`));
        ws.addEventListener('close', (e) => resolve(`close ${e.code}`));
      }),
      10_000,
      'open or error on /plain',
    );
    const result = { outcome, protocol: ws.protocol };
    if (outcome === 'open') ws.close();
    return result;
  },
};

if (typeof WebSocket !== 'function') {
  emit({ scenario: 'fatal', error: `no global WebSocket in Node ${process.version} (flags: ${process.execArgv.join(' ')})` });
  process.exit(1);
}
for (const [name, run] of Object.entries(scenarios)) {
  if (only.length > 0 && !only.includes(name)) continue;
  try {
    emit({ scenario: name, ...(await run()) });
  } catch (error) {
    emit({ scenario: name, error: String(error?.stack ?? error) });
  }
}
emit({ done: true });
clearTimeout(hardStop);
process.exit(0);
