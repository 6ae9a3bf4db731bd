/**
 * A hub whose backplane is still attaching (a broker adapter connecting and opening its buckets) must not hand
 * connections to it: `handleUpgrade` holds the upgrade until `attach` settles (503 if it failed; the retries are in
 * test/hub-broker-faults.test.ts), and a connection
 * the backplane could not register is closed with 1013 instead of staying open outside the per-user limit.
 */
import t from 'tap';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHub, HUB_CLOSE_CODES, MemoryBackplane, type BackplaneSink, type Hub } from '../lib/hub/index.js';
import { open, record, SECRET, sleep, token } from './helpers/hub.js';
import { WebSocket } from '../lib/index.js';
import { rawUpgrade, until } from './helpers/net.js';

/** A memory backplane whose `attach` waits for `release()` (or fails with `fail()`), recording the call order. */
class SlowBackplane extends MemoryBackplane {
  readonly calls: string[] = [];
  failRegistration = false;
  private open!: () => void;
  private refuse!: (error: Error) => void;
  private readonly gate = new Promise<void>((resolve, reject) => {
    this.open = resolve;
    this.refuse = reject;
  });
  override async attach(sink: BackplaneSink): Promise<void> {
    await this.gate;
    await super.attach(sink);
    this.calls.push('attached');
  }
  override async registerConnection(user: string, connectionId: string): Promise<string[]> {
    this.calls.push(`register ${user}`);
    if (this.failRegistration) throw new Error('broker timed out');
    return super.registerConnection(user, connectionId);
  }
  release(): void {
    this.open();
  }
  fail(): void {
    this.refuse(new Error('broker unreachable'));
  }
}

/** A hub behind an application's own HTTP server (`handleUpgrade`), which does not wait for `attach` itself. */
async function serve(backplane: SlowBackplane): Promise<{ hub: Hub; server: Server; port: number }> {
  const hub = createHub({ jwt: { secret: SECRET }, backplane });
  const server = createServer();
  server.on('upgrade', (req, socket, head) => hub.handleUpgrade(req, socket, head));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { hub, server, port: (server.address() as AddressInfo).port };
}

t.test('an upgrade during attach waits for it; the connection is registered after the backplane is ready', async (t) => {
  const backplane = new SlowBackplane();
  const { hub, server, port } = await serve(backplane);
  t.teardown(async () => {
    await hub.close();
    server.close();
  });
  const early = record(new WebSocket(`ws://127.0.0.1:${port}/ws?token=${token('early')}`));
  let opened = false;
  void early.opened.then(() => (opened = true));
  await sleep(300);
  t.equal(opened, false, 'not upgraded while the backplane is attaching');
  t.same(backplane.calls, [], 'nothing registered before attach');
  backplane.release();
  await early.opened;
  await sleep(50);
  t.same(backplane.calls, ['attached', 'register early'], 'registered once attached');
  early.ws.close();
});

t.test('an upgrade waiting for an attach that fails is answered 503 with Retry-After', async (t) => {
  const backplane = new SlowBackplane();
  const { hub, server, port } = await serve(backplane);
  const errors: string[] = [];
  hub.on('error', (e) => errors.push(e.message));
  t.teardown(async () => {
    await hub.close();
    server.close();
  });
  const answer = rawUpgrade(port, `/ws?token=${token('late')}`);
  await sleep(100);
  backplane.fail();
  const { head, closed } = await answer;
  t.equal(head.status, 503);
  t.match(head.headers.get('retry-after')?.[0], /^\d+$/, 'with Retry-After');
  await closed;
  t.match(errors[0], /could not attach \(attempt 1, next in \d+ ms\): broker unreachable/, 'the attach failure is reported, with the retry');
  t.same(backplane.calls, [], 'nothing registered');
  t.equal(hub.health().backplane, 'down');
});

t.test('a connection the backplane cannot register is closed with 1013, not left outside the per-user limit', async (t) => {
  const backplane = new SlowBackplane();
  backplane.release();
  const { hub, server, port } = await serve(backplane);
  const errors: string[] = [];
  hub.on('error', (e) => errors.push(e.message));
  t.teardown(async () => {
    await hub.close();
    server.close();
  });
  t.equal(HUB_CLOSE_CODES.TRY_AGAIN, 1013);
  backplane.failRegistration = true;
  const c = await open(`ws://127.0.0.1:${port}/ws?token=${token('dave')}`);
  const { code, reason } = await c.closed;
  t.equal(code, 1013);
  t.match(reason, /could not register the connection/);
  t.same(errors, ['broker timed out'], 'the cause is reported');
  await until(() => hub.stats().connections === 0, 5000, 'the hub to drop the connection');
  t.equal(hub.stats().connections, 0, 'no connection left open');
  backplane.failRegistration = false;
  const ok = await open(`ws://127.0.0.1:${port}/ws?token=${token('dave')}`);
  await sleep(100);
  t.equal(ok.ws.readyState, 1, 'a later connection is registered and stays open');
  ok.ws.close();
});
