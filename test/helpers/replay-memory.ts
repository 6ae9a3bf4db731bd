/**
 * Child process of test/hub-replay-memory.test.ts, run as `node --expose-gc --import=tsx <this file> <scenario>`: a
 * hub holding ~120 MB of history and, in the same process, a raw client that asks for a lot of it and never reads
 * (`socket.pause()`: the kernel's buffers fill, then whatever the hub queues stays in this process). Prints, as
 * one JSON line, the heap (+ external memory, where socket buffers live) and RSS before and after (each after a
 * forced GC), the most unsent data the server connection ever held (`bufferedAmount` right after every write),
 * and what the hub says.
 *
 * - `pace`: 20 topics × 100 × 60 KB; one wildcard resume of `#` from `{ positions: {}, offset: 0, offsetEpoch }`
 *   with replay caps raised out of the way (100,000 messages, 1 GB): the replay must be paced.
 * - `cap`: the same with the default replay caps (1,000 messages, 8 MiB): the resume must be refused.
 * - `exact`: 100 topics × 20 × 60 KB; 100 exact subscriptions, each resumed from seq 0 (each within the caps).
 * - `history`: one topic of 100 × 16 KB; 100 `history` requests for all of it.
 */
import { createHub } from '../../lib/hub/index.js';
import { SECRET, token } from './hub.js';
import { fillHistory, nextConnection, rawHubClient, watchBuffered } from './raw-hub.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

const MIB = 1024 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function measure(): { heap: number; external: number; rss: number } {
  for (let i = 0; i < 3; i++) gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, external: m.external, rss: m.rss };
}

const mib = (n: number): number => +(n / MIB).toFixed(1);

async function main(): Promise<void> {
  const scenario = process.argv[2];
  const raised = scenario === 'pace';
  const hub = createHub({
    jwt: { secret: SECRET },
    heartbeat: false,
    history: { size: 100, maxBytes: 256 * MIB, maxTopicBytes: 64 * MIB },
    limits: { maxPendingRequests: 200, ...(raised ? { maxReplayMessages: 100_000, maxReplayBytes: 1e9 } : {}) },
  });
  const { port } = await hub.listen(0, '127.0.0.1');

  const topics =
    scenario === 'exact' ? Array.from({ length: 100 }, (_, i) => `load.t${i}`) : scenario === 'history' ? ['big'] : Array.from({ length: 20 }, (_, i) => `load.t${i}`);
  const perTopic = scenario === 'exact' ? 20 : 100;
  const size = scenario === 'history' ? 16_000 : 60_000;
  const published = await fillHistory(hub, topics, perTopic, size);
  const heldBytes = published.length * size;

  const accepted = nextConnection(hub);
  const client = await rawHubClient(port, token('mem'));
  const server = await accepted;
  const watch = watchBuffered(server.connection);
  let offsetEpoch = '';
  if (scenario === 'pace' || scenario === 'cap') {
    client.send({ type: 'subscribe', data: { topic: '#' }, request_id: 'live' });
    offsetEpoch = (await client.next((m) => m.type === 'ack' && m.request_id === 'live')).data.offsetEpoch;
  }
  await sleep(50);
  const before = measure();
  const start = Date.now();

  if (scenario === 'pace' || scenario === 'cap') {
    client.send({ type: 'subscribe', data: { topic: '#', since: { positions: {}, offset: 0, offsetEpoch } }, request_id: 'resume' });
  } else if (scenario === 'exact') {
    const epochs = new Map(published.map((p) => [p.topic, p.epoch]));
    for (const [i, topic] of topics.entries()) client.send({ type: 'subscribe', data: { topic, since: { epoch: epochs.get(topic), seq: 0 } }, request_id: i });
  } else {
    for (let i = 0; i < 100; i++) client.send({ type: 'history', data: { topic: 'big', limit: 1000 }, request_id: i });
  }
  client.stopReading();

  // Settled: no write through the server connection for 1 s (or it closed), within 30 s.
  let writes = -1;
  let quiet = 0;
  while (Date.now() - start < 30_000 && quiet < 10) {
    await sleep(100);
    if (watch.writes === writes) quiet++;
    else quiet = 0;
    writes = watch.writes;
  }
  const open = hub.client(server.id) !== undefined;
  const bufferedNow = open ? server.connection.bufferedAmount : 0;
  const after = measure();
  const stats = hub.stats() as unknown as Record<string, unknown>;
  const result = {
    scenario,
    heldMiB: mib(heldBytes),
    messages: published.length,
    before: { heapMiB: mib(before.heap), externalMiB: mib(before.external), rssMiB: mib(before.rss) },
    after: { heapMiB: mib(after.heap), externalMiB: mib(after.external), rssMiB: mib(after.rss) },
    growthMiB: mib(after.heap + after.external - before.heap - before.external),
    rssGrowthMiB: mib(after.rss - before.rss),
    peakBuffered: watch.peak,
    bufferedNow,
    writes: watch.writes,
    open,
    closeCodes: stats.closeCodes,
    replays: stats.replays ?? null,
    replaysRefused: stats.replaysRefused ?? null,
    slowConsumerDisconnects: stats.slowConsumerDisconnects,
    messagesOut: stats.messagesOut,
    settledMs: Date.now() - start,
  };
  client.destroy();
  await hub.close({ timeout: 100 });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
