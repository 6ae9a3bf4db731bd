/**
 * History memory is freed for real: a hub's in-memory history filled with ~100 MB and left alone (no publish, no
 * resume) goes back to the heap it started from once the TTL passed, and a byte cap bounds the heap however much is
 * published. Measured in a child process (`node --expose-gc`, test/helpers/history-memory.ts) so GC can be forced
 * without changing how the other test files run. The margins are wide (tens of MB against 100–200 MB published)
 * and nothing depends on timing beyond "eventually, within 30 s".
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const MIB = 1024 * 1024;

interface Measure {
  alive?: number;
  publishedMiB: number;
  baselineMiB: number;
  filledMiB: number;
  afterMiB: number;
  growthMiB: number;
  bytes: number | null;
  messages: number | null;
}

function measure(scenario: 'ttl' | 'bytes' | 'release'): Promise<Measure> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--expose-gc', '--import=tsx', join(root, 'test/helpers/history-memory.ts'), scenario],
      { cwd: root, timeout: 100_000, maxBuffer: MIB },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${error.message}\n${stderr}`));
        else resolve(JSON.parse(stdout.trim().split('\n').pop()!) as Measure);
      },
    );
  });
}

t.test('expired history is freed by the sweep, without another publish or resume', async (t) => {
  const m = await measure('ttl');
  t.comment(JSON.stringify(m));
  t.ok(m.filledMiB - m.baselineMiB > 40, `the history held a lot once filled (${m.filledMiB - m.baselineMiB} MiB)`);
  t.equal(m.messages, 0, 'no message held after the TTL');
  t.equal(m.bytes, 0, 'history bytes back to 0');
  t.ok(m.growthMiB < 20, `heap back within 20 MiB of the baseline (grew ${m.growthMiB} MiB)`);
});

t.test('maxBytes bounds the heap whatever is published', async (t) => {
  const m = await measure('bytes');
  t.comment(JSON.stringify(m));
  t.ok(m.publishedMiB > 150, `published ${m.publishedMiB} MiB`);
  t.ok(m.bytes !== null && m.bytes <= 32 * MIB, `counted bytes within the cap (${m.bytes})`);
  t.ok(m.growthMiB < 64, `heap within 64 MiB of the baseline (grew ${m.growthMiB} MiB)`);
});

t.test('a message dropped from the history is released at once', async (t) => {
  const m = await measure('release');
  t.comment(JSON.stringify(m));
  t.equal(m.alive, 0, 'none of the 8 messages dropped by the count bound is still referenced');
});
