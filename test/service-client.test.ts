/**
 * The hub client library in Node (over this package's `WebSocket`) against the service bin: kill and restart with
 * resume (no gap, no duplicate), 4401 → token callback → reconnect, 4429 → stop, request timeout, queue overflow.
 */
import t from 'tap';
import { HubClient, type HubMessage } from '../lib/hub-client/index.js';
import { WebSocket } from '../lib/index.js';
import { api, serviceArgs, startService, tokenFor, type ServiceProcess } from './helpers/service.js';

function client(service: ServiceProcess, options: Partial<ConstructorParameters<typeof HubClient>[0]> = {}): HubClient {
  return new HubClient({ url: service.wsUrl, WebSocket: WebSocket as any, backoff: { initialDelay: 100, maxDelay: 500 }, ...options });
}

function waitFor(what: string, check: () => boolean, timeout = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const end = Date.now() + timeout;
    const poll = (): void => {
      if (check()) resolve();
      else if (Date.now() > end) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 25);
    };
    poll();
  });
}

t.test('kill -9 and restart: the client reconnects and resumes with no gap and no duplicate', async (t) => {
  let service = await startService(serviceArgs());
  t.teardown(() => service.stop('SIGKILL'));
  const port = service.port;
  const c = client(service, { token: tokenFor('resumer') });
  const got: HubMessage[] = [];
  c.on('message', (m) => {
    if (m.topic === 'feed.a' || m.topic === 'feed.b') got.push(m);
  });
  await c.connect();
  await c.subscribe('feed.*');
  for (let i = 1; i <= 5; i++) await api(service, 'POST', '/api/publish', { topic: i % 2 ? 'feed.a' : 'feed.b', type: 'n', data: { i } });
  await waitFor('5 messages', () => got.length === 5);
  await service.stop('SIGKILL');
  await waitFor('the client to notice', () => c.state !== 'open');
  service = await startService(serviceArgs([], port));
  // Published before the client is back: the resume must replay these from the new epoch.
  for (let i = 6; i <= 10; i++) await api(service, 'POST', '/api/publish', { topic: i % 2 ? 'feed.a' : 'feed.b', type: 'n', data: { i } });
  await waitFor('10 messages', () => got.length >= 10, 30_000);
  for (let i = 11; i <= 12; i++) await api(service, 'POST', '/api/publish', { topic: 'feed.a', type: 'n', data: { i } });
  await waitFor('12 messages', () => got.length >= 12);
  await new Promise((r) => setTimeout(r, 300));
  t.same(got.map((m) => (m.data as { i: number }).i), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 'every message once, in order');
  t.ok(c.stats.reconnects >= 1, 'it reconnected');
  c.close();
});

t.test('4401 → the token callback → reconnect; 4429 → stop; request timeout; queue overflow', async (t) => {
  const service = await startService(serviceArgs(['--max-connections-per-user', '1']));
  t.teardown(() => service.stop('SIGKILL'));

  // 4401: an expired token; the callback gives a fresh one and the client reconnects.
  let asked = 0;
  const c = client(service, {
    token: tokenFor('expiring', { expiresIn: 2 }),
    onTokenExpired: () => {
      asked++;
      return tokenFor('expiring');
    },
  });
  const codes: number[] = [];
  c.on('disconnect', (info) => codes.push(info.code));
  await c.connect();
  await waitFor('the 4401 and the reconnect', () => asked === 1 && c.state === 'open', 15_000);
  t.same(codes, [4401]);
  t.equal(asked, 1, 'the callback was asked once');
  const sent = await api(service, 'POST', '/api/send', { user: 'expiring', type: 'ok', data: {} });
  t.equal(sent.body.sockets, 1, 'the new connection is authenticated');

  // 4429: a second connection of the same user evicts the first, which stops.
  const actions: string[] = [];
  c.on('disconnect', (info) => actions.push(`${info.code}:${info.action}`));
  const other = client(service, { token: tokenFor('expiring') });
  await other.connect();
  await waitFor('the eviction', () => c.state === 'closed');
  t.same(actions, ['4429:stop'], 'evicted with 4429, and the client stops');
  await new Promise((r) => setTimeout(r, 400));
  t.equal(c.state, 'closed', 'no reconnect after 4429');

  // The service is frozen (SIGSTOP): a request on an open connection gets no reply and times out, and a new
  // client cannot finish its handshake, so its publishes wait in the bounded offline queue.
  service.child.kill('SIGSTOP');
  const offline = client(service, { token: tokenFor('queued'), queue: { max: 2 } });
  let first: Promise<unknown>;
  let second: Promise<unknown>;
  let connected: Promise<void>;
  try {
    await t.rejects(other.request('anything', {}, { timeout: 300 }), { code: 'timeout' }, 'the request times out');
    connected = offline.connect();
    first = offline.publish({ topic: 'q.a', type: 'n', data: 1 });
    second = offline.publish({ topic: 'q.a', type: 'n', data: 2 });
    await t.rejects(offline.publish({ topic: 'q.a', type: 'n', data: 3 }), { code: 'queue_overflow' }, 'the third publish overflows the queue of 2');
  } finally {
    service.child.kill('SIGCONT');
  }
  await connected;
  await Promise.all([first, second]);
  const history = await api(service, 'GET', '/api/history?topic=q.a');
  t.same(history.body.messages.map((m: any) => m.data), [1, 2], 'the queued publishes went out in order once connected');
  offline.close();
  other.close();
});
