/**
 * Child process of test/hub-history-memory.test.ts, run as `node --expose-gc --import=tsx <this file> <scenario>`:
 * fills a hub's in-memory history and prints, as one JSON line, the heap before and after (each after a forced GC)
 * and what the store says it holds.
 *
 * - `ttl`: 2,000 topics × 50 messages of ~1 KB of data (~100 MB of history, no byte cap) with a 3 s TTL, then
 *   waits (no publish, no resume) until the store is empty or 30 s passed.
 * - `bytes`: ~200 MB published over 2,000 topics through a store capped at 32 MiB (`maxBytes`).
 * - `release`: a topic keeping 2 messages gets 10; prints how many of the 8 dropped ones are still alive after GC.
 */
import { createHub, HistoryStore, MemoryBackplane } from '../../lib/hub/index.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

const MIB = 1024 * 1024;

function heapAfterGc(): number {
  for (let i = 0; i < 3; i++) gc!();
  return process.memoryUsage().heapUsed;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** ~1 KB of JSON text, different per message (so no two data strings are shared). */
function payload(i: number): string {
  return `${i.toString(36)}:${'x'.repeat(1000)}`;
}

/** Messages dropped by the count bound are released at once, not once some number of them piled up. */
async function release(): Promise<void> {
  const store = new HistoryStore({ size: 2 });
  const refs: Array<WeakRef<object>> = [];
  for (let i = 0; i < 10; i++) {
    const m = store.append('default', 'a', 'm', JSON.stringify(`message ${i}`));
    if (i < 8) refs.push(new WeakRef(m));
  }
  // A WeakRef's target stays alive until the current job ends: collect in a later one.
  await sleep(10);
  heapAfterGc();
  const alive = refs.filter((r) => r.deref() !== undefined).length;
  process.stdout.write(`${JSON.stringify({ scenario: 'release', dropped: 8, alive, held: store.messageCount ?? null, keep: store.position('default', 'a').seq })}\n`);
}

async function main(): Promise<void> {
  const scenario = process.argv[2];
  if (scenario === 'release') return release();
  const history = scenario === 'ttl' ? { ttl: 3000, maxBytes: 1024 * MIB, maxTopicBytes: 1024 * MIB } : { ttl: 600_000, maxBytes: 32 * MIB };
  const hub = createHub({ history, heartbeat: false });
  const backplane = hub.backplane as MemoryBackplane;
  const topics = Array.from({ length: 2000 }, (_, i) => `load.t${i}`);
  const perTopic = scenario === 'ttl' ? 50 : 100;
  await sleep(10);
  const baseline = heapAfterGc();
  let peak = 0;
  let published = 0;
  const publishStart = Date.now();
  for (let round = 0; round < perTopic; round++) {
    for (const topic of topics) await hub.publish({ topic, type: 'load', data: payload(published++) });
    if (round % 10 === 9) peak = Math.max(peak, process.memoryUsage().heapUsed);
  }
  const publishMs = Date.now() - publishStart;
  const filled = heapAfterGc();
  const held = { bytes: backplane.history.bytes, messages: backplane.history.messageCount };
  let waited = 0;
  if (scenario === 'ttl') {
    const start = Date.now();
    // No publish, no resume: only the backplane's own sweep may free anything.
    while (Date.now() - start < 30_000 && !(backplane.history.messageCount === 0)) await sleep(250);
    await sleep(100);
    waited = Date.now() - start;
  }
  const after = heapAfterGc();
  const result = {
    scenario,
    published,
    publishedMiB: +(published * 1010 / MIB).toFixed(1),
    baselineMiB: +(baseline / MIB).toFixed(1),
    filledMiB: +(filled / MIB).toFixed(1),
    peakMiB: +(peak / MIB).toFixed(1),
    afterMiB: +(after / MIB).toFixed(1),
    growthMiB: +((after - baseline) / MIB).toFixed(1),
    publishMs,
    waitedMs: waited,
    heldWhenFilled: held,
    bytes: backplane.history.bytes ?? null,
    messages: backplane.history.messageCount ?? null,
    counts: backplane.counts,
  };
  await hub.close({ timeout: 100 });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
