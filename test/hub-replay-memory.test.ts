/**
 * A client that asks for a lot of history and never reads costs the hub its outbound budget, not the history:
 * measured in a child process (`node --expose-gc`, test/helpers/replay-memory.ts) holding ~115 MB of history, with
 * a raw client that stops reading after its requests. Before the replay pacing, the replay cap and the `history`
 * pages, each scenario queued the whole answer in the server's socket buffer (116 MB for a `#` resume, 158 MB for
 * 100 `history` requests); now the unsent data stays within `maxBufferedBytes` (1 MiB) plus one frame (or, for
 * replies, the 64 KiB reply headroom), and the heap plus external memory grows by about that much.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const MIB = 1024 * 1024;
/** The default outbound budget plus the largest frame here (a 60 KB message) or the reply headroom. */
const BOUND = MIB + 64 * 1024;

interface Measure {
  heldMiB: number;
  growthMiB: number;
  rssGrowthMiB: number;
  peakBuffered: number;
  bufferedNow: number;
  open: boolean;
  closeCodes: Record<string, number>;
  replays: number | null;
  replaysRefused: number | null;
  messagesOut: number;
}

function measure(scenario: 'pace' | 'cap' | 'exact' | 'history'): Promise<Measure> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--expose-gc', '--import=tsx', join(root, 'test/helpers/replay-memory.ts'), scenario],
      { cwd: root, timeout: 100_000, maxBuffer: MIB },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${error.message}\n${stderr}`));
        else resolve(JSON.parse(stdout.trim().split('\n').pop()!) as Measure);
      },
    );
  });
}

t.test('a never-reading client resuming # over ~115 MB of history, caps raised: the replay is paced within the budget', async (t) => {
  const m = await measure('pace');
  t.comment(JSON.stringify(m));
  t.ok(m.heldMiB > 100, `the tenant held ${m.heldMiB} MiB of history`);
  t.ok(m.peakBuffered <= BOUND, `unsent data at most the budget plus one frame (peak ${m.peakBuffered} bytes)`);
  t.ok(m.open, 'the client is not closed: a replay waits for it, it is not a slow consumer');
  t.equal(m.replays, 1, 'the replay is still in progress, waiting for the client to drain');
  t.ok(m.growthMiB < 16, `heap + external memory grew ${m.growthMiB} MiB (< 16)`);
  t.ok(m.rssGrowthMiB < 40, `RSS grew ${m.rssGrowthMiB} MiB (< 40)`);
});

t.test('the same resume with the default caps is refused: nothing is queued', async (t) => {
  const m = await measure('cap');
  t.comment(JSON.stringify(m));
  t.ok(m.heldMiB > 100, `the tenant held ${m.heldMiB} MiB of history`);
  t.equal(m.replaysRefused, 1, 'stats count the refused replay');
  t.equal(m.replays, 0, 'no replay runs');
  t.ok(m.peakBuffered < 64 * 1024, `only replies were sent (peak unsent ${m.peakBuffered} bytes)`);
  t.ok(m.open, 'the client stays connected');
  t.ok(m.growthMiB < 16, `heap + external memory grew ${m.growthMiB} MiB (< 16)`);
  t.ok(m.rssGrowthMiB < 40, `RSS grew ${m.rssGrowthMiB} MiB (< 40)`);
});

t.test('100 exact topics each resumed from seq 0 by a never-reading client: the replays queue behind the budget', async (t) => {
  const m = await measure('exact');
  t.comment(JSON.stringify(m));
  t.ok(m.heldMiB > 100, `100 topics held ${m.heldMiB} MiB of history`);
  t.ok(m.peakBuffered <= BOUND, `unsent data at most the budget plus one frame (peak ${m.peakBuffered} bytes)`);
  t.ok(m.open, 'the client is not closed');
  t.ok(m.replays !== null && m.replays > 50, `most replays still wait their turn (${m.replays})`);
  t.ok(m.growthMiB < 16, `heap + external memory grew ${m.growthMiB} MiB (< 16)`);
  t.ok(m.rssGrowthMiB < 40, `RSS grew ${m.rssGrowthMiB} MiB (< 40)`);
});

t.test('100 history requests from a never-reading client: closed with 1008 (or kept within the budget)', async (t) => {
  const m = await measure('history');
  t.comment(JSON.stringify(m));
  t.ok(m.peakBuffered <= BOUND + 16, `unsent data at most the budget plus the reply headroom (peak ${m.peakBuffered} bytes)`);
  if (!m.open) t.equal(m.closeCodes['1008'], 1, 'closed as a slow consumer (1008)');
  else t.ok(m.bufferedNow <= BOUND, 'still open, within the budget');
  t.ok(m.growthMiB < 16, `heap + external memory grew ${m.growthMiB} MiB (< 16)`);
  t.ok(m.rssGrowthMiB < 40, `RSS grew ${m.rssGrowthMiB} MiB (< 40)`);
});
