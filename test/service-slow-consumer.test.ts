/**
 * The service's `slow_consumer` log line (issue finding 9) against the bin started as a user would: it names the
 * slow connection's user and id as the policy hits it, not whoever disconnects next (`disconnect`), and not as a
 * periodic count without a user (`drop`).
 */
import t, { type Test } from 'tap';
import { rawUpgrade, until } from './helpers/net.js';
import { api, serviceArgs, type ServiceProcess, startService, tokenFor } from './helpers/service.js';
import { openSocket, type RecordingSocket } from './helpers/socket.js';

/** A masked client text frame (payload under 126 bytes), for raw sockets. */
function frame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  const out = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) out[i] = payload[i] ^ mask[i % 4];
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, out]);
}

/** A metric's value from /metrics (0 when absent). */
async function metric(service: ServiceProcess, name: string): Promise<number> {
  const text = (await api(service, 'GET', '/metrics')).body as string;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

/**
 * alice subscribes to `hot` over a raw socket and never reads again; bob subscribes and reads everything. Publishes
 * 60 KiB messages through the API (bob reading each batch before the next) until `done` resolves true.
 */
async function slowAlice(t: Test, service: ServiceProcess, done: () => Promise<boolean>): Promise<{ alice: Awaited<ReturnType<typeof rawUpgrade>>; bob: RecordingSocket }> {
  const alice = await rawUpgrade(service.port, `/ws?token=${tokenFor('alice')}`);
  t.teardown(() => alice.socket.destroy());
  alice.socket.write(frame('{"type":"subscribe","data":{"topic":"hot"},"request_id":1}'));
  await until(() => alice.received().includes('"type":"ack"'), 5000, "alice's ack");
  alice.socket.pause();
  const bob = openSocket(service.wsUrl, ['bearer', tokenFor('bob')]);
  await bob.opened;
  bob.send({ type: 'subscribe', data: { topic: 'hot' }, request_id: 'sub' });
  await bob.next((m) => m.request_id === 'sub');
  const body = 'x'.repeat(60 * 1024);
  let sent = 0;
  while (!(await done())) {
    if (sent >= 800) throw new Error(`the policy never applied to alice after ${sent} messages`);
    for (let k = 0; k < 8; k++) {
      const res = await api(service, 'POST', '/api/publish', { topic: 'hot', type: 'm', data: { i: ++sent, body } });
      if (res.status !== 200) throw new Error(`publish: ${res.status} ${JSON.stringify(res.body)}`);
    }
    const want = sent;
    await bob.next((m) => m.type === 'm' && m.data.i === want, 10_000);
  }
  return { alice, bob };
}

// Both services start at once (a start-up is most of this file's time on a loaded machine).
const [disconnecting, dropping] = await Promise.all([
  startService(serviceArgs(['--max-buffered', '256k']), {}, 60_000),
  startService(serviceArgs(['--max-buffered', '256k', '--slow-consumer', 'drop']), {}, 60_000),
]);
t.teardown(() => Promise.all([disconnecting.stop('SIGKILL'), dropping.stop('SIGKILL')]));

const slowLines = (service: ServiceProcess): string[] => service.output().split('\n').filter((l) => l.includes('event=slow_consumer'));

t.test('policy disconnect: the line names alice (the slow one) at once, not bob who closes next', async (t) => {
  const service = disconnecting;
  const { bob } = await slowAlice(t, service, async () => (await metric(service, 'wsengine_slow_consumer_disconnects_total')) > 0);
  // alice is being closed (1008) but, never reading, stays connected until she is destroyed 1 s later; bob
  // closes normally meanwhile.
  bob.ws.close(1000);
  t.equal((await bob.closed).code, 1000);
  const start = Date.now();
  while ((await metric(service, 'wsengine_connections')) > 0) {
    if (Date.now() - start > 15_000) throw new Error('alice was never destroyed');
    await new Promise((r) => setTimeout(r, 50));
  }
  const lines = slowLines(service);
  t.equal(lines.length, 1, `one slow_consumer line: ${JSON.stringify(lines)}`);
  t.match(lines[0] ?? '', /level=warn/);
  t.match(lines[0] ?? '', / policy=disconnect(?: |$)/, 'policy disconnect');
  t.match(lines[0] ?? '', / user=alice(?: |$)/, 'names alice');
  t.match(lines[0] ?? '', / connection=\S+/, 'and her connection');
  t.notOk(service.output().split('\n').some((l) => l.includes('event=slow_consumer') && l.includes('user=bob')), 'never bob');
});

t.test('policy drop: the line names alice as her messages start being dropped', async (t) => {
  const service = dropping;
  const { bob } = await slowAlice(t, service, async () => (await metric(service, 'wsengine_drops_total')) > 0);
  // Logged as it happened, naming her (the old adapter wrote a count every 10 s, without a user).
  await service.waitForOutput(/event=slow_consumer[^\n]* user=alice/, 15_000);
  const lines = slowLines(service);
  t.ok(lines.length >= 1, `logged: ${JSON.stringify(lines)}`);
  // One line per slow episode (the event fires on the first drop after alice last caught up): how many episodes
  // there are depends on how much the kernel takes off her socket meanwhile, so only what each says is checked.
  for (const line of lines) {
    t.match(line, / policy=drop(?: |$)/, 'policy drop');
    t.match(line, / user=alice(?: |$)/, 'names alice');
    t.match(line, / connection=\S+/, 'and her connection');
  }
  bob.ws.close();
});
