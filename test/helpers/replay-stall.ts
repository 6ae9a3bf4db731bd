/**
 * Child process of test/hub-replay-budget.test.ts (`node --import=tsx <this file>`), because what it checks is that
 * the hub's event loop is not blocked for good (in-process, that would hang the test file): a replay whose next
 * frame does not fit the outbound budget while the unsent data is at most half of it. The stall poll resumes such a
 * replay (unsent ≤ budget / 2), which stalls again at once; it must then wait for the next poll or `drain`, not be
 * visited again in the same poll (a `Set` iterator visits an entry deleted and re-added meanwhile).
 *
 * A raw client stops reading and asks for 256 KiB `history` pages until the kernel's buffers are full and at least
 * 60 KB stay unsent (so between 60 KB and ~320 KB: at most half the budget), then resumes a topic holding one
 * 1,000,000-character message (one frame larger than the budget minus what is unsent). Prints one JSON line: whether
 * a 1 s timer fired on time, and whether the replay completes once the client reads.
 */
import { createHub } from '../../lib/hub/index.js';
import { SECRET, token } from './hub.js';
import { nextConnection, rawHubClient } from './raw-hub.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const hub = createHub({ jwt: { secret: SECRET }, heartbeat: false });
  const { port } = await hub.listen(0, '127.0.0.1');
  const big = await hub.publish({ topic: 'big', type: 'h', data: 'x'.repeat(1_000_000) });
  for (let i = 0; i < 100; i++) await hub.publish({ topic: 'pages', type: 'h', data: 'y'.repeat(2_700) });
  const accepted = nextConnection(hub);
  const client = await rawHubClient(port, token('stuck'));
  const server = await accepted;
  client.stopReading();
  let asked = 0;
  while (server.connection.bufferedAmount < 60_000 && asked < 400) {
    client.send({ type: 'history', data: { topic: 'pages', limit: 100 }, request_id: asked++ });
    await sleep(25);
  }
  const unsent = server.connection.bufferedAmount;
  client.send({ type: 'subscribe', data: { topic: 'big', since: { epoch: big.epoch, seq: 0 } }, request_id: 'resume' });
  const start = Date.now();
  await sleep(1000);
  const timerMs = Date.now() - start;
  const replays = hub.stats().replays;
  client.startReading();
  let replayed = false;
  try {
    await client.next((m) => m.topic === 'big' && m.seq === big.seq, 10_000);
    replayed = true;
  } catch {
    // reported below
  }
  const result = { asked, unsent, timerMs, replaysWhileWaiting: replays, replayed, open: hub.client(server.id) !== undefined };
  client.destroy();
  await hub.close({ timeout: 100 });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
